"""Small synthetic data sets made in code (no downloads), saved as ``.npz`` for ``gradc train``.

``spiral`` is the K-arm spiral of the CS231n lecture notes: N points per class, arm ``j`` with
radius ``r = linspace(0, 1, N)`` and angle ``t = linspace(4j, 4(j+1), N) + 0.2 * normal``,
``X = r * [sin t, cos t]``. Arrays are named after the inputs of ``examples/spiral.grad``:
``x`` (float32 ``[N*K, 2]``) and ``y`` (int64 ``[N*K]``).

Command line::

    python -m gradc.datasets spiral --classes 3 [--points 100] [--seed 0] -o spiral.npz
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

DATASETS = ("spiral",)


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


def save(path, **arrays) -> None:
    """Write ``arrays`` to ``path`` as an uncompressed ``.npz`` (names as given)."""
    np.savez(path, **arrays)


def main(argv: list[str] | None = None) -> int:
    """The ``python -m gradc.datasets`` command line; returns the exit code."""
    ap = argparse.ArgumentParser(
        prog="python -m gradc.datasets",
        description="Make a synthetic data set and save it as .npz for `gradc train`.")
    ap.add_argument("name", choices=DATASETS, help="which data set")
    ap.add_argument("--classes", type=int, default=3, help="number of classes (default 3)")
    ap.add_argument("--points", type=int, default=100,
                    help="points per class (default 100)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("-o", "--output", required=True, help="the .npz file to write")
    args = ap.parse_args(argv)
    try:
        x, y = spiral(args.classes, args.points, args.seed)
        save(args.output, x=x, y=y)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}: x float32 {list(x.shape)}, y int64 {list(y.shape)}, "
          f"{args.classes} classes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
