"""Tests of :mod:`gradc.cli` and :mod:`gradc.commands`: the command line as a user runs it."""
