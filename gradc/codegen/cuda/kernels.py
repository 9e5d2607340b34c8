"""CUDA kernels of the structural kernel classes: labels, slices, gathers, im2col, scans,
loops over a body of their own.

Each function takes the :class:`~gradc.codegen.cuda.emit.CudaEmitter` and one kernel of the
program. Gathers (Pick, Unpick, Take, Patches) compute each output in one thread.
The adjoints are written as gathers too where the index map can be inverted statically —
Scatter (the adjoint of a slice) and Unpatches (col2im: each image pixel sums the window
entries that cover it) — so they need no zeroing pass and no atomics and add in a fixed
order. Put (the adjoint of a data-dependent gather) zeroes its output, then adds with
``cuda.atomic.add``. Index and label checks raise the device flag (see ``use_flag``).
"""

from __future__ import annotations

from contextlib import contextmanager

from gradc.codegen.bodies import step_args, steps
from gradc.codegen.indexing import NP
from gradc.passes.kernels import (Affine, Buffer, Check, Pick, Put, Recur, Scan, Scatter,
                                  Unpick, out_of_range)


@contextmanager
def _outside(em, body, idx: Buffer, kind: str, limit: str):
    """The branch taken when ``c_`` (an element of ``idx``) is outside [0, limit): it
    raises the device flag with the message of ``idx``; the caller may add lines to it."""
    with body.block(f"if c_ < 0 or c_ >= {limit}:"):
        body.line(f"cuda.atomic.max(flag, 0, {em.use_flag(out_of_range(idx, kind, limit))})")
        yield


def pick(em, k: Pick) -> None:
    """out[i] = z[i, labels[i]], labels checked in [0, classes)."""
    em.begin(k.span)
    em.kernel.use(k.out)
    body, r = em.kernel.body, k.labels.rank
    classes = em.size(k.z.shape[-1])
    n, ctx = em.flat(k.labels.shape)
    idx = ", ".join(f"i{a}" for a in range(r))
    body.line(f"c_ = {em.index(k.labels, range(r))}")
    with _outside(em, body, k.labels, "label", classes):
        body.line("c_ = 0")
    em.kernel.use(k.z)
    out = f"{k.out.name}[{idx}]" if k.out.shape else f"{k.out.name}[0]"
    body.line(f"{out} = {k.z.name}[{idx + ', ' if idx else ''}c_]")
    ctx.__exit__(None, None, None)
    em.finish(f"_grid({n})")


def unpick(em, k: Unpick) -> None:
    """out[i, c] = g[i] if c == labels[i] else 0, one thread per element of out."""
    em.begin(k.span)
    em.kernel.use(k.out)
    r = k.labels.rank
    n, ctx = em.flat(k.out.shape)
    label, g = em.index(k.labels, range(r)), em.index(k.g, range(r))
    out = em.index(k.out, range(r + 1))
    classes = em.size(k.out.shape[-1])
    body = em.kernel.body
    body.line(f"c_ = {label}")
    with _outside(em, body, k.labels, "label", classes):
        pass
    body.line(f"{out} = {g} if i{r} == c_ else {em.lit(0)}")
    ctx.__exit__(None, None, None)
    em.finish(f"_grid({n})")


def check(em, k: Check) -> None:
    """Raise the device flag if an element of ``idx`` is outside [0, limit)."""
    em.begin(k.span)
    em.kernel.use(k.idx)
    body, limit = em.kernel.body, em.size(k.limit)
    n, ctx = em.flat(k.idx.shape)
    body.line(f"c_ = {em.index(k.idx, range(k.idx.rank))}")
    with _outside(em, body, k.idx, k.kind, limit):
        pass
    ctx.__exit__(None, None, None)
    em.finish(f"_grid({n})")


def scatter(em, k: Scatter) -> None:
    """Values placed into zeros as a gather: out[o] = src[i] of the part whose index(i) ==
    o, else 0 (the parts' regions share no element)."""
    em.begin(k.span)
    em.kernel.use(k.out)
    body = em.kernel.body
    n, ctx = em.flat(k.out.shape, [f"o{d}" for d in range(k.out.rank)])
    out = f"{k.out.name}[{', '.join(f'o{d}' for d in range(k.out.rank))}]" if k.out.shape \
        else f"{k.out.name}[0]"
    tests = [_part_test(em, src, index, f"{p}_" if len(k.parts) > 1 else "")
             for p, (src, index) in enumerate(k.parts)]
    for p, (test, value) in enumerate(tests):
        with body.block(f"{'el' if p else ''}if {test}:"):
            body.line(f"{out} = {value}")
    with body.block("else:"):
        body.line(f"{out} = {em.lit(0)}")
    ctx.__exit__(None, None, None)
    em.finish(f"_grid({n})")


