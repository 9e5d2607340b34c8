"""Helpers copied verbatim into every generated CUDA module (by ``inspect.getsource``).

Launch helpers (grid sizes, the error flag, the matmul dispatch) and the device
functions (named ``_k_*``, decorated ``@cuda.jit`` by the generator): the tiled matmul and
the train_epoch row gather. The host-side runtime hooks are in
:mod:`gradc.codegen.cuda.runtime`.

They may use only ``numpy`` (as ``np``), ``math``, ``cuda`` (``numba.cuda``), the
generated module's tables and constants (``SIGNATURE``, ``_PROGRAMS``, ``_FT``, ``_TPB``,
``_MAXB``, ``_MT``, ``_MR``, ``_MK``, ``_MS``, ``_MSP``, ``_BLAS``) and each other (and the
shared runtime's helpers): the generated module runs without gradc.
This file itself never imports numba.cuda (the CPU path must not).
"""
# ruff: noqa: F821  (cuda, SIGNATURE, _PROGRAMS and the constants are the generated module's)

import numpy as np


def _grid(n):
    """Blocks for a grid-stride loop over ``n`` items (``_TPB`` threads each)."""
    return max(1, min((n + _TPB - 1) // _TPB, _MAXB))


def _blocks(groups):
    """Blocks for a block-stride loop over ``groups`` (capped at ``_MAXB``)."""
    return max(1, min(groups, _MAXB))


def _raise_flag(flag, messages):
    """Raise the ValueError a kernel flagged (an index or label out of range)."""
    code = int(flag.copy_to_host()[0])
    if code:
        flag.copy_to_device(np.zeros(1, np.int32))
        raise ValueError(messages[code - 1])


def _matmul(a, b, out, ta, tb):
    """out = op(a) @ op(b) (op: transpose when the flag is set), batched over leading
    axes: cuBLAS through CuPy when available, else the tiled kernel."""
    if _BLAS is not None:
        x, y = _BLAS.asarray(a), _BLAS.asarray(b)
        _BLAS.matmul(x.swapaxes(-1, -2) if ta else x, y.swapaxes(-1, -2) if tb else y,
                     out=_BLAS.asarray(out))
        return
    shape = tuple(out.shape)  # (the simulator's shapes take no negative indices)
    m, n = shape[-2], shape[-1]
    tiles = ((m + _MS - 1) // _MS) * ((n + _MS - 1) // _MS)
    if len(shape) == 2:
        _k_mm2[max(1, min(tiles, _MAXB)), (_MT, _MT)](a, b, out, ta, tb)
        return
    nb = 1
    for d in shape[:-2]:
        nb *= d
    a3 = a.reshape((nb,) + tuple(a.shape)[-2:])
    b3 = b.reshape((nb,) + tuple(b.shape)[-2:])
    _k_mm3[max(1, min(tiles * nb, _MAXB)), (_MT, _MT)](a3, b3, out.reshape((nb, m, n)),
                                                       ta, tb)


def _k_mm2(a, b, out, ta, tb):
    """Tiled matmul: each block computes _MS x _MS outputs (each thread _MR x _MR) over
    K-slabs of _MK staged in shared memory; loads stay coalesced for either layout."""
    sa = cuda.shared.array((_MK, _MSP), _FT)
    sb = cuda.shared.array((_MK, _MSP), _FT)
    acc = cuda.local.array((_MR, _MR), _FT)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    tid = ty * _MT + tx
    m, n = out.shape[0], out.shape[1]
    kk = a.shape[0] if ta else a.shape[1]
    tiles_n = (n + _MS - 1) // _MS
    for tile in range(cuda.blockIdx.x, (m + _MS - 1) // _MS * tiles_n, cuda.gridDim.x):
        i0 = tile // tiles_n * _MS
        j0 = tile % tiles_n * _MS
        for r in range(_MR):
            for c in range(_MR):
                acc[r, c] = 0
        for k0 in range(0, kk, _MK):
            for e in range(tid, _MK * _MS, _MT * _MT):
                k, i = (e // _MS, e % _MS) if ta else (e % _MK, e // _MK)
                v = _FT(0)
                if i0 + i < m and k0 + k < kk:
                    v = a[k0 + k, i0 + i] if ta else a[i0 + i, k0 + k]
                sa[k, i] = v
                k, j = (e % _MK, e // _MK) if tb else (e // _MS, e % _MS)
                v = _FT(0)
                if j0 + j < n and k0 + k < kk:
                    v = b[j0 + j, k0 + k] if tb else b[k0 + k, j0 + j]
                sb[k, j] = v
            cuda.syncthreads()
            for k in range(_MK):
                for r in range(_MR):
                    x = sa[k, ty + r * _MT]
                    for c in range(_MR):
                        acc[r, c] += x * sb[k, tx + c * _MT]
            cuda.syncthreads()
        for r in range(_MR):
            for c in range(_MR):
                if i0 + ty + r * _MT < m and j0 + tx + c * _MT < n:
                    out[i0 + ty + r * _MT, j0 + tx + c * _MT] = acc[r, c]


def _k_mm3(a, b, out, ta, tb):
    """The batched twin of ``_k_mm2``: axis 0 of a, b and out is the batch."""
    sa = cuda.shared.array((_MK, _MSP), _FT)
    sb = cuda.shared.array((_MK, _MSP), _FT)
    acc = cuda.local.array((_MR, _MR), _FT)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    tid = ty * _MT + tx
    m, n = out.shape[1], out.shape[2]
    kk = a.shape[1] if ta else a.shape[2]
    tiles_n = (n + _MS - 1) // _MS
    tiles = (m + _MS - 1) // _MS * tiles_n
    for tile in range(cuda.blockIdx.x, tiles * out.shape[0], cuda.gridDim.x):
        z = tile // tiles
        i0 = tile % tiles // tiles_n * _MS
        j0 = tile % tiles_n * _MS
        for r in range(_MR):
            for c in range(_MR):
                acc[r, c] = 0
        for k0 in range(0, kk, _MK):
            for e in range(tid, _MK * _MS, _MT * _MT):
                k, i = (e // _MS, e % _MS) if ta else (e % _MK, e // _MK)
                v = _FT(0)
                if i0 + i < m and k0 + k < kk:
                    v = a[z, k0 + k, i0 + i] if ta else a[z, i0 + i, k0 + k]
                sa[k, i] = v
                k, j = (e % _MK, e // _MK) if tb else (e // _MS, e % _MS)
                v = _FT(0)
                if j0 + j < n and k0 + k < kk:
                    v = b[z, j0 + j, k0 + k] if tb else b[z, k0 + k, j0 + j]
                sb[k, j] = v
            cuda.syncthreads()
            for k in range(_MK):
                for r in range(_MR):
                    x = sa[k, ty + r * _MT]
                    for c in range(_MR):
                        acc[r, c] += x * sb[k, tx + c * _MT]
            cuda.syncthreads()
        for r in range(_MR):
            for c in range(_MR):
                if i0 + ty + r * _MT < m and j0 + tx + c * _MT < n:
                    out[z, i0 + ty + r * _MT, j0 + tx + c * _MT] = acc[r, c]


def _k_gather_rows(dst, src, perm, start, m):
    """dst[i, :] = src[perm[start + i], :] for i < m (the rows of one minibatch)."""
    inner = src.shape[1]
    for f in range(cuda.grid(1), m * inner, cuda.gridsize(1)):
        dst[f // inner, f % inner] = src[perm[start + f // inner], f % inner]


def _k_accumulate(acc, loss, weight):
    """acc[0] += loss[0] * weight (the epoch's loss sum, kept on the device)."""
    if cuda.grid(1) == 0:
        acc[0] += loss[0] * weight
