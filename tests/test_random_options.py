"""The compile-option fuzzer's CI slice (tests/harness/fuzz/options.py): 120 combinations of wrt,
dtype, target, optimizer (with bad hyper-parameters), cache and parallel must each compile
or raise GradcError, and leave no module in the cache that cannot be imported."""

from __future__ import annotations

import pytest

from tests.harness import seeds
from tests.harness.fuzz import campaign

pytestmark = pytest.mark.slow  # (every test here takes more than a few seconds)

COUNT = 120 * campaign.env_int("GRADC_FUZZ_SCALE", 1)


def test_options_compile_or_raise_gradc_error():
    tally = campaign.options(count=COUNT, seed0=seeds.seed(1))
    print(tally.report())
    failure = tally.failure()
    assert failure is None, failure
    assert tally.counts["options:compiled"] > 0 and tally.counts["options:GradcError"] > 0
