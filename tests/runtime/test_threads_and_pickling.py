"""The runtime under threads and across processes (issue "One back end").

- Concurrency: 4 threads x 50 calls of every entry of one model object, each call with its
  own data, give exactly the single-threaded results (workspaces are per thread; optimizer
  state is per ``state`` dict). Before, one module-global workspace per (entry, dims) gave
  119 wrong results out of 120.
- Pickling: a Model, a generated module's function and a Model after train_step (with
  its optimizer state) load and compute in a fresh process whose cache folder is empty.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import gradc

from tests.harness.oracles import arrays
from tests.harness.paths import EXAMPLES

pytestmark = pytest.mark.slow  # (every test here takes more than a few seconds)

THREADS, CALLS = 4, 50

MLP = """
model wide_mlp
input  x : f32[B, 16]
input  y : i64[B]
layer  fc1 = dense(16 -> 32)
layer  fc2 = dense(32 -> 4)
output scores = relu(x |> fc1) |> fc2
loss   = cross_entropy(scores, y)
"""

BATCHNORM = """
model bn
input  x : f64[B, 6]
input  y : i64[B]
layer  fc1 = dense(6 -> 8)
layer  bn1 = batchnorm(8)
layer  fc2 = dense(8 -> 3)
output scores = relu((x |> fc1) |> bn1) |> fc2
loss   = cross_entropy(scores, y)
"""


def _cnn():
    return gradc.compile(EXAMPLES / "cnn.grad")


ALL = None
#: the cnn's conv workspaces are checked under forward and train_step (its backward and
#: update), and train_epoch (the host loop over train_step's kernel that a step of the
#: cnn's size gets); every entry runs on the two small models (compiling all nine for the
#: cnn costs minutes of CI)
CNN_ENTRIES = ("forward", "train_step", "train_epoch")

MODELS = {  # name -> (model factory, batch, input maker, entries to call)
    "mlp": (lambda: gradc.compile_string(MLP, name="wide_mlp", optimizer="adam"), 4096,
            lambda rng, b: {"x": rng.standard_normal((b, 16)).astype(np.float32),
                            "y": rng.integers(0, 4, b)}, ALL),
    "cnn": (_cnn, 8,
            lambda rng, b: {"x": rng.standard_normal((b, 1, 8, 8)).astype(np.float32),
                            "y": rng.integers(0, 10, b)}, CNN_ENTRIES),
    "batchnorm": (lambda: gradc.compile_string(BATCHNORM, name="bn", optimizer="momentum"),
                  64, lambda rng, b: {"x": rng.standard_normal((b, 6)),
                                      "y": rng.integers(0, 3, b)}, ALL),
}


def _like(params: dict, rng) -> dict:
    return {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in params.items()}


def _calls(model: gradc.Model, params: dict, inputs: dict, rng, entries) -> dict:
    """entry -> a function of (state) computing it on this call's data (copies of the
    params where the entry updates them), returning what the entry returns; only
    ``entries`` when given."""
    outs = {k: rng.standard_normal([inputs["x"].shape[0] if d == "B" else d for d in shape])
            .astype(params[next(iter(params))].dtype)
            for k, (_, shape) in model.signature["outputs"].items()}
    vec = _like(params, rng)
    calls = {
        "forward": lambda st: model.forward(params, state=st, **inputs),
        "forward_training": lambda st: model.forward(params, training=True, seed=3, state=st,
                                                     **inputs),
        "loss": lambda st: model.loss(params, seed=3, state=st, **inputs),
        "loss_and_grad": lambda st: model.loss_and_grad(params, seed=3, state=st, **inputs),
        "jvp": lambda st: model.jvp(params, vec, state=st, **inputs),
        "vjp": lambda st: model.vjp(params, outs, state=st, **inputs),
        "hvp": lambda st: model.hvp(params, vec, seed=3, state=st, **inputs),
        "train_step": lambda st: _stepped(model.train_step, params, st, inputs),
        "train_epoch": lambda st: _stepped(model.train_epoch, params, st, inputs,
                                           batch_size=16, seed=5),
    }
    return {k: f for k, f in calls.items() if entries is None or k in entries}


def _stepped(fn, params, state, inputs, **kw):
    mine = {k: v.copy() for k, v in params.items()}
    loss = fn(mine, 0.01, state=state, **inputs, **kw)
    return loss, mine, {k: v.copy() for k, v in state.items() if isinstance(v, np.ndarray)}


@pytest.mark.parametrize("name", MODELS)
def test_threads_give_the_single_threaded_results(name):
    make, batch, data, entries = MODELS[name]
    model = make()
    rng = np.random.default_rng(0)
    params = model.init_params(1)
    # CALLS different data per thread; each thread's work is a fixed list of calls
    work = [[_calls(model, params, data(rng, batch), rng, entries) for _ in range(CALLS)]
            for _ in range(THREADS)]

    def run(thread: int) -> list:
        state: dict = {}  # one optimizer state per thread, advanced by its own calls
        return [[arrays(call[entry](state)) for entry in sorted(call)]
                for call in work[thread]]

    expected = [run(t) for t in range(THREADS)]
    with ThreadPoolExecutor(THREADS) as pool:
        got = list(pool.map(run, range(THREADS)))
    wrong = sum(not all(np.array_equal(a, b) for a, b in zip(x, y))
                for t in range(THREADS) for cx, cy in zip(expected[t], got[t])
                for x, y in zip(cx, cy))
    total = THREADS * CALLS * len(work[0][0])
    assert wrong == 0, f"{wrong} of {total} results differ from the single-threaded ones"


# ---------------------------------------------------------------------- pickling
RUNNER = textwrap.dedent("""
    import pickle, sys
    import numpy as np
    with open(sys.argv[1], "rb") as f:
        obj, params, inputs = pickle.load(f)
    out = {}
    if hasattr(obj, "train_step"):  # a Model
        out["loss"] = np.array(obj.loss(params, **inputs))
        mine = {k: v.copy() for k, v in params.items()}
        out["step"] = np.array(obj.train_step(mine, 0.05, **inputs))
        for k, v in mine.items():
            out["after:" + k] = v
    else:  # a generated module's function: loss_and_grad
        loss, grads = obj(params, **inputs)
        out["loss"] = np.array(loss)
        for k, v in grads.items():
            out["grad:" + k] = v
    np.savez(sys.argv[2], **out)
