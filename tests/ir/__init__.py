"""Tests of :mod:`gradc.ir`: lowering, semantic errors, layers and shapes."""
