"""The ``state`` dict a call is given and the mode a call runs in (issue 20, items 3, 4
and 5): an empty state is filled on first use; any other must hold every key the call
reads (ValueError naming the missing ones, or an unknown one with a did-you-mean) and is
never reset: only a training step's documented in-place updates change it.
``Model.init_state()`` makes a complete one, and ``save_params``/``load_params`` carry the
running statistics with the params. ``loss`` runs in eval mode, as ``forward`` does.

A tiny float64 model with batchnorm and dropout, on the numpy target (no Numba compile)
unless a test is about the CPU target's fast path; the expected values are computed here
in NumPy from the layer definitions (eps 1e-5, momentum 0.1, PyTorch's unbiased running
variance), not taken from gradc.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import gradc

SRC = """\
model st
input  x : f64[B, 3]
input  y : i64[B]
layer  fc = dense(3 -> 4)
layer  bn = batchnorm(4)
layer  drop = dropout(0.5)
layer  out = dense(4 -> 2)
output logits = x |> fc >> bn >> relu >> drop >> out
loss   = cross_entropy(logits, y)
"""
MEAN, VAR = "buffer:bn.running_mean", "buffer:bn.running_var"


@functools.cache
def model() -> gradc.Model:
    return gradc.compile_string(SRC, name="st", target="numpy", optimizer="momentum")


def data(n: int = 6, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"x": 2.0 + 3.0 * rng.standard_normal((n, 3)), "y": rng.integers(0, 2, n)}


def eval_logits(p: dict, x, mean, var):
    """The eval-mode logits with these running statistics (dropout is the identity)."""
    h = x @ p["fc.W"] + p["fc.b"]
    h = (h - mean) / np.sqrt(var + 1e-5) * p["bn.gamma"] + p["bn.beta"]
    return np.maximum(h, 0.0) @ p["out.W"] + p["out.b"]


def test_a_state_of_the_statistics_alone_is_used_as_given():
    """The issue's call: forward with the two running statistics only (all that eval
    mode reads) uses them, and the caller's dict keeps its two keys and values."""
    m, d = model(), data()
    p = m.init_params(1)
    mean, var = np.linspace(-1.0, 2.0, 4), np.linspace(0.5, 3.0, 4)
    state = {MEAN: mean.copy(), VAR: var.copy()}
    given = dict(state)
    logits = m.forward(p, x=d["x"], state=state)["logits"]
    np.testing.assert_allclose(logits, eval_logits(p, d["x"], mean, var), rtol=1e-12)
    assert state.keys() == given.keys()
    assert all(state[k] is given[k] for k in state)
    np.testing.assert_array_equal(state[MEAN], mean)
    np.testing.assert_array_equal(state[VAR], var)


@pytest.mark.parametrize("call", ["forward", "loss", "vjp", "train_step"])
def test_a_state_missing_keys_is_a_value_error_naming_them(call):
    m, d = model(), data()
    p = m.init_params(1)
    state = {MEAN: np.zeros(4)}
    run = {"forward": lambda: m.forward(p, x=d["x"], state=state),
           "loss": lambda: m.loss(p, state=state, **d),
           "vjp": lambda: m.vjp(p, {}, x=d["x"], state=state),
           "train_step": lambda: m.train_step(p, 0.1, state=state, **d)}[call]
    with pytest.raises(ValueError, match=r"state: missing .*'buffer:bn\.running_var'") as e:
        run()
    assert "init_state()" in str(e.value)
    if call == "train_step":   # also the step count and the momentum slots
        assert "'step'" in str(e.value) and "'v:fc.W'" in str(e.value)
    assert list(state) == [MEAN] and not state[MEAN].any()


def test_an_unknown_state_key_is_a_value_error_with_a_did_you_mean():
    m, d = model(), data()
    state = {"bn.running_mean": np.zeros(4), VAR: np.ones(4)}
    with pytest.raises(ValueError, match=r"unknown key 'bn\.running_mean' in state; did "
                                         r"you mean 'buffer:bn\.running_mean'\?"):
        m.forward(m.init_params(0), x=d["x"], state=state)
    assert len(state) == 2


def test_an_empty_state_is_filled_on_first_use_and_init_state_is_complete():
    m, d = model(), data()
    fresh = m.init_state()
    assert m.init_state(m.init_params(0)).keys() == fresh.keys()  # params: accepted
    assert set(fresh) == {"step", "rng", MEAN, VAR} | {
        f"v:{k}" for k in m.init_params(0)}
    assert fresh["step"] == fresh["rng"] == 0
    np.testing.assert_array_equal(fresh[VAR], np.ones(4))
    assert fresh[MEAN] is not m.init_state()[MEAN]       # fresh arrays every time
    state: dict = {}
    m.forward(m.init_params(0), x=d["x"], state=state)
    assert state.keys() == fresh.keys()


