"""Tiered start: entries run on the NumPy tier while Numba compiles them in the background.

A :class:`Tiers` serves, per public entry, the function of one of two generated modules
of the same model: the numpy target's (vectorised NumPy, ready at once) or the CPU
target's (Numba kernels). Entries whose kernels are already in Numba's cache (their
``ready/`` markers, :func:`gradc.runtime.cache.ready_entries`) are loaded by a preload
thread (importing Numba and loading a kernel from its cache take about 0.5 s), started
once the first call has returned so that it does not slow that call, and switch to Numba
as soon as each is loaded; until then they run on NumPy.
Any other entry runs on NumPy, and its first call starts a background compile:
``python -m gradc.runtime.warm`` (:mod:`gradc.runtime.warm`) in its own process, which
compiles the entry's kernels into Numba's on-disk cache. At most
:func:`workers` such processes run at once, and two that share a kernel never run at the
same time (Numba's cache index of one function is not safe against concurrent writers of
different signatures; the compiles also lock each kernel, against other processes). Each
call looks whether its entry's compile has finished; if so, the CPU module is imported
(its dispatchers load the kernels from the disk cache) and the entry switches to it,
between calls, never within one. Both modules keep their state in the caller's ``state``
dict with the same layout, so a switch changes nothing but speed and summation order
(results agree to the dtype's rounding).

A compile that fails (non-zero exit: killed, out of memory, a Numba error) leaves its
entries on NumPy for good, with a one-line :class:`TierWarning` naming the entries and
the last line the process wrote: the numbers stay right, only slower.

Compiles still running or queued when the process exits normally are left to finish
(queued ones start at exit; at low priority, in their own session), so that the next run
finds the kernels cached, for at most :data:`gradc.runtime.warm.ORPHAN_LIMIT_S` seconds
after the exit. Ctrl-C ends them at once: a process that ends on an uncaught
KeyboardInterrupt kills them at exit, and the command line calls :func:`stop_all` when it
exits with 130 (it catches the KeyboardInterrupt). :meth:`Tiers.close` and
:func:`stop_all` cancel them at once; a cancelled compile's process group is killed
(SIGKILL), so nothing it started outlives it.
``GRADC_TIERED=0`` in the environment turns tiered start off by default (``compile(...,
wait=None)``); the test suite sets it.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from types import ModuleType

from gradc.runtime.cache import ready_entries
from gradc.runtime.loader import load_module, module_name
from gradc.runtime.warm import NICE, calls, compile_entry, kernels

_QUEUED: set = set()   # background compiles of this process waiting for a worker
_RUNNING: set = set()  # and those running


class TierWarning(UserWarning):
    """A background compile failed: its entries stay on the NumPy tier."""


def enabled_by_default() -> bool:
    """Whether ``compile(..., wait=None)`` starts tiered (unless ``GRADC_TIERED=0``)."""
    return os.environ.get("GRADC_TIERED", "1").strip() not in ("0", "false", "no", "off")


def workers() -> int:
    """How many background compiles may run at once: the CPUs this process may use but
    one, which the process itself keeps computing on (at least one). Measured on 2 cores,
    ``gradc train`` of a digits MLP, 200 epochs: 19 s with two compiles beside the
    training, 14 s with one (train_epoch's kernels, compiled first, arrive sooner)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, cpus - 1)


class _Job:
    """One background compile: its entries, the module it compiles, its process (once
    started) and its stderr. Queued and running jobs are registered in this module, so
    that :func:`stop_all` and the exit hook reach them even when their model is gone."""

    def __init__(self, entries: tuple[str, ...], path: Path, name: str):
        self.entries, self.path, self.name = entries, path, name
        self.proc, self.log, self.cancelled = None, None, False
        _QUEUED.add(self)

    def start(self) -> None:
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gradc.runtime.warm", str(self.path), self.name,
             str(os.getpid()), *self.entries],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log,
            start_new_session=True)
        try:  # from its first instruction, not once it has imported gradc
            os.setpriority(os.PRIO_PROCESS, self.proc.pid, os.nice(0) + NICE)
        except OSError:
            pass  # it ended already, or the system refuses: it runs at our priority
        _QUEUED.discard(self)
        _RUNNING.add(self)

    def finished(self) -> bool:
        """Whether the process has ended (then it is no longer running)."""
        if self.proc.poll() is None:
            return False
        _RUNNING.discard(self)
        return True

    def kill(self) -> None:
        """Cancel the job (not a failure): end its process group now (the process leads
        its own session), if it has one, and wait for it (at most 30 s)."""
        self.cancelled = True
        _QUEUED.discard(self)
        if self.proc is not None:
            if self.proc.poll() is None:  # not reaped: its group id is still its own
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            self.proc.wait(timeout=30)
            self.log.close()
            _RUNNING.discard(self)

    def last_line(self) -> str:
        self.log.seek(0)
        lines = self.log.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else "no message"


