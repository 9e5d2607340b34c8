"""Finite-difference checks of a compiled model's derivatives (``gradc check``, tests).

For each differentiable variable v (every param and every ``wrt`` input) and each of a few
random unit directions d that move v only, central differences in float64

    fd = (f(v + h d) - f(v - h d)) / (2 h),   h = eps * max(1, rms(v))

are compared with what the model computes:

* ``loss_and_grad``: fd of the loss against ``<grad_v, d>``;
* ``vjp``: fd of ``<c, outputs>`` for a random cotangent c against ``<vjp(c)_v, d>``;
* ``jvp``: fd of the outputs (all elements) against ``jvp`` with tangent d on v.

The error of one comparison is ``|fd - an| / max(|fd|, |an|, floor)`` (norms for jvp) with
``floor = FLOOR * max(1, |f|)``: relative where the derivative is not tiny, and an absolute
test scaled to the function's size where it is (a gradient that should be 0 is then accepted
when it is 0 up to rounding). A check passes when its worst error over the directions is at
most ``tol``; NaN or inf anywhere fails it. Compile models in f64 for a meaningful check.

A model with dropout draws its masks from a noise input: every ``loss_and_grad`` call of
one check (the analytic gradient and each finite-difference evaluation) passes the same
``seed``, so f is one deterministic function of the variables, the same mask throughout
(without it each call would draw the next mask and the differences would compare two
different functions). The finite differences use ``loss_and_grad``'s loss, which is the
train-mode loss (dropout on, batchnorm on batch statistics) that its gradient is of;
``forward``, ``vjp`` and ``jvp`` run in eval mode and take no noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: the relative size below which a derivative is compared in absolute terms (see above).
FLOOR = 1e-4


@dataclass(frozen=True)
class CheckResult:
    """The outcome of checking one entry for one variable.

    Attributes:
        entry: ``"loss_and_grad"``, ``"vjp"`` or ``"jvp"``.
        name: the param or input name.
        shape: its concrete shape.
        max_error: the worst error over the directions (inf when something was NaN/inf).
        ok: ``max_error <= tol``.
    """

    entry: str
    name: str
    shape: tuple[int, ...]
    max_error: float
    ok: bool


def _error(fd, an, scale: float) -> float:
    fd, an = np.asarray(fd, dtype=np.float64), np.asarray(an, dtype=np.float64)
    if not (np.all(np.isfinite(fd)) and np.all(np.isfinite(an))):
        return float("inf")
    num = float(np.linalg.norm((fd - an).ravel()))
    den = max(float(np.linalg.norm(fd.ravel())), float(np.linalg.norm(an.ravel())),
              FLOOR * max(1.0, scale))
    return num / den


def _outputs_dot(outs: dict, cots: dict) -> float:
    return float(sum(np.vdot(np.asarray(outs[k], np.float64), cots[k]) for k in cots))


class _Model:
    """The calls a check makes, with one variable replaced by a shifted copy."""

    def __init__(self, model, inputs: dict, params: dict, seed: int):
        sig = model.signature
        self.model, self.inputs, self.params = model, dict(inputs), dict(params)
        # one dropout mask for the whole check (passed only where there is noise to draw)
        self.noise = {"seed": seed} if sig.get("noise") else {}
        self.has_loss = bool(sig.get("loss"))
        self.has_outputs = bool(sig.get("outputs"))
        self.variables = {k: (self.params if k in params else self.inputs)[k]
                          for k in sig["tangents"]}

    def shifted(self, name: str, delta):
        """(params, inputs) with ``delta`` added to variable ``name`` (fresh arrays)."""
        params, inputs = dict(self.params), dict(self.inputs)
        where = params if name in params else inputs
        base = where[name]
        where[name] = np.array(base + delta, dtype=base.dtype, order="C")
        return params, inputs

    def loss_and_grad(self, params, inputs) -> tuple:
        """The train-mode loss and its gradients, dropout masks drawn from the check's seed."""
        return self.model.loss_and_grad(params, **self.noise, **inputs)

    def loss(self, params, inputs) -> float:
        return float(self.loss_and_grad(params, inputs)[0])

    def outputs(self, params, inputs) -> dict:
        return self.model.forward(params, **inputs)


