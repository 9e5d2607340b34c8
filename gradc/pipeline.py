"""The compiler pipeline, stage by stage: parse, lower, generate.

Each stage has one entry function; :func:`compile_source` runs them all and returns the
generated module's text with what the API needs to know about the model.
"""

from __future__ import annotations

from gradc.codegen.module import generate
from gradc.frontend.parser import parse
from gradc.ir.graph import Graph
from gradc.ir.lower import lower
from gradc.options import DTYPES, TARGETS, Options
from gradc.runtime.cache import versions
from gradc.source import Source

__all__ = ["DTYPES", "TARGETS", "Options", "front", "eval_graph", "compile_source"]


def front(source: Source, options: Options) -> tuple[Graph, list]:
    """Parse and lower (train mode): the graph and the warnings. Raises ErrorGroup on user
    errors."""
    return lower(parse(source), source, options.dtype, options.wrt)


def eval_graph(source: Source, options: Options, graph: Graph) -> Graph | None:
    """The eval-mode graph of a model with batchnorm or dropout, else None."""
    if not graph.stateful:
        return None
    return lower(parse(source), source, options.dtype, options.wrt, mode="eval")[0]


def compile_source(source: Source, options: Options, key: str) -> tuple[str, Graph, list]:
    """Return (generated module text, graph, warnings) for the options' target."""
    graph, warnings = front(source, options)
    g_eval = eval_graph(source, options, graph)
    rendered = [w.render() for w in warnings]
    if options.target == "cuda":
        from gradc.codegen.cuda_module import generate_cuda
        text = generate_cuda(graph, source, key, options.optimizer, options.wrt, versions(),
                             g_eval, rendered)
        if not options.cache:
            text = text.replace("_CJIT = dict(cache=not _SIM)", "_CJIT = dict(cache=False)", 1)
        return text, graph, warnings
    text = generate(graph, source, key, options.optimizer, options.wrt, options.parallel,
                    versions(), g_eval, rendered)
    if not options.cache:
        text = text.replace("_JIT = dict(cache=True,", "_JIT = dict(cache=False,", 1)
    return text, graph, warnings
