"""The ``compile`` workload: time from process launch to the first ``train_step`` result.

Each measurement is a fresh ``sys.executable -c ...`` child with its own ``GRADC_CACHE_DIR``
(and ``NUMBA_CACHE_DIR``) in a temporary folder. The parent reads ``time.time()`` just before
launching; the child prints ``time.time()`` right after its first ``train_step`` returned, so the
time includes interpreter start-up, imports, compilation and the first call. *Cold* runs start
from an empty cache folder; *warm* runs reuse the folder a cold run filled. The child also
reports the in-process split (``import gradc``, ``gradc.compile``, first call) measured with
``time.perf_counter``, and a bare ``python -c "import numpy"`` child gives the baseline.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import UNAVAILABLE, Row, meets, summarize
from benchmarks.workloads import COMPILE_MODEL, COMPILE_TARGETS, MODELS

REPO = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
t1 = time.perf_counter()
import gradc
t2 = time.perf_counter()
model = gradc.compile(sys.argv[1], dtype="f32", optimizer="sgd")
t3 = time.perf_counter()
params = model.init_params(seed=0)
rng = np.random.default_rng(0)
x = rng.standard_normal((256, 3072)).astype(np.float32)
y = rng.integers(0, 10, size=256).astype(np.int64)
loss = float(model.train_step(params, lr=0.01, x=x, y=y))
t4 = time.perf_counter()
end = time.time()
print(json.dumps({"end": end, "import_numpy": t1 - t0, "import_gradc": t2 - t1,
                  "compile": t3 - t2, "first_call": t4 - t3, "loss": loss,
                  "module": str(getattr(model, "path", ""))}))
"""

BASELINE = r"""
import json, time
import numpy as np
print(json.dumps({"end": time.time()}))
"""


def _env(cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["GRADC_CACHE_DIR"] = str(cache / "gradc")
    env["NUMBA_CACHE_DIR"] = str(cache / "numba")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def run_child(code: str, cache: Path, args: tuple[str, ...] = (), timeout: float = 600) -> dict:
    """Run ``code`` in a fresh interpreter; return its JSON line plus ``total`` seconds.

    Raises:
        RuntimeError: the child failed; the message is the last line of its stderr.
    """
    start = time.time()
    proc = subprocess.run([sys.executable, "-c", code, *args], env=_env(cache), cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"]
        raise RuntimeError(lines[-1][:160])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["total"] = result["end"] - start
    return result


def _row(side: str, kind: str, runs: list[dict], target: float | None = None) -> Row:
    row = Row(workload="compile", side=side, kind=kind,
              samples_ns=[r["total"] * 1e9 for r in runs])
    summarize(row)
    if target is not None:
        row.target = f"<={target:g}"
        row.passed = meets(row.median_ns * 1e-9, row.target)
    if "compile" in runs[0]:
        keys = ("import_gradc", "compile", "first_call")
        split = {k: statistics.median(r[k] for r in runs) for k in keys}
        row.check = (f"import gradc {split['import_gradc']:.2f} s, compile "
                     f"{split['compile']:.2f} s, 1st step {split['first_call']:.2f} s")
    return row


def _failed(side: str, exc: Exception) -> Row:
    return Row(workload="compile", side=side, kind="abs", status=UNAVAILABLE,
               reason=f"{type(exc).__name__}: {exc}"[:160])


def run_compile(repeats: int) -> list[Row]:
    """Cold and warm launch-to-first-step times of mlp_cifar, ``repeats`` children each."""
    model = str(MODELS / COMPILE_MODEL)
    rows = []
    with tempfile.TemporaryDirectory(prefix="gradc-bench-") as tmp:
        try:
            base = [run_child(BASELINE, Path(tmp) / "base") for _ in range(max(3, repeats))]
            rows.append(_row("python + numpy startup", "info", base))
        except Exception as exc:  # reported in the row, never raised
            rows.append(_failed("python + numpy startup", exc))
        cold, caches = [], []
        try:
            for i in range(repeats):
                cache = Path(tmp) / f"cold{i}"
                cold.append(run_child(CHILD, cache, (model,)))
                caches.append(cache)
            rows.append(_row("cold: launch->1st step", "abs", cold, COMPILE_TARGETS["cold"]))
        except Exception as exc:  # reported in the row, never raised
            rows.append(_failed("cold: launch->1st step", exc))
        try:
            if not caches:
                raise RuntimeError("no cold run succeeded to fill a cache")
            warm = [run_child(CHILD, caches[i % len(caches)], (model,))
                    for i in range(max(repeats, 1))]
            rows.append(_row("warm: launch->1st step", "abs", warm, COMPILE_TARGETS["warm"]))
            cold_modules = {Path(r["module"]).name for r in cold}
            if any(Path(r["module"]).name not in cold_modules for r in warm):
                rows[-1].check = ("! not a cache hit: the module's cache key changed since the "
                                  "cold run (gradc's sources edited meanwhile?)")
            imports = [{"total": r["import_gradc"], "end": 0} for r in warm]
            rows.append(_row("import gradc (in child)", "info", imports))
        except Exception as exc:
            rows.append(_failed("warm: launch->1st step", exc))
    return rows
