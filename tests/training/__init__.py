"""Tests of :mod:`gradc.training`: labels, Ctrl-C during training."""
