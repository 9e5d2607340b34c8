"""The CPU target: kernel programs as ``numba.njit`` functions (registered in
:data:`gradc.codegen.target.TARGETS`; the interface is :class:`gradc.codegen.target.Target`).

Kernels are printed by :class:`gradc.codegen.cpu.emit.CpuEmitter`, ``train_epoch``'s compiled
loop (train_step's statements inside a loop over the minibatches) by
:mod:`gradc.codegen.cpu.epoch`, the vectorisable math they call by :mod:`gradc.codegen.cpu.mathlib`;
the runtime hooks are :mod:`gradc.codegen.host`.
"""

from __future__ import annotations

from gradc.codegen import host
from gradc.codegen.assemble import Unit, definitions, dim_var
from gradc.codegen.builder import Builder
from gradc.codegen.cpu import mathlib, views
from gradc.codegen.cpu.emit import CpuEmitter
from gradc.codegen.cpu.epoch import emit_epoch
from gradc.codegen.cpu.fastpath import emit_fast, supported
from gradc.codegen.cpu.outline import outline
from gradc.codegen.target import Target

FASTMATH = "{'reassoc', 'contract', 'arcp', 'nsz', 'afn'}"
#: train_epoch gets a compiled loop (:mod:`gradc.codegen.cpu.epoch`) when train_step's program
#: has at most this many kernels; a larger step runs in a host loop (``_epoch``), whose
#: ~13 us of dispatch per minibatch is small beside such a step, while the compiled loop
#: would cost more to compile than the step itself (Numba, 2 cores: spiral's 33 kernels
#: compile as a loop in about the step's 6 s; cnn's 87 in 47 s against the step's 33 s)
EPOCH_KERNELS_MAX = 48


def math_jit(name: str, cache: bool = False) -> str:
    """The decorator of the mathlib function ``name`` in a generated module: a function of
    its own, which LLVM inlines into the loops that call it (Numba types and lowers it once
    per process, not at every call site), with the kernels' fastmath flags, so its
    instructions round as they would inlined; those too large for LLVM's inliner
    (:data:`mathlib.NUMBA_INLINED`) inlined by Numba, so that their loops vectorise."""
    if name in mathlib.NUMBA_INLINED:
        return f"@nb.njit(inline='always', error_model='numpy', fastmath={FASTMATH})"
    return (f"@nb.njit(cache={bool(cache)}, error_model='numpy', fastmath={FASTMATH}, "
            "no_cpython_wrapper=True, no_cfunc_wrapper=True)")


class CpuTarget(Target):
    """Numba CPU kernels, BLAS through ``np.dot``; optionally ``parallel=True``."""

    name = "cpu"
    summary = ("Standalone: needs only NumPy and Numba. The public functions (init_params,",
               "forward, loss, loss_and_grad, train_step, train_epoch, jvp, vjp, hvp,",
               "jacobian, as the model has them) work as in gradc's Python API.")
    imports = ("import numba as nb", "import numpy as np")
    hooks = definitions(host)
    blas_modules = ("scipy.linalg.cython_blas",)  # Numba's np.dot calls SciPy's BLAS

    def constants(self, unit: Unit) -> list[str]:
        opts = unit.options
        # no C-callable wrapper (nothing takes a kernel's address), and a body, which only
        # compiled code calls, no Python one either: each is LLVM code to compile, the
        # Python wrapper ~40 lines per array argument
        return [f"_JIT = dict(cache={bool(opts.cache)}, nogil=True, error_model='numpy', "
                f"boundscheck=False, parallel={bool(opts.parallel)}, fastmath={FASTMATH}, "
                "no_cfunc_wrapper=True)",
                "_BODY = dict(_JIT, no_cpython_wrapper=True)",
                "_FAST = (None, None, None, None)  # the call of the fast path: no routing"]

    def emit(self, b: Builder, unit: Unit) -> dict:
        emitter = CpuEmitter(dim_var, unit.comment, unit.options.parallel)
        kernels, extra = Builder(), {}
        for name, (prog, _) in unit.programs.items():
            emitter.emit(kernels, outline(prog), unit.kernel_name(name))
        prog, spec = unit.programs.get("train_step", (None, None))
        if prog is not None and unit.signature["batch"] is not None and \
                len(prog.kernels) <= EPOCH_KERNELS_MAX:
            epoch = unit.kernel_name("train_epoch")
            # the step's kernels as they are, not outlined (gradc/codegen/cpu/outline.py):
            # the epoch is printed only for small steps, and inside its loop LLVM rounded
            # an outlined Adam update differently (1 ulp, fastmath's reassoc, measured)
            emit_epoch(kernels, emitter, spec, prog, epoch,
                       unit.options.optimizer.step_scalars(t="e_t"))
            extra["train_epoch"] = {"kernel": epoch}
        emitter.bodies.emit(kernels, lambda b, body, fname: emitter.emit(b, body, fname,
                                                                          jit="_BODY"))
        if emitter.views_used:
            b.lines.extend(views.source(emitter.views_used,
                                        f"cache={bool(unit.options.cache)}, nogil=True, "
                                        "boundscheck=False, no_cpython_wrapper=True, "
                                        "no_cfunc_wrapper=True").split("\n"))
            b.line()
            b.line()
        if emitter.constants:
            b.line("# The kernels' float32 constants (Numba reads a module global as a constant).")
            b.lines.extend(f"{name} = {text}" for name, text in sorted(emitter.constants.items()))
            b.line()
            b.line()
        if emitter.math_used:
            b.line("# Vectorisable math (gradc.codegen.cpu.mathlib): error bounds tested against "
                   "NumPy.")
            b.lines.extend(mathlib.sources(
                sorted(emitter.math_used),
                lambda name: math_jit(name, unit.options.cache)).split("\n"))
            b.line()
            b.line()
        b.lines.extend(kernels.lines)
        return extra

    def fast_path(self, b: Builder, entry, unit: Unit) -> None:
        """The straight-line check of :mod:`gradc.codegen.cpu.fastpath`, for entries that
        declare one (``PublicEntry.fast``) and whose program it supports."""
        if entry.fast is None:
            return
        program, cond, ret = entry.fast
        prog, spec = unit.programs[program]
        if supported(spec):
            emit_fast(b, spec, prog, dim_var, unit.kernel_name(program), ret,
                      len(unit.signature["params"]), cond)


TARGET = CpuTarget()
