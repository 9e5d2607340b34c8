"""Second-order derivatives through the rnn's recurrences, on the NumPy reference interpreter.

``scan`` (h_t = tanh(xw_t + h_{t-1} wh)) differentiates to ``scan_bwd`` (backprop through
time) and ``scan_lin`` (the tangent recurrence); differentiating those again needs their own
rules (``gradc/kinds/recurrences.py``). Checked here, in float64 and with no code generation:

* each rule of ``scan_lin`` and ``scan_bwd`` on its own: the JVP against central differences
  of the op (every subset of its inputs moving, tanh-saturated h = ±1 included) and the VJP
  against the JVP (the dot-product test) and against central differences;
* the Hessian-vector product of a model's loss, built four ways on the model's graph —
  forward-over-reverse (``jvp`` of ``vjp``'s gradients), reverse-over-reverse (``vjp`` of
  ``<grad, v>``), reverse-over-forward (``vjp`` of ``jvp``'s scalar tangent of the loss) and
  forward-over-forward (``jvp`` of that tangent: ``w^T H v``) — against central differences
  of the gradient, for two rnn models, a few seeded random draws each.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import sympy

from gradc.autodiff.forward import jvp
from gradc.autodiff.reverse import vjp
from gradc.ir.graph import Graph
from gradc.passes.programs import leaf
from gradc.pipeline import Options, front
from gradc.runtime.reference import evaluate
from gradc.source import Source

from tests.harness.oracles import bind_dims, rel_err

EPS = 1e-5      # central differences in float64: truncation ~EPS^2, rounding ~1e-16 / EPS
RTOL = 1e-6
DOT_TOL = 1e-10
SEEDS = (0, 1, 2)


# ---------------------------------------------------------------------- the ops on their own
def _op_graph(op: str, hidden: int):
    """A graph computing ``op(h, wh, z)`` over leaves h, z [B, T, hidden] and wh."""
    g = Graph("op", "f64")
    b, t = sympy.Symbol("B"), sympy.Symbol("T")
    seq = (b, t, sympy.Integer(hidden))
    h = g.add("input", (), seq, "f64", None, "h", name="h")
    wh = g.add("param", (), (sympy.Integer(hidden),) * 2, "f64", None, "wh", name="wh")
    z = g.add("input", (), seq, "f64", None, "z", name="z")
    return g, [h, wh, z], g.add(op, (h, wh, z), seq, "f64")


def _op_values(rng, batch: int, steps: int, hidden: int, saturated: bool) -> list[np.ndarray]:
    h = np.tanh(rng.standard_normal((batch, steps, hidden)))
    if saturated:       # tanh rounds to ±1 in float64 far enough out: D_t = 0 there
        h[rng.random(h.shape) < 0.3] = 1.0
        h[0, 0, 0] = -1.0
    wh = rng.standard_normal((hidden, hidden)) / np.sqrt(hidden)
    return [h, wh, rng.standard_normal((batch, steps, hidden))]


def _eval(g, roots, leaves, values, extra=()):
    env = {n.id: v for n, v in zip(leaves, values)}
    env.update({n.id: v for n, v in extra})
    dims = {"B": values[0].shape[0], "T": values[0].shape[1]}
    return evaluate(g, roots, env, dims)


OP_CASES = [(op, shape) for op in ("scan_lin", "scan_bwd")
            for shape in ((2, 5, 3), (3, 4, 2), (1, 1, 4))]


@pytest.mark.parametrize("op,shape", OP_CASES, ids=[f"{o}-{s}" for o, s in OP_CASES])
@pytest.mark.parametrize("saturated", [False, True], ids=["inside", "saturated"])
def test_op_jvp_matches_finite_differences(op, shape, saturated):
    batch, steps, hidden = shape
    for seed, moving in itertools.product(SEEDS, [(0,), (1,), (2,), (0, 1, 2)]):
        g, leaves, out = _op_graph(op, hidden)
        rng = np.random.default_rng(seed)
        vals = _op_values(rng, batch, steps, hidden, saturated)
        dirs = [rng.standard_normal(v.shape) if i in moving else None
                for i, v in enumerate(vals)]
        tleaves = {n.id: leaf(g, "tangent", n.attrs["name"], n)
                   for n, d in zip(leaves, dirs) if d is not None}
        (tan,) = jvp(g, [out], tleaves)
        extra = [(tleaves[n.id], d) for n, d in zip(leaves, dirs) if d is not None]
        (got,) = _eval(g, [tan], leaves, vals, extra)

        def at(step, vals=vals, dirs=dirs, g=g, leaves=leaves, out=out):
            moved = [v if d is None else v + step * d for v, d in zip(vals, dirs)]
            return _eval(g, [out], leaves, moved)[0]

        fd = (at(EPS) - at(-EPS)) / (2 * EPS)
        err = rel_err(got, fd, floor=1e-9)
        assert err <= RTOL, f"{op} seed {seed} moving {moving}: jvp vs fd {err:.3g}"


@pytest.mark.parametrize("op,shape", OP_CASES, ids=[f"{o}-{s}" for o, s in OP_CASES])
@pytest.mark.parametrize("saturated", [False, True], ids=["inside", "saturated"])
def test_op_vjp_is_the_transpose_of_its_jvp(op, shape, saturated):
    batch, steps, hidden = shape
    for seed in SEEDS:
        g, leaves, out = _op_graph(op, hidden)
        rng = np.random.default_rng(seed)
        vals = _op_values(rng, batch, steps, hidden, saturated)
        dirs = [rng.standard_normal(v.shape) for v in vals]
        ct = rng.standard_normal(vals[0].shape)
        c_leaf = leaf(g, "cotangent", "out", out)
        cots = vjp(g, [(out, c_leaf)], leaves)
        tleaves = {n.id: leaf(g, "tangent", n.attrs["name"], n) for n in leaves}
        (tan,) = jvp(g, [out], tleaves)
        extra = [(c_leaf, ct)] + [(tleaves[n.id], d) for n, d in zip(leaves, dirs)]
        *grads, jt = _eval(g, [*cots, tan], leaves, vals, extra)
        for grad, v in zip(grads, vals):
            assert grad.shape == v.shape and np.all(np.isfinite(grad))
        lhs = float(np.sum(ct * jt))
        rhs = sum(float(np.sum(gr * d)) for gr, d in zip(grads, dirs))
        scale = sum(np.linalg.norm(gr) * np.linalg.norm(d) for gr, d in zip(grads, dirs))
        err = rel_err(rhs, lhs, floor=1e-6 * scale)
        assert err <= DOT_TOL, f"{op} seed {seed}: <vjp(c), t> = {rhs} vs <c, jvp(t)> = {lhs}"

        def at(step, vals=vals, dirs=dirs, g=g, leaves=leaves, out=out):
            moved = [v + step * d for v, d in zip(vals, dirs)]
            return _eval(g, [out], leaves, moved)[0]

        fd = float(np.sum(ct * (at(EPS) - at(-EPS)))) / (2 * EPS)
        err = rel_err(rhs, fd, floor=1e-9 * scale)
        assert err <= RTOL, f"{op} seed {seed}: <vjp(c), t> = {rhs} vs fd {fd}"


# ---------------------------------------------------------------------- Hessian-vector products
MODELS = {
    # an rnn over float features and a per-step classifier; x is differentiated too
    "rnn_ce": ("""
