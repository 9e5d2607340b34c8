"""The thread budget: how many threads the BLAS products (and, in a ``parallel=True`` module,
Numba's parallel loops) of one kernel call may use. Copied verbatim into every generated
module (with :mod:`gradc.codegen.runtime`), so a standalone module decides exactly as gradc
does; gradc itself reads the same functions (``gradc sweep`` and the Dask workers split
:func:`_usable_cores` between their processes). docs/performance.md describes the rules
and the measurements behind them.

The rules, in one function (:func:`_thread_budget`):
- the cores this process may use: ``GRADC_NUM_THREADS`` when set (an int >= 1), else the
  CPUs of its affinity mask (``os.sched_getaffinity``) capped by its cgroup's CPU quota
  (``cpu.max``, v2, or ``cpu.cfs_quota_us``/``cpu.cfs_period_us``, v1, rounded up);
- a call whose BLAS products are ``macs`` multiply-adds each (their mean weighted by
  their work, :func:`gradc.passes.kernels.blas_work`) gets one thread per
  :data:`_MACS_PER_THREAD` of them, at least 1, at most the cores: small products run on
  one thread, and a core that another process keeps busy cannot stall them;
- where that allows more than one thread, the calls are timed (:class:`_Threads`): one
  thread and the budget's count take turns for a few calls, the faster is kept, and the
  race is run again every :data:`_PROBE_S` seconds: a machine that gets busy (another
  process on a core) goes back to one thread, a quiet one fans out. No race is run (one
  thread) while the machine's load leaves no idle core (:func:`_idle_cores`).

Contracts:
- Threads change results only by rounding: OpenBLAS's GEMM splits the output, not the sum,
  so products are the same bit for bit on any count (tested to 0 ulp on 1 and 2 threads).
- The count is set through threadpoolctl when it is installed (any BLAS it knows), else,
  on Linux, through OpenBLAS's own ``*openblas_set_num_threads*`` found by ctypes in the
  libraries this process has loaded; elsewhere without threadpoolctl nothing is set (the
  BLAS keeps its own default) and the module still runs.
- They may use only ``os``, ``math``, ``ctypes``, ``importlib``, ``time`` and the module's
  constant
  ``_BLAS_MODULES`` (the modules whose import loads the BLAS the kernels call).
"""
# ruff: noqa: F821  (_BLAS_MODULES and _LOOP_THREADS are the generated module's)

import ctypes
import importlib
import math
import os
import time

#: multiply-adds per BLAS product that may pay for one more thread, where the race decides
#: (on an idle 2-core AMD EPYC, two threads ran float32 products of 0.5 to 26 million
#: multiply-adds 1.3 to 1.8 times faster than one; see docs/performance.md)
_MACS_PER_THREAD = 1 << 18
#: OpenBLAS's thread setter under the names its builds export (NumPy's and SciPy's wheels
#: prefix it with scipy_, 64-bit integer builds suffix it with 64_)
_OPENBLAS_SETTERS = ("openblas_set_num_threads", "openblas_set_num_threads64_",
                     "scipy_openblas_set_num_threads", "scipy_openblas_set_num_threads64_")
#: calls of each count in a race between one thread and the budget's count
_PROBE_CALLS = 3
#: seconds a race's winner is kept before the next race
_PROBE_S = 10.0
#: how much faster than one thread (median time, as a fraction) more threads must be to
#: win a race
_FASTER = 0.9
#: how much slower than in its race the calls of a kept count above one may run before
#: the plan goes to one thread
_SLOWER = 1.5
_CGROUP = "/sys/fs/cgroup"
#: the count the BLAS libraries were last set to, and their setters (None: not found yet)
_BLAS_THREADS = {"threads": None, "setters": None}


def _cgroup_cores(root=_CGROUP):
    """The cores the cgroup CPU quota under ``root`` allows (quota / period, rounded up),
    or None without a quota (or without cgroup files)."""
    try:
        with open(os.path.join(root, "cpu.max"), encoding="ascii") as f:
            quota, period = f.read().split()[:2]
    except (OSError, ValueError):
        try:
            with open(os.path.join(root, "cpu", "cpu.cfs_quota_us"), encoding="ascii") as f:
                quota = f.read().strip()
            with open(os.path.join(root, "cpu", "cpu.cfs_period_us"), encoding="ascii") as f:
                period = f.read().strip()
        except OSError:
            return None
    if quota in ("max", "-1") or not quota.lstrip("-").isdigit() or not period.isdigit() \
            or int(quota) <= 0 or int(period) <= 0:
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def _usable_cores(environ=os.environ, affinity=None, root=_CGROUP):
    """The cores this process may use: ``GRADC_NUM_THREADS`` when set, else its affinity
    mask capped by the cgroup quota. ``affinity`` (a set of CPUs) and ``root`` stand in for
    the process's own in tests. ValueError naming GRADC_NUM_THREADS for a value that is
    not an int >= 1."""
    text = environ.get("GRADC_NUM_THREADS", "").strip()
    if text:
        if not text.isdigit() or int(text) < 1:
            raise ValueError(f"GRADC_NUM_THREADS: expected a whole number of threads >= 1, "
                             f"got {text!r}")
        return int(text)
    if affinity is None:
        affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else \
            range(os.cpu_count() or 1)
    quota = _cgroup_cores(root)
    return max(1, min(len(affinity), quota or len(affinity)))


