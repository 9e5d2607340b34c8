"""The documentation's examples are the tools' real output (issue 12: docs/cli.md's
``gradc show`` example had gone stale, 15 nodes where the command prints 22, with an
unexplained ``Detach``)."""

from __future__ import annotations

from pathlib import Path

from gradc.cli import main

DOCS = Path(__file__).resolve().parents[1] / "docs"


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
