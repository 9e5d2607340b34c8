"""Text forms of the graph IR and of its SymPy expressions (``gradc show``, debugging).

:func:`format_expr` prints a SymPy expression with gradc's own function names
(``Sigmoid`` -> ``sigmoid``, ``Select`` -> ``where``, ``Max2`` -> ``max``, comparisons as
infix operators). :func:`format_node` prints one node as one line::

    %8 = ewise relu(a0) (%7) : f32[B, 100]   # h, mlp.grad:12

and :func:`format_graph` the nodes the given roots depend on, in topological order.
"""

from __future__ import annotations

import sympy
from sympy.printing.str import StrPrinter

from gradc.ir.graph import Graph, Node
from gradc.ir.shapes import fmt_shape
from gradc.kinds import KINDS

#: SymPy function class name -> the name the model language uses.
FUNCTION_NAMES = {
    "Sigmoid": "sigmoid", "Relu": "relu", "Select": "where", "Step": "step", "Sign": "sign",
    "Absv": "abs", "Abs": "abs", "Softplus": "softplus", "Max2": "max", "Min2": "min",
    "sign": "sign",
}
#: comparison function class name -> infix operator.
COMPARISONS = {"Less": "<", "LessEq": "<=", "Greater": ">", "GreaterEq": ">=", "Equal": "=="}


class _GradcPrinter(StrPrinter):
    """StrPrinter with the language's function names and infix comparisons."""

    def _compare(self, expr) -> str:
        a, b = (self._print(x) for x in expr.args)
        return f"{a} {COMPARISONS[type(expr).__name__]} {b}"

    def _print_Function(self, expr):
        name = type(expr).__name__
        if name in COMPARISONS:
            return f"({self._compare(expr)})"
        if name in FUNCTION_NAMES:
            args = ", ".join(self._compare(x) if type(x).__name__ in COMPARISONS
                             else self._print(x) for x in expr.args)
            return f"{FUNCTION_NAMES[name]}({args})"
        return super()._print_Function(expr)

    def _print_Abs(self, expr):
        return f"abs({self._print(expr.args[0])})"


def format_expr(expr) -> str:
    """Return ``expr`` (a SymPy expression or number) as text in gradc's vocabulary."""
    return _GradcPrinter({"full_prec": False}).doprint(sympy.sympify(expr))


def format_type(node: Node) -> str:
    """``f32[B, 100]``; a scalar is ``f32[]``."""
    return f"{node.dtype}{fmt_shape(node.shape)}"


def _operation(node: Node) -> str:
    """The op with its attributes, e.g. ``reduce sum axes=(1,)`` or ``ewise relu(a0)``
    (its kind's ``show``)."""
    return KINDS[node.op].show(node)


def node_label(node: Node) -> str:
    """The op and expression of ``node`` without its id, inputs or type (graph drawings)."""
    return _operation(node)


def format_node(node: Node, filename: str | None = None) -> str:
    """One line: ``%ID = OP (%INPUTS) : TYPE   # LABEL, FILE:LINE``."""
    ins = ", ".join(f"%{i.id}" for i in node.inputs)
    text = f"%{node.id} = {_operation(node)}"
    if node.inputs:
        text += f" ({ins})"
    text += f" : {format_type(node)}"
    notes = []
    if node.label and not KINDS[node.op].leaf:
        notes.append(node.label)
    if node.span is not None:
        where = f"{filename}:" if filename else "line "
        notes.append(f"{where}{node.span.line}")
    return text + (f"   # {', '.join(notes)}" if notes else "")


def format_graph(graph: Graph, roots: list[Node] | None = None,
                 filename: str | None = None, root_names: list[str] | None = None) -> str:
    """Every node ``roots`` depend on (default: the outputs and the loss), one per line in
    topological order, then a ``return`` line naming the roots (``root_names`` if given,
    else output names and ``loss`` where they apply)."""
    roots = default_roots(graph) if roots is None else list(roots)
    lines = [format_node(n, filename) for n in graph.topo(roots)]
    if root_names is None:
        names = {n.id: k for k, n in graph.outputs.items()}
        if graph.loss is not None:
            names.setdefault(graph.loss.id, "loss")
        root_names = [names.get(r.id) for r in roots]
    ret = ", ".join(f"%{r.id}" + (f" ({k})" if k else "") for r, k in zip(roots, root_names))
    lines.append(f"return {ret}")
    return "\n".join(lines)


def default_roots(graph: Graph) -> list[Node]:
    """The forward roots: the outputs, then the loss."""
    roots = list(graph.outputs.values())
    if graph.loss is not None and graph.loss not in roots:
        roots.append(graph.loss)
    return roots
