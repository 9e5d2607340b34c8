"""Checks shared by the tests of single layers (tests/ir/test_conv1d.py,
tests/ir/test_causal_attention.py, tests/ir/test_scan.py, tests/ir/test_lstm_gru.py): a
model's derivative entries against PyTorch autograd (``torch.func``) in float64, and the
error text a model gets from the compiler.

:func:`check_entries` runs ``forward``, ``loss_and_grad``, ``jvp``, ``vjp`` and ``hvp`` of a
compiled gradc model and the same computations of ``torch.func`` on a torch function written
independently of gradc (``torch.nn.functional`` layers, or the formula spelled out), with
random tangents, cotangents and Hessian vectors drawn from a seeded generator (the seed is in
every failure message). Every array must be finite and agree to ``tol``, norm-wise relative
(:func:`tests.harness.oracles.rel_err`) to the whole result of its entry.

Convention: the gradc model declares its outputs and ``loss = sum(o1 * o1 * w_o1) + ...``
over every output ``oN``, with ``w_oN`` a float input of the output's shape (not
differentiated); the torch side is the outputs alone and the loss is formed here. A model
with a loss of its own passes the torch spelling of it (``torch_loss``).
"""

from __future__ import annotations

import numpy as np
import torch

from gradc.errors import ErrorGroup
from gradc.pipeline import Options, front
from gradc.source import Source
from tests.harness.oracles import arrays, rel_err

func = torch.func


def weights(model, dims: dict, rng) -> dict:
    """The loss weights ``w_<output>`` of the convention above, drawn for ``dims``."""
    sig = model.module.SIGNATURE
    return {f"w_{o}": rng.standard_normal(tuple(dims.get(d, d) for d in shape))
            for o, (_, shape) in sig["outputs"].items()}


def check_entries(model, torch_fn, params: dict, inputs: dict, wrt: tuple, seed: int,
                  tol: float = 1e-9, torch_loss=None) -> None:
    """Compare the five entries of ``model`` with ``torch_fn(prm, inp) -> {output: tensor}``
    (``prm``/``inp``: torch tensors by gradc name) at ``params``, ``inputs``; ``wrt`` are
    the float inputs the model was compiled to differentiate. The loss is
    ``torch_loss(outputs, inp)`` when given, else the convention's weighted sum."""
    rng = np.random.default_rng(seed)
    tag = f"seed {seed}"
    keys = list(params) + list(wrt)
    t = {k: torch.tensor(v) for k, v in {**params, **inputs}.items()}

    def outs(primals: tuple) -> dict:
        by = dict(zip(keys, primals))
        return torch_fn({k: by[k] for k in params},
                        {**{k: t[k] for k in inputs}, **{k: by[k] for k in wrt}})

    def loss(primals: tuple):
        o = outs(primals)
        if torch_loss is not None:
            return torch_loss(o, {k: t[k] for k in inputs})
        return sum((o[n] * o[n] * t[f"w_{n}"]).sum() for n in o)

    primals = tuple(t[k] for k in keys)
    problems = []

    def close(label: str, got: dict, want: dict) -> None:
        """Each array of an entry's result relative to the norm of the whole result (an
        array that is 0 in exact arithmetic, e.g. the query weights' Hessian block at T = 1,
        is rounding noise on each side)."""
        want = {k: np.asarray(v.detach().numpy() if isinstance(v, torch.Tensor) else v)
                for k, v in want.items()}
        whole = float(np.sqrt(sum(np.sum(v * v) for v in want.values())))
        for k, v in want.items():
            err = rel_err(got[k], v, floor=whole)
            if not err <= tol:
                problems.append(f"{label} {k}: relative error {err:.3g} > {tol:g}")

    want = outs(primals)
    close("forward", model.forward(params, **inputs), want)

    got_loss, got_grads = model.loss_and_grad(params, **inputs)
    close("loss", {"loss": got_loss}, {"loss": loss(primals)})
    close("loss_and_grad", got_grads, dict(zip(keys, func.grad(loss)(primals))))

    leaves = {**params, **inputs}
    tangents = {k: rng.standard_normal(np.shape(leaves[k])) for k in keys}
    _, got_tans = model.jvp(params, tangents, **inputs)
    _, want_tans = func.jvp(outs, (primals,), (tuple(torch.tensor(tangents[k]) for k in keys),))
    close("jvp", got_tans, want_tans)

    cot = {n: rng.standard_normal(tuple(o.shape)) for n, o in want.items()}
    _, pullback = func.vjp(outs, primals)
    (want_vjp,) = pullback({n: torch.tensor(c) for n, c in cot.items()})
    close("vjp", model.vjp(params, cot, **inputs), dict(zip(keys, want_vjp)))

    vector = {k: rng.standard_normal(np.shape(leaves[k])) for k in keys}
    _, want_hv = func.jvp(func.grad(loss), (primals,),
                          (tuple(torch.tensor(vector[k]) for k in keys),))
    close("hvp", model.hvp(params, vector, **inputs), dict(zip(keys, want_hv)))
    assert not problems, f"[{tag}]\n  " + "\n  ".join(problems)


#: the entries :func:`same_numbers` compares by default
ENTRIES = ("forward", "loss_and_grad", "jvp", "vjp", "hvp", "train_step", "train_epoch")


def same_numbers(model, other, params: dict, inputs: dict, seed: int, tol: float = 1e-13,
                 entries: tuple = ENTRIES) -> None:
    """``model`` and ``other`` (the same text compiled for two targets) agree to ``tol``
    on ``entries`` (train_step, train_epoch: the returned loss and the updated params, the
    epoch in minibatches of 2; directions drawn from ``seed``)."""
    rng = np.random.default_rng(seed)
    tangents = {k: rng.standard_normal(np.shape(v)) for k, v in params.items()}
    cot = {k: rng.standard_normal(np.shape(v)) for k, v in
           other.forward(params, **inputs).items()}
    calls = {"forward": ((), {}), "loss_and_grad": ((), {}), "jvp": ((tangents,), {}),
             "vjp": ((cot,), {}), "hvp": ((tangents,), {}), "train_step": ((0.1,), {}),
             "train_epoch": ((0.1,), {"batch_size": 2})}
    for entry in entries:
        args, options = calls[entry]
        copies = [{k: np.array(v) for k, v in params.items()} for _ in range(2)]
        got, want = ((getattr(m, entry)(p, *args, **options, **inputs), p)
                     for m, p in zip((model, other), copies))
        for g, w in zip(arrays(got), arrays(want), strict=True):
            assert rel_err(g, w) < tol, f"{entry} (seed {seed})"


def front_error(src: str, filename: str = "e.grad") -> str:
    """The errors of lowering ``src`` as the user reads them (fails if it lowers)."""
    try:
        front(Source(src, filename), Options.make())
    except ErrorGroup as err:
        return str(err)
    raise AssertionError("no error")
