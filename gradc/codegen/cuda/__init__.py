"""The CUDA target: kernel programs as ``numba.cuda`` kernels (its row and interface:
:mod:`gradc.codegen.target`; its ``TARGET``: :mod:`gradc.codegen.cuda.target`)."""
