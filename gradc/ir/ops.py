"""THE elementwise op table: one row per op, forward as a SymPy expression.

Adding an elementwise op is adding a row here (and a row in ``tests/op_specs.py``): its VJP
and JVP come from ``sympy.diff`` (:mod:`gradc.autodiff.derive`), its CPU code from the SymPy
printer (:mod:`gradc.codegen.printer`), its reference value from ``sympy.lambdify``.

Structural ops (matmul, reductions, reshape, transpose, gather) are graph node kinds of their
own (:mod:`gradc.ir.graph`) with hand-written rules in :mod:`gradc.autodiff.rules`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import sympy
from sympy import cos, erf, exp, log, sin, sqrt, tan, tanh

from gradc.ir import sym


@dataclass(frozen=True)
class EwiseOp:
    """An elementwise op.

    Attributes:
        name: the built-in's name in the language.
        nargs: number of tensor arguments.
        build: ``build(*args, **kwargs) -> sympy.Expr`` over SymPy argument expressions.
        kwargs: keyword arguments with their defaults (numbers), e.g. ``{"alpha": 0.01}``.
        differentiable: False for ops whose gradient is zero by definition (step, comparisons).
    """

    name: str
    nargs: int
    build: Callable[..., sympy.Expr]
    kwargs: dict = field(default_factory=dict)
    differentiable: bool = True


def _gelu(x):
    return x * (1 + erf(x / sqrt(2))) / 2


_ROWS = [
    EwiseOp("exp", 1, exp),
    EwiseOp("log", 1, log),
    EwiseOp("log1p", 1, sym.log1p),
    EwiseOp("sqrt", 1, sqrt),
    EwiseOp("abs", 1, sym.Absv),
    EwiseOp("sin", 1, sin),
    EwiseOp("cos", 1, cos),
    EwiseOp("tan", 1, tan),
    EwiseOp("tanh", 1, tanh),
    EwiseOp("sigmoid", 1, sym.Sigmoid),
    EwiseOp("relu", 1, sym.Relu),
    EwiseOp("leaky_relu", 1, lambda x, alpha: sym.Select(sym.Greater(x, 0), x, alpha * x),
            {"alpha": 0.01}),
    EwiseOp("elu", 1, lambda x, alpha: sym.Select(sym.Greater(x, 0), x, alpha * sym.expm1(x)),
            {"alpha": 1.0}),
    EwiseOp("gelu", 1, _gelu),
    EwiseOp("softplus", 1, sym.Softplus),
    EwiseOp("silu", 1, lambda x: x * sym.Sigmoid(x)),
    EwiseOp("step", 1, sym.Step, differentiable=False),
    EwiseOp("sign", 1, sym.Sign, differentiable=False),
    EwiseOp("max", 2, sym.Max2),
    EwiseOp("min", 2, sym.Min2),
    EwiseOp("where", 3, sym.Select),
]

#: name -> row, for the built-ins callable by name in a model file.
ELEMENTWISE: dict[str, EwiseOp] = {row.name: row for row in _ROWS}

#: operator token -> SymPy builder, for the infix operators of the language.
OPERATORS: dict[str, Callable[[sympy.Expr, sympy.Expr], sympy.Expr]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "^": lambda a, b: a ** b,
    "<": sym.Less,
    "<=": sym.LessEq,
    ">": sym.Greater,
    ">=": sym.GreaterEq,
    "==": sym.Equal,
}

#: comparison operators: their result is a 0/1 float with zero gradient.
COMPARISONS = frozenset({"<", "<=", ">", ">=", "=="})

#: the SymPy symbols an ewise node's expression is written in: argument i is ``ARGS[i]``.
ARGS = tuple(sympy.Symbol(f"a{i}", real=True) for i in range(64))
