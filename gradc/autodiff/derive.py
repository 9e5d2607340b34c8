"""SymPy partial derivatives of elementwise expressions, cached.

The derivative of an ewise node's expression with respect to each argument is computed
once per distinct expression. Occurrences of the whole forward expression inside a partial
are replaced by the symbol :data:`OUT`, so a backward kernel reads the stored forward value
(``tanh' = 1 - OUT**2``) instead of recomputing it: common subexpressions are shared
between forward and backward.
"""

from __future__ import annotations

from functools import lru_cache

import sympy

from gradc.errors import GradcError
from gradc.ir.ops import ARGS
from gradc.ir.sym import Equal, GreaterEq, Select

#: stands for the forward value of the node being differentiated.
OUT = sympy.Symbol("out", real=True)
#: an expression larger than this many operations is refused rather than compiled slowly.
MAX_OPS = 4000


class _Power(sympy.Function):
    """``a ** b`` with a non-constant exponent, while it is differentiated.

    SymPy differentiates ``a**b`` as ``a**b * (b'·log(a) + a'·b/a)``, which is NaN at
    a = 0 (0·inf, 0/0) where the true partials are finite. These are torch's: d/da is
    ``b·a**(b-1)`` (0 where b = 0), d/db is ``a**b·log(a)``, taken as 0 where a = 0 and
    b >= 0 (a**b is 0 or 1 around there, flat in b).
    """

    nargs = 2
    is_real = True

    def fdiff(self, argindex=1):
        a, b = self.args
        if argindex == 1:
            return Select(Equal(b, 0), 0, b * _Power(a, b - 1))
        dlog = self * sympy.log(a)
        return Select(Equal(a, 0) * GreaterEq(b, 0), 0, dlog) if a.free_symbols else dlog


def _diff(expr: sympy.Expr, x: sympy.Symbol) -> sympy.Expr:
    """``sympy.diff`` with the power rule of :class:`_Power` for non-constant exponents."""
    if not any(p.exp.free_symbols for p in expr.atoms(sympy.Pow)):
        return sympy.diff(expr, x)
    hidden = expr.replace(lambda e: e.is_Pow and bool(e.exp.free_symbols),
                          lambda e: _Power(*e.args))
    d = sympy.diff(hidden, x)
    return d.replace(lambda e: isinstance(e, _Power), lambda e: sympy.Pow(*e.args))


@lru_cache(maxsize=8192)
def partials(expr: sympy.Expr, nargs: int) -> tuple[sympy.Expr, ...]:
    """Return d expr / d ARGS[i] for i < nargs, with the forward expression as ``OUT``."""
    out = []
    for i in range(nargs):
        d = _diff(expr, ARGS[i])
        if expr.free_symbols and not expr.is_Symbol:
            d = d.xreplace({expr: OUT})
        if sympy.count_ops(d) > MAX_OPS:
            raise GradcError(f"the derivative of {expr} is too large to compile "
                             f"(> {MAX_OPS} operations)")
        out.append(d)
    return tuple(out)


def may_blow_up(expr: sympy.Expr) -> bool:
    """Whether ``expr`` can be infinite or NaN at finite arguments (a division, a negative
    power, log, tan): then a zero cotangent must give zero, not 0 * inf = NaN."""
    for sub in sympy.preorder_traversal(expr):
        if sub.is_Pow and sub.exp.is_negative or isinstance(sub, (sympy.log, sympy.tan)):
            return True
    return False


_SELECTORS = ("Select", "Step", "Less", "LessEq", "Greater", "GreaterEq", "Equal")


def selects(expr: sympy.Expr) -> bool:
    """Whether ``expr`` is exactly 0 on some inputs by selection (a where, a step, a
    comparison): then a non-finite tangent there must not turn 0 into NaN."""
    return any(type(sub).__name__ in _SELECTORS for sub in sympy.preorder_traversal(expr))


def shifted(expr: sympy.Expr, offset: int, nargs: int) -> sympy.Expr:
    """Return ``expr`` with ARGS[i] renamed to ARGS[i + offset] for i < nargs."""
    return expr.xreplace({ARGS[i]: ARGS[i + offset] for i in range(nargs)})
