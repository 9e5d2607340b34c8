"""Friendly messages for Lark's syntax exceptions (SPEC §1 "Errors").

:func:`describe` turns one ``UnexpectedInput`` raised while parsing one statement into a
:class:`SyntaxProblem`: a one-line message in a student's words (expected tokens as
``an expression``, ``')'``, ``end of line``, never Lark terminal names), the span of the
offending token (width 1 at the end of a line) and an optional hint.
"""

from __future__ import annotations

from typing import NamedTuple

from lark import Lark, Token, UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.lexer import PatternStr

from gradc.source import Span


class SyntaxProblem(NamedTuple):
    """One syntax error: message, where, and an optional hint line."""

    message: str
    span: Span
    hint: str | None = None


STATEMENT_HINT = ("a statement starts with model, dim, input, param, layer, fn, output, "
                  "loss or NAME =")
FORMS = {
    "model": "model NAME",
    "dim": "dim NAME  or  dim NAME = INT",
    "input": "input NAME : TYPE",
    "param": "param NAME : TYPE  or  param NAME : TYPE ~ INIT",
    "layer": "layer NAME = EXPR",
    "fn": "fn NAME(ARG, ...) = EXPR  or  fn NAME(ARG, ...) { NAME = EXPR ... return EXPR }",
    "block": "block NAME(ARG, ...) { layer, param and fn declarations, fn forward(h) ... }",
    "output": "output NAME  or  output NAME = EXPR",
    "loss": "loss = EXPR",
}
_EOL = ("_NL", "$END")
_NAMED = {"NAME": "a name", "INT": "an integer", "FLOAT": "a number", "STRING": "a string"}
_EXPR_START = {"NAME", "INT", "FLOAT", "STRING", "(", "[", "-", "+", "true", "false"}
_OPERATORS = {"+", "-", "*", "/", "@", "^", "**", "<", "<=", ">", ">=", "==", ">>", "|>",
              ".", "(", "[", "->", "="}
_PAIRS = {"(": ")", "[": "]", "{": "}"}


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _line_span(line: int, col: int) -> Span:
    return Span(line, col, line, col + 1)


class _Context:
    """What is known at the error: the piece's tokens before it and the expected terminals."""

    def __init__(self, exc: UnexpectedInput, piece: str, off: int, parser: Lark):
        self.off = off
        self.values = {t.name: t.pattern.value for t in parser.terminals
                       if isinstance(t.pattern, PatternStr)}
        pos = len(piece)
        if isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
            pos = exc.token.start_pos
        elif isinstance(exc, UnexpectedCharacters):
            pos = exc.pos_in_stream
        self.before: list[Token] = []
        self.expected = self._replay(exc, piece, pos, parser)
        self.prev = self.before[-1] if self.before else None
        self.first = self.before[0] if self.before else None
        self.stack: list[Token] = []
        for tok in self.before:
            if tok in _PAIRS:
                self.stack.append(tok)
            elif tok in _PAIRS.values() and self.stack:
                self.stack.pop()

    def _replay(self, exc: UnexpectedInput, piece: str, pos: int, parser: Lark) -> set[str]:
        """Parse ``piece`` again up to ``pos``, keeping the tokens in ``self.before``; return
        the values ('(', 'model') or names (NAME, _NL) of the terminals accepted there."""
        try:
            replay = parser.parse_interactive(piece)
            try:
                for tok in replay.iter_parse():
                    if tok.start_pos >= pos:
                        break
                    if tok.type != "_NL":
                        self.before.append(tok)
            except UnexpectedInput:
                pass
            names = set(replay.accepts())
        except Exception:  # noqa: BLE001 - Lark internals changed: use the exception's list
            names = set(getattr(exc, "expected", None) or getattr(exc, "allowed", None) or ())
        return {self.values.get(n, n) for n in names if not n.startswith("__IGNORE")}

    def span(self, tok: Token) -> Span:
        width = max(len(tok.value), 1) if tok.end_line == tok.line else 1
        return Span(tok.line + self.off, tok.column, tok.line + self.off, tok.column + width)

    def keyword(self) -> str | None:
        """The statement keyword the piece starts with, if any."""
        return str(self.first) if self.first is not None and self.first in FORMS else None

    def what(self) -> str:
        """The expected tokens in human words."""
        exp = self.expected
        if self.prev is not None and self.prev == ":" and exp == {"NAME"}:
            return "a type such as f32[B, 10]"
        if self.prev is not None and self.prev == "~" and "FLOAT" in exp:
            return "an initialiser such as zeros or normal(0.01)"
        words, rest = [], set(exp)
        if "FLOAT" in rest:
            words.append("an expression")
            rest -= _EXPR_START
        if "|>" in rest:
            words.append("an operator")
            rest -= _OPERATORS
        punct = sorted((v for v in rest if v not in _EOL), key=lambda v: (v not in _NAMED, v))
        words += [_NAMED.get(v, f"'{v}'") for v in punct]
        if rest & set(_EOL):
            words.append("end of line")
        return _join(words) if words else "something else"


