"""The front-end fuzzer's CI slice (tests/harness/fuzz/texts.py): 2,400 model texts —
grammar-aware, mutated examples, mutated random models and the constructs of the hardening
issues — must each give a graph or a located error (FILE:LINE:COL and a caret) within 2 s of
CPU time.

Known, unfixed findings are counted, not failed (tests/harness/fuzz/known.py; their
reproductions are strict xfails in tests/system/test_known_findings.py). A longer run:
``python -m tests.harness.fuzz``.
``GRADC_FUZZ_SCALE=4`` multiplies the slice.
"""

from __future__ import annotations

import pytest

from tests.harness import seeds
from tests.harness.fuzz import campaign

pytestmark = pytest.mark.slow  # (every test here takes more than a few seconds)

SCALE = campaign.env_int("GRADC_FUZZ_SCALE", 1)
SLICES = {"grammar": 800, "mutate": 800, "model-mutate": 400, "shapes": 400}


@pytest.mark.parametrize("generator", list(SLICES))
def test_front_end_gives_a_graph_or_a_located_error(generator):
    tally = campaign.front(count=SLICES[generator] * SCALE, seed0=seeds.seed(1),
                           generators=[generator])
    print(tally.report())
    assert tally.n == SLICES[generator] * SCALE
    failure = tally.failure()
    assert failure is None, failure
    # the slice reaches both sides of the property
    assert tally.counts["located-error"] > 0
    assert tally.counts["graph"] > 0