def check_model(model, inputs: dict, params: dict, directions: int = 3, eps: float = 1e-6,
                tol: float = 1e-5, seed: int = 0) -> list[CheckResult]:
    """Check ``loss_and_grad``, ``vjp`` and ``jvp`` of ``model`` at (params, inputs).

    Args:
        model: a :class:`gradc.api.Model` (or anything with its methods and ``signature``),
            ideally compiled with ``dtype="f64"`` and ``wrt`` naming the float inputs to check.
        inputs: every input the model needs, as arrays.
        params: the point to check at (not modified).
        directions: random directions per variable.
        eps: relative finite-difference step.
        tol: the largest accepted error.
        seed: seeds the directions and cotangents, and draws the one dropout mask that
            every ``loss_and_grad`` call of the check uses.

    Returns:
        One :class:`CheckResult` per (entry, variable): loss_and_grad results first, then
        vjp, then jvp; entries the model lacks (no loss, no outputs) are left out.
    """
    m = _Model(model, inputs, params, seed)
    rng = np.random.default_rng(seed)
    ref = _reference(m, rng)
    errs: dict[tuple[str, str], list[float]] = {}
    for name, value in m.variables.items():
        value = np.asarray(value)
        h = eps * max(1.0, float(np.sqrt(np.mean(np.square(value)))) if value.size else 1.0)
        for _ in range(directions):
            d = rng.standard_normal(value.shape)
            d /= max(float(np.linalg.norm(d)), 1e-300)
            for entry, err in _directional(m, ref, name, d, h):
                errs.setdefault((entry, name), []).append(err)
    order = {"loss_and_grad": 0, "vjp": 1, "jvp": 2}
    results = []
    for (entry, name), es in sorted(errs.items(), key=lambda kv: order[kv[0][0]]):
        worst = max(es) if es else 0.0
        worst = float("inf") if np.isnan(worst) else worst
        shape = tuple(np.shape(m.variables[name]))
        results.append(CheckResult(entry, name, shape, worst, bool(worst <= tol)))
    return results


def _reference(m: _Model, rng) -> dict:
    """What every direction compares against: gradients, outputs, cotangents, scales."""
    ref: dict = {"grads": {}, "outs": {}, "cots": {}, "vjp": {}, "loss": 0.0}
    if m.has_loss:
        loss, ref["grads"] = m.loss_and_grad(m.params, m.inputs)
        ref["loss"] = float(loss)
    if m.has_outputs:
        ref["outs"] = outs = m.outputs(m.params, m.inputs)
        ref["cots"] = {k: rng.standard_normal(np.shape(v)) for k, v in outs.items()}
        ref["vjp"] = m.model.vjp(m.params, ref["cots"], **m.inputs)
    ref["scale_out"] = max((float(np.max(np.abs(v))) for v in ref["outs"].values()
                            if np.size(v)), default=1.0)
    ref["scale_vjp"] = abs(_outputs_dot(ref["outs"], ref["cots"]))
    return ref


def _directional(m: _Model, ref: dict, name: str, d, h: float) -> list[tuple[str, float]]:
    """The errors of each entry for variable ``name`` moved along ``d`` by ``±h``."""
    plus, minus = m.shifted(name, h * d), m.shifted(name, -h * d)
    out = []
    if m.has_loss:
        fd = (m.loss(*plus) - m.loss(*minus)) / (2 * h)
        an = float(np.vdot(np.asarray(ref["grads"][name], np.float64), d))
        out.append(("loss_and_grad", _error(fd, an, abs(ref["loss"]))))
    if m.has_outputs:
        outs, op, om = ref["outs"], m.outputs(*plus), m.outputs(*minus)
        fd_out = {k: (np.asarray(op[k], np.float64) - np.asarray(om[k], np.float64)) / (2 * h)
                  for k in outs}
        an = float(np.vdot(np.asarray(ref["vjp"][name], np.float64), d))
        out.append(("vjp", _error(_outputs_dot(fd_out, ref["cots"]), an, ref["scale_vjp"])))
        tangents = {k: np.zeros_like(np.asarray(v)) for k, v in m.variables.items()}
        tangents[name] = d.astype(np.asarray(m.variables[name]).dtype)
        _, jt = m.model.jvp(m.params, tangents, **m.inputs)
        fd_all = np.concatenate([fd_out[k].ravel() for k in outs])
        an_all = np.concatenate([np.asarray(jt[k], np.float64).ravel() for k in outs])
        out.append(("jvp", _error(fd_all, an_all, ref["scale_out"])))
    return out


def format_results(results: list[CheckResult], tol: float) -> str:
    """A table: entry, name, shape, max error, ok/FAIL; then a summary line."""
    rows = [(r.entry, r.name, "[" + ", ".join(map(str, r.shape)) + "]",
             f"{r.max_error:.2e}", "ok" if r.ok else "FAIL") for r in results]
    head = ("entry", "name", "shape", "max rel error", "status")
    widths = [max(len(x[i]) for x in rows + [head]) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
             for row in [head] + rows]
    failed = sum(not r.ok for r in results)
    if not results:
        lines = ["nothing to check: the model has no params or wrt inputs, or no loss and "
                 "no outputs"]
    elif failed:
        lines.append(f"FAILED: {failed} of {len(results)} checks above tolerance {tol:g}")
    else:
        lines.append(f"ok: all {len(results)} checks within tolerance {tol:g}")
    return "\n".join(lines)
