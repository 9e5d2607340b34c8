"""A plain NumPy interpreter of the graph: the oracle that generated code is tested against.

It shares nothing with code generation: each node is evaluated by its kind's
``evaluate`` (:mod:`gradc.kinds`): elementwise expressions through ``sympy.lambdify``
with NumPy implementations, structural ops with NumPy calls.
"""

from __future__ import annotations

import numpy as np

from gradc.ir.graph import Graph, Node
from gradc.kinds import KINDS


def eval_shape(shape, dims: dict[str, int]) -> tuple[int, ...]:
    """Return ``shape`` with its symbolic dims bound to the ints of ``dims``."""
    env = {s: dims[s.name] for d in shape for s in d.free_symbols}
    return tuple(int(d.xreplace(env)) for d in shape)


def evaluate(g: Graph, roots: list[Node], env: dict[int, np.ndarray],
             dims: dict[str, int]) -> list[np.ndarray]:
    """Evaluate ``roots`` given leaf values ``env`` (node id -> array) and the dims.

    Floats are computed in float64 whatever the graph's dtype (an oracle should be exact).
    """
    vals = dict(env)
    for n in g.topo(roots):
        if n.id not in vals:
            vals[n.id] = _eval(n, [vals[i.id] for i in n.inputs], dims)
    return [vals[r.id] for r in roots]


def _eval(n: Node, ins: list[np.ndarray], dims: dict[str, int]) -> np.ndarray:
    rule = KINDS[n.op].evaluate
    if rule is None:
        raise AssertionError(f"reference: no rule for op {n.op}")
    return rule(n, ins, eval_shape(n.shape, dims), dims)
