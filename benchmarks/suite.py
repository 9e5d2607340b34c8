"""The timed workloads: each builds its sides (gradc, peers, GEMM floor), checks them, times them.

Every side is checked once before timing, on its own fresh copy of the shared parameters:

* MLP steps: the loss of one SGD step (lr 0.1) against a float64 NumPy oracle, and the parameter
  update ``after - before`` against ``-lr * grad`` (normwise relative error, worst parameter).
* epoch: the full-data loss before and after one epoch (lr 0.1) -- informational, the shuffles
  of the sides differ.
* gelu_fb: ``out`` and ``dz`` against float64 NumPy, normwise relative error; gradc must be
  within 1e-6.

Then the timed calls continue from the checked state with a small learning rate.
"""

from __future__ import annotations

import itertools

import numpy as np

from benchmarks import gradc_side, peers_jax, peers_torch, reference
from benchmarks.harness import Row, Side, TimingConfig, apply_ratios, time_sides
from benchmarks.workloads import (
    CHECK_LR,
    EPOCH,
    EPOCH_LR,
    EPOCH_SAMPLES,
    GELU_MODEL,
    GELU_TARGETS,
    GELU_TOLERANCE,
    MLP,
    MODELS,
    TIMING_LR,
    init_params,
    make_batch,
    make_digits,
    make_gelu_data,
)

#: Check tolerances of one float32 SGD step against the float64 oracle.
LOSS_TOL, UPDATE_TOL = 1e-4, 1e-3


def _scalar(value) -> float:
    """A Python float from a float, NumPy, JAX or torch (possibly requires_grad) scalar."""
    detach = getattr(value, "detach", None)
    return float(detach() if detach else value)


def _finish(rows: list[Row], checks: dict[str, str]) -> list[Row]:
    for row in rows:
        row.check = checks.get(row.side, "")
    apply_ratios(rows)
    return rows


def run_mlp(spec: MLP, cfg: TimingConfig) -> list[Row]:
    """Time one SGD step of an MLP workload for gradc, torch eager, jax.jit and the GEMM floor."""
    params = init_params(spec.sizes)
    x, y = make_batch(spec.sizes, spec.batch)
    checks: dict[str, str] = {}

    def side(name: str, kind: str, make) -> Side:
        def factory():
            trainer, step = make()
            before = trainer.params()
            loss = step(CHECK_LR)
            loss_err, upd_err = reference.check_step(before, trainer.params(), _scalar(loss),
                                                     x, y, spec.activation, CHECK_LR)
            good = loss_err <= LOSS_TOL and upd_err <= UPDATE_TOL
            checks[name] = f"{'ok' if good else 'BAD'} loss {loss_err:.1e} upd {upd_err:.1e}"
            return lambda: step(TIMING_LR)
        return Side(name, factory, kind, spec.targets.get(name, ""))

    sides = [
        side("gradc", "gradc", lambda: gradc_side.mlp_trainer(spec.path, params, x, y)),
        side("torch eager", "peer",
             lambda: peers_torch.mlp_trainer(params, spec.activation, x, y)),
        side("jax.jit", "peer", lambda: peers_jax.mlp_trainer(params, spec.activation, x, y)),
        Side("GEMM floor (numpy)", lambda: reference.gemm_floor(spec.sizes, spec.batch),
             "floor", spec.targets.get("floor", "")),
    ]
    return _finish(time_sides(spec.name, sides, cfg), checks)


def run_epoch(cfg: TimingConfig) -> list[Row]:
    """Time one shuffled epoch: gradc ``train_epoch`` vs Python loops of torch and jax steps."""
    spec = EPOCH
    params = init_params(spec.sizes)
    xs, ys = make_digits()
    checks: dict[str, str] = {}
    start = reference.mlp_loss(params, xs, ys, spec.activation)

    def side(name: str, kind: str, make) -> Side:
        def factory():
            trainer, epoch = make()
            epoch(CHECK_LR, 0)
            end = reference.mlp_loss(trainer.params(), xs, ys, spec.activation)
            checks[name] = f"{'ok' if end < 0.8 * start else 'BAD'} loss {start:.3f}->{end:.3f}"
            seeds = itertools.count(1)
            return lambda: epoch(EPOCH_LR, next(seeds))
        return Side(name, factory, kind, spec.targets.get(name, ""))

    def gradc_make():
        return gradc_side.epoch_trainer(spec.path, params, xs, ys, spec.batch)

    sides = [
        side("gradc", "gradc", gradc_make),
        side("torch loop", "peer",
             lambda: peers_torch.epoch_trainer(params, spec.activation, xs, ys, spec.batch)),
        side("jax.jit loop", "peer",
             lambda: peers_jax.epoch_trainer(params, spec.activation, xs, ys, spec.batch)),
        Side("GEMM floor (numpy)",
             lambda: reference.gemm_floor_epoch(spec.sizes, EPOCH_SAMPLES, spec.batch), "floor"),
    ]
    return _finish(time_sides("epoch", sides, cfg), checks)


def run_gelu(cfg: TimingConfig) -> list[Row]:
    """Time tanh-GELU forward+backward on 4096x1024: gradc vjp vs torch (two ways) and jax."""
    z, g = make_gelu_data()
    ref_out, ref_dz = reference.gelu_and_grad(z, g)
    path = MODELS / GELU_MODEL
    checks: dict[str, str] = {}

    def verdict(name: str, out, dz, strict: bool) -> None:
        e_out = reference.normwise_rel_error(np.asarray(out), ref_out)
        e_dz = reference.normwise_rel_error(np.asarray(dz), ref_dz)
        word = ("ok" if max(e_out, e_dz) <= GELU_TOLERANCE else "BAD") if strict else "info"
        checks[name] = f"{word} out {e_out:.1e} dz {e_dz:.1e}"

    def gradc_vjp():
        fb = gradc_side.gelu_forward_vjp(path, z, g)
        verdict("gradc vjp", *fb(), strict=True)
        return gradc_side.gelu_vjp(path, z, g)

    def gradc_both():
        return gradc_side.gelu_forward_vjp(path, z, g)

    def peer(name: str, make):
        def factory():
            run = make()
            out, dz = run()
            to_np = getattr(out, "detach", None)
            out = out.detach().numpy() if to_np else out
            verdict(name, out, np.asarray(dz), strict=False)
            return run
        return Side(name, factory, "peer", GELU_TARGETS.get(name, ""))

    sides = [
        Side("gradc vjp", gradc_vjp, "gradc"),
        Side("gradc forward+vjp", gradc_both, "info"),
        peer("torch formula", lambda: peers_torch.gelu_fb(z, g, builtin=False)),
        peer("torch builtin gelu", lambda: peers_torch.gelu_fb(z, g, builtin=True)),
        peer("jax.jit vjp", lambda: peers_jax.gelu_fb(z, g)),
    ]
    return _finish(time_sides("gelu_fb", sides, cfg), checks)
