"""``grad(s, v)`` inside a model: derivatives as values, built while lowering.

``grad(s, v)`` is the derivative of the scalar float expression ``s`` with respect to the
input, param or value named ``v`` (a fn's argument inside a fn), shaped like ``v``. It is
lowered to the cotangent graph of ``s`` by :func:`gradc.autodiff.reverse.vjp`, seeded with
1, on the model's own hash-consed graph: the derivative nodes are ordinary nodes built by
the ordinary VJP rules, so they fuse into the same kernels, nest (``grad(sum(grad(...)),
t)``) and are differentiated again by every entry (``loss_and_grad``, ``hvp``, ...).

A value is its computation: ``grad(s, h)`` differentiates through every use of the node
``h`` names, including a place where ``s`` writes ``h``'s expression out again (the graph
shares equal computations). Errors are located: a non-scalar or integer ``s``, a ``v``
that is not a name, an integer ``v``. A ``v`` that ``s`` does not depend on is a warning,
and the derivative is zeros (PyTorch's ``allow_unused``, with zeros for None).
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from gradc.autodiff import columns, reverse
from gradc.frontend import ast
from gradc.ir.errors import LowerError
from gradc.ir.graph import Node
from gradc.ir.ops import ARGS
from gradc.ir.printer import format_expr
from gradc.ir.shapes import fmt_shape

@dataclass(frozen=True)
class Derivative:
    """One ``grad`` of the model, as ``gradc show`` reports it: where it is, by which
    variable, the mode chosen (:func:`gradc.autodiff.columns.choose`) and why."""

    span: object
    wrt: str
    mode: str
    why: str
    formula: str | None = None


#: the name of the derivative form in the language (reserved like a built-in).
GRAD = "grad"
_EXAMPLE = "e.g. du = grad(sum(u), t)"


def lower_grad(lw, args: list, kwargs, call: ast.Expr, scope: dict):
    """Lower ``grad(s, v)`` (a lowering step of :class:`gradc.ir.lower._Lowerer`);
    ``args`` are AST expressions, or a lowered node for a piped ``s``."""
    if kwargs:
        raise LowerError("grad() takes no keyword arguments", kwargs[0].span, _EXAMPLE)
    if len(args) != 2:
        raise LowerError(f"grad(s, v) takes 2 arguments, got {len(args)}", call.span,
                         _EXAMPLE)
    s_arg, v_arg = args
    if not _is_name(v_arg):
        raise LowerError("grad(s, v): v must be the name of an input, param or value",
                         getattr(v_arg, "span", call.span),
                         "name the value first, e.g. h = ...; grad(s, h)")
    s = s_arg if isinstance(s_arg, Node) else (yield lw._expr(s_arg, scope))
    v = yield lw._expr(v_arg, scope)
    s_span = getattr(s_arg, "span", call.span)
    if s.rank:
        raise LowerError(f"grad(s, v): s must be a scalar, but it has shape "
                         f"{fmt_shape(s.shape)}", s_span,
                         "reduce it: grad(sum(u), t) gives per-sample derivatives when "
                         "samples do not mix")
    if not s.is_float:
        raise LowerError(f"grad(s, v): s is {s.dtype}: an integer value carries no "
                         "gradient", s_span)
    if not v.is_float:
        raise LowerError(f"grad(s, v): '{_text(v_arg)}' is {v.dtype}: no gradient with "
                         "respect to an integer value", v_arg.span,
                         "integers are labels or indices; declare the input f32 or f64 to "
                         "differentiate by it")
    if s.id not in reverse.depends_on(lw.g, [s], [v]):
        lw.c.warn(f"grad(s, v): s does not depend on '{_text(v_arg)}': the derivative is "
                  "zeros", v_arg.span)
        return lw.g.const(0, v.shape, v.dtype)
    mode, why = columns.choose(lw.g, s, v)
    lw.g.derivatives.append(Derivative(call.span, _text(v_arg), mode, why,
                                       elementwise_form(lw.g, s, v, _text(v_arg))))
    if mode == "forward":
        return columns.column_grad(lw.g, s, v)
    (d,) = reverse.vjp(lw.g, [(s, lw.g.const(1, (), s.dtype))], [v])
    return d


def elementwise_form(g, s: Node, v: Node, name: str) -> str | None:
    """``d/dv f = f'`` for ``s = sum(f)`` when f is elementwise in ``v`` (elementwise ops,
    and products by a row ``[S, 1] @ [1, m]``, which broadcast), as text; else None. Other
    values in f appear as their names (``%id`` when unnamed)."""
    u = columns.summed(s)
    if u is None:
        return None
    live = reverse.depends_on(g, [u], [v])
    var = sympy.Symbol(name)
    forms: dict[int, sympy.Expr] = {v.id: var}
    for n in g.topo([u]):
        if n.id in forms:
            continue
        if n.id not in live:
            forms[n.id] = n.attrs["expr"] if n.op == "ewise" and not n.inputs else \
                sympy.Symbol(n.attrs.get("name") or n.label or f"%{n.id}")
        elif n.op == "ewise":
            forms[n.id] = n.attrs["expr"].xreplace(
                {ARGS[i]: forms[x.id] for i, x in enumerate(n.inputs)})
        elif n.op == "matmul" and n.rank == 2 and n.inputs[0].shape[-1] == 1 \
                and not n.attrs["ta"] and not n.attrs["tb"]:
            forms[n.id] = forms[n.inputs[0].id] * forms[n.inputs[1].id]
        else:
            return None
    f = forms[u.id]
    return f"d/d{name} {format_expr(f)} = {format_expr(sympy.diff(f, var))}"


def _is_name(e) -> bool:
    """A plain name, or a layer's param (``fc1.W``; not ``x.T``)."""
    return isinstance(e, ast.Name) or (isinstance(e, ast.Attr) and e.attr != "T"
                                       and _is_name(e.obj))


def _text(e) -> str:
    return e.id if isinstance(e, ast.Name) else f"{_text(e.obj)}.{e.attr}"
