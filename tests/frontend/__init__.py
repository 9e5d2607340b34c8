"""Tests of :mod:`gradc.frontend`: the parser, its errors, the front end's limits."""
