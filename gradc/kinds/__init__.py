"""The node-kind registry: :data:`KINDS` maps each ``Node.op`` to its
:class:`~gradc.kinds.kind.Kind`, the one definition of that kind (what its inputs and
attrs are, its VJP and JVP, its reference evaluation, its scheduling and lowering to
kernels, its text in the graph printer).

Kinds are defined by family, one module each (its docstring says what its kinds
compute); a family module lists its kinds in a ``KINDS`` tuple, and :data:`FAMILIES` is the
only list of families.

The registry sits below the stages that dispatch through it (autodiff, the scheduler,
the reference interpreter, the graph printer): a kind's definition imports the graph,
the node constructors (:mod:`gradc.ir.build`), SymPy's partials
(:mod:`gradc.autodiff.derive`) and the kernel classes (:mod:`gradc.passes.kernels`), and
receives the stage's state (the scheduler) as an argument. Where a rule must run a
stage itself (a loop's rules run it on the loop's body; the printer's text of an
expression), it imports that stage inside the function.
"""

from __future__ import annotations

from gradc.kinds import (elementwise, indexing, layout, leaves, loops, matmul, patches,
                         recurrences, reductions)
from gradc.kinds.kind import Kind

FAMILIES = (leaves, elementwise, matmul, reductions, layout, indexing, patches, recurrences,
            loops)

KINDS: dict[str, Kind] = {k.name: k for family in FAMILIES for k in family.KINDS}

__all__ = ["FAMILIES", "KINDS", "Kind"]
