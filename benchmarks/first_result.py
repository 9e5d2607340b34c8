"""Time to first result (issue "Time to first result"): ``python -m benchmarks.first_result``.

For each model, each repeat runs ``gradc train MODEL --data DATA --epochs 200`` in a fresh
process with an empty ``GRADC_CACHE_DIR`` (Numba's cache beside the modules, as for a
user) and records, from the launch (the parent's clock just before ``Popen``):

* **first epoch**: the first ``epoch 1/200`` line on stdout;
* **kernels**: every entry training uses has its Numba kernels compiled and cached (the
  ``ready/`` markers the background compiles write, :mod:`gradc.runtime.tiers`); in
  ``--wait`` mode the first epoch (the blocking warm-up compiled them all before it);
* **200 epochs**: the ``epoch 200/200`` line;
* **warm first epoch**: the same command again on the now warm cache (a new process);
* **warm first result**: a new process that compiles the model through the API (cache
  hit) and gets its first ``train_epoch`` loss (on the NumPy tier while Numba loads);
* **warm on numba**: in that process, its entries run the kernels loaded from the cache.

``--wait`` sets ``GRADC_TIERED=0`` (the blocking behaviour before tiers: the "before"
column of the issue). Medians over ``--repeats``, with min-max spread. Slow: every cold
repeat compiles every kernel. Check that the machine is otherwise idle (``uptime``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DIGITS = """# a 64-64-10 MLP on 8x8 digits (benchmarks.first_result)
model digits
input  x : f32[B, 64]
input  y : i64[B]
layer  fc1 = dense(64 -> 64)
layer  fc2 = dense(64 -> 10)
output logits = x |> fc1 >> relu >> fc2
loss   = cross_entropy(logits, y)
"""
USES = ("train_epoch", "loss", "forward")  # the entries gradc train runs on a classifier
WARM_CHILD = r"""
import sys, time
import numpy as np
import gradc
model = gradc.compile(sys.argv[1], optimizer="adam")
with np.load(sys.argv[2]) as d:
    data = {k: d[k] for k in d.files}
loss = model.train_epoch(model.init_params(0), 0.01, batch_size=32, seed=0, **data)
first = time.time()
model.wait_for_kernels()
print(first, time.time(), model.tier("train_epoch"), flush=True)
"""
TIMEOUT = 900.0


def models(folder: Path) -> dict[str, tuple[Path, Path]]:
    """name -> (model file, data file), written into ``folder``."""
    from benchmarks.workloads import make_digits
    from gradc.datasets import spiral

    x, y = spiral(classes=3)
    np.savez(folder / "spiral.npz", x=x, y=y)
    xd, yd = make_digits()
    np.savez(folder / "digits.npz", x=xd, y=yd)
    np.savez(folder / "cnn.npz", x=xd.reshape(-1, 1, 8, 8), y=yd)
    (folder / "digits.grad").write_text(DIGITS)
    return {"spiral": (REPO / "examples" / "spiral.grad", folder / "spiral.npz"),
            "digits": (folder / "digits.grad", folder / "digits.npz"),
            "cnn": (REPO / "examples" / "cnn.grad", folder / "cnn.npz")}


def _env(cache: Path, wait: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(GRADC_CACHE_DIR=str(cache), GRADC_TIERED="0" if wait else "1",
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p))
    return env


def _compiling(cache: Path) -> bool:
    """Whether a background compile of a module under ``cache`` still runs."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(cache).encode() in cmdline.read_bytes():
                return True
        except OSError:
            continue
    return False


def _ready(cache: Path) -> bool:
    return any(all((d / "ready" / e).exists() for e in USES) for d in cache.iterdir()
               if d.is_dir())