def _part_test(em, src, index: tuple, tag: str) -> tuple[str, str]:
    """(whether output index o lies in the region of the part ``(src, index)``, the
    value there); writes the part's offsets ``d<axis>_<tag>`` into the kernel."""
    body = em.kernel.body
    conds, at_src = [], [None] * src.rank
    for d, e in enumerate(index):
        e = Affine(e, 0, 1) if isinstance(e, int) else e
        start = em.size(e.start)
        if e.axis is None:
            conds.append(f"o{d} == {start}")
            continue
        name = f"d{d}_{tag}"
        body.line(f"{name} = o{d} - {start}" if start != "0" else f"{name} = o{d}")
        if e.step != 1:
            conds.append(f"{name} % {e.step} == 0")
        at = f"{name} // {e.step}" if e.step != 1 else name
        conds.append(f"0 <= {at} < {em.size(src.shape[e.axis])}")
        at_src[e.axis] = at
    em.kernel.use(src)
    value = f"{src.name}[{', '.join(at_src)}]" if src.shape else f"{src.name}[0]"
    return " and ".join(conds) or "True", value


def take(em, k) -> None:
    """Take (gather along ``axis``) and Put (its scatter-add adjoint, with atomics)."""
    put = isinstance(k, Put)
    data = k.out if put else k.src
    big, small = (k.src, k.out) if put else (k.out, k.src)
    if put:
        em.zero(k.out)
    em.begin(k.span)
    em.kernel.use(k.out)
    body, ax, r = em.kernel.body, k.axis, k.idx.rank
    n, ctx = em.flat(big.shape)
    loop = [f"i{a}" for a in range(big.rank)]
    body.line(f"c_ = {em.index(k.idx, range(ax, ax + r))}")
    limit = em.size(data.shape[ax])
    em.kernel.use(k.src)
    at = ", ".join(loop[:ax] + ["c_"] + loop[ax + r:])
    whole = ", ".join(loop)
    with _outside(em, body, k.idx, "index", limit):
        if not put:
            body.line(f"{big.name}[{whole}] = {em.lit(0)}")
    with body.block("else:"):
        if put:
            index = f"({at})" if "," in at else f"({at},)"
            body.line(f"cuda.atomic.add({small.name}, {index}, {big.name}[{whole}])")
        else:
            body.line(f"{big.name}[{whole}] = {small.name}[{at}]")
    ctx.__exit__(None, None, None)
    em.finish(f"_grid({n})")


def patches(em, k) -> None:
    """im2col: cols[n, oh, ow, (c*kh + i)*kw + j] = img[n, c, oh*sh + i - ph, ow*sw + j - pw]
    or 0 outside the image."""
    img, cols = k.src, k.out
    em.begin(k.span)
    em.kernel.use(cols)
    em.kernel.use(img)
    body, (kh, kw), (sh, sw), (ph, pw) = em.kernel.body, k.k, k.stride, k.pad
    h, w = (em.size(d) for d in img.shape[2:])
    n, ctx = em.flat(cols.shape)
    body.line(f"c_ = i3 // {kh * kw}")
    body.line(f"hh = i1 * {sh} + i3 // {kw} % {kh} - {ph}")
    body.line(f"ww = i2 * {sw} + i3 % {kw} - {pw}")
    body.line(f"{cols.name}[i0, i1, i2, i3] = {img.name}[i0, c_, hh, ww] if "
              f"0 <= hh < {h} and 0 <= ww < {w} else {em.lit(0)}")
    ctx.__exit__(None, None, None)
    em.finish(f"_grid({n})")


def unpatches(em, k) -> None:
    """col2im as a gather: each pixel sums the window entries that cover it."""
    img, cols = k.out, k.src
    em.begin(k.span)
    em.kernel.use(img)
    em.kernel.use(cols)
    body, (kh, kw), (sh, sw), (ph, pw) = em.kernel.body, k.k, k.stride, k.pad
    oh, ow = (em.size(d) for d in cols.shape[1:3])
    n, ctx = em.flat(img.shape)
    body.line(f"a_ = {em.lit(0)}")
    with body.block(f"for kh in range({kh}):"):
        body.line(f"th = i2 + {ph} - kh")
        with body.block(f"if th >= 0 and th % {sh} == 0 and th // {sh} < {oh}:"):
            with body.block(f"for kw in range({kw}):"):
                body.line(f"tw = i3 + {pw} - kw")
                with body.block(f"if tw >= 0 and tw % {sw} == 0 and tw // {sw} < {ow}:"):
                    body.line(f"a_ += {cols.name}[i0, th // {sh}, tw // {sw}, "
                              f"(i1 * {kh} + kh) * {kw} + kw]")
    body.line(f"{img.name}[i0, i1, i2, i3] = a_")
    ctx.__exit__(None, None, None)
    em.finish(f"_grid({n})")


