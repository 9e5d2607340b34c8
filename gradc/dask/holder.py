"""The worker side of data-parallel training: one :class:`Holder` actor per worker.

A holder is a Dask Actor (``client.submit(Holder, ..., actor=True, workers=[address])``):
a Python object that lives in a worker process for the whole run and is called directly
from the driver (one round trip per call, no task graph, no scheduler in the way). It
holds

* a replica of the compiled model: the pickled :class:`gradc.Model` travels as the
  generated module's text and is rebuilt without running the compiler (Numba loads the
  kernels from its cache when the workers share the driver's cache folder);
* its partitions of the data, loaded and checked on the worker (:func:`sources.load`),
  and after :meth:`Holder.layout` its training rows (with their global training ranks)
  and its validation rows.

Every step the driver sends the params and the global minibatch (training ranks); the
holder runs ``loss_and_grad`` on the rows of that minibatch it holds and returns
``(rows, loss, gradients, seconds)``. Exceptions (a bad partition, say) reach the driver
as they were raised.
"""

from __future__ import annotations

import time

import numpy as np

from gradc.dask.sources import load
from gradc.errors import GradcError
from gradc.training.data import analyse, batches, count, split, take
from gradc.training.loop import evaluate

PROBE_ROWS = 4   # rows used by probe(): two slices of two


class Holder:
    """One worker's partitions and model replica (see the module docstring).

    Args:
        model: the :class:`gradc.Model` (arrives pickled).
        parts: ``[(index, label, source)]`` of the partitions to hold (see
            :class:`gradc.dask.sources.Part`; Dask resolves the futures of dask parts).
        task: the :class:`gradc.training.data.Task` (labels and scores) of the run;
            default the model's own (:func:`gradc.training.data.analyse`).

    A partition that cannot be read or does not fit the model is a :class:`GradcError`
    raised by :meth:`sizes`, the first call, rather than by the constructor: an actor
    method's exception reaches the driver without Dask logging a "Compute Failed"
    traceback on the worker.
    """

    def __init__(self, model, parts: list, task=None):
        self.model = model
        self.task = analyse(model.signature) if task is None else task
        self.error: GradcError | None = None
        try:
            self.parts = {index: load(label, source, model.signature, self.task)
                          for index, label, source in parts}
        except GradcError as e:
            self.parts, self.error = {}, e
        self.train: dict = {}
        self.val: dict | None = None
        self.ranks = np.zeros(0, np.int64)

    def sizes(self) -> dict:
        """Partition index -> (rows, {input: shape without the batch axis}); raises the
        GradcError of a partition that failed to load."""
        if self.error is not None:
            raise self.error
        return {i: (count(d), {k: tuple(a.shape[1:]) for k, a in d.items()})
                for i, d in self.parts.items()}

    def layout(self, offsets: dict, total: int, val_split: float, seed: int) -> tuple:
        """Place the held rows in the global order: partition ``i`` holds global rows
        ``offsets[i] ..``; the validation rows are those :func:`gradc.training.data.split`
        draws from ``total`` samples with ``seed``, the rest are training rows, ranked in
        global order. Returns (training rows, validation rows) held here."""
        train_idx, _ = split({"i": np.arange(total)}, val_split, seed)
        train_rows = train_idx["i"]
        order = sorted(self.parts)
        rows = np.concatenate([offsets[i] + np.arange(count(self.parts[i])) for i in order])
        data = {k: np.concatenate([self.parts[i][k] for i in order]) for k in self.parts[order[0]]}
        is_train = np.isin(rows, train_rows, assume_unique=True)
        self.ranks = np.searchsorted(train_rows, rows[is_train])
        self.train = take(data, np.flatnonzero(is_train))
        self.val = None if is_train.all() else take(data, np.flatnonzero(~is_train))
        return len(self.ranks), (count(self.val) if self.val else 0)

    def warm(self, params: dict) -> float:
        """Compile (or load from the cache) the kernels the holder calls; the seconds."""
        t0 = time.perf_counter()
        data = self.train or self.val
        if data:
            rows = next(batches(data, 2))
            self.model.loss_and_grad(params, **rows)
            evaluate(self.model, params, rows, self.task)
        return time.perf_counter() - t0

    def grad(self, params: dict, batch: np.ndarray) -> tuple:
        """``(rows, loss, gradients, seconds)`` over the rows of the global minibatch
        ``batch`` (training ranks) held here, in the minibatch's order; ``(0, 0.0, None,
        seconds)`` when none is."""
        t0 = time.perf_counter()
        if not len(self.ranks):
            return 0, 0.0, None, time.perf_counter() - t0
        pos = np.minimum(np.searchsorted(self.ranks, batch), len(self.ranks) - 1)
        local = pos[self.ranks[pos] == batch]
        if not len(local):
            return 0, 0.0, None, time.perf_counter() - t0
        loss, grads = self.model.loss_and_grad(params, **take(self.train, local))
        return len(local), loss, grads, time.perf_counter() - t0

    def evaluate(self, params: dict) -> tuple:
        """For the training and the validation rows held here: ``(loss × rows, rows,
        accuracy × rows or None)``, or None for a set with no rows here."""
        out = []
        for data in (self.train, self.val):
            if not data:
                out.append(None)
                continue
            loss, acc = evaluate(self.model, params, data, self.task)
            n = count(data)
            out.append((loss * n, n, None if acc is None else acc * n))
        return tuple(out)

    def probe(self, params: dict) -> float | None:
        """How far the gradient of the first :data:`PROBE_ROWS` training rows is from the
        size-weighted mean of the gradients of its two halves (largest difference over
        the largest gradient value); None with fewer than 2 rows here. Zero up to
        rounding exactly when the loss is a mean over the samples."""
        n = min(PROBE_ROWS, len(self.ranks))
        if n < 2:
            return None
        rows = {k: a[:n] for k, a in self.train.items()}
        half = n // 2
        _, full = self.model.loss_and_grad(params, **rows)
        _, ga = self.model.loss_and_grad(params, **{k: a[:half] for k, a in rows.items()})
        _, gb = self.model.loss_and_grad(params, **{k: a[half:] for k, a in rows.items()})
        scale = max(float(np.abs(g).max()) for g in full.values()) or 1.0
        return max(float(np.abs(full[k] - (half * ga[k] + (n - half) * gb[k]) / n).max())
                   for k in full) / scale
