"""The exceptions gradc raises.

User mistakes are :class:`SourceError` (with a span) or plain :class:`GradcError`; many of
them travel together in one :class:`ErrorGroup` so that a run reports every independent error.
Compiler bugs are ``AssertionError``/``InternalError`` and map to exit code 3 in the CLI.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from gradc.source import Source, Span, render_caret


class GradcError(Exception):
    """A user error: bad model text, bad options or bad call arguments."""


class InternalError(Exception):
    """A bug in gradc itself (CLI exit code 3)."""


class SourceError(GradcError):
    """A user error located in a model file.

    Attributes:
        message: one line, no trailing period needed.
        source: the file it is in.
        span: where; None for file-level errors (then only ``FILE: error: ...`` is shown).
        hint: an optional second line such as ``did you mean 'relu'?``.
        severity: ``"error"`` or ``"warning"``.
        notes: ``(message, span)`` pairs shown after it as ``FILE:LINE:COL: note: ...`` with
            their own caret: the context of the error, innermost first (for an error inside
            a block, the instance that used it).
    """

    def __init__(self, message: str, source: Source, span: Span | None,
                 hint: str | None = None, severity: str = "error",
                 notes: tuple[tuple[str, Span], ...] = ()):
        super().__init__(message)
        self.message, self.source, self.span = message, source, span
        self.hint, self.severity, self.notes = hint, severity, tuple(notes)

    def render(self) -> str:
        """Return ``FILE:LINE:COL: error: MESSAGE``, the line, a caret, the hint and the
        notes."""
        if self.span is None:
            head = f"{self.source.filename}: {self.severity}: {self.message}"
            return head + (f"\n  hint: {self.hint}" if self.hint else "")
        parts = [self._located(self.severity, self.message, self.span)]
        if self.hint:
            parts.append(f"  hint: {self.hint}")
        parts += [self._located("note", message, span) for message, span in self.notes]
        return "\n".join(parts)

    def _located(self, severity: str, message: str, span: Span) -> str:
        return f"{self.source.filename}:{span.line}:{span.col}: {severity}: {message}\n" \
            + render_caret(self.source, span)

    def __str__(self) -> str:
        return self.render()


class ErrorGroup(GradcError):
    """Several independent user errors found in one run, in source order."""

    def __init__(self, errors: list[SourceError]):
        self.errors = sorted(errors, key=lambda e: (e.span.line, e.span.col) if e.span else (0, 0))
        super().__init__(self.render())

    def render(self) -> str:
        """Return every error rendered, blank-line separated, then a count line."""
        body = "\n\n".join(e.render() for e in self.errors)
        n = sum(e.severity == "error" for e in self.errors)
        return f"{body}\n\n{n} error{'s' if n != 1 else ''}"


class Collector:
    """Collects errors during one stage so that it can go on and report them all at once."""

    def __init__(self, source: Source):
        self.source = source
        self.errors: list[SourceError] = []
        self.warnings: list[SourceError] = []

    def error(self, message: str, span: Span | None, hint: str | None = None,
              notes: tuple[tuple[str, Span], ...] = ()) -> None:
        """Record an error at ``span`` (with the context ``notes``, see SourceError)."""
        self.errors.append(SourceError(message, self.source, span, hint, notes=notes))

    def warn(self, message: str, span: Span | None, hint: str | None = None) -> None:
        """Record a warning at ``span`` (shown, never fatal)."""
        self.warnings.append(SourceError(message, self.source, span, hint, "warning"))

    def check(self) -> None:
        """Raise the collected errors, if any, as one :class:`ErrorGroup`."""
        if self.errors:
            raise ErrorGroup(self.errors)


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """Return ``did you mean 'x'?`` for the closest candidate, or None when none is close.

    Case is compared last: a candidate equal to ``name`` but for case wins (``ReLU`` ->
    ``relu``), then the closest by spelling with case ignored."""
    cands = sorted(set(candidates))
    same = [c for c in cands if c.lower() == name.lower() and c != name]
    if same:
        return f"did you mean '{same[0]}'?"
    lower: dict[str, str] = {}
    for c in cands:
        lower.setdefault(c.lower(), c)
    match = difflib.get_close_matches(name.lower(), sorted(lower), n=1, cutoff=0.6)
    return f"did you mean '{lower[match[0]]}'?" if match else None
