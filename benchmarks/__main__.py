"""Run the gradc performance suite: ``python -m benchmarks [--only a,b] [--quick] [--json PATH]``
(``--busy``: the thread-budget benchmark of :mod:`benchmarks.busy` instead).

Prints an environment header, then one fixed-width table: a group of rows per workload, one row
per side, with the median time, ratio (peer / gradc, or gradc / GEMM floor), the target and
PASS/FAIL, and a correctness check. See ``benchmarks/README.md`` for how to read it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

from benchmarks import busy, compile_time, gradc_side, peers_jax, peers_torch, suite
from benchmarks.busy_models import WORKLOADS as BUSY_WORKLOADS
from benchmarks.harness import (
    CpuMeter,
    TimingConfig,
    format_table,
    rows_to_json,
    timer_overhead_ns,
)
from benchmarks.workloads import EPOCH, MLPS, ORDER

#: Above this share of all cores used by other processes, a workload's numbers are flagged.
BUSY_SHARE = 0.10

LEGEND = """\
ratio: peer rows = peer median / gradc median (above 1: gradc faster); GEMM floor row = gradc
median / floor median (1.00 = gradc costs only its matrix products); compile rows: seconds.
iqr/2 = half the inter-quartile range, relative to the median. n = timed calls."""


def environment() -> dict[str, str]:
    """Versions and thread budgets of everything timed (each peer probed, never required)."""
    import numpy

    env = {"python": platform.python_version(), "numpy": numpy.__version__,
           "cpus": f"{os.cpu_count()} (affinity {len(os.sched_getaffinity(0))}), load average "
                   + " ".join(f"{v:.2f}" for v in os.getloadavg())}
    try:
        import numba

        env["numba"] = f"{numba.__version__}, {numba.config.NUMBA_NUM_THREADS} threads"
    except ImportError:
        env["numba"] = "missing"
    for key, probe in (("torch", peers_torch.threads), ("jax", peers_jax.threads)):
        try:
            env[key] = probe()
        except Exception as exc:
            env[key] = f"missing ({type(exc).__name__}: {exc})"
    env["gradc"] = gradc_side.version()
    knobs = [f"{k}={os.environ[k]}" for k in sorted(os.environ)
             if k.startswith(("OMP_", "MKL_", "OPENBLAS_", "XLA_", "NUMBA_NUM", "GRADC_"))]
    env["thread env"] = " ".join(knobs) or "(none set: every library uses its default)"
    return env


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated workloads: " + ",".join(ORDER))
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed calls per side, at least (default 30; 10 with --quick)")
    ap.add_argument("--quick", action="store_true", help="short timing, one compile run each")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                    help="before each workload wait up to S seconds for other processes to "
                         "leave the CPU (default 0: don't wait)")
    ap.add_argument("--single-thread", action="store_true",
                    help="limit every library to one thread (re-executes with OMP_NUM_THREADS=1 "
                         "and friends); for busy machines, not the default budget")
    ap.add_argument("--busy", action="store_true",
                    help="the thread-budget benchmark (benchmarks/busy.py): the workloads "
                         f"{', '.join(BUSY_WORKLOADS)} with one and default threads, quiet "
                         "and with one core kept busy by another process")
    ap.add_argument("--compiled", action="store_true",
                    help="with --busy: torch.compile as a peer too (compiles for seconds)")
    ap.add_argument("--list", action="store_true", help="list the workloads and exit")
    return ap.parse_args(argv)


def select(only: str) -> list[str]:
    """The workloads to run, in suite order; exits with status 2 on an unknown name."""
    if not only:
        return list(ORDER)
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    unknown = [w for w in wanted if w not in ORDER]
    if unknown:
        sys.exit(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(ORDER)}")
    return [w for w in ORDER if w in wanted]


def select_busy(only: str) -> list[str]:
    """The workloads of ``--busy``, in their order; exits with status 2 on an unknown name."""
    wanted = [w.strip() for w in only.split(",") if w.strip()] or list(BUSY_WORKLOADS)
    unknown = [w for w in wanted if w not in BUSY_WORKLOADS]
    if unknown:
        sys.exit(f"unknown --busy workload(s) {', '.join(unknown)}; choose from "
                 f"{', '.join(BUSY_WORKLOADS)}")
    return [w for w in BUSY_WORKLOADS if w in wanted]


def wait_quiet(max_wait: float) -> float | None:
    """Sample the CPU use of other processes each second until it drops under ``BUSY_SHARE``.

    Returns the last sampled share (None where /proc/stat is unreadable); gives up after
    ``max_wait`` seconds.
    """
    deadline = time.perf_counter() + max_wait
    while True:
        meter = CpuMeter()
        time.sleep(1.0)
        share = meter.foreign()
        if share is None or share <= BUSY_SHARE or time.perf_counter() >= deadline:
            return share
        print(f"  waiting: other processes use {100 * share:.0f}% of the CPU",
              file=sys.stderr, flush=True)


def run_workload(name: str, cfg: TimingConfig, compile_repeats: int) -> list:
    """Run one workload by name and return its rows."""
    if name in MLPS:
        return suite.run_mlp(MLPS[name], cfg)
    if name == "epoch":
        return suite.run_epoch(cfg)
    if name == "gelu_fb":
        return suite.run_gelu(cfg)
    return compile_time.run_compile(compile_repeats)


def describe(name: str) -> str:
    """One line saying what a workload is."""
    if name in MLPS:
        return MLPS[name].describe()
    return {"epoch": f"{EPOCH.describe()}, one epoch of 1797 samples",
            "gelu_fb": "tanh-GELU fn, forward + backward, 4096x1024",
            "compile": "mlp_cifar, fresh process: cold cache, then warm cache"}[name]


def make_config(args: argparse.Namespace) -> TimingConfig:
    """The timing configuration of the command line's ``--quick`` and ``--repeats``."""
    if args.quick:
        cfg = TimingConfig(min_repeats=10, min_time_s=0.1, max_time_s=1.5, floor_repeats=3)
    else:
        cfg = TimingConfig()
    if args.repeats is not None:
        cfg.min_repeats = max(1, args.repeats)
    return cfg


