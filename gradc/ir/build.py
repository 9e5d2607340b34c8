"""Typed, shape-checked constructors for graph nodes, shared by lowering and autodiff.

Each function validates shapes and dtypes and raises :class:`ShapeMismatch` (a message
without a location) on bad operands; :mod:`gradc.ir.lower` attaches the span.
"""

from __future__ import annotations

from collections.abc import Callable

import sympy

from gradc.ir.graph import Graph, Node
from gradc.ir.ops import ARGS
from gradc.ir.shapes import Shape, as_dim, broadcast, fmt_shape, keepdims_shape, numel


class ShapeMismatch(Exception):
    """Operands whose shapes or dtypes do not fit; the message names both shapes."""


def result_dtype(g: Graph, nodes: tuple[Node, ...]) -> str:
    """Float results of mixed operands take the model's float dtype."""
    return g.float_dtype


def ew(g: Graph, fn: Callable[..., sympy.Expr], *nodes: Node, what: str = "elementwise",
       span=None, label=None) -> Node:
    """Return ``fn`` applied elementwise to ``nodes`` with NumPy broadcasting."""
    shape = broadcast(*(n.shape for n in nodes))
    if shape is None:
        shapes = " and ".join(fmt_shape(n.shape) for n in nodes)
        raise ShapeMismatch(f"{what}: shapes {shapes} do not broadcast")
    expr = fn(*ARGS[:len(nodes)])
    return g.ewise(expr, nodes, shape, result_dtype(g, nodes), span, label)


def broadcast_to(g: Graph, x: Node, shape: Shape) -> Node:
    """Return ``x`` broadcast to ``shape`` (materialised only if a consumer needs it)."""
    if tuple(x.shape) == tuple(shape):
        return x
    return g.ewise(ARGS[0], (x,), shape, x.dtype)


def reshape(g: Graph, x: Node, shape: Shape) -> Node:
    """Return ``x`` with a new shape of the same size."""
    shape = tuple(as_dim(d) for d in shape)
    if tuple(x.shape) == shape:
        return x
    if sympy.simplify(numel(x.shape) - numel(shape)) != 0:
        raise ShapeMismatch(f"reshape: cannot reshape {fmt_shape(x.shape)} "
                            f"to {fmt_shape(shape)}: sizes differ")
    if x.op == "reshape":
        x = x.inputs[0]
        if tuple(x.shape) == shape:
            return x
    if x.op == "ewise" and all(i.rank == 0 for i in x.inputs):
        return g.ewise(x.attrs["expr"], x.inputs, shape, x.dtype)  # a fill: any shape
    return g.add("reshape", (x,), shape, x.dtype)


def transpose(g: Graph, x: Node, perm: tuple[int, ...] | None = None) -> Node:
    """Return ``x`` with axes permuted (reversed when ``perm`` is None)."""
    perm = tuple(reversed(range(x.rank))) if perm is None else tuple(perm)
    if sorted(perm) != list(range(x.rank)):
        raise ShapeMismatch(f"transpose: axes {perm} are not a permutation of "
                            f"{x.rank} axes of {fmt_shape(x.shape)}")
    if perm == tuple(range(x.rank)):
        return x
    if x.op == "transpose":
        inner = x.attrs["perm"]
        return transpose(g, x.inputs[0], tuple(inner[p] for p in perm))
    return g.add("transpose", (x,), tuple(x.shape[p] for p in perm), x.dtype, perm=perm)


def reduce(g: Graph, x: Node, kind: str, axes: tuple[int, ...], keepdims: bool = False) -> Node:
    """Return the ``kind`` ('sum', 'max', 'min', 'logsumexp') reduction of ``x`` over
    ``axes`` (normalised, sorted)."""
    out_shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    if not axes:
        out = x
    elif kind == "logsumexp":
        out = g.add("logsumexp", (x,), out_shape, x.dtype, axes=axes)
    else:
        out = g.add("reduce", (x,), out_shape, x.dtype, kind=kind, axes=axes)
    return reshape(g, out, keepdims_shape(x.shape, axes)) if keepdims else out


def sum_to(g: Graph, x: Node, shape: Shape) -> Node:
    """Sum ``x`` down to ``shape`` (the adjoint of broadcasting ``shape`` to ``x.shape``)."""
    shape = tuple(shape)
    if tuple(x.shape) == shape:
        return x
    lead = x.rank - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, d in enumerate(shape) if d == 1 and x.shape[lead + i] != 1)
    return reshape(g, reduce(g, x, "sum", axes), shape)


