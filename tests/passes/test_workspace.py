"""Regression tests of the workspace planner (issue 12): a 600-layer chain is planned in
near-linear time (the planner used to compare every new buffer with every free slot), and
the plan stays sound: buffers alive at the same time never share workspace elements, and
dead slots are reused."""

from __future__ import annotations

import gc

import pytest
import sympy

from gradc.ir.shapes import numel
from gradc.passes.schedule import kernel_buffers, kernel_outputs
from gradc.pipeline import Options, eval_graph, front, programs
from gradc.source import Source

from tests.harness.fuzz.common import FRONT_LIMIT, Timeout, cpu_time, time_limit
from tests.harness.paths import EXAMPLES



def chain(depth: int) -> str:
    return "".join(["input x : f64[B, 8]\ninput y : f64[B, 8]\nparam W : f64[8, 8]\n",
                    "h0 = x\n"] + [f"h{i + 1} = h{i} @ W\n" for i in range(depth)]
                   + [f"loss = mse(h{depth}, y)\n"])


def all_programs(text: str, name: str = "m.grad") -> dict:
    source, opts = Source(text, name), Options.make()
    graph, _ = front(source, opts)
    return programs(graph, eval_graph(source, opts, graph), opts)


def _programs_cpu_seconds(depth: int) -> tuple[float, dict]:
    """This thread's CPU seconds for every program of a ``depth``-layer chain, and the
    programs; more than the fuzzers' bound (x4) fails as a hang."""
    start = cpu_time()
    try:
        with time_limit(4 * FRONT_LIMIT):
            progs = all_programs(chain(depth))
    except Timeout:
        raise AssertionError(f"{depth} layers: more than {4 * FRONT_LIMIT:g} s of CPU "
                             "time") from None
    return cpu_time() - start, progs


@pytest.mark.slow
def test_a_600_layer_chain_compiles_its_programs_in_near_linear_time():
    """Front end + every program (autodiff, schedule, workspace plan; not Numba) of a
    600-layer matmul chain costs at most 6 times the CPU time of a 200-layer one (3 when
    linear, 9 when quadratic: the quadratic planner took about 12 s for 600 layers, the
    linear one 2 s) -- a ratio of this thread's CPU times in one process, so that a busy
    machine, which slows both, does not fail it. Each depth takes the least of two runs
    with the garbage collector off: in a long pytest-xdist worker, the process's CPU time
    (which counts threads earlier tests left running) once made the ratio 10, and a full
    collection costs more the more heap earlier tests left."""
    gc.collect()
    gc.disable()
    try:
        runs = {depth: [_programs_cpu_seconds(depth) for _ in range(2)]
                for depth in (200, 600)}
    finally:
        gc.enable()
    seconds = {depth: min(spent for spent, _ in r) for depth, r in runs.items()}
    assert seconds[600] < 6 * seconds[200], seconds
    assert len(runs[600][-1][1]["loss_and_grad"][0].kernels) >= 1200


def _at(expr, dims: dict) -> int:
    """The value of a size or offset expression at ``dims`` (dim name -> size)."""
    expr = sympy.sympify(expr)
    return int(expr.subs({s: dims[s.name] for s in expr.free_symbols}))


def _check_plan(prog, dims: dict) -> None:
    """Every pair of workspace buffers alive at once (first write to last use, views
    counted as uses of their base) occupies disjoint elements at these dims; some slot is
    reused when buffers die early."""
    first, last, spans = {}, {}, {}
    for k, kern in enumerate(prog.kernels):
        for b in kernel_outputs(kern):
            first.setdefault(id(b), k)
        for b in kernel_buffers(kern):
            while b is not None:
                last[id(b)] = k
                if b.kind == "ws":
                    lo = _at(b.offset, dims)
                    spans[id(b)] = (lo, lo + _at(numel(b.shape), dims), b.name)
                b = b.base
    for b in prog.results:
        last[id(b)] = len(prog.kernels)
    ws = sorted(spans, key=lambda i: first.get(i, 0))
    for i, a in enumerate(ws):
        for b in ws[i + 1:]:
            if first.get(b, 0) <= last[a] and first.get(a, 0) <= last[b]:
                (lo1, hi1, n1), (lo2, hi2, n2) = spans[a], spans[b]
                assert hi1 <= lo2 or hi2 <= lo1, f"{prog.name}: {n1} and {n2} overlap"
    assert _at(prog.ws_size, dims) >= max(
        (hi for lo, hi, _ in spans.values()), default=0)


def test_workspace_plans_are_sound_and_reuse_dead_slots():
    dims = {"B": 5, "T": 4}
    reused = False
    for path in (EXAMPLES / "mlp.grad", EXAMPLES / "cnn.grad", EXAMPLES / "char_rnn.grad"):
        for prog, _ in all_programs(path.read_text(), path.name).values():
            _check_plan(prog, dims)
            offsets = [b.offset for k in prog.kernels for b in kernel_outputs(k)
                       if b.kind == "ws"]
            reused |= len(set(offsets)) < len(offsets)
    for prog, _ in all_programs(chain(40)).values():
        _check_plan(prog, dims)
    assert reused
