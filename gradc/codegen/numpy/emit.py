"""NumPy code generation: one plain Python function per kernel program, over whole arrays.

Every kernel is a few array statements, never a loop over elements (the only loops are
over the time steps of a recurrence and the k*k offsets of a convolution window):

- a :class:`Loop` store is one array expression (:mod:`gradc.codegen.numpy.printer`); a
  read through an index map is a view of the buffer: a broadcast axis is a ``None`` axis,
  a transpose is ``.transpose``, an affine slice a basic slice. A new value is bound to
  the buffer's name (NumPy allocates it), a store into a caller's array (the optimizer's
  in-place updates) is ``p[...] = ...``;
- a :class:`Reduce` is ``np.sum``/``np.max``/``np.min`` with ``axis`` (logsumexp with the
  CPU's max shift); a :class:`Dot` is ``np.dot``/``np.matmul`` with ``out=`` a view of the
  planned workspace, as are the im2col columns of :class:`Patches` and the output of a
  :class:`Recur`;
- gathers and scatters are ``np.take``/``np.take_along_axis``, ``np.add.at`` and
  ``np.put_along_axis``; labels and indices are range-checked first and raise the CPU
  target's ValueError.

Elementwise arithmetic happens in the same order as on the CPU target (the same SymPy
expression after the same CSE, integer powers as products), so results differ from it
only where summation order does (BLAS, NumPy's pairwise sums): ~1e-16 relative in float64.
"""

from __future__ import annotations

from collections.abc import Callable

import sympy

from gradc.codegen.bodies import Bodies, step_args, steps
from gradc.codegen.builder import Builder
from gradc.codegen.indexing import NP, Indexing, int_expr
from gradc.codegen.numpy.printer import ArrayPrinter
from gradc.codegen.scalar import cse_block
from gradc.ir.shapes import numel
from gradc.ir.sym import Detach
from gradc.passes.kernels import (Affine, Buffer, Check, Dot, Loop, Patches, Pick, Program,
                                  Put, Read, Recur, Reduce, Scan, Scatter, Take, Unpatches,
                                  Unpick, View, out_of_range)

#: kernels whose output, when planned in the workspace, is written into its view there
IN_WORKSPACE = (Dot, Patches, Recur, Scan)


def _same(a, b) -> bool:
    return sympy.expand(sympy.sympify(a) - sympy.sympify(b)) == 0


def _loop_axes(axes) -> list[int]:
    """The loop axes an index map spans, one per kept buffer axis, in buffer order."""
    out = []
    for a in axes:
        if isinstance(a, int):
            out.append(a)
        elif isinstance(a, Affine) and a.axis is not None:
            out.append(a.axis)
    return out


