"""The synthetic data sets of :mod:`gradc.datasets` and their command line."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from gradc import pinn
from gradc.datasets import digits, main, spiral

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


def test_digits_are_the_seven_segment_strokes_shifted_by_at_most_a_pixel():
    """Without noise each image is its digit's strokes (a 1 is the right two segments: the
    pixels (1..6, 5)) rolled by -1, 0 or 1 in each direction; labels cover 0..9."""
    x, y = digits(400, seed=3, noise=0.0)
    assert x.shape == (400, 1, 8, 8) and x.dtype == np.float32 and y.dtype == np.int64
    assert set(y.tolist()) == set(range(10))
    one = np.zeros((8, 8))
    one[1:7, 5] = 1.0
    shifts = [np.roll(one, (dr, dc), axis=(0, 1)) for dr in (-1, 0, 1) for dc in (-1, 0, 1)]
    ones = x[y == 1, 0]
    assert len(ones) and all(any(np.array_equal(img, s) for s in shifts) for img in ones)
    noisy, same = digits(400, seed=3), digits(400, seed=3)
    assert np.array_equal(noisy[1], y) and np.array_equal(noisy[0], same[0])
    assert 0.25 < float(np.std(noisy[0] - x)) < 0.35


def test_digits_from_the_command_line(tmp_path):
    out = tmp_path / "d.npz"
    assert main(["digits", "--points", "50", "-o", str(out)]) == 0
    with np.load(out) as d:
        assert d["x"].shape == (50, 1, 8, 8) and d["y"].shape == (50,)
        assert np.array_equal(d["x"], digits(50)[0])
    assert main(["digits", "--points", "0", "-o", str(out)]) == 2


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


# ---------------------------------------------------------------------- the PINN problems
@pytest.mark.parametrize("name", sorted(pinn.PROBLEMS))
def test_pinn_collocation_points_lie_in_the_domain(name):
    a = pinn.collocation(name, 500, seed=3, dtype="f64")
    b = pinn.collocation(name, 500, seed=3, dtype="f64")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert all(v.dtype == np.float64 and v.flags.c_contiguous and len(v) == 500
               for v in a.values())
    if name == "pinn_oscillator":
        assert sorted(a) == ["t", "t0"] and a["t"].shape == (500, 1)
        assert 0 <= a["t"].min() and a["t"].max() <= 2 * np.pi and not a["t0"].any()
    else:
        x, pb = a["x"], a["pb"]
        assert x.shape == pb.shape == (500, 2) and 0 <= x.min() and x.max() <= 1
        on_edge = np.isin(pb, [0.0, 1.0])
        assert on_edge.any(axis=1).all()                   # every point on a side
        assert all(on_edge[:, i].any() for i in (0, 1))    # every side used
    assert pinn.collocation(name, 4, dtype="f32")[next(iter(a))].dtype == np.float32


@pytest.mark.parametrize("name", sorted(pinn.PROBLEMS))
def test_pinn_exact_solutions_solve_their_equations(name):
    """Central differences of the exact solution: the equation's residual vanishes, and
    the boundary or initial conditions hold."""
    exact = pinn.PROBLEMS[name].exact
    h = 1e-4
    if name == "pinn_oscillator":
        t = np.linspace(0.1, 6.0, 7)[:, None]
        u = [exact({"t": t + d}) for d in (-h, 0, h)]
        np.testing.assert_allclose((u[0] - 2 * u[1] + u[2]) / h ** 2 + u[1], 0, atol=1e-6)
        zero = exact({"t": np.array([[0.0]])})
        slope = (exact({"t": np.array([[h]])}) - exact({"t": np.array([[-h]])})) / (2 * h)
        assert zero[0, 0] == 1 and abs(slope[0, 0]) < 1e-9
    else:
        x = np.random.default_rng(2).uniform(0.1, 0.9, (6, 2))
        lap = 0
        for i in (0, 1):
            e = np.zeros(2)
            e[i] = h
            lap = lap + (exact({"x": x + e}) - 2 * exact({"x": x}) + exact({"x": x - e})) / h ** 2
        f = 2 * np.pi ** 2 * np.sin(np.pi * x[:, :1]) * np.sin(np.pi * x[:, 1:])
        np.testing.assert_allclose(-lap, f, rtol=1e-6)
        edge = np.array([[0, 0.3], [1, 0.7], [0.2, 0], [0.6, 1]])
        np.testing.assert_allclose(exact({"x": edge}), 0, atol=1e-15)


def test_pinn_grid_and_relative_error():
    g = pinn.grid("pinn_poisson", 11, dtype="f64")["x"]
    assert g.shape == (121, 2) and g[0].tolist() == [0, 0] and g[-1].tolist() == [1, 1]
    assert pinn.grid("pinn_oscillator", 5)["t"].shape == (5, 1)
    want = np.sin(np.pi * g[:, 0]) * np.sin(np.pi * g[:, 1])
    assert pinn.relative_error("pinn_poisson", 11, want) < 1e-15
    assert pinn.relative_error("pinn_poisson", 11, 1.01 * want) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="same --grid"):
        pinn.relative_error("pinn_poisson", 12, want)
    with pytest.raises(ValueError, match="at least 2"):
        pinn.grid("pinn_poisson", 1)


def test_pinn_command_line(tmp_path, capsys):
    data, grid_file, preds = tmp_path / "d.npz", tmp_path / "g.npz", tmp_path / "p.npz"
    assert main(["pinn_poisson", "--points", "8", "--dtype", "f64", "-o", str(data)]) == 0
    with np.load(data) as d:
        assert sorted(d.files) == ["pb", "x"] and d["x"].shape == (8, 2)
        assert d["x"].dtype == np.float64
    assert main(["pinn_oscillator", "--grid", "9", "-o", str(grid_file)]) == 0
    with np.load(grid_file) as d:
        t = d["t"]
        assert t.shape == (9, 1) and t.dtype == np.float32
    np.savez(preds, u=np.cos(t.astype(np.float64)) * 1.02)
    capsys.readouterr()
    assert main(["pinn_oscillator", "--grid", "9", "--error", str(preds)]) == 0
    out = capsys.readouterr().out
    assert "relative L2 error 2.000e-02" in out, out
    for bad in (["pinn_oscillator", "--error", str(preds)], ["spiral", "--grid", "3"],
                ["pinn_poisson"], ["pinn_oscillator", "--grid", "9", "--error", str(data)]):
        assert main(bad) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err


def test_pinn_plot_draws_the_solution_and_its_error(tmp_path, capsys):
    matplotlib = pytest.importorskip("matplotlib")
    from matplotlib.image import imread
    for name, size in (("pinn_oscillator", 9), ("pinn_poisson", 5)):
        coords = pinn.grid(name, size, dtype="f64")
        preds, png = tmp_path / f"{name}.npz", tmp_path / f"{name}.png"
        np.savez(preds, u=pinn.PROBLEMS[name].exact(coords) + 0.01)
        assert main([name, "--grid", str(size), "--error", str(preds), "--plot",
                     str(png)]) == 0
        assert f"drew {png}" in capsys.readouterr().out
        assert imread(png).shape[:2] == (400, 1000), matplotlib.__version__
    assert main(["pinn_poisson", "--plot", str(png), "-o", str(preds)]) == 2
    assert "--plot draws the predictions of --error" in capsys.readouterr().err
