"""The call-time misuse table (tests/harness/fuzz/misuse.py) over every entry of two compiled
models: each wrong call must raise ValueError (MemoryError for a huge batch), each valid
variant must work, and nothing may crash the process (the cases run in worker
subprocesses). The cpu target (its generated fast argument path and Numba kernels) and the
numpy target."""

from __future__ import annotations

import pytest

from tests.harness.fuzz import campaign

pytestmark = pytest.mark.slow  # (every test here takes more than a few seconds)


@pytest.mark.parametrize("target", ["cpu", "numpy"])
def test_call_time_misuse_is_a_value_error(target):
    tally = campaign.misuse(target)
    print(tally.report())
    failure = tally.failure()
    assert failure is None, failure
    assert tally.n > 500
    assert tally.counts["misuse:ValueError"] > 300
