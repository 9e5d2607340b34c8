"""Ctrl-C (SIGINT) during ``gradc train`` (issue 9).

Whenever SIGINT comes after training has started (the first epoch, mid-run, a second one
while saving, or while saving at the normal end), the run writes the params, optimizer
state, history and pictures of the finished epochs and exits with 130; an unfinished epoch
is rolled back, so the files agree with each other. While compiling, it exits with 130 and
writes nothing. Never a traceback, never exit 3.

The trials run the command as a user does (``python -m gradc`` in a subprocess, helpers of
:mod:`tests.harness.cli`), wait for the output line that shows where the run is, sleep a
random delay and send SIGINT. They share the session's ``GRADC_CACHE_DIR`` (conftest), where
the kernels are compiled once first (in this process), so every trial loads them from the
cache; two trials run at a time. The delays are drawn from :mod:`tests.harness.seeds`
(``GRADC_TEST_SEED``, printed with a failure): set it to replay or vary them. Where no
drawn trial's signal landed inside an epoch (a loaded machine can shift every one of them
between epochs), big-data trials run one at a time until one does, at most ``RETRIES``;
every trial, drawn or retried, must pass the same checks.
"""

from __future__ import annotations

import math
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.harness.cli import SPIRAL, env, gradc, make_spiral, read_history
from tests.harness import seeds
from tests.harness.paths import ROOT

pytestmark = pytest.mark.slow  # (every test here takes more than a few seconds)

BATCH = 32                  # the default --batch-size
RUN_ON = 100_000            # --epochs of the trials that must still be running at the signal
RETRIES = 8                 # big-data trials at most, when no drawn one landed inside an epoch
SEED = seeds.seed(0)
NOTE = re.compile(r"interrupted \(Ctrl-C\) (?:after epoch (\d+)( \(epoch \d+ unfinished)?"
                  r"|(after the last epoch)|(before training started))")


@dataclass
class Trial:
    """One run: SIGINT ``delay`` seconds after the first output line matching ``trigger``."""

    name: str
    data: str           # "small" (270 training samples) or "big" (8100)
    trigger: str
    delay: float
    epochs: int = RUN_ON
    signals: int = 1    # a second SIGINT 30 ms after the first
    progress: bool = False


@dataclass
class Result:
    trial: Trial
    out: Path
    returncode: int
    output: str         # stdout and stderr, interleaved


def _trials(rng: random.Random) -> list[Trial]:
    """20 trials after training has started, and one while compiling."""
    ready = "kernels ready"
    trials = [Trial(f"mid-run {i}", "small", ready, rng.uniform(0, 0.5), progress=i % 2 == 1)
              for i in range(7)]
    trials += [Trial(f"big mid-run {i}", "big", ready, rng.uniform(0, 0.3),
                     progress=i % 2 == 0) for i in range(4)]
    trials += [Trial(f"first epoch {i}", "big", ready, 0.0) for i in range(3)]
    trials += [Trial(f"twice {i}", "small", ready, rng.uniform(0, 0.3), signals=2,
                     progress=True) for i in range(2)]
    trials += [Trial(f"saving at the end {i}", "small", r"^epoch\s+5/5", 0.0, epochs=5)
               for i in range(2)]
    trials += [Trial(f"twice while saving at the end {i}", "big", r"^epoch 2/2",
                     rng.uniform(0, 0.2), epochs=2, signals=2) for i in range(2)]
    trials.append(Trial("while compiling", "small", "compiling the kernels", rng.uniform(0, 0.6)))
    return trials


