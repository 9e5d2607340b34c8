"""The thread-budget benchmark: ``python -m benchmarks --busy [--only cnn,char_rnn,...]``.

For each workload of :mod:`benchmarks.busy_models`, in one process, each side (gradc,
PyTorch eager, and with ``--compiled`` torch.compile) is timed with one thread and with its
default threads, on a quiet machine and with one core kept busy by another process
(``python -c "while True: pass"`` pinned to the last core of this process's affinity,
started and stopped here). The phases alternate in rounds (quiet, busy, quiet, busy, ...),
so slow drifts of a shared machine hit both alike. Reported per side: the median of each
of the four, each one's ratio to that side's own quiet one-thread median, the ratio of busy
default threads to busy one thread (the goal: <= 1.5x) and the peers' ratios to gradc
(above 1: gradc is faster). The load average is printed beside each workload.

One thread: gradc with ``GRADC_NUM_THREADS=1`` in a Python thread of its own, inside
threadpoolctl's limit of every BLAS library to 1 (so a gradc without a thread budget is
measured the same way), torch by ``torch.set_num_threads(1)``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

from benchmarks.busy_models import WORKLOADS, gradc_step, torch_step

PHASES = ("quiet", "busy")
#: (workload, side) -> why that side could not run
UNAVAILABLE: dict[tuple[str, str], str] = {}
THREADS = ("1 thread", "default")


class Spinner:
    """Another process keeping one core busy (pinned to the last core this one may use)."""

    def __enter__(self):
        core = max(os.sched_getaffinity(0))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "while True: pass"],
            preexec_fn=lambda: os.sched_setaffinity(0, {core}))
        time.sleep(0.2)  # let it start spinning
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


class _OneThreadGradc:
    """gradc on one thread: every BLAS library limited to one (threadpoolctl: all a gradc
    without a thread budget has) and GRADC_NUM_THREADS=1 (gradc's budget, read when a call
    of new dims is planned: the block runs in a Python thread of its own, whose plans are
    made with it, while the default side's are the main thread's)."""

    pool = None

    def __enter__(self):
        from concurrent.futures import ThreadPoolExecutor
        from threadpoolctl import ThreadpoolController

        if _OneThreadGradc.pool is None:
            _OneThreadGradc.pool = ThreadPoolExecutor(max_workers=1)
        self.env = os.environ.get("GRADC_NUM_THREADS")
        os.environ["GRADC_NUM_THREADS"] = "1"
        self.limit = ThreadpoolController().limit(limits=1, user_api="blas")
        return self

    def run(self, fn, *args):
        return _OneThreadGradc.pool.submit(fn, *args).result()

    def __exit__(self, *exc):
        self.limit.restore_original_limits()
        if self.env is None:
            del os.environ["GRADC_NUM_THREADS"]
        else:
            os.environ["GRADC_NUM_THREADS"] = self.env


class _TorchThreads:
    def __init__(self, n):
        import torch

        self.torch, self.n, self.old = torch, n, torch.get_num_threads()

    def __enter__(self):
        self.torch.set_num_threads(self.n)
        return self

    def run(self, fn, *args):
        return fn(*args)

    def __exit__(self, *exc):
        self.torch.set_num_threads(self.old)


class _Nothing:
    def __enter__(self):
        return self

    def run(self, fn, *args):
        return fn(*args)

    def __exit__(self, *exc):
        return False


def _context(side: str, threads: str):
    if threads == "default":
        return _Nothing()
    return _OneThreadGradc() if side == "gradc" else _TorchThreads(1)


def _block(fn, seconds: float, min_calls: int) -> list[float]:
    """Per-call seconds of a block: 2 untimed calls, then calls for ``seconds`` (at least
    ``min_calls``)."""
    fn()
    fn()
    out, end = [], time.perf_counter() + seconds
    while len(out) < min_calls or time.perf_counter() < end:
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def sides(name: str, compiled: bool) -> tuple[dict, dict]:
    """(side name -> step callable, side name -> seconds of its first call, which compiles
    gradc's kernels or inductor's graph)."""
    work = WORKLOADS[name]
    step, start = gradc_step(work)
    makers = {"torch eager": lambda: torch_step(work, start)}
    if compiled:
        makers["torch.compile"] = lambda: torch_step(work, start, compiled=True)
    out, compile_s = {"gradc": step}, {}
    for side, make in makers.items():
        try:
            out[side] = make()
        except Exception as exc:  # a peer that cannot run is reported, never substituted
            UNAVAILABLE[(name, side)] = f"{type(exc).__name__}: {exc}".splitlines()[0][:160]
    for side, fn in list(out.items()):
        t0 = time.perf_counter()
        try:
            fn()
        except Exception as exc:
            if side == "gradc":
                raise
            UNAVAILABLE[(name, side)] = f"{type(exc).__name__}: {exc}".splitlines()[0][:160]
            del out[side]
            continue
        compile_s[side] = time.perf_counter() - t0
    return out, compile_s


def measure(name: str, rounds: int, seconds: float, compiled: bool) -> dict:
    """samples[(side, phase, threads)] -> per-call seconds, and the first-call seconds."""
    steps, compile_s = sides(name, compiled)
    samples = {}
    for _ in range(rounds):
        for phase in PHASES:
            with Spinner() if phase == "busy" else _Nothing():
                for side, fn in steps.items():
                    for threads in THREADS:
                        with _context(side, threads) as where:
                            samples.setdefault((side, phase, threads), []).extend(
                                where.run(_block, fn, seconds, 3))
    return samples, compile_s


def report(name: str, samples: dict, compile_s: dict, load: tuple) -> str:
    """The table of one workload."""
    lines = [f"{name}: {WORKLOADS[name].describe} (load average before/after: "
             f"{load[0]:.2f} / {load[1]:.2f})",
             f"  {'side':14} {'first call':>10} " + " ".join(
                 f"{p + ', ' + t:>18}" for p in PHASES for t in THREADS)]
    medians = {k: statistics.median(v) for k, v in samples.items()}
    for side in compile_s:
        base = medians[(side, "quiet", "1 thread")]
        cells = [f"{1e3 * medians[(side, p, t)]:8.3f} ms {medians[(side, p, t)] / base:5.2f}x"
                 for p in PHASES for t in THREADS]
        lines.append(f"  {side:14} {compile_s[side]:9.2f}s " + " ".join(
            f"{c:>18}" for c in cells))
    for (workload, side), why in UNAVAILABLE.items():
        if workload == name:
            lines.append(f"  {side:14} unavailable: {why}")
    goal = ", ".join(
        f"{s} {medians[(s, 'busy', 'default')] / medians[(s, 'busy', '1 thread')]:.2f}x"
        for s in compile_s)
    lines.append(f"  busy, default threads / one thread (goal <= 1.5x): {goal}")
    for phase, threads in (("quiet", "1 thread"), ("quiet", "default")):
        base = medians[("gradc", phase, threads)]
        peers = ", ".join(f"{s} / gradc {medians[(s, phase, threads)] / base:.2f}x"
                          for s in compile_s if s != "gradc")
        lines.append(f"  {phase}, {threads}: {peers}")
    return "\n".join(lines)


def run(names: list[str], rounds: int = 3, seconds: float = 0.3,
        compiled: bool = False) -> int:
    """Measure and print every workload of ``names``; return 0."""
    print("ratios: each median / the same side's quiet one-thread median; busy: another "
          "process spins on one core")
    for name in names:
        load0 = os.getloadavg()[0]
        samples, compile_s = measure(name, rounds, seconds, compiled)
        print(report(name, samples, compile_s, (load0, os.getloadavg()[0])), flush=True)
    return 0
