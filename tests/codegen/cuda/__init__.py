"""Tests of :mod:`gradc.codegen.cuda`: the CUDA target under the simulator, and its PTX."""