def _run(trial: Trial, data: Path, out: Path) -> Result:
    """Start ``gradc train``, send SIGINT as the trial says, wait for the exit."""
    cmd = [sys.executable, "-m", "gradc", "train", str(SPIRAL), "--data", str(data),
           "--epochs", str(trial.epochs), "--out", str(out),
           "--progress" if trial.progress else "--no-progress"]
    proc = subprocess.Popen(cmd, env=env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[str] = []
    seen = threading.Event()
    trigger = re.compile(trial.trigger)

    def read() -> None:
        for line in proc.stdout:        # text mode: tqdm's \r also ends a line
            lines.append(line)
            if trigger.search(line):
                seen.set()
        seen.set()                      # ended without the trigger: the checks say so

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        seen.wait(240)
        time.sleep(trial.delay)
        for i in range(trial.signals):
            if i:
                time.sleep(0.03)
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(30)
    return Result(trial, out, proc.returncode, "".join(lines))


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    """The README's 300-point spiral, and one of 9000 points whose epochs take long enough
    (several compiled chunks, ~0.1 s) for SIGINT to land inside them."""
    from gradc.datasets import spiral

    big = tmp_path_factory.mktemp("big") / "spiral9000.npz"
    x, y = spiral(3, 3000, 0)
    np.savez(big, x=x, y=y)
    return {"small": make_spiral(tmp_path_factory.mktemp("data")), "big": big}


@pytest.fixture(scope="module")
def model():
    """The module ``gradc train SPIRAL`` uses (same cache entry), compiled here."""
    from gradc.api import compile as compile_model

    return compile_model(SPIRAL, optimizer="adam")


@pytest.fixture(scope="module")
def splits(model, datasets) -> dict:
    """``name -> (train, val)``, split as the command splits (defaults --val-split, --seed);
    and the warm-up: the kernels the command runs are compiled here, into the session's
    cache, so that every trial loads them from there."""
    from gradc.training.data import check_arrays, read_npz, split
    from gradc.training.loop import Config, warm_up

    out = {}
    for name, path in datasets.items():
        out[name] = split(check_arrays(path, read_npz(path), model.signature), 0.1, 0)
    warm_up(model, model.init_params(0), out["small"][0], Config(1, BATCH, 0.01))
    return out


@pytest.fixture(scope="module")
def results(splits, datasets, tmp_path_factory) -> list[Result]:
    trials = _trials(random.Random(SEED))
    root = tmp_path_factory.mktemp("trials")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(_run, t, datasets[t.data], root / f"out{i}")
                   for i, t in enumerate(trials)]
        return [f.result() for f in futures]


def _how(note: re.Match) -> str:
    """How a run that trained stopped, from its interrupted note (:data:`NOTE`)."""
    return "after the last epoch" if note.group(3) else \
        "epoch rolled back" if note.group(2) else "between epochs"


def _check(r: Result, model, splits) -> tuple[str, int | None]:
    """Check one trial's exit and files; return (how it stopped, epochs saved)."""
    from matplotlib.image import imread

    from gradc.training.data import analyse, count
    from gradc.training.loop import evaluate
    from gradc.training.plots import BOUNDARY_SIZE, LOSS_SIZE

    text, out = r.output, r.out
    assert r.returncode == 130, f"exit {r.returncode}"
    assert "Traceback" not in text and "internal error" not in text, "a traceback"
    note = NOTE.search(text)
    assert note, "no interrupted note"
    if note.group(4):
        assert r.trial.name == "while compiling", "stopped before training"
        assert "kernels ready" not in text and not (out / "params.npz").exists()
        return "before training", None
    done = r.trial.epochs if note.group(3) else int(note.group(1))
    how = _how(note)

    params = model.load_params(out / "params.npz")
    rows = read_history(out / "history.csv")
    assert [int(row["epoch"]) for row in rows] == list(range(1, done + 1)), "history rows"
    train, _ = splits[r.trial.data]
    with np.load(out / "optimizer.npz", allow_pickle=False) as opt:
        assert str(opt["__optimizer__"]) == "adam"
        step = int(opt["__step__"])
        moments = {k: opt[k] for k in opt.files if not k.startswith("__")}
    assert step == done * math.ceil(count(train) / BATCH), "optimizer steps != epochs done"
    assert len(moments) == (2 * len(params) if done else 0), "optimizer state"
    for name, (width, height) in (("loss.png", LOSS_SIZE), ("boundary.png", BOUNDARY_SIZE)):
        assert imread(out / name).shape[:2] == (height, width), name
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "temporary files"
    # the saved params are those of the last epoch in the history: nothing half-trained
    if done:
        loss, _ = evaluate(model, params, train, analyse(model.signature))
        assert loss == pytest.approx(float(rows[-1]["train_loss"]), rel=2e-5), "params"
    else:
        fresh = model.init_params(0)
        assert all(np.array_equal(params[k], fresh[k]) for k in fresh), "params"
    return how, done


