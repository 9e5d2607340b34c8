"""What Numba's Python wrapper costs to compile, by number of array arguments:
``python -m benchmarks.wrapper_cost``.

Every entry kernel gradc generates is called from Python, so Numba compiles a wrapper that
unboxes each argument (an ``Adam`` ``train_step`` takes every param three times: value,
``m``, ``v``). This compiles functions that only read their first argument, with
``--counts`` float32 array arguments of the kernels' options, and reports the CPU seconds
of the compiling call, the lines of LLVM IR and, with ``--passes``, the LLVM pass groups
(``NUMBA_LLVM_PASS_TIMINGS``; set before Numba is imported, so this runs in a child
process). The IR grows linearly with the arguments; the time does not. Medians over
``--repeats`` fresh functions (min-max), in one process after a warm-up compile. Check that
the machine is otherwise idle (``uptime``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import ast, json, sys, time
import numba as nb
import numpy as np
from gradc.codegen.cpu.target import FASTMATH

OPTIONS = dict(cache=False, nogil=True, error_model="numpy", boundscheck=False,
               fastmath=ast.literal_eval(FASTMATH), no_cfunc_wrapper=True)
ARRAYS = [np.ones((4, 4), np.float32) if k % 2 else np.ones(4, np.float32) for k in range(400)]


def kernel(n, tag):
    args = ", ".join(f"a{k}" for k in range(n))
    scope = {}
    exec(f"def k{tag}({args}):\n    return a0[0]\n", scope)
    return nb.njit(**OPTIONS)(scope[f"k{tag}"])


def passes(f):
    out = {}
    for record in f.get_metadata(f.signatures[0]).get("llvm_pass_timings", ()):
        group = record.name.split(" on ")[0].split(" (")[0]
        out[group] = out.get(group, 0.0) + record.timings.get_total_time()
    return out


kernel(2, "warm")(*ARRAYS[:2])
rows = []
for n in json.loads(sys.argv[1]):
    for r in range(int(sys.argv[2])):
        f = kernel(n, f"{n}_{r}")
        t = time.process_time()
        f(*ARRAYS[:n])
        cpu = time.process_time() - t
        rows.append({"n": n, "cpu": cpu, "ir": len(f.inspect_llvm(f.signatures[0]).splitlines()),
                     "passes": passes(f)})
print(json.dumps(rows))
"""


def main(argv: list[str] | None = None) -> int:
    """Run the child and print one row per argument count."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.wrapper_cost",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--counts", default="10,30,60,100,150",
                   help="comma-separated numbers of array arguments")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--passes", action="store_true", help="LLVM pass groups (slower)")
    args = p.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",")]
    env = dict(os.environ, **({"NUMBA_LLVM_PASS_TIMINGS": "1"} if args.passes else {}))
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(counts), str(args.repeats)],
                         env=env, capture_output=True, text=True, check=True)
    rows = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; "
          f"CPU seconds of the compiling call, median (min-max) of {args.repeats}")
    print(f"{'arrays':>7}{'IR lines':>10}{'compile':>22}{'per array (ms)':>16}")
    for n in counts:
        mine = [r for r in rows if r["n"] == n]
        cpu = [r["cpu"] for r in mine]
        med = statistics.median(cpu)
        line = (f"{n:>7}{mine[0]['ir']:>10}{med:>9.3f} ({min(cpu):.3f}-{max(cpu):.3f})"
                f"{1000 * med / n:>16.1f}")
        if args.passes:
            groups = {}
            for r in mine:
                for g, t in r["passes"].items():
                    groups.setdefault(g, []).append(t)
            line += "  " + ", ".join(f"{g}: {statistics.median(t):.2f}"
                                     for g, t in groups.items())
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
