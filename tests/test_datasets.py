"""The synthetic data sets of :mod:`gradc.datasets` and their command line."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from gradc.datasets import main, spiral

from tests.harness.paths import ROOT



@pytest.mark.parametrize("classes", [2, 3])
def test_spiral_shapes_dtypes_and_labels(classes):
    x, y = spiral(classes, points=50, seed=1)
    assert x.shape == (50 * classes, 2) and x.dtype == np.float32 and x.flags.c_contiguous
    assert y.shape == (50 * classes,) and y.dtype == np.int64
    assert np.bincount(y).tolist() == [50] * classes
    radius = np.hypot(x[:, 0], x[:, 1])
    assert radius.max() <= 1.0 + 1e-6 and radius.min() == 0.0


def test_spiral_is_the_lecture_notes_spiral():
    """Arm j: r = linspace(0, 1), t = linspace(4j, 4(j+1)) + 0.2 * noise, X = r [sin t, cos t]."""
    x, y = spiral(3, points=100, seed=0, noise=0.0)
    r = np.linspace(0, 1, 100)
    t = np.linspace(4.0, 8.0, 100)
    np.testing.assert_allclose(x[100:200], np.c_[r * np.sin(t), r * np.cos(t)], atol=1e-6)
    assert (y[100:200] == 1).all()


def test_spiral_is_deterministic_per_seed():
    a, b, c = spiral(3, seed=7), spiral(3, seed=7), spiral(3, seed=8)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_spiral_rejects_bad_arguments():
    with pytest.raises(ValueError, match="classes"):
        spiral(1)
    with pytest.raises(ValueError, match="points"):
        spiral(3, points=1)


def test_main_writes_npz_named_after_the_model_inputs(tmp_path, capsys):
    out = tmp_path / "s.npz"
    assert main(["spiral", "--classes", "2", "--points", "10", "--seed", "3", "-o",
                 str(out)]) == 0
    with np.load(out) as d:
        assert sorted(d.files) == ["x", "y"]
        x, y = spiral(2, 10, 3)
        assert np.array_equal(d["x"], x) and np.array_equal(d["y"], y)
    assert "wrote" in capsys.readouterr().out
    assert main(["spiral", "--classes", "1", "-o", str(out)]) == 2


def test_module_runs_as_a_command(tmp_path):
    out = tmp_path / "spiral.npz"
    r = subprocess.run([sys.executable, "-m", "gradc.datasets", "spiral", "--classes", "3",
                        "-o", str(out)], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 0, r.stderr
    with np.load(out) as d:
        assert d["x"].shape == (300, 2) and d["y"].shape == (300,)
