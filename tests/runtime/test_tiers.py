"""Tiered start (issue "Time to first result" scopes 2 and 3): on a cold cache a CPU model
runs on the NumPy tier at once, each entry switches to its Numba kernels when its
background compile is done, the numbers agree across the switch, a failed compile leaves
the entry on NumPy with a warning, a warm cache starts on Numba, and ``gradc train`` shows
the tier, and what becomes of background compiles when the process ends: Ctrl-C ends them
at once, a normal exit lets them finish (niced, within a time limit). Background compiles
are ended after every test (no process outlives it)."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import gradc
from gradc.runtime import tiers, warm
from gradc.runtime.tiers import TierWarning

from tests.harness.paths import ROOT

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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


# ------------------------------------------------- background compiles at the process's end

def _warm_processes(cache: Path) -> list[int]:
    """The pids of the background compiles of modules under ``cache`` (their command
    lines name the module's file)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes() if proc.name.isdigit() else b""
        except OSError:  # it ended meanwhile
            continue
        if b"gradc.runtime.warm" in cmd and str(cache).encode() in cmd:
            found.append(int(proc.name))
    return found


def _gone_within(cache: Path, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while _warm_processes(cache):
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def _tiered_env(cache: Path) -> dict:
    return {**os.environ, "GRADC_CACHE_DIR": str(cache), "GRADC_TIERED": "1",
            "PYTHONPATH": str(ROOT)}


@pytest.mark.slow
def test_ctrl_c_in_gradc_train_ends_every_background_compile(cache, tmp_path):
    """gradc train on a cold cache, tiered, SIGINT once training runs: exit 130 and no
    compile of it left a second later (issue 20, item 7: they ran on for seconds)."""
    from gradc import datasets

    x, y = datasets.spiral(points=100)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gradc", "train", str(ROOT / "examples" / "spiral.grad"),
         "--data", str(tmp_path / "d.npz"), "--epochs", "100000", "--no-progress",
         "--out", str(tmp_path / "out")], env=_tiered_env(cache), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("epoch"):
                break
        compiling = _warm_processes(cache)
        proc.send_signal(signal.SIGINT)
        output = "".join(lines) + proc.stdout.read()
        assert proc.wait(timeout=120) == 130, output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert compiling, output  # (else there was nothing to stop)
    assert _gone_within(cache, 1.0), _warm_processes(cache)
    assert "Traceback" not in output


EXITING = r"""
import sys, numpy as np, gradc
model = gradc.compile_string(sys.argv[1], "tiny", wait=False)
model.loss(model.init_params(0), x=np.ones((8, 3)), y=np.zeros(8, np.int64))
if sys.argv[2] == "ctrl-c":
    raise KeyboardInterrupt  # uncaught, as a Ctrl-C in a script
"""


def test_an_uncaught_keyboard_interrupt_ends_the_compiles_at_exit(cache):
    """A script that ends on Ctrl-C leaves no compile running and nothing compiled."""
    out = subprocess.run([sys.executable, "-c", EXITING, MODEL, "ctrl-c"],
                         env=_tiered_env(cache), capture_output=True, text=True, timeout=300)
    assert out.returncode in (-signal.SIGINT, 130) and "KeyboardInterrupt" in out.stderr
    assert _gone_within(cache, 0.5), _warm_processes(cache)
    time.sleep(1.0)
    assert not list(cache.rglob("ready/*"))  # killed, not finished


@pytest.mark.slow
def test_a_normal_exit_lets_the_compile_finish_niced(cache):
    """A script that ends normally leaves its compile running at a lower priority, and
    the compile finishes: the next process starts warm."""
    out = subprocess.run([sys.executable, "-c", EXITING, MODEL, "normal"],
                         env=_tiered_env(cache), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    niceness = []
    for pid in _warm_processes(cache):
        try:  # field 19 of /proc/PID/stat, counted after the command's closing ')'
            niceness.append(int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1]
                                .split()[16]))
        except (OSError, IndexError):
            pass  # it ended meanwhile
    assert _gone_within(cache, 120)
    assert [p.name for p in cache.rglob("ready/*")] == ["loss"]
    assert niceness and all(n >= os.nice(0) + warm.NICE for n in niceness), niceness


BOUNDED = r"""
import sys, time
from gradc.runtime import warm
warm.bound(int(sys.argv[1]), limit=0.5, every=0.05)
time.sleep(3.0)
"""


def test_a_compile_ends_itself_after_its_time_limit_once_its_parent_exited():
    """warm.bound: while the parent lives nothing happens; once it is gone (here: a pid
    that is not the parent) the process ends after the limit with EXIT_BOUND."""
    alive = subprocess.run([sys.executable, "-c", BOUNDED, str(os.getpid())],
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert alive.returncode == 0
    start = time.monotonic()
    gone = subprocess.run([sys.executable, "-c", BOUNDED, "-1"],
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert gone.returncode == warm.EXIT_BOUND
    assert time.monotonic() - start < 2.5  # ended by the bound, not by the sleep
