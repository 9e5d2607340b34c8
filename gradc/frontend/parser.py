"""Parse `.grad` text into the AST of :mod:`gradc.frontend.ast` (SPEC §1).

Public entry point: :func:`parse`.  The grammar is ``grammar/gradc.lark`` (Lark, LALR(1),
contextual lexer, ``propagate_positions``); :func:`grammar_text` finds it.

Contracts:

* Every node carries a :class:`~gradc.source.Span` (1-based, end exclusive).  Statements span
  the whole statement, ``name_span`` just the declared name, expressions their own text (a
  parenthesised expression keeps the span of what is inside the parentheses).
* Statements end at a newline.  Inside ``(...)`` and ``[...]`` a statement may go on over
  several lines, except that a line beginning in column 1 with a statement keyword or
  ``NAME =`` always starts a new statement (so an unclosed ``(`` cannot swallow the file).
  A ``{ ... }`` body (``block``, multi-statement ``fn``) keeps its newlines, which end the
  statements inside it; a line starting in column 1 with ``model``, ``dim``, ``input``,
  ``output``, ``loss`` or ``block`` (never inside a body) ends an unclosed ``{``.
* ``-`` directly before a number literal is folded into it: ``-1`` is ``Num(-1.0)``, while
  ``-x`` and ``-2^2`` stay :class:`~gradc.frontend.ast.UnaryOp` (``-(2^2)``).
* ``**`` is written ``'^'`` in :class:`~gradc.frontend.ast.BinOp`; ``a >> b >> c`` is one
  :class:`~gradc.frontend.ast.Compose`; ``|>`` is left associative.
* Syntax errors never escape as Lark or Python exceptions: each bad statement gives one
  :class:`~gradc.errors.SourceError`, the parser skips to the next statement, and all of
  them are raised together as one :class:`~gradc.errors.ErrorGroup` in source order.
"""

from __future__ import annotations

import functools
import importlib.resources
import math
import re
from pathlib import Path

from lark import Lark, Token, UnexpectedInput, v_args
from lark.exceptions import VisitError
from lark.visitors import Transformer_NonRecursive

from gradc.dtypes import NUMPY_NAMES
from gradc.errors import Collector, did_you_mean
from gradc.frontend import ast
from gradc.frontend.syntax_errors import SyntaxProblem, describe
from gradc.source import Source, Span


_OPEN, _CLOSE = {"LPAR", "LSQB"}, {"RPAR", "RSQB"}


def grammar_text() -> str:
    """Return the text of ``gradc.lark``: the copy shipped inside the wheel
    (``gradc/grammar/gradc.lark``) if there is one, else ``grammar/gradc.lark`` of the checkout."""
    try:
        shipped = importlib.resources.files("gradc") / "grammar" / "gradc.lark"
        if shipped.is_file():
            return shipped.read_text(encoding="utf-8")
    except (ModuleNotFoundError, OSError, TypeError):
        pass
    return (Path(__file__).resolve().parents[2] / "grammar" / "gradc.lark").read_text("utf-8")


class _BracketNewlines:
    """Lark post-lexer: drops newline tokens inside brackets (so expressions may continue
    on the next line there) and lets the contextual lexer see newlines in every state."""

    always_accept = ("_NL",)

    def process(self, stream):
        depth = 0
        for tok in stream:
            if tok.type == "_NL" and depth > 0:
                continue
            if tok.type in _OPEN:
                depth += 1
            elif tok.type in _CLOSE:
                depth = max(depth - 1, 0)
            yield tok


@functools.cache
def lark_parser() -> Lark:
    """Return the (cached) Lark LALR parser of the grammar, start rule ``module``."""
    return Lark(grammar_text(), parser="lalr", lexer="contextual", start="module",
                propagate_positions=True, maybe_placeholders=False,
                postlex=_BracketNewlines())


# ----------------------------------------------------------------------------- statements

_STMT_START = re.compile(
    r"(model|dim|input|param|layer|fn|output|block)[ \t]+[A-Za-z_]|loss[ \t]*="
    r"|[A-Za-z_][A-Za-z0-9_]*[ \t]*=(?!=)")
#: statements that never stand inside ``{ }``: in column 1 they end an unclosed brace.
_TOP_ONLY = re.compile(r"(model|dim|input|output|block)[ \t]+[A-Za-z_]|loss[ \t]*=")


def _depth_after(line: str, depth: tuple[int, int]) -> tuple[int, int]:
    """(bracket depth, brace depth) after ``line``, ignoring brackets in strings and
    comments."""
    (paren, brace), in_string = depth, False
    for ch in line:
        if in_string:
            in_string = ch != '"'
        elif ch == '"':
            in_string = True
        elif ch == "#":
            break
        elif ch in "([":
            paren += 1
        elif ch in ")]":
            paren = max(paren - 1, 0)
        elif ch == "{":
            brace += 1
        elif ch == "}":
            brace = max(brace - 1, 0)
    return paren, brace