def mean_scale(g: Graph, x: Node, axes: tuple[int, ...]) -> Node:
    """Return a scalar node 1 / (number of elements over ``axes`` of ``x``)."""
    count = numel(tuple(x.shape[a] for a in axes))
    syms = sorted(count.free_symbols, key=lambda s: s.name)
    dims = tuple(g.add("dim", (), (), g.float_dtype, name=s.name) for s in syms)
    expr = 1 / count.xreplace(dict(zip(syms, ARGS)))
    return g.ewise(expr, dims, (), g.float_dtype)


def matmul2(g: Graph, a: Node, b: Node, ta: bool = False, tb: bool = False) -> Node:
    """Return op(a) @ op(b) for operands [*batch, m, k] / [*batch, k, n] (op = transpose of
    the last two axes when the flag is set); batch dims must be equal or absent on b."""
    am, ak = (a.shape[-1], a.shape[-2]) if ta else (a.shape[-2], a.shape[-1])
    bk, bn = (b.shape[-1], b.shape[-2]) if tb else (b.shape[-2], b.shape[-1])
    batch = a.shape[:-2]
    if b.shape[:-2] not in ((), batch) or (b.rank > 2 and a.rank == 2):
        raise ShapeMismatch(f"matmul: batch dims of {fmt_shape(a.shape)} and "
                            f"{fmt_shape(b.shape)} differ")
    if ak != bk:
        raise ShapeMismatch(f"matmul: {fmt_shape(a.shape)} @ {fmt_shape(b.shape)}: "
                            f"inner dimensions {ak} and {bk} differ")
    return g.add("matmul", (a, b), batch + (am, bn), g.float_dtype, ta=ta, tb=tb)


def matmul(g: Graph, a: Node, b: Node) -> Node:
    """Return ``a @ b`` with NumPy's rules for 1-D and batched operands."""
    if a.rank == 0 or b.rank == 0:
        raise ShapeMismatch(f"matmul: {fmt_shape(a.shape)} @ {fmt_shape(b.shape)}: "
                            "operands must have at least one axis")
    one = sympy.Integer(1)
    a2 = reshape(g, a, (one, a.shape[0])) if a.rank == 1 else a
    b2 = reshape(g, b, (b.shape[0], one)) if b.rank == 1 else b
    if a2.shape[-1] != b2.shape[-2]:
        raise ShapeMismatch(f"matmul: {fmt_shape(a.shape)} @ {fmt_shape(b.shape)}: "
                            f"inner dimensions {a2.shape[-1]} and {b2.shape[-2]} differ")
    if a2.rank > 2 and b2.rank == 2:
        flat = reshape(g, a2, (numel(a2.shape[:-1]), a2.shape[-1]))
        out = reshape(g, matmul2(g, flat, b2), a2.shape[:-1] + (b2.shape[-1],))
    else:
        # batch dims broadcast as in NumPy (a 2-D operand is one matrix for every batch
        # element); the broadcast operands' adjoints sum over the broadcast axes
        batch = broadcast(a2.shape[:-2], b2.shape[:-2])
        if batch is None:
            raise ShapeMismatch(f"matmul: batch dims of {fmt_shape(a.shape)} and "
                                f"{fmt_shape(b.shape)} do not broadcast")
        out = matmul2(g, broadcast_to(g, a2, batch + a2.shape[-2:]),
                      broadcast_to(g, b2, batch + b2.shape[-2:]))
    shape = out.shape
    if a.rank == 1:
        shape = shape[:-2] + shape[-1:]
    if b.rank == 1:
        shape = shape[:-1]
    return reshape(g, out, shape)


def slice_(g: Graph, x: Node, spec: tuple) -> Node:
    """Basic indexing: ``spec`` has one entry per axis of x: ``("i", index)`` drops the axis
    (a fixed index), ``("r", start, step, length)`` keeps ``length`` elements from
    ``start`` by ``step``. Bounds are the caller's to check."""
    spec = tuple((k, *(sympy.sympify(v) for v in rest)) for k, *rest in spec)
    shape = tuple(s[3] for s in spec if s[0] == "r")
    if all(s[0] == "r" and s[1] == 0 and s[2] == 1 and s[3] == d
           for s, d in zip(spec, x.shape)):
        return x
    placed = _placed_part(x, spec)
    if placed is not None:
        return reshape(g, placed, shape)
    return g.add("slice", (x,), shape, x.dtype, spec=spec)


