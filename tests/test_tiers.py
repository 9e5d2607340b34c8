"""Tiered start (issue "Time to first result" scopes 2 and 3): on a cold cache a CPU model
runs on the NumPy tier at once, each entry switches to its Numba kernels when its
background compile is done, the numbers agree across the switch, a failed compile leaves
the entry on NumPy with a warning, a warm cache starts on Numba, and ``gradc train`` shows
the tier. Background compiles are ended after every test (no process outlives it)."""

from __future__ import annotations

import pickle
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

import gradc
from gradc.runtime import tiers
from gradc.runtime.tiers import TierWarning

ROOT = Path(__file__).resolve().parents[1]
MODEL = """model tiny
input  x : f64[B, 3]
input  y : i64[B]
param  W : f64[3, 4] ~ he_normal
param  b : f64[4]    ~ zeros
output s = tanh(x @ W + b)
loss   = cross_entropy(s, y)
"""
X = np.linspace(-1.0, 1.0, 24).reshape(8, 3)
Y = np.array([0, 1, 2, 3, 3, 2, 1, 0])


@pytest.fixture(autouse=True)
def no_leftover_compiles():
    """End every background compile a test started, whatever happened in it."""
    yield
    tiers.stop_all()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("GRADC_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _forget(model) -> None:
    """Drop the model's modules from this process (a new process would not have them)."""
    for name in [n for n in sys.modules if n.startswith("gradc_gen_")]:
        del sys.modules[name]


def _step(model, params: dict, state: dict) -> tuple[float, dict]:
    params = {k: v.copy() for k, v in params.items()}
    state = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in state.items()}
    loss = model.train_step(params, 0.1, state=state, x=X, y=Y)
    return loss, params


@pytest.fixture(scope="module")
def switched(tmp_path_factory):
    """A tiered model compiled on a cold cache, with what its NumPy tier returned before
    the switch, after its loss and train_step compiles finished."""
    folder = tmp_path_factory.mktemp("tiers")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADC_CACHE_DIR", str(folder))
        model = gradc.compile_string(MODEL, "tiny", wait=False, optimizer="adam")
        assert model.tiered and model.tier("loss") == model.tier("train_step") == "numpy"
        params = model.init_params(0)
        state = {}
        model.train_step(params, 0.1, state=state, x=X, y=Y)  # Adam's moments are set
        before = {"loss": model.loss(params, x=X, y=Y),
                  "grad": model.loss_and_grad(params, x=X, y=Y)[1],
                  "step": _step(model, params, state)}
        assert model.wait_for_kernels(timeout=240)
        yield model, params, state, before, folder
        tiers.stop_all()


def test_entries_switch_to_numba_with_the_same_numbers(switched):
    model, params, state, before, _ = switched
    assert model.tier("loss") == model.tier("train_step") == "numba"
    assert model.tier("jvp") == "numpy"  # never called: never compiled
    assert model.loss(params, x=X, y=Y) == pytest.approx(before["loss"], rel=1e-12)
    grads = model.loss_and_grad(params, x=X, y=Y)[1]
    for name, value in before["grad"].items():
        np.testing.assert_allclose(grads[name], value, rtol=1e-12, atol=1e-15)
    loss, stepped = _step(model, params, state)
    assert loss == pytest.approx(before["step"][0], rel=1e-12)
    for name, value in before["step"][1].items():
        np.testing.assert_allclose(stepped[name], value, rtol=1e-12, atol=1e-15)
    assert model.module.__file__ == str(model.path)  # the CPU module serves now


def test_a_warm_cache_loads_its_kernels_without_compiling(switched):
    """The compiled entries switch to Numba by the preload thread (no background
    compile); calls before that run on NumPy, with the same numbers."""
    model, params, _, before, folder = switched
    _forget(model)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADC_CACHE_DIR", str(folder))
        warm = gradc.compile_string(MODEL, "tiny", wait=False, optimizer="adam")
    assert warm.loss(params, x=X, y=Y) == pytest.approx(before["loss"], rel=1e-12)
    assert warm.wait_for_kernels(timeout=120)
    assert warm.tier("loss") == warm.tier("loss_and_grad") == warm.tier("train_step") == \
        "numba"
    assert warm.tier("hvp") == "numpy"
    assert warm.loss(params, x=X, y=Y) == pytest.approx(before["loss"], rel=1e-12)
    assert not warm._tiers._jobs  # nothing compiles in the background


