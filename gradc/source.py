"""Source text and spans: where a user's mistake is, and how to point at it.

A :class:`Span` is a half-open region of one :class:`Source`, 1-based lines and columns as
editors show them.  :func:`render_caret` draws the line and a caret under the span, the form
every user-facing error uses (SPEC §1 "Errors").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """The text of one model file and the name it is reported under."""

    text: str
    filename: str = "<string>"

    def line(self, lineno: int) -> str:
        """Return line ``lineno`` (1-based) without its newline, or '' past the end."""
        lines = self.text.split("\n")  # the parser counts lines at '\n' only
        return lines[lineno - 1].rstrip("\r") if 1 <= lineno <= len(lines) else ""


@dataclass(frozen=True)
class Span:
    """A region of a source: from (line, col) up to, not including, (end_line, end_col)."""

    line: int
    col: int
    end_line: int
    end_col: int

    def merge(self, other: Span | None) -> Span:
        """Return the smallest span that covers both ``self`` and ``other``."""
        if other is None:
            return self
        start = min((self.line, self.col), (other.line, other.col))
        end = max((self.end_line, self.end_col), (other.end_line, other.end_col))
        return Span(start[0], start[1], end[0], end[1])


def render_caret(source: Source, span: Span) -> str:
    """Return the span's first line and a caret line under it (carets to the line's end
    when the span runs on to later lines)."""
    raw = source.line(span.line)
    start = max(span.col, 1)
    end = span.end_col if span.end_line == span.line else len(raw) + 1
    pad = len(raw[:start - 1].expandtabs(4))
    width = max(len(raw[:end - 1].expandtabs(4)) - pad, 1)
    shown = "".join(c if c.isprintable() or c == "\t" else "?" for c in raw).expandtabs(4)
    return f"  {shown}\n  {' ' * pad}{'^' * width}"