def split_statements(text: str) -> list[tuple[int, str]]:
    """Split ``text`` into ``(first_line, text)`` pieces of whole lines, one statement each
    (plus blank and comment lines), following the line rules of the module docstring.
    A ``{ ... }`` body (a block, a multi-statement fn) is one piece."""
    lines = text.split("\n")
    pieces: list[tuple[int, str]] = []
    start, depth = 0, (0, 0)
    for i, line in enumerate(lines):
        paren, brace = depth
        if (paren > 0 and _STMT_START.match(line)) or (brace > 0 and _TOP_ONLY.match(line)):
            pieces.append((start + 1, "\n".join(lines[start:i])))
            start, depth = i, (0, 0)
        depth = _depth_after(line, depth)
        if depth == (0, 0):
            pieces.append((start + 1, "\n".join(lines[start:i + 1])))
            start = i + 1
    if start < len(lines):
        pieces.append((start + 1, "\n".join(lines[start:])))
    return pieces


def _blank(piece: str) -> bool:
    return all(not ln.strip() or ln.lstrip().startswith("#") for ln in piece.split("\n"))


def parse(source: Source) -> ast.Module:
    """Parse; on syntax errors raise gradc.errors.ErrorGroup with one SourceError per bad
    statement."""
    errors = Collector(source)
    stmts: list[ast.Stmt] = []
    for first_line, piece in split_statements(source.text):
        if _blank(piece):
            continue
        problems: list[SyntaxProblem] = []
        try:
            tree = lark_parser().parse(piece)
            builder = _ToAst(first_line - 1, problems)
            module = builder.transform(tree)
        except UnexpectedInput as exc:
            problems.append(describe(exc, piece, first_line - 1, lark_parser()))
        except (RecursionError, VisitError) as exc:
            if isinstance(exc, VisitError) and not isinstance(exc.orig_exc, RecursionError):
                raise exc.orig_exc from exc  # a bug in _ToAst, not the user's mistake
            end = len(piece.split("\n")[0]) + 1
            problems.append(SyntaxProblem("this statement is nested too deeply to parse",
                                          Span(first_line, 1, first_line, max(end, 2))))
        if problems:
            for p in problems:
                errors.error(p.message, p.span, p.hint)
        else:
            stmts.extend(module)
    errors.check()
    return ast.Module(tuple(stmts))


# ----------------------------------------------------------------------------- tree -> AST

