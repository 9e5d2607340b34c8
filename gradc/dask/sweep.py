"""Hyper-parameter sweeps: independent single-process trainings spread over the workers.

:func:`sweep` trains one model for every combination of a grid (``lr``, ``batch_size``,
``epochs``, ``seed``, ``optimizer``); each trial is one Dask task running
:func:`gradc.training.loop.fit` (the loop of ``gradc train``: same split, shuffles and
result as ``gradc train`` with those options) on one worker. The model is compiled once
per optimizer on the driver and scattered to the workers once (it pickles as the
generated module's text: nothing is recompiled, and Numba loads the kernels from its
cache when the workers share it); an ``.npz`` file is read and checked by one task on a
worker and copied by Dask to the others as needed. A trial that fails (diverges, say) is
a row with its error; a worker that dies has its trial re-run elsewhere by Dask
(``retries``). Waiting is bounded: no trial finishing within ``timeout`` seconds of the
previous one is an error.

Outputs (with ``out``): ``results.csv`` (one row per trial), ``sweep.png`` (validation
loss and accuracy per epoch of every setting; training loss without a validation set) and
``best_params.npz``, the params of the setting with the lowest final validation loss (and
that trial's running statistics, for a model with batchnorm, as ``gradc train`` saves them).
"""

from __future__ import annotations

import copy
import csv
import itertools
import operator
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from gradc.errors import GradcError
from gradc.options import OPTIMIZERS

KINDS = {"lr": float, "batch_size": int, "epochs": int, "seed": int, "optimizer": str}


def parse_grid(items) -> dict[str, list]:
    """``["lr=0.1,0.01", "batch_size=32,128"]`` -> ``{"lr": [0.1, 0.01], "batch_size":
    [32, 128]}``; a GradcError naming the item when it is not ``NAME=V1,V2,...`` with a
    name of :data:`KINDS` and values of its kind."""
    grid: dict[str, list] = {}
    for item in items:
        name, sep, values = str(item).partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in KINDS:
            raise GradcError(f"--grid {item!r}: expected NAME=V1,V2,... with NAME one of "
                             f"{', '.join(KINDS)}")
        if name in grid:
            raise GradcError(f"--grid: '{name}' is given twice")
        try:
            vals = [KINDS[name](v.strip()) for v in values.split(",") if v.strip()]
        except ValueError:
            raise GradcError(f"--grid {item!r}: every value of {name} must be "
                             f"{'a number' if name == 'lr' else 'an integer'}") from None
        bad = [v for v in vals if (name == "optimizer" and v not in OPTIMIZERS) or
               (name in ("lr", "batch_size", "epochs") and not v > 0)]
        if not vals or bad:
            what = f"one of {', '.join(OPTIMIZERS)}" if name == "optimizer" else "positive"
            raise GradcError(f"--grid {item!r}: values of {name} must be {what}")
        grid[name] = vals
    return grid


def settings_of(grid: dict, defaults: dict) -> list[dict]:
    """Every combination of ``grid`` (last name varying fastest) over ``defaults``."""
    names = list(grid)
    return [{**defaults, **dict(zip(names, combo))}
            for combo in itertools.product(*(grid[n] for n in names))]


@dataclass
class SweepResult:
    """The trials (dicts: the settings, final losses/accuracies, seconds, worker, error,
    history rows), the index of the best one (None if all failed), its params and its
    model's state (running statistics, optimizer slots), the wall seconds of the whole
    sweep, the grid and the files written."""

    trials: list[dict]
    best: int | None
    best_params: dict | None
    seconds: float
    grid: dict = field(default_factory=dict)
    written: list = field(default_factory=list)
    best_state: dict | None = None


def _read_data(path: str, signature: dict, task) -> dict:
    """The checked arrays of an ``.npz`` (a task: runs on a worker)."""
    from gradc.training.data import check_labels, load_data

    data = load_data(path, signature)
    check_labels(path, data, task)
    return data


