"""Reverse mode: build the cotangent graph of chosen roots with respect to chosen leaves."""

from __future__ import annotations

from gradc.ir import build
from gradc.ir.graph import Graph, Node
from gradc.kinds import KINDS


def depends_on(g: Graph, roots: list[Node], leaves: list[Node]) -> set[int]:
    """Return the ids of nodes (under ``roots``) whose value depends on any of ``leaves``."""
    live = {n.id for n in leaves}
    for n in g.topo(roots):
        if any(i.id in live for i in n.inputs):
            live.add(n.id)
    return live


def vjp(g: Graph, seeds: list[tuple[Node, Node]], wrt: list[Node]) -> list[Node]:
    """Return d(sum_i <root_i, cot_i>) / d leaf for each leaf of ``wrt``.

    Args:
        g: the graph; new nodes are added to it.
        seeds: (root, cotangent) pairs; the cotangent has the root's shape.
        wrt: float leaves (params, inputs); a leaf the roots do not depend on gets zeros.
    """
    roots = [r for r, _ in seeds]
    live = depends_on(g, roots, wrt)
    cots: dict[int, Node] = {}
    for root, ct in seeds:
        _accumulate(g, cots, root, ct)
    for n in reversed(g.topo(roots)):
        ct = cots.get(n.id)
        if ct is None or not n.inputs:
            continue
        first = len(g.nodes)
        for inp, c in zip(n.inputs, KINDS[n.op].vjp(g, n, ct)):
            if c is not None and inp.id in live:
                _accumulate(g, cots, inp, c)
        inherit_span(g, first, n)
    return [cots.get(w.id) or g.const(0, w.shape, w.dtype) for w in wrt]


def inherit_span(g: Graph, first: int, n: Node) -> None:
    """Nodes created since index ``first`` (a rule's output) point at ``n``'s source line."""
    for m in g.nodes[first:]:
        if m.span is None:
            m.span = n.span


def _accumulate(g: Graph, cots: dict[int, Node], node: Node, ct: Node) -> None:
    prev = cots.get(node.id)
    cots[node.id] = ct if prev is None else build.accumulate(g, prev, ct)
