"""The CPU target's scalar printer: :class:`gradc.codegen.scalar.ScalarPrinter` with the
functions :mod:`gradc.codegen.cpu.mathlib` has (``exp``, ``tanh``, ``sigmoid``, ...)
printed as calls of its branch-free, vectorisable versions (tested error bounds), which
the module then defines; Numba's own ``math.exp`` does not vectorise without SVML.
"""

from __future__ import annotations

from gradc.codegen.cpu.mathlib import VARIANTS
from gradc.codegen.scalar import ScalarPrinter


class CpuPrinter(ScalarPrinter):
    """Prints scalar expressions for the CPU's Numba kernels; :attr:`used` collects the
    mathlib functions the printed code calls."""

    def __init__(self, dtype: str, read):
        super().__init__(dtype, read)
        self.used: set[str] = set()

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
