"""``gradc graph MODEL.grad``: draw the forward (or the loss_and_grad) graph with Graphviz.

Each node shows its id, its name (where it has one), its op and expression, and its type;
each edge shows the shape of the value it carries (and the argument name, ``a0``, ``a1``,
..., where the consumer is an elementwise expression). Roots (outputs, loss, gradients) have
a double border. ``-o FILE.dot`` (or ``.gv``, or no ``-o``: stdout) writes DOT text and
needs only the ``graphviz`` Python package; ``.svg``, ``.png`` and ``.pdf`` are rendered by
Graphviz's ``dot`` program.
"""

from __future__ import annotations

import shutil
import sys
import textwrap
from pathlib import Path

from gradc.commands import EXIT_OK, front_graph, split_names
from gradc.errors import GradcError
from gradc.ir.graph import Graph, Node
from gradc.ir.printer import default_roots, format_type, node_label
from gradc.ir.shapes import fmt_shape
from gradc.kinds import KINDS

TEXT_FORMATS = (".dot", ".gv")
RENDERED_FORMATS = (".svg", ".png", ".pdf")
STYLE = {
    "input": {"shape": "ellipse", "style": "filled", "fillcolor": "lightblue"},
    "param": {"shape": "box", "style": "filled", "fillcolor": "lightyellow"},
    "dim": {"shape": "plaintext"},
    "hyper": {"shape": "plaintext"},
}
DEFAULT_STYLE = {"shape": "box", "style": "rounded"}
WRAP = 48


def register(subparsers) -> None:
    """Add the ``graph`` subparser."""
    p = subparsers.add_parser(
        "graph", help="draw the model's graph (DOT, SVG or PNG via Graphviz)",
        description="Draw MODEL.grad's forward graph, or with --backward the graph of "
                    "loss_and_grad (forward and backward), through Graphviz. The format "
                    "follows the output file's suffix: .dot/.gv (DOT text), .svg, .png or "
                    ".pdf (these need Graphviz's 'dot' program). Without -o, DOT text goes "
                    "to stdout.")
    p.add_argument("model", metavar="MODEL.grad", help="the model file")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="FILE.dot, FILE.svg, FILE.png or FILE.pdf ('-' or none: DOT on stdout)")
    p.add_argument("--backward", action="store_true",
                   help="draw loss_and_grad's graph: the loss and every gradient")
    p.add_argument("--wrt", metavar="x,..", default="",
                   help="with --backward: float inputs to differentiate too")
    p.set_defaults(run=run)


def run(args) -> int:
    """Build the DOT text and write or render it."""
    out = args.output
    suffix = Path(out).suffix.lower() if out and out != "-" else ".dot"
    if suffix not in TEXT_FORMATS + RENDERED_FORMATS:
        raise GradcError(f"gradc graph: cannot tell the format of '{out}' from its suffix: "
                         f"use one of {', '.join(TEXT_FORMATS + RENDERED_FORMATS)}")
    graphviz = _graphviz()
    graph, source = front_graph(args.model, wrt=split_names(args.wrt))
    roots, names = select_roots(graph, args.backward, split_names(args.wrt))
    dot = to_digraph(graphviz, graph, roots, names, graph.name)
    if suffix in TEXT_FORMATS:
        text = dot.source
        if out is None or out == "-":
            sys.stdout.write(text)
            return EXIT_OK
        _write(Path(out), text.encode("utf-8"))
    else:
        _write(Path(out), render(graphviz, dot.source, suffix[1:], out))
    print(f"wrote {out}")
    return EXIT_OK


def _graphviz():
    try:
        import graphviz
    except ImportError:
        raise GradcError("gradc graph: needs the 'graphviz' Python package "
                         "(pip install graphviz)") from None
    return graphviz


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as e:
        raise GradcError(f"gradc graph: cannot write {path}: {e.strerror or e}") from None


def render(graphviz, text: str, fmt: str, out: str) -> bytes:
    """Render DOT ``text`` to ``fmt`` bytes with the ``dot`` program."""
    missing = GradcError(f"gradc graph: rendering {out} needs Graphviz's 'dot' program "
                         "(apt-get install graphviz); write a .dot file instead")
    if shutil.which("dot") is None:
        raise missing
    try:
        return graphviz.Source(text).pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise missing from None


def select_roots(graph: Graph, backward: bool, wrt=()) -> tuple[list[Node], list[str]]:
    """The roots to draw and their names: outputs and loss, or loss_and_grad's."""
    if not backward:
        roots = default_roots(graph)
        names = {n.id: k for k, n in graph.outputs.items()}
        if graph.loss is not None:
            names.setdefault(graph.loss.id, "loss")
        return roots, [names[r.id] for r in roots]
    if graph.loss is None:
        raise GradcError(f"gradc graph: --backward draws loss_and_grad, but model "
                         f"'{graph.name}' declares no loss")
    from gradc.passes.programs import Optimizer, build_programs

    entry = build_programs(graph, tuple(wrt), Optimizer.parse("sgd"))["loss_and_grad"]
    names = ["loss"] + [f"d loss/d {k}" for k in list(graph.params) + list(wrt)]
    return entry.roots, names


def _label(node: Node, root_names: dict[int, str]) -> str:
    head = f"%{node.id}"
    if node.id in root_names:
        head += f"  {root_names[node.id]}"
    elif node.label and not KINDS[node.op].leaf:
        head += f"  {node.label}"
    op = textwrap.wrap(node_label(node), WRAP) or [node.op]
    lines = [head, *op, format_type(node)]
    return "\\n".join(line.replace("\\", "\\\\") for line in lines)


def to_digraph(graphviz, graph: Graph, roots: list[Node], names: list[str], title: str):
    """A ``graphviz.Digraph`` of every node ``roots`` depend on, edges labelled by shape."""
    dot = graphviz.Digraph(name=title, comment=f"gradc graph of model {title}")
    dot.attr(rankdir="TB")
    dot.attr("node", fontname="Helvetica", fontsize="10")
    dot.attr("edge", fontname="Helvetica", fontsize="9")
    root_names = {}
    for r, k in zip(roots, names):
        root_names.setdefault(r.id, k)
    for node in graph.topo(roots):
        style = dict(STYLE.get(node.op, DEFAULT_STYLE))
        if node.id in root_names:
            style["peripheries"] = "2"
        dot.node(f"n{node.id}", _label(node, root_names), **style)
        for i, src in enumerate(node.inputs):
            shape = fmt_shape(src.shape)
            label = f"a{i}: {shape}" if node.op == "ewise" else shape
            dot.edge(f"n{src.id}", f"n{node.id}", label=label)
    return dot