class Tiers:
    """Which module serves each entry of one model (see the module docstring).

    Args:
        cpu_path: the CPU module's file (in the cache; the background compiles import it).
        cpu_key: its cache key.
        numpy_module: a callable returning the numpy target's module (called once, on
            the first call of an entry that is not ready).
        preload: whether entries already compiled run on NumPy while a thread loads
            their kernels (False: the first call of each waits for them; for when the
            numpy module is not cached and would need the compiler).
    """

    def __init__(self, cpu_path: Path, cpu_key: str, numpy_module, preload: bool = True):
        self.cpu_path, self.cpu_key, self.cpu_name = cpu_path, cpu_key, module_name(cpu_key)
        self._numpy_module, self._numpy, self._cpu = numpy_module, None, None
        self._lock = threading.RLock()          # the serving table and the jobs
        self._numpy_lock, self._cpu_lock = threading.Lock(), threading.Lock()  # imports
        self._serving: dict[str, object] = {}   # entry -> function, once final
        self._jobs: dict[str, _Job] = {}        # entry -> its job (queued or running)
        self._queue: list[_Job] = []
        self._running: list[_Job] = []
        ready = ready_entries(cpu_path)
        self._loading = ready if preload else set()  # entries the preload will switch
        self._preload, self._served = None, False
        for entry in ready - self._loading:
            self._serving[entry] = getattr(self._load_cpu(), entry, None)

    @property
    def module(self) -> ModuleType:
        """The module serving calls now: the CPU one once loaded, else the numpy one."""
        return self._cpu or self._numpy_tier()

    def tier(self, entry: str) -> str:
        """'numba' when ``entry``'s next call runs compiled kernels, else 'numpy' (asking
        starts no compile)."""
        with self._lock:
            self._start_preload()
            self._poll()
            found = self._serving.get(entry)
        return "numba" if found is not None and self._cpu is not None and \
            found is getattr(self._cpu, entry, None) else "numpy"

    def pending(self, entry: str) -> str | None:
        """What will switch ``entry`` to Numba: 'loading' (the preload of a warm cache),
        'compiling' (its background compile, queued or running), or None."""
        with self._lock:
            self._start_preload()
            self._poll()
            if entry in self._serving:
                return None
            return "loading" if entry in self._loading else \
                "compiling" if entry in self._jobs else None

    def function(self, entry: str):
        """The function to call for ``entry`` now (None when the model has no such
        entry); starts its background compile on the first call."""
        found = self._serving.get(entry)
        if found is not None:
            return found
        with self._lock:
            if self._served:
                self._start_preload()
            self._served = True
            self._poll()
            found = self._serving.get(entry)
            if found is not None:
                return found
            found = getattr(self._numpy_tier(), entry, None)
            if found is not None and entry not in self._jobs and entry not in self._loading:
                if self._queue:  # one process compiles the waiting entries in turn
                    job = self._queue[-1]
                    job.entries += (entry,)
                else:
                    job = _Job((entry,), self.cpu_path, self.cpu_name)
                    self._queue.append(job)
                self._jobs[entry] = job
                self._launch()
            return found

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every started compile has finished (and switch its entries);
        return False when ``timeout`` seconds passed first."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._start_preload()
        if self._preload is not None:
            self._preload.join(timeout)
        while True:
            with self._lock:
                self._poll()
                if not self._queue and not self._running and not self._loading:
                    return True
            if end is not None and time.monotonic() >= end:
                return False
            time.sleep(0.05)

    def close(self) -> None:
        """End the background compiles now (their entries stay on NumPy until a later
        call starts them again)."""
        with self._lock:
            for job in self._running + self._queue:
                job.kill()
            self._poll()

    def _numpy_tier(self) -> ModuleType:
        with self._numpy_lock:
            if self._numpy is None:
                self._numpy = self._numpy_module()
            return self._numpy

    def _load_cpu(self) -> ModuleType:
        with self._cpu_lock:  # not self._lock: calls go on while Numba is imported
            if self._cpu is None:
                self._cpu = load_module(self.cpu_path, self.cpu_name)
            return self._cpu

    def _start_preload(self) -> None:
        """Start the preload thread of a warm cache once: at the second call (or the first
        question about tiers or wait), not at the first. Its import of Numba holds the GIL
        for about 0.3 s, and run beside the first call it delayed the first result more
        than it sped the later ones (digits, warm: 0.53 s to the first epoch, against
        about 0.35 s without it). Called with ``self._lock`` held."""
        if self._loading and self._preload is None:
            self._preload = threading.Thread(target=self._load_ready, name="gradc-preload")
            self._preload.start()

    def _load_ready(self) -> None:
        """The preload thread of a warm cache: import the CPU module (and so Numba) and
        load the kernels of each entry with a ``ready/`` marker from Numba's cache, by the
        background compile's dummy call (:func:`gradc.runtime.warm.compile_entry`); switch
        each entry when its kernels are loaded. Calls run on the NumPy tier meanwhile, so
        a warm process gets its first result without waiting for Numba's import and cache
        load (about 0.5 s). A failure leaves the entries on NumPy with a TierWarning."""
        failed, error = [], None
        for entry in sorted(self._loading):
            try:
                module = self._load_cpu()
                for fn in calls(entry) if hasattr(module, entry) else ():
                    compile_entry(module, fn)
                found = getattr(module, entry, None)
            except Exception as e:  # noqa: BLE001 - any failure keeps the NumPy tier
                failed.append(entry)
                error = error or f"{type(e).__name__}: {e}"
                found = getattr(self._numpy_tier(), entry, None)
            with self._lock:
                self._serving[entry] = found
                self._loading.discard(entry)
        if failed:
            warnings.warn(f"gradc: loading the compiled kernels of {', '.join(failed)} "
                          f"failed ({error}); they stay on the NumPy tier", TierWarning,
                          stacklevel=2)

    def _poll(self) -> None:
        """Switch the entries of finished compiles, and those a running compile of several
        entries has marked ready (a single entry switches when its process exits, just
        after its marker: no folder listing per call for it); start queued ones."""
        merged = [j for j in self._running if len(j.entries) > 1 and not j.cancelled]
        marked = ready_entries(self.cpu_path) if merged else set()  # (a folder listing)
        for entry in [e for j in merged for e in j.entries
                      if e in marked and e not in self._serving]:
            self._serving[entry] = getattr(self._load_cpu(), entry, None)
        for job in [j for j in self._running if j.finished()]:
            self._running.remove(job)
            if job.cancelled:  # by close() or stop_all(): its entries may start again
                for entry in job.entries:
                    del self._jobs[entry]
                continue
            # entries switched when they were marked ready stay switched
            left = [e for e in job.entries if e not in self._serving]
            if job.proc.returncode == 0:
                module = self._load_cpu()
            else:
                module = self._numpy_tier()
                warnings.warn(f"gradc: the background compile of {', '.join(left)} "
                              f"failed ({job.last_line()}); it stays on the NumPy tier",
                              TierWarning, stacklevel=4)
            job.log.close()
            for entry in left:
                self._serving[entry] = getattr(module, entry, None)
        self._launch()

    def _launch(self) -> None:
        """Start queued compiles while there are free workers, never two at once that
        share a kernel; forget cancelled ones (their entries may start again)."""
        busy = set().union(*(kernels(e) for j in self._running for e in j.entries))
        for job in list(self._queue):
            if job.cancelled:
                self._queue.remove(job)
                for entry in job.entries:
                    del self._jobs[entry]
                continue
            needs = set().union(*(kernels(e) for e in job.entries))
            if len(self._running) >= workers() or needs & busy:
                continue
            self._queue.remove(job)
            try:
                job.start()
            except OSError as e:
                warnings.warn(f"gradc: cannot start a background compile ({e}); "
                              f"{', '.join(job.entries)} stays on the NumPy tier",
                              TierWarning, stacklevel=4)
                for entry in job.entries:
                    self._serving[entry] = getattr(self._numpy_tier(), entry, None)
                continue
            self._running.append(job)
            busy |= needs


def stop_all() -> None:
    """Cancel every background compile of this process, queued or running, also those of
    models that are gone (tests call it). Their entries stay on NumPy until they are
    called again."""
    for job in list(_QUEUED) + list(_RUNNING):
        job.kill()


def _interrupted() -> bool:
    """Whether the process is ending on an uncaught KeyboardInterrupt: the interpreter
    printed it (setting ``sys.last_value``, and ``sys.last_exc`` from Python 3.12) before
    the exit hooks run."""
    last = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    return isinstance(last, KeyboardInterrupt)


@atexit.register
def _at_exit() -> None:
    """At exit, after a Ctrl-C (an uncaught KeyboardInterrupt), end every compile. Else
    start the compiles still waiting for a worker (the process no longer needs its CPU):
    with those already running they finish filling Numba's cache for the next run, within
    :data:`gradc.runtime.warm.ORPHAN_LIMIT_S` seconds of the exit. Two that share a kernel
    take turns (:func:`gradc.runtime.warm.main` locks each kernel)."""
    if _interrupted():
        stop_all()
        return
    for job in list(_QUEUED):
        try:
            job.start()
        except OSError:
            pass