def _inside_an_epoch(datasets, root: Path) -> list[Result]:
    """Big-data trials run one at a time, with delays drawn past the first epoch (the
    first one's signal lands between epochs), until one's SIGINT lands inside an epoch
    (at most RETRIES): the drawn trials can all miss the epochs when the machine is
    loaded (seen once under a full pytest-xdist run on 2 slow cores)."""
    rng = random.Random(SEED + 1)
    out = []
    for i in range(RETRIES):
        trial = Trial(f"inside an epoch {i}", "big", "kernels ready", rng.uniform(0.2, 0.6))
        out.append(_run(trial, datasets["big"], root / f"retry{i}"))
        note = NOTE.search(out[-1].output)
        if note and _how(note) == "epoch rolled back":
            break
    return out


def test_sigint_saves_finished_epochs_and_exits_130(results, model, splits, datasets,
                                                    tmp_path):
    def check(runs: list[Result]) -> list[tuple]:
        outcomes, failures = [], []
        for r in runs:
            try:
                outcomes.append((r.trial.name, *_check(r, model, splits)))
            except AssertionError as e:
                failures.append(f"{r.trial} -> exit {r.returncode}: {e}\n{r.output[-2000:]}")
        if failures:
            pytest.fail(f"{len(failures)} of {len(runs)} trials failed "
                        f"({seeds.ENV}={seeds.base()}):\n" + "\n\n".join(failures),
                        pytrace=False)
        return outcomes

    outcomes = check(results)
    if not any(o[1] == "epoch rolled back" for o in outcomes):
        outcomes += check(_inside_an_epoch(datasets, tmp_path))
    trained = [o for o in outcomes if o[1] != "before training"]
    assert len(trained) >= 20
    hows = {o[1] for o in trained}
    # the trials reached every kind of stop: an epoch rolled back (inside a compiled
    # chunk), none finished yet, and the saving at the normal end
    assert {"epoch rolled back", "after the last epoch"} <= hows, (SEED, outcomes)
    assert any(o[2] == 0 for o in trained), (SEED, outcomes)


def test_resume_after_sigint_continues_like_one_run(results, model, datasets, tmp_path):
    """An interrupted run resumed to N epochs ends with the params of a plain N-epoch run:
    the rollback left params, Adam's moments and the history in step with each other."""
    done = [(int(NOTE.search(r.output).group(1)), r) for r in results
            if r.trial.data == "small" and r.returncode == 130 and NOTE.search(r.output)
            and NOTE.search(r.output).group(1) and r.trial.epochs == RUN_ON]
    k, r = min(((k, r) for k, r in done if k > 0), key=lambda p: p[0], default=(0, None))
    if r is None:
        pytest.skip(f"no small trial finished an epoch ({seeds.ENV}={seeds.base()})")
    more = 3
    res = gradc("train", SPIRAL, "--data", datasets["small"], "--epochs", more,
                "--out", tmp_path, "--resume", r.out / "params.npz", "--no-progress")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"after epoch {k}" in res.stderr and "resumed adam state" in res.stderr

    # the plain run is a process like the resumed one, which loads the kernels from
    # Numba's cache: a process that compiles them itself may differ in the last bits of
    # float32 (fastmath), which 40 epochs of Adam amplify past any tight tolerance
    plain = gradc("train", SPIRAL, "--data", datasets["small"], "--epochs", k + more,
                  "--out", tmp_path / "plain", "--no-progress")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    resumed, want = (model.load_params(d / "params.npz") for d in (tmp_path, tmp_path / "plain"))
    for name in want:
        np.testing.assert_allclose(resumed[name], want[name], rtol=1e-5, atol=1e-7,
                                   err_msg=name)
    assert len(read_history(tmp_path / "history.csv")) == k + more


# ---- in-process: the pieces behind it ---------------------------------------------------

def test_fit_rolls_back_the_unfinished_epoch(model, splits):
    """Stop at every safe point of a few epochs in turn (fused chunks and per-minibatch
    steps): params and optimizer state always equal those after the last epoch recorded."""
    from gradc.training.data import analyse
    from gradc.training.history import History
    from gradc.training.interrupt import Interrupted
    from gradc.training.loop import Config, fit, snapshot

    task = analyse(model.signature)
    train, val = splits["small"]
    for fused in (True, False):
        cfg = Config(1, BATCH, 0.01, 0, progress=False, fused=fused)
        model.reset_optimizer()
        params, history = model.init_params(0), History()
        after = [snapshot(model, params)]          # after epoch 0, 1, 2, 3
        for _ in range(3):
            fit(model, params, train, val, task, cfg, history)
            after.append(snapshot(model, params))
        polls = 0
        cfg.epochs = 3
        for n in range(60):                        # stop at the n-th poll
            model.reset_optimizer()
            params, history, count = model.init_params(0), History(), [0]

            def stop(count=count, n=n) -> bool:
                count[0] += 1
                return count[0] > n

            try:
                fit(model, params, train, val, task, cfg, history, stop=stop)
                polls = count[0]
                break                              # n past the last poll: all 3 epochs ran
            except Interrupted as e:
                assert e.epoch == history.last_epoch + 1
            want_params, want_state = after[history.last_epoch]
            for k in want_params:
                assert np.array_equal(params[k], want_params[k]), (fused, n, k)
            assert set(model.state) == set(want_state), (fused, n)
            for k, v in want_state.items():
                assert np.array_equal(model.state[k], v), (fused, n, k)
        assert polls > 3 * 3, (fused, polls)       # several safe points per epoch


