"""Blocks, instances, ``repeat`` and multi-statement fn bodies (docs/language.md "Blocks").

A model written with blocks must compute exactly what the same model written by hand
computes (its params renamed ``b1.fc1.W`` <-> ``b1_fc1.W``): ``loss_and_grad``, ``jvp``,
``vjp`` and ``hvp`` are compared bit for bit on the numpy target, and against the equivalent
PyTorch ``nn.Module`` (float64 autograd, ``torch.func``) to 1e-10. A seeded generator of
random block/repeat models checks the same equality on models nobody wrote by hand. Every
error a block can give is checked in full (message, line, caret and the note naming the
instance).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gradc
from gradc.errors import GradcError
from gradc.pipeline import Options, front
from gradc.source import Source

from tests.harness import seeds
from tests.harness.block_models import perturbed, random_case
from tests.harness.fuzz import blocks as blocks_fuzzer
from tests.harness.fuzz import campaign
from tests.harness.oracles import rel_err
from tests.harness.paths import ROOT

TOL = 1e-10


def numpy_model(src: str, name: str) -> gradc.Model:
    return gradc.compile_string(src, name=name, target="numpy", dtype="f64")


# ------------------------------------------------------------------ block vs hand-written
BLOCKS = """
model blocks
input x : f64[B, 6]
input w : f64[B, 6]

block res(n) {
    layer ln  = layernorm(n)
    layer fc1 = dense(n -> 2 * n)
    layer fc2 = dense(2 * n -> n)
    param s : f64[n] ~ ones
    fn gate(v) = tanh(v)
    fn forward(h) {
        u = gate(fc1(ln(h)))
        v = fc2(u)
        return h + s * v
    }
}

block pair(m) {
    layer a = res(m)
    layer b = res(m)
    fn forward(h) = h |> a >> b
}

