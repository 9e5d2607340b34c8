"""The CPU target's train_epoch kernel (issue "Time to first result", scope 3): one compiled
function whose loop runs train_step's own statements, so Numba never links and
re-optimises a second copy of the step, and whose results do not depend on whether this
process compiled it or loaded it from Numba's cache.

(That train_epoch equals train_step over the same minibatches is checked per example and
op-spec group against the numpy target in test_numpy_target.py, and in f64 against
train_step itself in test_tiers.py.)"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import gradc

ROOT = Path(__file__).resolve().parents[1]
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
    assert "train_epoch" in small.module._ENTRIES
    assert "train_epoch" not in large.module._ENTRIES and large.supports("train_epoch")
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
