"""THE elementwise op table: one row per op, forward as a SymPy expression.

Adding an elementwise op is adding a row here (and a row in ``tests/harness/op_specs.py``): its VJP
and JVP come from ``sympy.diff`` (:mod:`gradc.autodiff.derive`), its CPU code from the SymPy
printer (:mod:`gradc.codegen.scalar`), its reference value from ``sympy.lambdify``.

Structural ops (matmul, reductions, reshape, transpose, gather) are graph node kinds of their
own (:mod:`gradc.ir.graph`) with hand-written rules in :mod:`gradc.kinds`.
"""

from __future__ import annotations

import threading
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

class _ArgSymbols:
    """The argument symbols ``a0, a1, ...``: as many as asked for, created on first use (an
    elementwise node may have any number of inputs, e.g. a ``concat`` of 200 tensors).

    Indexing (``ARGS[i]``, ``ARGS[:n]``) and iteration (endless: zip it with something
    finite) behave as on a tuple."""

    def __init__(self, n: int = 64):
        self._lock = threading.Lock()
        self._syms: list[sympy.Symbol] = []
        self._grow(n)

    def _grow(self, n: int) -> None:
        if len(self._syms) >= n:
            return
        with self._lock:  # compiles in threads: grow once, in order
            while len(self._syms) < n:
                self._syms.append(sympy.Symbol(f"a{len(self._syms)}", real=True))

    def __getitem__(self, key):
        if isinstance(key, slice):
            if key.stop is None or key.stop < 0 or (key.start or 0) < 0:
                raise IndexError("ARGS is endless: slice it with a non-negative stop")
            self._grow(key.stop)
            return tuple(self._syms[key])
        if key < 0:
            raise IndexError("ARGS is endless: no negative index")
        self._grow(key + 1)
        return self._syms[key]

    def __iter__(self):
        i = 0
        while True:
            yield self[i]
            i += 1

    def index(self, symbol) -> int:
        """The argument number of ``symbol`` (``a7`` -> 7)."""
        name = getattr(symbol, "name", "")
        if name[:1] == "a" and name[1:].isdigit() and self[int(name[1:])] == symbol:
            return int(name[1:])
        raise ValueError(f"{symbol!r} is not an argument symbol")

    def __contains__(self, symbol) -> bool:
        try:
            self.index(symbol)
        except ValueError:
            return False
        return True


#: the SymPy symbols an ewise node's expression is written in: argument i is ``ARGS[i]``
#: (no limit on the number of arguments).
ARGS = _ArgSymbols()
