"""Where the suite's time goes: a log of every Numba compile, per test.

With ``GRADC_TEST_COMPILE_LOG=DIR`` set, each pytest process (every xdist worker) appends one
JSON line per top-level Numba compile to ``DIR/<pid>.jsonl``: the test running it, the
compiled function (its module, which names the model's cache key, and its name) and the CPU
seconds the compile took in that process (nested compiles of callees are counted in their
caller's). A cache load is not a compile and is not logged.

    GRADC_TEST_COMPILE_LOG=/tmp/clog python -m pytest -n 3 --dist loadfile
    python -m tests.harness.compile_log /tmp/clog      # CPU s per test file, repeats

A function compiled more than once with the same argument types (same module, so the same
generated text and options) is a compile the shared cache did not save: two workers
compiled it at the same time, or a test compiled with its own cache folder.
"""

from __future__ import annotations

import collections
import json
import os
import sys
import time
from pathlib import Path

from numba.core import event

ENV = "GRADC_TEST_COMPILE_LOG"


class _Recorder(event.Listener):
    """A Numba ``numba:compile`` listener writing top-level compiles to ``path``."""

    def __init__(self, path: Path):
        self.path, self.depth, self.start, self.test = path, 0, 0.0, "(collection)"

    def on_start(self, event):
        if self.depth == 0:
            self.start = time.process_time()
        self.depth += 1

    def on_end(self, event):
        self.depth -= 1
        if self.depth:
            return
        fn = event.data["dispatcher"].py_func
        line = {"test": self.test, "module": fn.__module__, "function": fn.__name__,
                "args": str(event.data["args"]),
                "cpu": round(time.process_time() - self.start, 3)}
        with self.path.open("a") as f:
            f.write(json.dumps(line) + "\n")


_RECORDER: _Recorder | None = None


def install() -> None:
    """Start logging if ``GRADC_TEST_COMPILE_LOG`` names a folder (idempotent)."""
    global _RECORDER
    folder = os.environ.get(ENV)
    if not folder or _RECORDER is not None:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    _RECORDER = _Recorder(Path(folder) / f"{os.getpid()}.jsonl")
    event.register("numba:compile", _RECORDER)


def running(nodeid: str) -> None:
    """Name the test whose compiles follow."""
    if _RECORDER is not None:
        _RECORDER.test = nodeid


def summary(folder: str, top: int = 30) -> str:
    """CPU seconds of compiling per test file, and the functions compiled more than once."""
    rows = [json.loads(line) for p in Path(folder).glob("*.jsonl")
            for line in p.read_text().splitlines()]
    per_file = collections.Counter()
    per_fn = collections.defaultdict(list)
    for r in rows:
        per_file[r["test"].split("::")[0]] += r["cpu"]
        per_fn[(r["module"], r["function"], r["args"])].append(r)
    total = sum(r["cpu"] for r in rows)
    repeated = {k: v for k, v in per_fn.items() if len(v) > 1}
    wasted = sum(r["cpu"] for v in repeated.values() for r in v[1:])
    out = [f"{len(rows)} compiles, {total:.0f} CPU s; {len(repeated)} functions compiled "
           f"more than once, {wasted:.0f} CPU s on the repeats", "", "CPU s  test file"]
    out += [f"{s:6.0f}  {f}" for f, s in per_file.most_common(top)]
    out += ["", "repeats  CPU s  function (tests)"]
    for (module, fn, _), v in sorted(repeated.items(), key=lambda kv: -sum(
            r["cpu"] for r in kv[1][1:]))[:top]:
        files = sorted({r["test"].split("::")[0] for r in v})
        out.append(f"{len(v):7d}  {sum(r['cpu'] for r in v[1:]):5.1f}  {module}.{fn} "
                   f"({', '.join(files)})")
    return "\n".join(out)


if __name__ == "__main__":
    print(summary(sys.argv[1]))
