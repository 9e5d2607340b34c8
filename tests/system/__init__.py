"""Whole-system tests: the examples, the docs' excerpts, packaging, the fuzzers' known
findings."""
