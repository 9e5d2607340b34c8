"""Random small models with nested ``grad`` inside, each written in the model language and
in PyTorch (``autograd.grad(create_graph=True)``) from one seeded draw.

A draw: an input ``t : f64[B, k]`` (k = 1 or 2), a one- or two-layer net of random
activations, and a chain of 1 to 3 derivatives, each of the previous one's sum (or of one
column of it) with respect to ``t``, the first layer's weight ``W1`` or the pre-activation
value ``h``; the outputs are every derivative of the chain, the loss mixes the last one
and the net's value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: activation: (model-language form of ``z``, torch function).
ACTS = {
    "tanh": ("tanh({})", lambda z, torch: torch.tanh(z)),
    "sin": ("sin({})", lambda z, torch: torch.sin(z)),
    "sigmoid": ("sigmoid({})", lambda z, torch: torch.sigmoid(z)),
    "softplus": ("softplus({})", lambda z, torch: torch.nn.functional.softplus(z)),
    "gauss": ("exp(-({}) ^ 2)", lambda z, torch: torch.exp(-z ** 2)),
    "swish": ("{0} * sigmoid({0})", lambda z, torch: z * torch.sigmoid(z)),
}


@dataclass(frozen=True)
class GradModel:
    """One draw: its source text and what the torch side needs to compute the same."""

    seed: int
    text: str
    k: int
    acts: tuple[str, ...]
    chain: tuple[tuple[int | None, str], ...]   # (column or None, variable) per grad

    def torch_outputs(self, torch, params: dict, t):
        """(outputs, loss) in torch for ``params`` (tensors) and the input ``t``."""
        h = t @ params["W1"] + params["b1"]
        z = ACTS[self.acts[0]][1](h, torch)
        if len(self.acts) == 2:
            z = ACTS[self.acts[1]][1](z @ params["W2"], torch)
        u = z @ params["Wo"]
        prev, outs = u, {}
        for i, (col, var) in enumerate(self.chain):
            s = (prev[:, col] if col is not None else prev).sum()
            wrt = {"t": t, "W1": params["W1"], "h": h}[var]
            prev, = torch.autograd.grad(s, wrt, create_graph=True)
            outs[f"d{i + 1}"] = prev
        loss = (prev ** 2).mean() + (u ** 2).mean()
        return outs, loss


def generate(seed: int) -> GradModel:
    """The model of ``seed``."""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 3))
    width = int(rng.integers(2, 5))
    acts = tuple(rng.choice(sorted(ACTS), size=int(rng.integers(1, 3))))
    lines = [f"input t : f64[B, {k}]",
             f"param W1 : f64[{k}, {width}] ~ normal(1.0)",
             f"param b1 : f64[{width}] ~ normal(0.5)",
             f"param Wo : f64[{width}, 1] ~ normal(1.0)",
             "h = t @ W1 + b1",
             f"z = {ACTS[acts[0]][0].format('h')}"]
    if len(acts) == 2:
        lines.insert(3, f"param W2 : f64[{width}, {width}] ~ normal(0.7)")
        lines.append(f"z = {ACTS[acts[1]][0].format('(z @ W2)')}")
    lines.append("d0 = z @ Wo")
    chain, cols = [], 1
    for i in range(int(rng.integers(1, 4))):
        var = str(rng.choice(["t", "W1", "h"]))
        col = int(rng.integers(0, cols)) if cols > 1 and rng.random() < 0.5 else None
        s = f"d{i}[:, {col}]" if col is not None else f"d{i}"
        lines.append(f"d{i + 1} = grad(sum({s}), {var})")
        lines.append(f"output d{i + 1}")
        chain.append((col, var))
        cols = {"t": k, "W1": width, "h": width}[var]
    n = len(chain)
    lines.append(f"loss = mean(d{n} ^ 2) + mean(d0 ^ 2)")
    return GradModel(seed, "\n".join(lines) + "\n", k, acts, tuple(chain))
