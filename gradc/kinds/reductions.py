"""Reductions over ``axes``: ``reduce`` (``kind`` 'sum' | 'max' | 'min') and
``logsumexp``. Their VJP broadcasts the cotangent times the weights (1 for sum, the
tie-shared mask for max/min, softmax for logsumexp); they run as
:class:`~gradc.passes.kernels.Reduce` kernels into which elementwise inputs fuse."""

from __future__ import annotations

import numpy as np
import sympy

from gradc.ir import build
from gradc.ir.graph import Graph, Node
from gradc.ir.shapes import keepdims_shape
from gradc.ir.sym import Equal
from gradc.kinds.kind import Kind
from gradc.passes.kernels import Reduce


def _spread(g: Graph, x: Node, ct: Node, axes) -> Node:
    """Return ``ct`` (reduced over ``axes`` of x) reshaped to broadcast against x."""
    return build.reshape(g, ct, keepdims_shape(x.shape, axes))


def _reduce_weights(g: Graph, n: Node) -> Node:
    """d out / d x of a reduction node, shaped like x."""
    (x,), axes = n.inputs, n.attrs["axes"]
    out_kd = _spread(g, x, n, axes)
    if n.op == "logsumexp":
        return build.ew(g, lambda a, m: sympy.exp(a - m), x, out_kd)
    if n.attrs["kind"] == "sum":
        return g.const(1, x.shape)
    mask = build.ew(g, Equal, x, out_kd)
    count = _spread(g, x, build.reduce(g, mask, "sum", axes), axes)
    return build.ew(g, lambda m, c: m / c, mask, count)


def _reduce_vjp(g: Graph, n: Node, ct: Node):
    (x,), axes = n.inputs, n.attrs["axes"]
    w = _reduce_weights(g, n)
    return [build.ew(g, lambda c, w_: c * w_, _spread(g, x, ct, axes), w)]


def _reduce_jvp(g: Graph, n: Node, tans):
    axes = n.attrs["axes"]
    if n.op == "reduce" and n.attrs["kind"] == "sum":
        return build.reduce(g, tans[0], "sum", axes)
    weighted = build.ew(g, lambda t, w_: t * w_, tans[0], _reduce_weights(g, n))
    return build.reduce(g, weighted, "sum", axes)


def _evaluate_reduce(n, ins, shape, dims):
    fn = {"sum": np.sum, "max": np.max, "min": np.min}[n.attrs["kind"]]
    return np.asarray(fn(ins[0], axis=n.attrs["axes"]), np.float64)


def _evaluate_logsumexp(n, ins, shape, dims):
    x, axes = ins[0], n.attrs["axes"]
    m = np.max(x, axis=axes, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    return np.squeeze(np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True)) + m, axes)


def _lower(s, n: Node, out):
    (x,) = n.inputs
    kind = n.attrs.get("kind", "logsumexp")
    expr = s.expr_of(x, tuple(range(x.rank)))
    return Reduce(out, kind, x.shape, n.attrs["axes"], expr, n.span)


def _keeps_rows(n: Node, live: set, samples) -> bool:
    return 0 not in n.attrs["axes"]


def _input_shape(n: Node):
    return n.inputs[0].shape


_RULES = dict(vjp=_reduce_vjp, jvp=_reduce_jvp, keeps_rows=_keeps_rows, fusing=True,
              space=_input_shape, lower=_lower, kernels=(Reduce,))

KINDS = (
    Kind("reduce", "x", ("kind", "axes"), "kind ('sum' | 'max' | 'min') over axes",
         evaluate=_evaluate_reduce,
         show=lambda n: f"reduce {n.attrs['kind']} axes={tuple(n.attrs['axes'])}", **_RULES),
    Kind("logsumexp", "x", ("axes",), "log(sum(exp(x))) over axes, max-shifted",
         evaluate=_evaluate_logsumexp,
         show=lambda n: f"logsumexp axes={tuple(n.attrs['axes'])}", **_RULES),
)
