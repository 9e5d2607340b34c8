"""``gradc train`` and ``gradc bench`` through a subprocess, as a user runs them.

All runs share one ``GRADC_CACHE_DIR`` (the session's, from conftest), so the spiral model's
kernels compile once; the first training run pays for it.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SPIRAL = ROOT / "examples" / "spiral.grad"


def gradc(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    """Run ``python -m gradc ARGS`` and return the finished process (text output)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "gradc", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def read_history(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def spiral_data(tmp_path_factory) -> Path:
    """The 3-class spiral, made by ``python -m gradc.datasets`` as the README does."""
    out = tmp_path_factory.mktemp("data") / "spiral.npz"
    r = subprocess.run([sys.executable, "-m", "gradc.datasets", "spiral", "--classes", "3",
                        "-o", str(out)], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 0, r.stderr
    return out


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
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = {name: subprocess.Popen(
        [sys.executable, "-m", "gradc", "train", str(SPIRAL), "--data", str(path),
         "--out", str(tmp_path / f"out_{name}")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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


def test_fused_epoch_trains_like_train_step_loop(spiral_data):
    """With train_epoch (fused, its own shuffle inside each chunk) and with per-batch
    train_step the loop trains alike: same data per epoch, similar losses."""
    import gradc
    from gradc.training.data import analyse, take
    from gradc.training.loop import Config, _NullBar, evaluate, run_epoch

    model = gradc.compile(SPIRAL, optimizer="adam")   # the CLI's module: compiled already
    assert model.supports("train_epoch")
    with np.load(spiral_data) as d:
        data = take({"x": d["x"], "y": d["y"]}, slice(None))
    task = analyse(model.signature)
    final = {}
    for fused in (True, False):
        model.reset_optimizer()
        params = model.init_params(0)
        cfg = Config(epochs=1, batch_size=32, lr=0.01, seed=0, progress=False, fused=fused)
        first = run_epoch(model, params, data, cfg, 1, _NullBar())
        for epoch in range(2, 6):
            run_epoch(model, params, data, cfg, epoch, _NullBar())
        final[fused] = evaluate(model, params, data, task)[0]
        assert final[fused] < 0.8 * first
        assert model.state["step"] == 5 * 10   # 300 samples: 10 minibatches per epoch
    assert final[True] == pytest.approx(final[False], rel=0.15)


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
