"""The numpy target: kernel programs as vectorised NumPy functions (registered in
:data:`gradc.codegen.target.TARGETS`; the interface is :class:`gradc.codegen.target.Target`).

The module imports NumPy alone and compiles nothing, so it starts in milliseconds and runs
wherever NumPy does; its results agree with the CPU target's to rounding (~1e-16 relative
in float64: only summation orders differ). Kernels are printed by
:class:`gradc.codegen.numpy.emit.NumpyEmitter`, the array helpers they call are
:mod:`gradc.codegen.numpy.helpers`'s; the runtime hooks are the CPU target's
(:mod:`gradc.codegen.host`; with no train_epoch kernel, ``_epoch`` loops over the
minibatches in Python).
"""

from __future__ import annotations

from gradc.codegen import host
from gradc.codegen.assemble import Unit, definitions, dim_var, paste
from gradc.codegen.builder import Builder
from gradc.codegen.numpy import helpers
from gradc.codegen.numpy.emit import NumpyEmitter
from gradc.codegen.target import Target


class NumpyTarget(Target):
    """Vectorised NumPy: no compilation, BLAS through ``np.dot``/``np.matmul``."""

    name = "numpy"
    summary = ("Standalone: needs only NumPy (vectorised array code: nothing is compiled, it",
               "starts at once). The public functions (init_params, forward, loss,",
               "loss_and_grad, train_step, train_epoch, jvp, vjp, hvp, jacobian, as the model",
               "has them) work as in gradc's Python API.")
    imports = ("import numpy as np",)
    hooks = definitions(host)

    def constants(self, unit: Unit) -> list[str]:
        return []

    def emit(self, b: Builder, unit: Unit) -> dict:
        emitter = NumpyEmitter(dim_var, unit.comment)
        kernels = Builder()
        for name, (prog, _) in unit.programs.items():
            emitter.emit(kernels, prog, unit.kernel_name(name))
            kernels.line()
        emitter.bodies.emit(kernels, emitter.emit)
        for helper in sorted(emitter.helpers):
            paste(b, getattr(helpers, helper))
        b.lines.extend(kernels.lines)
        return {}


TARGET = NumpyTarget()
