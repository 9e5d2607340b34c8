"""``gradc train`` and ``gradc bench`` through a subprocess, as a user runs them.

All runs share one ``GRADC_CACHE_DIR`` (the session's, from conftest), so the spiral model's
kernels compile once; the first training run pays for it.
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.harness.cli import SPIRAL, env, gradc, make_spiral, read_history
from tests.harness.models import DROPOUT

pytestmark = pytest.mark.slow  # (every test here takes more than a few seconds)


@pytest.fixture(scope="module")
def spiral_data(tmp_path_factory) -> Path:
    return make_spiral(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def trained(spiral_data, tmp_path_factory):
    """The README's training command: defaults but --epochs 200 (and --progress, to see
    the bar although stderr is a pipe)."""
    out = tmp_path_factory.mktemp("run") / "out"
    r = gradc("train", SPIRAL, "--data", spiral_data, "--epochs", 200, "--out", out,
              "--progress")
    assert r.returncode == 0, r.stdout + r.stderr
    return r, out


def test_spiral_reaches_95_percent_with_defaults(trained):
    r, out = trained
    line = next(x for x in r.stdout.splitlines() if x.startswith("train loss"))
    acc = float(line.split("accuracy")[1].split("%")[0])
    assert acc >= 95.0, r.stdout
    assert any(x.startswith("val   loss") and "accuracy" in x for x in r.stdout.splitlines())
    rows = read_history(out / "history.csv")
    assert float(rows[-1]["train_acc"]) >= 0.95


def test_progress_bar_shows_loss_and_rate(trained):
    r, _ = trained
    assert "samples/s" in r.stderr and "loss=" in r.stderr and "epoch 200/200" in r.stderr


def test_history_csv_columns_and_rows(trained):
    _, out = trained
    with open(out / "history.csv", newline="", encoding="utf-8") as f:
        header = next(csv.reader(f))
    assert header == ["epoch", "train_loss", "val_loss", "train_acc", "val_acc", "seconds"]
    rows = read_history(out / "history.csv")
    assert [int(r["epoch"]) for r in rows] == list(range(1, 201))
    for row in rows:
        for key in ("train_loss", "val_loss", "train_acc", "val_acc", "seconds"):
            assert np.isfinite(float(row[key])), row
        assert 0 <= float(row["train_acc"]) <= 1 and float(row["seconds"]) >= 0
    assert float(rows[-1]["train_loss"]) < 0.5 * float(rows[0]["train_loss"])


def test_pngs_have_the_stated_size(trained):
    import matplotlib.image as mpimg

    from gradc.training.plots import BOUNDARY_SIZE, LOSS_SIZE

    _, out = trained
    for name, (width, height) in (("loss.png", LOSS_SIZE), ("boundary.png", BOUNDARY_SIZE)):
        img = mpimg.imread(out / name)
        assert img.shape[:2] == (height, width), name
        assert img.std() > 0.05, f"{name} is blank"
    assert LOSS_SIZE == (1000, 400) and BOUNDARY_SIZE == (600, 600)


def test_params_file_loads_and_reproduces_accuracy(trained, spiral_data):
    import gradc

    _, out = trained
    model = gradc.compile(SPIRAL, optimizer="adam")
    params = model.load_params(out / "params.npz")
    with np.load(spiral_data) as d:
        x, y = d["x"], d["y"]
    acc = (model.forward(params, x=x)["scores"].argmax(-1) == y).mean()
    assert acc >= 0.93


def test_resume_continues_from_saved_loss(trained, spiral_data, tmp_path):
    _, first = trained
    r = gradc("train", SPIRAL, "--data", spiral_data, "--epochs", 1, "--out", tmp_path,
              "--resume", first / "params.npz")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "resuming from" in r.stderr and "after epoch 200" in r.stderr
    assert "resumed adam state" in r.stderr
    rows = read_history(tmp_path / "history.csv")
    assert [int(x["epoch"]) for x in rows] == list(range(1, 202))   # the history continues
    scratch, last, resumed = (float(rows[i]["train_loss"]) for i in (0, 199, 200))
    assert abs(resumed - last) < 0.1 * last, (last, resumed)
    assert resumed < 0.3 * scratch, (scratch, resumed)


def _save(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def _bad_files(tmp: Path, x: np.ndarray, y: np.ndarray) -> dict:
    corrupt = tmp / "corrupt.npz"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    return {
        "missing": (_save(tmp / "missing.npz", x=x), "missing array 'y'"),
        "extra": (_save(tmp / "extra.npz", x=x, y=y, z=y), "extra array 'z'"),
        "shape": (_save(tmp / "shape.npz", x=np.zeros((300, 3), np.float32), y=y),
                  "array 'x' has shape [300, 3], the input needs [B=300, 2]"),
        "dtype": (_save(tmp / "dtype.npz", x=x.astype(np.float64), y=y),
                  "array 'x' has dtype float64, the input needs f32"),
        "corrupt": (corrupt, "not a readable .npz data file"),
        "nofile": (tmp / "nonexistent.npz", "no such data file"),
    }


def test_bad_data_files_exit_2_with_reason(spiral_data, tmp_path):
    with np.load(spiral_data) as d:
        x, y = d["x"], d["y"]
    cases = _bad_files(tmp_path, x, y)
    procs = {name: subprocess.Popen(
        [sys.executable, "-m", "gradc", "train", str(SPIRAL), "--data", str(path),
         "--out", str(tmp_path / f"out_{name}")],
        env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, (path, _) in cases.items()}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        reason = cases[name][1]
        assert proc.returncode == 2, (name, stdout, stderr)
        assert reason in stderr, (name, stderr)
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"{cases[name][0]}: error: "), \
            (name, stderr)
        assert not (tmp_path / f"out_{name}").exists()


def test_more_bad_data_in_process(spiral_data, tmp_path):
    """The checks behind the command, without a process each."""
    from gradc.errors import GradcError
    from gradc.training.data import analyse, check_labels, load_data

    sig = {"model": "spiral", "loss": True,
           "inputs": {"x": ("f32", ("B", 2)), "y": ("i64", ("B",))},
           "outputs": {"scores": ("f32", ("B", 3))},
           "labels": {"input": "y", "output": "scores", "classes": 3}}
    with np.load(spiral_data) as d:
        x, y = d["x"], d["y"]
    truncated = _save(tmp_path / "truncated.npz", x=x, y=y)
    truncated.write_bytes(truncated.read_bytes()[:1500])
    np.save(tmp_path / "single.npy", x)
    (tmp_path / "empty.npz").write_bytes(b"")
    x_nan = x.copy()
    x_nan[3, 1] = np.nan
    cases = {
        "batch": (_save(tmp_path / "batch.npz", x=x, y=y[:10]),
                  "array 'y' has shape [10], the input needs [B=300] (B=300 from an earlier"),
        "truncated": (truncated, "not a readable .npz data file"),
        "empty": (tmp_path / "empty.npz", "not a readable .npz data file"),
        "npy": (tmp_path / "single.npy", "holds one .npy array"),
        "nan": (_save(tmp_path / "nan.npz", x=x_nan, y=y), "NaN or infinite"),
        "zero": (_save(tmp_path / "zero.npz", x=x[:0], y=y[:0]), "B must be at least 1"),
        "dir": (tmp_path, "is a directory"),
    }
    for path, reason in cases.values():
        with pytest.raises(GradcError, match=re.escape(reason)):
            load_data(path, sig)
    data = load_data(_save(tmp_path / "labels.npz", x=x, y=y + 1), sig)
    with pytest.raises(GradcError, match=re.escape("labels 'y' must be in 0..2")):
        check_labels(tmp_path / "labels.npz", data, analyse(sig))


def test_bad_options_exit_2(spiral_data, tmp_path):
    r = gradc("train", SPIRAL, "--data", spiral_data, "--target", "cuda", "--out", tmp_path)
    assert r.returncode == 2 and "cuda" in r.stderr and "Traceback" not in r.stderr
    r = gradc("train", SPIRAL, "--data", spiral_data, "--lr", "-1", "--out", tmp_path)
    assert r.returncode == 2 and "--lr" in r.stderr


def test_bench_prints_three_timings():
    r = gradc("bench", SPIRAL, "--batch", 64, "--repeats", 20)
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("forward", "loss_and_grad", "train_step"):
        line = next(x for x in r.stdout.splitlines() if x.strip().startswith(name))
        assert "median" in line and "min" in line and "samples/s" in line, line


# ---- in-process: the pieces behind the command -----------------------------------------

def test_analyse_finds_labels_and_points():
    from gradc.training.data import analyse

    sig = {"model": "m", "loss": True, "inputs": {"x": ("f32", ("B", 2)), "y": ("i64", ("B",))},
           "outputs": {"scores": ("f32", ("B", 3))},
           "labels": {"input": "y", "output": "scores", "classes": 3}}
    task = analyse(sig)
    assert (task.batch_dim, task.labels, task.classes, task.point_input) == ("B", "y", 3, "x")
    sig["inputs"] = {"x": ("f32", ("B", 4)), "t": ("f32", ("B", 1))}
    sig["outputs"] = {"pred": ("f32", ("B", 1))}
    sig["labels"] = None
    task = analyse(sig)
    assert not task.classifier and task.point_input is None


def test_analyse_rejects_models_it_cannot_train():
    from gradc.errors import GradcError
    from gradc.training.data import analyse

    with pytest.raises(GradcError, match="no loss"):
        analyse({"model": "m", "loss": False, "inputs": {}, "outputs": {}})
    with pytest.raises(GradcError, match="no batch dim"):
        analyse({"model": "m", "loss": True, "inputs": {"x": ("f32", (4, 2))}, "outputs": {}})


def test_history_round_trip(tmp_path):
    from gradc.training.history import History, Row

    h = History([Row(1, 0.5, None, 0.75, None, 0.01), Row(2, 0.25, 0.3, 0.8, 0.7, 0.02)])
    h.write(tmp_path / "history.csv")
    back = History.read(tmp_path / "history.csv")
    assert back.last_epoch == 2 and back.rows[0].val_loss is None
    assert back.rows[1].val_acc == pytest.approx(0.7)


@pytest.mark.parametrize("target", ["numpy", "cpu"])
def test_every_epoch_is_the_documented_order(spiral_data, target, monkeypatch):
    """gradc train's epoch: default_rng([seed, epoch]).permutation(n) cut into minibatches
    of --batch-size, whether the loop calls train_epoch (compiled on cpu, the host loop of
    the numpy target, i.e. the NumPy tier; several calls an epoch here) or train_step:
    both equal a train_step loop over that order written here, to 1e-10 in float64 (the
    fused epoch used to shuffle each chunk again)."""
    import gradc as gradc_api
    from gradc.training import loop

    monkeypatch.setattr(loop, "FUSED_MIN_BATCHES", 2)  # 5 train_epoch calls per epoch
    model = gradc_api.compile(SPIRAL, optimizer="adam", dtype="f64", target=target)
    with np.load(spiral_data) as d:
        data = {"x": d["x"].astype(np.float64), "y": d["y"]}
    want, state = model.init_params(0), {}
    for epoch in (1, 2, 3):
        order = np.random.default_rng([7, epoch]).permutation(300)
        for start in range(0, 300, 32):
            rows = order[start:start + 32]
            model.train_step(want, 0.01, state=state, x=data["x"][rows], y=data["y"][rows])
    for fused in (True, False):
        model.reset_optimizer()
        params = model.init_params(0)
        cfg = loop.Config(epochs=3, batch_size=32, lr=0.01, seed=7, progress=False,
                          fused=fused)
        assert loop.training_entry(model, cfg) == ("train_epoch" if fused else "train_step")
        for epoch in (1, 2, 3):
            loop.run_epoch(model, params, data, cfg, epoch, loop._NullBar())
        assert model.state["step"] == state["step"] == 3 * 10
        for k in want:
            np.testing.assert_allclose(params[k], want[k], rtol=1e-10, atol=1e-12,
                                       err_msg=f"{target} fused={fused} {k}")


def test_quiet_prints_only_the_summary(spiral_data, tmp_path):
    r = gradc("train", SPIRAL, "--data", spiral_data, "--epochs", 5, "--out", tmp_path / "q",
              "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    loud = gradc("train", SPIRAL, "--data", spiral_data, "--epochs", 5, "--out",
                 tmp_path / "l")
    epoch_lines = [line for line in loud.stdout.splitlines() if line.startswith("epoch")]
    assert epoch_lines, loud.stdout  # the per-epoch lines --quiet must drop
    assert not [line for line in r.stdout.splitlines() if line.startswith("epoch")], r.stdout
    assert r.stdout.strip() and len(r.stdout.splitlines()) < len(loud.stdout.splitlines())


def test_evaluation_is_in_eval_mode_and_the_summary_is_the_last_epoch(tmp_path):
    """A dropout model: the epoch lines, history.csv and the final summary give the loss
    of eval mode (dropout off), computed here from the saved params in NumPy, and the
    summary is the last epoch's row (they disagreed while evaluation drew masks)."""
    from gradc import compile as compile_model
    from gradc.training.data import split

    (tmp_path / "m.grad").write_text(DROPOUT, encoding="utf-8")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((80, 3))
    data = {"x": x, "y": (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)}
    np.savez(tmp_path / "d.npz", **data)
    r = gradc("train", tmp_path / "m.grad", "--data", tmp_path / "d.npz", "--epochs", 3,
              "--target", "numpy", "--out", tmp_path / "out")
    assert r.returncode == 0, r.stdout + r.stderr
    params = compile_model(tmp_path / "m.grad", target="numpy").load_params(
        tmp_path / "out" / "params.npz")
    train, val = split(data, 0.1, 0)

    def eval_loss(d):
        h = np.maximum(d["x"] @ params["fc1.W"] + params["fc1.b"], 0.0)
        z = h @ params["fc2.W"] + params["fc2.b"]
        z = z - z.max(axis=1, keepdims=True)
        return np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(z)), d["y"]])

    last = read_history(tmp_path / "out" / "history.csv")[-1]
    printed = {m[1]: float(m[2]) for m in re.finditer(r"^(train|val)\s+loss (\S+),",
                                                       r.stdout, re.M)}
    epoch_line = [ln for ln in r.stdout.splitlines() if ln.startswith("epoch")][-1]
    for name, d in (("train", train), ("val", val)):
        want = eval_loss(d)
        assert float(last[f"{name}_loss"]) == pytest.approx(want, rel=1e-5), name
        assert printed[name] == pytest.approx(want, rel=5e-4), (name, r.stdout)
        assert f"{name} loss {float(last[f'{name}_loss']):.4g}" in epoch_line


