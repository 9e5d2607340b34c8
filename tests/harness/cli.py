"""Running gradc's command line as a user does: ``python -m gradc`` in a subprocess
(importing this checkout's gradc), and reading what ``gradc train`` writes."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

from tests.harness.paths import EXAMPLES, ROOT

SPIRAL = EXAMPLES / "spiral.grad"


def env() -> dict:
    """The environment of a subprocess that must import this checkout's gradc."""
    return dict(os.environ, PYTHONPATH=str(ROOT))


def gradc(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    """Run ``python -m gradc ARGS`` and return the finished process (text output)."""
    return subprocess.run([sys.executable, "-m", "gradc", *map(str, args)], cwd=cwd,
                          env=env(), capture_output=True, text=True, timeout=timeout)


def read_history(path: Path) -> list[dict]:
    """The rows of a ``history.csv``."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def make_spiral(folder: Path) -> Path:
    """The 3-class spiral in ``folder/spiral.npz``, made by ``python -m gradc.datasets`` as
    the README does."""
    out = folder / "spiral.npz"
    r = subprocess.run([sys.executable, "-m", "gradc.datasets", "spiral", "--classes", "3",
                        "-o", str(out)], capture_output=True, text=True, timeout=60,
                       env=env())
    assert r.returncode == 0, r.stderr
    return out