@v_args(meta=True)
class _ToAst(Transformer_NonRecursive):
    """Lark tree (of one piece) -> AST nodes; spans shifted by ``line_offset``.  Problems
    found here (bad dtype, argument order, ...) are appended to ``problems``."""

    def __init__(self, line_offset: int, problems: list[SyntaxProblem]):
        super().__init__()
        self.off, self.problems = line_offset, problems

    # -- helpers
    def span(self, meta) -> Span:
        return Span(meta.line + self.off, meta.column, meta.end_line + self.off, meta.end_column)

    def tspan(self, tok: Token) -> Span:
        return Span(tok.line + self.off, tok.column, tok.end_line + self.off, tok.end_column)

    def problem(self, message: str, span: Span, hint: str | None = None) -> None:
        self.problems.append(SyntaxProblem(message, span, hint))

    def to_int(self, tok: Token) -> int:
        try:
            return int(tok)
        except ValueError:  # more digits than Python converts
            self.problem("this integer is too long", self.tspan(tok))
            return 0

    def decl_name(self, tok: Token) -> tuple[str, Span]:
        if tok in ("true", "false"):
            self.problem(f"'{tok}' is a reserved word and cannot be a name", self.tspan(tok))
        return str(tok), self.tspan(tok)

    # -- statements
    def module(self, meta, children):
        return children

    def model_decl(self, meta, c):
        return ast.ModelDecl(self.span(meta), *self.decl_name(c[0]))

    def dim_decl(self, meta, c):
        value = self.to_int(c[1]) if len(c) > 1 else None
        return ast.DimDecl(self.span(meta), *self.decl_name(c[0]), value)

    def input_decl(self, meta, c):
        return ast.InputDecl(self.span(meta), *self.decl_name(c[0]), c[1])

    def param_decl(self, meta, c):
        init = c[2] if len(c) > 2 else None
        if init is not None and not (
                isinstance(init, ast.Name)
                or (isinstance(init, ast.Call) and isinstance(init.func, ast.Name))):
            self.problem("an initialiser is a name or a call",
                         init.span, "e.g. '~ zeros', '~ normal(0.01)' or '~ uniform(-1, 1)'")
        return ast.ParamDecl(self.span(meta), *self.decl_name(c[0]), c[1], init)

    def layer_decl(self, meta, c):
        return ast.LayerDecl(self.span(meta), *self.decl_name(c[0]), c[1])

    def _params(self, params: list[ast.Name]) -> tuple[ast.Name, ...]:
        seen: set[str] = set()
        for p in params:
            if p.id in seen:
                self.problem(f"parameter '{p.id}' appears twice", p.span)
            seen.add(p.id)
        return tuple(params)

    def fn_decl(self, meta, c):
        lets, body = c[2] if isinstance(c[2], tuple) else ((), c[2])
        return ast.FnDecl(self.span(meta), *self.decl_name(c[0]), self._params(c[1]), body,
                          lets)

    def fn_body(self, meta, c):
        return tuple(c[:-1]), c[-1]

    def block_decl(self, meta, c):
        return ast.BlockDecl(self.span(meta), *self.decl_name(c[0]), self._params(c[1]),
                             tuple(c[2:]))

    def fn_params(self, meta, c):
        return [ast.Name(self.decl_name(t)[1], str(t)) for t in c]

    def assign(self, meta, c):
        return ast.Assign(self.span(meta), *self.decl_name(c[0]), c[1])

    def output_decl(self, meta, c):
        value = c[1] if len(c) > 1 else None
        return ast.OutputDecl(self.span(meta), *self.decl_name(c[0]), value)

    def loss_decl(self, meta, c):
        return ast.LossDecl(self.span(meta), c[0])

    def type(self, meta, c):
        dtype = str(c[0])
        if dtype not in NUMPY_NAMES:
            self.problem(f"unknown dtype '{dtype}' — expected f32, f64, i32 or i64",
                         self.tspan(c[0]), did_you_mean(dtype, NUMPY_NAMES))
        shape = tuple(c[1]) if len(c) > 1 else None
        return ast.TypeExpr(dtype, shape, self.span(meta))

    def shape(self, meta, c):
        return c

    def dim_entry(self, meta, c):
        tok = c[0]
        value = self.to_int(tok) if tok.type == "INT" else str(tok)
        return ast.DimRef(value, self.tspan(tok))

    # -- expressions
    def pipe_op(self, meta, c):
        return ast.Pipe(self.span(meta), c[0], c[1])

    def compose_op(self, meta, c):
        return ast.Compose(self.span(meta), tuple(c))

    def binop(self, meta, c):
        return ast.BinOp(self.span(meta), c[1], c[0], c[2])

    def unaryop(self, meta, c):
        op, operand = c
        if op == "-" and isinstance(operand, ast.Num):
            return ast.Num(self.span(meta), -operand.value, operand.is_int)
        return ast.UnaryOp(self.span(meta), op, operand)

    def _op(self, meta, c):
        return "^" if c[0] == "**" else str(c[0])

    cmp_op = add_op = mul_op = pow_op = unary_op = _op

    def call(self, meta, c):
        func, items = c[0], (c[1] if len(c) > 1 else [])
        args: list[ast.Expr] = []
        kwargs: list[ast.Keyword] = []
        for item in items:
            if isinstance(item, ast.Keyword):
                if any(k.name == item.name for k in kwargs):
                    self.problem(f"keyword argument '{item.name}' given twice", item.span)
                kwargs.append(item)
            elif kwargs:
                self.problem("positional argument after a keyword argument", item.span,
                             f"move it before '{kwargs[0].name}='")
            else:
                args.append(item)
        return ast.Call(self.span(meta), func, tuple(args), tuple(kwargs))

    def args(self, meta, c):
        return c

    def arrow(self, meta, c):
        return ast.Arrow(self.span(meta), c[0], c[1])

    def keyword(self, meta, c):
        return ast.Keyword(str(c[0]), c[1], self.span(meta))

    def index(self, meta, c):
        return ast.Index(self.span(meta), c[0], tuple(c[1]))

    def subscripts(self, meta, c):
        return c

    def slice(self, meta, c):
        parts: list[ast.Expr | None] = [None]
        for item in c:
            if isinstance(item, Token) and item.type == "COLON":
                parts.append(None)
            else:
                parts[-1] = item
        parts += [None] * (3 - len(parts))
        return ast.Slice(self.span(meta), *parts)

    def attr(self, meta, c):
        return ast.Attr(self.span(meta), c[0], str(c[1]))

    def number(self, meta, tok: Token) -> float:
        value = float(tok)
        if math.isinf(value):
            self.problem("this number is too large", self.span(meta),
                         "numbers are 64-bit floats: the largest is about 1.8e308")
            return 0.0
        return value

    def int_lit(self, meta, c):
        return ast.Num(self.span(meta), self.number(meta, c[0]), True)

    def float_lit(self, meta, c):
        return ast.Num(self.span(meta), self.number(meta, c[0]), False)

    def string_lit(self, meta, c):
        return ast.Str(self.span(meta), str(c[0])[1:-1])

    def true_lit(self, meta, c):
        return ast.Bool(self.span(meta), True)

    def false_lit(self, meta, c):
        return ast.Bool(self.span(meta), False)

    def name(self, meta, c):
        return ast.Name(self.span(meta), str(c[0]))

    def tuple_lit(self, meta, c):
        return ast.TupleLit(self.span(meta), tuple(c))

    def list_lit(self, meta, c):
        return ast.ListLit(self.span(meta), tuple(c))