BATCHNORM = DROPOUT.replace("dropout_cli", "batchnorm_cli").replace(
    "layer  drop = dropout(0.5)", "layer  bn = batchnorm(16)").replace(" >> drop", " >> bn")


def test_batchnorm_statistics_are_saved_with_the_params_and_resumed(tmp_path):
    """params.npz holds the running statistics (optimizer.npz the optimizer's slots, step
    and noise counter only), and 2 epochs then --resume for 1 more give what 3 epochs in
    one run give: params, statistics and moments (the resumed optimizer used to start
    fresh, and the statistics from their inits)."""
    (tmp_path / "bn.grad").write_text(BATCHNORM, encoding="utf-8")
    rng = np.random.default_rng(5)
    x = 1.5 + 2.0 * rng.standard_normal((70, 3))
    np.savez(tmp_path / "d.npz", x=x, y=(x[:, 0] > 1.5).astype(np.int64))
    common = ("train", tmp_path / "bn.grad", "--data", tmp_path / "d.npz", "--target",
              "numpy", "--optimizer", "adam", "--batch-size", 16, "--quiet")
    runs = {"whole": ("--epochs", 3), "first": ("--epochs", 2),
            "resumed": ("--epochs", 1, "--resume", tmp_path / "first" / "params.npz")}
    for name, extra in runs.items():
        r = gradc(*common, *extra, "--out", tmp_path / name)
        assert r.returncode == 0, r.stdout + r.stderr
    assert "resumed adam state at step 8" in r.stderr, r.stderr   # 63 rows: 4 steps an epoch
    files = {}
    for name in ("whole", "resumed"):
        with np.load(tmp_path / name / "params.npz") as p, \
                np.load(tmp_path / name / "optimizer.npz") as o:
            files[name] = {**{k: p[k] for k in p.files}, **{k: o[k] for k in o.files}}
    whole, resumed = files["whole"], files["resumed"]
    assert {"buffer:bn.running_mean", "buffer:bn.running_var", "fc1.W"} <= set(whole)
    assert set(whole) == set(resumed)
    assert not any(k.startswith("buffer:") for k in np.load(tmp_path / "whole" /
                                                            "optimizer.npz").files)
    assert int(resumed["__step__"]) == 12
    for k in whole:
        if whole[k].dtype.kind == "f":
            np.testing.assert_allclose(resumed[k], whole[k], rtol=1e-12, atol=1e-15,
                                       err_msg=k)
        else:
            assert np.array_equal(resumed[k], whole[k]), k
