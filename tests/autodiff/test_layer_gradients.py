"""Every layer and every shape built-in against the gradient oracles of
``tests/harness/oracles.py``.

A row per layer (and per variant) and per shape built-in (``concat``, ``take``, indexing and
slicing, ``transpose``, ``.T``, ``reshape``), in the style of ``tests/harness/op_specs.py`` but with
layer declarations: a row's ``decls`` are templates where ``{pre}`` is the row's prefix, so that
every layer (and so every param, ``oK_fc.W``) belongs to one row. The rows of one group are
compiled into ONE model (an output ``oK`` per row and ``loss = sum(o0 * w0) + ...``); groups
are kept small because Numba's compile time grows faster than the kernel's size. Each test
checks one row inside its model (the other rows' loss weights are zero, only the row's
leaves move): finite differences in float64 in random directions of ``loss_and_grad``,
``jvp`` and ``vjp`` (with the dot-product test against ``jvp``), and the NumPy reference
interpreter on the same graph.

``batchnorm`` and ``dropout`` make a model stateful: ``loss_and_grad`` runs them in train
mode (batch statistics, a seeded dropout mask: the tests fix the seed), ``forward``/``jvp``/
``vjp`` in eval mode (running statistics, set away from their initial values by a
``train_step`` first; dropout is the identity). Their reference check evaluates both graphs
with the buffers and the noise that the compiled module uses.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from tests.harness.op_specs import Arg, Group, Row, distinct_along
from tests.harness.oracles import (diff_leaves, directions, fd_check_jvp, fd_check_loss,
                                   fd_check_vjp, reference_check, reference_graph,
                                   reference_values, rel_err)

pytestmark = pytest.mark.slow  # (every test here takes more than a few seconds)


ROWS: list[Row] = []


def row(name, expr, args, group, decls=(), **kw):
    """A :class:`op_specs.Row` whose ``decls`` declare the row's layers."""
    ROWS.append(Row(name, expr, dict(args), group, decls=tuple(decls), **kw))


def windows_distinct(x_name: str, k: int, stride: int):
    """Validity of a max-pool row: no near-ties inside any pooling window of ``x``."""
    def ok(v):
        x = v[x_name]
        n, c, h, w = x.shape
        for i in range(0, h - k + 1, stride):
            for j in range(0, w - k + 1, stride):
                win = x[:, :, i:i + k, j:j + k].reshape(n * c, k * k)
                if not distinct_along(win, 1):
                    return False
        return True
    return ok


def A(*shape, **kw) -> Arg:
    return Arg(shape=shape, **kw)


def IDX(*shape, classes) -> Arg:
    return Arg(shape=shape, kind="label", classes=classes)


# ---- dense, layernorm, compositions and user fns that call layers
row("dense", "{pre}fc({x})", {"x": A("B", 4)}, "dense", ["layer {pre}fc = dense(4 -> 3)"])
row("dense(3-d input)", "{x} |> {pre}fc", {"x": A("B", 2, 4)}, "dense",
    ["layer {pre}fc = dense(4 -> 3)"])
row("dense(bias=false)", "{pre}fc({x})", {"x": A("B", 4)}, "dense",
    ["layer {pre}fc = dense(4 -> 2, bias=false)"])
row("layernorm", "{pre}ln({x})", {"x": A("B", 3, 4)}, "dense", ["layer {pre}ln = layernorm(4)"])
row("fc >> tanh >> fc", "{x} |> {pre}net", {"x": A("B", 3)}, "dense",
    ["layer {pre}f1 = dense(3 -> 5)", "layer {pre}f2 = dense(5 -> 2)",
     "layer {pre}net = {pre}f1 >> tanh >> {pre}f2"])
row("fn calling layers (residual)", "{pre}block({x})", {"x": A("B", 3)}, "dense",
    ["layer {pre}f1 = dense(3 -> 4)", "layer {pre}f2 = dense(4 -> 3)",
     "fn {pre}block(h) = h + {pre}f2(sigmoid({pre}f1(h)))"])

# ---- convolutions and pooling
row("conv2d(stride=2,pad=1)", "{pre}cv({x})", {"x": A("B", 2, 5, 5)}, "conv",
    ["layer {pre}cv = conv2d(2 -> 3, 3, stride=2, pad=1)"])
row("conv2d(k=2)", "{pre}cv({x})", {"x": A("B", 1, 4, 3)}, "conv",
    ["layer {pre}cv = conv2d(1 -> 2, 2)"])
row("conv >> relu >> maxpool", "{x} |> {pre}net", {"x": A("B", 1, 4, 4)}, "conv",
    ["layer {pre}cv = conv2d(1 -> 2, 3, pad=1)", "layer {pre}mp = maxpool2d(2)",
     "layer {pre}net = {pre}cv >> relu >> {pre}mp"])
