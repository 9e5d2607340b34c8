"""Models with ``grad`` inside, each written in the model language and in PyTorch
(``autograd.grad(create_graph=True)``), shared by the tests of every target.

:data:`CASES`: three fixed models (a 1-D oscillator net to the third derivative, a 2-D
Laplacian with a param-gradient penalty and a derivative by a value, a classifier with a
saliency output and input- and weight-gradient penalties), name -> (text, torch function,
the input to differentiate by).

:func:`generate`: random small models from one seeded draw: an input ``t : f64[B, k]``
(k = 1 or 2), a one- or two-layer net of random activations, and a chain of 1 to 3
derivatives, each of the previous one's sum (or of one column of it) with respect to ``t``,
the first layer's weight ``W1`` or the pre-activation value ``h``; the outputs are every
derivative of the chain, the loss mixes the last one and the net's value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

F = torch.nn.functional

# u'' + u = 0 and friends: a tanh net of one coordinate, derivatives to the third order.
OSCILLATOR = """
input t : f64[B, 1]
param W1 : f64[1, 6] ~ normal(1.0)
param b1 : f64[6] ~ normal(0.5)
param W2 : f64[6, 6] ~ normal(0.5)
param b2 : f64[6] ~ normal(0.5)
param W3 : f64[6, 1] ~ normal(1.0)
fn net(z) = tanh(tanh(z @ W1 + b1) @ W2 + b2) @ W3
u = net(t)
du = grad(sum(u), t)
d2u = grad(sum(du), t)
output d1 = du
output d2 = d2u
output d3 = grad(sum(d2u), t)
loss = mean((d2u + u) ^ 2) + mean(du * sin(t)) + mean((net(t * 0) - 1) ^ 2)
"""


def oscillator_torch(p, t):

    def net(z):
        return torch.tanh(torch.tanh(z @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]) @ p["W3"]
    u = net(t)
    du, = torch.autograd.grad(u.sum(), t, create_graph=True)
    d2u, = torch.autograd.grad(du.sum(), t, create_graph=True)
    d3u, = torch.autograd.grad(d2u.sum(), t, create_graph=True)
    loss = ((d2u + u) ** 2).mean() + (du * torch.sin(t)).mean() + ((net(t * 0) - 1) ** 2).mean()
    return {"d1": du, "d2": d2u, "d3": d3u}, loss


# The 2-D Laplacian of a softplus/sigmoid net by slices of the input gradient, a
# gradient-norm penalty on a param and a derivative with respect to a value.
POISSON = """
input x : f64[B, 2]
param W1 : f64[2, 5] ~ normal(1.0)
param b1 : f64[5] ~ normal(0.5)
param W2 : f64[5, 1] ~ normal(1.0)
h = x @ W1 + b1
u = softplus(h) * sigmoid(h) @ W2
g = grad(sum(u), x)
uxx = grad(sum(g[:, 0]), x)[:, 0]
uyy = grad(sum(g[:, 1]), x)[:, 1]
output lap = uxx + uyy
output dh = grad(sum(u ^ 2), h)
loss = mean((uxx + uyy - sum(x, axis=1)) ^ 2) + 0.1 * sum(grad(mean(u), W1) ^ 2)
"""


def poisson_torch(p, x):

    h = x @ p["W1"] + p["b1"]
    u = (F.softplus(h) * torch.sigmoid(h)) @ p["W2"]
    g, = torch.autograd.grad(u.sum(), x, create_graph=True)
    uxx = torch.autograd.grad(g[:, 0].sum(), x, create_graph=True)[0][:, 0]
    uyy = torch.autograd.grad(g[:, 1].sum(), x, create_graph=True)[0][:, 1]
    dh, = torch.autograd.grad((u ** 2).sum(), h, create_graph=True)
    gw, = torch.autograd.grad(u.mean(), p["W1"], create_graph=True)
    loss = ((uxx + uyy - x.sum(1)) ** 2).mean() + 0.1 * (gw ** 2).sum()
    return {"lap": uxx + uyy, "dh": dh}, loss


# A classifier: saliency output, input-gradient (WGAN-GP style) and weight-gradient penalties
# on a cross-entropy with integer labels (pick/unpick and logsumexp twice differentiated).
CRITIC = """
input x : f64[B, 3]
input y : i64[B]
param W1 : f64[3, 4] ~ normal(1.0)
param b1 : f64[4] ~ normal(0.5)
param W2 : f64[4, 3] ~ normal(1.0)
logits = tanh(x @ W1 + b1) @ W2
ce = cross_entropy(logits, y)
gx = grad(sum(logits[:, 0]), x)
output sal = gx
loss = ce + mean((sqrt(sum(gx ^ 2, axis=1) + 1e-3) - 1) ^ 2) + 0.05 * sum(grad(ce, W2) ^ 2)
"""


def critic_torch(p, x, y):

    logits = torch.tanh(x @ p["W1"] + p["b1"]) @ p["W2"]
    ce = F.cross_entropy(logits, y)
    gx, = torch.autograd.grad(logits[:, 0].sum(), x, create_graph=True)
    gw, = torch.autograd.grad(ce, p["W2"], create_graph=True)
    loss = ce + ((torch.sqrt((gx ** 2).sum(1) + 1e-3) - 1) ** 2).mean() + 0.05 * (gw ** 2).sum()
    return {"sal": gx}, loss


CASES = {"oscillator": (OSCILLATOR, oscillator_torch, "t"),
         "poisson": (POISSON, poisson_torch, "x"),
         "critic": (CRITIC, critic_torch, "x")}


#: activation: (model-language form of ``z``, torch function).
ACTS = {
    "tanh": ("tanh({})", torch.tanh),
    "sin": ("sin({})", torch.sin),
    "sigmoid": ("sigmoid({})", torch.sigmoid),
    "softplus": ("softplus({})", F.softplus),
    "gauss": ("exp(-({}) ^ 2)", lambda z: torch.exp(-z ** 2)),
    "swish": ("{0} * sigmoid({0})", lambda z: z * torch.sigmoid(z)),
}


@dataclass(frozen=True)
class GradModel:
    """One draw: its source text and what the torch side needs to compute the same."""

    seed: int
    text: str
    k: int
    acts: tuple[str, ...]
    chain: tuple[tuple[int | None, str], ...]   # (column or None, variable) per grad

    def torch_outputs(self, params: dict, t):
        """(outputs, loss) in torch for ``params`` (tensors) and the input ``t``."""
        h = t @ params["W1"] + params["b1"]
        z = ACTS[self.acts[0]][1](h)
        if len(self.acts) == 2:
            z = ACTS[self.acts[1]][1](z @ params["W2"])
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
