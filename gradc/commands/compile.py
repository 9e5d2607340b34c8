"""``gradc compile MODEL.grad``: write the generated module (SPEC §3, §4).

The module is generated, not run: no Numba compilation happens here (the generated module's
kernels compile when it is first used, then come from Numba's on-disk cache beside it).
"""

from __future__ import annotations

import sys
from pathlib import Path

from gradc.commands import EXIT_OK, print_warnings, read_source, split_names
from gradc.errors import GradcError
from gradc.passes.programs import OPTIMIZERS
from gradc.codegen.target import TARGETS
from gradc.dtypes import FLOAT


def register(subparsers) -> None:
    """Add the ``compile`` subparser."""
    p = subparsers.add_parser(
        "compile", help="write the generated Python module of a model",
        description="Compile MODEL.grad to one standalone Python module (NumPy + Numba; "
                    "NumPy alone with --target numpy) exposing init_params, forward, "
                    "loss_and_grad, train_step, jvp, vjp and SIGNATURE. Warnings go to "
                    "stderr.")
    p.add_argument("model", metavar="MODEL.grad", help="the model file")
    p.add_argument("-o", "--output", metavar="OUT.py",
                   help="where to write the module ('-' for stdout; "
                        "default: ./MODEL_gen.py)")
    p.add_argument("--target", choices=TARGETS, default="cpu",
                   help="code target (default cpu; numpy: vectorised NumPy, no Numba)")
    p.add_argument("--dtype", choices=FLOAT,
                   help="override every float dtype of the model (e.g. f64 for checks)")
    p.add_argument("--wrt", metavar="x,..", default="",
                   help="comma-separated float inputs to differentiate besides the params")
    p.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default="sgd",
                   help="the optimizer of train_step (default sgd)")
    p.add_argument("--no-cache", dest="cache", action="store_false",
                   help="generate a module that does not use Numba's on-disk cache")
    p.set_defaults(run=run)


def default_output(model: str | Path) -> Path:
    """``path/to/mlp.grad`` -> ``./mlp_gen.py`` (in the current directory)."""
    return Path(f"{Path(model).stem}_gen.py")


def generate_text(path: str | Path, **options) -> tuple[str, list]:
    """Return (the generated module's text, the warnings) for the model file at ``path``;
    options as :meth:`gradc.pipeline.Options.make`.

    Raises:
        GradcError: unreadable file, bad options or errors in the model.
    """
    from gradc.pipeline import Options, compile_source
    from gradc.runtime.cache import cache_key

    source = read_source(path)
    opts = Options.make(**options)
    key = cache_key(source.text, source.filename, opts.key())
    text, _graph, warnings = compile_source(source, opts, key)
    return text, warnings


def run(args) -> int:
    """Generate the module and write it to ``args.output``; print the path written."""
    text, warnings = generate_text(args.model, target=args.target, dtype=args.dtype,
                                   wrt=split_names(args.wrt), optimizer=args.optimizer,
                                   cache=args.cache)
    print_warnings(warnings)
    if args.output == "-":
        sys.stdout.write(text)
        return EXIT_OK
    out = Path(args.output) if args.output else default_output(args.model)
    try:
        if out.resolve() == Path(args.model).resolve():
            raise GradcError(f"gradc compile: refusing to overwrite the model file {out}")
        if not (out.is_file() and out.read_text(encoding="utf-8") == text):
            out.write_text(text, encoding="utf-8")  # unchanged: keep Numba's cache valid
    except OSError as e:
        raise GradcError(f"gradc compile: cannot write {out}: {e.strerror or e}") from None
    print(f"wrote {out}")
    return EXIT_OK
