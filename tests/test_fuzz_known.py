"""The fuzzers' known, unfixed findings (tests/fuzz/known.py), one strict xfail each with
its minimal reproduction: when a fix lands, its test XPASSes (a failure), and the entry is
deleted from tests/fuzz/known.py so that the fuzzers count such inputs as failures again."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.fuzz.known import KNOWN  # noqa: E402


@pytest.mark.parametrize("finding", [pytest.param(k, id=k.id, marks=pytest.mark.xfail(
    strict=True, reason=f"known fuzz finding: {k.title} ({k.where})")) for k in KNOWN])
def test_known_finding_is_fixed(finding):
    exec(compile(finding.repro, f"<repro {finding.id}>", "exec"), {})
