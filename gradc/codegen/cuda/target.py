"""The CUDA target: kernel programs as ``numba.cuda`` kernels plus a host function per
program (registered in :data:`gradc.codegen.target.TARGETS`; see ``docs/cuda.md``).

Kernels are printed by :class:`gradc.codegen.cuda.emit.CudaEmitter`; the launch helpers and
device functions are :mod:`gradc.codegen.cuda.helpers`, the runtime hooks
:mod:`gradc.codegen.cuda.runtime`. ``_SIGNATURES`` records the argument types each kernel is
launched with, so that ``cuda.compile_ptx`` can compile every kernel without a GPU.
"""

from __future__ import annotations

from gradc.codegen.assemble import Unit, definitions, dim_var, paste
from gradc.codegen.builder import Builder
from gradc.codegen.cuda import helpers, runtime
from gradc.codegen.cuda.emit import CudaEmitter
from gradc.codegen.target import Target
from gradc.dtypes import NUMPY_NAMES

#: (threads per block, reduction columns, block cap, matmul threads per side, outputs per
#: thread per side, K slab) on a GPU and in the simulator (tiny, so that it stays fast
#: and every multi-block, multi-tile path still runs)
LAUNCH = {"gpu": (256, 32, 4096, 16, 4, 16), "sim": (8, 4, 2, 2, 2, 4)}
#: the device functions of the helpers (``_k_*``, decorated ``@cuda.jit`` when pasted);
#: the others are host-side launch helpers
_DEVICE = tuple(f for f in definitions(helpers) if f.__name__.startswith("_k_"))


class CudaTarget(Target):
    """numba.cuda kernels; params and optimizer state stay on the device."""

    name = "cuda"
    summary = (
        "Standalone: needs only NumPy, Numba and numba-cuda (and uses CuPy's cuBLAS for",
        "matmuls when CuPy is importable). The public functions work as in gradc's Python",
        "API; params and optimizer state stay on the device (init_params returns device",
        "arrays, to_host copies back). Results are device arrays when the inputs were",
        "device arrays, NumPy otherwise.")
    imports = ("import os", "", "import numba as nb", "import numpy as np",
               "from numba import cuda")
    hooks = tuple(f for f in definitions(helpers) if f not in _DEVICE) + \
        definitions(runtime)

    def constants(self, unit: Unit) -> list[str]:
        ft = "np." + NUMPY_NAMES[unit.signature["float"]]
        return [
            "_SIM = bool(nb.config.ENABLE_CUDASIM)  # the CUDA simulator: tiny launches",
            f"_CJIT = dict(cache={bool(unit.options.cache)} and not _SIM)",
            f"_FT = {ft}",
            "# threads per block, reduction columns (consecutive outputs per block), block "
            "cap;",
            "# matmul: threads per tile side, outputs per thread per side, K slab",
            f"_TPB, _COLS, _MAXB, _MT, _MR, _MK = {LAUNCH['sim']} if _SIM else "
            f"{LAUNCH['gpu']}",
            "_MS = _MT * _MR  # matmul tile side",
            "_MSP = _MS + 1  # padded shared-memory row (no bank conflicts)",
            "_BLAS = None  # CuPy, for cuBLAS matmuls (GRADC_CUDA_BLAS=0 turns it off)",
            "if not _SIM and os.environ.get('GRADC_CUDA_BLAS', '1') != '0':",
            "    try:",
            "        import cupy as _BLAS",
            "    except Exception:  # no usable CuPy: the tiled kernel does matmuls",
            "        _BLAS = None"]

    def emit(self, b: Builder, unit: Unit) -> dict:
        emitter = CudaEmitter(dim_var, unit.comment)
        extra = {}
        for name, (prog, _) in unit.programs.items():
            fname = unit.kernel_name(name)
            emitter.emit(b, prog, fname)
            extra[name] = {"views": f"_views{fname}"}
        for alias in emitter.bodies.emit(b, emitter.emit):  # their kernels were dropped
            emitter.signatures = {k: v for k, v in emitter.signatures.items()
                                  if not k.startswith(f"{alias}_k")}
        b.line(f"_ERRORS = {emitter.errors!r}")
        b.line("# the argument types each kernel is launched with (for cuda.compile_ptx)")
        b.line(f"_SIGNATURES = {_signatures(emitter, unit.signature['float'])!r}")
        b.line()
        b.line()
        for fn in _DEVICE:
            b.line("@cuda.jit(**_CJIT)")
            paste(b, fn)
        return extra


def _signatures(emitter: CudaEmitter, dtype: str) -> dict:
    out = dict(emitter.signatures)
    ft = NUMPY_NAMES[dtype]
    out["_k_gather_rows"] = [f"void({t}[:, ::1], {t}[:, ::1], int64[::1], int64, int64)"
                             for t in (ft, "int64")]
    out["_k_accumulate"] = [f"void({ft}[::1], {ft}[::1], {ft})"]
    return out


TARGET = CudaTarget()
