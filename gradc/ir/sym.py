"""SymPy functions for the elementwise ops SymPy lacks, each with its derivative.

Every elementwise op of :mod:`gradc.ir.ops` is a SymPy expression over these and SymPy's own
functions (exp, log, tanh, erf, ...). The derivatives here are the *only* hand-written
elementwise calculus in gradc; everything else is ``sympy.diff``. ``NUMPY_IMPLS`` gives each
function a NumPy implementation for the reference interpreter (``sympy.lambdify``).
"""

from __future__ import annotations

import numpy as np
import sympy
from sympy.codegen.cfunctions import expm1, log1p

ZERO, ONE = sympy.Integer(0), sympy.Integer(1)


class _Fn(sympy.Function):
    """Base: real-valued function of real arguments."""

    is_real = True


class Step(_Fn):
    """1 where x > 0 else 0; derivative 0 (SPEC: ``step``)."""

    nargs = 1

    def fdiff(self, argindex=1):
        return ZERO


class Sign(_Fn):
    """-1, 0 or 1; derivative 0."""

    nargs = 1

    def fdiff(self, argindex=1):
        return ZERO


class Absv(_Fn):
    """|x|; derivative sign(x) (0 at 0, as NumPy's subgradient convention)."""

    nargs = 1

    def fdiff(self, argindex=1):
        return Sign(self.args[0])


class Relu(_Fn):
    """max(x, 0); derivative step(x)."""

    nargs = 1

    def fdiff(self, argindex=1):
        return Step(self.args[0])


class Sigmoid(_Fn):
    """1 / (1 + exp(-x)); derivative s (1 - s)."""

    nargs = 1

    def fdiff(self, argindex=1):
        return self * (1 - self)


class Softplus(_Fn):
    """log(1 + exp(x)) in the stable form max(x, 0) + log1p(exp(-|x|)); derivative sigmoid."""

    nargs = 1

    def fdiff(self, argindex=1):
        return Sigmoid(self.args[0])


class _Compare(_Fn):
    """A comparison giving 1 or 0; derivative 0 in both arguments."""

    nargs = 2

    def fdiff(self, argindex=1):
        return ZERO


class Less(_Compare):
    """a < b."""


class LessEq(_Compare):
    """a <= b."""


class Greater(_Compare):
    """a > b."""


class GreaterEq(_Compare):
    """a >= b."""


class Equal(_Compare):
    """a == b."""


class Detach(_Fn):
    """The identity with a zero derivative (a stop-gradient, e.g. the max subtracted
    before exp in softmax: it cancels exactly, so no gradient should flow through it)."""

    nargs = 1

    def fdiff(self, argindex=1):
        return ZERO


class Select(_Fn):
    """``a if c != 0 else b``.

    Its derivative selects the derivative of the taken branch, so a NaN or inf in the
    untaken branch's derivative can never leak into a gradient (``where`` semantics).
    """

    nargs = 3

    def _eval_derivative(self, s):
        c, a, b = self.args
        return Select(c, a.diff(s), b.diff(s))


def _tie_split(win, a, b):
    """1 where ``win(a, b)``, 1/2 where a == b, else 0: on a tie the gradient is split
    equally between the two arguments (PyTorch's maximum and minimum)."""
    return win(a, b) + Equal(a, b) / 2


class Max2(_Fn):
    """Elementwise max(a, b); on ties (a == b) each argument gets half the gradient."""

    nargs = 2

    def fdiff(self, argindex=1):
        a, b = self.args
        return _tie_split(Greater, a, b) if argindex == 1 else _tie_split(Greater, b, a)


class Min2(_Fn):
    """Elementwise min(a, b); on ties (a == b) each argument gets half the gradient."""

    nargs = 2

    def fdiff(self, argindex=1):
        a, b = self.args
        return _tie_split(Less, a, b) if argindex == 1 else _tie_split(Less, b, a)


def _np_sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _np_bool(f):
    return lambda a, b: f(a, b).astype(np.result_type(a, b, np.float32))


def _np_erf(x):
    from scipy.special import erf
    return erf(x)


NUMPY_IMPLS = {
    "Step": lambda x: (x > 0).astype(x.dtype),
    "Sign": np.sign,
    "Absv": np.abs,
    "Relu": lambda x: np.maximum(x, 0),
    "Sigmoid": _np_sigmoid,
    "Softplus": lambda x: np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x))),
    "Less": _np_bool(np.less),
    "LessEq": _np_bool(np.less_equal),
    "Greater": _np_bool(np.greater),
    "GreaterEq": _np_bool(np.greater_equal),
    "Equal": _np_bool(np.equal),
    "Select": lambda c, a, b: np.where(c != 0, a, b),
    "Detach": lambda x: x,
    "Max2": np.maximum,
    "Min2": np.minimum,
    "log1p": np.log1p,
    "expm1": np.expm1,
    "erf": _np_erf,
}

__all__ = ["Detach", "Step", "Sign", "Absv", "Relu", "Sigmoid", "Softplus", "Less", "LessEq",
           "Greater", "GreaterEq", "Equal", "Select", "Max2", "Min2", "log1p", "expm1",
           "NUMPY_IMPLS"]
