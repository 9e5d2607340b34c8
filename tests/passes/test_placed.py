"""A sum of values placed apart into zeros is written part by part into one buffer.

A concat of k parts, and the gradient of a value sliced in several places (an LSTM's four
gates), are sums of unslices: each part placed into zeros of the full shape. Summed as
they are, they cost k zero-filled buffers of the full shape and a pass adding them up
(a concat of 65 columns took 65 times its output's workspace and 22 s of Numba compile);
the scheduler writes each part once into one buffer instead
(:meth:`gradc.passes.schedule._Scheduler.placed`), with no zero fill where the parts
cover it. These tests check the decision on scheduled programs and the numbers of the
scheduled code on the numpy and cpu targets against the reference interpreter.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gradc
from gradc.ir import build
from gradc.ir.graph import Graph
from gradc.passes.kernels import Loop, Read, Scatter
from gradc.passes.schedule import ProgramSpec, schedule
from gradc.pipeline import Options, eval_graph, front, programs
from gradc.source import Source
from tests.harness.oracles import ReferenceModel


def _program(text: str, entry: str):
    source, options = Source(text, "m.grad"), Options.make()
    graph, _ = front(source, options)
    return programs(graph, eval_graph(source, options, graph), options)[entry][0]


def _scatters(prog) -> list[Scatter]:
    return [k for k in prog.kernels if isinstance(k, Scatter)]


def _concat(n: int) -> str:
    return ("input x : f64[B, 2]\noutput o = concat("
            + ", ".join(f"{k + 1} * x" for k in range(n)) + ")\nloss = sum(o ^ 2)\n")


#: a value sliced in four places, as an LSTM's gates are (``z`` is [B, 8])
GATES = """input x : f64[B, 3]
param W : f64[3, 8] ~ he_normal
z = x @ W
{a} = z[:, {sa}]
{b} = z[:, {sb}]
loss = sum(tanh(a) * sigmoid(b)){rest}
"""


def _gates(sa="0:2", sb="2:4", rest=" + sum(z[:, 4:6] * z[:, 6:8])"):
    return GATES.format(a="a", b="b", sa=sa, sb=sb, rest=rest)


def test_a_concat_writes_each_part_once():
    prog = _program(_concat(8), "forward")
    (scatter,) = _scatters(prog)
    assert len(scatter.parts) == 8 and not scatter.fill
    # no buffer of the concat's full shape other than the output is written
    full = [k for k in prog.kernels if isinstance(k, Loop)
            and any(b.shape == scatter.out.shape for b, _ in k.stores)]
    assert full == []


def test_a_concats_workspace_grows_linearly_with_its_parts():
    sizes = {}
    for n in (8, 16, 32):
        size = _program(_concat(n), "forward").ws_size
        sizes[n] = int(size.subs({d: 64 for d in size.free_symbols}))
    # the parts (n columns pairs) and the output (2n columns): linear in n, where n
    # zero-filled buffers of the output's shape would be quadratic (8x from 8 to 32)
    assert sizes[32] <= 4.5 * sizes[8], sizes


def test_the_gradient_of_a_value_sliced_in_four_places_is_one_scatter():
    prog = _program(_gates(), "loss_and_grad")
    placed = [k for k in _scatters(prog) if len(k.parts) > 1]
    assert len(placed) == 1, prog.kernels
    assert len(placed[0].parts) == 4 and not placed[0].fill
    # nothing adds up buffers of z's shape
    for k in prog.kernels:
        if isinstance(k, Loop):
            for _, expr in k.stores:
                wide = {r.buffer.name for r in expr.atoms(Read)
                        if r.buffer.shape == placed[0].out.shape}
                assert len(wide) <= 1, expr


def test_slices_that_cover_part_of_the_value_fill_the_rest_with_zeros():
    prog = _program(_gates(sa="0:2", sb="5:7", rest=""), "loss_and_grad")
    (placed,) = [k for k in _scatters(prog) if len(k.parts) > 1]
    assert len(placed.parts) == 2 and placed.fill


def test_overlapping_slices_are_summed():
    prog = _program(_gates(sa="0:5", sb="3:8", rest=""), "loss_and_grad")
    assert all(len(k.parts) == 1 and k.fill for k in _scatters(prog))
    assert len(_scatters(prog)) == 2


def _placed_sum(roots_of):
    """Schedule a sum of two unslices of [B, 4] apart, with the roots ``roots_of(sum,
    first unslice)``; return the program's Scatters."""
    g = Graph("m", "f64")
    b = sympy.Symbol("B")
    x = g.add("input", (), (b, sympy.Integer(2)), "f64", None, "x", name="x")
    full = (b, sympy.Integer(4))
    u = [build.unslice(g, build.ew(g, lambda a, k=k: (k + 1) * a, x),
                       (("r", 0, 1, b), ("r", 2 * k, 1, 2)), full) for k in range(2)]
    s = build.ew(g, lambda p, q: p + q, *u)
    spec = ProgramSpec("forward", [x], roots_of(s, u[0]))
    return _scatters(schedule(g, spec, lambda n: n.attrs["name"]))


