"""What a node kind is: :class:`Kind`, one definition holding every stage's rule for it.

A node kind (``Node.op``) is defined once, in the family module of :mod:`gradc.kinds`
that holds its relatives, the way JAX keeps a primitive's abstract evaluation, rules and
lowering together. Each stage dispatches through :data:`gradc.kinds.KINDS` instead of
branching on op names:

- autodiff (:mod:`gradc.autodiff.reverse`, :mod:`~gradc.autodiff.forward`) calls
  ``vjp``/``jvp``, forward-mode ``grad`` (:mod:`gradc.autodiff.columns`) ``keeps_rows``;
- the reference interpreter (:mod:`gradc.runtime.reference`) calls ``evaluate``;
- the scheduler (:mod:`gradc.passes.schedule`) reads ``leaf``, ``view``, ``fusing``,
  ``space`` and calls ``fuse``, ``define`` and ``lower``;
- the programs' range checks (:mod:`gradc.passes.programs`) and ``gradc check`` call
  ``lookup``;
- the graph printer (:mod:`gradc.ir.printer`) calls ``show``.

The kernel classes a kind lowers to are printed by every target (``PRINTERS`` of each
``emit.py``); ``kernels`` names them, so a kind may define a kernel class of its own
beside itself (``tests/codegen/test_tables.py`` checks each has a printer everywhere).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from gradc.ir.graph import Node
from gradc.passes.kernels import Loop


def show_attrs(node: Node) -> str:
    """The default text of a node for the graph printer: its op and its attrs, sorted."""
    extra = " ".join(f"{k}={v}" for k, v in sorted(node.attrs.items()))
    return f"{node.op} {extra}".rstrip()


def _own_shape(n: Node):
    return n.shape


def elementwise_loop(s, n: Node, out):
    """The lowering of a kind that :meth:`define` expresses at loop indices: one loop over
    the node's shape storing that expression (``ewise``, ``transpose``, ``slice``)."""
    return Loop(n.shape, [(out, s.define(n, tuple(range(n.rank))))], n.span)


@dataclass(frozen=True)
class Kind:
    """One node kind and its rules. Rules take the :class:`~gradc.ir.graph.Node` ``n``.

    Description (the graph's node-kind table): ``name``; ``inputs``, what its inputs are;
    ``attrs``, the names of its attributes; ``doc``, what it computes.

    Leaves (``leaf``: no inputs, their values given by the caller, ``dim`` aside) have no
    rules but, for ``dim``, ``evaluate``. Every other kind has ``vjp``, ``jvp``,
    ``evaluate`` and either ``lower`` or ``view`` (``tests/test_kinds.py``):

    - ``vjp(g, n, ct)``: one cotangent (or None) per input of ``n``, added to graph ``g``;
    - ``jvp(g, n, tangents)``: the tangent of ``n`` given its inputs' tangents (None for
      zero; at least one is not None), or None for zero;
    - ``evaluate(n, ins, shape, dims)``: the NumPy value (float64) given the inputs'
      values, ``shape`` the node's shape with ``dims`` bound;
    - ``lookup(n)``: for a kind that indexes with an integer input, ``(that input, the
      size it indexes, 'label' | 'index')``: every element is range-checked;
    - ``keeps_rows(n, live, samples)``: given that n's shape starts with ``samples``,
      whether it keeps axis 0 row by row (``live``: ids of values depending on the
      differentiated ``v``); None: the kind mixes samples;
    - scheduling, ``s`` the program's scheduler: ``view`` (a reshape of its input's
      buffer, never a kernel); ``fusing`` (a consumer that reads its inputs inside its own
      loop: inputs may be inlined into it); ``space(n)``, the loop space it runs over (the
      input's shape for a reduction); ``fuse(s, n, consumers, fusing)``, the mode of a node
      that is no root: 'inline' (into its consumers' expressions), 'virtual' (an index map
      of its input) or None (a kernel of its own); ``define(s, n, axes)``, the node's value
      at loop index ``axes`` (for 'inline' and 'virtual' nodes and optimizer stores);
      ``lower(s, n, out)``, the kernel computing it into buffer ``out``;
    - ``kernels``: the kernel classes ``lower`` may return;
    - ``show(n)``: its text in ``gradc show``'s graph (``%3 = <show> (%1, %2) : f32[B]``).
    """

    name: str
    inputs: str
    attrs: tuple[str, ...]
    doc: str
    leaf: bool = False
    vjp: Callable | None = None
    jvp: Callable | None = None
    evaluate: Callable | None = None
    lookup: Callable | None = None
    keeps_rows: Callable | None = None
    view: bool = False
    fusing: bool = False
    space: Callable = _own_shape
    fuse: Callable | None = None
    define: Callable | None = None
    lower: Callable | None = None
    kernels: tuple[type, ...] = ()
    show: Callable[[Node], str] = field(default=show_attrs)
