"""The target interface: what a code generation back end provides to the assembler.

A target is registered by name in :data:`gradc.options.TARGETS` (the module that defines
its ``TARGET``); :func:`get` loads it. The driver (:mod:`gradc.pipeline`) hands every
target the same :class:`gradc.codegen.assemble.Unit` (scheduled kernel programs, the
SIGNATURE, options), and :func:`gradc.codegen.assemble.assemble` asks the target only for
what differs between targets: the text below.
"""

from __future__ import annotations

import importlib


class Target:
    """A code generation back end.

    Attributes:
        name: the target's name ('cpu', 'cuda', ...).
        summary: lines of the module docstring after its title.
        imports: the module's import lines after the standard library's.
        hooks: the runtime hook functions pasted after the shared prelude (the contract of
            each is in :mod:`gradc.codegen.prelude`).
        fast_path: whether public functions get the straight-line argument check.
    """

    name: str = ""
    summary: tuple[str, ...] = ()
    imports: tuple[str, ...] = ()
    hooks: tuple = ()
    fast_path: bool = False

    def constants(self, unit) -> list[str]:
        """Module-level constant lines (JIT options, launch sizes)."""
        raise NotImplementedError

    def emit(self, b, unit) -> dict:
        """Append the kernels of every program of ``unit`` (named
        ``unit.kernel_name(program)``) to ``b``; return extra ``_ENTRIES`` fields:
        program -> {field: Python expression} (a name that is no program adds a row)."""
        raise NotImplementedError


def get(name: str) -> Target:
    """The registered target ``name``."""
    from gradc.options import TARGETS
    return importlib.import_module(TARGETS[name]).TARGET