row("maxpool2d(2)", "{pre}mp({x})", {"x": A("B", 2, 4, 4)}, "pool",
    ["layer {pre}mp = maxpool2d(2)"], valid=windows_distinct("x", 2, 2))
row("maxpool2d(3,stride=2)", "{pre}mp({x})", {"x": A("B", 1, 5, 5)}, "pool",
    ["layer {pre}mp = maxpool2d(3, stride=2)"], valid=windows_distinct("x", 3, 2))
row("avgpool2d(2)", "{pre}ap({x})", {"x": A("B", 2, 4, 5)}, "pool",
    ["layer {pre}ap = avgpool2d(2)"])
row("avgpool2d(3,stride=2)", "{pre}ap({x})", {"x": A("B", 1, 5, 5)}, "pool",
    ["layer {pre}ap = avgpool2d(3, stride=2)"])

# ---- gathers (embedding is one) and sequences (rnn)
row("embedding", "{pre}emb({i})", {"i": IDX("B", 3, classes=6)}, "gather",
    ["layer {pre}emb = embedding(6 -> 3)"])
row("embedding * x", "{pre}emb({i}) * {x}", {"i": IDX("B", classes=3), "x": A("B", 2)},
    "gather", ["layer {pre}emb = embedding(3 -> 2)"])
row("rnn", "{pre}rn({x})", {"x": A("B", 4, 3)}, "seq", ["layer {pre}rn = rnn(3 -> 4)"])
row("embedding >> rnn", "{i} |> {pre}net", {"i": IDX("B", 3, classes=5)}, "seq",
    ["layer {pre}emb = embedding(5 -> 2)", "layer {pre}rn = rnn(2 -> 3)",
     "layer {pre}net = {pre}emb >> {pre}rn"])

# ---- attention (its own model: the biggest kernels)
row("attention(4,2)", "{pre}at({x})", {"x": A("B", 3, 4)}, "attention",
    ["layer {pre}at = attention(4, 2)"])

# ---- shape built-ins (small groups: concat, gather, index, transpose)
S = A("B", 5)
row("concat(axis=1)", "concat({a}, {b}, axis=1)", {"a": A("B", 2), "b": A("B", 3)}, "concat")
row("concat(a,b,c)", "concat({a}, {b}, {c})", {"a": A("B", 2), "b": A("B", 1), "c": A("B", 2)},
    "concat")
row("concat(axis=0)", "concat({a}, {b}, axis=0)", {"a": A(2, 3), "b": A(1, 3)}, "concat")
row("concat(3-d,axis=-2)", "concat({a}, {b}, axis=-2)", {"a": A("B", 1, 2), "b": A("B", 2, 2)},
    "concat")
row("concat(x,x)", "concat({a}, 2 * {a}, axis=1)", {"a": A("B", 2)}, "concat")
row("take(axis=1)", "take({a}, {i}, 1)", {"a": S, "i": IDX(3, classes=5)}, "gather")
row("take(axis=0,repeats)", "take({a}, {i}, 0)", {"a": A(3, 2), "i": IDX("B", 2, classes=3)},
    "gather")
row("take(param)", "take({W}, {i}, 0) * {x}",
    {"W": A(4, 3, kind="param"), "i": IDX("B", classes=4), "x": A("B", 3)}, "gather")
row("x[:, 0:3]", "{a}[:, 0:3]", {"a": S}, "index")
row("x[:, 1]", "{a}[:, 1]", {"a": S}, "index")
row("x[:, -1]", "{a}[:, -1]", {"a": S}, "index")
row("x[:, -3:]", "{a}[:, -3:]", {"a": S}, "index")
row("x[:, ::2]", "{a}[:, ::2]", {"a": S}, "index")
row("x[:, 1:5:2]", "{a}[:, 1:5:2]", {"a": S}, "index")
row("x[0]", "{a}[0]", {"a": S}, "index")
row("x[-1]", "{a}[-1]", {"a": S}, "index")
row("x[:, -1, :]", "{a}[:, -1, :]", {"a": A("B", 3, 2)}, "index")
row("x[:, 1:, ::2]", "{a}[:, 1:, ::2]", {"a": A("B", 3, 5)}, "index")
row("x[1, :, 0]", "{a}[1, :, 0]", {"a": A(3, "B", 2)}, "index")
row("x.T", "{a}.T", {"a": A("B", 3)}, "transpose")
row("x.T(3-d)", "{a}.T", {"a": A(2, "B", 3)}, "transpose")
row("transpose(x)", "transpose({a})", {"a": A("B", 3)}, "transpose")
row("transpose(x,(1,0,2))", "transpose({a}, (1, 0, 2))", {"a": A(2, "B", 3)}, "transpose")
row("transpose(x,(2,0,1))", "transpose({a}, (2, 0, 1))", {"a": A("B", 2, 3)}, "transpose")
row("reshape(x,[B,-1])", "reshape({a}, [B, -1])", {"a": A("B", 2, 3)}, "transpose")
row("reshape(x,[B,2,-1])", "reshape({a}, [B, 2, -1])", {"a": A("B", 6)}, "transpose")
row("reshape(x,[-1,3]) fixed", "reshape({a}, [-1, 3])", {"a": A(2, 3, 2)}, "transpose")
row("x.T @ W", "{a}.T @ {W}", {"a": A(4, 3), "W": A(4, 2, kind="param")}, "transpose")

