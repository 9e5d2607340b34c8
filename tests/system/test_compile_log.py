"""The suite's time accounting (tests/harness/compile_log.py) sums what it logged."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.harness import compile_log


def test_summary_sums_compiles_worker_and_subprocess_cpu_per_file(tmp_path):
    rows = [
        {"test": "tests/a.py::t1", "module": "m", "function": "f", "args": "()", "cpu": 2.0},
        {"test": "tests/b.py::t1", "module": "m", "function": "f", "args": "()", "cpu": 1.5},
        {"kind": "test", "test": "tests/a.py::t1", "own": 3.0, "children": 0.0},
        {"kind": "test", "test": "tests/a.py::t2", "own": 1.0, "children": 0.0},
        {"kind": "test", "test": "tests/b.py::t1", "own": 2.0, "children": 7.0},
    ]
    (tmp_path / "1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    (tmp_path / "2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[3:]))
    lines = compile_log.summary(str(tmp_path)).splitlines()
    assert lines[0] == "3 tests, 6 CPU s in the workers (compiles included) and 7 in subprocesses"
    assert lines[1].startswith("2 compiles, 4 CPU s; 1 functions compiled more than once")
    table = [line.split() for line in lines[4:6]]
    assert table == [["9", "2", "7", "tests/b.py"], ["4", "2", "0", "tests/a.py"]]


def test_a_test_logs_its_own_and_its_subprocesses_cpu(tmp_path, monkeypatch):
    monkeypatch.setattr(compile_log, "_RECORDER", compile_log._Recorder(tmp_path / "x.jsonl"))
    before = compile_log.cpu_seconds()
    subprocess.run([sys.executable, "-c", "sum(range(3_000_000))"], check=True)
    compile_log.finished("tests/c.py::t", before)
    (row,) = [json.loads(line) for line in (tmp_path / "x.jsonl").read_text().splitlines()]
    assert row["kind"] == "test" and row["test"] == "tests/c.py::t"
    assert row["children"] > 0.01