def _placed_part(x: Node, spec: tuple) -> Node | None:
    """The value that ``spec`` reads, where ``x`` places values into zeros (an unslice, or
    a sum of unslices: the columns of a forward-mode grad) and ``spec`` reads exactly one
    placed region, all the others lying apart from it; else None (read ``x``)."""
    parts = placements(x)
    if parts is None:
        return None
    found = []
    for p in parts:
        mine = [_extent(e) for e in spec]
        theirs = [_extent(e) for e in p.attrs["spec"]]
        if mine == theirs:
            found.append(p.inputs[0])
        elif not any(_apart(a, b) for a, b in zip(mine, theirs)):
            return None
    return found[0] if len(found) == 1 else None


def placements(x: Node) -> list[Node] | None:
    """The unslices whose sum ``x`` is, where ``x`` places values into zeros of its shape:
    ``[x]`` for an unslice, the inputs of a plain sum (``ewise`` ``a + b + ...``) of
    unslices of ``x``'s shape and dtype; else None."""
    if x.op == "unslice":
        return [x]
    k = len(x.inputs)
    if x.op == "ewise" and k > 1 and x.attrs["expr"] == sympy.Add(*ARGS[:k]) and all(
            p.op == "unslice" and p.shape == x.shape and p.dtype == x.dtype
            for p in x.inputs):
        return list(x.inputs)
    return None


def apart(p: Node, q: Node) -> bool:
    """Whether the regions two unslices of one shape place their values at surely share no
    element (on some axis their index ranges lie apart)."""
    return any(_apart(_extent(a), _extent(b))
               for a, b in zip(p.attrs["spec"], q.attrs["spec"]))


def accumulate(g: Graph, a: Node, b: Node) -> Node:
    """``a + b`` (one shape), summing cotangents. Where both place values into zeros
    (:func:`placements`), the one flat sum of all their unslices, so that a value sliced
    in several places (an LSTM's four gates) gets back one sum the scheduler can write
    part by part into one buffer (:meth:`gradc.passes.schedule._Scheduler.placed`), not
    a chain of sums, each over buffers of the full shape."""
    pa, pb = placements(a), placements(b)
    if pa and pb and len({p.id for p in pa + pb}) == len(pa) + len(pb):
        return ew(g, lambda *s_: sympy.Add(*s_), *pa, *pb)
    return ew(g, lambda x, y: x + y, a, b)


def _extent(entry: tuple) -> tuple:
    """(start, step, count) of the indices one spec entry covers on its axis."""
    return (entry[1], sympy.Integer(1), sympy.Integer(1)) if entry[0] == "i" \
        else tuple(entry[1:])


def _apart(a: tuple, b: tuple) -> bool:
    """Whether two contiguous extents surely share no index."""
    if a[1] != 1 or b[1] != 1:
        return False
    return (a[0] + a[2] - b[0]).is_nonpositive is True or \
        (b[0] + b[2] - a[0]).is_nonpositive is True


def unslice(g: Graph, x: Node, spec: tuple, full: Shape) -> Node:
    """The adjoint of :func:`slice_`: zeros of shape ``full`` with ``x`` at the slice."""
    spec = tuple((k, *(sympy.sympify(v) for v in rest)) for k, *rest in spec)
    return g.add("unslice", (x,), tuple(full), x.dtype, spec=spec)


def take(g: Graph, a: Node, idx: Node, axis: int) -> Node:
    """Gather: ``out[..., j..., ...] = a[..., idx[j...], ...]`` along ``axis``."""
    shape = a.shape[:axis] + idx.shape + a.shape[axis + 1:]
    return g.add("take", (a, idx), shape, a.dtype, axis=axis)


def put(g: Graph, src: Node, idx: Node, axis: int, size) -> Node:
    """Scatter-add (the adjoint of :func:`take`): zeros with ``size`` along ``axis``,
    ``src``'s slices added at ``idx``."""
    lead = src.shape[:axis]
    shape = lead + (as_dim(size),) + src.shape[axis + idx.rank:]
    return g.add("put", (src, idx), shape, src.dtype, axis=axis)


def _pair(v) -> tuple[int, int]:
    """A window size, stride or padding per image axis: (height, width); an int is both."""
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _window_attrs(k, stride, pad) -> dict:
    """The attrs of a patches/unpatches node: each an int when both axes agree (conv2d,
    the pools), else its (height, width) pair; so equal windows hash equal."""
    return {name: v[0] if v[0] == v[1] else v for name, v in
            (("k", _pair(k)), ("stride", _pair(stride)), ("pad", _pair(pad)))}


def window(n: Node) -> tuple[tuple[int, int], ...]:
    """The (height, width) pairs of window size, stride and padding of a patches or
    unpatches node, whichever form its attrs have."""
    return tuple(_pair(n.attrs[name]) for name in ("k", "stride", "pad"))


