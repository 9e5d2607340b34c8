"""The ``gradc`` command line (SPEC §3): argument parsing, dispatch and exit codes.

Subcommands are the plugin modules of :mod:`gradc.commands` (see its docstring for the
interface). Exit codes: 0 success, 1 check failed, 2 user error (bad arguments, unreadable
file, errors in the model), 3 internal error, 130 Ctrl-C. A user error prints its message
(``FILE:LINE:COL: error: ...`` with a caret) to stderr, never a traceback; an internal error
prints one line and a request to report it, and the traceback only when ``GRADC_DEBUG=1``.
An exit with 130 first ends the process's background compiles
(:func:`gradc.runtime.tiers.stop_all`): Ctrl-C stops everything the command started.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import traceback

from gradc import __version__
from gradc.commands import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_USER
from gradc.commands._options import apply_threads
from gradc.errors import GradcError

#: commands listed first in ``--help``, in this order; others follow alphabetically.
ORDER = ("compile", "check", "show", "graph", "train", "predict", "bench")
ISSUES = "please report it with the model file and the command line"


def command_modules() -> list[str]:
    """The module names of :mod:`gradc.commands`, in help order."""
    import gradc.commands as pkg

    names = [m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_")]
    rank = {n: i for i, n in enumerate(ORDER)}
    return sorted(names, key=lambda n: (rank.get(n, len(ORDER)), n))


def _broken(subparsers, name: str, err: BaseException) -> None:
    """Register a placeholder for a command module that failed to load: running it
    reports the failure as an internal error; the other commands keep working."""
    p = subparsers.add_parser(name, help=f"(unavailable: {type(err).__name__})")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    message = f"command '{name}' failed to load: {type(err).__name__}: {err}"

    def run(args) -> int:
        raise RuntimeError(message)

    p.set_defaults(run=run)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser: global options and one subparser per command module, or for the
    command ``only`` alone (importing a command module can be slow: ``check`` imports
    SymPy, and ``gradc train`` should not wait for it)."""
    parser = argparse.ArgumentParser(
        prog="gradc",
        description="gradc compiles .grad neural-network models to Numba kernels: "
                    "forward, gradients, training steps.",
        epilog="Exit codes: 0 success, 1 check failed, 2 user error, 3 internal error. "
               "Run 'gradc COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="version", version=f"gradc {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command")
    for name in command_modules():
        if only is not None and name != only:
            continue
        try:
            module = importlib.import_module(f"gradc.commands.{name}")
            module.register(subparsers)
        except Exception as err:  # noqa: BLE001 - one broken plugin must not break the tool
            _broken(subparsers, name, err)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit code.
    After a Ctrl-C (exit code 130) no background compile of this process is left."""
    code = _run(sys.argv[1:] if argv is None else list(argv))
    tiers = sys.modules.get("gradc.runtime.tiers")  # not imported: no compile started
    if code == EXIT_INTERRUPTED and tiers is not None:
        tiers.stop_all()
    return code


def _run(argv: list[str]) -> int:
    """Parse ``argv``, run the command, turn every exception into its exit code."""
    try:
        parser = build_parser(argv[0] if argv and argv[0] in command_modules() else None)
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:  # --help, --version (0) or a usage error (2)
            return EXIT_OK if e.code in (0, None) else EXIT_USER
        if getattr(args, "run", None) is None:
            parser.print_help(sys.stderr)
            return EXIT_USER
        apply_threads(args)
        return int(args.run(args))
    except GradcError as err:
        _flush_stdout()
        print(str(err), file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        print("gradc: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `gradc show m.grad | head`
        _silence_stdout()
        return EXIT_OK
    except Exception as err:  # noqa: BLE001 - the contract: never a traceback by default
        _flush_stdout()
        return _internal(err)


def _internal(err: BaseException) -> int:
    text = str(err).strip().splitlines()
    detail = f"{type(err).__name__}: {text[0]}" if text else type(err).__name__
    if os.environ.get("GRADC_DEBUG") == "1":
        traceback.print_exc()
    print(f"gradc: internal error: {detail}", file=sys.stderr)
    hint = "" if os.environ.get("GRADC_DEBUG") == "1" else \
        " (set GRADC_DEBUG=1 to see the traceback)"
    print(f"this is a bug in gradc: {ISSUES}{hint}", file=sys.stderr)
    return EXIT_INTERNAL


def _flush_stdout() -> None:
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at devnull so the interpreter's exit flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
