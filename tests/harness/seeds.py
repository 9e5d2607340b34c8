"""The one seed of the tests' random draws.

Tests whose point is a random draw (the fuzzers' slices, the Ctrl-C trials' delays) take
their seeds from here: ``GRADC_TEST_SEED`` (a non-negative integer, default 0) plus a fixed
offset per test, so that a run is reproducible, the seed is printed in pytest's header and
beside every failure of a module that uses it (``tests/conftest.py``), and setting the
variable replays or varies the draws::

    GRADC_TEST_SEED=7 python -m pytest -q tests/training/test_interrupt.py

Hypothesis tests are derandomized instead (the ``ci`` profile of ``tests/conftest.py``).
Tests that draw a fixed data set from a constant seed (``default_rng(3)``) keep it: their
numbers are part of the test, not a sample.
"""

from __future__ import annotations

import os

ENV = "GRADC_TEST_SEED"
DEFAULT = 0


def base() -> int:
    """The session's seed: ``GRADC_TEST_SEED``, or :data:`DEFAULT` when unset or empty."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return DEFAULT
    if not text.isdigit():
        raise ValueError(f"{ENV} must be a non-negative integer, got {text!r}")
    return int(text)


def seed(offset: int) -> int:
    """The seed of one draw: the session's seed plus the test's own ``offset``."""
    return base() + offset