layer p     = pair(6)
layer tower = repeat(res(6), 2)
output y = x |> p |> tower
loss = sum(y * w) + 0.01 * l2(tower.1.fc1.W, p.b.s)
"""

HAND = """
model hand
input x : f64[B, 6]
input w : f64[B, 6]
""" + "".join(f"""
layer {p}_ln  = layernorm(6)
layer {p}_fc1 = dense(6 -> 12)
layer {p}_fc2 = dense(12 -> 6)
param {p}_s : f64[6] ~ ones
fn {p}_fwd(h) = h + {p}_s * {p}_fc2(tanh({p}_fc1({p}_ln(h))))
""" for p in ("p_a", "p_b", "t0", "t1")) + """
output y = x |> p_a_fwd |> p_b_fwd |> t0_fwd |> t1_fwd
loss = sum(y * w) + 0.01 * l2(t1_fc1.W, p_b_s)
"""


def hand_name(name: str) -> str:
    """``p.a.fc1.W`` -> ``p_a_fc1.W``; ``tower.1.s`` -> ``t1_s``."""
    *path, leaf = re.sub(r"^tower\.(\d)", r"t\1", name).split(".")
    if leaf in ("W", "b", "gamma", "beta"):
        return "_".join(path) + "." + leaf
    return "_".join(path + [leaf])


@pytest.fixture(scope="module")
def pair_of_models():
    return numpy_model(BLOCKS, "blocks"), numpy_model(HAND, "hand")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    return {"x": rng.standard_normal((3, 6)), "w": rng.standard_normal((3, 6))}


def test_params_are_named_by_instance_path(pair_of_models):
    m, hand = pair_of_models
    names = list(m.init_params(0))
    assert names[:7] == ["p.a.ln.gamma", "p.a.ln.beta", "p.a.fc1.W", "p.a.fc1.b",
                         "p.a.fc2.W", "p.a.fc2.b", "p.a.s"]
    assert names[-7:] == ["tower.1.ln.gamma", "tower.1.ln.beta", "tower.1.fc1.W",
                          "tower.1.fc1.b", "tower.1.fc2.W", "tower.1.fc2.b", "tower.1.s"]
    assert len(names) == 28
    assert sorted(hand_name(k) for k in names) == sorted(hand.init_params(0))
    p = m.init_params(0)
    assert p["p.b.fc1.W"].shape == (6, 12) and p["tower.0.s"].shape == (6,)
    np.testing.assert_array_equal(p["tower.0.s"], np.ones(6))          # its initialiser


def test_same_as_hand_written_in_every_entry(pair_of_models, data):
    m, hand = pair_of_models
    p = perturbed(m.init_params(1), 2)
    ph = {hand_name(k): v for k, v in p.items()}
    loss, grads = m.loss_and_grad(p, **data)
    loss_h, grads_h = hand.loss_and_grad(ph, **data)
    assert loss == loss_h
    for k in p:
        np.testing.assert_array_equal(grads[k], grads_h[hand_name(k)], err_msg=k)
    rng = np.random.default_rng(3)
    v = {k: rng.standard_normal(a.shape) for k, a in p.items()}
    vh = {hand_name(k): a for k, a in v.items()}
    outs, tans = m.jvp(p, v, x=data["x"])
    outs_h, tans_h = hand.jvp(ph, vh, x=data["x"])
    np.testing.assert_array_equal(outs["y"], outs_h["y"])
    np.testing.assert_array_equal(tans["y"], tans_h["y"])
    g = rng.standard_normal((3, 6))
    vj, vj_h = m.vjp(p, {"y": g}, x=data["x"]), hand.vjp(ph, {"y": g}, x=data["x"])
    hv, hv_h = m.hvp(p, v, **data), hand.hvp(ph, vh, **data)
    for k in p:
        np.testing.assert_array_equal(vj[k], vj_h[hand_name(k)], err_msg=k)
        np.testing.assert_array_equal(hv[k], hv_h[hand_name(k)], err_msg=k)


# ------------------------------------------------------------------ against torch nn.Module
def torch_net():
    """The nn.Module that BLOCKS describes, its parameter names mapped to gradc's."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Res(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.ln = nn.LayerNorm(n, eps=1e-5)
            self.fc1, self.fc2 = nn.Linear(n, 2 * n), nn.Linear(2 * n, n)
            self.s = nn.Parameter(torch.ones(n))

        def forward(self, h):
            return h + self.s * self.fc2(torch.tanh(self.fc1(self.ln(h))))

    class Pair(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.a, self.b = Res(m), Res(m)

        def forward(self, h):
            return self.b(self.a(h))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.p, self.tower = Pair(6), nn.Sequential(Res(6), Res(6))

        def forward(self, x):
            return self.tower(self.p(x))

    return torch, Net().double()


def to_torch(torch, params: dict) -> dict:
    """gradc params -> torch ``named_parameters`` names (Linear weights transposed)."""
    out = {}
    for k, v in params.items():
        head, _, leaf = k.rpartition(".")
        name = {"gamma": "weight", "beta": "bias", "W": "weight", "b": "bias"}.get(leaf, leaf)
        out[f"{head}.{name}"] = torch.tensor(v.T if leaf == "W" else v)
    return out


def from_torch(tensors: dict, like: dict) -> dict:
    """Inverse of :func:`to_torch` for a dict of gradients/tangents."""
    out = {}
    for k in like:
        head, _, leaf = k.rpartition(".")
        name = {"gamma": "weight", "beta": "bias", "W": "weight", "b": "bias"}.get(leaf, leaf)
        t = tensors[f"{head}.{name}"].detach().numpy()
        out[k] = t.T if leaf == "W" else t
    return out


def test_against_torch_module(pair_of_models, data):
    torch, net = torch_net()
    from torch.func import functional_call, grad, jvp, vjp

    m, _ = pair_of_models
    p = perturbed(m.init_params(4), 5)
    tp = to_torch(torch, p)
    assert set(tp) == {k for k, _ in net.named_parameters()}
    x, w = torch.tensor(data["x"]), torch.tensor(data["w"])

    def out(prm):
        return functional_call(net, prm, (x,))

    def loss(prm):
        return (torch.sum(out(prm) * w) + 0.01 * (torch.sum(prm["tower.1.fc1.weight"] ** 2)
                                                   + torch.sum(prm["p.b.s"] ** 2)))

    got_loss, got_grads = m.loss_and_grad(p, **data)
    assert rel_err(got_loss, loss(tp).item()) < TOL
    want = from_torch(grad(loss)(tp), p)
    for k in p:
        assert rel_err(got_grads[k], want[k]) < TOL, k

    rng = np.random.default_rng(6)
    v = {k: rng.standard_normal(a.shape) for k, a in p.items()}
    tv = to_torch(torch, v)
    y, ty = jvp(out, (tp,), (tv,))
    outs, tans = m.jvp(p, v, x=data["x"])
    assert rel_err(outs["y"], y.numpy()) < TOL and rel_err(tans["y"], ty.numpy()) < TOL
    g = rng.standard_normal((3, 6))
    _, pull = vjp(out, tp)
    want = from_torch(pull(torch.tensor(g))[0], p)
    got = m.vjp(p, {"y": g}, x=data["x"])
    _, hv_t = jvp(grad(loss), (tp,), (tv,))
    want_hv, got_hv = from_torch(hv_t, p), m.hvp(p, v, **data)
    for k in p:
        assert rel_err(got[k], want[k]) < TOL, k
        assert rel_err(got_hv[k], want_hv[k]) < TOL, k


def test_cpu_target_agrees():
    """One Numba (cpu target) build of a small block model: its loss and gradients equal
    the numpy target's to rounding."""
    src = """
input x : f64[B, 3]
block res(n) {
    layer fc = dense(n -> n)
    fn forward(h) = h + tanh(fc(h))
}
layer t = repeat(res(3), 2)
loss = sum(t(x) ^ 2)
"""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3))
    cpu = gradc.compile_string(src, name="cpu_blocks", target="cpu", dtype="f64")
    ref = numpy_model(src, "cpu_blocks")
    p = perturbed(cpu.init_params(0), 1)
    (lc, gc), (ln, gn) = cpu.loss_and_grad(p, x=x), ref.loss_and_grad(p, x=x)
    assert sorted(gc) == ["t.0.fc.W", "t.0.fc.b", "t.1.fc.W", "t.1.fc.b"]
    assert rel_err(lc, ln) < 1e-13
    for k in gc:
        assert rel_err(gc[k], gn[k]) < 1e-12, k


