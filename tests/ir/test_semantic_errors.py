"""Golden tests of semantic errors and warnings (names, arity, keywords, dtypes, shapes).

Each ``tests/ir/golden/semantic/NAME.grad`` is lowered with ``gradc.pipeline.front`` as
``Source(text, "NAME.grad")``; ``NAME.err`` holds ``str(ErrorGroup)`` plus a newline, or, for
a file that compiles, its warnings rendered and blank-line separated (as ``gradc compile``
prints them on stderr). The expected texts were written by hand from what a good message
says, not copied from the compiler.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gradc.errors import ErrorGroup
from gradc.pipeline import Options, front
from gradc.source import Source

GOLDEN = Path(__file__).parent / "golden" / "semantic"

def rendered(path: Path) -> str:
    """What the compiler reports for the golden model at ``path``."""
    source = Source(path.read_text(encoding="utf-8"), path.name)
    try:
        _graph, warnings = front(source, Options.make())
    except ErrorGroup as err:
        return str(err) + "\n"
    return "\n\n".join(w.render() for w in warnings) + "\n"


@pytest.mark.parametrize("name", sorted(p.stem for p in GOLDEN.glob("*.grad")))
def test_golden_semantic_errors(name):
    path = GOLDEN / f"{name}.grad"
    assert rendered(path) == (GOLDEN / f"{name}.err").read_text(encoding="utf-8")


def test_golden_files_pair_up():
    names = {p.stem for p in GOLDEN.glob("*.grad")}
    assert names == {p.stem for p in GOLDEN.glob("*.err")}
    assert {"unknown_name", "matmul_shapes", "nonscalar_loss", "integer_arithmetic",
            "integer_param", "indexing", "unknown_keyword", "arity", "two_errors",
            "unused_input", "layer_cascade"} <= names


def test_errors_are_located_and_never_python_tracebacks():
    for path in GOLDEN.glob("*.grad"):
        text = rendered(path)
        assert "Traceback" not in text
        first = text.split("\n", 1)[0]
        assert first.startswith(f"{path.name}:"), first
        assert ": error: " in first or ": warning: " in first


def test_warnings_do_not_stop_compilation():
    path = GOLDEN / "unused_input.grad"
    graph, warnings = front(Source(path.read_text(encoding="utf-8"), path.name), Options.make())
    assert [w.severity for w in warnings] == ["warning"]
    assert set(graph.inputs) == {"x", "mask"} and graph.loss is not None


@pytest.mark.parametrize("wrt, message", [
    (("y",), "wrt: input 'y' is i64: no gradient through an integer value"),
    (("z",), "wrt: 'z' is not an input of the model"),
])
def test_wrt_errors(wrt, message):
    text = "input x : f32[B, 3]\ninput y : i64[B]\nparam W : f32[3, 2]\n" \
           "loss = cross_entropy(x @ W, y)\n"
    with pytest.raises(ErrorGroup) as info:
        front(Source(text, "t.grad"), Options.make(wrt=wrt))
    assert message in str(info.value)
