"""SymPy -> scalar Python source, with typed literals so float32 code stays float32: the
printer every target's kernels start from.

:class:`ScalarPrinter` prints one elementwise expression as the scalar code Numba compiles
(the CPU and CUDA kernels); the reads of buffers (:class:`gradc.passes.kernels.Read`) are
printed by a callback that knows the loop indices. :data:`TEMPLATES` spells each function
of :mod:`gradc.ir.sym`; a target that spells some differently derives its table from it
(``{**TEMPLATES, **overrides}``, the numpy target's array forms), so every table has every
function. The CPU target's printer adds its vectorisable math (:mod:`gradc.codegen.cpu.printer`).
"""

from __future__ import annotations

from collections.abc import Callable

import sympy
from sympy.printing.pycode import PythonCodePrinter

from gradc.passes.kernels import Read

#: language-level functions -> a template over the printed arguments; Z/O are typed 0 and 1.
TEMPLATES = {
    "Relu": "max({0}, {Z})",
    "Step": "({O} if {0} > {Z} else {Z})",
    "Sign": "({O} if {0} > {Z} else (-{O} if {0} < {Z} else {Z}))",
    "Absv": "abs({0})",
    "Sigmoid": "({O} / ({O} + math.exp(-({0}))))",
    "Softplus": "(max({0}, {Z}) + math.log1p(math.exp(-abs({0}))))",
    "Less": "({O} if {0} < {1} else {Z})",
    "LessEq": "({O} if {0} <= {1} else {Z})",
    "Greater": "({O} if {0} > {1} else {Z})",
    "GreaterEq": "({O} if {0} >= {1} else {Z})",
    "Equal": "({O} if {0} == {1} else {Z})",
    "Select": "({1} if {0} != {Z} else {2})",
    "Max2": "max({0}, {1})",
    "Detach": "{0}",
    "Min2": "min({0}, {1})",
    "log1p": "math.log1p({0})",
    "expm1": "math.expm1({0})",
    "erf": "math.erf({0})",
}

#: the comparisons a ``Select`` may test directly (no 0/1 value in between)
CONDITIONS = {"Less": "{0} < {1}", "LessEq": "{0} <= {1}", "Greater": "{0} > {1}",
               "GreaterEq": "{0} >= {1}", "Equal": "{0} == {1}"}


class ScalarPrinter(PythonCodePrinter):
    """Prints scalar expressions for Numba kernels of one float dtype.

    Args:
        dtype: 'f32' or 'f64': literals are typed to it.
        read: callback printing a :class:`Read` (a buffer element or a scalar argument).

    A subclass changes the spelling through :attr:`templates` (its table, derived from
    :data:`TEMPLATES`), :attr:`select` (a ``Select`` of a comparison) and :attr:`sqrt`.
    """

    templates = TEMPLATES
    select = "({a} if {test} else {b})"
    sqrt = "math.sqrt"

    def __init__(self, dtype: str, read: Callable[[Read], str]):
        super().__init__({"fully_qualified_modules": True, "standard": "python3"})
        self.dtype, self.read = dtype, read

    def _template(self, name: str, args) -> str:
        """The function ``name`` of the table, over the printed ``args``."""
        return self.templates[name].format(*[self._print(a) for a in args], Z=self.lit(0),
                                           O=self.lit(1))

    def lit(self, value) -> str:
        """A literal of the kernel's float dtype."""
        text = repr(float(value))
        if text in ("inf", "-inf", "nan"):
            text = f"float('{text}')"
        return f"np.float32({text})" if self.dtype == "f32" else text

    def _print_Symbol(self, expr):
        if isinstance(expr, Read):
            return self.read(expr)
        return super()._print_Symbol(expr)

    def _print_Integer(self, expr):
        return self.lit(float(expr))

    _print_Float = _print_Rational = _print_Integer

    def _print_Half(self, expr):
        return self.lit(0.5)

    def _print_NegativeOne(self, expr):
        return self.lit(-1)

    def _print_One(self, expr):
        return self.lit(1)

    def _print_Zero(self, expr):
        return self.lit(0)

    def _print_Exp1(self, expr):
        return self.lit(sympy.E.evalf(17))

    def _print_Pi(self, expr):
        return self.lit(sympy.pi.evalf(17))

    def _print_Pow(self, expr, rational=False):
        base, exp = expr.as_base_exp()
        b = self.parenthesize(base, sympy.printing.precedence.PRECEDENCE["Pow"])
        if exp.is_Integer and 1 <= abs(int(exp)) <= 4:
            prod = "(" + " * ".join([b] * abs(int(exp))) + ")"
            return prod if exp > 0 else f"({self.lit(1)} / {prod})"
        if exp.is_Rational and exp.q == 2 and abs(exp.p) <= 9:
            # x ** (k + 1/2) as k products and one square root, which vectorise, where
            # pow is a libm call per element (normalisation's gradient has (var + eps) **
            # -1.5: an eighth of the conv-batchnorm CNN's step)
            root = f"{self.sqrt}({self._print(base)})"
            prod = " * ".join([b] * (abs(int(exp.p)) // 2) + [root])
            prod = prod if abs(exp.p) == 1 else f"({prod})"
            return prod if exp > 0 else f"({self.lit(1)} / {prod})"
        return f"{b} ** {self.parenthesize(exp, sympy.printing.precedence.PRECEDENCE['Pow'])}"

    def _print_Function(self, expr):
        name = type(expr).__name__
        if name == "Select" and type(expr.args[0]).__name__ in CONDITIONS:
            cond, a, b = expr.args
            test = CONDITIONS[type(cond).__name__].format(*map(self._print, cond.args))
            return self.select.format(test=test, a=self._print(a), b=self._print(b))
        if name in self.templates:
            return self._template(name, expr.args)
        return super()._print_Function(expr)

    def _print_exp(self, expr):
        return f"math.exp({self._print(expr.args[0])})"

    def _print_log(self, expr):
        return f"math.log({self._print(expr.args[0])})"

    def _print_tanh(self, expr):
        return f"math.tanh({self._print(expr.args[0])})"


def cse_block(exprs: list[sympy.Expr], prefix: str = "t") -> tuple[list, list[sympy.Expr]]:
    """Common-subexpression elimination over the expressions of one loop body.

    Returns the (symbol, expression) temporaries in order and the reduced expressions.
    """
    temps, reduced = sympy.cse(exprs, symbols=sympy.numbered_symbols(prefix), order="none")
    return temps, reduced
