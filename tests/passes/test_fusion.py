"""Fusion decisions that keep a program's size linear in the model's depth.

A residual stream's gradient is a running sum: block k's cotangent is block k+1's plus the
block's own contributions. It must be computed once per block, from the previous sum's
buffer, not summed afresh from every later block's terms in each kernel that reads it
(which made a stream of N blocks O(N^2) terms and every block's backward kernels differ).
And a sum passes its cotangent on as it is, not through an identity copy of it.
"""

from __future__ import annotations

import re

import sympy

from gradc.autodiff.reverse import vjp
from gradc.ir import build
from gradc.ir.graph import Graph
from gradc.pipeline import Options, compile_source
from gradc.source import Source


def residual(depth: int) -> str:
    """``h_{i+1} = h_i + tanh(h_i @ W_i)``, ``depth`` times, into a squared-error loss."""
    lines = ["input x : f64[B, 4]", "input y : f64[B, 4]"]
    lines += [f"param W{i} : f64[4, 4]" for i in range(depth)]
    lines += ["h0 = x"] + [f"h{i + 1} = h{i} + tanh(h{i} @ W{i})" for i in range(depth)]
    return "\n".join(lines + [f"loss = mse(h{depth}, y)", ""])


def _widest_statement(depth: int) -> int:
    """The most array reads in one statement of the ``loss_and_grad`` kernel."""
    text, _, _ = compile_source(Source(residual(depth), f"res{depth}.grad"),
                                Options.make(), "k")
    kernel = text[text.index("def _loss_and_grad_k"):]
    kernel = kernel[:kernel.index("\n@")]
    return max(len(re.findall(r"\w\[", line)) for line in kernel.split("\n"))


def test_a_residual_streams_gradient_is_summed_once_per_block():
    # the widest statement is one block's: it does not grow with the number of blocks
    assert _widest_statement(12) == _widest_statement(4)


def test_a_sums_cotangent_is_passed_on_as_it_is():
    g = Graph("sum", "f64")
    shape = (sympy.Symbol("B"), sympy.Integer(3))
    a = g.add("input", (), shape, "f64", None, "a", name="a")
    b = g.add("input", (), shape, "f64", None, "b", name="b")
    s = build.ew(g, lambda p, q: p + q, a, b)
    ct = g.add("input", (), shape, "f64", None, "ct", name="ct")
    grad_a, grad_b = vjp(g, [(s, ct)], [a, b])
    assert grad_a is ct and grad_b is ct
    # a partial other than 1 is a node of its own
    d = build.ew(g, lambda p, q: p - 2 * q, a, b)
    grad_a, grad_b = vjp(g, [(d, ct)], [a, b])
    assert grad_a is ct and grad_b is not ct