# ---- stateful layers (train mode in loss_and_grad, eval mode in forward/jvp/vjp)
row("batchnorm([B,3])", "{pre}bn({x})", {"x": A("B", 3)}, "stateful",
    ["layer {pre}bn = batchnorm(3)"])
row("batchnorm([B,2,3,3])", "{pre}bn({x})", {"x": A("B", 2, 3, 3)}, "stateful",
    ["layer {pre}bn = batchnorm(2)"])
row("dropout(0.4)", "{pre}dr({x})", {"x": A("B", 3, 4)}, "stateful",
    ["layer {pre}dr = dropout(0.4)"])
row("dense >> dropout >> batchnorm", "{x} |> {pre}net", {"x": A("B", 3)}, "stateful",
    ["layer {pre}fc = dense(3 -> 4)", "layer {pre}dr = dropout(0.25)",
     "layer {pre}bn = batchnorm(4)", "layer {pre}net = {pre}fc >> {pre}dr >> {pre}bn"])

GROUPS: dict[str, list[Row]] = {}
for _r in ROWS:
    GROUPS.setdefault(_r.group, []).append(_r)
STATEFUL = {"stateful"}
SEED = 5


# ---------------------------------------------------------------------- the group models
class Seeded:
    """A model whose ``loss_and_grad`` and training ``forward`` use a fixed dropout seed
    (the oracles call the model with inputs only)."""

    def __init__(self, model, seed: int):
        self.model, self.seed, self.signature = model, seed, model.signature

    def loss_and_grad(self, params, **inputs):
        return self.model.loss_and_grad(params, seed=self.seed, **inputs)

    def forward(self, params, **inputs):
        return self.model.forward(params, **inputs)

    def jvp(self, params, tangents, **inputs):
        return self.model.jvp(params, tangents, **inputs)

    def vjp(self, params, cotangents, **inputs):
        return self.model.vjp(params, cotangents, **inputs)


class LayerGroup(Group):
    """:class:`op_specs.Group` of layer rows, compiled once in float64 (``compiled``), with
    random values for the params the layers own (not their initialisers' ones and zeros).
    A stateful group's running statistics are moved away from their initial values by one
    ``train_step`` (on copies of the params), and its ``loss_and_grad`` uses a fixed
    dropout seed."""

    def __init__(self, name: str, rows: list):
        super().__init__(name, rows)
        model = self.model("f64")
        for n, v in model.init_params(0).items():
            self.params.setdefault(n, self.rng.uniform(0.5, 1.5, v.shape) if "gamma" in n
                                   else 0.7 * self.rng.standard_normal(v.shape))
        self.compiled = model
        if name in STATEFUL:
            p = {k: v.copy() for k, v in self.params.items()}
            i = {k: (v * 1.5 + 0.3 if v.dtype.kind == "f" else v) for k, v in self.inputs.items()}
            model.train_step(p, lr=0.1, seed=SEED + 1, **i)
            self.compiled = Seeded(model, SEED)


@functools.cache
def group(name: str) -> LayerGroup:
    return LayerGroup(name, GROUPS[name])


ROW_PARAMS = [pytest.param(r, id=f"{r.group}:{r.name}") for r in ROWS]


def test_row_names_are_unique():
    assert len({r.name for r in ROWS}) == len(ROWS)


@pytest.mark.parametrize("r", ROW_PARAMS)
def test_fd_loss_and_grad(r: Row):
    g = group(r.group)
    params, inputs = g.values(r)
    fd_check_loss(g.compiled, params, inputs, g.wrt, tol=r.tol, only=g.row_leaves(r),
                  label=f"{r.name} ({g.out(r)})")


