"""Symbolic shapes: a dim is a SymPy expression (an Integer, a dim Symbol, or a product).

Dims bound at call time (``B``) are positive-integer SymPy symbols, so products such as
``B*T`` (from flattening batch axes) compare and print naturally.
"""

from __future__ import annotations

from functools import lru_cache

import sympy

#: the largest size of one axis that a model may fix (a literal in a shape, a dim, a layer
#: size): the generated code indexes with 64-bit integers, and sizes multiply.
MAX_DIM = 2**31 - 1
#: the most elements a tensor of fixed shape may have.
MAX_NUMEL = 2**62

Dim = sympy.Expr
Shape = tuple  # tuple[Dim, ...]


@lru_cache(maxsize=None)
def dim_symbol(name: str) -> sympy.Symbol:
    """Return the symbol of the call-time dimension ``name``."""
    return sympy.Symbol(name, integer=True, positive=True)


def as_dim(value: int | str | sympy.Expr) -> Dim:
    """Return ``value`` as a dim expression (ints and names accepted)."""
    if isinstance(value, str):
        return dim_symbol(value)
    return sympy.sympify(value)


def fmt_shape(shape: Shape) -> str:
    """Format a shape as the language writes it: ``[B, 3072]`` (a scalar is ``[]``)."""
    return "[" + ", ".join(str(d) for d in shape) + "]"


def numel(shape: Shape) -> Dim:
    """Return the number of elements of ``shape`` as a dim expression."""
    return sympy.Mul(*shape) if shape else sympy.Integer(1)


def broadcast(*shapes: Shape) -> Shape | None:
    """Return NumPy's broadcast of ``shapes``, or None when they do not broadcast.

    A symbolic dim broadcasts only with itself or 1: ``B`` against ``3`` is an error even
    though a call might bind B = 3, because the model would then work for one batch size only.
    """
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(rank):
        dims = {s[axis - rank + len(s)] for s in shapes if axis - rank + len(s) >= 0}
        dims.discard(sympy.Integer(1))
        if len(dims) > 1:
            return None
        out.append(dims.pop() if dims else sympy.Integer(1))
    return tuple(out)


def normalize_axes(axes: int | tuple[int, ...] | None, rank: int) -> tuple[int, ...] | None:
    """Return sorted non-negative axes, all axes for None, or None if one is out of range
    or repeated."""
    if axes is None:
        return tuple(range(rank))
    items = (axes,) if isinstance(axes, int) else tuple(axes)
    out = []
    for a in items:
        if not -rank <= a < rank:
            return None
        out.append(a % rank)
    return tuple(sorted(out)) if len(set(out)) == len(out) else None


def keepdims_shape(shape: Shape, axes: tuple[int, ...]) -> Shape:
    """Return ``shape`` with the reduced ``axes`` set to 1."""
    return tuple(sympy.Integer(1) if i in axes else d for i, d in enumerate(shape))


def free_dims(shape: Shape) -> set[str]:
    """Return the names of the symbolic dims used by ``shape``."""
    return {s.name for d in shape for s in d.free_symbols}