""")


def _in_fresh_process(tmp_path: Path, obj, params, inputs) -> dict:
    blob, result = tmp_path / "obj.pkl", tmp_path / "out.npz"
    blob.write_bytes(pickle.dumps((obj, params, inputs)))
    cache = tmp_path / "empty_cache"
    cache.mkdir()
    env = {**os.environ, "GRADC_CACHE_DIR": str(cache)}
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(blob), str(result)], env=env,
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with np.load(result) as data:
        return dict(data)


@pytest.fixture(scope="module")
def adam_model():
    return gradc.compile_string(MLP, name="wide_mlp", optimizer="adam")


def _data(model):
    rng = np.random.default_rng(7)
    return model.init_params(2), {"x": rng.standard_normal((32, 16)).astype(np.float32),
                                  "y": rng.integers(0, 4, 32)}


def test_model_pickles_into_a_fresh_process(tmp_path, adam_model):
    params, inputs = _data(adam_model)
    fresh = gradc.compile_string(MLP, name="wide_mlp", optimizer="adam")
    got = _in_fresh_process(tmp_path, fresh, params, inputs)
    mine = {k: v.copy() for k, v in params.items()}
    assert float(got["loss"]) == fresh.loss(params, **inputs)
    assert float(got["step"]) == fresh.train_step(mine, 0.05, **inputs)
    for k, v in mine.items():
        np.testing.assert_array_equal(got["after:" + k], v)


def test_model_after_train_step_keeps_its_optimizer_state(tmp_path):
    model = gradc.compile_string(MLP, name="wide_mlp", optimizer="adam")
    params, inputs = _data(model)
    for _ in range(3):
        model.train_step(params, 0.05, **inputs)
    assert model.state["step"] == 3
    got = _in_fresh_process(tmp_path, model, params, inputs)
    # the same next step here: Adam's moments and step count travelled with the model
    mine = {k: v.copy() for k, v in params.items()}
    assert float(got["step"]) == model.train_step(mine, 0.05, **inputs)
    for k, v in mine.items():
        np.testing.assert_array_equal(got["after:" + k], v)


def test_module_function_pickles_into_a_fresh_process(tmp_path, adam_model):
    params, inputs = _data(adam_model)
    got = _in_fresh_process(tmp_path, adam_model.module.loss_and_grad, params, inputs)
    loss, grads = adam_model.loss_and_grad(params, **inputs)
    assert float(got["loss"]) == loss
    for k, v in grads.items():
        np.testing.assert_array_equal(got["grad:" + k], v)


def test_pickled_model_in_this_process_is_the_same_module(adam_model):
    again = pickle.loads(pickle.dumps(adam_model))
    assert again.module is adam_model.module
    assert again.state is not adam_model.state