def test_a_training_step_updates_the_callers_statistics_in_place():
    """train_step on a complete state with the caller's statistics: the running mean and
    variance move from the given values by momentum 0.1 towards the batch's, in the
    caller's own arrays; nothing else of what was given is reset."""
    m, d = model(), data(8, seed=2)
    p = m.init_params(3)
    state = m.init_state()
    mean, var = state[MEAN], state[VAR]
    mean[:] = [0.5, -1.0, 2.0, 0.0]
    var[:] = [2.0, 0.5, 1.0, 4.0]
    given_mean, given_var = mean.copy(), var.copy()
    h = d["x"] @ p["fc.W"] + p["fc.b"]                    # the params before the step
    m.train_step(p, 0.1, seed=4, state=state, **d)
    assert state[MEAN] is mean and state[VAR] is var
    np.testing.assert_allclose(mean, 0.9 * given_mean + 0.1 * h.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(var, 0.9 * given_var + 0.1 * h.var(axis=0, ddof=1),
                               rtol=1e-12)
    assert state["step"] == 1 and state["rng"] == 0       # seed given: counter unused


@pytest.mark.slow
def test_the_cpu_fast_path_checks_the_state_too():
    """The CPU target's fast path (taken once a call has planned the workspace) refuses
    what the general path refuses: an unknown key, a missing one (a model without
    dropout, whose train_step has a fast path)."""
    m = gradc.compile_string(SRC.replace("layer  drop = dropout(0.5)\n", "")
                             .replace(">> drop ", ""), name="st_fast", optimizer="sgd")
    d = data()
    p, state = m.init_params(0), m.init_state()
    m.train_step(p, 0.1, state=state, **d)                    # plan the workspaces
    m.forward(p, x=d["x"], state=state)
    for bad, match in (({**state, "junk": 1}, "unknown key 'junk' in state"),
                       ({k: v for k, v in state.items() if k != VAR}, "missing")):
        with pytest.raises(ValueError, match=match):
            m.train_step(p, 0.1, state=bad, **d)
        with pytest.raises(ValueError, match=match):
            m.forward(p, x=d["x"], state=bad)


def cross_entropy(logits, y) -> float:
    z = logits - logits.max(axis=1, keepdims=True)
    return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]))


def test_loss_runs_in_eval_mode_like_forward():
    """loss: dropout off and batchnorm on the running statistics, so three calls give one
    value, the cross-entropy of the eval-mode logits; training=True is the train graph
    (batch statistics, the dropout mask of seed), the loss loss_and_grad returns."""
    m, d = model(), data(8, seed=5)
    p, state = m.init_params(2), m.init_state()
    state[MEAN][:], state[VAR][:] = 0.3, 2.0
    values = [m.loss(p, state=state, **d) for _ in range(3)]
    want = cross_entropy(eval_logits(p, d["x"], state[MEAN], state[VAR]), d["y"])
    assert values == [values[0]] * 3 and values[0] == pytest.approx(want, rel=1e-12)
    assert state["rng"] == 0                                  # eval mode draws no masks
    train = m.loss(p, training=True, seed=9, state=state, **d)
    assert train == m.loss_and_grad(p, seed=9, state=state, **d)[0] != values[0]
    assert m.loss(p, training=True, seed=9, state=state, **d) == train


def trained(m) -> tuple[dict, dict]:
    """Params and state after a few training steps (statistics away from their inits)."""
    p, state = m.init_params(6), m.init_state()
    for seed in range(4):
        m.train_step(p, 0.05, seed=seed, state=state, **data(8, seed=seed))
    return p, state


def test_saved_params_carry_the_statistics_and_predict_alike(tmp_path):
    """save_params writes the running statistics beside the params (buffer:NAME) and
    load_params in a fresh Model puts them into its state: its eval loss and outputs are
    the trained model's (main kept the statistics in optimizer.npz only)."""
    m, d = model(), data(8, seed=9)
    p, state = trained(m)
    m.save_params(p, tmp_path / "p.npz", state=state)
    with np.load(tmp_path / "p.npz") as f:
        assert set(f.files) == set(p) | {MEAN, VAR}
        np.testing.assert_array_equal(f[MEAN], state[MEAN])
    fresh = gradc.compile_string(SRC, name="st", target="numpy", optimizer="momentum")
    assert fresh is not m and not fresh.state
    loaded = fresh.load_params(tmp_path / "p.npz")
    assert set(loaded) == set(p)
    assert fresh.state.keys() == m.init_state().keys()           # complete, ready to train
    np.testing.assert_array_equal(fresh.state[VAR], state[VAR])
    want = cross_entropy(eval_logits(p, d["x"], state[MEAN], state[VAR]), d["y"])
    assert fresh.loss(loaded, **d) == m.loss(p, state=state, **d) == pytest.approx(
        want, rel=1e-12)
    other: dict = {}                     # the module's functions, with a state given
    fresh.module.load_params(tmp_path / "p.npz", state=other)
    np.testing.assert_array_equal(other[MEAN], state[MEAN])


def test_a_file_without_statistics_warns_once_and_keeps_the_state(tmp_path):
    m = model()
    p, state = trained(m)
    np.savez(tmp_path / "old.npz", **p)                  # what gradc train wrote before
    kept = dict(state)
    with pytest.warns(UserWarning, match=r"old\.npz holds no running statistics") as got:
        m.load_params(tmp_path / "old.npz", state=state)
    assert len(got) == 1
    assert state.keys() == kept.keys() and all(state[k] is kept[k] for k in kept)


def test_a_params_file_that_does_not_fit_is_a_value_error(tmp_path):
    m = model()
    p, state = trained(m)
    cases = {"half": ({**p, MEAN: state[MEAN]}, r"missing array 'buffer:bn\.running_var'"),
             "typo": ({**p, "bn.running_mean": state[MEAN]},
                      r"unknown array 'bn\.running_mean' in .*typo\.npz; did you mean "
                      r"'buffer:bn\.running_mean'"),
             "no_param": ({k: v for k, v in p.items() if k != "fc.W"},
                          r"missing array 'fc\.W' \(shape \[3, 4\], f64\)"),
             "shape": ({**p, MEAN: np.zeros(3), VAR: state[VAR]},
                       r"buffer:bn\.running_mean: expected shape \[4\], got \[3\]")}
    for name, (arrays, message) in cases.items():
        np.savez(tmp_path / f"{name}.npz", **arrays)
        given = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in state.items()}
        with pytest.raises(ValueError, match=message):
            m.load_params(tmp_path / f"{name}.npz", state=state)
        assert all(np.array_equal(state[k], given[k]) for k in given), name
