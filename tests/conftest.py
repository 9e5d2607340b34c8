"""Shared test setup: compiled modules go to a fresh temporary cache folder per session
(unless ``GRADC_CACHE_DIR`` is already set), so tests never touch the user's cache."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

# Tests see blocking compiles (no background processes, one tier) unless they ask for
# tiers (``wait=False``); tests/runtime/test_tiers.py covers tiered start.
os.environ.setdefault("GRADC_TIERED", "0")


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
