"""The driver's view of the holders: placing partitions, calling every holder at once,
and carrying on when a worker dies.

:class:`Fleet` starts one :class:`~gradc.dask.holder.Holder` actor per worker that gets
partitions (a dask part goes to the worker that holds its block, the rest round-robin),
lays the rows out in the global order, compiles the kernels on one worker and then loads
them on the others (from Numba's cache when the cache folder is shared), and checks
that the loss is a mean over samples (:meth:`Holder.probe`).

:meth:`Fleet.each` calls one method on every holder concurrently and waits for each
answer at most ``timeout`` seconds. A holder whose worker is gone (the connection
fails, or Dask reports the actor's worker lost) is dropped and its partitions are loaded
again on the surviving workers that hold data (new holders, laid out and warmed the same
way); then the call is repeated on those, with the same arguments, so a step is never
half-done: the driver has not updated anything yet. When no worker is left, or a worker
does not answer in time, :class:`LostWorkers` is raised; nothing waits forever.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from gradc.dask.cluster import alive_workers
from gradc.dask.holder import Holder
from gradc.dask.sources import Part
from gradc.errors import GradcError


class LostWorkers(GradcError):
    """The cluster cannot go on: no worker is left to hold the data, or one did not
    answer within the timeout."""


@dataclass
class Slot:
    """One live holder: its future (keeps the actor alive), proxy, worker and parts."""

    future: object
    actor: object
    address: str
    parts: list[Part] = field(default_factory=list)


def _is_lost(error: BaseException) -> bool:
    """True for the errors Dask gives when the worker of an actor is gone."""
    if isinstance(error, TimeoutError):
        return False
    return isinstance(error, OSError) or (isinstance(error, RuntimeError)
                                          and "lost" in str(error))


class Fleet:
    """The holders of one training run (see the module docstring); ``task`` (a
    :class:`gradc.training.data.Task`, default the model's own) says which input holds
    the labels and which output the scores."""

    def __init__(self, client, model, parts: list[Part], timeout: float = 60.0,
                 start_timeout: float = 600.0, task=None):
        self.client, self.model, self.parts, self.task = client, model, parts, task
        self.timeout, self.start_timeout = timeout, start_timeout
        self.slots: list[Slot] = []
        self.dead: set[str] = set()
        self.events: list[str] = []     # one line per recovery, for the user
        self._layout: tuple | None = None
        self._params: dict | None = None

    # -- starting ---------------------------------------------------------------------
    def start(self, params: dict, val_split: float, seed: int) -> tuple[int, int]:
        """Start the holders, lay out the rows, warm the kernels; return the numbers of
        training and validation samples.

        Raises:
            GradcError: a partition does not fit the model (named), partitions disagree
                on a shape, the loss is not a mean over samples, or workers time out.
        """
        workers = alive_workers(self.client)
        if not workers:
            raise LostWorkers("the cluster has no worker")
        plan: dict[str, list[Part]] = {}
        for part in self.parts:
            if part.where not in workers:
                part = Part(part.index, part.label, part.source,
                            min(workers, key=lambda w: len(plan.get(w, ()))))
            plan.setdefault(part.where, []).append(part)
        self.slots = self._spawn(plan)
        sizes = {}
        for _, found in self.each("sizes"):
            sizes.update(found)
        _check_trailing(self.parts, sizes)
        offsets, total = {}, 0
        for part in sorted(self.parts, key=lambda p: p.index):
            offsets[part.index] = total
            total += sizes[part.index][0]
        self._layout = (offsets, total, val_split, seed)
        self._params = params
        counts = [r for _, r in self.each("layout", *self._layout)]
        # One worker compiles first; the others then load its kernels from Numba's cache
        # when they share the cache folder (a LocalCluster, a shared home directory).
        self._call(self.slots[:1], "warm", (params,), self.start_timeout)
        self._call(self.slots[1:], "warm", (params,), self.start_timeout)
        self._probe(params)
        return sum(c[0] for c in counts), sum(c[1] for c in counts)

    def _spawn(self, plan: dict[str, list[Part]]) -> list[Slot]:
        """One holder per worker of ``plan`` (address -> parts), created concurrently."""
        futures = [(addr, parts, self.client.submit(
            Holder, self.model, [(p.index, p.label, p.source) for p in parts], self.task,
            actor=True, workers=[addr], allow_other_workers=False, pure=False,
            key=f"gradc-holder-{uuid.uuid4().hex}")) for addr, parts in plan.items()]
        slots = []
        try:
            for addr, parts, fut in futures:
                try:
                    slots.append(Slot(fut, fut.result(timeout=self.start_timeout), addr,
                                      parts))
                except TimeoutError:
                    raise LostWorkers(f"worker {addr} did not load its partitions within "
                                      f"{self.start_timeout:g} s") from None
        except BaseException:
            self.client.cancel([f for _, _, f in futures])
            raise
        return slots

    def _probe(self, params: dict) -> None:
        """Refuse a loss whose minibatch gradient is not the size-weighted mean of the
        gradients of its slices (a sum over samples, or statistics of the batch)."""
        worst = max((r for _, r in self.each("probe", params) if r is not None), default=None)
        tol = 1e-3 if self.model.signature.get("float") == "f32" else 1e-8
        if worst is not None and worst > tol:
            raise GradcError(
                f"model '{self.model.name}': the gradient of a minibatch is not the "
                f"size-weighted mean of the gradients of its slices (relative difference "
                f"{worst:.2g}): the loss is not a mean over the samples, so data-parallel "
                f"training would change the training; use a mean (e.g. mean(...) or "
                f"cross_entropy), or train without --cluster")

    # -- calling ----------------------------------------------------------------------
    def each(self, method: str, *args, timeout: float | None = None) -> list[tuple]:
        """``[(slot, result)]`` of ``method(*args)`` on every holder (see the module
        docstring for lost workers)."""
        return self._call(list(self.slots), method, args, timeout or self.timeout)

    def _call(self, slots: list[Slot], method: str, args: tuple, timeout: float) -> list:
        pending, lost = [], []
        for slot in slots:
            try:
                pending.append((slot, getattr(slot.actor, method)(*args)))
            except RuntimeError as e:   # Dask knows already that the worker is gone
                if not _is_lost(e):
                    raise
                lost.append(slot)
        results = []
        for slot, fut in pending:
            try:
                results.append((slot, fut.result(timeout=timeout)))
            except TimeoutError:
                raise LostWorkers(f"worker {slot.address} did not answer within {timeout:g} "
                                  f"s ({method}); stopping") from None
            except Exception as e:
                if not _is_lost(e):
                    raise
                lost.append(slot)
        if lost:
            results += self._call(self._recover(lost), method, args, timeout)
        return results

    def _recover(self, lost: list[Slot]) -> list[Slot]:
        """Drop the lost holders and load their partitions on the survivors; return the
        new holders, laid out and warmed."""
        self.dead.update(s.address for s in lost)
        self.slots = [s for s in self.slots if s not in lost]
        self.client.cancel([s.future for s in lost])
        alive = set(alive_workers(self.client)) - self.dead
        keep = [s.address for s in self.slots if s.address in alive] or sorted(alive)
        if not keep:
            raise LostWorkers(f"every worker is gone (lost {', '.join(sorted(self.dead))})")
        load = {a: sum(len(s.parts) for s in self.slots if s.address == a) for a in keep}
        plan: dict[str, list[Part]] = {}
        for part in sorted((p for s in lost for p in s.parts), key=lambda p: p.index):
            target = min(keep, key=lambda a: load[a])
            load[target] += 1
            plan.setdefault(target, []).append(part)
        new = self._spawn(plan)
        for slot in new:
            self.events.append(f"worker {', '.join(s.address for s in lost)} lost: "
                               f"reloaded {', '.join(p.label for p in slot.parts)} on "
                               f"{slot.address}")
        self.slots += new
        if self._layout is not None:
            self._call(new, "layout", self._layout, self.timeout)
            self._call(new, "warm", (self._params,), self.start_timeout)
        return new

    def close(self) -> None:
        """Release every holder (the actors end with their futures)."""
        self.client.cancel([s.future for s in self.slots])
        self.slots = []


def _check_trailing(parts: list[Part], sizes: dict) -> None:
    """Every partition must give each input the same shape after the batch axis."""
    first = min(parts, key=lambda p: p.index)
    want = sizes[first.index][1]
    for part in parts:
        got = sizes[part.index][1]
        for name, shape in got.items():
            if shape != want[name]:
                raise GradcError(f"{part.label}: error: array '{name}' has rows of shape "
                                 f"{list(shape)}, {first.label} has {list(want[name])}")
