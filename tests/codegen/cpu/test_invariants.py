"""Loop-invariant code motion in the CPU's loop nests (gradc/codegen/cpu/invariants.py).

On random expressions over reads of random index maps: every hoisted local reads only the
loops at and outside its position, never a buffer the kernel writes, is placed before the
innermost loop and inside the outermost, and reads the index of some loop (a part that
depends on none stays in place, so that a nest and its collapsed form hoist alike:
``tests/passes/test_collapse.py`` checks them bitwise); substituting the locals back gives
the original expression. On a model: batchnorm's ``1 / sqrt(var + eps)`` is computed per
channel, not per element, in every entry of the CPU module (the loops it left are what
the conv-batchnorm CNN's step spent a fifth of its time in). The numbers of the hoisted code
are checked wherever the CPU target is (torch, finite differences, the numpy target).
"""

from __future__ import annotations

import ast

import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from gradc.codegen.cpu.invariants import hoist
from gradc.ir import sym
from gradc.passes.kernels import Affine, Buffer, Read
from gradc.pipeline import Options, compile_source
from gradc.source import Source

RANK = 3
BUFFERS = [Buffer(f"b{k}", (4, 4, 4), "f32", "ws") for k in range(4)]


def _index(draw) -> tuple:
    """An axis map for a rank-3 buffer: each axis a loop axis, broadcast, or affine."""
    return tuple(draw(st.sampled_from([0, 1, 2, None, Affine(None, sympy.Integer(1), 0),
                                       Affine(1, sympy.Integer(1), 1)]))
                 for _ in range(RANK))


@st.composite
def expressions(draw, depth: int = 3) -> sympy.Expr:
    """A random scalar expression over reads, numbers and the language's functions."""
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        if draw(st.booleans()):
            return sympy.Integer(draw(st.integers(-3, 3))) / draw(st.integers(1, 2))
        return Read(draw(st.sampled_from(BUFFERS)), _index(draw))
    args = [draw(expressions(depth - 1)) for _ in range(draw(st.integers(2, 3)))]
    form = draw(st.sampled_from(["add", "mul", "div", "sqrt", "relu", "select"]))
    if form == "add":
        return sympy.Add(*args)
    if form == "mul":
        return sympy.Mul(*args)
    if form == "div":
        return args[0] / (sympy.Abs(args[1]) + 1)
    if form == "sqrt":
        return sympy.sqrt(sympy.Abs(args[0]) + 1)
    if form == "relu":
        return sym.Relu(args[0])
    return sym.Select(sym.Greater(args[0], 0), args[1], 0)


def _depth(e: sympy.Expr, position: dict, known: dict) -> int:
    """The position of the innermost loop ``e`` reads (-1: none); locals count as theirs."""
    deepest = -1
    for s in e.free_symbols:
        if isinstance(s, Read):
            for a in s.axes:
                axis = a if isinstance(a, int) or a is None else a.axis
                if axis is not None:
                    deepest = max(deepest, position[axis])
        else:
            deepest = max(deepest, known[s])
    return deepest


@settings(max_examples=300, deadline=None)
@given(st.lists(expressions(), min_size=1, max_size=3), st.permutations(range(RANK)),
       st.sets(st.sampled_from(range(len(BUFFERS))), max_size=2))
def test_hoisted_locals_read_only_outer_loops_and_give_back_the_expressions(
        exprs, order, written):
    writes = [BUFFERS[k] for k in sorted(written)]
    at, rewritten = hoist(exprs, list(order), writes)
    position = {axis: p for p, axis in enumerate(order)}
    known, back = {}, {}
    for p in sorted(at):
        assert 0 <= p < RANK - 1
        for local, e in at[p]:
            assert _depth(e, position, known) <= p, (local, e)
            if local.name.endswith("_"):  # a part (not a CSE temp of the parts)
                assert _depth(e, position, known) == p, (local, e)
            assert not {r.buffer.name for r in e.atoms(Read)} & {b.name for b in writes}
            assert e.free_symbols - set(known) <= set(e.atoms(Read))  # locals come first
            known[local] = p
            back[local] = e.xreplace(back)
    for e, r in zip(exprs, rewritten):
        restored = r.xreplace(back)
        assert restored == e or sympy.simplify(restored - e) == 0, (e, r)


def test_a_single_loop_an_expression_of_the_innermost_loop_or_of_none_hoists_nothing():
    x, y = (Read(BUFFERS[0], (0, None, None)), Read(BUFFERS[1], (0, None, None)))
    assert hoist([sympy.sqrt(x) * y + 2 * x], [0], []) == ({}, [sympy.sqrt(x) * y + 2 * x])
    inner = Read(BUFFERS[0], (0, 1, None))
    assert hoist([sympy.exp(inner) * inner], [0, 1], []) == \
        ({}, [sympy.exp(inner) * inner])
    scalar = Read(BUFFERS[2], (None, None, None))  # the same in every loop: stays in place
    assert hoist([sympy.Rational(9, 4) * scalar + inner], [0, 1], []) == \
        ({}, [sympy.Rational(9, 4) * scalar + inner])


def test_the_invariant_factors_of_a_product_are_one_local_per_row():
    var, g = Read(BUFFERS[0], (None, 1, None)), Read(BUFFERS[1], (0, 1, 2))
    at, (e,) = hoist([2 * g / sympy.sqrt(var + 1)], [0, 1, 2], [BUFFERS[2]])
    ((local, part),) = at[1]
    assert part == 2 / sympy.sqrt(var + 1) and e == local * g
    # the same read, of a buffer the kernel writes, stays per element
    assert hoist([2 * g / sympy.sqrt(var + 1)], [0, 1, 2], [BUFFERS[0]])[0] == {}


BATCHNORM = """model bn
input  x : f32[B, 4, 6, 6]
input  y : i64[B]
layer  conv = conv2d(4 -> 8, 3)
layer  bn   = batchnorm(8)
layer  fc   = dense(128 -> 3)
output logits = reshape(x |> conv |> bn |> relu, [B, -1]) |> fc
loss   = cross_entropy(logits, y)
"""


def test_batchnorm_divides_by_its_square_root_once_per_channel():
    text = compile_source(Source(BATCHNORM, "bn.grad"), Options.make(optimizer="sgd",
                                                                      cache=False), "k")[0]
    kernels = [f for f in ast.parse(text).body if isinstance(f, ast.FunctionDef)
               and f.name.startswith(("_train_step", "_loss_and_grad", "_forward"))]
    assert len(kernels) >= 3
    per_channel = 0
    for f in kernels:
        for loop in ast.walk(f):
            if not isinstance(loop, ast.For):
                continue
            innermost = not any(isinstance(n, ast.For) for s in loop.body for n in ast.walk(s))
            body = "\n".join(ast.unparse(s) for s in loop.body)
            if innermost:
                assert "math.sqrt" not in body, (f.name, body)
            elif "math.sqrt" in body:
                per_channel += 1
    assert per_channel >= 3