def _thread_budget(macs, cores):
    """Threads for a call whose BLAS products are ``macs`` multiply-adds each, on ``cores``
    usable cores: one per :data:`_MACS_PER_THREAD`, at least 1, at most ``cores``."""
    return max(1, min(cores, int(macs) // _MACS_PER_THREAD))


def _idle_cores(own, load=None, cpus=None):
    """The cores other processes leave idle: the machine's CPUs (``cpus``) less its
    1-minute load average (``load``; ``os.getloadavg``), with the ``own`` threads this
    plan runs now counted as idle, rounded, at least 1; the CPUs where the load is
    unknown."""
    cpus = cpus or os.cpu_count() or 1
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            return cpus
    return max(1, min(cpus, round(cpus - load + own)))


def _blas_setters():
    """Functions ``set(n)`` for every BLAS library loaded here whose thread count can be
    set: threadpoolctl's controllers when it is installed, else (Linux) OpenBLAS's own
    setter, by ctypes, in each loaded OpenBLAS library; [] when neither is available. The
    modules of ``_BLAS_MODULES`` are imported first (the BLAS Numba's ``np.dot`` calls is
    SciPy's, loaded on its first call otherwise)."""
    for name in _BLAS_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    try:
        threadpoolctl = importlib.import_module("threadpoolctl")
    except ImportError:
        threadpoolctl = None
    if threadpoolctl is not None:
        controller = threadpoolctl.ThreadpoolController().select(user_api="blas")
        return [lib.set_num_threads for lib in controller.lib_controllers]
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            paths = {line.split(None, 5)[5].strip() for line in f
                     if line.count(" ") >= 5 and "openblas" in line.rsplit("/", 1)[-1]}
    except OSError:
        return []
    setters = []
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol in _OPENBLAS_SETTERS:
            fn = getattr(lib, symbol, None)
            if fn is not None:
                fn.argtypes, fn.restype = [ctypes.c_int], None
                setters.append(fn)
                break
    return setters


class _Threads:
    """The threads of one plan (a program's calls for given dims, in one calling thread).

    ``most``: the budget's count (:func:`_thread_budget`); ``cores``: the usable cores
    (Numba's parallel loops). With ``most`` = 1 every call runs on one thread. Otherwise a
    race: :data:`_PROBE_CALLS` calls on ``most`` threads and as many on one, alternately
    (``most`` first), then the count of the smaller median time runs every call for
    :data:`_PROBE_S` seconds, then the next race; while the load leaves no core idle,
    one thread instead of a race. More threads win a race only when their median is below
    :data:`_FASTER` times one thread's (a wrong count above one costs far more on a busy
    machine than a wrong one thread on a quiet one). A kept count above one whose calls
    turn slow (:data:`_PROBE_CALLS` in a row more than :data:`_SLOWER` times its median in
    the race: a process took a core, or another thread pool spins on it) goes to one
    thread at once, for :data:`_PROBE_S` seconds. ``count(now)`` is the count of the next
    call, ``record(n, seconds, now)`` the time a call on ``n`` threads took."""

    __slots__ = ("most", "cores", "n", "times", "until", "won", "slow")

    def __init__(self, most, cores):
        self.most, self.cores, self.n = most, cores, most
        self.times, self.until = {most: [], 1: []}, 0.0
        self.won, self.slow = 0.0, 0  # the kept count's median in its race; slow calls since

    def count(self, now):
        """The thread count of the next call at time ``now`` (seconds, perf_counter); a
        race starts only while :func:`_idle_cores` finds two cores idle."""
        if self.most == 1 or now < self.until:
            return self.n
        if not self.times[1] and not self.times[self.most] and _idle_cores(self.n) < 2:
            self.n, self.until = 1, now + _PROBE_S  # a busy machine: no race
            return 1
        return self.most if len(self.times[self.most]) <= len(self.times[1]) else 1

    def record(self, n, seconds, now):
        """Count a call of ``seconds`` on ``n`` threads; end the race when it is run; go to
        one thread when the calls of a kept count above one turn slow."""
        if self.most == 1:
            return
        if now < self.until:
            if n > 1:
                self.slow = self.slow + 1 if seconds > _SLOWER * self.won else 0
                if self.slow >= _PROBE_CALLS:
                    self.n, self.until, self.slow = 1, now + _PROBE_S, 0
            return
        self.times[n].append(seconds)
        if min(len(t) for t in self.times.values()) >= _PROBE_CALLS:
            median = {k: sorted(t)[len(t) // 2] for k, t in self.times.items()}
            self.n = self.most if median[self.most] < _FASTER * median[1] else 1
            self.won, self.slow = median[self.n], 0
            self.times, self.until = {self.most: [], 1: []}, now + _PROBE_S


def _set_threads(threads):
    """Set the threads of the next kernel call of a plan (``threads``, its
    :class:`_Threads`): its count of BLAS threads and, in a parallel module, the usable
    cores for Numba's parallel loops (at most Numba's pool; Numba's count is per calling
    thread, so it is set on every call). Returns the BLAS count."""
    n = threads.count(time.perf_counter())
    if _BLAS_THREADS["setters"] is None:
        _BLAS_THREADS["setters"] = _blas_setters()
    if n != _BLAS_THREADS["threads"]:
        for setter in _BLAS_THREADS["setters"]:
            setter(n)
        _BLAS_THREADS["threads"] = n
    if _LOOP_THREADS is not None:  # (Numba's setter, the size of its pool)
        set_loop_threads, pool = _LOOP_THREADS
        set_loop_threads(min(threads.cores, pool))
    return n
