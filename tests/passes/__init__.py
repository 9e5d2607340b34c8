"""Tests of :mod:`gradc.passes`: loop-nest collapsing and the workspace plan."""
