"""Synchronous data-parallel training on a Dask cluster: :func:`fit`.

One step: the driver draws the global minibatch (training ranks, in the order of the
single-process loop: ``numpy.random.default_rng([seed, epoch]).permutation(n_train)``
cut into ``batch_size`` pieces, as :func:`gradc.training.loop.run_epoch` without
``train_epoch``), sends it with the params to every holder (:mod:`gradc.dask.holder`);
each runs ``loss_and_grad`` on its rows of it; the driver takes the size-weighted mean
of the gradients (the gradient of the mean loss over the whole minibatch) and applies one
step of the model's optimizer to it (:class:`~gradc.dask.optimizer.HostOptimizer`, the
same update rule as ``train_step``). So the params follow single-process training with
the same seed: equal up to rounding (1e-10 in float64). The validation rows are those
``gradc train --val-split`` holds out with the same seed.

After each epoch the params are evaluated on every holder's training and validation rows
and a :class:`~gradc.training.history.Row` is appended, as in single-process training.
An epoch cut short (Ctrl-C via ``stop``, or :class:`~gradc.dask.fleet.LostWorkers`) is
rolled back: params and ``model.state`` are those of the last finished epoch, ready to be
saved and resumed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from gradc.codegen.target import TARGETS
from gradc.dask.fleet import Fleet, LostWorkers
from gradc.dask.optimizer import HostOptimizer, weighted_mean
from gradc.dask.sources import plan
from gradc.errors import GradcError
from gradc.training.data import analyse
from gradc.training.history import History, Row
from gradc.training.interrupt import Interrupted, caused_by_interrupt, forget_unhandled_interrupt
from gradc.training.loop import (Config, describe, logged_epochs, progress_bar, restore,
                                 snapshot, write_line)


@dataclass
class WorkerStats:
    """What one worker did in ``loss_and_grad`` calls: samples and seconds."""

    rows: int = 0
    seconds: float = 0.0

    @property
    def samples_per_s(self) -> float:
        """Samples per second of its gradient computations (0 when it computed none)."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0


@dataclass
class FitResult:
    """What :func:`fit` returns: the trained params (the dict passed in, updated), the
    history, per-worker statistics, the recoveries from lost workers (one line each),
    the sample counts and the seconds spent starting the holders."""

    params: dict
    history: History
    workers: dict[str, WorkerStats] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    n_train: int = 0
    n_val: int = 0
    start_seconds: float = 0.0


def check_model(model) -> None:
    """Refuse models whose data-parallel training would not be single-process training:
    batch statistics (batchnorm), random masks (dropout), no loss, or target cuda."""
    sig = model.signature
    if not sig.get("loss") or not model.supports("loss_and_grad"):
        raise GradcError(f"model '{model.name}' has no loss_and_grad: nothing to train")
    if sig.get("buffers"):
        raise GradcError(f"model '{model.name}' uses batchnorm: its batch statistics make "
                         f"the gradient of a minibatch differ from the weighted mean of "
                         f"its slices, so it cannot be split over workers exactly; train it "
                         f"without --cluster")
    if sig.get("noise"):
        raise GradcError(f"model '{model.name}' uses dropout: each worker would draw its "
                         f"own masks, not those of single-process training; train it "
                         f"without --cluster")
    if TARGETS[model.options.target].device:
        raise GradcError(f"gradc.dask trains models whose arrays are NumPy arrays (the "
                         f"workers run NumPy/Numba kernels), not target "
                         f"'{model.options.target}'; compile with target='cpu'")


