"""CPU code generation: one ``numba.njit`` function per kernel program.

Loops are plain nested ``range`` loops (``numba.prange`` on the outer axis of large loops
when the module is compiled parallel), contractions are ``np.dot`` into a planned buffer
(BLAS), and each kernel carries a comment naming the ``.grad`` line it came from.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack

import sympy

from gradc.codegen.bodies import Bodies, step_args, steps
from gradc.codegen.builder import Builder
from gradc.codegen.cpu.invariants import hoist
from gradc.codegen.cpu.mathlib import VARIANTS
from gradc.codegen.cpu.outline import Call, alpha_key
from gradc.codegen.indexing import NP, Indexing
from gradc.codegen.cpu.printer import CpuPrinter
from gradc.codegen.cpu.views import WorkspaceViews
from gradc.codegen.scalar import cse_block
from gradc.ir.shapes import numel
from gradc.passes.collapse import collapse
from gradc.passes.kernels import (Buffer, Check, Dot, Loop, Patches, Pick, Program, Put,
                                  Recur, Reduce, Scan, Scatter, Take, Unpatches, Unpick, View,
                                  out_of_range)
from gradc.passes.schedule import kernel_buffers

PARALLEL_MIN = 1 << 15
INIT = {"sum": 0.0, "max": -float("inf"), "min": float("inf")}


class CpuEmitter(WorkspaceViews, Indexing):
    """Prints kernel programs as Numba functions.

    Args:
        dim_var: maps a dim name to its (mangled) variable name.
        comment: maps a span to a one-line comment text (sanitised), or None.
        parallel: use ``prange`` for loops of at least ``PARALLEL_MIN`` elements.
    """

    def __init__(self, dim_var: Callable[[str], str], comment, parallel: bool = False):
        self.dim_var, self.comment, self.parallel = dim_var, comment, parallel
        self.math_used: set[str] = set()  # mathlib functions the emitted kernels call
        self.constants: dict[str, str] = {}  # their float32 constants (printer.lit)
        self.views_used: set[tuple[str, int]] = set()  # (dtype, rank) of their _ws_view calls
        self.bodies = Bodies(key=self.body_key)  # the bodies the printed programs call

    def body_key(self, text: str, fname: str, body: Program) -> str:
        """When two printed bodies are one function (:class:`Bodies`): equal up to the
        names of their buffers (:func:`gradc.codegen.cpu.outline.alpha_key`)."""
        return alpha_key(text, fname, body, self.dim_var)

    # ------------------------------------------------------------------ helpers
    def scalar_ref(self, buf: Buffer) -> str:
        return buf.name

    def _loops(self, b: Builder, shape, parallel_ok: bool = True, axes=None, at=None,
               first: int = 0):
        """Open nested loops ``i<a>`` over ``axes`` of ``shape`` (default: all, in order);
        returns the context managers to close (see :meth:`_close`). ``at``: the hoisted
        locals of the nest (:func:`gradc.codegen.cpu.invariants.hoist`), printed inside
        each loop; these loops are the nest's from position ``first`` on."""
        ctxs = []
        big = self.parallel and parallel_ok and _estimate(numel(shape)) >= PARALLEL_MIN
        for n, a in enumerate(range(len(shape)) if axes is None else axes):
            rng = "nb.prange" if big and n == 0 else "range"
            ctx = b.block(f"for i{a} in {rng}({self.size(shape[a])}):")
            ctx.__enter__()
            ctxs.append(ctx)
            for sym, expr in (at or {}).get(first + n, ()):
                b.line(f"{sym} = {self.printer.doprint(expr)}")
        return ctxs

    @staticmethod
    def _close(ctxs) -> None:
        for ctx in reversed(ctxs):
            ctx.__exit__(None, None, None)

    # ---------------------------------------------------------------- program
    def emit(self, b: Builder, prog: Program, fname: str, jit: str = "_JIT") -> None:
        """Append the njit function of ``prog`` named ``fname`` to ``b``, compiled with
        the options the module names ``jit`` (``_JIT``: an entry's kernel, called from
        Python; ``_BODY``: a function only compiled code calls)."""
        arrays = [a.name for a in prog.args if a.kind == "arg"]
        scalars = [a.name for a in prog.args if a.kind == "scalar"]
        params = arrays + [f"{s}_in" for s in scalars] + ["ws"] + \
            [self.dim_var(d) for d in prog.dims]
        b.line(f"@nb.njit(**{jit})")
        with b.block(f"def {fname}({', '.join(params)}):"):
            results = self.body(b, prog)
            b.line(f"return ({', '.join(results)}{',' if len(results) == 1 else ''})")
        b.line()

    def body(self, b: Builder, prog: Program) -> list[str]:
        """Append the statements of ``prog`` to ``b`` and return its results' expressions.

        They read the program's array arguments by name, each scalar argument ``s`` as
        ``s_in``, the workspace as ``ws`` and each dim as its :attr:`dim_var` variable;
        every name they assign starts with a letter other than ``e`` (the prefix left to
        a caller that wraps them, as train_epoch's loop does)."""
        self.dtype = prog.float_dtype
        self.printer = CpuPrinter(self.dtype, lambda r: self.index(r.buffer, r.axes))
        self.printer.used, self.printer.constants = self.math_used, self.constants
        for s in (a.name for a in prog.args if a.kind == "scalar"):
            b.line(f"{s} = {NP[self.dtype]}({s}_in)")
        self._hoist_offsets(b, prog)
        self.declared: dict[str, str] = {}  # the names this function has given: shapes
        self.viewed: dict[tuple, str] = {}  # (root, offset, shape) -> the first view's name
        for kern in prog.kernels:
            self._kernel(b, kern)
        for r in prog.results:
            self._need(b, r)
        return [f"{r.name}[0]" if not r.shape else r.name for r in prog.results]

    def _kernel(self, b: Builder, kern) -> None:
        if kern.span is not None and self.comment:
            b.line(f"# {self.comment(kern.span)}")
        if isinstance(kern, (Loop, Reduce)):
            kern = collapse(kern)[1]
        if not isinstance(kern, (View, Call)):  # (sorted: a Loop's reads come from a set)
            for buf in sorted(kernel_buffers(kern), key=lambda buf: buf.name):
                self._need(b, buf)
        PRINTERS[type(kern)](self, b, kern)

    def _reshape(self, b: Builder, kern: View) -> None:
        """Nothing to print: a view is named where a kernel uses it (:meth:`_need`)."""

    # ------------------------------------------------------------------ kernels
    def _math(self, name: str, arg: str) -> str:
        """A call of the fast version of ``name`` on the printed ``arg``."""
        fn = VARIANTS[name][self.dtype == "f32"].__name__
        self.math_used.add(fn)
        return f"{fn}({arg})"

    def _assign(self, b: Builder, target: str, expr: sympy.Expr, tag: str) -> None:
        temps, (reduced,) = cse_block([expr], tag)
        for sym, sub in temps:
            b.line(f"{sym} = {self.printer.doprint(sub)}")
        b.line(f"{target} = {self.printer.doprint(reduced)}")

    def _loop(self, b: Builder, k: Loop) -> None:
        ident = tuple(range(len(k.shape)))
        at, exprs = hoist([expr for _, expr in k.stores], list(ident), k.writes())
        ctxs = self._loops(b, k.shape, at=at)
        for j, ((buf, _), expr) in enumerate(zip(k.stores, exprs)):
            self._assign(b, self.index(buf, ident), expr, f"t{j}_")
        self._close(ctxs)

    def _reduce(self, b: Builder, k: Reduce) -> None:
        rank, axes = len(k.shape), k.axes
        kept = [a for a in range(rank) if a not in axes]
        if k.kind == "logsumexp" or axes == tuple(range(rank - len(axes), rank)):
            self._reduce_inner(b, k, kept)
            return
        # Reduced axes lead: accumulate in memory order into the output; the reduced
        # axes after the last kept one (batchnorm's H and W) into a local first, combined
        # into the output once per row: the local stays in a register and the row
        # vectorises, where a store to the output (a workspace view, which LLVM cannot
        # tell apart from the inputs) in every step kept the loop scalar
        tail = [a for a in axes if a > kept[-1]]
        outer = [a for a in range(rank) if a not in tail]
        at, (expr,) = hoist([k.expr], outer + tail, k.writes())
        with b.block(f"for j in range({self.size(numel(k.out.shape))}):"):
            b.line(f"{k.out.name}.flat[j] = {self._init(k.kind)}" if k.out.rank > 1
                   else f"{k.out.name}[j] = {self._init(k.kind)}")
        ctxs = self._loops(b, k.shape, 0 in kept, outer, at)
        dest = self._out_at(k.out, kept)
        if tail:
            self._accumulate(b, k, expr, tail, at, len(outer))
        else:
            self._assign(b, "v_", expr, "t_")
        b.line(self._combine(k.kind, dest, "a_" if tail else "v_"))
        self._close(ctxs)

    def _accumulate(self, b: Builder, k: Reduce, expr: sympy.Expr, axes: list[int], at,
                    first: int) -> None:
        """Print ``a_``: ``expr`` (``k``'s, its hoisted parts in ``at``) combined over
        loops of ``axes`` (opened and closed here, the nest's from position ``first``),
        in a local."""
        b.line(f"a_ = {self._init(k.kind)}")
        inner = self._loops(b, k.shape, False, axes, at, first)
        self._assign(b, "v_", expr, "t_")
        b.line(self._combine(k.kind, "a_", "v_"))
        self._close(inner)

    def _out_at(self, out: Buffer, loop_axes: list[int]) -> str:
        if not out.shape:
            return f"{out.name}[0]"
        return f"{out.name}[{', '.join(f'i{a}' for a in loop_axes)}]"

    def _init(self, kind: str) -> str:
        return self.printer.lit(INIT[kind])

    @staticmethod
    def _combine(kind: str, dest: str, value: str) -> str:
        if kind == "sum":
            return f"{dest} += {value}"
        return f"{dest} = {kind}({dest}, {value})"

    def _reduce_inner(self, b: Builder, k: Reduce, kept: list[int]) -> None:
        """Kept axes outside, reduced axes inside, a local accumulator per output."""
        red = [a for a in range(len(k.shape)) if a not in kept]
        at, (expr,) = hoist([k.expr], kept + red, k.writes())
        outer = self._loops(b, k.shape, bool(kept), kept, at)
        dest = self._out_at(k.out, kept)
        if k.kind == "logsumexp":
            b.line(f"m_ = {self._init('max')}")
            inner = self._loops(b, k.shape, False, red, at, len(kept))
            self._assign(b, "v_", expr, "t_")
            b.line("m_ = max(m_, v_)")
            self._close(inner)
            b.line(f"m_ = m_ if abs(m_) < {self._init('min')} else {self._init('sum')}")
            b.line(f"s_ = {self._init('sum')}")
            inner = self._loops(b, k.shape, False, red, at, len(kept))
            self._assign(b, "v_", expr, "t_")
            b.line(f"s_ += {self._math('exp', 'v_ - m_')}")
            self._close(inner)
            b.line(f"{dest} = {self._math('log', 's_')} + m_")
        else:
            self._accumulate(b, k, expr, red, at, len(kept))
            b.line(f"{dest} = a_")
        self._close(outer)

    def _dot(self, b: Builder, k: Dot) -> None:
        def op(buf: Buffer, flag: bool, sub: str = "") -> str:
            return f"{buf.name}{sub}{'.T' if flag else ''}"
        if k.out.rank == 2:
            b.line(f"np.dot({op(k.a, k.ta)}, {op(k.b, k.tb)}, {k.out.name})")
            return
        nb_ = self.size(numel(k.out.shape[:-2]))
        for buf in (k.a, k.b, k.out):
            self._need(b, Buffer(f"{buf.name}_3", (numel(k.out.shape[:-2]), *buf.shape[-2:]),
                                 buf.dtype, "view", base=buf))
        with b.block(f"for ib in range({nb_}):"):
            b.line(f"np.dot({op(k.a, k.ta, '_3[ib]')}, {op(k.b, k.tb, '_3[ib]')}, "
                   f"{k.out.name}_3[ib])")

    def _label(self, b: Builder, labels: Buffer, classes: str, kind: str = "label") -> str:
        """Open the loops over ``labels``, load each as ``c_`` and check it is in
        [0, classes) (an out-of-range label would read or write outside the array);
        return the loop index text (the caller closes ``self._label_loops``)."""
        self._label_loops = self._loops(b, labels.shape, parallel_ok=False)
        idx = ", ".join(f"i{a}" for a in range(labels.rank))
        b.line(f"c_ = {labels.name}[{idx}]" if idx else f"c_ = {labels.name}[0]")
        with b.block(f"if c_ < 0 or c_ >= {classes}:"):
            b.line(f"raise ValueError({out_of_range(labels, kind, classes)!r})")
        return idx + ", " if idx else ""

    def _check(self, b: Builder, k: Check) -> None:
        self._label(b, k.idx, self.size(k.limit), k.kind)
        self._close(self._label_loops)

    def _pick(self, b: Builder, k: Pick) -> None:
        at = self._label(b, k.labels, self.size(k.z.shape[-1]))
        b.line(f"{self._out_at(k.out, list(range(k.labels.rank)))} = {k.z.name}[{at}c_]")
        self._close(self._label_loops)

    def _unpick(self, b: Builder, k: Unpick) -> None:
        b.line(f"{k.out.name}[:] = {self._init('sum')}")
        at = self._label(b, k.labels, self.size(k.out.shape[-1]))
        b.line(f"{k.out.name}[{at}c_] = {self._out_at(k.g, list(range(k.labels.rank)))}")
        self._close(self._label_loops)


    def _zero(self, b: Builder, out: Buffer) -> None:
        b.line(f"{out.name}[:] = {self._init('sum')}" if out.rank <= 1 else
               f"{out.name}.reshape(-1)[:] = {self._init('sum')}")

    def _scatter(self, b: Builder, k: Scatter) -> None:
        if k.fill:
            self._zero(b, k.out)
        for src, index in k.parts:
            ctxs = self._loops(b, src.shape, parallel_ok=False)
            b.line(f"{self.index(k.out, index)} = {self.index(src, range(src.rank))}")
            self._close(ctxs)

    def _take(self, b: Builder, k) -> None:
        """Take (gather) and Put (scatter-add) share their loop nest over the indices."""
        put = isinstance(k, Put)
        data = k.out if put else k.src
        big, small = (k.src, k.out) if put else (k.out, k.src)
        if put:
            self._zero(b, k.out)
        ax, r = k.axis, k.idx.rank
        ctxs = self._loops(b, big.shape, parallel_ok=False)
        loop = [f"i{a}" for a in range(big.rank)]
        idx = f"{k.idx.name}[{', '.join(loop[ax:ax + r])}]" if r else f"{k.idx.name}[0]"
        b.line(f"c_ = {idx}")
        limit = self.size(data.shape[ax])
        with b.block(f"if c_ < 0 or c_ >= {limit}:"):
            b.line(f"raise ValueError({out_of_range(k.idx, 'index', limit)!r})")
        at = ", ".join(loop[:ax] + ["c_"] + loop[ax + r:])
        whole = ", ".join(loop)
        if put:
            b.line(f"{small.name}[{at}] += {big.name}[{whole}]")
        else:
            b.line(f"{big.name}[{whole}] = {small.name}[{at}]")
        self._close(ctxs)

    def _patches(self, b: Builder, k) -> None:
        """im2col (Patches) and col2im (Unpatches) share one loop nest, in the columns'
        memory order. Without padding every tap is inside the image (the output size keeps
        each window in), so only a padded axis tests its taps; a single channel gets no
        loop: Numba's compile time grows with the loops and branches of a function."""
        back = isinstance(k, Unpatches)
        img, cols = (k.out, k.src) if back else (k.src, k.out)
        n, c, h, w = (self.size(d) for d in img.shape)
        oh, ow = (self.size(d) for d in cols.shape[1:3])
        (kh, kw), (sh, sw), (ph, pw) = k.k, k.stride, k.pad
        if back:
            self._zero(b, k.out)
        chan = "c_" if c != "1" else "0"
        loops = [f"for n_ in range({n}):", f"for oh in range({oh}):",
                 f"for ow in range({ow}):"] + \
            ([f"for c_ in range({c}):"] if chan == "c_" else []) + \
            [f"for kh in range({kh}):"]
        hh = f"{_scaled('oh', sh)} + kh" + (f" - {ph}" if ph else "")
        ww = f"{_scaled('ow', sw)} + kw" + (f" - {pw}" if pw else "")
        tap = f"({chan} * {kh} + kh) * {kw} + kw" if chan == "c_" else f"kh * {kw} + kw"
        col, at = f"{cols.name}[n_, oh, ow, {tap}]", f"{img.name}[n_, {chan}, hh, ww]"
        inside = " and ".join(f"0 <= {v} < {size}" for v, size, pad in
                              (("hh", h, ph), ("ww", w, pw)) if pad)
        with ExitStack() as nest:
            for line in loops:
                nest.enter_context(b.block(line))
            b.line(f"hh = {hh}")
            nest.enter_context(b.block(f"for kw in range({kw}):"))
            b.line(f"ww = {ww}")
            if not inside:  # every tap is inside the image
                b.line(f"{at} += {col}" if back else f"{col} = {at}")
            elif back:
                with b.block(f"if {inside}:"):
                    b.line(f"{at} += {col}")
            else:
                b.line(f"{col} = {at} if {inside} else {self._init('sum')}")

    def _recur(self, b: Builder, k: Recur) -> None:
        """The time loop of a recurrence: one BLAS call and one fused loop per step."""
        bs, ts, hs = (self.size(d) for d in k.out.shape)
        dt, out = NP[self.dtype], k.out.name
        first, wh, third = (k.ins + (None,))[:3]
        carry = "m_" if k.kind != "scan_bwd" else "c_"
        b.line(f"h_ = np.zeros(({bs}, {hs}), {dt})")
        b.line(f"{carry} = np.zeros(({bs}, {hs}), {dt})")
        steps = f"range({ts} - 1, -1, -1)" if k.kind == "scan_bwd" else f"range({ts})"
        with b.block(f"for t_ in {steps}:"):
            if k.kind != "scan_bwd":
                b.line(f"np.dot(h_, {wh.name}, m_)")
            with b.block(f"for i_ in range({bs}):"), b.block(f"for j_ in range({hs}):"):
                at = "[i_, t_, j_]"
                if k.kind == "scan":
                    b.line(f"v_ = {self._math('tanh', f'{first.name}{at} + m_[i_, j_]')}")
                else:
                    src = f"{third.name}{at} + {carry}[i_, j_]"
                    b.line(f"v_ = ({src}) * ({self.printer.lit(1)} - {first.name}{at} * "
                           f"{first.name}{at})")
                b.line(f"{out}{at} = v_")
                b.line("h_[i_, j_] = v_")
            if k.kind == "scan_bwd":
                b.line(f"np.dot(h_, {wh.name}.T, c_)")

    def _scan(self, b: Builder, k: Scan) -> None:
        """The time loop of a ``loop`` node (:mod:`gradc.codegen.bodies`): the body's njit
        function called once per step, its workspace allocated once. The body returns a
        fresh array (a number for a rank-0 carry, kept in a 1-element array)."""
        fname = self.bodies.add(k.body)
        out, carry, ws = k.out.name, f"{k.out.name}_h", f"{k.out.name}_ws"
        b.line(f"{carry} = np.zeros({self.shape(k.out.shape[1:])}, {NP[k.out.dtype]})")
        b.line(f"{ws} = np.empty(max({self.size(k.body.ws_size)}, 1), "
               f"{NP[k.body.float_dtype]})")
        hoisted, args = step_args(k, carry, ws, self._one, self.dim_var)
        for line in hoisted:
            b.line(line)
        with b.block(f"for t_ in {steps(k, self.size)}:"):
            b.line(f"r_, = {fname}({', '.join(args)})")
            b.line(f"{carry}[0] = r_" if k.out.rank == 1 else f"{carry} = r_")
            b.line(f"{out}[t_] = r_")

    def _call(self, b: Builder, k: Call) -> None:
        """An occurrence of a recurring run of kernels (:mod:`gradc.codegen.cpu.outline`):
        a call of its body's function on the arrays and scalars it touches, the
        workspace, the dims and the offsets of the workspace slots it touches (the body
        makes its own views of them)."""
        for buf in k.arrays:
            self._need(b, buf)  # (a fresh array is allocated here)
        dims = k.body.dims[:len(k.body.dims) - len(k.offsets)]  # the caller's
        # an integer offset is passed as np.int64(k), not as a literal: Numba compiles a
        # function once per signature, and a literal's type (Literal[int](0)) is its own
        args = [a.name for a in k.arrays] + ["ws"] + [self.dim_var(d) for d in dims] + \
            [f"np.int64({self.offsets[o]})" if o.is_Integer else self.offsets[o]
             for o in k.offsets]
        b.line(f"{self.bodies.add(k.body)}({', '.join(args)})")

    def _one(self, buf: Buffer) -> str:
        """A rank-0 buffer as a 1-element array (a number is copied into a new one)."""
        if buf.kind in ("scalar", "dim"):
            return f"np.full(1, {self.index(buf, ())}, {NP[self.dtype]})"
        return buf.name


#: kernel class -> the emitter method printing it (every class of
#: :mod:`gradc.passes.kernels`: each target's table covers them all)
PRINTERS = {View: CpuEmitter._reshape, Loop: CpuEmitter._loop, Reduce: CpuEmitter._reduce,
            Dot: CpuEmitter._dot, Pick: CpuEmitter._pick, Unpick: CpuEmitter._unpick,
            Scatter: CpuEmitter._scatter, Take: CpuEmitter._take, Put: CpuEmitter._take,
            Patches: CpuEmitter._patches, Unpatches: CpuEmitter._patches,
            Recur: CpuEmitter._recur, Check: CpuEmitter._check, Scan: CpuEmitter._scan,
            Call: CpuEmitter._call}


def _scaled(index: str, step: int) -> str:
    """``index * step`` printed (``index`` alone for a step of 1)."""
    return index if step == 1 else f"{index} * {step}"


def _estimate(size: sympy.Expr) -> int:
    """A size with every call-time dim taken as 64, to decide on threads statically."""
    return int(size.xreplace({s: 64 for s in size.free_symbols}))



