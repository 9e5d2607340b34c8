"""The CPU target's train_epoch kernel (issue "Time to first result", scope 3): one compiled
function whose loop runs train_step's own statements, so Numba never links and
re-optimises a second copy of the step, and whose results do not depend on whether this
process compiled it or loaded it from Numba's cache.

(That train_epoch equals train_step over the same minibatches is checked per example and
op-spec group against the numpy target in tests/codegen/numpy/test_target.py, and in f64 against
train_step itself in tests/runtime/test_tiers.py.)"""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import numpy as np
import pytest

import gradc

from tests.harness.models import DROPOUT as ORDERED  # a tiny f64 model with dropout
from tests.harness.paths import ROOT

pytestmark = pytest.mark.slow  # (every test here takes more than a few seconds)

RUN = r"""
import sys, numpy as np, gradc, gradc.datasets
model = gradc.compile(sys.argv[1], optimizer="adam", wait=True)
x, y = gradc.datasets.spiral(classes=3)
params = model.init_params(0)
for epoch in range(15):
    model.train_epoch(params, 0.01, batch_size=32, seed=epoch, x=x, y=y)
np.savez(sys.argv[2], **params)
"""


def _kernels(source: str) -> dict[str, ast.FunctionDef]:
    return {f.name: f for f in ast.parse(source).body if isinstance(f, ast.FunctionDef)}


def test_a_large_step_trains_in_a_host_loop():
    """A step of many kernels (cnn: 87) gets no compiled epoch loop, which would cost
    more to compile than the step: train_epoch loops over the minibatches on the host."""
    small = gradc.compile(ROOT / "examples" / "spiral.grad", optimizer="adam", wait=True)
    large = gradc.compile(ROOT / "examples" / "cnn.grad", optimizer="adam", wait=True)
    assert "train_epoch" in small.module._PROGRAMS
    assert "train_epoch" not in large.module._PROGRAMS and large.supports("train_epoch")
    assert not [name for name in _kernels(large.source) if name.startswith("_train_epoch_")]


def test_the_epoch_loop_runs_the_step_inline_and_calls_no_kernel():
    model = gradc.compile(ROOT / "examples" / "mlp.grad", optimizer="adam", wait=True)
    kernels = _kernels(model.source)
    (epoch,) = [f for name, f in kernels.items() if name.startswith("_train_epoch_")]
    (step,) = [f for name, f in kernels.items() if name.startswith("_train_step_")]
    called = {n.func.id for n in ast.walk(epoch) if isinstance(n, ast.Call)
              and isinstance(n.func, ast.Name)}
    helpers = {name for name in kernels if name.startswith("_f")} | {"_ws_view"}  # math, views
    assert not called & (set(kernels) - helpers), called
    loops = [n for n in epoch.body if isinstance(n, ast.For)]
    assert len(loops) == 1  # the minibatch loop holds the step's statements
    step_stores = {t.id for n in ast.walk(step) if isinstance(n, ast.Assign)
                   for t in n.targets if isinstance(t, ast.Name)}
    epoch_stores = {t.id for n in ast.walk(loops[0]) if isinstance(n, ast.Assign)
                    for t in n.targets if isinstance(t, ast.Name)}
    assert step_stores <= epoch_stores
    # the loop's own names start with "e" and never collide with the step's; what else
    # it assigns are the step's arguments (the minibatch, its size, the step scalars)
    step_args = {a.arg for a in step.args.args}
    assert not {n for n in epoch_stores - step_stores - step_args if not n.startswith("e")}
    assert not {n for n in step_stores | step_args if n.startswith("e")}
    assert "d_B" in epoch_stores & step_args


