"""The ``gradc`` subcommands, one plugin module each, plus helpers they share.

A command module in this package defines

* ``register(subparsers) -> None``: adds its subparser (with ``help=`` and a description)
  and calls ``set_defaults(run=run)``;
* ``run(args) -> int``: does the work and returns the exit code (:data:`EXIT_OK`,
  :data:`EXIT_CHECK_FAILED`, :data:`EXIT_INTERRUPTED` after a Ctrl-C it handled).

:func:`gradc.cli.main` discovers the modules with :func:`pkgutil.iter_modules`, so adding a
command is adding a module. Modules whose names start with ``_`` are not commands but
helpers the commands share (``_options``: common options and checks; ``_cluster``: the
command-line side of :mod:`gradc.dask`); the CLI skips them. A command reports a user
mistake by raising :class:`gradc.errors.GradcError` (the CLI prints it and exits with
:data:`EXIT_USER`); any other exception is an internal error (:data:`EXIT_INTERNAL`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from gradc.errors import GradcError
from gradc.source import Source

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USER = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as a shell reports it)


def read_source(path: str | Path) -> Source:
    """Return the model file at ``path`` as a :class:`Source` named by the path as given.

    Raises:
        GradcError: ``FILE: error: cannot read FILE: REASON`` for a missing, unreadable or
            non-UTF-8 file, or a directory.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise GradcError(f"{path}: error: cannot read {path}: not UTF-8 text "
                         f"(byte {e.start})") from None
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise GradcError(f"{path}: error: cannot read {path}: {reason}") from None
    return Source(text, str(path))


def print_warnings(warnings) -> None:
    """Print compile warnings (rendered strings or SourceErrors) to stderr, one block each."""
    for w in warnings:
        text = w if isinstance(w, str) else w.render()
        print(text + "\n", file=sys.stderr)


def load_model(path: str | Path, **options):
    """Compile the model file at ``path`` (options as :func:`gradc.compile`) and print its
    warnings to stderr; return the :class:`gradc.api.Model`.

    Raises:
        GradcError: unreadable file, bad options or errors in the model.
    """
    import gradc

    read_source(path)  # a clear message for a missing file before anything else
    model = gradc.compile(path, **options)
    print_warnings(model.warnings)
    return model


def front_graph(path: str | Path, dtype: str | None = None, wrt=()):
    """Parse and lower the model file at ``path`` without generating code (fast: no
    Numba); print warnings to stderr; return ``(graph, source)``.

    Raises:
        GradcError: unreadable file or errors in the model.
    """
    from gradc.pipeline import Options, front

    source = read_source(path)
    graph, warnings = front(source, Options.make(dtype=dtype, wrt=wrt))
    print_warnings(warnings)
    return graph, source


def split_names(text: str | None) -> tuple[str, ...]:
    """``"x, y"`` -> ``("x", "y")``; None or empty -> ``()``."""
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())
