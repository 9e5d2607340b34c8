"""The workloads of the thread-budget benchmark (:mod:`benchmarks.busy`): one float32 SGD
``train_step`` each, for gradc and the same step written for PyTorch eager.

| workload | model | batch |
|---|---|---|
| cnn | examples/cnn.grad: 8x8 images, conv 8 and 16 channels | 64 |
| cnn28 | models/cnn28.grad: 28x28 images, conv 16 and 32 channels | 64 |
| cnn_bn | models/cnn_bn.grad: 8x8 images, conv-batchnorm-relu-pool x2, dropout 0.25 | 64 |
| char_rnn | examples/char_rnn.grad: embedding 16, tanh rnn 64, 32 sequences of 32 | 32 |
| mlp_256 | models/mlp_256.grad: 784-256-256-10 relu | 128 |
| mlp_large | models/mlp_large.grad: 1024-1024-1024-10 relu | 512 |

Data are made with NumPy (seed 0), params are gradc's ``init_params(0)``, and the torch step
starts from a copy of the same numbers. The torch step is written as a careful user would:
``F.conv2d``/``F.batch_norm``/``F.dropout``/``addmm``, ``F.cross_entropy``, ``backward()``,
``p.add_(p.grad, alpha=-lr)`` under ``no_grad`` (running statistics updated by
``F.batch_norm``, as ``nn.BatchNorm2d`` does). ``torch`` is imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
LR = 1e-5  # small: thousands of repeated steps leave the params where they started


@dataclass(frozen=True)
class Workload:
    """A train_step workload: the model file, how its inputs are made, its torch loss."""

    name: str
    path: Path
    batch: int
    describe: str

    def inputs(self) -> dict[str, np.ndarray]:
        """The batch (NumPy, seed 0), named as the model's inputs."""
        rng = np.random.default_rng(0)
        b = self.batch
        if self.name == "char_rnn":
            return {"chars": rng.integers(0, 16, (b, 32)), "next": rng.integers(0, 16, (b, 32))}
        if self.name.startswith("mlp"):
            width = 1024 if self.name == "mlp_large" else 784
            return {"x": rng.standard_normal((b, width)).astype(np.float32),
                    "y": rng.integers(0, 10, b)}
        side = 28 if self.name == "cnn28" else 8
        return {"x": rng.random((b, 1, side, side), dtype=np.float32),
                "y": rng.integers(0, 10, b)}


WORKLOADS = {w.name: w for w in [
    Workload("cnn", ROOT / "examples" / "cnn.grad", 64, "examples/cnn.grad, batch 64"),
    Workload("cnn28", ROOT / "benchmarks" / "models" / "cnn28.grad", 64,
             "28x28 two-conv CNN (16, 32 channels), batch 64"),
    Workload("cnn_bn", ROOT / "benchmarks" / "models" / "cnn_bn.grad", 64,
             "conv-batchnorm-dropout CNN, 8x8, batch 64"),
    Workload("char_rnn", ROOT / "examples" / "char_rnn.grad", 32,
             "examples/char_rnn.grad, 32 sequences of 32"),
    Workload("mlp_256", ROOT / "benchmarks" / "models" / "mlp_256.grad", 128,
             "MLP 784-256-256-10, batch 128"),
    Workload("mlp_large", ROOT / "benchmarks" / "models" / "mlp_large.grad", 512,
             "MLP 1024-1024-1024-10, batch 512"),
]}


def gradc_step(work: Workload):
    """``step()``: one gradc ``train_step`` (SGD, in place) on the workload's batch; and the
    initial params (a copy) for the torch side. Kernels are compiled before it returns."""
    import gradc

    model = gradc.compile(str(work.path), dtype="f32", optimizer="sgd", wait=True)
    params = model.init_params(0)
    start = {k: v.copy() for k, v in params.items()}
    inputs, train_step = work.inputs(), model.train_step

    def step():
        return train_step(params, lr=LR, **inputs)

    return step, start


def _conv_stage(F, x, p, conv, bn, state):
    x = F.conv2d(x, p[f"{conv}.W"], p[f"{conv}.b"], padding=1)
    if bn:
        x = F.batch_norm(x, state[f"{bn}.mean"], state[f"{bn}.var"], p[f"{bn}.gamma"],
                         p[f"{bn}.beta"], training=True, momentum=0.1, eps=1e-5)
    return F.max_pool2d(F.relu(x), 2)


def _torch_loss(torch, F, name, p, t, state):
    """The workload's loss on torch tensors ``t`` with params ``p``."""
    if name == "char_rnn":
        x = p["embed.W"][t["chars"]]                        # [B, T, 16]
        xw = x @ p["cell.Wx"] + p["cell.b"]                 # every x_t Wx at once
        h, hs = torch.zeros(xw.shape[0], xw.shape[2]), []
        for k in range(xw.shape[1]):
            h = torch.tanh(xw[:, k] + h @ p["cell.Wh"])
            hs.append(h)
        logits = torch.stack(hs, 1) @ p["proj.W"] + p["proj.b"]
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), t["next"].reshape(-1))
    if name.startswith("mlp"):
        h = t["x"]
        for i in (1, 2):
            h = torch.relu(torch.addmm(p[f"b{i}"], h, p[f"W{i}"]))
        return F.cross_entropy(torch.addmm(p["b3"], h, p["W3"]), t["y"])
    bn = name == "cnn_bn"
    h = _conv_stage(F, t["x"], p, "conv1", "bn1" if bn else None, state)
    h = _conv_stage(F, h, p, "conv2", "bn2" if bn else None, state).flatten(1)
    if bn:
        h = F.dropout(h, 0.25, training=True)
    return F.cross_entropy(torch.addmm(p["fc.b"], h, p["fc.W"]), t["y"])


def torch_step(work: Workload, start: dict[str, np.ndarray], compiled: bool = False):
    """``step()``: the same SGD step in PyTorch eager (or ``torch.compile``d, inductor)."""
    import torch
    import torch.nn.functional as F

    p = {k: torch.tensor(v).requires_grad_(True) for k, v in start.items()}
    t = {k: torch.from_numpy(v) for k, v in work.inputs().items()}
    state = {f"{bn}.{s}": torch.zeros(n) if s == "mean" else torch.ones(n)
             for bn, n in (("bn1", 16), ("bn2", 32)) for s in ("mean", "var")}

    def loss_and_grads():
        loss = _torch_loss(torch, F, work.name, p, t, state)
        loss.backward()
        return loss

    run = torch.compile(loss_and_grads, dynamic=False) if compiled else loss_and_grads

    def step():
        loss = run()
        with torch.no_grad():
            for v in p.values():
                v.add_(v.grad, alpha=-LR)
                v.grad = None
        return loss

    return step