# ------------------------------------------------------------------ forms
def loss_and_grads(src: str, name: str, inputs: dict, params=None):
    m = numpy_model(src, name)
    p = params if params is not None else perturbed(m.init_params(0), 1)
    return m.loss_and_grad(p, **inputs), p


def test_multi_statement_fn_equals_one_expression():
    body = "fn f(z) {\n    a = z * z\n    a = sin(a) + a\n    return a * z\n}\n"
    one = "fn f(z) = (sin(z * z) + z * z) * z\n"
    rest = "input x : f64[5]\nparam c : f64[5]\nloss = sum(f(x * c))\n"
    x = np.linspace(-1, 1, 5)
    (l1, g1), p = loss_and_grads(body + rest, "lets", {"x": x})
    (l2, g2), _ = loss_and_grads(one + rest, "one", {"x": x}, p)
    c = p["c"]
    z = x * c
    assert rel_err(l1, np.sum((np.sin(z * z) + z * z) * z)) < 1e-14 and l1 == l2
    np.testing.assert_array_equal(g1["c"], g2["c"])


def test_forward_as_one_expression_and_block_arguments_in_expressions():
    """``fn forward(h) = EXPR``; a block argument used as a value (``h / n``); sizes
    ``n / 2`` (exact division), keyword arguments of an instance."""
    src = """
input x : f64[2, 4]
block half(n) {
    layer fc = dense(n -> n / 2)
    fn forward(h) = fc(h) / n
}
layer b = half(n=4)
loss = sum(b(x))
"""
    x = np.arange(8.0).reshape(2, 4)
    (loss, grads), p = loss_and_grads(src, "half", {"x": x})
    assert p["b.fc.W"].shape == (4, 2)
    assert rel_err(loss, np.sum((x @ p["b.fc.W"] + p["b.fc.b"]) / 4)) < 1e-14
    np.testing.assert_allclose(grads["b.fc.b"], [0.5, 0.5], rtol=1e-14)


def test_instances_are_independent_and_compose():
    """Two instances of one block own separate params; instances compose with >> and |>
    like any layer (and with activations)."""
    src = """
input x : f64[3, 2]
block lin(n) {
    layer fc = dense(n -> n, bias=false)
    fn forward(h) = fc(h)
}
layer a = lin(2)
layer b = lin(2)
layer net = a >> relu >> b
output y = x |> net
loss = sum(y)
"""
    m = numpy_model(src, "compose")
    p = {"a.fc.W": np.array([[1.0, -2.0], [0.5, 1.0]]), "b.fc.W": np.array([[2.0, 0], [1, 3]])}
    x = np.array([[1.0, 2], [-1, 0.5], [0.25, -3]])
    want = np.maximum(x @ p["a.fc.W"], 0) @ p["b.fc.W"]
    np.testing.assert_array_equal(m.forward(p, x=x)["y"], want)


