"""Where the suite's time goes: a log of every Numba compile and of each test's CPU time.

With ``GRADC_TEST_COMPILE_LOG=DIR`` set, each pytest process (every xdist worker) appends one
JSON line per top-level Numba compile to ``DIR/<pid>.jsonl``: the test running it, the
compiled function (its module, which names the model's cache key, and its name) and the CPU
seconds the compile took in that process (nested compiles of callees are counted in their
caller's). A cache load is not a compile and is not logged. After each test it appends one
line (``"kind": "test"``) with the CPU seconds the test took in the worker (setup, call and
teardown, compiles included) and in the subprocesses it waited for (a CLI run, the CUDA
simulator's workers): the compile log alone does not see the latter.

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
import resource
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


def cpu_seconds() -> tuple[float, float]:
    """(this process's CPU seconds, those of the subprocesses it has waited for)."""
    own, children = (resource.getrusage(w) for w in
                     (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def finished(nodeid: str, before: tuple[float, float]) -> None:
    """Log the CPU seconds test ``nodeid`` took since :func:`cpu_seconds` gave ``before``."""
    if _RECORDER is None:
        return
    own, children = (round(a - b, 3) for a, b in zip(cpu_seconds(), before))
    with _RECORDER.path.open("a") as f:
        f.write(json.dumps({"kind": "test", "test": nodeid, "own": own,
                            "children": children}) + "\n")


def summary(folder: str, top: int = 30) -> str:
    """CPU seconds per test file (compiling, all of the worker's, subprocesses') and the
    functions compiled more than once."""
    lines = [json.loads(line) for p in Path(folder).glob("*.jsonl")
             for line in p.read_text().splitlines()]
    rows = [r for r in lines if r.get("kind") != "test"]
    tests = [r for r in lines if r.get("kind") == "test"]
    own, children = collections.Counter(), collections.Counter()
    for r in tests:
        own[r["test"].split("::")[0]] += r["own"]
        children[r["test"].split("::")[0]] += r["children"]
    per_file = collections.Counter()
    per_fn = collections.defaultdict(list)
    for r in rows:
        per_file[r["test"].split("::")[0]] += r["cpu"]
        per_fn[(r["module"], r["function"], r["args"])].append(r)
    total = sum(r["cpu"] for r in rows)
    repeated = {k: v for k, v in per_fn.items() if len(v) > 1}
    wasted = sum(r["cpu"] for v in repeated.values() for r in v[1:])
    out = [f"{len(tests)} tests, {sum(own.values()):.0f} CPU s in the workers (compiles "
           f"included) and {sum(children.values()):.0f} in subprocesses",
           f"{len(rows)} compiles, {total:.0f} CPU s; {len(repeated)} functions compiled "
           f"more than once, {wasted:.0f} CPU s on the repeats", "",
           "CPU s: all  compiles  subprocesses  test file"]
    files = own + children
    order = files.most_common(top) if tests else per_file.most_common(top)
    out += [f"{own[f] + children[f]:10.0f}  {per_file[f]:8.0f}  {children[f]:12.0f}  {f}"
            for f, _ in order]
    out += ["", "repeats  CPU s  function (tests)"]
    for (module, fn, _), v in sorted(repeated.items(), key=lambda kv: -sum(
            r["cpu"] for r in kv[1][1:]))[:top]:
        files = sorted({r["test"].split("::")[0] for r in v})
        out.append(f"{len(v):7d}  {sum(r['cpu'] for r in v[1:]):5.1f}  {module}.{fn} "
                   f"({', '.join(files)})")
    return "\n".join(out)


if __name__ == "__main__":
    print(summary(sys.argv[1]))
