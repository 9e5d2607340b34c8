"""The abstract syntax tree of a `.grad` file: frozen dataclasses, every node with its span.

The parser (:mod:`gradc.frontend.parser`) builds these; :mod:`gradc.ir.lower` reads them.
Nothing here knows about shapes, dtypes or ops.
"""

from __future__ import annotations

from dataclasses import dataclass

from gradc.source import Span

# ----------------------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Expr:
    """Base of every expression node."""

    span: Span


@dataclass(frozen=True)
class Num(Expr):
    """A number literal; ``is_int`` when written without '.', 'e' or 'E'."""

    value: float
    is_int: bool


@dataclass(frozen=True)
class Str(Expr):
    """A double-quoted string literal (for options such as ``reduction="sum"``)."""

    value: str


@dataclass(frozen=True)
class Bool(Expr):
    """``true`` or ``false``."""

    value: bool


@dataclass(frozen=True)
class Name(Expr):
    """A bare name: a value, a dim, a function, a layer or an activation."""

    id: str


@dataclass(frozen=True)
class Attr(Expr):
    """``obj.attr``: a layer's parameter (``fc1.W``) or ``a.T``."""

    obj: Expr
    attr: str


@dataclass(frozen=True)
class BinOp(Expr):
    """``left OP right`` with OP one of ``+ - * / @ ^ < <= > >= ==`` (``**`` is ``^``)."""

    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class UnaryOp(Expr):
    """``-operand`` (op ``'-'``) or ``+operand`` (op ``'+'``)."""

    op: str
    operand: Expr


@dataclass(frozen=True)
class Keyword:
    """``name=value`` inside a call."""

    name: str
    value: Expr
    span: Span


@dataclass(frozen=True)
class Call(Expr):
    """``func(args..., kw=...)``; ``func`` is usually a :class:`Name`."""

    func: Expr
    args: tuple[Expr, ...]
    kwargs: tuple[Keyword, ...]


@dataclass(frozen=True)
class Arrow(Expr):
    """``lhs -> rhs`` inside a layer call: ``dense(3072 -> 100)``."""

    lhs: Expr
    rhs: Expr


@dataclass(frozen=True)
class Pipe(Expr):
    """``value |> func``; ``func`` a Name/Attr (``f(value)``) or a Call (``f(value, args)``)."""

    value: Expr
    func: Expr


@dataclass(frozen=True)
class Compose(Expr):
    """``a >> b >> c``: layers or functions applied left to right (at least two parts)."""

    parts: tuple[Expr, ...]


@dataclass(frozen=True)
class Slice(Expr):
    """``start:stop:step`` inside an index; each part may be None."""

    start: Expr | None
    stop: Expr | None
    step: Expr | None


@dataclass(frozen=True)
class Index(Expr):
    """``obj[i, 0:3, :]``: each item an Expr or a :class:`Slice`."""

    obj: Expr
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class TupleLit(Expr):
    """``(a, b, ...)`` with at least two items, or ``(a,)`` — e.g. ``axis=(0, 1)``."""

    items: tuple[Expr, ...]


@dataclass(frozen=True)
class ListLit(Expr):
    """``[a, b, ...]`` — e.g. the new shape of ``reshape(a, [B, -1])``."""

    items: tuple[Expr, ...]


# ----------------------------------------------------------------------------- declarations


@dataclass(frozen=True)
class DimRef:
    """One entry of a declared shape: an int or a dim name."""

    value: int | str
    span: Span


@dataclass(frozen=True)
class TypeExpr:
    """``f32[B, 3072]``; ``shape`` None for a scalar."""

    dtype: str
    shape: tuple[DimRef, ...] | None
    span: Span


@dataclass(frozen=True)
class Stmt:
    """Base of every statement; ``span`` covers the whole statement."""

    span: Span


@dataclass(frozen=True)
class ModelDecl(Stmt):
    """``model NAME``."""

    name: str
    name_span: Span


@dataclass(frozen=True)
class DimDecl(Stmt):
    """``dim NAME`` or ``dim NAME = INT``."""

    name: str
    name_span: Span
    value: int | None


@dataclass(frozen=True)
class InputDecl(Stmt):
    """``input NAME : TYPE``."""

    name: str
    name_span: Span
    type: TypeExpr


@dataclass(frozen=True)
class ParamDecl(Stmt):
    """``param NAME : TYPE [~ INIT]``; ``init`` a Name or Call expression, or None."""

    name: str
    name_span: Span
    type: TypeExpr
    init: Expr | None


@dataclass(frozen=True)
class LayerDecl(Stmt):
    """``layer NAME = EXPR`` (a layer call or a composition)."""

    name: str
    name_span: Span
    value: Expr


@dataclass(frozen=True)
class FnDecl(Stmt):
    """``fn NAME(ARGS) = EXPR``, or ``fn NAME(ARGS) { LETS; return EXPR }``: ``lets`` are
    the body's assignments in order (empty for the ``=`` form), ``body`` the returned
    expression."""

    name: str
    name_span: Span
    params: tuple[Name, ...]
    body: Expr
    lets: tuple[Assign, ...] = ()


@dataclass(frozen=True)
class BlockDecl(Stmt):
    """``block NAME(ARGS) { ... }``: ``body`` holds its layer, param and fn declarations
    (one of them ``fn forward``) in source order."""

    name: str
    name_span: Span
    params: tuple[Name, ...]
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class Assign(Stmt):
    """``NAME = EXPR``."""

    name: str
    name_span: Span
    value: Expr


@dataclass(frozen=True)
class OutputDecl(Stmt):
    """``output NAME [= EXPR]``; without EXPR it outputs an existing value."""

    name: str
    name_span: Span
    value: Expr | None


@dataclass(frozen=True)
class LossDecl(Stmt):
    """``loss = EXPR``."""

    value: Expr


@dataclass(frozen=True)
class Module:
    """A whole parsed file, statements in source order."""

    stmts: tuple[Stmt, ...]
