"""The documentation's examples are the tools' real output (issue 12: docs/cli.md's
``gradc show`` example had gone stale, 15 nodes where the command prints 22, with an
unexplained ``Detach``; issue 20: the README's generated code, its import list, cli.md's
module header and its ``gradc check`` table)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gradc.cli import main

from tests.harness.paths import DOCS



def test_cli_md_show_example_is_the_real_output(tmp_path, monkeypatch, capsys):
    doc = (DOCS / "cli.md").read_text(encoding="utf-8")
    block = doc.split("$ cat swish.grad\n", 1)[1].split("```", 1)[0]
    model, shown = block.split("$ gradc show swish.grad\n")
    (tmp_path / "swish.grad").write_text(model, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["show", "swish.grad"]) == 0
    assert capsys.readouterr().out == shown


def test_cli_md_explains_every_function_its_show_example_prints():
    doc = (DOCS / "cli.md").read_text(encoding="utf-8")
    example, after = doc.split("$ gradc show swish.grad\n", 1)[1].split("```", 1)
    assert "Detach(a1)" in example
    assert "`Detach(a1)`" in after and "stop-gradient" in after


ROOT = DOCS.parent
KERNEL_KEY = re.compile(r"(_[a-z_]+)_[0-9a-f]{12}\(")


def generated_module(path: Path) -> str:
    """The CPU target's module text of the model at ``path``, as ``gradc compile`` writes
    it (the compiler alone: nothing is imported or compiled by Numba)."""
    from gradc.pipeline import Options, compile_source
    from gradc.source import Source

    source = Source(path.read_text(encoding="utf-8"), path.name)
    return compile_source(source, Options.make(), "0" * 64)[0]


def test_readme_generated_code_excerpt_is_in_the_real_module():
    """Issue 20: the excerpt still showed ``ws[...].reshape(...)`` after the views became
    ``_ws_view`` calls. Each run of lines between the excerpt's ``...`` lines must appear,
    in order, as consecutive lines of the module (kernel names differ only in the key)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    excerpt = readme.split("```python\n@nb.njit", 1)[1].split("```", 1)[0]
    lines = ("@nb.njit" + excerpt).rstrip("\n").split("\n")
    module = KERNEL_KEY.sub(r"\1_KEY(", generated_module(ROOT / "examples" / "mlp.grad"))
    real = module.split("\n")
    runs, run = [], []
    for line in lines:
        if line.strip() == "...":
            runs.append(run)
            run = []
        else:
            run.append(KERNEL_KEY.sub(r"\1_KEY(", line))
    runs.append(run)
    at = 0
    for run in runs:
        found = next((i for i in range(at, len(real) - len(run) + 1)
                      if real[i:i + len(run)] == run), None)
        assert found is not None, "\n".join(run)
        at = found + len(run)


def test_readme_names_every_module_the_generated_module_imports():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    sentence = readme.split("It imports only ", 1)[1].split("Every kernel", 1)[0]
    named = set(re.findall(r"`([a-z_]+)`", sentence))
    module = generated_module(ROOT / "examples" / "mlp.grad")
    imported = set(re.findall(r"^import ([a-z_]+)", module, re.M))
    assert imported == {"difflib", "functools", "importlib", "math", "threading", "warnings",
                        "os", "ctypes", "time", "numba", "numpy"}
    assert named == imported
    assert "unpickling" in sentence and "needs gradc" in sentence


def test_cli_md_compile_header_is_the_real_first_line(tmp_path, monkeypatch, capsys):
    doc = (DOCS / "cli.md").read_text(encoding="utf-8")
    shown = doc.split("$ gradc compile xor.grad -o - | head -1\n", 1)[1].split("\n", 1)[0]
    (tmp_path / "xor.grad").write_text((ROOT / "examples" / "xor.grad").read_text(
        encoding="utf-8"), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["compile", "xor.grad", "-o", "-"]) == 0
    assert capsys.readouterr().out.split("\n", 1)[0] == shown


@pytest.mark.slow
def test_cli_md_check_table_is_the_real_output(tmp_path, monkeypatch, capsys):
    """Everything of ``gradc check xor.grad`` as printed, except the digits of the
    errors (rounding noise, different on other machines): those must be numbers within
    the tolerance, in the doc and in the real output alike."""
    doc = (DOCS / "cli.md").read_text(encoding="utf-8")
    shown = doc.split("$ gradc check xor.grad\n", 1)[1].split("$ echo $?", 1)[0]
    (tmp_path / "xor.grad").write_text((ROOT / "examples" / "xor.grad").read_text(
        encoding="utf-8"), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["check", "xor.grad"]) == 0
    real = capsys.readouterr().out
    number = re.compile(r"\b\d\.\d\de-\d\d\b")
    for text in (shown, real):
        rows = [line for line in text.splitlines() if line.endswith(" ok")]
        assert len(rows) == 15
        assert all(float(number.search(row)[0]) <= 1e-5 for row in rows)
    assert number.sub("E", shown) == number.sub("E", real)
