"""The CPU target: kernel programs as Numba ``njit`` functions (its row and interface:
:mod:`gradc.codegen.target`; its ``TARGET``: :mod:`gradc.codegen.cpu.target`)."""
