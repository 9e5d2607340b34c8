"""Tests of :mod:`gradc.codegen`'s shared parts: the generated module, its runtime
helpers and call-time checks, numerics; one folder per target below."""
