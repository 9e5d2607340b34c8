"""``grad`` through the layers and structural ops (second and third derivatives of their
rules), against ``torch.func`` in float64 on the numpy target.

Each model takes ``grad`` of a scalar through a layer with respect to an input and a param,
and :func:`tests.harness.layer_checks.check_entries` compares forward, loss_and_grad, jvp,
vjp and hvp with torch, whose function takes the same derivatives with ``torch.func.grad``
(which composes with the outer transforms). So ``loss_and_grad`` differentiates each rule's
VJP again, and ``hvp`` once more: the rules of layernorm, softmax, logsumexp and max
reductions, the scan of an rnn, causal attention's masking slices, conv1d's im2col and an
embedding's gather, to the third order.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import gradc
from tests.harness.layer_checks import check_entries, weights

torch = pytest.importorskip("torch")
F = torch.nn.functional
func = torch.func

LOSS = "loss = sum(o1 * o1 * w_o1) + sum(o2 * o2 * w_o2)\n"

NORM = """
input x : f64[B, 4]
input w_o1 : f64[B, 4]
input w_o2 : f64[4, 5]
layer fc = dense(4 -> 5)
layer ln = layernorm(5)
h = fc(x)
y = ln(tanh(h))
s = sum(softmax(y, axis=-1) * y) + sum(logsumexp(y, axis=1)) + sum(max(h, axis=1))
output o1 = grad(s, x)
output o2 = grad(s, fc.W)
""" + LOSS


def layer_norm(z, gamma, beta):
    """Spelled out: ``F.layer_norm``'s forward-mode derivative of its double backward is
    wrong in torch (hvp through a grad of it: errors of 5-15 %, where this formula and
    central differences of gradc's loss_and_grad agree with gradc's hvp to 1e-8)."""
    m = z.mean(-1, keepdim=True)
    v = ((z - m) ** 2).mean(-1, keepdim=True)
    return (z - m) / torch.sqrt(v + 1e-5) * gamma + beta


def norm_torch(p, i):
    def s(x, w):
        h = x @ w + p["fc.b"]
        y = layer_norm(torch.tanh(h), p["ln.gamma"], p["ln.beta"])
        return ((torch.softmax(y, -1) * y).sum() + torch.logsumexp(y, 1).sum()
                + h.amax(1).sum())
    o1, o2 = func.grad(s, argnums=(0, 1))(i["x"], p["fc.W"])
    return {"o1": o1, "o2": o2}


SEQ = """
input x : f64[B, 3, 4]
input w_o1 : f64[B, 3, 4]
input w_o2 : f64[5, 5]
layer r = rnn(4 -> 5)
layer at = attention(5, 1, causal=true)
s = sum(tanh(at(r(x))) ^ 2)
output o1 = grad(s, x)
output o2 = grad(s, r.Wh)
""" + LOSS


def seq_torch(p, i):
    def s(x, wh):
        h, hs = torch.zeros(x.shape[0], 5, dtype=x.dtype), []
        for t in range(x.shape[1]):
            h = torch.tanh(x[:, t] @ p["r.Wx"] + h @ wh + p["r.b"])
            hs.append(h)
        z = torch.stack(hs, 1)
        q, k, v = z @ p["at.Wq"], z @ p["at.Wk"], z @ p["at.Wv"]
        scores = q @ k.transpose(1, 2) / math.sqrt(5)
        mask = torch.ones(3, 3, dtype=torch.bool).tril()
        att = torch.softmax(scores.masked_fill(~mask, -torch.inf), -1) @ v
        return (torch.tanh(att @ p["at.Wo"]) ** 2).sum()
    o1, o2 = func.grad(s, argnums=(0, 1))(i["x"], p["r.Wh"])
    return {"o1": o1, "o2": o2}


CONV = """
input x : f64[B, 2, 7]
input ids : i64[B, 3]
input w_o1 : f64[B, 2, 7]
input w_o2 : f64[6, 3]
layer c = conv1d(2 -> 3, 3, stride=2, pad=1)
layer emb = embedding(6 -> 3)
s = sum(softplus(c(x)) ^ 2) + sum(sum(sin(emb(ids)), axis=2) * mean(c(x), axis=1)[:, 0:3])
output o1 = grad(s, x)
output o2 = grad(s, emb.W)
""" + LOSS


def conv_torch(p, i):
    def s(x, e):
        c = F.conv1d(x, p["c.W"], p["c.b"], stride=2, padding=1)
        return ((F.softplus(c) ** 2).sum()
                + (torch.sin(e[i["ids"]]).sum(2) * c.mean(1)[:, 0:3]).sum())
    o1, o2 = func.grad(s, argnums=(0, 1))(i["x"], p["emb.W"])
    return {"o1": o1, "o2": o2}


CASES = {"norm": (NORM, norm_torch, {"B": 3}), "seq": (SEQ, seq_torch, {"B": 2}),
         "conv": (CONV, conv_torch, {"B": 2})}


@pytest.mark.parametrize("name", sorted(CASES))
def test_grad_through_layers_matches_torch(name):
    src, fn, dims = CASES[name]
    model = gradc.compile_string(src, name, target="numpy", wrt=("x",))
    rng = np.random.default_rng(17)
    params = {k: v + 0.3 * rng.standard_normal(v.shape)
              for k, v in model.init_params(seed=17).items()}
    sig = model.module.SIGNATURE["inputs"]
    inputs = {k: rng.standard_normal(tuple(dims.get(str(d), d) for d in shape))
              for k, (_, shape) in sig.items() if k in ("x",)}
    if "ids" in sig:
        inputs["ids"] = rng.integers(0, 6, (dims["B"], 3))
    inputs.update(weights(model, dims, rng))
    check_entries(model, fn, params, inputs, ("x",), seed=17, tol=1e-10)
