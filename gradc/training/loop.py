"""The training loop of ``gradc train``: epochs of shuffled minibatch steps, evaluation,
progress bar and the per-epoch log.

One epoch is :func:`run_epoch`: the permutation
``numpy.random.default_rng([seed, epoch]).permutation(n)`` of the n training samples (so a
resumed run continues the same sequence) cut into minibatches of ``batch_size``, the last
one smaller, one optimizer step each. When the generated module has ``train_epoch`` (a
whole epoch in one compiled call) it gets the full training arrays and the permutation in
slices of whole minibatches as ``order=`` (so the bar still moves on large data sets, and
the data is never copied); otherwise ``model.train_step`` runs on each minibatch. Both
take the same minibatches in the same order (and so do ``gradc.dask.fit`` and sweeps).

Stopping (Ctrl-C): :func:`fit` takes a ``stop`` callable, polled after every compiled call
(each ``train_epoch`` chunk, ``train_step`` and evaluation chunk) and before each epoch.
When it says stop, :func:`fit` raises :class:`~gradc.training.interrupt.Interrupted` with
the params and the optimizer state put back to the end of the last finished epoch (an
epoch cut short is rolled back from a copy taken at its start), so what is saved matches
the history, and ``--resume`` continues exactly as the uninterrupted run would have. A
KeyboardInterrupt (when no deferring handler is installed) is treated the same way.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

import numpy as np

from gradc.errors import GradcError
from gradc.training.data import Task, batches, count
from gradc.training.history import History, Row
from gradc.training.interrupt import Interrupted, caused_by_interrupt, forget_unhandled_interrupt

EVAL_BATCH = 4096       # evaluation runs in chunks of this many samples
FUSED_MIN_BATCHES = 64  # train_epoch gets at least this many minibatches per call


@dataclass
class Config:
    """Hyper-parameters of a run (the command-line options)."""

    epochs: int
    batch_size: int
    lr: float
    seed: int = 0
    progress: bool = True       # show the tqdm bar on stderr
    log_every: int = 0          # print a summary every N epochs (0: about ten lines)
    quiet: bool = False         # no per-epoch lines (the command prints its summary)
    fused: bool = True          # use the module's train_epoch when it has one


class _NullBar:
    """Stands in for a tqdm bar when progress is off or tqdm is missing."""

    def update(self, n: int) -> None:
        """Ignore progress."""

    def set_description(self, desc: str, refresh: bool = True) -> None:
        """Ignore the epoch number."""

    def set_postfix(self, **kwargs) -> None:
        """Ignore the running loss."""

    def close(self) -> None:
        """Nothing to close."""


def progress_bar(total: int, enabled: bool):
    """The tqdm bar of the run on stderr: samples of all epochs, the current epoch in its
    description, the epoch's running loss and the samples per second after it."""
    if not enabled:
        return _NullBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NullBar()
    return tqdm(total=total, unit=" samples", unit_scale=True, leave=False, file=sys.stderr,
                dynamic_ncols=True, mininterval=0.25, smoothing=0.1)


def write_line(text: str) -> None:
    """Print a line to stdout without tearing a progress bar on stderr."""
    try:
        from tqdm import tqdm
    except ImportError:
        print(text, flush=True)
        return
    tqdm.write(text, file=sys.stdout)
    sys.stdout.flush()


def _never() -> bool:
    return False


def run_epoch(model, params: dict, data: dict, cfg: Config, epoch: int, bar,
              stop=_never) -> float:
    """One epoch of optimizer steps on shuffled minibatches; params change in place.

    Returns:
        the mean over samples of the minibatch losses (each taken before its step).

    Raises:
        GradcError: the loss became NaN or infinite (training diverged).
        Interrupted: ``stop()`` became true (checked after each compiled call); the params
            are then part-way through the epoch, :func:`fit` rolls them back.
    """
    rng = np.random.default_rng([cfg.seed, epoch])
    total, seen = 0.0, 0
    for n, loss in _steps(model, params, data, cfg, rng, rng.permutation(count(data))):
        if stop():
            raise Interrupted(epoch, partial=True)
        if not math.isfinite(loss):
            raise GradcError(f"training diverged in epoch {epoch}: the loss is {loss}; "
                             f"try a smaller --lr (now {cfg.lr:g})")
        total += loss * n
        seen += n
        bar.set_postfix(loss=f"{total / seen:.4g}", refresh=False)
        bar.update(n)
    return total / seen