def run_trial(model, data: dict, settings: dict, val_split: float,
              task) -> tuple[dict, dict | None, dict | None]:
    """One training (a task) of the :class:`gradc.training.data.Task` ``task``:
    ``(summary, params, state)``; a GradcError becomes the summary's ``error`` (params
    and state None)."""
    from distributed import get_worker

    from gradc.training.data import count, split
    from gradc.training.history import History
    from gradc.training.loop import Config, fit

    own = copy.copy(model)          # a Model of its own: the optimizer state is per trial
    own.reset_optimizer()
    summary = {**settings, "worker": get_worker().address, "error": "", "history": []}
    t0 = time.perf_counter()
    try:
        train, val = split(data, val_split, settings["seed"])
        cfg = Config(settings["epochs"], min(settings["batch_size"], count(train)),
                     settings["lr"], settings["seed"], progress=False, quiet=True)
        params = own.init_params(settings["seed"])
        history = fit(own, params, train, val, task, cfg, History())
    except GradcError as e:
        summary.update(error=str(e), seconds=time.perf_counter() - t0)
        return summary, None, None
    last = history.rows[-1]
    summary.update(train_loss=last.train_loss, train_acc=last.train_acc,
                   val_loss=last.val_loss, val_acc=last.val_acc,
                   seconds=time.perf_counter() - t0,
                   history=[(r.epoch, r.train_loss, r.val_loss, r.train_acc, r.val_acc)
                            for r in history.rows])
    return summary, params, own.state


def _models(model, grid: dict) -> dict:
    """The model compiled for each optimizer of the grid (the given one when none is)."""
    import gradc

    names = grid.get("optimizer") or [model.signature["optimizer"]["name"]]
    o = model.options
    return {n: model if n == model.signature["optimizer"]["name"] else gradc.compile_string(
        model.model_source.text, name=model.model_source.filename, target=o.target,
        dtype=o.dtype, wrt=o.wrt, optimizer=n, cache=o.cache, parallel=o.parallel)
        for n in names}


def sweep(model, client, data, grid: dict, *, epochs: int = 20, batch_size: int = 32,
          lr: float = 0.01, seed: int = 0, val_split: float = 0.1, out=None,
          timeout: float = 600.0, retries: int = 1, on_trial=None,
          label: str | None = None) -> SweepResult:
    """Train ``model`` once per setting of ``grid`` on the workers of ``client``.

    Args:
        model: a :class:`gradc.Model`.
        client: a ``distributed.Client``.
        data: an ``.npz`` path (read on a worker) or a dict of NumPy arrays (scattered once).
        grid: name -> values (see :func:`parse_grid`); names absent from it take the
            keyword defaults.
        out: a directory for results.csv, sweep.png and best_params.npz (None: nothing).
        timeout: seconds to wait for the next trial to finish.
        on_trial: ``on_trial(summary)`` as each trial finishes (in finishing order).
        label: the integer input holding the class labels, for accuracy (default: those
            of the loss; see :func:`gradc.training.data.label_task`).

    Raises:
        GradcError: bad data (named), a ``label`` that is no integer input, or no trial
            finished within ``timeout``.
    """
    from distributed import wait

    from gradc.training.data import analyse

    if not grid:
        raise ValueError("grid: expected at least one NAME=[values]")
    unknown = [n for n in grid if n not in KINDS]
    if unknown:
        raise ValueError(f"grid: unknown name '{unknown[0]}' (known: {', '.join(KINDS)})")
    defaults = {"lr": lr, "batch_size": batch_size, "epochs": epochs, "seed": seed,
                "optimizer": model.signature["optimizer"]["name"]}
    settings = settings_of(grid, defaults)
    task = analyse(model.signature, label=label)
    t0 = time.perf_counter()
    shipped = {n: client.scatter(m, broadcast=True, hash=False)
               for n, m in _models(model, grid).items()}
    if isinstance(data, (str, Path)):
        data_ref = client.submit(_read_data, str(data), model.signature, task, pure=False)
    else:
        data_ref = client.scatter(dict(data), broadcast=True, hash=False)
    tag = uuid.uuid4().hex[:8]
    runs = [client.submit(run_trial, shipped[s["optimizer"]], data_ref, s, val_split, task,
                          pure=False, retries=retries, key=f"gradc-trial-{tag}-{i}")
            for i, s in enumerate(settings)]
    summaries = {client.submit(operator.itemgetter(0), r, pure=False): i
                 for i, r in enumerate(runs)}
    trials: list = [None] * len(settings)
    pending = set(summaries)
    while pending:
        try:
            done, pending = wait(pending, timeout=timeout, return_when="FIRST_COMPLETED")
        except TimeoutError:
            client.cancel(runs + list(summaries))
            raise GradcError(f"sweep: no trial finished within {timeout:g} s "
                             f"({len(pending)} of {len(settings)} still running)") from None
        for f in done:
            trials[summaries[f]] = summary = f.result()
            if on_trial is not None:
                on_trial(summary)
    seconds = time.perf_counter() - t0
    best = _best(trials)
    best_params, best_state = (None, None) if best is None else client.submit(
        operator.itemgetter(1, 2), runs[best], pure=False).result(timeout=timeout)
    result = SweepResult(trials, best, best_params, seconds, grid, best_state=best_state)
    if out is not None:
        result.written = write_outputs(result, model, Path(out))
    return result


