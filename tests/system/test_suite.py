"""The test suite's own contracts (issue 21, item 6): its folders mirror ``gradc/``, a test
module imports only ``tests.harness`` and the library, random draws come from one seed,
both pytest-xdist workers share one cache folder, and files of slow tests run first."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import order, seeds
from tests.harness.paths import ROOT

TESTS = ROOT / "tests"
#: folders of tests/ that are no package of gradc/
OWN = {"harness", "system"}
#: a test module putting a folder of the checkout on sys.path (to import another module)
INSERT = re.compile(r"sys\.path\.insert\(.*(__file__|HERE|ROOT)")


def _folders(root: Path, pattern: str) -> set[str]:
    """The folders below ``root`` holding a file that matches ``pattern``."""
    return {p.parent.relative_to(root).as_posix() for p in root.rglob(pattern)} - {"."}


def test_the_folders_mirror_the_packages_of_gradc():
    tests = {f for f in _folders(TESTS, "test_*.py") if f.split("/")[0] not in OWN}
    packages = _folders(ROOT / "gradc", "*.py")
    assert tests <= packages, sorted(tests - packages)
    # named by subject, not by the issue that added them
    assert not [p.name for p in TESTS.rglob("test_*.py")
                if p.name.startswith(("test_hardening_", "test_fuzz_"))]
    # every test file sits in a package folder (no loose folders without __init__.py)
    loose = [p for p in TESTS.rglob("test_*.py") if not (p.parent / "__init__.py").exists()]
    assert not loose, loose


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.append(node.module or "")
    return names


def test_test_modules_import_only_the_harness_and_the_library():
    modules = {p.stem for p in TESTS.rglob("test_*.py")} | {"conftest", "oracles", "op_specs"}
    bad = {}
    for path in sorted(TESTS.rglob("test_*.py")):
        wrong = [n for n in _imports(path) if n.split(".")[0] in modules
                 or (n.startswith("tests") and not n.startswith("tests.harness"))]
        if wrong or INSERT.search(path.read_text(encoding="utf-8")):
            bad[path.relative_to(ROOT).as_posix()] = wrong or ["sys.path.insert"]
    assert not bad, bad


@pytest.mark.parametrize("text, want", [("", seeds.DEFAULT), ("  ", seeds.DEFAULT),
                                        ("7", 7), ("0", 0)])
def test_the_seed_comes_from_gradc_test_seed(monkeypatch, text, want):
    monkeypatch.setenv(seeds.ENV, text)
    assert seeds.base() == want
    assert seeds.seed(3) == want + 3


@pytest.mark.parametrize("text", ["-1", "x", "1.5", "0x10"])
def test_a_malformed_seed_is_a_value_error_naming_the_variable(monkeypatch, text):
    monkeypatch.setenv(seeds.ENV, text)
    with pytest.raises(ValueError, match=f"{seeds.ENV} must be a non-negative integer"):
        seeds.base()


def test_no_test_draws_its_seed_from_the_clock_or_random():
    unseeded = ("random.randrange(", "random.random(", "default_rng()", "time.time()) %",
                "np.random.seed(", "random.Random()")
    found = {p.relative_to(ROOT).as_posix(): [u for u in unseeded if u in p.read_text()]
             for p in TESTS.rglob("test_*.py") if p.name != Path(__file__).name}
    assert not {k: v for k, v in found.items() if v}


class _Item:
    def __init__(self, path: str, slow: bool):
        self.path, self.slow = path, slow

    def get_closest_marker(self, name):
        return self.slow if name == "slow" else None


def test_files_of_slow_tests_are_handed_out_first():
    items = [_Item("a", False), _Item("b", True), _Item("b", False), _Item("c", True),
             _Item("d", False), _Item("c", True)]
    order.slow_files_first(items)
    assert [(it.path, bool(it.slow)) for it in items] == [
        ("c", True), ("c", True), ("b", True), ("b", False), ("a", False), ("d", False)]


PROBE = """
import os, pathlib
def test_probe_{n}():
    pathlib.Path(os.environ["PROBE_OUT"], "{n}").write_text(os.environ["GRADC_CACHE_DIR"])
"""


@pytest.mark.slow
def test_both_xdist_workers_share_one_cache_folder(tmp_path, monkeypatch):
    """Two files on two workers (--dist loadfile) see one GRADC_CACHE_DIR, made for the run
    and removed after it; the user's variable is left alone when set."""
    suite = tmp_path / "suite"
    (suite / "tests").mkdir(parents=True)
    (suite / "tests" / "__init__.py").write_text("")
    (suite / "tests" / "conftest.py").write_text((TESTS / "conftest.py").read_text())
    (suite / "tests" / "harness").symlink_to(TESTS / "harness")
    for n in range(2):
        (suite / "tests" / f"test_probe{n}.py").write_text(PROBE.format(n=n))
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.delenv("GRADC_CACHE_DIR", raising=False)
    monkeypatch.setenv("PROBE_OUT", str(out))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist",
                           "loadfile", "-p", "no:cacheprovider", "tests"], cwd=suite,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    folders = {(out / str(n)).read_text() for n in range(2)}
    assert len(folders) == 1, folders
    assert not Path(folders.pop()).exists()      # removed at the end of the run
