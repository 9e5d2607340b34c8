"""Shared test setup.

* Compiled modules go to a fresh temporary cache folder per session (unless
  ``GRADC_CACHE_DIR`` is already set), so tests never touch the user's cache.
* Blocking compiles (no background processes, one tier) unless a test asks for tiers
  (``wait=False``); tests/runtime/test_tiers.py covers tiered start.
* Random draws are reproducible: :mod:`tests.harness.seeds` (``GRADC_TEST_SEED``, printed
  in the header and beside the failures of the modules that use it) and the derandomized
  Hypothesis profile ``ci`` (``--hypothesis-profile=random`` draws new examples;
  ``--hypothesis-seed=N`` replays such a run).
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from hypothesis import settings

from tests.harness import seeds

os.environ.setdefault("GRADC_TIERED", "0")

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("random", derandomize=False, print_blob=True)
settings.load_profile("ci")


def pytest_configure(config):
    """Check ``GRADC_TEST_SEED``."""
    try:
        seeds.base()
    except ValueError as e:
        raise pytest.UsageError(str(e)) from None


@pytest.fixture(scope="session", autouse=True)
def gradc_cache_dir():
    """Point ``GRADC_CACHE_DIR`` at a temporary folder for the session, if unset."""
    if os.environ.get("GRADC_CACHE_DIR"):
        yield os.environ["GRADC_CACHE_DIR"]
        return
    path = tempfile.mkdtemp(prefix="gradc_test_cache_")
    os.environ["GRADC_CACHE_DIR"] = path
    try:
        yield path
    finally:
        os.environ.pop("GRADC_CACHE_DIR", None)
        shutil.rmtree(path, ignore_errors=True)


def pytest_report_header(config):
    return f"random draws: {seeds.ENV}={seeds.base()} (tests/harness/seeds.py)"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Name the seed beside each failure of a test module that draws from it."""
    report = (yield).get_result()
    module = getattr(item, "module", None)
    if report.failed and module is not None and any(
            v is seeds for v in vars(module).values()):
        report.sections.append(("random draws", f"replay with {seeds.ENV}={seeds.base()}"))
