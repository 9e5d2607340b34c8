"""The numpy target: kernel programs as vectorised NumPy functions (its row and interface:
:mod:`gradc.codegen.target`; its ``TARGET``: :mod:`gradc.codegen.numpy.target`)."""
