"""Loop-nest collapsing (gradc/passes/collapse.py): random elementwise and reduction
kernels (transposes, broadcasts, slices and prefixes, size-1 axes, a call-time dim) give
bitwise the same arrays collapsed as in the full nest, both printed by the CPU emitter and
run as plain Python; the nests that may merge do, and those that may not stay apart."""

from __future__ import annotations

import math
import types

import numpy as np
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

import gradc.codegen.cpu.emit as cpu
from gradc.codegen.assemble import dim_var
from gradc.codegen.builder import Builder
from gradc.passes.collapse import collapse
from gradc.passes.kernels import Affine, Buffer, Loop, Program, Read, Reduce

B = sympy.Symbol("B")
B_VALUE = 3


def _run(prog: Program, arrays: dict, collapsed: bool) -> list:
    """Print ``prog`` with the CPU emitter (collapsing or not) and run it as Python."""
    b = Builder()
    with pytest.MonkeyPatch.context() as patch:
        if not collapsed:
            patch.setattr(cpu, "collapse", lambda kern: ([], kern))
        cpu.CpuEmitter(dim_var, None).emit(b, prog, "kernel")
    space = {"np": np, "math": math, "_JIT": {},
             "nb": types.SimpleNamespace(njit=lambda **_: (lambda f: f))}
    exec(b.text(), space)  # noqa: S102 - the emitter's own output
    args = [arrays[a.name].copy() for a in prog.args]
    return space["kernel"](*args, np.zeros(1, np.float64), B_VALUE)


@st.composite
def kernels(draw):
    """A Loop or Reduce over 1-4 axes, reading 1-3 arrays through random index maps."""
    rank = draw(st.integers(1, 4))
    shape = tuple(B if draw(st.booleans()) and a == 0 else draw(st.integers(1, 3))
                  for a in range(rank))
    size = [B_VALUE if d is B else d for d in shape]
    args, reads, arrays = [], [], {}
    for k in range(draw(st.integers(1, 3))):
        order = draw(st.permutations(range(rank))) if draw(st.booleans()) else range(rank)
        axes = list(order)[draw(st.integers(0, rank)):]  # a trailing run, or any order
        index, dims, real = [], [], []
        for a in axes:
            kind = draw(st.sampled_from(["axis", "axis", "axis", "slice", "prefix",
                                         "broadcast"]))
            if kind == "prefix" and shape[a] is not B:  # x[..., :n, ...] of a longer axis
                index.append(a)
                dims.append(shape[a] + 1)
                real.append(dims[-1])
            elif kind == "slice" and shape[a] is not B:
                start = draw(st.integers(0, 2))
                index.append(Affine(a, sympy.Integer(start), 1))
                dims.append(start + shape[a] + draw(st.integers(0, 1)))
                real.append(dims[-1])
            elif kind == "broadcast":
                index.append(None)
                dims.append(1)
                real.append(1)
            else:
                index.append(a)
                dims.append(shape[a])
                real.append(size[a])
        buf = Buffer(f"x{k}", tuple(dims), "f64", "arg")
        args.append(buf)
        reads.append(Read(buf, tuple(index)))
        arrays[buf.name] = np.random.default_rng(k).standard_normal(real or [1])
    expr = reads[0]
    for r in reads[1:]:
        expr = expr * sympy.Float(1.5) + r
    if draw(st.booleans()):
        out = Buffer("out", shape, "f64", "fresh")
        kern = Loop(shape, [(out, expr)])
    else:
        red = tuple(sorted(draw(st.sets(st.integers(0, rank - 1), min_size=1))))
        kept = tuple(shape[a] for a in range(rank) if a not in red)
        out = Buffer("out", kept, "f64", "fresh")
        kern = Reduce(out, draw(st.sampled_from(["sum", "max", "min"])), shape, red, expr)
    prog = Program("kernel", args, ["B"], [kern], [out], float_dtype="f64")
    return prog, arrays


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(kernels())
def test_collapsed_kernels_are_bitwise_the_full_nest(case):
    prog, arrays = case
    (full,) = _run(prog, arrays, False)
    (fast,) = _run(prog, arrays, True)
    assert np.asarray(full).tobytes() == np.asarray(fast).tobytes()


def _loop(shape, *reads_of):
    out = Buffer("out", shape, "f64", "fresh")
    expr = sum(Read(Buffer(f"x{k}", dims, "f64", "arg"), axes)
               for k, (dims, axes) in enumerate(reads_of))
    return Loop(shape, [(out, expr)])


def test_a_bias_add_merges_the_leading_axes_and_keeps_the_channel():
    shape = (B, 8, 8, 4)
    views, kern = collapse(_loop(shape, ((4,), (3,)), (shape, (0, 1, 2, 3))))
    assert kern.shape == (64 * B, 4)
    assert sorted(v.shape for v in views) == [(64 * B, 4), (64 * B, 4)]


def test_a_transpose_merges_only_the_axes_it_keeps_adjacent():
    shape = (B, 8, 4, 4)  # out[n, c, h, w] = x[n, h, w, c]
    views, kern = collapse(_loop(shape, ((B, 4, 4, 8), (0, 2, 3, 1))))
    assert kern.shape == (B, 8, 16)


def test_a_slice_a_swap_or_a_repeated_axis_keeps_the_nest():
    shape = (B, 4)
    for reads in [((B, 6), (0, Affine(1, sympy.Integer(1), 1))),  # x[n, 1 + j]
                  ((4, B), (1, 0)),                                  # x[j, n]
                  ((B, 6), (0, 1))]:                                 # x[n, :4]
        views, kern = collapse(_loop(shape, reads))
        assert views == [] and kern is not None and kern.shape == shape
    views, kern = collapse(_loop((4, 4), ((4, 4), (0, 0))))          # x[i, i]
    assert views == [] and kern.shape == (4, 4)


def test_a_reduction_merges_kept_and_reduced_axes_apart():
    shape = (B, 4, 4, 8)  # out[c] = sum over n, h, w of x[n, h, w, c]
    out = Buffer("out", (8,), "f64", "fresh")
    x = Buffer("x", shape, "f64", "arg")
    views, kern = collapse(Reduce(out, "sum", shape, (0, 1, 2), Read(x, (0, 1, 2, 3))))
    assert kern.shape == (16 * B, 8) and kern.axes == (0,)
