"""What a training step costs beyond its matrix products: gradc's SGD step beside the GEMM
floor (the five matrix products of a 2-layer MLP step) and beside the floor plus the in-place
weight update ``W -= lr * dW``, all compiled with Numba in one process.

The suite's GEMM floor never writes its weights; a real step does, and with two BLAS threads
the next step's GEMMs then read the rewritten weights back across cores. This script shows
how much of gradc's distance from the floor is that update::

    python -m benchmarks.floor_update            # mlp_small and mlp_cifar
    OPENBLAS_NUM_THREADS=1 python -m benchmarks.floor_update
"""

from __future__ import annotations

import time
from pathlib import Path

import numba as nb
import numpy as np

import gradc

MODELS = Path(__file__).resolve().parent / "models"
#: name -> (model file, batch, timed calls per round)
WORKLOADS = {"mlp_small": ("mlp_784.grad", 64, 3000), "mlp_cifar": ("mlp_cifar.grad", 256, 300)}


def median_us(fn, n: int) -> float:
    """Median wall time of ``fn()`` over ``n`` calls, in microseconds."""
    times = []
    for _ in range(n):
        t = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t)
    return sorted(times)[n // 2] / 1e3


@nb.njit
def gemms(x, w1, h, w2, z, g2, gh, g1):
    """The five matrix products of one step: forward, weight gradients, hidden gradient."""
    np.dot(x, w1, h)
    np.dot(h, w2, z)
    np.dot(h.T, z, g2)
    np.dot(z, w2.T, gh)
    np.dot(x.T, gh, g1)


@nb.njit
def gemms_update(x, w1, h, w2, z, g2, gh, g1, lr):
    """:func:`gemms`, then the SGD update of both weight matrices in place."""
    gemms(x, w1, h, w2, z, g2, gh, g1)
    w1 -= lr * g1
    w2 -= lr * g2


def measure(name: str) -> str:
    """One line: gradc's step, the floor and floor + update, medians of three rounds."""
    path, batch, n = WORKLOADS[name]
    model = gradc.compile(MODELS / path, dtype="f32", optimizer="sgd")
    params = model.init_params(0)
    rng = np.random.default_rng(0)
    w1, w2 = params["W1"].copy(), params["W2"].copy()
    x = rng.standard_normal((batch, w1.shape[0]), dtype=np.float32)
    y = rng.integers(0, w2.shape[1], batch)
    h = np.empty((batch, w1.shape[1]), np.float32)
    z = np.empty((batch, w2.shape[1]), np.float32)
    gh, g1, g2 = np.empty_like(h), np.empty_like(w1), np.empty_like(w2)
    lr = np.float32(1e-6)
    sides = (lambda: model.train_step(params, lr=1e-6, x=x, y=y),
             lambda: gemms(x, w1, h, w2, z, g2, gh, g1),
             lambda: gemms_update(x, w1, h, w2, z, g2, gh, g1, lr))
    for side in sides:  # compile and warm up
        for _ in range(5):
            side()
    rounds = [[median_us(side, n) for side in sides] for _ in range(3)]
    step, floor, floor_update = (sorted(r)[1] for r in zip(*rounds))
    return (f"{name}: gradc step {step:.0f} us, GEMM floor {floor:.0f} us "
            f"({step / floor:.2f}x), GEMMs + SGD update {floor_update:.0f} us "
            f"({step / floor_update:.2f}x)")


def main() -> None:
    for name in WORKLOADS:
        print(measure(name), flush=True)


if __name__ == "__main__":
    main()