WARM_PROCESS = r"""
import sys, numpy as np, gradc
model = gradc.compile_string(sys.argv[1], "tiny", wait=False, optimizer="adam")
x = np.linspace(-1.0, 1.0, 24).reshape(8, 3)
y = np.array([0, 1, 2, 3, 3, 2, 1, 0])
first = model.loss(model.init_params(0), x=x, y=y)
compiler = [m for m in ("sympy", "lark", "numba") if m in sys.modules]
assert model.wait_for_kernels(timeout=120)
print(repr(first), model.tier("loss"), compiler,
      repr(model.loss(model.init_params(0), x=x, y=y)))
"""


def test_a_warm_process_gets_its_first_result_without_the_compiler(switched):
    """A new process on a warm cache answers at once (no compiler, and Numba is not
    even imported during its first call), then runs the compiled kernels: the same loss
    to rounding."""
    import os
    import subprocess

    model, _, _, _, folder = switched
    expected = model.loss(model.init_params(0), x=X, y=Y)
    env = {**os.environ, "GRADC_CACHE_DIR": str(folder), "GRADC_TIERED": "1"}
    out = subprocess.run([sys.executable, "-c", WARM_PROCESS, MODEL], env=env, text=True,
                         capture_output=True, timeout=300)
    assert out.returncode == 0, out.stderr
    first, tier, compiler, later = out.stdout.split(maxsplit=3)
    assert tier == "numba" and compiler == "[]", out.stdout
    assert float(first) == pytest.approx(expected, rel=1e-12)
    assert float(later) == pytest.approx(expected, rel=1e-12)


def test_a_failed_preload_stays_on_numpy_with_a_warning(switched, monkeypatch):
    model, params, _, before, folder = switched
    _forget(model)

    def broken(module, name):
        raise OSError("the kernel cache went away")
    monkeypatch.setattr(tiers, "compile_entry", broken)
    monkeypatch.setenv("GRADC_CACHE_DIR", str(folder))
    with pytest.warns(TierWarning, match="kernels of loss, loss_and_grad, train_step failed"):
        warm = gradc.compile_string(MODEL, "tiny", wait=False, optimizer="adam")
        assert warm.wait_for_kernels(timeout=120)
    assert warm.tier("loss") == "numpy"
    assert warm.loss(params, x=X, y=Y) == pytest.approx(before["loss"], rel=1e-12)


def test_a_tiered_model_pickles(switched):
    model, params, _, before, _ = switched
    back = pickle.loads(pickle.dumps(model))
    assert back.loss(params, x=X, y=Y) == pytest.approx(before["loss"], rel=1e-12)


def test_threads_across_the_switch(cache):
    """Four threads call loss while its compile runs and finishes: every result is the
    NumPy tier's or the Numba tier's, equal to rounding."""
    model = gradc.compile_string(MODEL, "tiny", wait=False)
    params = model.init_params(0)
    expected = model.loss(params, x=X, y=Y)
    results, done = [], threading.Event()

    def work():
        while not done.is_set():
            results.append(model.loss(params, x=X, y=Y))
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        assert model.wait_for_kernels(timeout=240)
        for _ in range(20):
            results.append(model.loss(params, x=X, y=Y))
    finally:
        done.set()
        for t in threads:
            t.join(timeout=60)
    assert model.tier("loss") == "numba"
    np.testing.assert_allclose(results, expected, rtol=1e-12)


def test_a_killed_compile_stays_on_numpy_with_a_warning(cache):
    model = gradc.compile_string(MODEL, "tiny", wait=False)
    params = model.init_params(0)
    expected = model.loss(params, x=X, y=Y)
    (job,) = model._tiers._running
    job.proc.kill()
    job.proc.wait(timeout=60)
    with pytest.warns(TierWarning, match="background compile of loss failed"):
        assert model.loss(params, x=X, y=Y) == expected
    assert model.tier("loss") == "numpy"
    with warnings.catch_warnings():
        warnings.simplefilter("error", TierWarning)  # said once; the entry stays on NumPy
        assert model.loss(params, x=X, y=Y) == expected


def test_waiting_models_are_not_tiered(cache, monkeypatch):
    assert not gradc.compile_string(MODEL, "tiny", wait=True).tiered
    monkeypatch.setenv("GRADC_TIERED", "0")
    model = gradc.compile_string(MODEL, "tiny")
    assert not model.tiered and model.tier("loss") == "numba"
    numpy_only = gradc.compile_string(MODEL, "tiny", target="numpy", wait=False)
    assert not numpy_only.tiered and numpy_only.tier("loss") == "numpy"


