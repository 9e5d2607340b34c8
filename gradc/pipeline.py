"""The compiler pipeline, stage by stage: parse, lower, generate.

Each stage has one entry function; :func:`compile_source` runs them all and returns the
generated module's text with what the API needs to know about the model.
"""

from __future__ import annotations

from dataclasses import dataclass

from gradc.codegen.module import generate
from gradc.errors import GradcError
from gradc.frontend.parser import parse
from gradc.ir.graph import Graph
from gradc.ir.lower import lower
from gradc.passes.entries import Optimizer
from gradc.runtime.cache import versions
from gradc.source import Source

TARGETS = ("cpu", "cuda")
DTYPES = ("f32", "f64")


@dataclass
class Options:
    """Compile options (SPEC §2); ``key()`` is what the cache hashes."""

    target: str = "cpu"
    dtype: str | None = None
    wrt: tuple[str, ...] = ()
    optimizer: Optimizer = Optimizer("sgd", ())
    cache: bool = True
    parallel: bool = False

    @classmethod
    def make(cls, target="cpu", dtype=None, wrt=(), optimizer="sgd", cache=True,
             parallel=False) -> Options:
        """Validate user-given options."""
        if target not in TARGETS:
            raise GradcError(f"unknown target '{target}': one of {', '.join(TARGETS)}")
        if target == "cuda":
            raise GradcError("target 'cuda' is not supported yet; use target='cpu'")
        if dtype is not None and dtype not in DTYPES:
            raise GradcError(f"unknown dtype '{dtype}': one of {', '.join(DTYPES)}")
        if isinstance(wrt, str):
            wrt = tuple(w for w in wrt.split(",") if w)
        return cls(target, dtype, tuple(wrt), Optimizer.parse(optimizer), bool(cache),
                   bool(parallel))

    def key(self) -> dict:
        return {"target": self.target, "dtype": self.dtype, "wrt": list(self.wrt),
                "optimizer": [self.optimizer.name, list(self.optimizer.hyper)],
                "cache": self.cache, "parallel": self.parallel}


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
    """Return (generated module text, graph, warnings)."""
    graph, warnings = front(source, options)
    text = generate(graph, source, key, options.optimizer, options.wrt, options.parallel,
                    versions(), eval_graph(source, options, graph))
    if not options.cache:
        text = text.replace("_JIT = dict(cache=True,", "_JIT = dict(cache=False,", 1)
    return text, graph, warnings
