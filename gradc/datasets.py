"""Small synthetic data sets made in code (no downloads), saved as ``.npz`` for ``gradc train``.

``spiral`` is the K-arm spiral of the CS231n lecture notes: N points per class, arm ``j`` with
radius ``r = linspace(0, 1, N)`` and angle ``t = linspace(4j, 4(j+1), N) + 0.2 * normal``,
``X = r * [sin t, cos t]``. Arrays are named after the inputs of ``examples/spiral.grad``:
``x`` (float32 ``[N*K, 2]``) and ``y`` (int64 ``[N*K]``).

``digits`` are 8x8 images of the ten digits drawn as seven-segment strokes, each shifted by
up to a pixel in each direction and with Gaussian noise (std 0.3) added: ``x`` (float32
``[N, 1, 8, 8]``, NCHW, as ``examples/cnn.grad`` and ``examples/resnet_digits.grad`` read
them) and ``y`` (int64 ``[N]``, the digit).

``pinn_oscillator`` and ``pinn_poisson`` are the collocation points, test grids and exact
solutions of the physics-informed examples (:mod:`gradc.pinn`).

Command line::

    python -m gradc.datasets spiral --classes 3 [--points 100] [--seed 0] -o spiral.npz
    python -m gradc.datasets digits [--points 2000] [--seed 0] -o digits.npz
    python -m gradc.datasets pinn_poisson [--points 1024] [--seed 0] [--dtype f32] -o p.npz
    python -m gradc.datasets pinn_poisson --grid 101 -o grid.npz      # the test grid
    python -m gradc.datasets pinn_poisson --grid 101 --error preds.npz [--plot u.png]
                     # relative L2 error of gradc predict's 'u' against the exact solution
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from gradc import pinn
from gradc.errors import GradcError

DATASETS = ("spiral", "digits", *pinn.PROBLEMS)
#: points of a data set when --points is not given
DEFAULT_POINTS = {"spiral": 100, "digits": 2000, **{name: 1024 for name in pinn.PROBLEMS}}
#: the pixels of each stroke of an 8x8 seven-segment digit: (rows, columns)
SEGMENTS = {"a": (1, slice(2, 6)), "b": (slice(1, 4), 5), "c": (slice(4, 7), 5),
            "d": (6, slice(2, 6)), "e": (slice(4, 7), 2), "f": (slice(1, 4), 2),
            "g": (4, slice(2, 6))}
#: the strokes of each digit 0..9
STROKES = ["abcdef", "bc", "abged", "abgcd", "fgbc", "afgcd", "afgedc", "abc", "abcdefg",
           "abcdfg"]


def spiral(classes: int = 3, points: int = 100, seed: int = 0,
           noise: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(x, y)``: the ``classes``-arm spiral with ``points`` points per arm.

    Args:
        classes: number of arms (classes), at least 2.
        points: points per class, at least 2.
        seed: seed of the angle noise; the same seed gives the same arrays.
        noise: standard deviation of the angle noise (radians).

    Returns:
        ``x``: float32 ``[points * classes, 2]``; ``y``: int64 ``[points * classes]``,
        class ``j`` in rows ``j*points .. (j+1)*points - 1``.
    """
    if classes < 2:
        raise ValueError(f"classes must be at least 2, got {classes}")
    if points < 2:
        raise ValueError(f"points must be at least 2, got {points}")
    rng = np.random.default_rng(seed)
    x = np.zeros((points * classes, 2), dtype=np.float64)
    y = np.zeros(points * classes, dtype=np.int64)
    for j in range(classes):
        rows = slice(points * j, points * (j + 1))
        r = np.linspace(0.0, 1.0, points)
        t = np.linspace(j * 4.0, (j + 1) * 4.0, points) + rng.normal(size=points) * noise
        x[rows] = np.c_[r * np.sin(t), r * np.cos(t)]
        y[rows] = j
    return np.ascontiguousarray(x, dtype=np.float32), y


