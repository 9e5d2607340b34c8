"""Benchmark gradc.codegen.cpu.mathlib against NumPy ufuncs and ``math.*`` inside ``njit``.

Run: ``python benchmarks/mathlib_bench.py [--repeats N] [--rows R] [--ops exp,tanh]``.

For every operation and dtype (float32, float64) on a 4096x1024 array it times, single
threaded, the median of ``--repeats`` runs of

* ``numpy``   the NumPy/SciPy ufunc writing into a preallocated output,
* ``math``    an ``njit`` loop calling ``math.<op>`` (scalar libm, what Numba gives without SVML),
* ``mathlib`` the same loop calling the mathlib function, compiled the way the code generator
  does (sources pasted into one module, decorated by ``gradc.codegen.cpu.target.math_jit``).

and prints ns/element and speed-ups.  The last column says whether LLVM vectorised the mathlib
loop (packed ``...ps``/``...pd`` instructions on xmm/ymm/zmm registers in its assembly).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from pathlib import Path

import numba as nb
import numpy as np
import scipy.special as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gradc.codegen.cpu import mathlib  # noqa: E402
from gradc.codegen.cpu.target import math_jit  # noqa: E402

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

NUMPY = {
    "exp": np.exp,
    "tanh": np.tanh,
    "log": np.log,
    "log1p": np.log1p,
    "sigmoid": sp.expit,
    "erf": sp.erf,
}


def _exp(x):
    return math.exp(x)


def _tanh(x):
    return math.tanh(x)


def _log(x):
    return math.log(x)


def _log1p(x):
    return math.log1p(x)


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def _erf(x):
    return math.erf(x)


MATH = {  # njit + libm baseline (no SVML in pip Numba)
    "exp": _exp,
    "tanh": _tanh,
    "log": _log,
    "log1p": _log1p,
    "sigmoid": _sigmoid,
    "erf": _erf,
}

INPUTS = {  # value range of the benchmark input per op
    "exp": (-10.0, 10.0),
    "tanh": (-5.0, 5.0),
    "log": (1e-3, 1e3),
    "log1p": (-0.9, 1e3),
    "sigmoid": (-10.0, 10.0),
    "erf": (-4.0, 4.0),
}


def compile_mathlib() -> dict:
    """name -> njit dispatcher, built exactly like the code generator's output module."""
    names = [fn.__name__ for fn in mathlib.MATHLIB_FUNCTIONS]
    text = "import math\nimport numpy as np\nimport numba as nb\n\n\n"
    text += mathlib.sources(names, decorator=math_jit)
    ns: dict = {"FASTMATH": FASTMATH}
    exec(compile(text, "<mathlib>", "exec"), ns)
    return {n: ns[n] for n in names}


def make_loop(f):
    """``out[i] = f(xs[i])`` over 1-d arrays; the elementwise kernel shape gradc generates."""
    scope: dict = {"f": f}
    exec("def apply(xs, out):\n    for i in range(xs.size):\n        out[i] = f(xs[i])\n", scope)
    return nb.njit(fastmath=FASTMATH, error_model="numpy")(scope["apply"])


def median_times(repeats: int, calls) -> list[float]:
    """Median wall time of each ``(fn, args, kwargs)``; the candidates run interleaved so that
    background load hits them alike."""
    for fn, a, kw in calls:
        fn(*a, **kw)  # warm up (and compile)
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(repeats):
        for slot, (fn, a, kw) in zip(times, calls):
            t0 = time.perf_counter()
            fn(*a, **kw)
            slot.append(time.perf_counter() - t0)
    return [float(np.median(t)) for t in times]


def vectorised(loop) -> str:
    asm = loop.inspect_asm(loop.signatures[0])
    widths = set(re.findall(r"\tv?(?:fmadd|fmsub|fnmadd|mul|add|sub|div)\w*p[sd]\s.*%([xyz])mm",
                            asm))
    for reg, name in (("z", "zmm"), ("y", "ymm"), ("x", "xmm")):
        if reg in widths:
            return f"yes ({name})"
    return "NO"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--cols", type=int, default=1024)
    ap.add_argument("--ops", default=",".join(NUMPY))
    args = ap.parse_args()

    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
        found = [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]
        print("NumPy", np.__version__, "SIMD dispatch available:", " ".join(found))
    except ImportError:  # pragma: no cover - older/newer NumPy layouts
        print("NumPy", np.__version__)
    print("Numba", nb.__version__, "| array", f"{args.rows}x{args.cols}",
          "| median of", args.repeats, "interleaved runs | single thread\n")

    lib = compile_mathlib()
    rng = np.random.default_rng(0)
    n = args.rows * args.cols
    head = (f"{'op':8s} {'dtype':8s} {'numpy':>8s} {'math':>8s} {'mathlib':>8s}   "
            f"{'numpy/mathlib':>13s} {'math/mathlib':>12s}  vectorised")
    print("ns per element")
    print(head)
    print("-" * len(head))
    for op in args.ops.split(","):
        f64, f32 = mathlib.VARIANTS[op]
        lo, hi = INPUTS[op]
        for dt, fn in ((np.float32, f32), (np.float64, f64)):
            x = rng.uniform(lo, hi, (args.rows, args.cols)).astype(dt).reshape(-1)
            out = np.empty_like(x)
            ufunc = NUMPY[op]
            math_loop = make_loop(nb.njit(inline="always")(MATH[op]))
            lib_loop = make_loop(lib[fn.__name__])
            t_np, t_math, t_lib = median_times(args.repeats, [
                (ufunc, (x,), {"out": out}), (math_loop, (x, out), {}), (lib_loop, (x, out), {})])
            ns = [1e9 * t / n for t in (t_np, t_math, t_lib)]
            print(f"{op:8s} {np.dtype(dt).name:8s} {ns[0]:8.3f} {ns[1]:8.3f} {ns[2]:8.3f}   "
                  f"{t_np / t_lib:12.2f}x {t_math / t_lib:11.2f}x  {vectorised(lib_loop)}",
                  flush=True)


if __name__ == "__main__":
    main()