def test_kernels_of_concurrent_compiles_never_overlap():
    """jacobian's compile includes forward's kernel, a large model's train_epoch
    train_step's: such pairs never run at once."""
    assert tiers.kernels("jacobian") >= {"forward", "jvp", "vjp"}
    assert tiers.kernels("train_epoch") & tiers.kernels("train_step")
    assert not tiers.kernels("loss") & tiers.kernels("forward")


def test_train_epoch_is_one_kernel_that_compiles_no_train_step(cache):
    """The CPU train_epoch runs train_step's statements inside its own loop: its
    background compile writes its kernel alone to Numba's cache (no train_step kernel, no
    second copy of the step), and its epochs equal train_step over the same minibatches."""
    model = gradc.compile_string(MODEL, "tiny", optimizer="adam", wait=False)
    assert model.tiered
    model.train_epoch(model.init_params(0), 0.1, x=X, y=Y)   # starts the compile
    assert model.wait_for_kernels(timeout=300)
    assert model.tier("train_epoch") == "numba"
    cached = [p.name for p in cache.rglob("*.nbi")]
    assert any("_train_epoch_" in n for n in cached), cached
    assert not any("_train_step_" in n for n in cached), cached
    params, state = model.init_params(0), {}
    loss = model.train_epoch(params, 0.1, batch_size=3, seed=5, state=state, x=X, y=Y)
    stepped, step_state, total = model.init_params(0), {}, 0.0
    for rows in np.split(np.random.default_rng(5).permutation(len(X)), [3, 6]):
        total += len(rows) * model.train_step(stepped, 0.1, state=step_state, x=X[rows],
                                              y=Y[rows])
    assert loss == pytest.approx(total / len(X), rel=1e-12)
    assert state["step"] == step_state["step"] == 3
    for k in params:
        np.testing.assert_allclose(params[k], stepped[k], rtol=1e-12, atol=1e-14)


def test_gradc_train_shows_the_tier_and_starts_only_what_it_uses(cache, tmp_path,
                                                                 monkeypatch, capsys):
    from gradc import datasets
    from gradc.cli import main

    jobs = []

    class Job(tiers._Job):
        def __init__(self, entries, path, name):
            super().__init__(entries, path, name)
            jobs.append(self)
    monkeypatch.setattr(tiers, "_Job", Job)
    monkeypatch.setenv("GRADC_TIERED", "1")
    x, y = datasets.spiral(points=20)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    code = main(["train", str(ROOT / "examples" / "spiral.grad"), "--data",
                 str(tmp_path / "d.npz"), "--epochs", "3", "--out", str(tmp_path / "out"),
                 "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    epochs = [line for line in out.splitlines() if line.startswith("epoch")]
    assert epochs and epochs[0].endswith("[numpy]"), out
    assert "started on the NumPy tier" in err
    assert sorted(e for job in jobs for e in job.entries) == ["forward", "loss", "train_epoch"]
    assert len(jobs) <= 2  # entries waiting for a worker share one process


def test_entries_waiting_for_a_worker_compile_in_one_process(cache, monkeypatch):
    """With one worker busy, the entries called meanwhile queue into one job (one
    process compiles them in turn); each ends on Numba with the NumPy tier's numbers."""
    monkeypatch.setattr(tiers, "workers", lambda: 1)
    model = gradc.compile_string(MODEL, "tiny", wait=False)
    params = model.init_params(0)
    expected = {"loss": model.loss(params, x=X, y=Y),
                "forward": model.forward(params, x=X)["s"],
                "grad": model.loss_and_grad(params, x=X, y=Y)[1]["W"]}
    (first,) = model._tiers._running
    (waiting,) = model._tiers._queue
    assert first.entries == ("loss",) and waiting.entries == ("forward", "loss_and_grad")
    assert model.wait_for_kernels(timeout=300)
    assert {model.tier(e) for e in ("loss", "forward", "loss_and_grad")} == {"numba"}
    assert model.loss(params, x=X, y=Y) == pytest.approx(expected["loss"], rel=1e-12)
    np.testing.assert_allclose(model.forward(params, x=X)["s"], expected["forward"],
                               rtol=1e-12)
    np.testing.assert_allclose(model.loss_and_grad(params, x=X, y=Y)[1]["W"],
                               expected["grad"], rtol=1e-12, atol=1e-15)
