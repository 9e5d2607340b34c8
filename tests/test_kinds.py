"""The node-kind registry (:mod:`gradc.kinds`) is complete: every kind is one definition
with every rule its stages call, and the definitions say what the compiler really does.

- each kind that is not a leaf has a VJP, a JVP, a reference evaluation and a lowering
  (a kernel, or a view of its input); a kind that may be fused or be an index map can be
  expressed at loop indices; leaves have no rules but a dim's value;
- the families define each kind once, under its own name;
- on the programs of the examples (and of one model for ``logsumexp``, which no example
  uses), which together hold every kind: every node's attrs are among those its kind
  declares, every lookup names an integer input of the node, and every kernel a kind's
  lowering returns is of a class its definition lists (so ``tests/codegen/test_tables.py``,
  which requires a printer of each listed class in every target, covers what is printed).

Nothing is compiled: graphs and kernel programs only (a few seconds).
"""

from __future__ import annotations

import dataclasses

import pytest

from gradc.kinds import FAMILIES, KINDS
from gradc.options import Options
from gradc.passes import kernels
from gradc.pipeline import eval_graph, front, programs
from gradc.source import Source
from tests.harness.paths import EXAMPLES

#: the examples whose programs hold every kind of the registry, with a model for logsumexp
SOURCES = [(p.name, p.read_text()) for p in sorted(EXAMPLES.glob("*.grad"))
           if p.stem in ("char_rnn", "cnn", "embedding_bag", "lstm_chars", "tiny_gpt")] + [
    ("lse.grad", "model lse\ninput x : f64[B, 4]\nparam W : f64[4, 3] ~ he_normal\n"
                 "output y = logsumexp(x @ W, axis=1)\nloss = sum(y)\n")]


def test_every_kind_has_every_rule_it_needs():
    for name, kind in KINDS.items():
        assert kind.name == name and kind.inputs and kind.doc, name
        if kind.leaf:
            assert kind.vjp is kind.jvp is kind.lower is kind.define is kind.fuse is None, name
            assert not kind.view and not kind.kernels and kind.lookup is None, name
            continue
        assert callable(kind.vjp) and callable(kind.jvp), name
        assert callable(kind.evaluate), name
        assert (kind.lower is not None) != kind.view, name
        assert bool(kind.kernels) == (kind.lower is not None), name
        assert all(issubclass(k, kernels.Kernel) for k in kind.kernels), name
        # 'inline' and 'virtual' nodes are expanded into their consumers' expressions
        assert kind.fuse is None or kind.define is not None, name
    assert KINDS["dim"].evaluate is not None


def test_each_family_defines_its_kinds_once():
    names = [k.name for family in FAMILIES for k in family.KINDS]
    assert len(names) == len(set(names)) == len(KINDS)


def _graphs(g):
    """``g`` and the graphs of the loop bodies in it, recursively."""
    out, todo = [], [g]
    while todo:
        graph = todo.pop()
        out.append(graph)
        todo += [n.attrs["body"].graph for n in graph.nodes if "body" in n.attrs]
    return out


@pytest.fixture(scope="module")
def scheduled():
    """(every node of the sources' graphs after building and scheduling their programs,
    kind name -> the kernel classes its lowering returned)."""
    lowered: dict[str, set] = {}

    def recording(kind):
        def lower(s, n, out):
            kern = kind.lower(s, n, out)
            lowered.setdefault(kind.name, set()).add(type(kern))
            return kern
        return dataclasses.replace(kind, lower=lower)

    patched = {k: recording(kind) for k, kind in KINDS.items() if kind.lower is not None}
    with pytest.MonkeyPatch.context() as mp:
        for name, kind in patched.items():
            mp.setitem(KINDS, name, kind)
        nodes = []
        for filename, text in SOURCES:
            source, options = Source(text, filename), Options.make(dtype="f64")
            g, _ = front(source, options)
            g_eval = eval_graph(source, options, g)
            programs(g, g_eval, options)
            for graph in _graphs(g) + (_graphs(g_eval) if g_eval else []):
                nodes += graph.nodes
    return nodes, lowered


def test_the_sources_hold_every_kind(scheduled):
    nodes, _ = scheduled
    assert {n.op for n in nodes} == set(KINDS)


def test_every_node_has_the_attrs_its_kind_declares(scheduled):
    nodes, _ = scheduled
    for n in nodes:
        assert set(n.attrs) <= set(KINDS[n.op].attrs), (n, sorted(n.attrs))


def test_every_lookup_is_an_integer_input_of_its_node(scheduled):
    nodes, _ = scheduled
    looked = 0
    for n in nodes:
        lookup = KINDS[n.op].lookup
        if lookup is not None:
            idx, limit, what = lookup(n)
            assert idx in n.inputs and not idx.is_float and what in ("label", "index"), n
            looked += 1
    assert looked


def test_every_kind_lowers_to_the_kernels_it_declares(scheduled):
    _, lowered = scheduled
    assert set(lowered) == {k for k, kind in KINDS.items() if kind.lower is not None}
    for name, classes in lowered.items():
        assert classes <= set(KINDS[name].kernels), (name, classes)
