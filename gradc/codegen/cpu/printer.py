"""The CPU target's scalar printer: :class:`gradc.codegen.scalar.ScalarPrinter` with the
functions :mod:`gradc.codegen.cpu.mathlib` has (``exp``, ``tanh``, ``sigmoid``, ...)
printed as calls of its branch-free, vectorisable versions (tested error bounds), which
the module then defines; Numba's own ``math.exp`` does not vectorise without SVML.
Its float32 literals are module constants (:func:`constant_name`), not ``np.float32(c)``
calls in the kernels: Numba types and lowers every such call, while it reads a module
global as a constant (measured: spiral's train_step 3.03 -> 2.83 CPU s to compile).
"""

from __future__ import annotations

from gradc.codegen.cpu.mathlib import VARIANTS
from gradc.codegen.scalar import ScalarPrinter


def constant_name(text: str) -> str:
    """The module constant of the float32 literal ``text`` (``repr`` of a float):
    ``1e-08`` is ``_f32_1em08``, ``-0.5`` is ``_f32_m0_5``, ``-inf`` is ``_f32_minf``."""
    return "_f32_" + text.translate(str.maketrans({".": "_", "-": "m", "+": "p"}))


class CpuPrinter(ScalarPrinter):
    """Prints scalar expressions for the CPU's Numba kernels; :attr:`used` collects the
    mathlib functions the printed code calls, :attr:`constants` the float32 module
    constants (name -> its ``np.float32`` expression)."""

    def __init__(self, dtype: str, read):
        super().__init__(dtype, read)
        self.used: set[str] = set()
        self.constants: dict[str, str] = {}

    def lit(self, value) -> str:
        """A literal of the kernel's float dtype: a float32 one as a module constant."""
        text = super().lit(value)
        if self.dtype != "f32":
            return text
        name = constant_name(repr(float(value)))
        self.constants[name] = text
        return name

    def _fast(self, name: str, args) -> str | None:
        """``name`` through :mod:`gradc.codegen.cpu.mathlib` when it has it, else None."""
        if name not in VARIANTS:
            return None
        fn = VARIANTS[name][self.dtype == "f32"].__name__
        self.used.add(fn)
        return f"{fn}({', '.join(self._print(a) for a in args)})"

    def _print_Function(self, expr):
        return self._fast(type(expr).__name__.lower(), expr.args) or \
            super()._print_Function(expr)

    def _print_exp(self, expr):
        return self._fast("exp", expr.args) or super()._print_exp(expr)

    def _print_log(self, expr):
        return self._fast("log", expr.args) or super()._print_log(expr)

    def _print_tanh(self, expr):
        return self._fast("tanh", expr.args) or super()._print_tanh(expr)
