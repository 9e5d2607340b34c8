"""Tests of :mod:`gradc.dask`: data-parallel training and sweeps on a local cluster."""
