"""The call-time misuse table (tests/fuzz/misuse.py) over every entry of two compiled
models: each wrong call must raise ValueError (MemoryError for a huge batch), each valid
variant must work, and nothing may crash the process (the cases run in worker
subprocesses). The cpu target (its generated fast argument path and Numba kernels) and the
numpy target."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.fuzz import campaign  # noqa: E402


@pytest.mark.parametrize("target", ["cpu", "numpy"])
def test_call_time_misuse_is_a_value_error(target):
    tally = campaign.misuse(target)
    print(tally.report())
    failure = tally.failure()
    assert failure is None, failure
    assert tally.n > 500
    assert tally.counts["misuse:ValueError"] > 300
