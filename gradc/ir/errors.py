"""Exceptions internal to lowering; :mod:`gradc.ir.lower` turns them into user errors."""

from __future__ import annotations

from gradc.source import Span


class LowerError(Exception):
    """A user error found while lowering one statement; ``notes`` are ``(message, span)``
    context lines added on the way out (the block instances it happened in)."""

    def __init__(self, message: str, span: Span | None, hint: str | None = None):
        super().__init__(message)
        self.message, self.span, self.hint, self.in_fn = message, span, hint, False
        self.notes: list[tuple[str, Span]] = []


class Poisoned(Exception):
    """The statement uses a value whose own statement failed: skip it, report nothing."""
