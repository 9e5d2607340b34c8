"""One model against a PyTorch function of the same params and inputs, in float64, through
``forward``, ``loss_and_grad``, ``jvp``, ``vjp`` and ``hvp`` (torch.autograd and
torch.func compute the expected values independently of gradc)."""

from __future__ import annotations

import numpy as np
import torch

from oracles import rel_err


def _t(a) -> torch.Tensor:
    return torch.tensor(np.asarray(a, np.float64))


def check_against_torch(model, params: dict, inputs: dict, torch_fn, seed: int,
                        tol: float = 1e-12) -> None:
    """Compare ``model`` (compiled in f64) with ``torch_fn(params, inputs) -> (outputs
    dict, loss)`` on torch tensors; random directions come from ``seed``."""
    rng = np.random.default_rng(seed)
    names = list(params)
    tin = {k: _t(v) if np.asarray(v).dtype.kind == "f" else torch.tensor(v)
           for k, v in inputs.items()}

    def outs(*flat):
        return torch_fn(dict(zip(names, flat)), tin)

    primals = tuple(_t(params[k]) for k in names)
    want_out, want_loss = outs(*primals)
    got_out = model.forward(params, **inputs)
    for k, v in want_out.items():
        assert rel_err(got_out[k], v.detach().numpy()) < tol, f"forward {k} (seed {seed})"

    loss, grads = model.loss_and_grad(params, **inputs)
    leaves = tuple(p.clone().requires_grad_(True) for p in primals)
    t_loss = outs(*leaves)[1]
    t_grads = torch.autograd.grad(t_loss, leaves)
    assert abs(loss - t_loss.item()) <= tol * max(1.0, abs(loss)), f"loss (seed {seed})"
    for k, tg in zip(names, t_grads):
        assert rel_err(grads[k], tg.numpy()) < tol, f"grad {k} (seed {seed})"

    tangents = {k: rng.standard_normal(np.shape(params[k])) for k in names}
    _, got_tan = model.jvp(params, tangents, **inputs)
    _, want_tan = torch.func.jvp(lambda *f: outs(*f)[0], primals,
                                 tuple(_t(tangents[k]) for k in names))
    for k, v in want_tan.items():
        assert rel_err(got_tan[k], v.numpy()) < tol, f"jvp {k} (seed {seed})"

    cots = {k: rng.standard_normal(tuple(v.shape)) for k, v in want_out.items()}
    got_vjp = model.vjp(params, cots, **inputs)
    leaves = tuple(p.clone().requires_grad_(True) for p in primals)
    o = outs(*leaves)[0]
    dot = sum((o[k] * _t(c)).sum() for k, c in cots.items())
    for k, tg in zip(names, torch.autograd.grad(dot, leaves)):
        assert rel_err(got_vjp[k], tg.numpy()) < tol, f"vjp {k} (seed {seed})"

    vector = {k: rng.standard_normal(np.shape(params[k])) for k in names}
    got_hvp = model.hvp(params, vector, **inputs)
    grad_fn = torch.func.grad(lambda *f: outs(*f)[1], argnums=tuple(range(len(names))))
    _, want_hvp = torch.func.jvp(grad_fn, primals, tuple(_t(vector[k]) for k in names))
    for k, hv in zip(names, want_hvp):
        assert rel_err(got_hvp[k], hv.numpy()) < tol, f"hvp {k} (seed {seed})"
