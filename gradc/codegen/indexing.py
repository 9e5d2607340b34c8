"""How every emitter prints integer sizes, shapes and array reads (shared by the CPU, CUDA
and NumPy emitters and the assembler): :func:`int_expr` prints a dim expression as Python
over the dim variables, :class:`Indexing` a buffer element at loop indices, :data:`NP`
names each dtype's NumPy scalar type in generated code.
"""

from __future__ import annotations

from collections.abc import Callable

import sympy
from gradc.dtypes import NUMPY_NAMES

from gradc.passes.kernels import Buffer
from gradc.passes.schedule import ALIGN, Align

NP = {k: f"np.{v}" for k, v in NUMPY_NAMES.items()}


def int_expr(e: sympy.Expr, dim_var: Callable[[str], str]) -> str:
    """Print an integer dim expression (sizes, offsets) as Python over dim variables."""
    if e.is_Integer:
        return str(int(e))
    if e.is_Symbol:
        return dim_var(e.name)
    if isinstance(e, Align):
        return f"(({int_expr(e.args[0], dim_var)} + {ALIGN - 1}) // {ALIGN} * {ALIGN})"
    if e.is_Add:
        return "(" + " + ".join(int_expr(a, dim_var) for a in e.args) + ")"
    if e.is_Mul:
        return " * ".join(int_expr(a, dim_var) for a in e.args)
    if e.is_Pow and e.exp.is_Integer and e.exp > 0:
        return " * ".join([int_expr(e.base, dim_var)] * int(e.exp))
    raise AssertionError(f"not an integer dim expression: {e}")


class Indexing:
    """How every emitter prints sizes, shapes and ``buf[index]`` reads (the CPU and CUDA
    emitters share it). Needs ``dim_var``, ``dtype`` and ``scalar_ref(buf)`` (a scalar
    buffer's expression); ``use(buf)`` is told of every array read."""

    def size(self, e) -> str:
        return int_expr(sympy.sympify(e), self.dim_var)

    def shape(self, shape) -> str:
        items = [self.size(d) for d in shape] or ["1"]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"

    def hoist_offsets(self, b, offsets: list[sympy.Expr]) -> None:
        """Print each workspace offset of ``offsets`` (distinct, in order) once into the
        Builder ``b`` (``wo<k>_``; an integer stays a literal), their alignment terms
        shared (``wa<k>_``), and keep ``self.offsets``: offset -> its text. Numba's typing
        and lowering time grows with the operations of a function, and every view would
        otherwise repeat its offset's arithmetic (measured: 3.0 s -> 2.3 s to compile
        mlp_cifar's train_step)."""
        aligns = sorted({a for o in offsets for a in o.atoms(Align)}, key=sympy.default_sort_key)
        subs = {a: sympy.Symbol(f"ws:wa{k}_") for k, a in enumerate(aligns)}
        for a, sym in subs.items():
            b.line(f"{sym.name[3:]} = {self.size(a)}")

        def local(name: str) -> str:  # the alignment terms' variables, else dims
            return name[3:] if name.startswith("ws:") else self.dim_var(name)

        self.offsets = {o: str(int(o)) for o in offsets if o.is_Integer}
        for k, o in enumerate(o for o in offsets if not o.is_Integer):
            self.offsets[o] = f"wo{k}_"
            b.line(f"wo{k}_ = {int_expr(o.xreplace(subs), local)}")

    def use(self, buf: Buffer) -> None:
        """Note that the current kernel reads ``buf`` (nothing to note by default)."""

    def index(self, buf: Buffer, axes) -> str:
        """``buf[...]`` at loop axes ``axes`` (None: the broadcast index 0)."""
        if buf.kind == "scalar":
            return self.scalar_ref(buf)
        if buf.kind == "dim":
            return f"{NP[self.dtype]}({self.dim_var(buf.name)})"
        self.use(buf)
        if not buf.shape:
            return f"{buf.name}[0]"
        return f"{buf.name}[{', '.join(self._axis_index(a) for a in axes)}]"

    def _axis_index(self, a) -> str:
        if a is None:
            return "0"
        if isinstance(a, int):
            return f"i{a}"
        start = "" if a.start == 0 else self.size(a.start)
        if a.axis is None:
            return start or "0"
        term = f"i{a.axis}" if a.step == 1 else f"{a.step} * i{a.axis}"
        return f"{start} + {term}" if start else term
