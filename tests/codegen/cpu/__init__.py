"""Tests of :mod:`gradc.codegen.cpu`: the Numba target's math library, views, epoch kernel."""
