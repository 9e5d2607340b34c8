"""The fused-kernel layer: what one compiled program computes, independent of the target.

A :class:`Program` is a list of kernels over named :class:`Buffer`\\ s; every kernel class
declares the buffers it ``writes()`` and ``reads()`` (the workspace planner trusts only
those, so a new kernel class states its buffers once, where it is defined). Elementwise work is
a :class:`Loop` whose stores are SymPy expressions over :class:`Read` symbols (a buffer read
through an index map), so elementwise chains, broadcasts and transposes fuse into one loop
and into reductions; contractions are :class:`Dot` (BLAS on the CPU). The CPU emitter
(:mod:`gradc.codegen.cpu.emit`) and a CUDA emitter print the same program.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import sympy

from gradc.ir.shapes import Shape
from gradc.source import Span


@dataclass(eq=False)
class Buffer:
    """A named array the program reads or writes.

    kind: 'arg' (a caller's array), 'scalar' (a caller's number: hyper-parameter, dim),
    'ws' (a slice of the workspace, planned once per dims), 'fresh' (allocated per call:
    handed to the caller), 'view' (a reshape of ``base``).
    """

    name: str
    shape: Shape
    dtype: str
    kind: str
    offset: sympy.Expr | None = None
    base: Buffer | None = None
    serial: int = field(default_factory=itertools.count().__next__)
    title: str = ""  # the name a user knows it by, for messages (args only)

    @property
    def rank(self) -> int:
        """Number of axes."""
        return len(self.shape)

    @property
    def root(self) -> Buffer:
        """The array, workspace slot or scalar this buffer is a view of (itself if none)."""
        buf = self
        while buf.kind == "view":
            buf = buf.base
        return buf


class Kernel:
    """Base of the kernel classes: ``writes()`` and ``reads()`` name every buffer the kernel
    touches (by default it writes ``out``); the workspace planner trusts only these."""

    def writes(self) -> list[Buffer]:
        """The buffers this kernel stores into."""
        return [self.out]

    def reads(self) -> list[Buffer]:
        """The buffers this kernel reads."""
        raise NotImplementedError(type(self).__name__)

    def bounds(self) -> list[tuple[Buffer, sympy.Expr, str]]:
        """The range checks this kernel makes: (label or index buffer, limit, kind), each
        element checked in [0, limit); kind 'label' or 'index' (see :func:`out_of_range`)."""
        return []


def out_of_range(idx: Buffer, kind: str, limit: str) -> str:
    """The message of a ``kind`` ('label' or 'index') element of ``idx`` outside
    [0, ``limit``), the same on every target."""
    if kind == "label":
        return f"{idx.title or 'labels'}: a label is outside [0, {limit})"
    return f"{idx.title or 'indices'}: an index is outside [0, {limit})"


@dataclass(frozen=True)
class Affine:
    """An index ``start + step * i<axis>`` (``axis`` None: the constant ``start``);
    ``start`` may be an expression in the dims (``B - 1``)."""

    axis: int | None
    start: sympy.Expr
    step: int = 1

    def __str__(self) -> str:
        return f"{self.start}+{self.step}*i{self.axis}" if self.axis is not None \
            else f"{self.start}"


def compose_index(entry, start, step: int):
    """The index ``start + step * e`` for an axis map entry ``e`` (None, int or Affine)."""
    if entry is None:
        return Affine(None, sympy.sympify(start), 0)
    if isinstance(entry, int):
        return Affine(entry, sympy.sympify(start), step) if (start, step) != (0, 1) else entry
    return Affine(entry.axis, start + step * entry.start, step * entry.step)


def _reads_of(exprs) -> list[Buffer]:
    """The buffers read by :class:`Read` symbols in ``exprs``."""
    return [r.buffer for e in exprs for r in e.atoms(Read)]


class Read(sympy.Symbol):
    """A symbol standing for ``buffer[index]`` inside a loop: ``axes[k]`` says how axis k of
    the buffer is indexed: a loop axis (int), the broadcast index 0 (None) or an
    :class:`Affine` index (slices)."""

    def __new__(cls, buffer: Buffer, axes: tuple):
        # SymPy caches symbols and expressions by structure: the name carries the buffer's
        # process-unique serial so that no cached expression can bring back a Read of a
        # buffer from another program. Equal (buffer, axes) still compare and hash equal,
        # and unequal ones never (:func:`_axis_text`).
        axes_text = ",".join(_axis_text(a) for a in axes)
        name = f"{buffer.name}@{axes_text}#{buffer.serial}"
        obj = sympy.Symbol.__xnew__(cls, name, real=True)
        obj.buffer, obj.axes = buffer, tuple(axes)
        return obj


def _axis_text(a) -> str:
    """One axis of a Read's name: ``_`` broadcast, ``=c`` the constant index c, else the
    loop axis or affine index as printed (a constant 0 and loop axis 0 both printed "0":
    a slice's W[0] and W[i0] were one symbol, and a kernel read either)."""
    if a is None:
        return "_"
    return f"={a.start}" if isinstance(a, Affine) and a.axis is None else str(a)


@dataclass(eq=False)
class Loop(Kernel):
    """For every index of ``shape``: evaluate each store's expression and write it.

    A store's expression may use :class:`Read` symbols and the targets of earlier stores
    (as ``Read(target, identity)``), which then mean the freshly stored value.
    """

    shape: Shape
    stores: list[tuple[Buffer, sympy.Expr]]
    span: Span | None = None

    def writes(self) -> list[Buffer]:
        """The buffers this kernel stores into."""
        return [b for b, _ in self.stores]

    def reads(self) -> list[Buffer]:
        return _reads_of([e for _, e in self.stores])


@dataclass(eq=False)
class Reduce(Kernel):
    """out[kept axes] = kind over ``axes`` of expr evaluated on ``shape``
    (kind 'sum', 'max', 'min' or 'logsumexp')."""

    out: Buffer
    kind: str
    shape: Shape
    axes: tuple[int, ...]
    expr: sympy.Expr
    span: Span | None = None

    def reads(self) -> list[Buffer]:
        return _reads_of([self.expr])


@dataclass(eq=False)
class Dot(Kernel):
    """out = op(a) @ op(b), batched over the leading axes of out (equal on a and b)."""

    out: Buffer
    a: Buffer
    b: Buffer
    ta: bool
    tb: bool
    span: Span | None = None

    def reads(self) -> list[Buffer]:
        return [self.a, self.b]


@dataclass(eq=False)
class Pick(Kernel):
    """out[i] = z[i, labels[i]] over the labels' shape; labels checked in [0, C)."""

    out: Buffer
    z: Buffer
    labels: Buffer
    span: Span | None = None

    def reads(self) -> list[Buffer]:
        return [self.z, self.labels]

    def bounds(self) -> list[tuple[Buffer, sympy.Expr, str]]:
        return [(self.labels, self.z.shape[-1], "label")]


@dataclass(eq=False)
class Unpick(Kernel):
    """out[i, c] = g[i] if c == labels[i] else 0."""

    out: Buffer
    g: Buffer
    labels: Buffer
    span: Span | None = None

    def reads(self) -> list[Buffer]:
        return [self.g, self.labels]

    def bounds(self) -> list[tuple[Buffer, sympy.Expr, str]]:
        return [(self.labels, self.out.shape[-1], "label")]


@dataclass(eq=False)
class Check(Kernel):
    """Raise unless every element of ``idx`` is in [0, ``limit``): the range check of a
    label or index tensor (``kind`` 'label' or 'index') that a program takes while none of
    its other kernels reads it with this limit (``hvp`` takes a cross-entropy's labels, but
    the Hessian does not depend on them), so every program checks its arguments as the
    function it differentiates does. Writes nothing."""

    idx: Buffer
    limit: sympy.Expr
    kind: str
    span: Span | None = None

    def writes(self) -> list[Buffer]:
        return []

    def reads(self) -> list[Buffer]:
        return [self.idx]

    def bounds(self) -> list[tuple[Buffer, sympy.Expr, str]]:
        return [(self.idx, self.limit, self.kind)]


@dataclass(eq=False)
class View(Kernel):
    """out (kind 'view') = base reshaped; no data moves."""

    out: Buffer
    span: Span | None = None

    def reads(self) -> list[Buffer]:
        return [self.out.base]


@dataclass(eq=False)
class Program:
    """One compiled program: arguments in call order, kernels in execution order, results.

    Attributes:
        name: the program's name ('forward', 'loss_and_grad', ...).
        args: the caller's arrays and scalars, in call order.
        dims: names of the call-time dims, passed after ``args``.
        kernels: in execution order.
        results: what the program returns, in order.
        ws_size: workspace elements needed (an expression in the dims).
        float_dtype: the dtype of the workspace.
    """

    name: str
    args: list[Buffer]
    dims: list[str]
    kernels: list = field(default_factory=list)
    results: list[Buffer] = field(default_factory=list)
    ws_size: sympy.Expr = sympy.Integer(0)
    float_dtype: str = "f32"


def blas_work(prog: Program) -> tuple[sympy.Expr, sympy.Expr]:
    """The BLAS products one call of ``prog`` makes, as (the sum of their multiply-adds
    squared, the sum of their multiply-adds), expressions in the dims: their quotient is
    the size of the product an average multiply-add is in (the products weighted by their
    work), which the thread budget (:mod:`gradc.codegen.threads`) reads. A plain mean
    would let a model's many small products (a bias's gradient, a 10-class head) hide the
    few large ones its time goes to. A :class:`Dot` is one product per leading index of
    its output; a :class:`Recur` one ``[B, H] @ [H, H]`` product per time step, a
    :class:`Scan` its body's products per time step."""
    squares, macs = sympy.Integer(0), sympy.Integer(0)
    for k in prog.kernels:
        if isinstance(k, Dot):
            count = sympy.Mul(*k.out.shape[:-2])
            inner = k.a.shape[-2] if k.ta else k.a.shape[-1]
            size = k.out.shape[-2] * k.out.shape[-1] * inner
            squares += count * size * size
            macs += count * size
        elif isinstance(k, Recur):
            b, t, h = k.out.shape
            squares += t * (b * h * h) ** 2
            macs += t * b * h * h
        elif isinstance(k, Scan):
            body_squares, body_macs = blas_work(k.body)
            squares += k.out.shape[0] * body_squares
            macs += k.out.shape[0] * body_macs
    return sympy.expand(squares), sympy.expand(macs)


@dataclass(eq=False)
class Scatter(Kernel):
    """Values placed into zeros (the adjoint of a slice, a concat, a sum of such): out =
    zeros (unless ``fill`` is False: the parts cover every element); then for each part
    ``(src, index)`` and every index i of src: out[index(i)] = src[i] (``index`` has one
    :class:`Affine` per axis of out). The parts' regions of out share no element."""

    out: Buffer
    parts: tuple[tuple[Buffer, tuple], ...]
    fill: bool = True
    span: Span | None = None

    def reads(self) -> list[Buffer]:
        return [src for src, _ in self.parts]


@dataclass(eq=False)
class Take(Kernel):
    """Gather along ``axis``: out[a, j, b] = src[a, idx[j], b]; indices checked."""

    out: Buffer
    src: Buffer
    idx: Buffer
    axis: int
    span: Span | None = None

    def reads(self) -> list[Buffer]:
        return [self.src, self.idx]

    def bounds(self) -> list[tuple[Buffer, sympy.Expr, str]]:
        return [(self.idx, self.src.shape[self.axis], "index")]


@dataclass(eq=False)
class Put(Kernel):
    """Scatter-add along ``axis``: out = zeros; out[a, idx[j], b] += src[a, j, b]."""

    out: Buffer
    src: Buffer
    idx: Buffer
    axis: int
    span: Span | None = None

    def reads(self) -> list[Buffer]:
        return [self.src, self.idx]

    def bounds(self) -> list[tuple[Buffer, sympy.Expr, str]]:
        return [(self.idx, self.out.shape[self.axis], "index")]


@dataclass(eq=False)
class Patches(Kernel):
    """im2col of NCHW ``src`` into out [N, OH, OW, C*kh*kw] (zeros where padded); ``k``,
    ``stride`` and ``pad`` are (height, width) pairs."""

    out: Buffer
    src: Buffer
    k: tuple[int, int]
    stride: tuple[int, int]
    pad: tuple[int, int]
    span: Span | None = None

    def reads(self) -> list[Buffer]:
        return [self.src]


@dataclass(eq=False)
class Unpatches(Kernel):
    """col2im: out [N, C, H, W] = zeros; each window of ``src`` added back in place
    (``k``, ``stride``, ``pad`` as in :class:`Patches`)."""

    out: Buffer
    src: Buffer
    k: tuple[int, int]
    stride: tuple[int, int]
    pad: tuple[int, int]
    span: Span | None = None

    def reads(self) -> list[Buffer]:
        return [self.src]


@dataclass(eq=False)
class Recur(Kernel):
    """A recurrence over axis 1 of [B, T, H] (kind 'scan', 'scan_bwd' or 'scan_lin'; see
    the graph ops of the same names): ``ins`` are the op's inputs in order."""

    kind: str
    out: Buffer
    ins: tuple
    span: Span | None = None

    def reads(self) -> list[Buffer]:
        return list(self.ins)


@dataclass(eq=False)
class Scan(Kernel):
    """A ``loop`` node (:mod:`gradc.ir.loops`): out[t] = body(out[t -+ 1] or zeros,
    seqs[t]..., consts...) for t in order (descending with ``reverse``); ``body`` is the
    step's own program (args: carry, sequence steps, constants; one result)."""

    out: Buffer
    seqs: tuple
    consts: tuple
    body: Program
    reverse: bool
    span: Span | None = None

    def reads(self) -> list[Buffer]:
        return list(self.seqs) + list(self.consts)
