"""What docs/adding_an_op.md says about extending gradc, done here: each extension is the
one registration the docs name, and the whole compiler picks it up.

- an elementwise op: one row of :data:`gradc.ir.ops.ELEMENTWISE`;
- an optimizer: one row of :data:`gradc.options.OPTIMIZERS`;
- an entry made of existing programs: one row of :data:`gradc.entries.ENTRIES` (added to a
  copy of the file: :class:`gradc.Model` takes its methods from the table at import);
- a target: its module (defining ``TARGET``) and one row of
  :data:`gradc.codegen.target.TARGETS`;
- a structural op: its node kind, one :class:`~gradc.kinds.kind.Kind` in
  :data:`gradc.kinds.KINDS` (its rules, its reference, its lowering to a kernel class of its
  own), a printer of that class per target (here the numpy target's) and its spelling in
  :data:`gradc.ir.builtins.BUILTINS`.

Each test adds the row (monkeypatched for the test alone), compiles a small float64
model into a fresh cache and checks the numbers against values computed here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest

import gradc
from gradc.codegen import target as target_table
from gradc.codegen.numpy import emit as numpy_emit
from gradc.ir import builtins, ops, sym
from gradc.ir.graph import Graph, Node
from gradc.ir.printer import format_node
from gradc.kinds import KINDS, Kind
from gradc.options import OPTIMIZERS, OptimizerRule
from gradc.passes import kernels
from gradc.runtime.reference import evaluate
from gradc.source import Span
from tests.harness.paths import ROOT

MODEL = """\
model ext
input  x : f64[B, 3]
param  W : f64[3, 2] ~ he_normal
output y = {act}(x @ W)
loss   = sum(y ^ 2) / 2
"""


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """A cache of this test's own: a module generated with the extra row is never seen
    by another test (the row is not part of the cache key)."""
    monkeypatch.setenv("GRADC_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(4, 3)), rng.normal(size=(3, 2))


@pytest.mark.parametrize("target", ["numpy", "cpu"])
def test_an_elementwise_op_is_one_row(fresh_cache, monkeypatch, target):
    """``softsign(x) = x / (1 + |x|)``, added as the docs' example row: the language
    accepts it and its derivative (SymPy's) is right on the numpy and the CPU target."""
    row = ops.EwiseOp("softsign", 1, lambda x: x / (1 + sym.Absv(x)))
    monkeypatch.setitem(ops.ELEMENTWISE, "softsign", row)
    path = fresh_cache / "ext.grad"
    path.write_text(MODEL.format(act="softsign"))
    model = gradc.compile(str(path), target=target, wait=True)
    x, w = _data()
    z = x @ w
    y = z / (1 + np.abs(z))
    loss, grads = model.loss_and_grad({"W": w}, x=x)
    np.testing.assert_allclose(loss, (y ** 2).sum() / 2, rtol=1e-13)
    dz = y / (1 + np.abs(z)) ** 2  # d(y^2/2)/dz = y * dy/dz, dy/dz = 1/(1+|z|)^2
    np.testing.assert_allclose(grads["W"], x.T @ dz, rtol=1e-12)


def test_an_optimizer_is_one_row(fresh_cache, monkeypatch):
    """Adagrad, a state slot of a new name and a hyper-parameter: one row; train_step
    keeps its slot in the state dict and moves the params as the formula says."""
    rule = OptimizerRule(
        {"eps": 1e-10}, ("acc",), (),
        lambda s, sqrt, flush: [("acc", s["acc"] + s["g"] * s["g"]),
                                ("w", s["w"] - s["lr"] * s["g"] / (sqrt(s["new_acc"])
                                                                   + s["eps"]))])
    monkeypatch.setitem(OPTIMIZERS, "adagrad", rule)
    path = fresh_cache / "ext.grad"
    path.write_text(MODEL.format(act="tanh"))
    model = gradc.compile(str(path), target="numpy", optimizer="adagrad")
    x, w = _data()
    params, state, acc = {"W": w.copy()}, {}, np.zeros_like(w)
    for _ in range(3):
        z = x @ w
        g = x.T @ (np.tanh(z) * (1 - np.tanh(z) ** 2))
        acc = acc + g * g
        w = w - 0.1 * g / (np.sqrt(acc) + 1e-10)
        model.train_step(params, lr=0.1, state=state, x=x)
    np.testing.assert_allclose(params["W"], w, rtol=1e-12)
    slots = [k for k in state if "acc" in k]
    assert len(slots) == 1
    np.testing.assert_allclose(state[slots[0]], acc, rtol=1e-12)


ENTRY_ROW = """
ENTRIES["loss_and_outputs"] = PublicEntry(
    "loss_and_outputs", "*, state=None",
    "Return (the loss, the outputs) of one call (the extension test's entry).",
    "loss", ("loss_and_grad", "forward"),
    ("call = _prepare('forward', params, inputs, None, state, None)",
     "outs = _named('outputs', _run(call), call)",
     "call = _prepare('loss_and_grad', params, inputs, None, state, None)",
     "return _loss(_run(call)[0]), outs"))
"""
ENTRY_CALL = """if True:
    import numpy as np, gradc
    model = gradc.compile('ext.grad', target='numpy')
    x, w = np.load('data.npy', allow_pickle=True)
    loss, outs = model.loss_and_outputs({'W': w}, x=x)
    np.save('result.npy', np.array([loss, outs['y']], dtype=object), allow_pickle=True)
    print(model.loss_and_outputs.__doc__)
    print("extension test's entry" in model.source)
"""


def test_an_entry_of_existing_programs_is_one_row(fresh_cache):
    """A public function made of programs the model has, added as a row at the end of
    (a copy of) gradc/entries.py: the generated module and :class:`gradc.Model` offer it
    with the row's docstring, and it computes what its body says."""
    root = ROOT
    shutil.copytree(root / "gradc", fresh_cache / "gradc",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(root / "grammar", fresh_cache / "grammar")
    with open(fresh_cache / "gradc" / "entries.py", "a", encoding="utf-8") as f:
        f.write(ENTRY_ROW)
    (fresh_cache / "ext.grad").write_text(MODEL.format(act="tanh"))
    x, w = _data()
    np.save(fresh_cache / "data.npy", np.array([x, w], dtype=object), allow_pickle=True)
    out = subprocess.run([sys.executable, "-c", ENTRY_CALL], capture_output=True, text=True,
                         timeout=300, cwd=fresh_cache,
                         env={**os.environ, "PYTHONPATH": str(fresh_cache)})
    assert out.returncode == 0, out.stderr
    assert "Return (the loss, the outputs) of one call" in out.stdout
    assert out.stdout.split()[-1] == "True"
    loss, y = np.load(fresh_cache / "result.npy", allow_pickle=True)
    np.testing.assert_allclose(y, np.tanh(x @ w), rtol=1e-14)
    np.testing.assert_allclose(loss, (np.tanh(x @ w) ** 2).sum() / 2, rtol=1e-13)


def test_a_target_is_its_module_and_one_row(fresh_cache, monkeypatch):
    """A target whose module derives from the numpy target's (another summary line):
    ``target=`` accepts it, its module is assembled and runs."""
    module = fresh_cache / "gradc_test_mytarget.py"
    module.write_text(
        "from gradc.codegen.numpy.target import NumpyTarget\n"
        "class MyTarget(NumpyTarget):\n"
        "    name = 'mine'\n"
        "    summary = ('Printed by the extension test.',)\n"
        "TARGET = MyTarget()\n")
    monkeypatch.syspath_prepend(str(fresh_cache))
    monkeypatch.setitem(target_table.TARGETS, "mine",
                        target_table.TargetInfo("mine", "gradc_test_mytarget", tier="mine"))
    path = fresh_cache / "ext.grad"
    path.write_text(MODEL.format(act="tanh"))
    try:
        model = gradc.compile(str(path), target="mine")
        x, w = _data()
        np.testing.assert_allclose(model.forward({"W": w}, x=x)["y"], np.tanh(x @ w),
                                   rtol=1e-14)
        assert "Printed by the extension test." in model.source
        assert model.tier("forward") == "mine"
    finally:
        sys.modules.pop("gradc_test_mytarget", None)


# ---------------------------------------------------------------------- a structural op
# flip(x): x with axis 0 reversed, defined as docs/adding_an_op.md says: the constructor,
# the kernel class and the kind in one place (a family module of gradc/kinds), a printer
# of the kernel per target (the numpy target's here) and the language's spelling.
def flip(g: Graph, x: Node) -> Node:
    """The node reversing axis 0 of ``x``."""
    return g.add("flip", (x,), x.shape, x.dtype)


@dataclass(eq=False)
class Flip(kernels.Kernel):
    """out[i] = src[n - 1 - i] along axis 0."""

    out: kernels.Buffer
    src: kernels.Buffer
    span: Span | None = None

    def reads(self) -> list[kernels.Buffer]:
        return [self.src]


FLIP = Kind("flip", "x", (), "x with axis 0 reversed",
            vjp=lambda g, n, ct: [flip(g, ct)],
            jvp=lambda g, n, t: flip(g, t[0]),
            evaluate=lambda n, ins, shape, dims: np.flip(ins[0], 0).copy(),
            lower=lambda s, n, out: Flip(out, s.buffer_or_leaf(n.inputs[0]), n.span),
            kernels=(Flip,))


def _print_flip(emitter, b, k: Flip) -> None:
    b.line(f"{k.out.name} = np.flip({k.src.name}, 0).copy()")


def _flip_builtin(g, name, args, kwargs, call):
    builtins.check_arity(name, args, 1, call)
    return flip(g, args[0])


FLIP_MODEL = """\
model ext
input  x : f64[B, 3]
input  t : f64[B, 2]
param  W : f64[3, 2] ~ he_normal
output y = flip(tanh(x @ W))
loss   = sum(y * t)
"""


def test_a_structural_op_is_its_kind_and_a_printer_per_target(fresh_cache, monkeypatch):
    """flip, registered as one kind plus the numpy target's printer of its kernel (and its
    name in the language): the numpy module computes it, its gradient (the kind's VJP),
    its tangent (JVP) and the Hessian-vector product (the JVP of the VJP's flip) right;
    the reference interpreter and the graph printer know it."""
    monkeypatch.setitem(KINDS, "flip", FLIP)
    monkeypatch.setitem(numpy_emit.PRINTERS, Flip, _print_flip)
    monkeypatch.setitem(builtins.BUILTINS, "flip", _flip_builtin)
    path = fresh_cache / "ext.grad"
    path.write_text(FLIP_MODEL)
    model = gradc.compile(str(path), target="numpy", wait=True)
    assert "np.flip(" in model.source
    x, w = _data()
    rng = np.random.default_rng(1)
    t, v = rng.normal(size=(4, 2)), rng.normal(size=(3, 2))
    h = np.tanh(x @ w)
    y = model.forward({"W": w}, x=x, t=t)["y"]
    np.testing.assert_allclose(y, h[::-1], rtol=1e-14)
    loss, grads = model.loss_and_grad({"W": w}, x=x, t=t)
    np.testing.assert_allclose(loss, (h[::-1] * t).sum(), rtol=1e-13)
    np.testing.assert_allclose(grads["W"], x.T @ ((1 - h ** 2) * t[::-1]), rtol=1e-12)
    _, tangents = model.jvp({"W": w}, {"W": v}, x=x, t=t)
    np.testing.assert_allclose(tangents["y"], ((1 - h ** 2) * (x @ v))[::-1], rtol=1e-12)
    hv = model.hvp({"W": w}, {"W": v}, x=x, t=t)
    np.testing.assert_allclose(hv["W"], x.T @ (-2 * h * (1 - h ** 2) * (x @ v) * t[::-1]),
                               rtol=1e-12)
    g = model.graph
    node = g.outputs["y"]
    assert format_node(node).startswith(f"%{node.id} = flip (%")
    (ref,) = evaluate(g, [node], {g.inputs["x"].id: x, g.params["W"].id: w}, {"B": 4})
    np.testing.assert_allclose(ref, h[::-1], rtol=1e-14)
