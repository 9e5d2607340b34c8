"""Findings of the fuzzers that are not fixed yet: each with a minimal reproduction.

A fuzz outcome that matches a known finding (``category``, ``detail``) is counted under
``known:<id>`` and does not fail the CI slice; ``tests/system/test_known_findings.py`` runs every
reproduction as a strict xfail, so that the fix of one makes its test XPASS (fail) and the
entry is then deleted here. Any other finding fails the slice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Known:
    id: str
    title: str
    pattern: str   # a regex searched in "CATEGORY DETAIL"
    repro: str     # Python code that raises AssertionError (or the raw exception) while unfixed
    where: str = ""


#: none at present: the last two (``transpose(x, 4)`` unlocated, hvp not checking labels it
#: does not read) are fixed and kept as regression tests in tests/system/test_known_findings.py
KNOWN: list[Known] = []

_COMPILED = [(k, re.compile(k.pattern)) for k in KNOWN]


def match(category: str, detail: str) -> Known | None:
    """The known finding this outcome is, if any."""
    text = f"{category} {detail}"
    for k, rx in _COMPILED:
        if rx.search(text):
            return k
    return None
