"""Tests of :mod:`gradc.autodiff`: every derivative against independent oracles."""
