"""The folders the tests read: the checkout's root, its ``examples/`` and ``docs/``."""

from __future__ import annotations

from pathlib import Path

#: the checkout (the folder holding ``gradc/``, ``tests/``, ``examples/``)
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DOCS = ROOT / "docs"