def describe(exc: UnexpectedInput, piece: str, off: int, parser: Lark) -> SyntaxProblem:
    """Explain ``exc``, raised while parsing ``piece`` (a statement whose first line is line
    ``off + 1`` of the file) with ``parser``; never raises."""
    ctx = _Context(exc, piece, off, parser)
    if isinstance(exc, UnexpectedCharacters):
        return _bad_character(exc, piece, off)
    if isinstance(exc, UnexpectedToken) and exc.token.type not in _EOL:
        return _bad_token(ctx, exc.token)
    return _end_of_line(ctx)


def _bad_character(exc: UnexpectedCharacters, piece: str, off: int) -> SyntaxProblem:
    ch = piece[exc.pos_in_stream] if 0 <= exc.pos_in_stream < len(piece) else "?"
    span = _line_span(exc.line + off, exc.column)
    if ch == '"':
        return SyntaxProblem("unterminated string", span,
                             "a string ends with '\"' on the same line")
    if ch == "'":
        return SyntaxProblem("unexpected character \"'\"", span,
                             'strings use double quotes, as in reduction="sum"')
    shown = f"'{ch}'" if ch.isprintable() else f"U+{ord(ch):04X}"
    hint = {";": "put each statement on its own line",
            "\\": "to go on over several lines, leave a '(' or '[' open",
            "!": "there is no '!' operator; '==' compares two values"}.get(ch)
    return SyntaxProblem(f"unexpected character {shown}", span, hint)


def _end_of_line(ctx: _Context) -> SyntaxProblem:
    prev = ctx.prev
    if prev is None:
        return SyntaxProblem("the statement is incomplete", _line_span(ctx.off + 1, 1))
    span = _line_span(prev.end_line + ctx.off, prev.end_column)
    if ctx.stack and _PAIRS[ctx.stack[-1]] in ctx.expected:
        opener = ctx.stack[-1]
        message = f"expected '{_PAIRS[opener]}' to close '{opener}' at line {opener.line + ctx.off}"
        return SyntaxProblem(message, span)
    return SyntaxProblem(f"expected {ctx.what()} after '{prev}'", span, _hint(ctx, None))


def _bad_token(ctx: _Context, tok: Token) -> SyntaxProblem:
    span, shown = ctx.span(tok), f"'{tok}'"
    if tok in _PAIRS.values():
        if not ctx.stack:
            return SyntaxProblem(f"unmatched {shown}", span, "nothing before it is open")
        opener = ctx.stack[-1]
        if _PAIRS[opener] != tok and _PAIRS[opener] in ctx.expected:
            return SyntaxProblem(f"unexpected {shown} — expected '{_PAIRS[opener]}' to close "
                                 f"'{opener}' at line {opener.line + ctx.off}", span)
    if "model" in ctx.expected:
        return SyntaxProblem(f"unexpected {shown} at the start of a statement", span,
                             STATEMENT_HINT)
    return SyntaxProblem(f"unexpected {shown} — expected {ctx.what()}", span, _hint(ctx, tok))


def _hint(ctx: _Context, tok: Token | None) -> str | None:
    """A second line for the common mistakes; None when nothing useful can be said."""
    if tok == "->":
        return "'->' belongs inside a layer call, as in dense(3072 -> 100)"
    if tok == "=" and "|>" in ctx.expected:
        if ctx.stack:
            return "a keyword argument is written NAME=value, as in sum(h, axis=1)"
        return "use '==' to compare two values"
    keyword = ctx.keyword()
    if keyword and tok == "=" and len(ctx.before) == 1:
        return f"'{keyword}' starts a declaration here ({FORMS[keyword]}); " \
               "a value needs another name"
    if keyword and not ctx.stack and not ctx.expected & {"FLOAT", "|>"}:
        return f"the form is: {FORMS[keyword]}"
    if ctx.first is not None and ctx.first.type == "NAME" and len(ctx.before) == 1:
        return STATEMENT_HINT
    return None
