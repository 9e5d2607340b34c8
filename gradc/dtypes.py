"""The dtypes of the model language, in one table (light: imports nothing).

:data:`NUMPY_NAMES` maps gradc's dtype names to NumPy's (and Numba's) type names; the generated
modules' ``_NP`` table, the parser's dtype check, data checks, the reference interpreter
and the background compile's dummy arrays all read it.
"""

from __future__ import annotations

#: gradc's dtype names -> NumPy's (and Numba's) type names
NUMPY_NAMES = {"f32": "float32", "f64": "float64", "i32": "int32", "i64": "int64"}
#: the differentiable (float) dtypes, then the integer ones (labels, indices)
FLOAT = ("f32", "f64")
INT = ("i32", "i64")


def numpy_dtype(name: str):
    """The ``numpy.dtype`` of gradc dtype ``name`` ('f32', ...)."""
    import numpy as np

    return np.dtype(NUMPY_NAMES[name])
