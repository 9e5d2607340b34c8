"""SymPy -> NumPy array source: one elementwise expression evaluated over whole arrays.

:class:`ArrayPrinter` is the CPU's :class:`gradc.codegen.printer.ScalarPrinter` (typed
literals, so float32 code stays float32; integer powers as products, as the CPU prints
them) with every scalar construct replaced by its array form: ``math.f`` by ``np.f``,
``a if c else b`` by ``np.where``, ``max`` by ``np.maximum``. The reads of buffers
(:class:`gradc.passes.kernels.Read`) are printed by a callback as array views.
"""

from __future__ import annotations

import sympy
from sympy.printing.precedence import PRECEDENCE

from gradc.codegen.printer import ScalarPrinter

#: the functions of :mod:`gradc.ir.sym` -> a template over the printed arguments (Z, O:
#: the typed 0 and 1); helpers named ``_x`` are :mod:`gradc.codegen.numpy_prelude`'s
TEMPLATES = {
    "Relu": "np.maximum({0}, {Z})",
    "Step": "np.where({0} > {Z}, {O}, {Z})",
    "Sign": "np.sign({0})",
    "Absv": "np.abs({0})",
    "Sigmoid": "_sigmoid({0})",
    "Softplus": "(np.maximum({0}, {Z}) + np.log1p(np.exp(-np.abs({0}))))",
    "Less": "np.where({0} < {1}, {O}, {Z})",
    "LessEq": "np.where({0} <= {1}, {O}, {Z})",
    "Greater": "np.where({0} > {1}, {O}, {Z})",
    "GreaterEq": "np.where({0} >= {1}, {O}, {Z})",
    "Equal": "np.where({0} == {1}, {O}, {Z})",
    "Select": "np.where({0} != {Z}, {1}, {2})",
    "Max2": "np.maximum({0}, {1})",
    "Min2": "np.minimum({0}, {1})",
    "Detach": "{0}",
    "log1p": "np.log1p({0})",
    "expm1": "np.expm1({0})",
    "erf": "_erf({0})",
}
#: helpers of the generated module a template may call
HELPERS = ("_sigmoid", "_erf")

_CONDITIONS = {"Less": "{0} < {1}", "LessEq": "{0} <= {1}", "Greater": "{0} > {1}",
               "GreaterEq": "{0} >= {1}", "Equal": "{0} == {1}"}
#: ``math`` functions whose NumPy name differs
_RENAMED = {"asin": "arcsin", "acos": "arccos", "atan": "arctan", "atan2": "arctan2",
            "asinh": "arcsinh", "acosh": "arccosh", "atanh": "arctanh", "fabs": "abs"}


class ArrayPrinter(ScalarPrinter):
    """Prints elementwise expressions as NumPy array code of one float dtype.

    Args:
        dtype: 'f32' or 'f64': literals are typed to it.
        read: callback printing a :class:`Read` as an array view (or a scalar).

    ``helpers`` collects the module helpers (``_erf``, ``_sigmoid``) the printed code calls.
    """

    def __init__(self, dtype: str, read):
        super().__init__(dtype, read, fast=False)
        self.helpers: set[str] = set()

    def _module_format(self, fqn, register=True):
        module, _, name = fqn.rpartition(".")
        if module in ("math", "numpy", "cmath"):
            return "np." + _RENAMED.get(name, name)
        return super()._module_format(fqn, register)

    def _call(self, template: str, args) -> str:
        for helper in HELPERS:
            if helper + "(" in template:
                self.helpers.add(helper)
        return template.format(*[self._print(a) for a in args], Z=self.lit(0), O=self.lit(1))

    def _print_Function(self, expr):
        name = type(expr).__name__
        if name == "Select" and type(expr.args[0]).__name__ in _CONDITIONS:
            cond, a, b = expr.args
            test = _CONDITIONS[type(cond).__name__].format(*map(self._print, cond.args))
            return f"np.where({test}, {self._print(a)}, {self._print(b)})"
        if name in TEMPLATES:
            return self._call(TEMPLATES[name], expr.args)
        return super()._print_Function(expr)

    def _print_exp(self, expr):
        return f"np.exp({self._print(expr.args[0])})"

    def _print_log(self, expr):
        return f"np.log({self._print(expr.args[0])})"

    def _print_tanh(self, expr):
        return f"np.tanh({self._print(expr.args[0])})"

    def _print_erf(self, expr):
        return self._call(TEMPLATES["erf"], expr.args)

    def _print_log1p(self, expr):
        return self._call(TEMPLATES["log1p"], expr.args)

    def _print_expm1(self, expr):
        return self._call(TEMPLATES["expm1"], expr.args)

    def _print_sign(self, expr):
        return f"np.sign({self._print(expr.args[0])})"

    def _print_Abs(self, expr):
        return f"np.abs({self._print(expr.args[0])})"

    def _print_Pow(self, expr, rational=False):
        base, exp = expr.as_base_exp()
        if exp == sympy.S.Half:
            return f"np.sqrt({self._print(base)})"
        if exp == -sympy.S.Half:
            return f"({self.lit(1)} / np.sqrt({self._print(base)}))"
        return super()._print_Pow(expr, rational)

    def _fold(self, fn: str, args) -> str:
        text = self._print(args[-1])
        for a in reversed(args[:-1]):
            text = f"{fn}({self._print(a)}, {text})"
        return text

    def _print_Max(self, expr):
        return self._fold("np.maximum", expr.args)

    def _print_Min(self, expr):
        return self._fold("np.minimum", expr.args)

    def _print_Piecewise(self, expr):
        *pieces, (last, cond) = expr.args
        text = self._print(last) if cond == sympy.true else \
            f"np.where({self._print(cond)}, {self._print(last)}, {self.lit(float('nan'))})"
        for e, c in reversed(pieces):
            text = f"np.where({self._print(c)}, {self._print(e)}, {text})"
        return text

    def _logical(self, fn: str, expr) -> str:
        return self._fold(fn, sorted(expr.args, key=sympy.default_sort_key))

    def _print_And(self, expr):
        return self._logical("np.logical_and", expr)

    def _print_Or(self, expr):
        return self._logical("np.logical_or", expr)

    def _print_Not(self, expr):
        return f"np.logical_not({self._print(expr.args[0])})"

    def _print_Heaviside(self, expr):
        x = self.parenthesize(expr.args[0], PRECEDENCE["Relational"])
        half = self._print(expr.args[1]) if len(expr.args) > 1 else self.lit(0.5)
        return f"np.where({x} > {self.lit(0)}, {self.lit(1)}, " \
               f"np.where({x} < {self.lit(0)}, {self.lit(0)}, {half}))"
