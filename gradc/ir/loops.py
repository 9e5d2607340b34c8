"""Loops over time with a step function of their own: the ``loop`` node and its bodies.

A ``loop`` node runs a :class:`Body` (a small graph, the step function) once per index of
axis 0 of its sequence inputs, in order (or in reverse order with ``reverse``):

    carry_0 = 0;  carry_t = body(carry_{t-1}, seq_1[t], ..., seq_k[t], const_1, ..., const_m)

and returns every ``carry_t`` stacked as ``[T, *carry]``. Its inputs are the sequences
(each ``[T, ...]``) then the constants; its attrs are ``body`` and ``reverse``. The body
is an ordinary graph whose leaves are ``input`` nodes (carry, sequence steps, constants),
so the existing rules differentiate it: the derivatives of a loop are loops over derived
bodies (:mod:`gradc.autodiff.through_time`) and every target prints a loop over T that
runs the body's kernels. ``scan(cell, xs, hidden)`` of the language, ``lstm`` and ``gru``
are built here on top of it.
"""

from __future__ import annotations

from collections.abc import Callable

from gradc.ir import build
from gradc.ir.graph import Graph, Node
from gradc.ir.shapes import Shape


class Body:
    """A loop's step function: ``graph`` with leaves ``carry``, ``seqs`` (one step of each
    sequence), ``consts``, and the new carry ``out`` (the carry's shape and dtype).
    Compared by identity (a node attribute)."""

    __slots__ = ("graph", "carry", "seqs", "consts", "out")

    def __init__(self, graph: Graph, leaves: list[Node], nseq: int, out: Node):
        self.graph, self.carry, self.out = graph, leaves[0], out
        self.seqs, self.consts = leaves[1:1 + nseq], leaves[1 + nseq:]

    @property
    def leaves(self) -> list[Node]:
        """The leaves in call order: carry, sequence steps, constants."""
        return [self.carry, *self.seqs, *self.consts]

    def __repr__(self) -> str:
        return f"body({len(self.graph.topo([self.out]))} nodes)"


Step = Callable[[Graph, Node, list[Node], list[Node]], Node]


Type = tuple[Shape, str]


def step_type(seq: Node) -> Type:
    """The shape and dtype of one step of the sequence ``seq`` [T, ...]."""
    return tuple(seq.shape[1:]), seq.dtype


def make_body(float_dtype: str, carry: Type, seqs: list[Node], consts: list[Node],
              step: Step, seq_types: list[Type] | None = None) -> Body:
    """Build a body whose step is ``step(graph, carry, seq_steps, consts)`` (returning the
    new carry, of shape and dtype ``carry``); ``seqs`` are the loop's sequences
    ``[T, ...]`` (or ``seq_types`` the types of their steps) and ``consts`` its constants
    (outer nodes: only their types are used)."""
    b = Graph("body", float_dtype)
    steps = seq_types if seq_types is not None else [step_type(s) for s in seqs]
    types = [carry, *steps, *((c.shape, c.dtype) for c in consts)]
    leaves = [b.add("input", (), shape, dtype, name=f"l{i}")
              for i, (shape, dtype) in enumerate(types)]
    out = step(b, leaves[0], leaves[1:1 + len(steps)], leaves[1 + len(steps):])
    if tuple(out.shape) != tuple(carry[0]):
        raise build.ShapeMismatch(f"a loop's step returns {out.shape}, "
                                  f"its carry is {carry[0]}")
    return Body(b, leaves, len(steps), out)


def instantiate(g: Graph, body: Body, carry: Node, seqs: list[Node],
                consts: list[Node]) -> Node:
    """Copy ``body`` into ``g`` with its leaves replaced by the given nodes; return the
    copy of its output."""
    m = {leaf.id: node for leaf, node in zip(body.leaves, [carry, *seqs, *consts])}
    for n in body.graph.topo([body.out]):
        if n.id not in m:
            m[n.id] = g.add(n.op, tuple(m[i.id] for i in n.inputs), n.shape, n.dtype,
                            n.span, n.label, **n.attrs)
    return m[body.out.id]


def loop(g: Graph, body: Body, seqs: list[Node], consts: list[Node],
         reverse: bool = False) -> Node:
    """The node running ``body`` over axis 0 of ``seqs`` (see the module docstring)."""
    steps = seqs[0].shape[0]
    if any(s.shape[0] != steps for s in seqs):
        raise build.ShapeMismatch("a loop's sequences differ in length")
    return g.add("loop", (*seqs, *consts), (steps, *body.carry.shape), body.carry.dtype,
                 body=body, reverse=reverse)


def parts(n: Node) -> tuple[Body, list[Node], list[Node]]:
    """A loop node's body, sequences and constants."""
    body = n.attrs["body"]
    k = len(body.seqs)
    return body, list(n.inputs[:k]), list(n.inputs[k:])


def shift(g: Graph, x: Node, later: bool) -> Node:
    """``x[t + 1]`` (``later``) or ``x[t - 1]`` at every t of axis 0, zeros where there is
    none."""
    steps, rest = x.shape[0], tuple(("r", 0, 1, d) for d in x.shape[1:])
    src, dst = (1, 0) if later else (0, 1)
    head = build.slice_(g, x, (("r", src, 1, steps - 1), *rest))
    return build.unslice(g, head, (("r", dst, 1, steps - 1), *rest), x.shape)


def previous(g: Graph, n: Node) -> Node:
    """The carry each step of loop ``n`` reads: its output one step earlier in the loop's
    order (zeros at the first step)."""
    return shift(g, n, later=n.attrs["reverse"])


def from_graph(g: Graph, out: Node, carry: Node, seq: Node) -> tuple[Body, list[Node]]:
    """The body computing ``out`` from the placeholders ``carry`` and ``seq`` (leaves of
    ``g`` made for it), and its constants: the outer nodes the computation reads that do
    not depend on the placeholders (params, values computed before the loop)."""
    inner = {carry.id, seq.id}
    nodes = g.topo([out])
    for n in nodes:
        if any(i.id in inner for i in n.inputs):
            inner.add(n.id)
    consts: list[Node] = []
    if out.id not in inner:
        consts.append(out)
    for n in nodes:
        if n.id in inner:
            consts.extend(i for i in n.inputs if i.id not in inner and i not in consts)

    def step(b, h, xs, cs):
        m = {carry.id: h, seq.id: xs[0], **{c.id: k for c, k in zip(consts, cs)}}
        for n in nodes:
            if n.id in inner and n.id not in m:
                m[n.id] = b.add(n.op, tuple(m[i.id] for i in n.inputs), n.shape, n.dtype,
                                n.span, n.label, **n.attrs)
        return m[out.id]

    body = make_body(g.float_dtype, (carry.shape, carry.dtype), [], consts, step,
                     [(seq.shape, seq.dtype)])
    return body, consts
