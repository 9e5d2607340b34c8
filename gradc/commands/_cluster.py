"""The cluster commands: ``gradc train --cluster`` and ``gradc sweep``, the command-line side
of the :mod:`gradc.dask` library (which imports no CLI code).

``train(args)`` is what ``gradc train MODEL --data D --cluster C`` runs (the options of
:mod:`gradc.commands.train`, checked the same way): data-parallel :func:`gradc.dask.fit`
with the progress bar and epoch lines of single-process training, then ``params.npz``,
``optimizer.npz``, ``history.csv``, ``loss.png`` and ``workers.csv`` (samples per second
of each worker) in ``--out``. ``--data`` is an ``.npz`` file (split into one partition per
worker) or a folder of ``.npz`` shards, read by the workers. Ctrl-C, or losing every
worker, stops at the last finished epoch, whose params, optimizer state and history are
saved for ``--resume`` (exit 130, resp. 2, with a line saying so).
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

from gradc.commands import EXIT_INTERRUPTED, EXIT_OK, EXIT_USER, load_model
from gradc.codegen.threads import _usable_cores
from gradc.commands._options import check_options, n_epochs, out_dir, percent
from gradc.dask.cluster import check, open_cluster
from gradc.dask.fit import fit
from gradc.dask.fleet import LostWorkers
from gradc.errors import GradcError
from gradc.training import checkpoint, plots
from gradc.training.files import replacing
from gradc.training.data import analyse
from gradc.training.history import HISTORY_FILE, History, find_history
from gradc.training.interrupt import DeferredInterrupt, Interrupted


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _resume(model, args) -> tuple[dict, History]:
    """Params (fresh or ``--resume``d, with the optimizer state and history beside them)."""
    if not args.resume:
        return model.init_params(args.seed), History()
    params = checkpoint.load_params(model, args.resume)
    note = checkpoint.load_optimizer(model, params, Path(args.resume).with_name(
        checkpoint.OPTIMIZER_FILE))
    found = find_history(args.resume)
    history = History.read(found) if found is not None else History()
    _say(f"resuming from {args.resume} after epoch {history.last_epoch}; {note}")
    return params, history


def write_workers(result, path: Path) -> None:
    """``workers.csv``: worker, samples, seconds in loss_and_grad, samples/s."""
    with replacing(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(("worker", "samples", "seconds", "samples_per_s"))
        for addr, s in sorted(result.workers.items()):
            w.writerow((addr, s.rows, f"{s.seconds:.6g}", f"{s.samples_per_s:.6g}"))


def train(args) -> int:
    """Run ``gradc train ... --cluster``; return the exit code."""

    check_options(args)
    check(args.cluster)
    model = load_model(args.model, target=args.target, optimizer=args.optimizer)
    task = analyse(model.signature, args.model, args.label)
    out = out_dir(args.out)
    params, history = _resume(model, args)
    first = history.last_epoch + 1
    progress = sys.stderr.isatty() if args.progress is None else args.progress

    def ready(result, fleet) -> None:
        where = ", ".join(f"{s.address} ({len(s.parts)})" for s in fleet.slots)
        print(f"model {model.name} ({args.model}): {len(params)} params, "
              f"{sum(p.size for p in params.values()):,} values; {args.optimizer}, lr "
              f"{args.lr:g}, batch {min(args.batch_size, result.n_train)}, "
              f"{n_epochs(args.epochs)}")
        print(f"data {args.data}: {result.n_train + result.n_val} samples: {result.n_train} "
              f"train, {result.n_val} validation; {task.describe()}; {len(fleet.parts)} "
              f"partitions on {len(fleet.slots)} workers: {where}", flush=True)
        if not args.quiet:
            _say(f"holders ready in {result.start_seconds:.1f} s (data loaded and kernels "
                 f"compiled on the workers)")

    stopped, code = None, EXIT_OK
    t0 = time.perf_counter()
    with open_cluster(args.cluster) as client, DeferredInterrupt() as sigint:
        try:
            result = fit(model, client, args.data, params, epochs=args.epochs,
                         batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         val_split=args.val_split, history=history,
                         progress=progress and not args.quiet, quiet=args.quiet,
                         log_every=args.log_every, on_ready=ready, stop=sigint,
                         on_epoch=lambda h: h.write(out / HISTORY_FILE), label=args.label)
        except (Interrupted, LostWorkers) as e:
            stopped, result = e, None
            code = EXIT_INTERRUPTED if isinstance(e, Interrupted) else EXIT_USER
    seconds = time.perf_counter() - t0
    written = checkpoint.save_run(model, params, history, out)
    if plots.have_matplotlib():
        plots.plot_history(history, out / "loss.png", title=f"{model.name}: {args.optimizer}"
                           f", lr {args.lr:g}, batch {args.batch_size}, on a Dask cluster",
                           note=task.describe())
        written.append(out / "loss.png")
    if result is not None:
        write_workers(result, out / "workers.csv")
        written.append(out / "workers.csv")
        for line in result.events:
            _say(f"gradc train: {line}")
        done = history.last_epoch - first + 1
        steps = sum(r.seconds for r in history.rows[-done:]) if done else 0.0
        print(f"trained {n_epochs(done)} in {seconds:.2f} s "
              f"({done * result.n_train / max(steps, 1e-9):,.0f} samples/s in the steps)")
        for addr, s in sorted(result.workers.items()):
            print(f"  worker {addr}: {s.rows:,} samples in loss_and_grad, "
                  f"{s.samples_per_s:,.0f} samples/s")
    if history.rows:
        row = history.rows[-1]
        print(f"train loss {row.train_loss:.4g}{percent(row.train_acc)} (epoch {row.epoch})")
        if row.val_loss is not None:
            print(f"val   loss {row.val_loss:.4g}{percent(row.val_acc)} (epoch {row.epoch})")
    print("wrote " + " ".join(str(p) for p in written), flush=True)
    if stopped is not None:
        why = "interrupted (Ctrl-C)" if isinstance(stopped, Interrupted) else str(stopped)
        _say(f"gradc train: {why}; saved the params, optimizer state and history after "
             f"epoch {history.last_epoch}: continue with --resume {out / checkpoint.PARAMS_FILE}")
    return code


def sweep(args) -> int:
    """Run ``gradc sweep``; return the exit code."""
    from gradc.dask.sweep import label, parse_grid, settings_of
    from gradc.dask.sweep import sweep as run_sweep

    grid = parse_grid(args.grid)
    if not Path(args.data).is_file():
        raise GradcError(f"{args.data}: error: no such data file")
    n = len(settings_of(grid, {}))
    cluster = args.cluster or f"local:{max(1, min(n, _usable_cores({})))}"
    check(cluster)

    model = load_model(args.model, target=args.target, optimizer=args.optimizer)
    task = analyse(model.signature, args.model, args.label)
    print(f"model {model.name} ({args.model}): {n} trials of {', '.join(grid)}; "
          f"{n_epochs(args.epochs)} each unless the grid says; {task.describe()}; cluster "
          f"{cluster}", flush=True)
    with open_cluster(cluster) as client:
        result = run_sweep(model, client, args.data, grid, epochs=args.epochs,
                           batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                           val_split=args.val_split, out=args.out, timeout=args.timeout,
                           on_trial=lambda t: _say(_trial_line(t, grid, label)),
                           label=args.label)
    print(f"{n} trials in {result.seconds:.1f} s ({60 * n / result.seconds:.1f} trials/min)")
    if result.best is None:
        raise GradcError("sweep: every trial failed; see results.csv")
    print(f"best: {label(result.trials[result.best], grid)}  "
          f"{_trial_line(result.trials[result.best], grid, None)}")
    print("wrote " + " ".join(str(p) for p in result.written), flush=True)
    return EXIT_OK


def _trial_line(t: dict, grid: dict, label) -> str:
    head = f"trial {label(t, grid)}: " if label else ""
    if t["error"]:
        return f"{head}failed: {t['error']}"
    parts = [f"train loss {t['train_loss']:.4g}"]
    if t["val_loss"] is not None:
        parts.append(f"val loss {t['val_loss']:.4g}")
    if t["val_acc"] is not None:
        parts.append(f"val acc {100 * t['val_acc']:.1f}%")
    return head + ", ".join(parts) + f" ({t['seconds']:.1f} s on {t['worker']})"