def patches(g: Graph, x: Node, k, stride, pad) -> Node:
    """im2col of NCHW ``x``: [N, C, H, W] -> [N, OH, OW, C*kh*kw] (channel-major, then
    kernel row, then kernel column: the order of a conv weight [cout, C, kh, kw]).

    ``k``, ``stride`` and ``pad`` are per image axis, (height, width), or one int for both
    (see :func:`window`). conv1d is the window (1, k) over the height-1 view [N, C, 1, L]
    of its signal."""
    attrs = _window_attrs(k, stride, pad)
    n, c, h, w = x.shape
    if not (h.is_Integer and w.is_Integer):
        raise ShapeMismatch(f"needs a fixed image size, got {fmt_shape(x.shape)} (give H and "
                            "W as numbers, or declare them: dim H = 32)")
    k, stride, pad = _pair(k), _pair(stride), _pair(pad)
    oh, ow = ((size + 2 * p - kk) // s + 1 for size, kk, s, p in zip((h, w), k, stride, pad))
    if oh < 1 or ow < 1:
        raise ShapeMismatch(f"window {attrs['k']} with stride {attrs['stride']} and padding "
                            f"{attrs['pad']} does not fit the image {fmt_shape(x.shape)}")
    return g.add("patches", (x,), (n, sympy.Integer(oh), sympy.Integer(ow), c * k[0] * k[1]),
                 x.dtype, **attrs)


def unpatches(g: Graph, p: Node, like: Node, k, stride, pad) -> Node:
    """col2im: the adjoint of :func:`patches` (overlapping windows add up)."""
    return g.add("unpatches", (p,), like.shape, p.dtype, **_window_attrs(k, stride, pad))


def scan(g: Graph, xw: Node, wh: Node) -> Node:
    """The tanh recurrence over axis 1 of xw [B, T, H]: h_t = tanh(xw_t + h_{t-1} @ wh),
    h_{-1} = 0; returns every h_t as [B, T, H]."""
    return g.add("scan", (xw, wh), xw.shape, xw.dtype)


def shift_time(g: Graph, h: Node) -> Node:
    """h_{t-1} for every t of h [B, T, H] (zeros at t = 0)."""
    b, t, n = h.shape
    one = sympy.Integer(1)
    head = slice_(g, h, (("r", 0, 1, b), ("r", 0, 1, t - one), ("r", 0, 1, n)))
    return unslice(g, head, (("r", 0, 1, b), ("r", 1, 1, t - one), ("r", 0, 1, n)), h.shape)


def next_time(g: Graph, h: Node) -> Node:
    """h_{t+1} for every t of h [B, T, H] (zeros at t = T - 1): the reverse of
    :func:`shift_time`."""
    b, t, n = h.shape
    one = sympy.Integer(1)
    tail = slice_(g, h, (("r", 0, 1, b), ("r", 1, 1, t - one), ("r", 0, 1, n)))
    return unslice(g, tail, (("r", 0, 1, b), ("r", 0, 1, t - one), ("r", 0, 1, n)), h.shape)


def causal_mask(g: Graph, t) -> Node:
    """The [T, T] matrix ``m[i, j] = 1 if j <= i else 0``, for any T (a dim too), built
    from existing primitives: ``v`` [2T] is 1 at 0 and above T; T rows of ``v`` laid end to
    end and read back as rows of 2T - 1 shift by one per row, so ``m[i, j] =
    v[(j - i) mod 2T]``, which is 1 exactly for j - i in {0, -1, ..., 1 - T}."""
    two = 2 * t
    v = ew(g, lambda a: 1 - a, unslice(g, g.const(1, (t,)), (("r", 1, 1, t),), (two,)))
    flat = reshape(g, broadcast_to(g, v, (t, two)), (t * two,))
    rows = reshape(g, slice_(g, flat, (("r", 0, 1, t * (two - 1)),)), (t, two - 1))
    return slice_(g, rows, (("r", 0, 1, t), ("r", 0, 1, t)))


def time_matmul(g: Graph, a: Node, b: Node, ta: bool = False, tb: bool = False) -> Node:
    """[B, T, n] @ [n, m] (``tb``: @ [m, n]^T) or, with ``ta``, the [n, m] sum over B and T
    of a_bt^T b_bt."""
    flat_a = reshape(g, a, (a.shape[0] * a.shape[1], a.shape[2]))
    if ta:
        return matmul2(g, flat_a, reshape(g, b, (b.shape[0] * b.shape[1], b.shape[2])), True)
    m = b.shape[0] if tb else b.shape[-1]
    return reshape(g, matmul2(g, flat_a, b, False, tb), a.shape[:2] + (m,))