def _best(trials: list[dict]) -> int | None:
    ok = [i for i, t in enumerate(trials) if not t["error"]]
    key = "val_loss" if ok and trials[ok[0]]["val_loss"] is not None else "train_loss"
    return min(ok, key=lambda i: trials[i][key], default=None)


COLUMNS = ("trial", "lr", "batch_size", "epochs", "seed", "optimizer", "train_loss",
           "train_acc", "val_loss", "val_acc", "seconds", "worker", "best", "error")


def write_outputs(result: SweepResult, model, out: Path) -> list[Path]:
    """Write results.csv, sweep.png (with matplotlib) and best_params.npz into ``out``;
    return the paths written."""
    from gradc.training import checkpoint, plots
    from gradc.training.files import replacing
    from gradc.training.history import csv_cell

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GradcError(f"--out {out}: cannot create the directory: {e.strerror or e}") from None
    written = [out / "results.csv"]
    with replacing(written[0]) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for i, t in enumerate(result.trials):
            row = {**t, "trial": i + 1, "best": "yes" if i == result.best else ""}
            w.writerow([csv_cell(row.get(c)) for c in COLUMNS])
    if plots.have_matplotlib():
        written.append(out / "sweep.png")
        plot_trials(result, written[-1], title=f"{model.name}: sweep of "
                    f"{', '.join(result.grid)}")
    if result.best_params is not None:
        written.append(out / "best_params.npz")
        checkpoint.save_params(model, result.best_params, written[-1], result.best_state)
    return written


def label(trial: dict, grid: dict) -> str:
    """``lr=0.1 batch_size=32``: the grid's settings of a trial."""
    return " ".join(f"{n}={trial[n]:g}" if isinstance(trial[n], float) else f"{n}={trial[n]}"
                    for n in grid)


def plot_trials(result: SweepResult, path, title: str = "") -> None:
    """Validation loss (left) and accuracy (right) per epoch, one line per setting; the
    training curves when there is no validation set."""
    from gradc.training.plots import DPI, LOSS_FIGSIZE, pyplot, save_figure

    plt = pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=LOSS_FIGSIZE, dpi=DPI)
    try:
        rows = [t for t in result.trials if t["history"]]
        val = any(r[2] is not None for t in rows for r in t["history"])
        loss_at, acc_at, which = (2, 4, "validation") if val else (1, 3, "training")
        has_acc = False
        for t in rows:
            epochs = [r[0] for r in t["history"]]
            ax_loss.plot(epochs, [r[loss_at] for r in t["history"]], label=label(t, result.grid))
            if t["history"][0][acc_at] is not None:
                has_acc = True
                ax_acc.plot(epochs, [100 * r[acc_at] for r in t["history"]],
                            label=label(t, result.grid))
        ax_loss.set(xlabel="epoch", ylabel="loss", title=f"{which} loss")
        ax_loss.grid(True, alpha=0.3)
        ax_loss.legend(fontsize="small")
        if has_acc:
            ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title=f"{which} accuracy")
            ax_acc.grid(True, alpha=0.3)
            ax_acc.legend(fontsize="small")
        else:
            ax_acc.axis("off")
        if title:
            fig.suptitle(title)
        save_figure(fig, path)
    finally:
        plt.close(fig)
