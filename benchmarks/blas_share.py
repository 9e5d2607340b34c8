"""What share of a ``train_step`` its BLAS products take: ``python -m benchmarks.blas_share
[--only cnn28,...]`` (the workloads of :mod:`benchmarks.busy_models`).

For each workload: the step's time (gradc, CPU target, one thread: every BLAS library held
at one thread with threadpoolctl), and every BLAS product of the scheduled ``train_step``
program (its :class:`gradc.passes.kernels.Dot` and :class:`~gradc.passes.kernels.Recur`
kernels, at the shapes and transpositions the Numba kernel calls ``np.dot`` with) timed
alone on one thread twice: with NumPy's ``np.dot(a, b, out)``, the *GEMM floor*, and with
``np.dot`` inside a Numba function, as the kernels call it. The two are different
libraries: NumPy's wheel bundles its own OpenBLAS, and Numba's ``np.dot`` calls SciPy's
(``scipy.linalg.cython_blas``), another build and often another version; the *kernels'
BLAS* column is what the generated code can reach, the floor what a better-bound BLAS
would give. The rest (step minus the kernels' BLAS) is the loops: im2col and its adjoint,
pooling, batchnorm, elementwise work, reductions and call overhead. Medians; prints one
line per product and a summary.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from benchmarks.busy_models import WORKLOADS, gradc_step


def products(work) -> list[tuple[tuple[int, int], tuple[int, int], int, str, bool, bool]]:
    """The train_step's BLAS products at the workload's batch: ((m, k), (k, n), how many
    times per step, the kernel class, whether the kernel reads ``a`` and ``b`` transposed)."""
    from gradc.options import Options
    from gradc.passes.kernels import Dot, Recur
    from gradc.pipeline import eval_graph, front, programs
    from gradc.source import Source

    source = Source(work.path.read_text(encoding="utf-8"), str(work.path))
    options = Options.make(dtype="f32", optimizer="sgd")
    graph, _ = front(source, options)
    prog, _ = programs(graph, eval_graph(source, options, graph), options)["train_step"]
    dims = {d: work.batch for d in prog.dims}
    size = {**dims, **{d: 32 for d in prog.dims if d != prog.dims[0]}}

    def value(e) -> int:
        if hasattr(e, "free_symbols"):
            e = e.subs({s: size[s.name] for s in e.free_symbols})
        return int(e)

    out = []
    for k in prog.kernels:
        if isinstance(k, Dot):
            m, n = value(k.out.shape[-2]), value(k.out.shape[-1])
            inner = value(k.a.shape[-2] if k.ta else k.a.shape[-1])
            count = int(np.prod([value(d) for d in k.out.shape[:-2]] or [1]))
            out.append(((m, inner), (inner, n), count, "Dot", k.ta, k.tb))
        elif isinstance(k, Recur):
            b, t, h = (value(d) for d in k.out.shape)
            out.append(((b, h), (h, h), t, f"Recur ({k.kind})", False, False))
    return out


def _median_time(fn, seconds: float = 0.2) -> float:
    fn()
    times, end = [], time.perf_counter() + seconds
    while len(times) < 5 or time.perf_counter() < end:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _operand(rng, rows: int, cols: int, transposed: bool) -> np.ndarray:
    """A float32 ``[rows, cols]`` operand, stored as the kernel stores it: a C-ordered
    array, or the transpose of one (``.T`` of a ``[cols, rows]`` buffer)."""
    shape = (cols, rows) if transposed else (rows, cols)
    a = rng.standard_normal(shape).astype(np.float32)
    return a.T if transposed else a


def _numba_dot():
    """``np.dot(a, b, out)`` compiled by Numba: the BLAS the generated kernels call."""
    import numba as nb

    @nb.njit(nogil=True)
    def dot(a, b, out):
        np.dot(a, b, out)

    return dot


def run(name: str) -> None:
    """Print the share of one workload."""
    from threadpoolctl import threadpool_limits

    work = WORKLOADS[name]
    step, _ = gradc_step(work)
    rng = np.random.default_rng(0)
    kernel_dot = _numba_dot()
    with threadpool_limits(1, user_api="blas"):
        step()
        rows = []
        for (m, k), (_, n), count, where, ta, tb in products(work):
            a, b = _operand(rng, m, k, ta), _operand(rng, k, n, tb)
            c = np.empty((m, n), np.float32)
            rows.append(((m, k, n), count, where, ta, tb,
                         _median_time(lambda a=a, b=b, c=c: np.dot(a, b, c)),
                         _median_time(lambda a=a, b=b, c=c: kernel_dot(a, b, c))))
        total = _median_time(step, 1.0)
    floor = sum(count * t_np for _, count, _, _, _, t_np, _ in rows)
    reached = sum(count * t_nb for _, count, _, _, _, _, t_nb in rows)
    print(f"{name}: {work.describe}: step {1e3 * total:.3f} ms, BLAS products "
          f"{1e3 * reached:.3f} ms through the kernels' BLAS ({100 * reached / total:.0f}%), "
          f"{1e3 * floor:.3f} ms through NumPy's, the rest {1e3 * (total - reached):.3f} ms "
          f"(load average {os.getloadavg()[0]:.2f})")
    print(f"  {'product (a.T: read transposed)':44} {'NumPy (floor)':>22} {'kernels BLAS':>22}")
    for (m, k, n), count, where, ta, tb, t_np, t_nb in rows:
        text = (f"{'a.T' if ta else 'a'} @ {'b.T' if tb else 'b'}: [{m}, {k}] @ [{k}, {n}]"
                f" x{count}")
        print(f"  {text:44} {1e3 * count * t_np:8.3f} ms {2 * m * k * n / t_np / 1e9:6.1f} GF/s"
              f" {1e3 * count * t_nb:8.3f} ms {2 * m * k * n / t_nb / 1e9:6.1f} GF/s  {where}")


def main() -> None:
    """The command line."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.blas_share",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(WORKLOADS),
                    help=f"comma-separated workloads: {', '.join(WORKLOADS)}")
    for name in ap.parse_args().only.split(","):
        run(name.strip())


if __name__ == "__main__":
    main()
