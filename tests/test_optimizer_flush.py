"""Regression tests of the optimizer's subnormal flush (issue 12).

The moments of a dead unit (its gradient 0 after a few nonzero steps) decay geometrically;
in float32 they used to sink into subnormals and stay there (0.9 * m rounds back to the
same subnormal), and every later step ran several times slower. The update rule now sets a
decaying state to 0 below the dtype's smallest normal number; normal values are unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradc

MODEL = ("input x : {t}[B, 2]\ninput y : {t}[B, 3]\nparam W : {t}[2, 3]\n"
         "loss = mse(x @ W, y)\n")
# a decay of 0.9 per step (Adam's beta1; beta2 too, so that v gets there in 1,000 steps)
# gets stuck at a subnormal without the flush
FAST = {"adam": {"name": "adam", "beta1": 0.9, "beta2": 0.9},
        "momentum": {"name": "momentum", "momentum": 0.9}}


def subnormal(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return (a != 0) & (np.abs(a) < np.finfo(a.dtype).tiny)


def test_the_scenario_sinks_into_subnormals_without_the_flush():
    """What the flush prevents: a float32 moment decaying by 0.9 per step stops at a
    subnormal that the decay rounds back to itself."""
    m = np.float32(1.0)
    for _ in range(1500):
        m = np.float32(0.9) * m
    assert subnormal(m) and np.float32(0.9) * m == m  # stuck


@pytest.mark.parametrize("target", ["numpy", "cpu"])
@pytest.mark.parametrize("opt", ["adam", "momentum"])
def test_dead_units_leave_no_subnormal_state_in_f32(target, opt):
    m = gradc.compile_string(MODEL.format(t="f32"), name="dead", target=target,
                             optimizer=FAST[opt])
    params = m.init_params(0)
    rng = np.random.default_rng(0)
    live = {"x": rng.normal(size=(8, 2)).astype(np.float32),
            "y": rng.normal(size=(8, 3)).astype(np.float32)}
    dead = {"x": np.zeros((1500, 2), np.float32), "y": np.zeros((1500, 3), np.float32)}
    state = {}
    m.train_epoch(params, 0.01, batch_size=1, seed=0, state=state, **live)
    assert all(np.any(state[k] != 0) for k in state if ":" in k)
    m.train_epoch(params, 0.01, batch_size=1, seed=0, state=state, **dead)  # gradient 0
    for key in (k for k in state if ":" in k):
        assert not subnormal(state[key]).any(), (key, state[key])
        assert np.all(state[key] == 0), key  # decayed, then flushed
    assert np.all(np.isfinite(params["W"])) and not subnormal(params["W"]).any()


def test_f64_adam_on_normal_values_is_unchanged():
    """Five compiled Adam steps in float64 equal the plain rule (no flush) in NumPy."""
    m = gradc.compile_string(MODEL.format(t="f64"), name="adam64", target="numpy",
                             optimizer="adam")
    params = m.init_params(0)
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(4, 2)), rng.normal(size=(4, 3))
    w, mom, vel = params["W"].copy(), np.zeros((2, 3)), np.zeros((2, 3))
    state = {}
    for t in range(1, 6):
        _, g = m.loss_and_grad({"W": w}, x=x, y=y)
        m.train_step(params, 0.01, state=state, x=x, y=y)
        mom = 0.9 * mom + (1 - 0.9) * g["W"]
        vel = 0.999 * vel + (1 - 0.999) * g["W"] * g["W"]
        c1, c2 = 1.0 / (1.0 - 0.9 ** t), 1.0 / (1.0 - 0.999 ** t)
        w = w - 0.01 * (mom * c1) / (np.sqrt(vel * c2) + 1e-8)
        np.testing.assert_allclose(state["m:W"], mom, rtol=1e-13)
        np.testing.assert_allclose(state["v:W"], vel, rtol=1e-13)
        np.testing.assert_allclose(params["W"], w, rtol=1e-13)