model rnn_ce
input  x : f64[B, T, 3]
input  y : i64[B, T]
layer  cell = rnn(3 -> 4)
layer  proj = dense(4 -> 5)
output logits = x |> cell >> proj
loss   = cross_entropy(logits, y)
""", ("x",), {"B": 2, "T": 5}),
    # embedded ids through two stacked rnns and a squared error on the last layer
    "stacked": ("""
model stacked
input  ids : i64[B, T]
input  target : f64[B, T, 2]
layer  emb = embedding(6 -> 3)
layer  r1 = rnn(3 -> 5)
layer  r2 = rnn(5 -> 2)
output out = ids |> emb >> r1 >> r2
loss   = mean((out - target) ^ 2) + 0.1 * sum(r1.Wh ^ 2)
""", (), {"B": 3, "T": 4}),
}


def _model(name: str):
    text, wrt, dims = MODELS[name]
    graph = front(Source(text, f"{name}.grad"), Options.make(dtype="f64", wrt=wrt))[0]
    leaves = list(graph.params.values()) + [graph.inputs[w] for w in wrt]
    return graph, leaves, dims


def _model_values(graph, leaves, dims, rng):
    """Random values of every input (labels in range) and of the differentiated leaves."""
    inputs = {}
    for name, node in graph.inputs.items():
        shape = tuple(int(d.xreplace({s: dims[s.name] for s in d.free_symbols}))
                      for d in node.shape)
        if node.is_float:
            inputs[name] = rng.standard_normal(shape)
        else:
            inputs[name] = rng.integers(0, 5 if name == "y" else 6, shape)
    diff = {}
    for n in leaves:
        name = n.attrs["name"]
        if n.op == "param":
            shape = tuple(int(d) for d in n.shape)
            diff[name] = rng.standard_normal(shape) * (0.6 if len(shape) > 1 else 0.3)
        else:
            diff[name] = inputs[name]
    return inputs, diff


def _run(graph, roots, leaves, inputs, diff, extra=()):
    env = {n.id: np.asarray(v) for n, v in ((graph.inputs[k], v) for k, v in inputs.items())}
    env.update({n.id: diff[n.attrs["name"]] for n in leaves})
    env.update({n.id: v for n, v in extra})
    return evaluate(graph, roots, env, bind_dims(graph, inputs))


def _fd_hvp(name, inputs, diff, v):
    """Central differences of the gradient along ``v`` (on a fresh graph of the model)."""
    graph, leaves, _ = _model(name)
    grads = vjp(graph, [(graph.loss, graph.const(1, (), "f64"))], leaves)

    def grad_at(step):
        moved = {k: x + step * v[k] for k, x in diff.items()}
        ins = {k: moved.get(k, x) for k, x in inputs.items()}
        return _run(graph, grads, leaves, ins, moved)

    plus, minus = grad_at(EPS), grad_at(-EPS)
    return [(p - m) / (2 * EPS) for p, m in zip(plus, minus)]


def _flat(arrays) -> np.ndarray:
    return np.concatenate([np.ravel(a) for a in arrays])


def _draw(name, seed):
    graph, leaves, dims = _model(name)
    rng = np.random.default_rng(seed)
    inputs, diff = _model_values(graph, leaves, dims, rng)
    v = {k: rng.standard_normal(x.shape) for k, x in diff.items()}
    w = {k: rng.standard_normal(x.shape) for k, x in diff.items()}
    return graph, leaves, inputs, diff, v, w


CASES = [(m, s) for m in MODELS for s in SEEDS]


@pytest.mark.parametrize("name,seed", CASES, ids=[f"{m}-{s}" for m, s in CASES])
def test_hvp_forward_over_reverse(name, seed):
    graph, leaves, inputs, diff, v, _ = _draw(name, seed)
    grads = vjp(graph, [(graph.loss, graph.const(1, (), "f64"))], leaves)
    before = {n.id for n in graph.topo(grads) if n.op == "scan_bwd"}
    assert before
    tl = {n.id: leaf(graph, "tangent", n.attrs["name"], n) for n in leaves}
    hv = jvp(graph, grads, tl)
    after = {n.id for n in graph.topo(hv) if n.op == "scan_bwd"}
    assert after - before, "scan_bwd's JVP is expected to add scan_bwd nodes"
    got = _run(graph, hv, leaves, inputs, diff,
               [(tl[n.id], v[n.attrs["name"]]) for n in leaves])
    want = _fd_hvp(name, inputs, diff, v)
    for n, a, b in zip(leaves, got, want):
        assert a.shape == b.shape, n.attrs["name"]
    err = rel_err(_flat(got), _flat(want), floor=1e-9)
    assert err <= RTOL, f"{name} seed {seed}: H v (fwd-over-rev) vs fd {err:.3g}"


@pytest.mark.parametrize("name,seed", CASES, ids=[f"{m}-{s}" for m, s in CASES])
def test_hvp_reverse_over_reverse(name, seed):
    graph, leaves, inputs, diff, v, _ = _draw(name, seed)
    grads = vjp(graph, [(graph.loss, graph.const(1, (), "f64"))], leaves)
    cl = [leaf(graph, "cotangent", n.attrs["name"], n) for n in leaves]
    hv = vjp(graph, list(zip(grads, cl)), leaves)      # d<grad, v>/dθ = H v (H symmetric)
    got = _run(graph, hv, leaves, inputs, diff,
               [(c, v[n.attrs["name"]]) for c, n in zip(cl, leaves)])
    want = _fd_hvp(name, inputs, diff, v)
    err = rel_err(_flat(got), _flat(want), floor=1e-9)
    assert err <= RTOL, f"{name} seed {seed}: H v (rev-over-rev) vs fd {err:.3g}"


@pytest.mark.parametrize("name,seed", CASES, ids=[f"{m}-{s}" for m, s in CASES])
def test_hvp_over_forward(name, seed):
    """Reverse-over-forward (vjp of the loss's tangent: H v, through scan_lin's VJP) and
    forward-over-forward (its jvp along w: w^T H v, through scan_lin's JVP)."""
    graph, leaves, inputs, diff, v, w = _draw(name, seed)
    tl = {n.id: leaf(graph, "tangent", n.attrs["name"], n) for n in leaves}
    (dloss,) = jvp(graph, [graph.loss], tl)
    assert "scan_lin" in {n.op for n in graph.topo([dloss])}
    hv = vjp(graph, [(dloss, graph.const(1, (), "f64"))], leaves)
    t2 = {n.id: leaf(graph, "tangent", "2:" + n.attrs["name"], n) for n in leaves}
    (whv,) = jvp(graph, [dloss], t2)
    extra = [(tl[n.id], v[n.attrs["name"]]) for n in leaves]
    extra += [(t2[n.id], w[n.attrs["name"]]) for n in leaves]
    *got, got_whv = _run(graph, [*hv, whv], leaves, inputs, diff, extra)
    want = _fd_hvp(name, inputs, diff, v)
    err = rel_err(_flat(got), _flat(want), floor=1e-9)
    assert err <= RTOL, f"{name} seed {seed}: H v (rev-over-fwd) vs fd {err:.3g}"
    want_whv = float(_flat(want) @ _flat([w[n.attrs["name"]] for n in leaves]))
    err = rel_err(float(got_whv), want_whv, floor=1e-9)
    assert err <= RTOL, f"{name} seed {seed}: w^T H v (fwd-over-fwd) vs fd {err:.3g}"
