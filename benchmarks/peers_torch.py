"""PyTorch eager peers, written the way a careful PyTorch user would.

A training step is ``addmm`` (bias fused, as ``nn.Linear`` does) + activation per layer,
``F.cross_entropy`` (mean over the batch, integer labels), ``loss.backward()``, then plain SGD
in place under ``torch.no_grad()`` (``p -= lr * p.grad``, done as ``p.add_(p.grad,
alpha=-lr)``) and the gradients reset to None (what ``zero_grad()`` does by default). The step
returns the loss tensor without ``.item()``: on the CPU the work is already done, and skipping the
conversion only helps the peer. Threads: PyTorch's default (``torch.get_num_threads()``, one per
core); this module never changes it.

``torch`` is imported inside the functions, so a missing install surfaces as a
``ModuleNotFoundError`` in the row of that side only.
"""

from __future__ import annotations

import numpy as np

from benchmarks.workloads import GELU_C0, GELU_C1, epoch_batches


def threads() -> str:
    """PyTorch's version and intra-/inter-op thread counts, for the report header."""
    import torch

    return (f"torch {torch.__version__}: {torch.get_num_threads()} intra-op / "
            f"{torch.get_num_interop_threads()} inter-op threads")


class TorchMLP:
    """An MLP with its own copy of the shared initial parameters, trained by eager SGD.

    Args:
        params: ``W1, b1, ...`` as float32 NumPy arrays (copied, never modified).
        activation: ``"relu"`` or ``"tanh"``.
    """

    def __init__(self, params: dict[str, np.ndarray], activation: str):
        import torch
        import torch.nn.functional as F

        self.torch, self.F = torch, F
        self.names = list(params)
        self.tensors = [torch.tensor(params[k]).requires_grad_(True) for k in self.names]
        self.act = torch.relu if activation == "relu" else torch.tanh

    def loss(self, x, y):
        """The mean cross-entropy of a batch of torch tensors (builds the autograd graph)."""
        ts = self.tensors
        h = x
        for i in range(0, len(ts) - 2, 2):
            h = self.act(self.torch.addmm(ts[i + 1], h, ts[i]))
        logits = self.torch.addmm(ts[-1], h, ts[-2])
        return self.F.cross_entropy(logits, y)

    def step(self, x, y, lr: float):
        """One SGD step on torch tensors ``x`` (float32) and ``y`` (int64); returns the loss."""
        loss = self.loss(x, y)
        loss.backward()
        with self.torch.no_grad():
            for p in self.tensors:
                p.add_(p.grad, alpha=-lr)
                p.grad = None
        return loss

    def params(self) -> dict[str, np.ndarray]:
        """A NumPy copy of the current parameters."""
        return {k: t.detach().numpy().copy() for k, t in zip(self.names, self.tensors, strict=True)}


def mlp_trainer(params: dict[str, np.ndarray], activation: str, x: np.ndarray, y: np.ndarray):
    """A :class:`TorchMLP` and a ``step(lr) -> float`` on the fixed batch ``x, y``."""
    import torch

    model = TorchMLP(params, activation)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def step(lr: float) -> float:
        return model.step(xt, yt, lr)

    return model, step


def epoch_trainer(params: dict[str, np.ndarray], activation: str, xs: np.ndarray,
                  ys: np.ndarray, batch: int):
    """A :class:`TorchMLP` and ``epoch(lr, seed)``: a Python loop over one shuffled epoch.

    The shuffle (NumPy, from ``seed``) and the gathering of each batch (``X[idx]``) are inside
    the timed call, as in a user's training loop.
    """
    import torch

    model = TorchMLP(params, activation)
    xt, yt = torch.from_numpy(xs), torch.from_numpy(ys)

    def epoch(lr: float, seed: int):
        loss = None
        for idx in epoch_batches(len(xs), batch, seed):
            it = torch.from_numpy(idx)
            loss = model.step(xt[it], yt[it], lr)
        return loss

    return model, epoch


def _gelu_formula(torch, z):
    return 0.5 * z * (1.0 + torch.tanh(GELU_C0 * (z + GELU_C1 * z ** 3)))


def gelu_fb(z: np.ndarray, g: np.ndarray, builtin: bool):
    """A callable returning ``(out, dz)``: tanh-GELU forward and backward with cotangent ``g``.

    Args:
        z, g: float32 arrays of the same shape.
        builtin: use ``F.gelu(z, approximate="tanh")`` instead of the written-out formula.
    """
    import torch
    import torch.nn.functional as F

    zt = torch.tensor(z).requires_grad_(True)
    gt = torch.tensor(g)

    def run():
        out = F.gelu(zt, approximate="tanh") if builtin else _gelu_formula(torch, zt)
        out.backward(gt)
        dz = zt.grad
        zt.grad = None
        return out, dz

    return run
