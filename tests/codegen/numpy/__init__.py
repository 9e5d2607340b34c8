"""Tests of :mod:`gradc.codegen.numpy`: the NumPy target against the CPU target."""
