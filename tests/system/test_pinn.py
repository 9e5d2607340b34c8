"""The physics-informed examples, run as their header comments say (issue 23):
``python -m gradc.datasets`` makes the collocation points, ``gradc train`` trains, ``gradc
predict`` evaluates on the test grid and ``python -m gradc.datasets --error`` measures the
relative L2 error against the exact solution, which must be at most 1e-2.

The oscillator runs here, on the numpy target (the same kernels as the CPU target, without
minutes of Numba compiles under a blocking start); pinn_poisson (1000 epochs) is measured
in docs/training.md. Both examples' commands are read from their files, so the comments
cannot go stale.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest

from tests.harness import cli
from tests.harness.paths import EXAMPLES

pytestmark = pytest.mark.slow  # (about 15 s of training)


def commands(stem: str) -> list[list[str]]:
    """The command lines of the header comment of ``examples/STEM.grad``."""
    text = (EXAMPLES / f"{stem}.grad").read_text(encoding="utf-8")
    return [shlex.split(m) for m in re.findall(r"^#   (.+)$", text, re.M)]


def test_headers_hold_the_whole_run():
    for stem in ("pinn_oscillator", "pinn_poisson"):
        steps = [(c[0], c[1] if c[0] == "gradc" else c[3]) for c in commands(stem)]
        assert steps == [("python", stem), ("gradc", "train"), ("python", stem),
                         ("gradc", "predict"), ("python", stem)], steps


def test_oscillator_reaches_the_stated_error(tmp_path):
    out = ""
    for cmd in commands("pinn_oscillator"):
        cmd = [str(EXAMPLES / c[len("examples/"):]) if c.startswith("examples/") else c
               for c in cmd]
        if cmd[0] == "gradc":
            cmd = [sys.executable, "-m", "gradc", *cmd[1:], "--target", "numpy",
                   "--no-progress"]
        else:
            cmd = [sys.executable, *cmd[1:]]
        r = subprocess.run(cmd, cwd=tmp_path, env=cli.env(), capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, f"{cmd}: {r.stdout}{r.stderr}"
        out = r.stdout
    error = float(re.search(r"relative L2 error (\S+)", out).group(1))
    assert error <= 1e-2, out