# ------------------------------------------------------------------ random models
@pytest.mark.parametrize("seed", range(4))
def test_random_block_models_equal_their_inlined_twin(seed):
    block, hand, mapping = random_case(seed)
    print(f"seed {seed}:\n{block}")
    mb, mh = numpy_model(block, f"rb{seed}"), numpy_model(hand, f"rh{seed}")
    p = perturbed(mb.init_params(seed), seed + 100)
    assert set(p) == set(mapping) and set(mh.init_params(0)) == set(mapping.values())
    x = np.random.default_rng(seed).standard_normal((3, p["net.0.g"].shape[0]))
    (lb, gb), (lh, gh) = mb.loss_and_grad(p, x=x), \
        mh.loss_and_grad({mapping[k]: v for k, v in p.items()}, x=x)
    assert lb == lh, seed
    for k in p:
        np.testing.assert_array_equal(gb[k], gh[mapping[k]], err_msg=f"seed {seed}: {k}")


@pytest.mark.slow
def test_the_blocks_fuzzers_slice_finds_nothing_new():
    """The campaign's blocks fuzzer (tests/harness/fuzz/blocks.py) on a slice of seeds
    drawn from GRADC_TEST_SEED: every random block model bitwise equals its twin."""
    tally = campaign.blocks(count=4, seed0=seeds.seed(3), target="numpy")
    print(tally.report())
    assert tally.failure() is None, tally.failure()
    assert tally.counts["block:bitwise:numpy"] == 4


def test_the_blocks_fuzzer_reports_a_twin_that_differs():
    """The fuzzer can fail: a twin whose loss is scaled is a finding naming the loss."""
    block, hand, mapping = random_case(0)
    assert "loss = mean(" in hand
    outcome = blocks_fuzzer.check_case(block, hand.replace("loss = mean(", "loss = 1.5 * mean("),
                                       mapping, 0)
    assert outcome.finding and outcome.category == "block:differs:numpy", outcome
    assert outcome.detail.startswith("loss"), outcome.detail


# ------------------------------------------------------------------ show
def test_show_lists_instances_as_a_tree(tmp_path):
    path = tmp_path / "tree.grad"
    path.write_text("""input x : f32[B, 4]
block res(n) {
    layer fc = dense(n -> n)
    param s : f32[n]
    fn forward(h) = h + s * fc(h)
}
block two(n) {
    layer a = res(n)
    layer t = repeat(res(n), 2)
    fn forward(h) = t(a(h))
}
layer top = two(4)
output y = top(x)
""")
    run = subprocess.run([sys.executable, "-m", "gradc", "show", str(path)],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.split("\n")
    start = lines.index("block instances (5)")
    assert lines[start:start + 18] == [
        "block instances (5)",
        "  top = two(n=4)",
        "    a = res(n=4)",
        "      fc.W    f32[4, 4]  ~ glorot_uniform",
        "      fc.b    f32[4]     ~ zeros",
        "      s       f32[4]     ~ zeros",
        "    t = repeat(res(4), 2)",
        "      0 = res(n=4)",
        "        fc.W  f32[4, 4]  ~ glorot_uniform",
        "        fc.b  f32[4]     ~ zeros",
        "        s     f32[4]     ~ zeros",
        "      1 = res(n=4)",
        "        fc.W  f32[4, 4]  ~ glorot_uniform",
        "        fc.b  f32[4]     ~ zeros",
        "        s     f32[4]     ~ zeros",
        "inputs",
        "  x  f32[B, 4]",
        "outputs",
    ]


# ------------------------------------------------------------------ errors
GOLDEN = Path(__file__).parent / "golden" / "blocks"


@pytest.mark.parametrize("name", sorted(p.stem for p in GOLDEN.glob("*.grad")))
def test_golden_block_errors(name):
    """Each ``tests/ir/golden/blocks/NAME.grad`` gives exactly the text of ``NAME.err``: the
    line in the block, its caret, and a note naming the instance (innermost first)."""
    path = GOLDEN / f"{name}.grad"
    with pytest.raises(GradcError) as info:
        front(Source(path.read_text(encoding="utf-8"), path.name), Options.make())
    assert str(info.value) + "\n" == (GOLDEN / f"{name}.err").read_text(encoding="utf-8")


def test_golden_block_error_files():
    names = {p.stem for p in GOLDEN.glob("*.grad")}
    assert names == {p.stem for p in GOLDEN.glob("*.err")}
    assert {"size", "shape", "nested", "nested_size", "repeat_mismatch", "recursive",
            "cycle", "outside", "no_forward", "duplicate", "unclosed", "fn_body"} <= names