def _steps(model, params: dict, data: dict, cfg: Config, rng, order):
    """Take the optimizer steps of the minibatches of ``order`` (rows of ``data``);
    yield ``(samples, mean loss)`` after each compiled call: ``train_epoch`` on the full
    arrays with a slice of whole minibatches as its ``order`` (its dropout seed drawn from
    ``rng``), or ``train_step`` on one minibatch."""
    if training_entry(model, cfg) == "train_epoch":
        size = cfg.batch_size * max(FUSED_MIN_BATCHES,
                                    math.ceil(len(order) / cfg.batch_size / 20))
        arrays = _resident(model, data)
        for rows in np.split(order, range(size, len(order), size)):
            yield len(rows), model.train_epoch(params, cfg.lr, batch_size=cfg.batch_size,
                                               seed=int(rng.integers(2**31)), order=rows,
                                               **arrays)
    else:
        for part in batches(data, cfg.batch_size, order):
            yield count(part), model.train_step(params, cfg.lr, **part)


def _resident(model, data: dict) -> dict:
    """``data`` where ``train_epoch`` reads it (:meth:`gradc.Model.to_device`): for a device
    target copied to the device once an epoch (NumPy arrays would be copied again by every
    call), else as it is."""
    return {k: model.to_device(a) for k, a in data.items()}


def evaluate(model, params: dict, data: dict, task: Task, stop=None,
             epoch: int = 0) -> tuple[float, float | None]:
    """The loss (sample-weighted mean over chunks) and, for classifiers, the accuracy:
    the argmax over the last axis of the scores against the labels (:meth:`Task.hits`,
    the task's ``output`` and ``labels``); both in eval mode (``loss`` and ``forward``
    without ``training``: no dropout, batchnorm on its running statistics). With ``stop``,
    raises ``Interrupted(epoch)`` when it becomes true (checked after each chunk)."""
    total, correct, n_all, n_labels = 0.0, 0, 0, 0
    for chunk in batches(data, EVAL_BATCH):
        if stop is not None and stop():
            raise Interrupted(epoch, partial=True)
        n = count(chunk)
        total += model.loss(params, **chunk) * n
        n_all += n
        if task.classifier:
            hit, labelled = task.hits(model.forward(params, **chunk), chunk)
            correct += hit
            n_labels += labelled
    return total / n_all, (correct / n_labels if task.classifier else None)


def warm_up(model, params: dict, data: dict, cfg: Config, forward: bool = True) -> None:
    """Compile (or load from Numba's cache) the kernels training uses, without touching
    ``params`` or the optimizer state. ``forward``: whether
    evaluation needs the outputs (classifiers); a tiered model (see
    :mod:`gradc.runtime.tiers`) only starts the background compiles of these entries."""
    batch = next(batches(data, min(2 * cfg.batch_size, count(data))))
    scratch = {k: v.copy() for k, v in params.items()}
    if training_entry(model, cfg) == "train_epoch":
        model.train_epoch(scratch, cfg.lr, batch_size=cfg.batch_size, seed=0, state={},
                          **batch)
    else:
        model.train_step(scratch, cfg.lr, state={}, **batch)
    model.loss(params, **batch)
    if forward:
        model.forward(params, **batch)


def training_entry(model, cfg: Config) -> str:
    """The entry that trains: train_epoch when ``cfg.fused`` and the model has it."""
    return "train_epoch" if cfg.fused and model.supports("train_epoch") else "train_step"


def training_tier(model, cfg: Config) -> str:
    """The tier the training entry runs on now ('numpy' or 'numba' for a tiered CPU
    model, else the target's), for the progress line."""
    tier = getattr(model, "tier", None)
    if tier is None:
        return ""
    return tier(training_entry(model, cfg))


def logged_epochs(cfg: Config, first: int, last: int) -> set[int]:
    every = cfg.log_every or max(1, math.ceil((last - first + 1) / 10))
    return {e for e in range(first, last + 1) if (e - first + 1) % every == 0} | {first, last}