def test_deferred_interrupt_records_sigint_and_restores_the_handler():
    from gradc.training.interrupt import DeferredInterrupt

    before = signal.getsignal(signal.SIGINT)
    with DeferredInterrupt() as sigint:
        assert not sigint() and signal.getsignal(signal.SIGINT) != before
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(100):                        # the handler runs between bytecodes
            if sigint.count == 2:
                break
            time.sleep(0.01)
        assert sigint() and sigint.requested and sigint.count == 2
    assert signal.getsignal(signal.SIGINT) == before
    # not deferring (while compiling): KeyboardInterrupt as usual, and counted
    with DeferredInterrupt(defer=False) as sigint:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(100):
                time.sleep(0.01)
        assert sigint.count == 1
        sigint.defer = True
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(100):
            if sigint.count == 2:
                break
            time.sleep(0.01)
        assert sigint.count == 2
    assert signal.getsignal(signal.SIGINT) == before


def test_keyboard_interrupt_swallowed_by_a_callback_is_quiet(monkeypatch):
    """Numba's ctypes callbacks cannot raise: Python reports the KeyboardInterrupt to
    ``sys.unraisablehook`` ("Exception ignored ... Traceback" on stderr). Under
    DeferredInterrupt that report is dropped (the Ctrl-C is counted); others go on."""
    import ctypes

    from gradc.training.interrupt import DeferredInterrupt

    def raising(exc):
        def callback():
            raise exc
        return ctypes.CFUNCTYPE(None)(callback)

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: seen.append(info.exc_type))
    hook = sys.unraisablehook
    with DeferredInterrupt(defer=False):
        raising(KeyboardInterrupt())()
        raising(ValueError("boom"))()
    assert seen == [ValueError] and sys.unraisablehook is hook
    raising(KeyboardInterrupt())()
    assert seen == [ValueError, KeyboardInterrupt]


def test_caught_interrupt_keeps_the_exit_code_under_python_m(tmp_path):
    """A KeyboardInterrupt that left ``exec``'d code (Numba compiles through such code) makes
    ``python -m`` end by SIGINT at exit even when caught; forget_unhandled_interrupt()
    keeps the exit code."""
    (tmp_path / "caught_ki.py").write_text(
        "import sys\n"
        "from gradc.training.interrupt import forget_unhandled_interrupt\n"
        "try:\n"
        "    exec('raise KeyboardInterrupt')\n"
        "except KeyboardInterrupt:\n"
        "    pass\n"
        "if sys.argv[1:] == ['forget']:\n"
        "    forget_unhandled_interrupt()\n"
        "sys.exit(130)\n")
    path = os.pathsep.join([str(ROOT), str(tmp_path)])
    codes = [subprocess.run([sys.executable, "-m", "caught_ki", *arg],
                            env=dict(os.environ, PYTHONPATH=path),
                            capture_output=True, timeout=60).returncode
             for arg in ([], ["forget"])]
    assert codes[0] in (130, -signal.SIGINT)       # -SIGINT on CPython 3.11
    assert codes[1] == 130


def test_caused_by_interrupt_sees_numbas_system_error():
    from gradc.training.interrupt import caused_by_interrupt

    def numba_like():
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as e:
            raise SystemError("CPUDispatcher(<function f>) returned a result with an "
                              "exception set") from e

    with pytest.raises(SystemError) as info:
        numba_like()
    assert caused_by_interrupt(info.value) and caused_by_interrupt(KeyboardInterrupt())
    assert not caused_by_interrupt(SystemError("other")) and not caused_by_interrupt(None)