def digits(n: int, seed: int = 0, noise: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(x, y)``: ``n`` noisy 8x8 digit images, float32 ``[n, 1, 8, 8]``, and their
    digits, int64 ``[n]`` (see the module's docstring)."""
    if n < 1:
        raise ValueError(f"digits: the number of images must be at least 1, got {n}")
    rng = np.random.default_rng(seed)
    protos = np.zeros((10, 8, 8))
    for d, strokes in enumerate(STROKES):
        for stroke in strokes:
            protos[d][SEGMENTS[stroke]] = 1.0
    y = rng.integers(0, 10, n)
    x = protos[y]
    for i in range(n):
        x[i] = np.roll(x[i], (rng.integers(-1, 2), rng.integers(-1, 2)), axis=(0, 1))
    x = x + noise * rng.standard_normal(x.shape)
    return np.ascontiguousarray(x[:, None], dtype=np.float32), y.astype(np.int64)


def save(path, **arrays) -> None:
    """Write ``arrays`` to ``path`` as an uncompressed ``.npz`` (names as given)."""
    np.savez(path, **arrays)


def main(argv: list[str] | None = None) -> int:
    """The ``python -m gradc.datasets`` command line; returns the exit code."""
    ap = argparse.ArgumentParser(
        prog="python -m gradc.datasets",
        description="Make a synthetic data set and save it as .npz for `gradc train`.")
    ap.add_argument("name", choices=DATASETS, help="which data set")
    ap.add_argument("--classes", type=int, default=3, help="spiral: number of classes "
                    "(default 3)")
    ap.add_argument("--points", type=int, default=None,
                    help="spiral: points per class (default 100); digits: images "
                         "(default 2000); pinn_*: collocation points (default 1024)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--dtype", choices=sorted(pinn.DTYPES), default="f32",
                    help="pinn_*: the float dtype of the arrays (default f32)")
    ap.add_argument("--grid", type=int, default=None, metavar="M",
                    help="pinn_*: write the test grid of M points per axis instead")
    ap.add_argument("--error", metavar="PREDS.npz", default=None,
                    help="pinn_*, with --grid: print the relative L2 error of the output "
                         "'u' of `gradc predict` on that grid against the exact solution")
    ap.add_argument("--plot", metavar="FILE.png", default=None,
                    help="with --error: also draw the predictions and their error there")
    ap.add_argument("-o", "--output", help="the .npz file to write")
    args = ap.parse_args(argv)
    try:
        message = _run(args)
    except (ValueError, OSError, KeyError, GradcError) as e:
        print(f"error: {str(e).strip(chr(39))}", file=sys.stderr)
        return 2
    print(message)
    return 0


def _run(args) -> str:
    """Do what ``args`` ask; return the line to print."""
    points = args.points if args.points is not None else DEFAULT_POINTS[args.name]
    is_pinn = args.name in pinn.PROBLEMS
    if not is_pinn and (args.grid is not None or args.error is not None):
        raise ValueError(f"--grid and --error are for the pinn_* data sets, not {args.name}")
    if args.error is not None:
        if args.grid is None:
            raise ValueError("--error needs the --grid the predictions were made on")
        with np.load(args.error) as preds:
            if "u" not in preds.files:
                raise ValueError(f"{args.error} has no array 'u' (gradc predict's output)")
            u = preds["u"]
        err = pinn.relative_error(args.name, args.grid, u)
        if args.plot is not None:
            pinn.plot(args.name, args.grid, u, args.plot, f"{args.name}: relative L2 error "
                      f"{err:.2e}")
        return (f"{args.name}: relative L2 error {err:.3e} of 'u' in {args.error} against "
                f"the exact solution on the grid of {args.grid} points per axis"
                + (f"; drew {args.plot}" if args.plot is not None else ""))
    if args.plot is not None:
        raise ValueError("--plot draws the predictions of --error")
    if args.output is None:
        raise ValueError("the output file is missing: -o FILE.npz")
    if args.name == "digits":
        x, y = digits(points, args.seed)
        save(args.output, x=x, y=y)
        return f"wrote {args.output}: x float32 {list(x.shape)}, y int64 {list(y.shape)}"
    if args.name == "spiral":
        x, y = spiral(args.classes, points, args.seed)
        save(args.output, x=x, y=y)
        return (f"wrote {args.output}: x float32 {list(x.shape)}, y int64 {list(y.shape)}, "
                f"{args.classes} classes")
    arrays = pinn.grid(args.name, args.grid, args.dtype) if args.grid is not None \
        else pinn.collocation(args.name, points, args.seed, args.dtype)
    save(args.output, **arrays)
    what = "test grid" if args.grid is not None else "collocation points"
    return f"wrote {args.output} ({what} of {args.name}): " + ", ".join(
        f"{k} {v.dtype.name} {list(v.shape)}" for k, v in arrays.items())


if __name__ == "__main__":
    sys.exit(main())
