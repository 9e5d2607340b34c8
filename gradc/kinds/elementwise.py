"""``ewise``: a SymPy expression over ``ops.ARGS`` applied at every index, broadcast to the
node's shape (a constant fill when it has no inputs). Its derivatives are the generic
rule (``ct · ∂f/∂aᵢ`` from :mod:`gradc.autodiff.derive`, summed back over broadcast
axes); it fuses into its consumers' loops."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import sympy

from gradc.autodiff.derive import OUT, may_blow_up, partials, selects, shifted
from gradc.ir import build
from gradc.ir.graph import Graph, Node
from gradc.ir.ops import ARGS
from gradc.ir.sym import NUMPY_IMPLS, Select
from gradc.kinds.indexing import lower_placed
from gradc.kinds.kind import Kind, elementwise_loop
from gradc.passes.kernels import Loop, Scatter


def _ewise_vjp(g: Graph, n: Node, ct: Node):
    expr, k = n.attrs["expr"], len(n.inputs)
    out = []
    for inp, d in zip(n.inputs, partials(expr, k)):
        if d == 0 or not inp.is_float:
            out.append(None)
            continue
        part = shifted(d, 2, k).xreplace({OUT: ARGS[1]})
        # A strong zero: where the cotangent is 0 (an untaken where-branch), so is the
        # gradient, even if the partial is infinite there.
        body = Select(ARGS[0], ARGS[0] * part, 0) if may_blow_up(part) else ARGS[0] * part
        # a partial of 1 (a sum's) passes the cotangent on as it is: a copy of it would be
        # one more node, materialised where its readers are kernels
        grad = ct if body == ARGS[0] and ct.dtype == n.dtype else \
            g.ewise(body, (ct, n, *n.inputs), n.shape, n.dtype)
        out.append(build.sum_to(g, grad, inp.shape))
    return out


def _ewise_jvp(g: Graph, n: Node, tans):
    expr, k = n.attrs["expr"], len(n.inputs)
    terms, nodes = [], [n, *n.inputs]
    for inp, d, t in zip(n.inputs, partials(expr, k), tans):
        if t is None or d == 0 or not inp.is_float:
            continue
        nodes.append(t)
        part, tan = shifted(d, 1, k).xreplace({OUT: ARGS[0]}), ARGS[len(nodes) - 1]
        terms.append(Select(part, part * tan, 0) if selects(part) else part * tan)
    if not terms:
        return None
    return g.ewise(sympy.Add(*terms), tuple(nodes), n.shape, n.dtype)


@lru_cache(maxsize=4096)
def _lambdified(expr: sympy.Expr, nargs: int):
    return sympy.lambdify(ARGS[:nargs], expr, modules=[NUMPY_IMPLS, "numpy"])


def _evaluate(n, ins, shape, dims):
    f = _lambdified(n.attrs["expr"], len(ins))
    with np.errstate(all="ignore"):
        out = f(*[np.asarray(x, np.float64) for x in ins])
    return np.broadcast_to(np.asarray(out, np.float64), shape).copy()


def _rows(x: Node, n: Node, samples) -> bool:
    return x.rank == n.rank and x.shape[0] == samples


def _fuse(s, n: Node, cs, fusing):
    if s.placed(n):  # a kernel of its own: its parts are written into its buffer
        return None
    if fusing and (not n.inputs or n.attrs["expr"] == ARGS[0]) \
            and not any(c.id in s.store_of for c in cs):
        return "inline"
    # Into consumers over the same space that all end up in one kernel (its CSE
    # then computes n once; a home of None is several kernels); never into an
    # optimizer store: stores run last, after params have changed.
    homes = {s.home[c.id] for c in cs}
    if fusing and all(s.space(c) == n.shape and c.id not in s.store_of
                      for c in cs) and len(homes) == 1 and None not in homes:
        return "inline"
    return None


def _lower(s, n: Node, out):
    return lower_placed(s, n, out) if s.placed(n) else elementwise_loop(s, n, out)


def _define(s, n: Node, axes: tuple) -> sympy.Expr:
    subs = {}
    for i, inp in enumerate(n.inputs):
        off = n.rank - inp.rank
        sub_axes = tuple(None if (d == 1 and n.shape[off + k] != 1) else axes[off + k]
                         for k, d in enumerate(inp.shape))
        subs[ARGS[i]] = s.expr_of(inp, sub_axes)
    return n.attrs["expr"].xreplace(subs)


def _show(node: Node) -> str:
    from gradc.ir.printer import format_expr  # the printer dispatches to this rule
    expr = node.attrs["expr"]
    return f"const {format_expr(expr)}" if not node.inputs else f"ewise {format_expr(expr)}"


KINDS = (
    Kind("ewise", "the expression's arguments", ("expr",),
         "expr (SymPy over ``ops.ARGS``), broadcast to shape",
         vjp=_ewise_vjp, jvp=_ewise_jvp, evaluate=_evaluate,
         keeps_rows=lambda n, live, s: all(_rows(i, n, s) for i in n.inputs if i.id in live),
         fusing=True, fuse=_fuse, define=_define, lower=_lower, kernels=(Loop, Scatter),
         show=_show),
)
