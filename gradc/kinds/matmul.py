"""``matmul``: ``op(a) @ op(b)`` with transpose flags ``ta``/``tb``, batch dims leading
both; a BLAS product (a :class:`~gradc.passes.kernels.Dot` kernel) on every target."""

from __future__ import annotations

import numpy as np

from gradc.ir import build
from gradc.ir.graph import Graph, Node
from gradc.kinds.kind import Kind
from gradc.passes.kernels import Buffer, Dot


def _matmul_vjp(g: Graph, n: Node, ct: Node):
    a, b = n.inputs
    ta, tb = n.attrs["ta"], n.attrs["tb"]
    da = build.matmul2(g, b, ct, tb, True) if ta else build.matmul2(g, ct, b, False, not tb)
    db = build.matmul2(g, ct, a, True, ta) if tb else build.matmul2(g, a, ct, not ta, False)
    return [da, db]


def _matmul_jvp(g: Graph, n: Node, tans):
    a, b = n.inputs
    ta, tb = n.attrs["ta"], n.attrs["tb"]
    terms = []
    if tans[0] is not None:
        terms.append(build.matmul2(g, tans[0], b, ta, tb))
    if tans[1] is not None:
        terms.append(build.matmul2(g, a, tans[1], ta, tb))
    return terms[0] if len(terms) == 1 else build.ew(g, lambda x, y: x + y, *terms)


def _evaluate(n, ins, shape, dims):
    a, b = ins
    a = np.swapaxes(a, -1, -2) if n.attrs["ta"] else a
    b = np.swapaxes(b, -1, -2) if n.attrs["tb"] else b
    return np.matmul(a, b)


def _keeps_matmul(n: Node, live: set, samples) -> bool:
    a, b = n.inputs
    return (a.id in live and b.id not in live and not n.attrs["ta"] and a.rank >= 2
            and a.shape[0] == samples)


def _operand(s, n: Node, flag: bool) -> tuple[Buffer, bool]:
    """The buffer a product reads for input ``n``: a virtual transpose's input with the
    transpose flag flipped (the transpose never materialised)."""
    if s.mode[n.id] == "virtual":
        return s.buffer_or_leaf(n.inputs[0]), not flag
    return s.buffer_or_leaf(n), flag


def _lower(s, n: Node, out):
    (a, ta), (b, tb) = _operand(s, n.inputs[0], n.attrs["ta"]), \
        _operand(s, n.inputs[1], n.attrs["tb"])
    return Dot(out, a, b, ta, tb, n.span)


def _show(node: Node) -> str:
    flags = [f for f in ("ta", "tb") if node.attrs.get(f)]
    return "matmul" + (f"[{', '.join(flags)}]" if flags else "")


KINDS = (
    Kind("matmul", "a, b", ("ta", "tb"), "transpose flags; batch dims lead both",
         vjp=_matmul_vjp, jvp=_matmul_jvp, evaluate=_evaluate, keeps_rows=_keeps_matmul,
         lower=_lower, kernels=(Dot,), show=_show),
)