def describe(row: Row, last: int) -> str:
    """``epoch  20/200  train loss 0.4123 acc  83.0%  val loss ...  (1.3 ms)``."""
    parts = [f"epoch {row.epoch:>{len(str(last))}}/{last}", f"train loss {row.train_loss:.4g}"]
    if row.train_acc is not None:
        parts[-1] += f" acc {100 * row.train_acc:5.1f}%"
    if row.val_loss is not None:
        parts.append(f"val loss {row.val_loss:.4g}")
        if row.val_acc is not None:
            parts[-1] += f" acc {100 * row.val_acc:5.1f}%"
    parts.append(f"({row.seconds:.2f} s)" if row.seconds >= 1 else
                 f"({1e3 * row.seconds:.1f} ms)")
    return "  ".join(parts)


def _clone(value):
    """A copy of one params or state entry: NumPy arrays, Numba CUDA device arrays (copied
    on the device) and plain values (the step count, the noise seed)."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if hasattr(value, "copy_to_device") and hasattr(value, "shape"):
        from numba import cuda

        twin = cuda.device_array_like(value)
        twin.copy_to_device(value)
        return twin
    if hasattr(value, "copy"):
        return value.copy()
    return value


def snapshot(model, params: dict) -> tuple[dict, dict]:
    """Copies of ``params`` and of the optimizer state ``model.state``."""
    return ({k: _clone(v) for k, v in params.items()},
            {k: _clone(v) for k, v in model.state.items()})


def restore(model, params: dict, saved: tuple[dict, dict]) -> None:
    """Put a :func:`snapshot` back: the entries of ``params`` and ``model.state`` (the same
    dict objects) are replaced by the copies."""
    saved_params, saved_state = saved
    params.clear()
    params.update(saved_params)
    model.state.clear()
    model.state.update(saved_state)


def fit(model, params: dict, train: dict, val: dict | None, task: Task, cfg: Config,
        history: History, on_epoch=None, stop=None) -> History:
    """Train for ``cfg.epochs`` epochs after those already in ``history``.

    Each epoch appends a :class:`Row` to ``history``: the mean minibatch loss is shown in
    the bar, the row holds the loss and accuracy of the params at the end of the epoch,
    evaluated on the training and the validation set. ``on_epoch(history)`` runs after each
    epoch (the command writes ``history.csv`` there, so an interrupted run keeps it).

    ``stop()`` (e.g. a :class:`~gradc.training.interrupt.DeferredInterrupt`) is polled
    before each epoch and after every compiled call.

    Raises:
        Interrupted: ``stop()`` became true, or a KeyboardInterrupt came (also one that
            Numba turned into a SystemError). The epoch that was running is rolled back:
            params and ``model.state`` are those after the last epoch in ``history``.
    """
    stop = stop or _never
    first = history.last_epoch + 1
    last = history.last_epoch + cfg.epochs
    log = logged_epochs(cfg, first, last)
    n = count(train)
    bar = progress_bar(n * cfg.epochs, cfg.progress)
    saved = None                # (epoch, snapshot at its start)
    try:
        for epoch in range(first, last + 1):
            try:
                if stop():
                    raise Interrupted(epoch, partial=False)
                saved = (epoch, snapshot(model, params))
                bar.set_description(f"epoch {epoch}/{last} [{training_tier(model, cfg)}]",
                                    refresh=False)
                t0 = time.perf_counter()
                run_epoch(model, params, train, cfg, epoch, bar, stop)
                seconds = time.perf_counter() - t0
                train_loss, train_acc = evaluate(model, params, train, task, stop, epoch)
                val_loss, val_acc = evaluate(model, params, val, task, stop, epoch) \
                    if val else (None, None)
                row = Row(epoch, train_loss, val_loss, train_acc, val_acc, seconds)
                history.append(row)     # from here on the epoch is done
                if on_epoch is not None:
                    on_epoch(history)
                if epoch in log and not cfg.quiet:
                    write_line(f"{describe(row, last)}  [{training_tier(model, cfg)}]")
            except BaseException as e:
                if not (isinstance(e, Interrupted) or caused_by_interrupt(e)):
                    raise
                rolled_back = history.last_epoch < epoch and saved is not None \
                    and saved[0] == epoch
                if rolled_back:
                    restore(model, params, saved[1])
                if isinstance(e, Interrupted) and e.epoch == history.last_epoch + 1:
                    raise
                if not isinstance(e, Interrupted):
                    forget_unhandled_interrupt()
                raise Interrupted(history.last_epoch + 1, partial=rolled_back) from e
    finally:
        bar.close()
    return history