def train_run(model: Path, data: Path, cache: Path, out: Path, wait: bool) -> dict:
    """One ``gradc train`` launch: seconds from launch to each milestone (None: missed)."""
    cmd = [sys.executable, "-m", "gradc", "train", str(model), "--data", str(data),
           "--epochs", "200", "--out", str(out), "--no-progress"]
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=_env(cache, wait), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    times = {"first epoch": None, "kernels": None, "200 epochs": None}
    for line in proc.stdout:
        now = time.time() - t0
        if line.startswith("epoch") and times["first epoch"] is None:
            times["first epoch"] = now
        if line.startswith("epoch 200/200"):
            times["200 epochs"] = now
    err = proc.stderr.read()
    proc.wait(timeout=TIMEOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err}")
    if wait:  # the blocking warm-up compiled every kernel before the first epoch
        times["kernels"] = times["first epoch"]
    else:
        while not _ready(cache) and time.time() - t0 < TIMEOUT:
            time.sleep(0.05)
        times["kernels"] = time.time() - t0 if _ready(cache) else None
    while _compiling(cache) and time.time() - t0 < TIMEOUT:
        time.sleep(0.1)  # the next launch must not share the CPU with this one's compiles
    return times


def warm_result(model: Path, data: Path, cache: Path, wait: bool) -> tuple[float, float]:
    """Launch -> first train_epoch loss of a new process on a warm cache, and launch ->
    its entries running on Numba (loaded from the cache, nothing compiled)."""
    t0 = time.time()
    out = subprocess.run([sys.executable, "-c", WARM_CHILD, str(model), str(data)],
                         env=_env(cache, wait), capture_output=True, text=True,
                         timeout=TIMEOUT, check=True)
    first, numba, tier = out.stdout.split()
    if tier != "numba":
        raise RuntimeError(f"the warm cache did not switch to Numba ({tier})")
    return float(first) - t0, float(numba) - t0


def measure(name: str, model: Path, data: Path, repeats: int, wait: bool) -> dict:
    """Every milestone of ``repeats`` cold launches (and their warm relaunches)."""
    rows: dict[str, list] = {}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="gradc_first_") as tmp:
            cache, out = Path(tmp) / "cache", Path(tmp) / "out"
            for key, value in train_run(model, data, cache, out, wait).items():
                rows.setdefault(key, []).append(value)
            warm = train_run(model, data, cache, out, wait)
            rows.setdefault("warm first epoch", []).append(warm["first epoch"])
            first, numba = warm_result(model, data, cache, wait)
            rows.setdefault("warm first result", []).append(first)
            rows.setdefault("warm on numba", []).append(numba)
        print(f"  {name}: " + ", ".join(f"{k} {v[-1]:.2f}" if v[-1] is not None else
                                        f"{k} -" for k, v in rows.items()), flush=True)
    return rows


def _cell(values: list) -> str:
    got = [v for v in values if v is not None]
    if not got:
        return "-"
    return f"{statistics.median(got):6.2f} ({min(got):.2f}-{max(got):.2f})"


def main(argv: list[str] | None = None) -> int:
    """Run the measurements and print the table (seconds: median (min-max))."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.first_result",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="spiral,digits,cnn", help="comma-separated")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--wait", action="store_true",
                   help="blocking compiles (GRADC_TIERED=0): the behaviour before tiers")
    args = p.parse_args(argv)
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; "
          f"{'blocking (--wait)' if args.wait else 'tiered'}", flush=True)
    with tempfile.TemporaryDirectory(prefix="gradc_first_data_") as tmp:
        table = models(Path(tmp))
        results = {name: measure(name, *table[name], args.repeats, args.wait)
                   for name in args.models.split(",")}
    columns = ["first epoch", "kernels", "200 epochs", "warm first epoch",
               "warm first result", "warm on numba"]
    print(f"\nseconds from launch, median (min-max) of {args.repeats}")
    print(f"{'model':8}" + "".join(f"{c:>24}" for c in columns))
    for name, rows in results.items():
        print(f"{name:8}" + "".join(f"{_cell(rows[c]):>24}" for c in columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
