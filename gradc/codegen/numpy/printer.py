"""SymPy -> NumPy array source: one elementwise expression evaluated over whole arrays.

:class:`ArrayPrinter` is the CPU's :class:`gradc.codegen.scalar.ScalarPrinter` (typed
literals, so float32 code stays float32; integer powers as products, as the CPU prints
them) with every scalar construct replaced by its array form: ``math.f`` by ``np.f``,
``a if c else b`` by ``np.where``, ``max`` by ``np.maximum``. The reads of buffers
(:class:`gradc.passes.kernels.Read`) are printed by a callback as array views.
"""

from __future__ import annotations

import inspect

import sympy
from sympy.printing.precedence import PRECEDENCE

from gradc.codegen import scalar
from gradc.codegen.numpy import helpers

#: the scalar printer's templates with their array forms (Z, O: the typed 0 and 1);
#: helpers named ``_x`` are :mod:`gradc.codegen.numpy.helpers`'s
TEMPLATES = {**scalar.TEMPLATES, **{
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
    "log1p": "np.log1p({0})",
    "expm1": "np.expm1({0})",
    "erf": "_erf({0})",
}}
#: helpers of the generated module a template may call: those of the helpers module
HELPERS = tuple(name for name, value in vars(helpers).items()
                if inspect.isfunction(value) and value.__module__ == helpers.__name__)
#: ``math`` functions whose NumPy name differs
_RENAMED = {"asin": "arcsin", "acos": "arccos", "atan": "arctan", "atan2": "arctan2",
            "asinh": "arcsinh", "acosh": "arccosh", "atanh": "arctanh", "fabs": "abs"}


class ArrayPrinter(scalar.ScalarPrinter):
    """Prints elementwise expressions as NumPy array code of one float dtype.

    Args:
        dtype: 'f32' or 'f64': literals are typed to it.
        read: callback printing a :class:`Read` as an array view (or a scalar).

    ``helpers`` collects the module helpers (``_erf``, ``_sigmoid``) the printed code calls.
    """

    templates = TEMPLATES
    select = "np.where({test}, {a}, {b})"
    sqrt = "np.sqrt"

    def __init__(self, dtype: str, read):
        super().__init__(dtype, read)
        self.helpers: set[str] = set()

    def _module_format(self, fqn, register=True):
        module, _, name = fqn.rpartition(".")
        if module in ("math", "numpy", "cmath"):
            return "np." + _RENAMED.get(name, name)
        return super()._module_format(fqn, register)

    def _template(self, name: str, args) -> str:
        self.helpers.update(h for h in HELPERS if h + "(" in self.templates[name])
        return super()._template(name, args)

    def _print_exp(self, expr):
        return f"np.exp({self._print(expr.args[0])})"

    def _print_log(self, expr):
        return f"np.log({self._print(expr.args[0])})"

    def _print_tanh(self, expr):
        return f"np.tanh({self._print(expr.args[0])})"

    def _print_erf(self, expr):
        return self._template("erf", expr.args)

    def _print_log1p(self, expr):
        return self._template("log1p", expr.args)

    def _print_expm1(self, expr):
        return self._template("expm1", expr.args)

    def _print_sign(self, expr):
        return f"np.sign({self._print(expr.args[0])})"

    def _print_Abs(self, expr):
        return f"np.abs({self._print(expr.args[0])})"

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
