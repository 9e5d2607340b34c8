"""``gradc train MODEL.grad --data DATA.npz``: train a model on data from an ``.npz`` file.

The arrays of the file are matched to the model's inputs by name and checked (dtype, shape
with symbolic dims bound, labels in range); each epoch shuffles the training samples and
runs ``train_step`` on minibatches, with a progress bar (stderr). At the end it prints the
training and validation loss (and accuracy for integer-label classifiers) and writes
``params.npz``, ``optimizer.npz``, ``history.csv``, ``loss.png`` and, for classifiers of 2-D
points, ``boundary.png`` into ``--out``. See docs/training.md.

Ctrl-C (SIGINT) once training has started is deferred to the loop's next safe point
(:mod:`gradc.training.interrupt`): the finished epochs are saved like at a normal end, and
the exit code is 130.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from gradc.commands import EXIT_INTERRUPTED, EXIT_OK, load_model
from gradc.commands._options import (add_progress_option, add_training_options,
                                     check_options, n_epochs, note, out_dir, percent)
from gradc.training import checkpoint, plots
from gradc.training.data import analyse, check_arrays, check_labels, count, read_npz, split
from gradc.training.history import HISTORY_FILE, History, find_history
from gradc.training.interrupt import (
    DeferredInterrupt,
    Interrupted,
    caused_by_interrupt,
    forget_unhandled_interrupt,
)
from gradc.training.loop import Config, fit, training_entry, training_tier, warm_up

def register(subparsers) -> None:
    """Add the ``train`` subparser."""
    p = subparsers.add_parser(
        "train", help="train a model on arrays from an .npz file",
        description="Train MODEL.grad on DATA.npz, whose arrays are matched to the model's "
                    "inputs by name. Shows a progress bar (epoch, samples/s, running "
                    "loss), prints the final training and validation loss (and accuracy "
                    "for classifiers with integer labels) and writes params.npz, "
                    "optimizer.npz, history.csv, loss.png and, for classifiers of 2-D "
                    "points, boundary.png into --out.",
        epilog="--resume P continues from the params P (and from optimizer.npz and "
               "history.csv beside P when they exist): the epochs, the history and the "
               "optimizer's moments carry on where that run stopped. P may be the --out "
               "folder of that run (its params.npz).")
    p.add_argument("model", metavar="MODEL.grad", help="the model file")
    p.add_argument("--data", required=True, metavar="DATA.npz",
                   help="the training data: one array per model input, same names")
    add_training_options(p)
    p.add_argument("--out", default="out", metavar="DIR",
                   help="where to write params, history and pictures (default ./out)")
    p.add_argument("--resume", metavar="params.npz", type=checkpoint.params_file,
                   help="continue from these params instead of fresh ones (a folder: "
                        "its params.npz, as --out wrote it)")
    p.add_argument("--log-every", type=int, default=0, metavar="N",
                   help="print a summary line every N epochs (default: about ten lines)")
    add_progress_option(p)
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar and no per-epoch lines; only the final summary")
    p.add_argument("--cluster", metavar="ADDRESS|local:N",
                   help="train data-parallel on a Dask cluster: a scheduler address "
                        "(tcp://host:8786) or local:N worker processes; --data is then an "
                        ".npz or a folder of .npz shards, read by the workers "
                        "(docs/scale-out.md; needs gradc[dask])")
    p.set_defaults(run=run)


def run(args) -> int:
    """Train as the options say; return the exit code (130 when interrupted).

    Ctrl-C while compiling stops at once (nothing is written). From the end of the warm-up
    on, SIGINT is deferred (:class:`DeferredInterrupt`): the loop stops at its next safe
    point, and the params, optimizer state, history and pictures of the finished epochs
    are written before the exit with code 130, whenever the Ctrl-C (or a second one) came.
    One handler covers both phases, so no SIGINT falls between them.
    With ``--cluster`` the run is handed to :func:`gradc.commands._cluster.train`.
    """
    if getattr(args, "cluster", None):
        from gradc.commands._cluster import train as train_on_cluster
        return train_on_cluster(args)
    check_options(args)
    arrays = read_npz(args.data)        # a missing or corrupt file fails before compiling
    with DeferredInterrupt(defer=False) as sigint:
        try:
            prepared = _prepare(args, arrays)
        except BaseException as e:      # Ctrl-C while compiling, perhaps inside Numba
            if not caused_by_interrupt(e):
                raise
            sigint.defer = True
            return _interrupted_early()
        sigint.defer = True             # from here on a Ctrl-C only sets the flag
        if sigint.requested:            # its KeyboardInterrupt was swallowed while compiling
            return _interrupted_early()
        if not args.quiet:
            note(_readynote(prepared))
        return _train(prepared, args, sigint)


def _readynote(prepared) -> str:
    """What the warm-up did: kernels compiled (or loaded), or training starts on the
    NumPy tier while they compile in the background."""
    model = prepared.model
    if model.tiered and training_tier(model, prepared.cfg) == "numpy":
        how = "load from the cache" if model.pending(training_entry(model, prepared.cfg)) \
            == "loading" else "compile"
        return (f"started on the NumPy tier in {prepared.ready:.1f} s; the Numba kernels "
                f"{how} in the background and take over when ready")
    return f"kernels ready in {prepared.ready:.1f} s"


def _interrupted_early() -> int:
    forget_unhandled_interrupt()
    _flush()
    note("gradc train: interrupted (Ctrl-C) before training started; nothing written")
    return EXIT_INTERRUPTED


@dataclass
class _Run:
    """What :func:`_prepare` sets up for the training."""

    model: object
    task: object
    train: dict
    val: dict | None
    out: Path
    cfg: Config
    params: dict
    history: History
    ready: float        # seconds from the start to the end of the warm-up (compiling)


def _prepare(args, arrays) -> _Run:
    """Compile the model, check and split the data, make or load the params, print the
    header and compile the kernels (the warm-up). Nothing is trained yet."""
    start = time.perf_counter()
    model = load_model(args.model, target=args.target, optimizer=args.optimizer)
    task = analyse(model.signature, args.model, args.label)
    data = check_arrays(args.data, arrays, model.signature)
    check_labels(args.data, data, task)
    train, val = split(data, args.val_split, args.seed)
    out = out_dir(args.out)
    n_train, n_val = count(train), (count(val) if val else 0)
    batch_size = min(args.batch_size, n_train)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    cfg = Config(args.epochs, batch_size, args.lr, args.seed,
                 progress=progress and not args.quiet, log_every=args.log_every,
                 quiet=args.quiet)

    history = History()
    if args.resume:
        params = checkpoint.load_params(model, args.resume)
        restored = checkpoint.load_optimizer(
            model, params, Path(args.resume).with_name(checkpoint.OPTIMIZER_FILE))
        hist_path = find_history(args.resume)
        if hist_path is not None:
            history = History.read(hist_path)
        note(f"resuming from {args.resume} after epoch {history.last_epoch}; {restored}")
    else:
        params = model.init_params(args.seed)

    n_values = sum(p.size for p in params.values())
    print(f"model {model.name} ({args.model}): {len(params)} params, {n_values:,} values; "
          f"{args.optimizer}, lr {args.lr:g}, batch {batch_size}, {n_epochs(args.epochs)}")
    print(f"data {args.data}: {count(data)} samples: {n_train} train, {n_val} validation; "
          f"{task.describe()}", flush=True)
    if not args.quiet and model.tier("loss") != "numpy":
        note("compiling the kernels (cached after the first run) ...")
    warm_up(model, params, train, cfg, forward=task.classifier)
    return _Run(model, task, train, val, out, cfg, params, history,
                time.perf_counter() - start)


def _train(r: _Run, args, sigint: DeferredInterrupt) -> int:
    """Train, then write the outputs; run with SIGINT deferred, so that whenever Ctrl-C
    comes, the finished epochs are saved and the exit code is 130."""
    model, params, history, out = r.model, r.params, r.history, r.out
    n_train, n_val = count(r.train), (count(r.val) if r.val else 0)

    def save_history(h: History) -> None:
        h.write(out / HISTORY_FILE)

    t0 = time.perf_counter()
    first = history.last_epoch + 1
    interrupted = False
    try:
        fit(model, params, r.train, r.val, r.task, r.cfg, history, on_epoch=save_history,
            stop=sigint)
    except Interrupted as stop:
        interrupted = True
        unfinished = f" (epoch {stop.epoch} unfinished, dropped)" if stop.partial else ""
        _flush()
        note(f"gradc train: interrupted (Ctrl-C) after epoch {history.last_epoch}"
              f"{unfinished}: saving the params, optimizer state, history and plots of the "
              f"finished epochs")
    seconds = time.perf_counter() - t0
    done = history.last_epoch - first + 1

    # Ctrl-C from here on only sets sigint: every file is written in full.
    written = checkpoint.save_run(model, params, history, out)
    written += _pictures(model, params, r.task, r.train, r.val, history, out, args)

    if done > 0:
        steps = sum(row.seconds for row in history.rows[-done:])
        print(f"trained {n_epochs(done)} in {seconds:.2f} s "
              f"({done * n_train / max(steps, 1e-9):,.0f} samples/s in the steps)")
    if len(history):    # the params are those of the last row, evaluated in eval mode
        row = history.rows[-1]
        at = f", epoch {row.epoch}" if interrupted or sigint.requested else ""
        print(f"train loss {row.train_loss:.4g}{percent(row.train_acc)} ({n_train} "
              f"samples{at})")
        if row.val_loss is not None:
            print(f"val   loss {row.val_loss:.4g}{percent(row.val_acc)} ({n_val} "
                  f"samples{at})")
    print("wrote " + " ".join(str(p) for p in written), flush=True)
    if sigint.requested and not interrupted:
        note("gradc train: interrupted (Ctrl-C) after the last epoch; everything is saved")
    return EXIT_INTERRUPTED if interrupted or sigint.requested else EXIT_OK


def _flush() -> None:
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass


def _pictures(model, params, task, train, val, history, out: Path, args) -> list[Path]:
    """Write loss.png (and boundary.png for classifiers of 2-D points); return the paths."""
    if not plots.have_matplotlib():
        note("matplotlib is not installed: no pictures (pip install 'gradc[train]')")
        return []
    plots.plot_history(history, out / "loss.png", title=f"{model.name}: {args.optimizer}, "
                       f"lr {args.lr:g}, batch {args.batch_size}", note=task.describe())
    written = [out / "loss.png"]
    if task.point_input is not None:
        plots.plot_boundary(model, params, task, train, val, out / "boundary.png",
                            title=f"{model.name}: decision regions after epoch "
                                  f"{history.last_epoch}")
        written.append(out / "boundary.png")
    return written
