"""NumPy oracles (float64) for the correctness checks, and the GEMM floor.

The GEMM floor of a training step is the time of its matrix products alone, through NumPy's BLAS
on preallocated float32 arrays (``np.dot(a, b, out=c)``): forward ``h @ W`` for every layer, and
backward ``dW = h.T @ g`` for every layer and ``dX = g @ W.T`` for every layer but the first.
A compiled training step cannot be much faster than that; gradc / floor says how close it gets.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

from benchmarks.workloads import GELU_C0, GELU_C1


def _act(z: np.ndarray, activation: str) -> np.ndarray:
    return np.tanh(z) if activation == "tanh" else np.maximum(z, 0.0)


def _act_grad(h: np.ndarray, activation: str) -> np.ndarray:
    return 1.0 - h * h if activation == "tanh" else (h > 0).astype(h.dtype)


def mlp_loss_and_grad(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray,
                      activation: str) -> tuple[float, dict[str, np.ndarray]]:
    """Float64 mean softmax cross-entropy of an MLP and its gradient (the oracle)."""
    n_layers = len(params) // 2
    p = {k: v.astype(np.float64) for k, v in params.items()}
    hs = [x.astype(np.float64)]
    for i in range(1, n_layers + 1):
        z = hs[-1] @ p[f"W{i}"] + p[f"b{i}"]
        hs.append(_act(z, activation) if i < n_layers else z)
    logits = hs[-1]
    shifted = logits - logits.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    batch = len(y)
    loss = -logp[np.arange(batch), y].mean()
    g = np.exp(logp)
    g[np.arange(batch), y] -= 1.0
    g /= batch
    grads = {}
    for i in range(n_layers, 0, -1):
        grads[f"W{i}"] = hs[i - 1].T @ g
        grads[f"b{i}"] = g.sum(axis=0)
        if i > 1:
            g = (g @ p[f"W{i}"].T) * _act_grad(hs[i - 1], activation)
    return float(loss), grads


def mlp_loss(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray,
             activation: str) -> float:
    """Float64 mean cross-entropy of an MLP (forward only)."""
    return mlp_loss_and_grad(params, x, y, activation)[0]


def check_step(before: dict[str, np.ndarray], after: dict[str, np.ndarray], loss: float,
               x: np.ndarray, y: np.ndarray, activation: str, lr: float) -> tuple[float, float]:
    """Compare one SGD step against the oracle.

    Returns:
        (relative error of the loss, worst normwise relative error of the parameter updates
        ``after - before`` against ``-lr * grad``, over all parameters).
    """
    ref_loss, grads = mlp_loss_and_grad(before, x, y, activation)
    loss_err = abs(float(loss) - ref_loss) / max(abs(ref_loss), 1e-30)
    worst = 0.0
    for name, grad in grads.items():
        got = after[name].astype(np.float64) - before[name].astype(np.float64)
        want = -lr * grad
        worst = max(worst, float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30)))
    return loss_err, worst


def gelu_and_grad(z: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float64 tanh-GELU ``out`` and its vjp ``g * d out / dz``."""
    z = z.astype(np.float64)
    u = GELU_C0 * (z + GELU_C1 * z ** 3)
    t = np.tanh(u)
    out = 0.5 * z * (1.0 + t)
    du = GELU_C0 * (1.0 + 3.0 * GELU_C1 * z * z)
    dz = 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * du
    return out, g.astype(np.float64) * dz


def normwise_rel_error(got: np.ndarray, ref: np.ndarray) -> float:
    """``max|got - ref| / max|ref|``: the error relative to the tensor's largest magnitude."""
    got = np.asarray(got, dtype=np.float64)
    return float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-300))


def gemm_floor(sizes: tuple[int, ...], batch: int, seed: int = 0) -> Callable[[], None]:
    """A callable doing just the matrix products of one MLP training step (float32 BLAS)."""
    rng = np.random.default_rng(seed)

    def arr(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    ws = [arr(a, b) for a, b in itertools.pairwise(sizes)]
    hs = [arr(batch, sizes[0])] + [np.empty((batch, b), np.float32) for b in sizes[1:]]
    gs = [arr(batch, b) for b in sizes[1:]]              # gradient w.r.t. each layer's output
    dws = [np.empty_like(w) for w in ws]
    dxs = [np.empty((batch, a), np.float32) for a in sizes[:-1]]
    dot = np.dot
    n = len(ws)

    def step() -> None:
        for i in range(n):
            dot(hs[i], ws[i], out=hs[i + 1])
        for i in range(n - 1, -1, -1):
            dot(hs[i].T, gs[i], out=dws[i])
            if i > 0:
                dot(gs[i], ws[i].T, out=dxs[i])

    return step


def gemm_floor_epoch(sizes: tuple[int, ...], n_samples: int, batch: int) -> Callable[[], None]:
    """The GEMM floor of one epoch: the floor step over every batch (the last one short)."""
    full, rest = divmod(n_samples, batch)
    step = gemm_floor(sizes, batch)
    tail = gemm_floor(sizes, rest) if rest else None

    def epoch() -> None:
        for _ in range(full):
            step()
        if tail is not None:
            tail()

    return epoch
