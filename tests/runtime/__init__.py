"""Tests of :mod:`gradc.runtime`: the cache, tiers, threads and pickling, the reference
interpreter."""
