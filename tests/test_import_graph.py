"""The package's import graph: no cycles between modules at import time, and the library
parts import no command-line code.

Read from the sources with :mod:`ast` (nothing is imported): an edge A -> B for each
``import gradc.B`` / ``from gradc.B import x`` in A (``from gradc.B import C`` is an edge to
the module ``gradc.B.C`` when that is a module), at module level for the cycle check (a
function-level import runs later and may close a loop on purpose), anywhere for the
layering check.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path
from tests.harness.paths import ROOT

PACKAGE = ROOT / "gradc"


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, known: dict, top_level: bool) -> set[str]:
    """The gradc modules ``path`` imports (at module level only when ``top_level``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level else list(ast.walk(tree))
    # module level includes `if`/`try` blocks at the top, not function bodies
    todo, found = list(nodes), set()
    while todo:
        node = todo.pop()
        if top_level and isinstance(node, (ast.If, ast.Try)):
            todo += node.body + node.orelse + getattr(node, "finalbody", []) + \
                [s for h in getattr(node, "handlers", []) for s in h.body]
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known
                      else node.module for a in node.names}
    return {m for m in found if m in known}


def test_no_module_level_import_cycle():
    known = modules()
    graph = {name: imports(path, known, top_level=True) - {name}
             for name, path in known.items()}
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the loop


def test_the_cycle_check_finds_a_cycle():
    """The check can fail: a graph with the loop the CLI split removed is refused."""
    graph = {"gradc.commands.train": {"gradc.commands._cluster"},
             "gradc.commands._cluster": {"gradc.commands.train"}}
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError:
        return
    raise AssertionError("no cycle found")


def test_the_library_imports_no_command_line_code():
    """gradc/dask, gradc/training, gradc/runtime, gradc/codegen and the stages are
    libraries: the CLI (gradc.cli, gradc.commands) imports them, never the reverse."""
    known = modules()
    cli = {m for m in known if m == "gradc.cli" or m.startswith("gradc.commands")}
    for name, path in known.items():
        if name in cli or name in ("gradc.__main__",):
            continue
        assert not imports(path, known, top_level=False) & cli, name
