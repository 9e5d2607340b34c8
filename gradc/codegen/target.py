"""The targets: one row of facts per code generation back end (:data:`TARGETS`) and the
interface each back end's package implements (:class:`Target`).

Every other part of gradc reads what it needs to know about a target from its
:class:`TargetInfo` row (the tier :meth:`gradc.Model.tier` reports, whether its arrays live
on a device, whether ``parallel=True`` means anything for it, which target runs while its
kernels compile), never by comparing target names. Adding a target is its package under
``gradc/codegen/`` (``target.py`` defining ``TARGET``, its emitter, printer and runtime
hooks) and its row here. This module is light: it imports no compiler and no target.

The driver (:mod:`gradc.pipeline`) hands every target the same
:class:`gradc.codegen.assemble.Unit` (scheduled kernel programs, the SIGNATURE, options),
and :func:`gradc.codegen.assemble.assemble` asks the target only for what differs between
targets: the text below.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class TargetInfo:
    """What the rest of gradc knows of a target.

    Attributes:
        name: the target's name (``target=`` of :func:`gradc.compile`, ``--target``).
        module: the module defining its ``TARGET`` (a :class:`Target`), loaded lazily.
        tier: what :meth:`gradc.Model.tier` says for a model of this target.
        device: its arrays live on an accelerator: a call needs one (checked at the first
            call), and processes without one (Dask workers) cannot run it.
        parallel: ``parallel=True`` applies to it (else that option is an error).
        fallback: the target whose module answers calls while this one's kernels compile
            in the background (the tiered start; None: no tiered start).
    """

    name: str
    module: str
    tier: str
    device: bool = False
    parallel: bool = False
    fallback: str | None = None


#: every target, by name; the order is the one help texts list them in
TARGETS: dict[str, TargetInfo] = {t.name: t for t in [
    TargetInfo("cpu", "gradc.codegen.cpu.target", tier="numba", parallel=True,
               fallback="numpy"),
    TargetInfo("cuda", "gradc.codegen.cuda.target", tier="cuda", device=True),
    TargetInfo("numpy", "gradc.codegen.numpy.target", tier="numpy"),
]}


class Target:
    """A code generation back end (its package's ``TARGET``).

    Attributes:
        name: the target's name ('cpu', 'cuda', ...), its key in :data:`TARGETS`.
        summary: lines of the module docstring after its title.
        imports: the module's import lines after the standard library's.
        hooks: the runtime hook functions pasted after the shared runtime (the contract of
            each is in :mod:`gradc.codegen.runtime`).
        blas_modules: modules whose import loads the BLAS its kernels call, so that the
            thread budget (:mod:`gradc.codegen.threads`) finds it before the first call.
    """

    name: str = ""
    summary: tuple[str, ...] = ()
    imports: tuple[str, ...] = ()
    hooks: tuple = ()
    blas_modules: tuple[str, ...] = ()

    def constants(self, unit) -> list[str]:
        """Module-level constant lines (JIT options, launch sizes)."""
        raise NotImplementedError

    def emit(self, b, unit) -> dict:
        """Append the kernels of every program of ``unit`` (named
        ``unit.kernel_name(program)``) to ``b``; return extra ``_PROGRAMS`` fields:
        program -> {field: Python expression} (a name that is no program adds a row)."""
        raise NotImplementedError

    def fast_path(self, b, entry, unit) -> None:
        """Append the start of public function ``entry``'s body (a
        :class:`gradc.entries.PublicEntry`): a straight-line argument check and kernel
        call for the common case, which falls through to the general body otherwise.
        Nothing by default."""


def get(name: str) -> Target:
    """The back end of target ``name``."""
    return importlib.import_module(TARGETS[name].module).TARGET
