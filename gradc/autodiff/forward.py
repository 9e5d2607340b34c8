"""Forward mode: build the tangent graph of chosen roots given tangents of chosen leaves."""

from __future__ import annotations

from gradc.autodiff.reverse import inherit_span
from gradc.ir.graph import Graph, Node
from gradc.kinds import KINDS


def jvp(g: Graph, roots: list[Node], tangents: dict[int, Node]) -> list[Node]:
    """Return the tangent of each root given ``tangents`` (leaf id -> tangent node);
    a root that does not depend on any tangent leaf gets zeros."""
    tans: dict[int, Node] = dict(tangents)
    for n in g.topo(roots):
        if n.id in tans or not n.inputs:
            continue
        ins = [tans.get(i.id) if i.is_float else None for i in n.inputs]
        if any(t is not None for t in ins):
            first = len(g.nodes)
            t = KINDS[n.op].jvp(g, n, ins)
            inherit_span(g, first, n)
            if t is not None:
                tans[n.id] = t
    return [tans.get(r.id) or g.const(0, r.shape, r.dtype) for r in roots]