def recur(em, k: Recur) -> None:
    """The time loop of a recurrence on the host: per step one matmul and one fused
    elementwise kernel (the step index ``t_`` is a kernel argument)."""
    bs, ts, hs = k.out.shape
    first, wh, third = (k.ins + (None,))[:3]
    n = len(em.planned)
    h = Buffer(f"s{n}_h", (bs, hs), k.out.dtype, "scratch")
    carry = Buffer(f"s{n}_{'c' if k.kind == 'scan_bwd' else 'm'}", (bs, hs), k.out.dtype,
                   "scratch")
    em.planned[h.name], em.planned[carry.name] = h, carry
    em.zero(h)
    em.zero(carry)
    back = k.kind == "scan_bwd"
    steps = f"range({em.size(ts)} - 1, -1, -1)" if back else f"range({em.size(ts)})"
    with em.hb.block(f"for t_ in {steps}:"):
        if not back:
            em.hb.line(f"_matmul({h.name}, {wh.name}, {carry.name}, False, False)")
            em.matmul_signature(h, wh, carry)
        em.begin(k.span)
        em.kernel.use(k.out)
        body = em.kernel.body
        size, ctx = em.flat((bs, hs), ["i_", "j_"])
        at = "[i_, t_, j_]"
        for buf in (first, third, carry, h):
            if buf is not None:
                em.kernel.use(buf)
        em.scalar("t_", "int64")
        if k.kind == "scan":
            body.line(f"v_ = math.tanh({first.name}{at} + {carry.name}[i_, j_])")
        else:
            body.line(f"v_ = ({third.name}{at} + {carry.name}[i_, j_]) * "
                      f"({em.lit(1)} - {first.name}{at} * {first.name}{at})")
        body.line(f"{k.out.name}{at} = v_")
        body.line(f"{h.name}[i_, j_] = v_")
        ctx.__exit__(None, None, None)
        em.finish(f"_grid({size})")
        if back:
            em.hb.line(f"_matmul({h.name}, {wh.name}, {carry.name}, False, True)")
            em.matmul_signature(h, wh, carry)



def scan(em, k: Scan) -> None:
    """The time loop of a ``loop`` node on the host (:mod:`gradc.codegen.bodies`): per step
    one call of the body's host function, which launches the body's kernels. The carry
    and the body's workspace are scratch arrays of the views planner (allocated once per
    dims); the body's result (a fresh array, or a workspace slice when rank 0) is copied
    into the carry and into ``out[t_]`` before the next step overwrites it."""
    fname = em.bodies.add(k.body)
    n = len(em.planned)
    carry = Buffer(f"s{n}_h", k.out.shape[1:], k.out.dtype, "scratch")
    ws = Buffer(f"s{n}_ws", (k.body.ws_size + 1,), k.body.float_dtype, "scratch")
    em.planned[carry.name], em.planned[ws.name] = carry, ws
    em.zero(carry)
    views = f"{ws.name}_v"
    dims = "".join(f", {em.dim_var(d)}" for d in k.body.dims)
    em.hb.line(f"{views} = _views{fname}({ws.name}{dims})")

    def one(buf: Buffer) -> str:  # a host number as a 1-element device array
        if buf.kind in ("scalar", "dim"):
            value = buf.name if buf.kind == "scalar" else em.dim_var(buf.name)
            return f"cuda.to_device(np.full(1, {value}, {NP[em.dtype]}))"
        return buf.name

    hoisted, args = step_args(k, carry.name, views, one, em.dim_var)
    for line in hoisted:
        em.hb.line(line)
    at = "[t_]" if k.out.rank > 1 else "[t_:t_ + 1]"
    with em.hb.block(f"for t_ in {steps(k, em.size)}:"):
        em.hb.line(f"r_, = {fname}({', '.join(args)})")
        em.hb.line(f"{carry.name}.copy_to_device(r_)")
        em.hb.line(f"{k.out.name}{at}.copy_to_device(r_)")