def _check_args(epochs, batch_size, lr, val_split, timeout) -> None:
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (
            math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr: expected a positive number, got {lr!r}")
    if not isinstance(val_split, (int, float)) or not 0.0 <= val_split < 1.0:
        raise ValueError(f"val_split: expected a number in [0, 1), got {val_split!r}")
    if not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout: expected a positive number of seconds, got {timeout!r}")


def _never() -> bool:
    return False


def fit(model, client, data, params: dict | None = None, *, epochs: int = 1,
        batch_size: int = 32, lr: float = 0.01, seed: int = 0, val_split: float = 0.0,
        parts: int | None = None, history: History | None = None, timeout: float = 60.0,
        start_timeout: float = 600.0, progress: bool = False, quiet: bool = True,
        log_every: int = 0, on_ready=None, on_epoch=None, on_step=None,
        stop=None, label: str | None = None) -> FitResult:
    """Train ``model`` on ``data`` spread over the workers of ``client``.

    Args:
        model: a :class:`gradc.Model` (its optimizer is the one it was compiled with; the
            driver's ``model.state`` holds the optimizer state, as in single-process use).
        client: a ``distributed.Client``.
        data: a dict of dask arrays, a folder of ``.npz`` shards or one ``.npz`` file
            (see :mod:`gradc.dask.sources`); loaded on the workers only.
        params: the starting params (updated in place); default ``model.init_params(seed)``.
        epochs, batch_size, lr, seed, val_split: as ``gradc train``.
        parts: how many partitions one ``.npz`` file is split into (default: one per worker).
        history: rows of earlier epochs (a resumed run); new epochs are numbered after them.
        timeout: seconds any worker may take to answer one step before the run stops.
        start_timeout: seconds for loading the data and compiling the kernels on a worker.
        progress, quiet, log_every: the progress bar and the per-epoch lines, as
            ``gradc train``.
        on_ready: ``on_ready(result, fleet)`` once the holders are ready (sample counts set).
        on_epoch: ``on_epoch(history)`` after each finished epoch.
        on_step: ``on_step(step)`` after each optimizer step (counted from 1 in this call).
        stop: polled after every step; when true the run stops with ``Interrupted``.
        label: the integer input holding the class labels, for accuracy (default: those
            of the loss; see :func:`gradc.training.data.label_task`).

    Returns:
        a :class:`FitResult`.

    Raises:
        ValueError: a bad argument (named) or data that does not fit the model.
        GradcError: a partition that does not fit the model (named), a model that cannot be
            trained data-parallel, a ``label`` that is no integer input, divergence, or
            :class:`LostWorkers`.
        Interrupted: ``stop()`` became true or Ctrl-C; the unfinished epoch is rolled back.
    """
    _check_args(epochs, batch_size, lr, val_split, timeout)
    check_model(model)
    task = analyse(model.signature, label=label)
    params = model.init_params(seed) if params is None else params
    history = History() if history is None else history
    stop = stop or _never
    result = FitResult(params, history)
    t0 = time.perf_counter()
    fleet = Fleet(client, model, plan(data, model.signature, client, parts, start_timeout),
                  timeout, start_timeout, task)
    try:
        result.n_train, result.n_val = fleet.start(params, val_split, seed)
        result.start_seconds = time.perf_counter() - t0
        if on_ready is not None:
            on_ready(result, fleet)
        cfg = Config(epochs, min(batch_size, result.n_train), float(lr), seed,
                     progress=progress, log_every=log_every, quiet=quiet, fused=False)
        _epochs(fleet, HostOptimizer(model), result, cfg, task, on_epoch, on_step, stop)
    finally:
        result.events = list(fleet.events)
        fleet.close()
    return result


def _epochs(fleet: Fleet, opt: HostOptimizer, result: FitResult, cfg: Config, task,
            on_epoch, on_step, stop) -> None:
    model, params, history = fleet.model, result.params, result.history
    first, last = history.last_epoch + 1, history.last_epoch + cfg.epochs
    log = logged_epochs(cfg, first, last)
    bar = progress_bar(result.n_train * cfg.epochs, cfg.progress)
    step = 0
    try:
        for epoch in range(first, last + 1):
            saved = snapshot(model, params)
            try:
                if stop():
                    raise Interrupted(epoch, partial=False)
                bar.set_description(f"epoch {epoch}/{last}", refresh=False)
                t0 = time.perf_counter()
                order = np.random.default_rng([cfg.seed, epoch]).permutation(result.n_train)
                total = 0.0
                for start in range(0, result.n_train, cfg.batch_size):
                    batch = order[start:start + cfg.batch_size]
                    loss = _step(fleet, opt, params, batch, cfg.lr, result.workers)
                    if not math.isfinite(loss):
                        raise GradcError(f"training diverged in epoch {epoch}: the loss is "
                                         f"{loss}; try a smaller --lr (now {cfg.lr:g})")
                    total += loss * len(batch)
                    bar.set_postfix(loss=f"{total / (start + len(batch)):.4g}", refresh=False)
                    bar.update(len(batch))
                    step += 1
                    if on_step is not None:
                        on_step(step)
                    if stop():
                        raise Interrupted(epoch, partial=True)
                seconds = time.perf_counter() - t0
                (train_loss, train_acc), (val_loss, val_acc) = _evaluate(fleet, params, task)
                row = Row(epoch, train_loss, val_loss, train_acc, val_acc, seconds)
                history.append(row)
                if on_epoch is not None:
                    on_epoch(history)
                if epoch in log and not cfg.quiet:
                    write_line(describe(row, last))
            except BaseException as e:
                interrupt = isinstance(e, Interrupted) or caused_by_interrupt(e)
                if history.last_epoch < epoch and (interrupt or isinstance(e, LostWorkers)):
                    restore(model, params, saved)
                if interrupt and not isinstance(e, Interrupted):
                    forget_unhandled_interrupt()
                    raise Interrupted(epoch, partial=True) from e
                raise
    finally:
        bar.close()


def _step(fleet: Fleet, opt: HostOptimizer, params: dict, batch: np.ndarray, lr: float,
          workers: dict) -> float:
    """One synchronous step on the global minibatch ``batch``; the loss before it."""
    done, loss = [], 0.0
    for slot, (n, part_loss, grads, seconds) in fleet.each("grad", params, batch):
        stats = workers.setdefault(slot.address, WorkerStats())
        stats.rows += n
        stats.seconds += seconds
        if n:
            done.append((n, grads))
            loss += part_loss * n
    opt.step(params, weighted_mean(done, {k: v.dtype for k, v in params.items()}), lr,
             fleet.model.state)
    return loss / len(batch)


def _evaluate(fleet: Fleet, params: dict, task) -> tuple:
    """((train loss, accuracy), (val loss, accuracy)) combined over the holders; None
    where a set is empty or accuracy is not defined."""
    sums = [[0.0, 0, 0.0], [0.0, 0, 0.0]]
    for _, found in fleet.each("evaluate", params):
        for acc_sums, got in zip(sums, found):
            if got is not None:
                acc_sums[0] += got[0]
                acc_sums[1] += got[1]
                acc_sums[2] += got[2] or 0.0
    out = []
    for loss_sum, n, correct in sums:
        if not n:
            out.append((None, None))
        else:
            out.append((loss_sum / n, correct / n if task.classifier else None))
    return tuple(out)
