"""The driver: the only place that sequences the compiler's stages.

front (parse + lower) -> programs (autodiff, one entry per kernel program) -> schedule
(kernel programs) -> ``target.emit`` through the shared assembler -> module text. Each
stage is a pure function of its inputs; targets are plug-ins (:mod:`gradc.codegen.target`).
"""

from __future__ import annotations

from gradc.codegen.assemble import Unit, arg_name, assemble, mangle, safe_comment, signature
from gradc.codegen.target import get as get_target
from gradc.errors import SourceError
from gradc.frontend.parser import parse
from gradc.ir.graph import Graph
from gradc.ir.lower import lower
from gradc.codegen.target import TARGETS
from gradc.options import Options
from gradc.passes.programs import build_programs
from gradc.passes.schedule import schedule
from gradc.runtime.cache import base_name, versions
from gradc.source import Source

__all__ = ["TARGETS", "Options", "front", "eval_graph", "programs", "compile_source",
           "compile_sources"]


def front(source: Source, options: Options) -> tuple[Graph, list]:
    """Parse and lower (train mode): the graph and the warnings. Raises ErrorGroup on user
    errors."""
    return lower(parse(source), source, options.dtype, options.wrt)


def eval_graph(source: Source, options: Options, graph: Graph) -> Graph | None:
    """The eval-mode graph of a model with batchnorm or dropout, else None."""
    if not graph.stateful:
        return None
    return lower(parse(source), source, options.dtype, options.wrt, mode="eval")[0]


def programs(graph: Graph, g_eval: Graph | None, options: Options) -> dict:
    """Every kernel program of the model: name -> (scheduled Program, its ProgramSpec)."""
    for name in list(graph.params) + list(graph.inputs):
        mangle(name)
    entries = build_programs(graph, options.wrt, options.optimizer, g_eval)
    return {name: (schedule(e.graph or graph, e, arg_name), e) for name, e in entries.items()}


def _commenter(source: Source):
    """span -> the sanitised ``FILE.grad:LINE: text`` comment of a kernel."""
    lines, base = source.text.split("\n"), base_name(source.filename)

    def comment(span) -> str:
        text = lines[span.line - 1] if 0 < span.line <= len(lines) else ""
        return safe_comment(f"{base}:{span.line}: {text.strip()}")
    return comment


def compile_source(source: Source, options: Options, key: str) -> tuple[str, Graph, list]:
    """Return (generated module text, graph, warnings) for the options' target."""
    (text,), graph, warnings = compile_sources(source, [(options, key)])
    return text, graph, warnings


def compile_sources(source: Source, variants: list[tuple[Options, str]]
                    ) -> tuple[list[str], Graph, list]:
    """Return (module texts, graph, warnings) for (options, cache key) pairs of one model
    that differ only in what code generation reads (target, cache, parallel): the front
    end, autodiff and scheduling run once, with the first options (the tiered start
    assembles the cpu and numpy modules of a model from one :func:`programs`)."""
    options = variants[0][0]
    graph, warnings = front(source, options)
    g_eval = eval_graph(source, options, graph)
    progs = programs(graph, g_eval, options)
    step = progs.get("train_step")
    sig = signature(graph, g_eval, options.optimizer, options.wrt,
                    step[1].batch_dim if step else None)
    rendered = [_under_base_name(w).render() for w in warnings]
    texts = [assemble(get_target(opts.target), Unit(progs, sig, key, opts, _commenter(source)),
                      source, versions(), rendered) for opts, key in variants]
    return texts, graph, warnings


def _under_base_name(warning: SourceError) -> SourceError:
    """The warning as the module records it: under the file's base name, so that the
    module's text (like its cache key) does not depend on how the path was typed."""
    source = warning.source
    base = Source(source.text, base_name(source.filename))
    return SourceError(warning.message, base, warning.span, warning.hint, warning.severity)
