"""An indentation-aware line builder for generated source."""

from __future__ import annotations

from contextlib import contextmanager


class Builder:
    """Collects lines of code; ``with b.block('for i in range(n):'):`` indents its body."""

    def __init__(self, indent: str = "    "):
        self.lines: list[str] = []
        self.depth, self.indent = 0, indent

    def line(self, text: str = "") -> None:
        """Append one line at the current depth (blank lines stay blank)."""
        self.lines.append(self.indent * self.depth + text if text else "")

    @contextmanager
    def block(self, header: str):
        """Append ``header`` and indent the lines added inside the ``with``."""
        self.line(header)
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    def text(self) -> str:
        """The code so far, newline-terminated."""
        return "\n".join(self.lines) + "\n"