def run_all(names: list[str], cfg: TimingConfig, args: argparse.Namespace):
    """Run the workloads; return (rows, foreign CPU share per workload, busy notes)."""
    rows, foreign, notes = [], {}, {}
    for name in names:
        print(f"running {name} ({describe(name)}) ...", file=sys.stderr, flush=True)
        if args.wait_quiet > 0:
            wait_quiet(args.wait_quiet)
        t0 = time.perf_counter()
        meter = CpuMeter()
        rows += run_workload(name, cfg, 1 if args.quick else 3)
        foreign[name] = share = meter.foreign()
        busy = f", other processes used {100 * share:.0f}% of the CPU" if share else ""
        print(f"  done in {time.perf_counter() - t0:.1f} s{busy}", file=sys.stderr, flush=True)
        if share is not None and share > BUSY_SHARE:
            notes[name] = (f"! other processes used {100 * share:.0f}% of the CPU meanwhile: "
                           "these numbers are unreliable; rerun on a quiet machine")
    return rows, foreign, notes


#: The environment of ``--single-thread``: one thread for torch (OpenMP), BLAS, Numba and XLA.
SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}


def reexec_single_thread(argv: list[str] | None) -> None:
    """Restart this command with :data:`SINGLE_THREAD_ENV` (libraries read it at import)."""
    if all(os.environ.get(k) == v for k, v in SINGLE_THREAD_ENV.items()):
        return
    env = {**os.environ, **SINGLE_THREAD_ENV}
    args = sys.argv[1:] if argv is None else argv
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", "benchmarks", *args], env)


def main(argv: list[str] | None = None) -> int:
    """Run the selected workloads, print the table, optionally write JSON."""
    args = parse_args(argv)
    if args.single_thread:
        reexec_single_thread(argv)
    if args.list:
        print("\n".join(f"{w:11}  {describe(w)}" for w in ORDER))
        return 0
    if args.busy:
        return busy.run(select_busy(args.only), rounds=2 if args.quick else 3,
                        compiled=args.compiled)
    names = select(args.only)
    cfg = make_config(args)
    env = environment()
    env["timer overhead"] = (f"{timer_overhead_ns():.0f} ns per perf_counter_ns pair "
                             "(included in times)")
    for key, value in env.items():
        print(f"{key:>15}: {value}")
    print()
    rows, foreign, notes = run_all(names, cfg, args)
    print(format_table(rows, notes))
    print()
    print(LEGEND)
    if args.json:
        doc = {"environment": env, "config": vars(cfg), "workloads": names,
               "foreign_cpu_share": foreign, "rows": rows_to_json(rows)}
        with open(args.json, "w") as fh:
            json.dump(doc, fh, indent=1)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