def test_a_part_that_is_also_a_result_keeps_its_own_buffer():
    assert [len(k.parts) for k in _placed_sum(lambda s, u: [s])] == [2]
    assert [len(k.parts) for k in _placed_sum(lambda s, u: [s, u])] == [1, 1]


def _check(model, ref, x, params, tol):
    loss, grads = model.loss_and_grad(params, x=x)
    want_loss, want = ref.loss_and_grad(params, x=x)
    assert loss == pytest.approx(want_loss, rel=tol, abs=tol)
    for name, g in want.items():
        np.testing.assert_allclose(grads[name], g, rtol=tol, atol=tol, err_msg=name)


@st.composite
def sliced_models(draw):
    """A model reading random column ranges of z = x @ W ([B, width]): some ranges apart,
    some overlapping, some columns read by none; and a concat of some of the ranges."""
    width = draw(st.integers(2, 9))
    ranges = draw(st.lists(st.tuples(st.integers(0, width - 1), st.integers(1, width)),
                           min_size=1, max_size=5))
    ranges = [(a, min(width, a + n)) for a, n in ranges]
    fns = ("tanh({})", "{} ^ 2", "sigmoid({})", "3 * {}")
    terms = [f"sum({fns[k % len(fns)].format(f'z[:, {a}:{b}]')})"
             for k, (a, b) in enumerate(ranges)]
    cat = draw(st.lists(st.sampled_from(range(len(ranges))), min_size=1, max_size=4))
    parts = ", ".join(f"{k + 2} * z[:, {ranges[i][0]}:{ranges[i][1]}]"
                      for k, i in enumerate(cat))
    return (f"input x : f64[B, 3]\nparam W : f64[3, {width}] ~ he_normal\nz = x @ W\n"
            f"output c = concat({parts})\nloss = {' + '.join(terms)} + sum(tanh(c))\n")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sliced_models(), st.integers(0, 2 ** 31 - 1))
def test_sliced_models_match_the_reference_interpreter_on_numpy(text, seed):
    rng = np.random.default_rng(seed)
    model = gradc.compile_string(text, target="numpy", cache=False)
    params = model.init_params(seed % 1000)
    _check(model, ReferenceModel(text), rng.standard_normal((3, 3)), params, 1e-10)


#: a concat (2 parts covering it) and a value sliced in 3 places apart (column 4 unread)
PLACED = """input x : f64[B, 3]
param W : f64[3, 8] ~ he_normal
param V : f64[3, 2] ~ he_normal
z = x @ W
a = z[:, 0:2]
b = z[:, 2:4]
output c = concat(x @ V, 2 * x)
loss = sum(tanh(a) * sigmoid(b)) + sum(z[:, 5:8] ^ 2) + sum(tanh(c))
"""


@pytest.mark.slow
def test_the_cpu_kernels_of_placed_sums_match_the_reference_interpreter():
    assert sorted((len(k.parts), k.fill) for k in _scatters(_program(PLACED, "loss_and_grad"))
                  if len(k.parts) > 1) == [(2, False), (3, True)]
    model = gradc.compile_string(PLACED, cache=False)
    params = model.init_params(1)
    x = np.random.default_rng(5).standard_normal((4, 3))
    _check(model, ReferenceModel(PLACED), x, params, 1e-12)
    np.testing.assert_allclose(model.forward(params, x=x)["c"],
                               np.concatenate([x @ params["V"], 2 * x], 1), rtol=1e-14)
