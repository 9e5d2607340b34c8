"""The graph IR: SSA nodes with dtypes, symbolic shapes and spans, built with hash-consing.

Node kinds (``Node.op``) are defined in :mod:`gradc.kinds`, one
:class:`~gradc.kinds.kind.Kind` each (:data:`gradc.kinds.KINDS`): its inputs and attrs,
its derivatives, reference evaluation, scheduling and text.

Nodes are created through :class:`Graph` only, which shares structurally equal nodes (so the
graph is CSE'd as it is built, forward and backward alike) and folds constants into
elementwise expressions. Node ids increase in creation order: a topological order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy

from gradc.dtypes import FLOAT
from gradc.ir.ops import ARGS
from gradc.ir.shapes import Shape
from gradc.source import Span



class Node:
    """One SSA value. Read-only after creation; compare by identity."""

    __slots__ = ("id", "op", "inputs", "shape", "dtype", "attrs", "span", "label")

    def __init__(self, id_, op, inputs, shape, dtype, attrs, span, label):
        self.id, self.op, self.inputs, self.shape = id_, op, inputs, shape
        self.dtype, self.attrs, self.span, self.label = dtype, attrs, span, label

    @property
    def rank(self) -> int:
        """Number of axes."""
        return len(self.shape)

    @property
    def is_float(self) -> bool:
        """True for f32/f64 values (the differentiable ones)."""
        return self.dtype in FLOAT

    def __repr__(self) -> str:
        return f"%{self.id}:{self.op}"


def _attrs_key(attrs: dict) -> tuple:
    return tuple(sorted(attrs.items(), key=lambda kv: kv[0]))


@dataclass
class Graph:
    """A model's graph: its nodes and its interface (inputs, params, outputs, loss).

    ``mode`` is 'train' or 'eval' (batchnorm and dropout differ; ``stateful`` says whether
    the model has such a layer). ``buffers`` are state leaves that are not trained
    (batchnorm's running statistics), updated in train_step by ``buffer_updates``
    ((leaf, new value) pairs); ``noise`` leaves are uniform [0, 1) arrays drawn per call
    by the caller (dropout masks). ``label_uses`` holds, in lowering order, a
    ``(scores, labels, pick)`` triple for each ``cross_entropy``/``hinge`` with integer
    labels (``pick`` the node that reads the labels). ``instances`` maps the path of each
    block instance and repeat (``b1``, ``tower``, ``tower.0``) to what it instantiates
    (``res(n=32)``, ``repeat(res(32), 4)``), in declaration order (for ``gradc show``).
    ``derivatives`` lists each ``grad`` of the model, with the mode chosen for it
    (:class:`gradc.ir.derivatives.Derivative`).
    """

    name: str
    float_dtype: str = "f32"
    nodes: list[Node] = field(default_factory=list)
    inputs: dict[str, Node] = field(default_factory=dict)
    params: dict[str, Node] = field(default_factory=dict)
    param_inits: dict[str, tuple] = field(default_factory=dict)
    outputs: dict[str, Node] = field(default_factory=dict)
    loss: Node | None = None
    mode: str = "train"
    stateful: bool = False
    buffers: dict[str, Node] = field(default_factory=dict)
    buffer_inits: dict[str, tuple] = field(default_factory=dict)
    buffer_updates: list = field(default_factory=list)
    noise: dict[str, Node] = field(default_factory=dict)
    label_uses: list = field(default_factory=list)
    instances: dict[str, str] = field(default_factory=dict)
    derivatives: list = field(default_factory=list)
    _table: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ node creation
    def add(self, op: str, inputs: tuple[Node, ...], shape: Shape, dtype: str,
            span: Span | None = None, label: str | None = None, **attrs) -> Node:
        """Return the node ``op(inputs; attrs)``, reusing an equal one if it exists."""
        key = (op, tuple(n.id for n in inputs), tuple(shape), dtype, _attrs_key(attrs))
        if op not in ("input", "param") and key in self._table:
            return self._table[key]
        node = Node(len(self.nodes), op, tuple(inputs), tuple(shape), dtype, attrs, span, label)
        self.nodes.append(node)
        self._table[key] = node
        return node

    def ewise(self, expr: sympy.Expr, inputs: tuple[Node, ...], shape: Shape, dtype: str,
              span: Span | None = None, label: str | None = None) -> Node:
        """Return an elementwise node computing ``expr`` (over ``ARGS[:len(inputs)]``).

        Inputs that are themselves constant fills are folded into the expression, repeated
        inputs are merged and unused ones dropped, so equal computations hash equal.
        """
        expr = sympy.sympify(expr)
        subs, kept = {}, []
        for i, node in enumerate(inputs):
            arg = ARGS[i]
            if arg not in expr.free_symbols:
                continue
            if node.op == "ewise" and not node.inputs:
                subs[arg] = node.attrs["expr"]
            elif node in kept:
                subs[arg] = ARGS[kept.index(node)]
            else:
                kept.append(node)
                subs[arg] = ARGS[len(kept) - 1]
        expr = expr.xreplace(subs) if subs else expr
        return self.add("ewise", tuple(kept), shape, dtype, span, label, expr=expr)

    def const(self, value: float, shape: Shape = (), dtype: str | None = None) -> Node:
        """Return a constant fill of ``shape``."""
        return self.ewise(sympy.Float(value) if not float(value).is_integer()
                          else sympy.Integer(int(value)), (), shape, dtype or self.float_dtype)

    def topo(self, roots: list[Node]) -> list[Node]:
        """Return the nodes ``roots`` depend on (roots included), in creation order."""
        seen: set[int] = set()
        stack = list(roots)
        while stack:
            n = stack.pop()
            if n.id not in seen:
                seen.add(n.id)
                stack.extend(n.inputs)
        return [self.nodes[i] for i in sorted(seen)]

    def consumers(self, nodes: list[Node]) -> dict[int, list[Node]]:
        """Return, for each node id, the nodes among ``nodes`` that read it."""
        out: dict[int, list[Node]] = {n.id: [] for n in nodes}
        for n in nodes:
            for i in n.inputs:
                out.setdefault(i.id, []).append(n)
        return out
