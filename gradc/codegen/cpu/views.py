"""The workspace views of the CPU target's kernels: one small Numba function, and how a
function names its views (:class:`WorkspaceViews`: each where a kernel first uses it,
one view per workspace slot and shape, later buffers of that slot and shape naming it).

A kernel sees each buffer it keeps in the workspace as an N-d view of a slice of ``ws``.
Printed as ``ws[a:b].reshape(shape)``, every such view costs Numba about 40 ms of lowering
(its reshape is lowered in place, error paths included; the cnn's train_step has over a
hundred), while a call of :func:`_ws_view` costs about 10 ms (measured: 80 views in one
function compile in 4.3 s as reshapes, 1.8 s as calls). The function is compiled once per
rank, when the module is imported (about 0.35 CPU-s each on a cold cache), for the
signatures :func:`signatures` lists: explicit signatures, because a call with constant dims
would otherwise compile one specialisation per call site (Numba types each constant as its
own literal type). Only kernels call it: it gets neither a CPython nor a C wrapper
(measured: 1.20 -> 1.10 CPU s to import examples/cnn.grad's module, ranks 2-4, on a cold
cache).

Contract: plain Numba nopython code; :func:`source` is pasted into the generated module,
decorated with ``@nb.njit(<signatures>, ...)``. Its cache files heal like the kernels'
(:func:`gradc.runtime.loader.guard_numba`, installed before the module runs, since the
decorator reads them); the module itself stays standalone.
"""

from __future__ import annotations

import inspect
import textwrap

import sympy

from gradc.codegen.builder import Builder
from gradc.codegen.indexing import NP
from gradc.dtypes import NUMPY_NAMES
from gradc.ir.shapes import numel
from gradc.passes.kernels import Buffer, Program


def _ws_view(ws, offset, shape):
    """The elements of the workspace ``ws`` from ``offset`` on, seen with ``shape``
    (C order); no data moves."""
    n = 1
    for d in shape:
        n *= d
    return ws[offset:offset + n].reshape(shape)


def signatures(used: set[tuple[str, int]]) -> list[str]:
    """Numba signatures of :func:`_ws_view` for each (gradc dtype, rank) in ``used``."""
    out = []
    for dtype, rank in sorted(used):
        t = NUMPY_NAMES[dtype]
        axes = ", ".join([":"] * (rank - 1) + ["::1"])
        out.append(f"{t}[{axes}]({t}[::1], int64, UniTuple(int64, {rank}))")
    return out


def source(used: set[tuple[str, int]], options: str) -> str:
    """The decorated source of :func:`_ws_view` for the views ``used`` (``options``: the
    rest of the ``nb.njit`` arguments, e.g. ``"cache=True, nogil=True"``)."""
    return f"@nb.njit({signatures(used)!r}, {options})\n" + \
        textwrap.dedent(inspect.getsource(_ws_view))


class WorkspaceViews:
    """How the CPU emitter names the workspace slots and views of one function: the
    offsets once at its top (:meth:`_hoist_offsets`), each buffer where a kernel first
    uses it (:meth:`_need`). Needs the emitter's ``dim_var``, ``dtype``, ``size``,
    ``shape`` and :attr:`views_used`, and ``declared`` (name -> the shape it holds) and
    ``viewed`` reset per function."""

    views_used: set[tuple[str, int]]  # (dtype, rank) of the _ws_view calls printed

    def _hoist_offsets(self, b: Builder, prog: Program) -> None:
        """Print the offsets of the workspace slots ``prog`` touches (in the order its
        kernels first write or read them, a kernel's reads by name: a Loop's come from a
        set) at the top of the function
        (:meth:`gradc.codegen.indexing.Indexing.hoist_offsets`); views slice ``ws`` at
        those variables."""
        roots = (buf.root for kern in prog.kernels
                 for buf in kern.writes() + sorted(kern.reads(), key=lambda r: r.name))
        self.hoist_offsets(b, list(dict.fromkeys(
            sympy.sympify(root.offset) for root in roots if root.kind == "ws")))

    def _need(self, b: Builder, buf: Buffer) -> None:
        """Name ``buf`` in the function, once, where a kernel first reads or writes it
        (a buffer no kernel touches, as the full-rank name of a collapsed loop's output,
        is never named): a fresh array is allocated, a view of a workspace slot or array
        the function has already viewed with the same shape is that view under another
        name (``v16 = v13``), any other view is printed by :meth:`_view`. Every view
        costs Numba compile time (measured, examples/cnn.grad's loss_and_grad: 102 views
        printed for every output and collapse, 43 views and 28 such names this way,
        9.65 -> 8.45 CPU s). A name already given to another shape is named again: the
        collapse names each view of a buffer by its rank (``x_x_r3``), and two kernels
        may see one buffer with two shapes of one rank (``[B, 3, 20]`` and
        ``[3B, 4, 5]``); the earlier view of that name is then no longer one to reuse."""
        shape = self.shape(buf.shape)
        if self.declared.get(buf.name) == shape or buf.kind not in ("ws", "fresh", "view"):
            return
        if buf.name in self.declared:
            self.viewed = {k: v for k, v in self.viewed.items() if v != buf.name}
        self.declared[buf.name] = shape
        if buf.kind == "fresh":
            b.line(f"{buf.name} = np.empty({shape}, {NP[buf.dtype]})")
            return
        root = buf.root
        if root.kind == "fresh":
            self._need(b, root)
        at = self.offsets[sympy.sympify(root.offset)] if root.kind == "ws" else root.name
        key = (at, shape)
        if key in self.viewed:
            b.line(f"{buf.name} = {self.viewed[key]}")
        else:
            self.viewed[key] = buf.name
            self._view(b, buf.name, root, buf.shape)

    def _view(self, b: Builder, name: str, root: Buffer, shape) -> None:
        """Print ``name = `` the workspace slot or array ``root`` seen with ``shape``. A
        workspace slot is sliced from ``ws`` at its offset, through
        :func:`gradc.codegen.cpu.views._ws_view` from rank 2 on: a ``.reshape`` costs
        Numba about 40 ms of lowering per use, a call of that function about 10 ms."""
        if root.kind != "ws":
            b.line(f"{name} = {root.name}.reshape({self.shape(shape)})")
            return
        assert root.dtype == self.dtype, (root.name, root.dtype)
        off = self.offsets[sympy.sympify(root.offset)]
        if len(shape) > 1:
            self.views_used.add((self.dtype, len(shape)))
            b.line(f"{name} = _ws_view(ws, {off}, {self.shape(shape)})")
        else:
            b.line(f"{name} = ws[{off}:{off} + {self.size(numel(shape))}]")
