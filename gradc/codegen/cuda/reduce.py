"""CUDA reductions: the :class:`~gradc.passes.kernels.Reduce` kernel.

Two shapes of kernel, chosen statically:

* serial: when the reduced extent is a small constant (classes, features), one thread per
  output loops over it (no shared memory, no barriers);
* tree: otherwise a block of ``_TPB`` threads handles ``cols`` outputs at a time
  (``_COLS`` consecutive outputs when the innermost axis is kept, so loads stay coalesced;
  else 1); its ``_TPB // cols`` rows of threads stride over the reduced elements, then a
  shared-memory tree combines their partials (no warp shuffles: they are not simulated).

logsumexp runs the max pass, broadcasts the max through shared memory, then the sum of
``exp(v - max)`` pass, as the CPU target does.
"""

from __future__ import annotations

from gradc.ir.shapes import numel
from gradc.passes.kernels import Reduce

SERIAL_MAX = 64
INIT = {"sum": "0", "max": "-np.inf", "min": "np.inf"}


def _combine(kind: str, a: str, b: str) -> str:
    return f"{a} + {b}" if kind == "sum" else f"{kind}({a}, {b})"


def emit_reduce(em, k: Reduce) -> None:
    """Emit the kernel of ``k`` with the emitter ``em`` (a CudaEmitter)."""
    rank = len(k.shape)
    red = [a for a in range(rank) if a in k.axes]
    kept = [a for a in range(rank) if a not in k.axes]
    nr_static = numel([k.shape[a] for a in red])
    em.begin(k.span)
    em.kernel.use(k.out)
    nk = em.size(numel([k.shape[a] for a in kept]))
    nr = em.size(nr_static)
    dest = f"{k.out.name}[0]" if not k.out.shape else \
        f"{k.out.name}[{', '.join(f'i{a}' for a in kept)}]"
    if nr_static.is_Integer and int(nr_static) <= SERIAL_MAX:
        _serial(em, k, kept, red, nk, nr, dest)
    else:
        cols = "_COLS" if kept and kept[-1] == rank - 1 else "1"
        _tree(em, k, kept, red, nk, nr, dest, cols)


def _init(em, kind: str) -> str:
    return f"{'np.float32' if em.dtype == 'f32' else 'np.float64'}({INIT[kind]})"


def _body(em, k: Reduce, red: list[int], nr: str, start: str, step: str, acc: str,
          kind: str, shift: str | None = None) -> None:
    """``acc`` combined with expr over the reduced elements start, start+step, ..."""
    body = em.kernel.body
    with body.block(f"for r_ in range({start}, {nr}, {step}):"):
        em.decompose("r_", [k.shape[a] for a in red], [f"i{a}" for a in red])
        em.assign("v_", k.expr, "t_")
        if shift is not None:
            body.line(f"{acc} += math.exp(v_ - {shift})")
        else:
            body.line(f"{acc} = {_combine(kind, acc, 'v_')}")


def _serial(em, k: Reduce, kept, red, nk: str, nr: str, dest: str) -> None:
    body = em.kernel.body
    with body.block(f"for o_ in range(cuda.grid(1), {nk}, cuda.gridsize(1)):"):
        em.decompose("o_", [k.shape[a] for a in kept], [f"i{a}" for a in kept])
        if k.kind == "logsumexp":
            body.line(f"m_ = {_init(em, 'max')}")
            _body(em, k, red, nr, "0", "1", "m_", "max")
            body.line(f"m_ = m_ if abs(m_) < {_init(em, 'min')} else {_init(em, 'sum')}")
            body.line(f"s_ = {_init(em, 'sum')}")
            _body(em, k, red, nr, "0", "1", "s_", "sum", shift="m_")
            body.line(f"{dest} = math.log(s_) + m_")
        else:
            body.line(f"a_ = {_init(em, k.kind)}")
            _body(em, k, red, nr, "0", "1", "a_", k.kind)
            body.line(f"{dest} = a_")
    em.finish(f"_grid({nk})")


def _tree(em, k: Reduce, kept, red, nk: str, nr: str, dest: str, cols: str) -> None:
    body = em.kernel.body
    one = cols == "1"
    body.line("sh_ = cuda.shared.array(_TPB, _FT)")
    body.line("t_ = cuda.threadIdx.x")
    body.line("c_ = 0" if one else f"c_ = t_ % {cols}")
    body.line("r0_ = t_" if one else f"r0_ = t_ // {cols}")
    groups = nk if one else f"({nk} + {cols} - 1) // {cols}"
    with body.block(f"for g_ in range(cuda.blockIdx.x, {groups}, cuda.gridDim.x):"):
        body.line("o_ = g_" if one else f"o_ = g_ * {cols} + c_")
        em.decompose("o_", [k.shape[a] for a in kept], [f"i{a}" for a in kept])
        if k.kind == "logsumexp":
            _partial(em, k, red, nk, nr, cols, "max")
            body.line("m_ = sh_[c_]")
            body.line(f"m_ = m_ if abs(m_) < {_init(em, 'min')} else {_init(em, 'sum')}")
            body.line("cuda.syncthreads()")
            _partial(em, k, red, nk, nr, cols, "sum", shift="m_")
            result = "math.log(sh_[c_]) + m_"
        else:
            _partial(em, k, red, nk, nr, cols, k.kind)
            result = "sh_[c_]"
        with body.block(f"if r0_ == 0 and o_ < {nk}:"):
            body.line(f"{dest} = {result}")
        body.line("cuda.syncthreads()")
    em.finish(f"_blocks({groups})")


def _partial(em, k: Reduce, red, nk: str, nr: str, cols: str, kind: str,
             shift: str | None = None) -> None:
    """Each thread's partial into ``sh_[t_]``, then the tree over the rows of the block:
    afterwards ``sh_[c_]`` holds the result of output column ``c_``."""
    body = em.kernel.body
    body.line(f"a_ = {_init(em, kind)}")
    with body.block(f"if o_ < {nk}:"):
        _body(em, k, red, nr, "r0_", "_TPB" if cols == "1" else f"_TPB // {cols}", "a_", kind,
              shift)
    body.line("sh_[t_] = a_")
    body.line("cuda.syncthreads()")
    body.line("s_ = _TPB // 2" if cols == "1" else f"s_ = _TPB // {cols} // 2")
    with body.block("while s_ > 0:"):
        with body.block("if r0_ < s_:"):
            other = "sh_[t_ + s_]" if cols == "1" else f"sh_[t_ + s_ * {cols}]"
            body.line(f"sh_[t_] = {_combine(kind, 'sh_[t_]', other)}")
        body.line("cuda.syncthreads()")
        body.line("s_ //= 2")
