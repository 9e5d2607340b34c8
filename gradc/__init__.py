"""gradc: a symbolic-to-code gradient compiler for small neural-network models.

Public API (SPEC §2): :func:`compile`, :func:`compile_string`, :class:`Model` and the error
types :class:`GradcError` (every user mistake) and :class:`ErrorGroup` (several at once).
"""

__version__ = "0.1.0"

from gradc.api import Model, compile, compile_string  # noqa: E402
from gradc.errors import ErrorGroup, GradcError, SourceError  # noqa: E402

__all__ = ["compile", "compile_string", "Model", "GradcError", "ErrorGroup", "SourceError",
           "__version__"]
