"""The physics-informed problems of examples/pinn_*.grad: collocation data, test grids and
exact solutions (``python -m gradc.datasets pinn_oscillator|pinn_poisson``).

``PROBLEMS`` has one row per problem. Each row makes

* the training data: ``points`` collocation points drawn uniformly (seeded), as arrays
  named after the model's inputs. ``gradc train`` cuts every input into the same
  minibatches, so each sample is one interior point and its partners: the oscillator's
  ``t0`` (the initial time, 0, once per sample) and the Poisson problem's ``pb`` (a
  boundary point);
* the test grid: ``grid`` evenly spaced points per axis (the input ``forward`` takes), for
  ``gradc predict``;
* the exact solution on that grid, and the relative L2 error ``|u - u*| / |u*|`` of
  predictions against it.

Problems:

* ``pinn_oscillator``: u'' + u = 0 on [0, 2π], u(0) = 1, u'(0) = 0; exact u = cos t.
* ``pinn_poisson``: −Δu = 2π² sin(πx) sin(πy) on the unit square, u = 0 on its boundary;
  exact u = sin(πx) sin(πy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

DTYPES = {"f32": np.float32, "f64": np.float64}


def _oscillator_points(rng, n: int) -> dict:
    return {"t": rng.uniform(0.0, 2 * np.pi, (n, 1)), "t0": np.zeros((n, 1))}


def _oscillator_grid(m: int) -> dict:
    return {"t": np.linspace(0.0, 2 * np.pi, m)[:, None]}


def _square_boundary(rng, n: int) -> np.ndarray:
    """``n`` points uniform on the unit square's boundary (each side equally likely)."""
    side, s = rng.integers(0, 4, n), rng.uniform(0.0, 1.0, n)
    fixed = (side % 2).astype(np.float64)        # sides 0, 1: x or y = 0 / 1
    horizontal = side < 2
    return np.where(horizontal[:, None], np.c_[s, fixed], np.c_[fixed, s])


def _poisson_points(rng, n: int) -> dict:
    return {"x": rng.uniform(0.0, 1.0, (n, 2)), "pb": _square_boundary(rng, n)}


def _poisson_grid(m: int) -> dict:
    a = np.linspace(0.0, 1.0, m)
    xx, yy = np.meshgrid(a, a, indexing="ij")
    return {"x": np.c_[xx.ravel(), yy.ravel()]}


@dataclass(frozen=True)
class Problem:
    """One problem: its data, grid and exact solution (see the module docstring)."""

    equation: str
    points: Callable      # (rng, n) -> the training arrays, by input name
    grid: Callable        # (m) -> the test grid's arrays, by input name
    exact: Callable       # (grid arrays) -> u* on the grid, shaped like the output u


PROBLEMS = {
    "pinn_oscillator": Problem(
        "u'' + u = 0 on [0, 2π], u(0) = 1, u'(0) = 0", _oscillator_points, _oscillator_grid,
        lambda g: np.cos(g["t"])),
    "pinn_poisson": Problem(
        "-Δu = 2π² sin(πx) sin(πy) on the unit square, u = 0 on the boundary",
        _poisson_points, _poisson_grid,
        lambda g: (np.sin(np.pi * g["x"][:, 0]) * np.sin(np.pi * g["x"][:, 1]))[:, None]),
}


def collocation(name: str, points: int, seed: int = 0, dtype: str = "f32") -> dict:
    """The training arrays of problem ``name``: ``points`` samples drawn with ``seed``."""
    if points < 1:
        raise ValueError(f"points must be at least 1, got {points}")
    arrays = PROBLEMS[name].points(np.random.default_rng(seed), points)
    return {k: np.ascontiguousarray(v, DTYPES[dtype]) for k, v in arrays.items()}


def grid(name: str, size: int, dtype: str = "f32") -> dict:
    """The test grid of problem ``name``: ``size`` points per axis."""
    if size < 2:
        raise ValueError(f"the grid needs at least 2 points per axis, got {size}")
    return {k: np.ascontiguousarray(v, DTYPES[dtype])
            for k, v in PROBLEMS[name].grid(size).items()}


def plot(name: str, size: int, u, path, title: str = "") -> None:
    """Draw the predictions ``u`` on the ``size`` grid beside their error (matplotlib)."""
    from gradc.training.plots import plot_solution
    problem = PROBLEMS[name]
    coords = problem.grid(size)
    plot_solution(next(iter(coords.values())), u, problem.exact(coords), path, title)


def relative_error(name: str, size: int, u) -> float:
    """``|u - u*| / |u*|`` (2-norms) of the predictions ``u`` on the ``size`` grid."""
    want = PROBLEMS[name].exact(PROBLEMS[name].grid(size))
    u = np.asarray(u, np.float64)
    if u.size != want.size:
        raise ValueError(f"the predictions have {u.size} values, the {size}-point grid of "
                         f"{name} has {want.size}: use the same --grid")
    return float(np.linalg.norm(u.ravel() - want.ravel()) / np.linalg.norm(want))
