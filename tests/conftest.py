"""Shared test setup.

* Compiled modules go to one temporary cache folder per run (unless ``GRADC_CACHE_DIR`` is
  already set), made by the controlling process before pytest-xdist starts its workers, so
  that the workers share it (they inherit the environment; the cache is safe for concurrent
  writers): a model one worker compiled, the other loads. Tests never touch the user's cache.
* Blocking compiles (no background processes, one tier) unless a test asks for tiers
  (``wait=False``); tests/runtime/test_tiers.py covers tiered start.
* One thread per call (``GRADC_NUM_THREADS=1``, subprocesses and workers inherit it),
  unless a test sets its own: the thread budget races one thread against two for the
  products of two threads' worth (gradc/codegen/threads.py), so the count, and with it
  the last bits of a product, would depend on how busy the machine is when a test runs;
  tests/codegen/test_threads.py sets the counts it tests.
* Files of slow tests run first (:mod:`tests.harness.order`).
* ``GRADC_TEST_COMPILE_LOG=DIR`` logs every Numba compile with the test that ran it,
  and each test's CPU time in the worker and its subprocesses
  (:mod:`tests.harness.compile_log`: where the suite's time goes).
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

from tests.harness import compile_log, order, seeds

os.environ.setdefault("GRADC_TIERED", "0")
os.environ.setdefault("GRADC_NUM_THREADS", "1")

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("random", derandomize=False, print_blob=True)
settings.load_profile("ci")

_OWN_CACHE = "_gradc_test_cache"   # the config attribute naming a cache folder made here


def pytest_configure(config):
    """Check ``GRADC_TEST_SEED``; point ``GRADC_CACHE_DIR`` at a fresh temporary folder, if
    unset (in the controlling process: xdist's workers inherit it)."""
    try:
        seeds.base()
    except ValueError as e:
        raise pytest.UsageError(str(e)) from None
    if not os.environ.get("GRADC_CACHE_DIR"):
        path = tempfile.mkdtemp(prefix="gradc_test_cache_")
        os.environ["GRADC_CACHE_DIR"] = path
        setattr(config, _OWN_CACHE, path)
    compile_log.install()


def pytest_unconfigure(config):
    """Remove the cache folder :func:`pytest_configure` made (where it made it)."""
    path = getattr(config, _OWN_CACHE, None)
    if path:
        os.environ.pop("GRADC_CACHE_DIR", None)
        shutil.rmtree(path, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    order.slow_files_first(items)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Name the running test in the compile log, and log its CPU time when it ends."""
    compile_log.running(item.nodeid)
    before = compile_log.cpu_seconds()
    yield
    compile_log.finished(item.nodeid, before)


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
