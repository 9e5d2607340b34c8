"""Forward mode for ``grad(sum(u), v)`` by a few columns of per-sample points.

For ``v : [S, k]`` (S samples of k coordinates, k small) and ``u`` computed sample by
sample from ``v`` (row i of ``u`` depends on row i of ``v`` alone), the derivative of
``sum(u)`` is block-diagonal over the samples, and its column j is the tangent of ``u``
along the unit direction of column j, summed over u's other axes. k forward tangents
(:func:`gradc.autodiff.forward.jvp`) cost about k forward passes and need no stored
backward pass; nested, they are Taylor-style propagation of value, first and second
derivative through each layer. Reverse mode costs one backward pass that keeps every
activation; under a second ``grad`` or the params' gradient, reverse over reverse.

:func:`choose` decides by the shapes: forward when ``k <= MAX_COLUMNS`` and
:func:`mixing` finds no operation that mixes samples between ``v`` and ``u``; the reason
it gives otherwise is shown by ``gradc show``. Without a proof that samples stay apart,
forward mode would compute a different number (the sum over samples of the Jacobian's
columns), so a node kind without a ``keeps_rows`` rule (:mod:`gradc.kinds`: gathers,
scatters, im2col, recurrences) is treated as mixing.
"""

from __future__ import annotations

import sympy

from gradc.autodiff import forward
from gradc.autodiff.reverse import depends_on
from gradc.ir import build
from gradc.ir.graph import Graph, Node
from gradc.ir.shapes import fmt_shape
from gradc.kinds import KINDS

#: the most columns of v for which forward mode is chosen. Measured on the PINN step with
#: the Laplacian in d dims (python -m benchmarks.pinn --crossover, one thread): forward
#: mode's train_step has 24, 22 and 14 % fewer matrix-product FLOPs than reverse over
#: reverse at d = 1, 2, 4, in the same time (0.98x, 0.99x, 1.03x: the step is bound by
#: its elementwise loops there, not its products).
MAX_COLUMNS = 4


def choose(g: Graph, s: Node, v: Node) -> tuple[str, str]:
    """('forward' or 'reverse', why) for ``grad(s, v)``."""
    if v.rank != 2 or not v.shape[1].is_Integer:
        return "reverse", f"v is {fmt_shape(v.shape)}, not [samples, columns]"
    if int(v.shape[1]) > MAX_COLUMNS:
        return "reverse", f"v has {v.shape[1]} columns (forward mode: at most {MAX_COLUMNS})"
    u = summed(s)
    if u is None:
        return "reverse", "s is not a sum over all axes of a value"
    problem = mixing(g, u, v)
    if problem:
        return "reverse", problem
    k = int(v.shape[1])
    return "forward", f"{k} tangent column{'s' * (k > 1)}, samples kept apart"


def column_grad(g: Graph, s: Node, v: Node) -> Node:
    """``grad(s, v)`` by forward mode (only where :func:`choose` said 'forward')."""
    u, samples, k = summed(s), v.shape[0], int(v.shape[1])
    one = g.const(1, (samples, sympy.Integer(1)), v.dtype)
    parts = []
    for j in range(k):
        spec = (("r", 0, 1, samples), ("r", j, 1, 1))
        direction = one if k == 1 else build.unslice(g, one, spec, v.shape)
        (tan,) = forward.jvp(g, [u], {v.id: direction})
        col = build.reduce(g, tan, "sum", tuple(range(1, tan.rank)), keepdims=True)
        col = build.reshape(g, col, (samples, 1))
        parts.append(col if k == 1 else build.unslice(g, col, spec, v.shape))
    return parts[0] if k == 1 else build.ew(g, lambda *a: sympy.Add(*a), *parts)


def summed(s: Node) -> Node | None:
    """``u`` when ``s`` is ``sum(u)`` over all of u's (one or more) axes, else None."""
    if s.op == "reduce" and s.attrs["kind"] == "sum":
        (u,) = s.inputs
        if u.rank and tuple(s.attrs["axes"]) == tuple(range(u.rank)):
            return u
    return None


def mixing(g: Graph, u: Node, v: Node) -> str | None:
    """Why ``u`` may mix samples of ``v`` (the first node found), or None when every node
    between them keeps axis 0 as the sample axis, row by row."""
    samples = v.shape[0]
    live = depends_on(g, [u], [v])
    for n in g.topo([u]):
        if n.id not in live or n is v:
            continue
        keeps = KINDS[n.op].keeps_rows
        if not n.rank or n.shape[0] != samples or keeps is None or \
                not keeps(n, live, samples):
            where = f" (line {n.span.line})" if n.span is not None else ""
            return f"{n.op} {fmt_shape(n.shape)}{where} may mix samples"
    return None