def test_float32_epochs_are_bitwise_the_same_compiled_here_or_loaded_from_the_cache(tmp_path):
    """A process that compiles train_epoch and one that loads it from Numba's cache train
    to the same bits (they differed in the last bits while the epoch linked a copy of
    train_step)."""
    env = {**os.environ, "GRADC_CACHE_DIR": str(tmp_path / "cache")}
    spiral = str(ROOT / "examples" / "spiral.grad")
    for name in ("compiled", "loaded"):
        out = subprocess.run([sys.executable, "-c", RUN, spiral, str(tmp_path / name)],
                             env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
    compiled, loaded = np.load(tmp_path / "compiled.npz"), np.load(tmp_path / "loaded.npz")
    assert compiled.files == loaded.files
    for k in compiled.files:
        assert compiled[k].dtype == np.float32
        np.testing.assert_array_equal(compiled[k], loaded[k])


def _ordered_data(n: int = 9) -> dict:
    rng = np.random.default_rng(11)
    return {"x": rng.standard_normal((n, 3)), "y": rng.integers(0, 3, n)}


def test_train_epoch_takes_the_order_it_is_given():
    """order= (repeats and left-out rows allowed): minibatches of batch_size taken in that
    order, the last one smaller, the epoch as long as the order. Without dropout, the
    compiled loop (cpu) and the host loop (numpy) equal train_step over those
    minibatches; with dropout, the two loops (which draw the same masks from seed) equal
    each other."""
    data = _ordered_data()
    order = np.array([4, 0, 8, 8, 2, 7, 1])
    no_drop = ORDERED.replace(" >> drop", "").replace("layer  drop = dropout(0.5)\n", "")
    for target in ("numpy", "cpu"):
        model = gradc.compile_string(no_drop, name="ordered", target=target,
                                     optimizer="adam")
        assert not model.signature["noise"]
        params, state = model.init_params(0), {}
        loss = model.train_epoch(params, 0.05, batch_size=3, seed=1, order=order,
                                 state=state, **data)
        stepped, step_state, total = model.init_params(0), {}, 0.0
        for rows in (order[:3], order[3:6], order[6:]):
            total += len(rows) * model.train_step(stepped, 0.05, state=step_state,
                                                  **{k: v[rows] for k, v in data.items()})
        assert loss == pytest.approx(total / len(order), rel=1e-12), target
        assert state["step"] == step_state["step"] == 3
        for k in params:
            np.testing.assert_allclose(params[k], stepped[k], rtol=1e-12, atol=1e-15)
    runs = {}
    for target in ("numpy", "cpu"):     # with dropout: both loops draw the same masks
        model = gradc.compile_string(ORDERED, name="ordered", target=target)
        params = model.init_params(0)
        runs[target] = model.train_epoch(params, 0.05, batch_size=3, seed=4, order=order,
                                         state={}, **data), params
    assert runs["cpu"][0] == pytest.approx(runs["numpy"][0], rel=1e-12)
    for k in runs["cpu"][1]:
        np.testing.assert_allclose(runs["cpu"][1][k], runs["numpy"][1][k], rtol=1e-12)


@pytest.mark.parametrize("order,message", [
    (np.array([[0, 1]]), r"order: expected a non-empty 1-D integer array of row indices, "
                         r"got ndarray of shape \[1, 2\] and dtype int64"),
    (np.array([0.0, 1.0]), r"got ndarray of shape \[2\] and dtype float64"),
    (np.array([], np.int64), r"got ndarray of shape \[0\]"),
    ([True, False], r"dtype bool"),
    (np.array([0, 9]), r"order: row indices must lie in \[0, 9\) \(the inputs have 9 "
                       r"rows\), got 9"),
    ([3, -1], r"got -1"),
])
def test_a_bad_order_is_a_value_error_naming_it(order, message):
    model = gradc.compile_string(ORDERED, name="ordered", target="numpy")
    params = model.init_params(0)
    before = {k: v.copy() for k, v in params.items()}
    with pytest.raises(ValueError, match=message):
        model.train_epoch(params, 0.1, order=order, state={}, **_ordered_data())
    assert all(np.array_equal(params[k], before[k]) for k in params)