class NumpyEmitter(Indexing):
    """Prints kernel programs as vectorised NumPy functions.

    Args:
        dim_var: maps a dim name to its (mangled) variable name.
        comment: maps a span to a one-line comment text (sanitised), or None.

    ``helpers`` collects the module helpers (:mod:`gradc.codegen.numpy.helpers`) the
    printed kernels call.
    """

    def __init__(self, dim_var: Callable[[str], str], comment):
        self.dim_var, self.comment = dim_var, comment
        self.helpers: set[str] = set()
        self.bodies = Bodies()  # the loop bodies the printed programs call

    def scalar_ref(self, buf: Buffer) -> str:
        return buf.name

    def shape(self, shape) -> str:
        """A shape tuple; ``()`` for rank 0 (the CPU's kernels make it one element)."""
        items = [self.size(d) for d in shape]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"

    # ------------------------------------------------------------------ reads
    def value(self, buf: Buffer) -> str:
        """A rank-0 buffer's value (arguments arrive as 1-element arrays)."""
        if buf.kind == "scalar":
            return buf.name
        if buf.kind == "dim":
            return f"{NP[self.dtype]}({self.dim_var(buf.name)})"
        return f"{buf.name}[0]" if buf.kind == "arg" else buf.name

    def view(self, buf: Buffer, axes, shape) -> str:
        """``buf`` read at index map ``axes`` inside a loop over ``shape``, as a view whose
        axis k is loop axis k (missing axes are ``None``, leading ones left to
        broadcasting)."""
        if not buf.shape or buf.kind in ("scalar", "dim"):
            return self.value(buf)
        idx = []
        for k, a in enumerate(axes):
            if a is None:
                idx.append("0")
            elif isinstance(a, int):
                idx.append(self._slice(0, 1, shape[a], buf.shape[k]))
            elif a.axis is None:
                idx.append(self.size(a.start))
            else:
                idx.append(self._slice(a.start, a.step, shape[a.axis], buf.shape[k]))
        text = buf.name + self._subscript(idx)
        kept = _loop_axes(axes)
        assert len(set(kept)) == len(kept), f"a read repeats a loop axis: {axes}"
        order = sorted(range(len(kept)), key=kept.__getitem__)
        if order != list(range(len(kept))):
            text += f".transpose({', '.join(map(str, order))})"
        if kept:
            present = set(kept)
            text += self._subscript([":" if a in present else "None"
                                     for a in range(min(kept), len(shape))])
        return text

    def _slice(self, start, step: int, length, full) -> str:
        """The basic slice of ``length`` elements from ``start`` by ``step`` (positive)
        of an axis of size ``full``."""
        assert step >= 1, "slice steps are positive"
        stop = sympy.sympify(start) + step * (sympy.sympify(length) - 1) + 1
        first = "" if _same(start, 0) else self.size(start)
        last = "" if _same(stop, full) else self.size(stop)
        return f"{first}:{last}" + (f":{step}" if step != 1 else "")

    @staticmethod
    def _subscript(idx: list[str]) -> str:
        while idx and idx[-1] == ":":
            idx = idx[:-1]
        return f"[{', '.join(idx)}]" if idx else ""

    def _spans(self, expr) -> set[int]:
        """The loop axes the array reads of ``expr`` span."""
        return {a for r in expr.atoms(Read) if r.buffer.shape and
                r.buffer.kind not in ("scalar", "dim") for a in _loop_axes(r.axes)}

    # ---------------------------------------------------------------- program
    def emit(self, b: Builder, prog: Program, fname: str) -> None:
        """Append the function of ``prog`` named ``fname`` to ``b``."""
        self.dtype, self.loop = prog.float_dtype, ()  # loop: the shape being printed
        self.printer = ArrayPrinter(self.dtype, lambda r: self.view(r.buffer, r.axes,
                                                                    self.loop))
        self.printer.helpers = self.helpers
        arrays = [a.name for a in prog.args if a.kind == "arg"]
        scalars = [a.name for a in prog.args if a.kind == "scalar"]
        params = arrays + [f"{s}_in" for s in scalars] + ["ws"] + \
            [self.dim_var(d) for d in prog.dims]
        with b.block(f"def {fname}({', '.join(params)}):"):
            for s in scalars:
                b.line(f"{s} = {NP[self.dtype]}({s}_in)")
            self._hoist_offsets(b, prog)
            with b.block("with np.errstate(all='ignore'):"):
                for kern in prog.kernels:
                    self._kernel(b, kern)
                results = [self.value(r) if not r.shape else r.name for r in prog.results]
                b.line(f"return ({', '.join(results)}{',' if len(results) == 1 else ''})")
        b.line()

    def _hoist_offsets(self, b: Builder, prog: Program) -> None:
        """Print each distinct workspace offset used once, as the CPU emitter does
        (:meth:`gradc.codegen.indexing.Indexing.hoist_offsets`)."""
        self.hoist_offsets(b, list(dict.fromkeys(
            sympy.sympify(k.out.offset) for k in prog.kernels
            if isinstance(k, IN_WORKSPACE) and k.out.kind == "ws")))

    def _output(self, b: Builder, out: Buffer) -> None:
        """Declare the array a kernel writes into: its view of the workspace, or a new
        array when it is fresh (handed to the caller)."""
        if out.kind == "ws":
            off = self.offsets[sympy.sympify(out.offset)]
            view = f"ws[{off}:{off} + {self.size(numel(out.shape))}]"
            b.line(f"{out.name} = {view}.reshape({self.shape(out.shape)})")
        else:
            b.line(f"{out.name} = np.empty({self.shape(out.shape)}, {NP[out.dtype]})")

    def _kernel(self, b: Builder, kern) -> None:
        if kern.span is not None and self.comment:
            b.line(f"# {self.comment(kern.span)}")
        PRINTERS[type(kern)](self, b, kern)

    # ------------------------------------------------------------------ kernels
    def _view(self, b: Builder, k: View) -> None:
        b.line(f"{k.out.name} = np.reshape({k.out.base.name}, {self.shape(k.out.shape)})")

    def _expr(self, b: Builder, expr: sympy.Expr, tag: str) -> tuple[str, sympy.Expr]:
        """Print ``expr`` over the loop ``self.loop`` after CSE (temporaries first);
        returns its text and the expression (Detach removed)."""
        expr = expr.replace(Detach, lambda x: x)
        temps, (reduced,) = cse_block([expr], tag)
        for sym, sub in temps:
            b.line(f"{sym} = {self.printer.doprint(sub)}")
        return self.printer.doprint(reduced), expr

    def _cast(self, expr, dtype: str) -> str:
        """``.astype`` when a read of another dtype (integers) could change the result's."""
        mixed = any(r.buffer.dtype != dtype for r in expr.atoms(Read)
                    if r.buffer.kind not in ("scalar", "dim"))
        return f".astype({NP[dtype]}, copy=False)" if mixed else ""

    def _loop(self, b: Builder, k: Loop) -> None:
        self.loop = k.shape
        full = set(range(len(k.shape)))
        for j, (buf, expr) in enumerate(k.stores):
            text, expr = self._expr(b, expr, f"t{j}_")
            if buf.kind == "arg":  # an in-place update of the caller's array
                b.line(f"{buf.name}[...] = {text}")
            elif not buf.shape:  # a scalar; a copy of a read (it may view the workspace)
                copy = isinstance(expr, Read) or self._cast(expr, buf.dtype)
                b.line(f"{buf.name} = {NP[buf.dtype]}({text})" if copy else
                       f"{buf.name} = {text}")
            elif not isinstance(expr, Read) and self._spans(expr) == full:
                b.line(f"{buf.name} = {text}{self._cast(expr, buf.dtype)}")
            else:  # a copy, a broadcast or a constant: a new array of the loop's shape
                b.line(f"{buf.name} = np.full({self.shape(k.shape)}, {text}, "
                       f"{NP[buf.dtype]})")

    def _reduce(self, b: Builder, k: Reduce) -> None:
        self.loop = k.shape
        text, expr = self._expr(b, k.expr, "t_")
        if self._spans(expr) != set(range(len(k.shape))):
            text = f"np.broadcast_to({text}, {self.shape(k.shape)})"
        assert k.out.rank == len(k.shape) - len(k.axes)
        axes = f"({', '.join(map(str, k.axes))},)"
        out = k.out.name
        if k.kind != "logsumexp":
            b.line(f"{out} = np.{k.kind}({text}, axis={axes})")
            return
        b.line(f"x_ = {text}")
        b.line(f"m_ = np.max(x_, axis={axes}, keepdims=True)")
        b.line(f"m_ = np.where(np.abs(m_) < np.inf, m_, {self.printer.lit(0)})")
        b.line(f"{out} = np.log(np.sum(np.exp(x_ - m_), axis={axes})) + "
               f"np.squeeze(m_, axis={axes})")

    def _dot(self, b: Builder, k: Dot) -> None:
        batched = k.out.rank > 2

        def op(buf: Buffer, flag: bool) -> str:
            if not flag:
                return buf.name
            return f"np.swapaxes({buf.name}, -1, -2)" if batched else f"{buf.name}.T"
        call = f"{'np.matmul' if batched else 'np.dot'}({op(k.a, k.ta)}, {op(k.b, k.tb)}"
        if k.out.kind == "ws":
            self._output(b, k.out)
            b.line(f"{call}, out={k.out.name})")
        else:
            b.line(f"{k.out.name} = {call})")

    def _labels(self, b: Builder, labels: Buffer, limit: str, kind: str = "label") -> str:
        """Print the range check of a label or index buffer (the CPU's message); return its
        value."""
        lab = self.value(labels) if not labels.shape else labels.name
        bad = f"{lab} < 0 or {lab} >= {limit}" if not labels.shape else \
            f"{lab}.min() < 0 or {lab}.max() >= {limit}"
        with b.block(f"if {bad}:"):
            b.line(f"raise ValueError({out_of_range(labels, kind, limit)!r})")
        return lab

    def _check(self, b: Builder, k: Check) -> None:
        self._labels(b, k.idx, self.size(k.limit), k.kind)

    def _pick(self, b: Builder, k: Pick) -> None:
        lab = self._labels(b, k.labels, self.size(k.z.shape[-1]))
        if not k.labels.shape:
            b.line(f"{k.out.name} = {k.z.name}[{lab}]")
        else:
            b.line(f"{k.out.name} = np.take_along_axis({k.z.name}, {lab}[..., None], "
                   "axis=-1)[..., 0]")

    def _unpick(self, b: Builder, k: Unpick) -> None:
        out = k.out.name
        self._labels(b, k.labels, self.size(k.out.shape[-1]))
        b.line(f"{out} = np.zeros({self.shape(k.out.shape)}, {NP[k.out.dtype]})")
        if not k.labels.shape:
            b.line(f"{out}[{self.value(k.labels)}] = {self.value(k.g)}")
        else:
            b.line(f"np.put_along_axis({out}, {k.labels.name}[..., None], "
                   f"{k.g.name}[..., None], axis=-1)")

    def _scatter(self, b: Builder, k: Scatter) -> None:
        out = k.out.name
        b.line(f"{out} = np.{'zeros' if k.fill else 'empty'}({self.shape(k.out.shape)}, "
               f"{NP[k.out.dtype]})")
        for src, index in k.parts:
            b.line(f"{out}[{', '.join(self._region(src, index, k.out)) or '...'}] = "
                   f"{self._part_value(src, index)}")

    def _region(self, src: Buffer, index: tuple, out: Buffer) -> list[str]:
        """The basic index of ``out`` that a Scatter's part ``(src, index)`` writes."""
        idx = []
        for j, a in enumerate(index):
            if isinstance(a, int):
                idx.append(self._slice(0, 1, src.shape[a], out.shape[j]))
            elif a.axis is None:
                idx.append(self.size(a.start))
            else:
                idx.append(self._slice(a.start, a.step, src.shape[a.axis], out.shape[j]))
        return idx

    def _part_value(self, src: Buffer, index: tuple) -> str:
        """The value a Scatter's part writes: ``src`` with its axes in the region's order."""
        kept = _loop_axes(index)
        assert sorted(kept) == list(range(src.rank)), index
        value = self.value(src) if not src.shape else src.name
        return value + (f".transpose({', '.join(map(str, kept))})" if kept != sorted(kept)
                        else "")

    def _index(self, b: Builder, k) -> str:
        data = k.out if isinstance(k, Put) else k.src
        return self._labels(b, k.idx, self.size(data.shape[k.axis]), "index")

    def _take(self, b: Builder, k: Take) -> None:
        idx = self._index(b, k)
        b.line(f"{k.out.name} = np.take({k.src.name}, {idx}, axis={k.axis})")

    def _put(self, b: Builder, k: Put) -> None:
        idx = self._index(b, k)
        out = k.out.name
        b.line(f"{out} = np.zeros({self.shape(k.out.shape)}, {NP[k.out.dtype]})")
        at = idx if k.axis == 0 else f"({'slice(None), ' * k.axis}{idx})"
        b.line(f"np.add.at({out}, {at}, {k.src.name})")

    def _window(self, k, img: Buffer, cols: Buffer) -> tuple:
        """(N, C, H, W, OH, OW) of an im2col / col2im kernel, printed."""
        n, c, h, w = (self.size(d) for d in img.shape)
        oh, ow = (self.size(d) for d in cols.shape[1:3])
        return n, c, h, w, oh, ow

    def _taps(self, k, oh: str, ow: str) -> str:
        """The padded image's slice that kernel offset (kh_, kw_) reads for every output."""
        (sh, sw) = k.stride
        rows = f"kh_:kh_ + {sh} * ({oh} - 1) + 1" + (f":{sh}" if sh != 1 else "")
        cols = f"kw_:kw_ + {sw} * ({ow} - 1) + 1" + (f":{sw}" if sw != 1 else "")
        return f"[:, :, {rows}, {cols}]"

    @staticmethod
    def _padded(k, n: str, c: str, h: str, w: str, dt: str) -> tuple[str, str]:
        """The zeros of the padded image and the slice of it that is the image."""
        (ph, pw) = k.pad
        inner = f"[:, :, {ph}:{ph} + {h}, {pw}:{pw} + {w}]"
        return f"np.zeros(({n}, {c}, {h} + {2 * ph}, {w} + {2 * pw}), {dt})", inner

    def _patches(self, b: Builder, k: Patches) -> None:
        """im2col: one strided copy per kernel offset (kh, kw) into the columns."""
        n, c, h, w, oh, ow = self._window(k, k.src, k.out)
        (kh, kw) = k.k
        self._output(b, k.out)
        src = k.src.name
        if any(k.pad):
            zeros, inner = self._padded(k, n, c, h, w, NP[self.dtype])
            b.line(f"p_ = {zeros}")
            b.line(f"p_{inner} = {src}")
            src = "p_"
        b.line(f"c6_ = {k.out.name}.reshape(({n}, {oh}, {ow}, {c}, {kh}, {kw}))")
        with b.block(f"for kh_ in range({kh}):"), b.block(f"for kw_ in range({kw}):"):
            b.line(f"c6_[:, :, :, :, kh_, kw_] = {src}{self._taps(k, oh, ow)}"
                   ".transpose(0, 2, 3, 1)")

    def _unpatches(self, b: Builder, k: Unpatches) -> None:
        """col2im: one strided add per kernel offset, in the CPU's order of the adds into
        each pixel (decreasing offsets are increasing output positions)."""
        n, c, h, w, oh, ow = self._window(k, k.out, k.src)
        (kh, kw) = k.k
        zeros, inner = self._padded(k, n, c, h, w, NP[self.dtype])
        b.line(f"p_ = {zeros}")
        b.line(f"c6_ = {k.src.name}.reshape(({n}, {oh}, {ow}, {c}, {kh}, {kw}))")
        with b.block(f"for kh_ in range({kh} - 1, -1, -1):"), \
                b.block(f"for kw_ in range({kw} - 1, -1, -1):"):
            b.line(f"p_{self._taps(k, oh, ow)} += c6_[:, :, :, :, kh_, kw_]"
                   ".transpose(0, 3, 1, 2)")
        b.line(f"{k.out.name} = np.ascontiguousarray(p_{inner})" if any(k.pad) else
               f"{k.out.name} = p_")

    def _recur(self, b: Builder, k: Recur) -> None:
        """The time loop of a recurrence: one BLAS call and one array update per step."""
        bs, ts, hs = (self.size(d) for d in k.out.shape)
        dt, out = NP[self.dtype], k.out.name
        first, wh, third = (k.ins + (None,))[:3]
        carry = "m_" if k.kind != "scan_bwd" else "c_"
        self._output(b, k.out)
        b.line(f"h_ = np.zeros(({bs}, {hs}), {dt})")
        b.line(f"{carry} = np.zeros(({bs}, {hs}), {dt})")
        steps = f"range({ts} - 1, -1, -1)" if k.kind == "scan_bwd" else f"range({ts})"
        with b.block(f"for t_ in {steps}:"):
            if k.kind != "scan_bwd":
                b.line(f"m_ = np.dot(h_, {wh.name})")
            if k.kind == "scan":
                b.line(f"h_ = np.tanh({first.name}[:, t_] + m_)")
            else:
                b.line(f"h_ = ({third.name}[:, t_] + {carry}) * ({dt}(1) - "
                       f"{first.name}[:, t_] * {first.name}[:, t_])")
            b.line(f"{out}[:, t_] = h_")
            if k.kind == "scan_bwd":
                b.line(f"c_ = np.dot(h_, {wh.name}.T)")

    def _scan(self, b: Builder, k: Scan) -> None:
        """The time loop of a ``loop`` node (:mod:`gradc.codegen.bodies`): the body's
        function called once per step, its workspace allocated once."""
        fname = self.bodies.add(k.body)
        out, dt = k.out.name, NP[k.out.dtype]
        carry, ws = f"{out}_h", f"{out}_ws"
        self._output(b, k.out)
        b.line(f"{carry} = np.zeros({self.shape(k.out.shape[1:])}, {dt})")
        b.line(f"{ws} = np.empty(max({int_expr(k.body.ws_size, self.dim_var)}, 1), "
               f"{NP[k.body.float_dtype]})")
        first = carry if k.out.rank > 1 else f"np.reshape({carry}, (1,))"
        hoisted, args = step_args(k, first, ws,
                                  lambda c: f"np.reshape({self.value(c)}, (1,))", self.dim_var)
        for line in hoisted:
            b.line(line)
        with b.block(f"for t_ in {steps(k, self.size)}:"):
            b.line(f"{carry}, = {fname}({', '.join(args)})")
            b.line(f"{out}[t_] = {carry}")


#: kernel class -> the emitter method printing it (every class of
#: :mod:`gradc.passes.kernels`: each target's table covers them all)
PRINTERS = {View: NumpyEmitter._view, Loop: NumpyEmitter._loop, Reduce: NumpyEmitter._reduce,
            Dot: NumpyEmitter._dot, Pick: NumpyEmitter._pick, Unpick: NumpyEmitter._unpick,
            Scatter: NumpyEmitter._scatter, Take: NumpyEmitter._take, Put: NumpyEmitter._put,
            Patches: NumpyEmitter._patches, Unpatches: NumpyEmitter._unpatches,
            Recur: NumpyEmitter._recur, Scan: NumpyEmitter._scan, Check: NumpyEmitter._check}