@pytest.mark.parametrize("r", ROW_PARAMS)
def test_fd_jvp(r: Row):
    g = group(r.group)
    params, inputs = g.values(r)
    fd_check_jvp(g.compiled, params, inputs, g.wrt, outputs=[g.out(r)], tol=r.tol,
                 only=g.row_leaves(r), label=f"{r.name} ({g.out(r)})")


@pytest.mark.parametrize("r", ROW_PARAMS)
def test_fd_vjp(r: Row):
    g = group(r.group)
    params, inputs = g.values(r)
    fd_check_vjp(g.compiled, params, inputs, g.wrt, output=g.out(r), tol=r.tol,
                 only=g.row_leaves(r), label=f"{r.name} ({g.out(r)})")


@pytest.mark.parametrize("r", [p for p in ROW_PARAMS if p.values[0].group not in STATEFUL])
def test_reference_interpreter(r: Row):
    g = group(r.group)
    params, inputs = g.values(r)
    rng = np.random.default_rng(1)
    tangents = directions(rng, diff_leaves(params, inputs, g.wrt), g.row_leaves(r))
    out = g.out(r)
    cot = {out: rng.standard_normal(np.shape(g.compiled.forward(params, **inputs)[out]))}
    reference_check(g.compiled, g.text, filename=g.filename, dtype="f64", wrt=g.wrt,
                    params=params, inputs=inputs, tangents=tangents, cotangents=cot,
                    outputs=[out], grads=g.row_leaves(r), label=f"{r.name} ({out})")


# ---------------------------------------------------------------------- stateful reference
@pytest.mark.parametrize("r", [p for p in ROW_PARAMS if p.values[0].group in STATEFUL])
def test_reference_interpreter_stateful(r: Row):
    g = group(r.group)
    m = g.compiled.model
    ents = reference_graph(g.text, g.filename, "f64", tuple(g.wrt))[1]
    params, inputs = g.values(r)
    out, leaves = g.out(r), g.row_leaves(r)
    diff = list(params) + list(g.wrt)
    errs = {}
    # train mode: loss_and_grad with the fixed seed (batch statistics, the dropout mask)
    loss, grads = m.loss_and_grad(params, seed=SEED, **inputs)
    ref = reference_values(*ents["loss_and_grad"], params, inputs, state=m.state, seed=SEED)
    errs["loss"] = rel_err(loss, ref[0])
    for name, want in zip(diff, ref[1:]):
        if name in leaves:
            errs[f"grad[{name}]"] = rel_err(grads[name], want, floor=1e-300)
    # forward in train mode
    got = m.forward(params, training=True, seed=SEED, **inputs)[out]
    ref = reference_values(*ents["forward_train"], params, inputs, state=m.state, seed=SEED)
    errs["forward_train"] = rel_err(got, ref[list(ents["forward_train"][0].outputs).index(out)])
    # eval mode: forward, jvp, vjp on the running statistics
    rng = np.random.default_rng(1)
    outs_names = list(ents["forward"][0].outputs)
    k = outs_names.index(out)
    errs["forward"] = rel_err(m.forward(params, **inputs)[out],
                              reference_values(*ents["forward"], params, inputs, state=m.state)[k])
    tangents = directions(rng, diff_leaves(params, inputs, g.wrt), leaves)
    _, tans = m.jvp(params, tangents, **inputs)
    ref = reference_values(*ents["jvp"], params, inputs, state=m.state, tangents=tangents)
    errs["jvp"] = rel_err(tans[out], ref[len(outs_names) + k])
    cot = {out: rng.standard_normal(np.shape(tans[out]))}
    grads = m.vjp(params, cot, **inputs)
    ref = reference_values(*ents["vjp"], params, inputs, state=m.state, cotangents=cot)
    for name, want in zip(diff, ref):
        if name in leaves:
            errs[f"vjp[{name}]"] = rel_err(grads[name], want, floor=1e-300)
    bad = {k: e for k, e in errs.items() if not e <= 1e-10}
    assert not bad, f"[{r.name} ({out})] compiled vs reference: {bad}"


def test_stateful_modes_differ():
    """Dropout really runs in two modes: the identity in eval mode, a seeded mask scaled by
    1 / (1 - p) in train mode."""
    g = group("stateful")
    m = g.compiled.model
    r = next(r for r in g.rows if r.name == "dropout(0.4)")
    params, inputs = g.values(r)
    o = g.out(r)
    x = inputs[f"{o}_x"]
    assert np.array_equal(m.forward(params, **inputs)[o], x)
    a = m.forward(params, training=True, seed=1, **inputs)[o]
    b = m.forward(params, training=True, seed=2, **inputs)[o]
    assert not np.array_equal(a != 0, b != 0)
    assert np.allclose(a[a != 0], x[a != 0] / 0.6, rtol=1e-15, atol=0)
