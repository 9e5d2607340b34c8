"""The command-line pieces that ``gradc train``, ``gradc sweep``, ``gradc predict`` and
the cluster commands (:mod:`gradc.commands._cluster`) share: their common options, their
checks and the small formatting helpers of their output. Light: no compiler, no Dask.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from gradc.codegen.target import TARGETS
from gradc.codegen.threads import _usable_cores
from gradc.errors import GradcError
from gradc.options import OPTIMIZERS

# Defaults chosen so that the README's spiral example reaches > 95% training accuracy in
# 200 epochs for every seed tried (Adam at 1e-2 in minibatches of 32).
DEFAULT_OPTIMIZER = "adam"
DEFAULT_LR = 1e-2
DEFAULT_BATCH = 32
DEFAULT_EPOCHS = 20
DEFAULT_VAL_SPLIT = 0.1


def check_options(args) -> None:
    """GradcError for an option value of train/sweep out of its range."""
    if args.epochs < 1:
        raise GradcError(f"--epochs must be at least 1, got {args.epochs}")
    if args.batch_size < 1:
        raise GradcError(f"--batch-size must be at least 1, got {args.batch_size}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise GradcError(f"--lr must be a positive number, got {args.lr}")
    if not 0.0 <= args.val_split < 1.0:
        raise GradcError(f"--val-split must be in [0, 1), got {args.val_split}")
    if args.log_every < 0:
        raise GradcError(f"--log-every must be at least 0, got {args.log_every}")


def out_dir(path: str) -> Path:
    """The ``--out`` folder, created if needed (GradcError when it cannot be)."""
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GradcError(f"--out {out}: cannot create the directory: "
                         f"{e.strerror or e}") from None
    return out


def note(text: str) -> None:
    """Print ``text`` on stderr (notes beside the output on stdout)."""
    print(text, file=sys.stderr, flush=True)


def percent(acc) -> str:
    """``, accuracy 97.1%`` (empty without an accuracy)."""
    return "" if acc is None else f", accuracy {100 * acc:.1f}%"


def n_epochs(n: int) -> str:
    """``1 epoch``, ``2 epochs``."""
    return f"{n} epoch" + ("" if n == 1 else "s")


def add_training_options(p, unless: str = "") -> None:
    """The options ``gradc train`` and ``gradc sweep`` share: --val-split, --epochs,
    --batch-size, --lr, --optimizer, --seed, --target, --label and --threads; ``unless``
    ends the help of those a sweep's grid may set (" unless the grid sets it")."""
    p.add_argument("--val-split", type=float, default=DEFAULT_VAL_SPLIT, metavar="F",
                   help=f"fraction of the samples held out for validation "
                        f"(default {DEFAULT_VAL_SPLIT}; 0: none)")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, metavar="N",
                   help=f"epochs to train{unless} (default {DEFAULT_EPOCHS})")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, metavar="N",
                   help=f"samples per step{unless} (default {DEFAULT_BATCH})")
    p.add_argument("--lr", type=float, default=DEFAULT_LR, metavar="F",
                   help=f"learning rate{unless} (default {DEFAULT_LR:g})")
    p.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default=DEFAULT_OPTIMIZER,
                   help=f"the optimizer{unless} (default {DEFAULT_OPTIMIZER})")
    p.add_argument("--seed", type=int, default=0, metavar="N",
                   help=f"seed of the initial params, the validation split and the "
                        f"shuffles{unless} (default 0)")
    add_target_option(p)
    add_label_option(p)
    add_threads_option(p)


def add_target_option(p) -> None:
    """``--target`` (gradc train, sweep and predict)."""
    p.add_argument("--target", choices=TARGETS, default="cpu",
                   help="code target (default cpu)")


def add_progress_option(p) -> None:
    """``--progress``/``--no-progress`` (gradc train and predict)."""
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show the progress bar on stderr (default: when stderr is a "
                        "terminal)")


def add_label_option(p) -> None:
    """``--label NAME`` (gradc train, sweep and predict): the integer input holding the
    class labels, instead of the integer argument of the loss's cross_entropy or hinge."""
    p.add_argument("--label", metavar="NAME",
                   help="the integer input whose values are the class labels, for accuracy "
                        "(default: the labels of the loss's cross_entropy or hinge); the "
                        "scores are then the first output shaped like it plus a class axis")


def add_threads_option(p) -> None:
    """``--threads N`` (gradc train, sweep, bench and predict): the thread budget's cores."""
    p.add_argument("--threads", type=int, metavar="N",
                   help="at most N threads in the kernels' BLAS products and parallel loops, "
                        "in this process and each worker it starts (default: the cores this "
                        "process may use, shared between the workers; small products run on "
                        "one thread anyway: docs/performance.md)")


def apply_threads(args) -> None:
    """Make ``--threads N`` the budget of every generated module of this process and of the
    processes it starts (``GRADC_NUM_THREADS``, read by the modules' thread budget,
    :mod:`gradc.codegen.threads`). GradcError for N < 1 and for a GRADC_NUM_THREADS in the
    environment that the modules would refuse."""
    threads = getattr(args, "threads", None)
    if threads is not None:
        if threads < 1:
            raise GradcError(f"--threads must be at least 1, got {threads}")
        os.environ["GRADC_NUM_THREADS"] = str(threads)
    try:
        _usable_cores()
    except ValueError as e:
        raise GradcError(f"error: {e}") from None
