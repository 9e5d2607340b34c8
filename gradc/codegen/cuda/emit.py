"""CUDA code generation: each kernel of a program becomes a ``numba.cuda`` kernel.

The mirror of :mod:`gradc.codegen.cpu.emit`: the same :class:`~gradc.passes.kernels.Program`,
printed as ``@cuda.jit`` kernels plus one host function per program that launches them in
order. Elementwise work runs as grid-stride loops over the flattened iteration space (the
flat index is decomposed into the loop axes with integer math); reductions are
shared-memory trees (:mod:`gradc.codegen.cuda.reduce`); contractions go to ``_matmul``
(cuBLAS through CuPy, else a tiled shared-memory kernel); scatter-adds use atomics; the
other structural kernels are written in gather form (each output computed by one thread),
so they need neither a zeroing pass nor atomics. Workspace buffers are views planned once
per dims (``_views_<program>``); index and label checks raise a device flag that the host
turns into the CPU target's ValueError before any in-place update.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable

import sympy

from gradc.codegen.cuda import kernels as ck
from gradc.codegen.builder import Builder
from gradc.codegen.indexing import NP, Indexing
from gradc.codegen.cuda.reduce import emit_reduce
from gradc.codegen.scalar import ScalarPrinter, cse_block
from gradc.dtypes import NUMPY_NAMES
from gradc.ir.shapes import numel
from gradc.codegen.bodies import Bodies
from gradc.passes.kernels import (Buffer, Check, Dot, Loop, Patches, Pick, Program, Put,
                                  Recur, Reduce, Scan, Scatter, Take, Unpatches, Unpick, View)
from gradc.passes.schedule import kernel_outputs


class Kernel:
    """One ``@cuda.jit`` kernel being built: its body and the arguments it uses."""

    def __init__(self, name: str, comment: str | None):
        self.name, self.comment = name, comment
        self.body = Builder()
        self.body.depth = 1
        self.arrays: dict[str, Buffer] = {}
        self.scalars: dict[str, str] = {}
        self.dims: list[str] = []

    def use(self, buf: Buffer) -> None:
        """Make ``buf`` an array argument."""
        self.arrays.setdefault(buf.name, buf)

    def params(self) -> list[str]:
        """Argument names: arrays, then scalars, then dims."""
        return list(self.arrays) + list(self.scalars) + self.dims

    def types(self) -> list[str]:
        """Numba types of :meth:`params` (arrays are C-contiguous)."""
        return [array_type(b.dtype, b.rank) for b in self.arrays.values()] + \
            list(self.scalars.values()) + ["int64"] * len(self.dims)


def array_type(dtype: str, rank: int) -> str:
    """The Numba type of a C-contiguous array (rank 0 is stored as 1 element)."""
    return f"{NUMPY_NAMES[dtype]}[{', '.join([':'] * (max(rank, 1) - 1) + ['::1'])}]"


class CudaEmitter(Indexing):
    """Prints kernel programs as CUDA kernels and host launch functions.

    Args:
        dim_var: maps a dim name to its (mangled) variable name.
        comment: maps a span to a one-line comment text (sanitised), or None.

    After :meth:`emit`: ``signatures`` maps each kernel name to the argument types it is
    launched with, ``errors`` lists the messages of the device checks (flag code k+1).
    """

    def __init__(self, dim_var: Callable[[str], str], comment):
        self._dim_var, self.comment = dim_var, comment
        self.signatures: dict[str, list[str]] = {}
        self.errors: list[str] = []
        self.kernel: Kernel | None = None
        #: the loop bodies the printed programs call (a host function and its views each)
        self.bodies = Bodies(lambda fname: [f"_views{fname}"])

    # ------------------------------------------------------------------ helpers
    def dim_var(self, name: str) -> str:
        """A dim's variable; inside a kernel it becomes an argument."""
        var = self._dim_var(name)
        if self.kernel is not None and var not in self.kernel.dims:
            self.kernel.dims.append(var)
        return var

    def scalar_ref(self, buf: Buffer) -> str:
        """Make ``buf`` a scalar argument of the current kernel."""
        return self.scalar(buf.name, NUMPY_NAMES[self.dtype])

    def use(self, buf: Buffer) -> None:
        self.kernel.use(buf)

    def scalar(self, name: str, numba_type: str) -> str:
        """Make ``name`` a scalar argument of the current kernel."""
        self.kernel.scalars.setdefault(name, numba_type)
        return name

    def lit(self, value) -> str:
        """A literal of the program's float dtype."""
        return self.printer.lit(value)

    def flat(self, shape, names=None):
        """Open a grid-stride loop over ``shape`` in the current kernel and decompose the
        flat index into ``i<k>`` (or ``names``); returns (size text, context to close)."""
        body, n = self.kernel.body, self.size(numel(shape))
        names = names or [f"i{k}" for k in range(len(shape))]
        ctx = body.block(f"for f_ in range(cuda.grid(1), {n}, cuda.gridsize(1)):")
        ctx.__enter__()
        self.decompose("f_", shape, names)
        return n, ctx

    def decompose(self, flat: str, sizes, names) -> None:
        """Write ``names`` (one per size, row-major) as the digits of index ``flat``; a
        size that is an expression (``2 * d_T``) is parenthesised: ``f_ % (2 * d_T)``."""
        body, rest = self.kernel.body, flat
        for k in range(len(sizes) - 1, 0, -1):
            s = self.size(sizes[k])
            s = s if s.isidentifier() or s.isdigit() else f"({s})"
            body.line(f"{names[k]} = {rest} % {s}")
            body.line(f"{'q_' if k > 1 else names[0]} = {rest} // {s}")
            rest = "q_"
        if len(sizes) == 1:
            body.line(f"{names[0]} = {flat}")

    def assign(self, target: str, expr: sympy.Expr, tag: str) -> None:
        """``target = expr`` in the current kernel, with common subexpressions hoisted."""
        temps, (reduced,) = cse_block([expr], tag)
        for sym, sub in temps:
            self.kernel.body.line(f"{sym} = {self.printer.doprint(sub)}")
        self.kernel.body.line(f"{target} = {self.printer.doprint(reduced)}")

    def begin(self, span) -> Kernel:
        """Start a new kernel (named after the program) and make it current."""
        name = f"{self.fname}_k{self.count}"
        self.count += 1
        self.kernel = Kernel(name, self.comment(span) if span is not None and self.comment
                             else None)
        return self.kernel

    def finish(self, grid: str, block: str = "_TPB") -> None:
        """Write the current kernel's definition and its launch in the host function."""
        k, self.kernel = self.kernel, None
        if k.comment:
            self.kb.line(f"# {k.comment}")
        self.kb.line("@cuda.jit(**_CJIT)")
        self.kb.line(f"def {k.name}({', '.join(k.params())}):")
        self.kb.lines.extend(k.body.lines)
        self.kb.line()
        self.kb.line()
        self.hb.line(f"{k.name}[{grid}, {block}]({', '.join(k.params())})")
        self.signatures[k.name] = [f"void({', '.join(k.types())})"]

    def use_flag(self, message: str) -> str:
        """The code of a device check (the kernel gets the ``flag`` argument)."""
        if message not in self.errors:
            self.errors.append(message)
        self.pending = self.has_flag = True
        self.scalar("flag", "int32[::1]")
        return f"np.int32({self.errors.index(message) + 1})"

    def check_flag(self) -> None:
        """Raise a flagged error now (before in-place updates, and at the end)."""
        if self.pending:
            self.hb.line("_raise_flag(flag, _ERRORS)")
            self.pending = False

    # ---------------------------------------------------------------- program
    def emit(self, b: Builder, prog: Program, fname: str) -> None:
        """Append the kernels of ``prog``, its views planner ``_views<fname>`` and its host
        function ``fname`` to ``b``."""
        self.dtype, self.fname, self.count = prog.float_dtype, fname, 0
        self.printer = ScalarPrinter(self.dtype, lambda r: self.index(r.buffer, r.axes))
        self.kb, self.hb = Builder(), Builder()
        self.hb.depth = 1
        self.planned: dict[str, Buffer] = {}
        self.pending = self.has_flag = False
        scalars = [a.name for a in prog.args if a.kind == "scalar"]
        for s in scalars:
            self.hb.line(f"{s} = _FT({s}_in)")
        for kern in prog.kernels:
            self._kernel(kern)
        self.check_flag()
        results = [r.name for r in prog.results]
        self.hb.line(f"return ({', '.join(results)}{',' if len(results) == 1 else ''})")
        b.lines.extend(self.kb.lines)
        self._views(b, prog)
        params = [a.name for a in prog.args if a.kind == "arg"] + \
            [f"{s}_in" for s in scalars] + ["ws"] + [self._dim_var(d) for d in prog.dims]
        with b.block(f"def {fname}({', '.join(params)}):"):
            b.line(f'"""Entry {prog.name!r}: launch its kernels in order (ws: the views of '
                   f'_views{fname})."""')
            names = (["flag"] if self.has_flag else []) + list(self.planned)
            if names:
                rows = textwrap.wrap(", ".join(names) + ("," if len(names) == 1 else ""), 88)
                if len(rows) == 1:
                    b.line(f"{rows[0]} = ws")
                else:
                    b.line(f"({rows[0]}")
                    for row in rows[1:-1]:
                        b.line(f" {row}")
                    b.line(f" {rows[-1]}) = ws")
        b.lines.extend(self.hb.lines)
        b.line()
        b.line()

    def _views(self, b: Builder, prog: Program) -> None:
        dims = [self._dim_var(d) for d in prog.dims]
        with b.block(f"def _views{self.fname}({', '.join(['ws'] + dims)}):"):
            b.line('"""The workspace views (and scratch arrays) of one dims binding."""')
            items = ["cuda.to_device(np.zeros(1, np.int32))"] if self.has_flag else []
            for buf in self.planned.values():
                if buf.kind == "scratch":
                    items.append(f"cuda.device_array({self.shape(buf.shape)}, "
                                 f"{NP[buf.dtype]})")
                    continue
                off, n = self.size(buf.offset), self.size(numel(buf.shape))
                view = f"ws[{off}:{off} + {n}]"
                items.append(f"{view}.reshape({self.shape(buf.shape)})" if buf.rank > 1
                             else view)
            b.line("return (")
            for item in items:
                b.line(f"    {item},")
            b.line(")")
        b.line()
        b.line()

    def _kernel(self, kern) -> None:
        span = kern.span
        if span is not None and self.comment:
            self.hb.line(f"# {self.comment(span)}")
        if isinstance(kern, View):
            PRINTERS[View](self, kern)
            return
        for out in kernel_outputs(kern):
            if out.kind == "ws" and out.dtype != self.dtype:
                # an integer intermediate gets an array of its own dtype, not a float
                # slice of the workspace
                self.planned.setdefault(out.name, Buffer(out.name, out.shape, out.dtype,
                                                         "scratch"))
            elif out.kind == "ws":
                self.planned.setdefault(out.name, out)
            elif out.kind == "fresh":
                self.hb.line(f"{out.name} = cuda.device_array({self.shape(out.shape)}, "
                             f"{NP[out.dtype]})")
        PRINTERS[type(kern)](self, kern)

    def _reshape(self, kern: View) -> None:
        """A view of another buffer, on the host: no kernel."""
        base = kern.out.base
        self.hb.line(f"{kern.out.name} = {base.name}.reshape({self.shape(kern.out.shape)})")

    # ------------------------------------------------------------------ kernels
    def _loop(self, k: Loop) -> None:
        if any(buf.kind == "arg" for buf, _ in k.stores):
            self.check_flag()  # in-place updates run only once the checks passed
        self.begin(k.span)
        for buf, _ in k.stores:
            self.kernel.use(buf)
        n, ctx = self.flat(k.shape)
        ident = tuple(range(len(k.shape)))
        for j, (buf, expr) in enumerate(k.stores):
            self.assign(self.index(buf, ident), expr, f"t{j}_")
        ctx.__exit__(None, None, None)
        self.finish(f"_grid({n})")

    def zero(self, out: Buffer) -> None:
        """A kernel filling ``out`` with zeros."""
        self._loop(Loop(out.shape, [(out, sympy.Integer(0))], None))

    def _dot(self, k: Dot) -> None:
        self.hb.line(f"_matmul({k.a.name}, {k.b.name}, {k.out.name}, {k.ta}, {k.tb})")
        self.matmul_signature(k.a, k.b, k.out)

    def matmul_signature(self, a: Buffer, b: Buffer, out: Buffer) -> None:
        """Record the types the tiled matmul kernel is launched with for these buffers."""
        rank = 2 if out.rank == 2 else 3
        name = "_k_mm2" if rank == 2 else "_k_mm3"
        sig = f"void({', '.join(array_type(x.dtype, rank) for x in (a, b, out))}, " \
              "boolean, boolean)"
        if sig not in self.signatures.setdefault(name, []):
            self.signatures[name].append(sig)


#: kernel class -> the function printing it, called with the emitter (every class of
#: :mod:`gradc.passes.kernels`: each target's table covers them all)
PRINTERS = {View: CudaEmitter._reshape, Loop: CudaEmitter._loop, Reduce: emit_reduce,
            Dot: CudaEmitter._dot, Pick: ck.pick, Unpick: ck.unpick, Scatter: ck.scatter,
            Take: ck.take, Put: ck.take, Patches: ck.patches, Unpatches: ck.unpatches,
            Recur: ck.recur, Check: ck.check, Scan: ck.scan}
