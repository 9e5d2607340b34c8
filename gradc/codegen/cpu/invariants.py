"""Loop-invariant code motion for the CPU's loop nests: the parts of a loop body's
expressions that do not depend on the innermost loop are computed once per iteration of
the loop they do depend on, in a local, instead of once per element.

LLVM does not do this itself here: every store of a kernel goes to a workspace view, which
it cannot tell apart from the arrays the loop reads, so a read of a broadcast operand and
everything computed from it stay inside the innermost loop, and a division or square root
per element keeps it scalar. Batchnorm's backward computes ``1 / sqrt(var + eps)`` (per
channel) for every element: two such loops were a fifth of the conv-batchnorm CNN's step.

A part is hoisted only when it is an operation (a read alone stays where it is) over reads
that the kernel does not write, so the hoisted value is the one every element would read.
Fast-math (``reassoc``) already lets LLVM regroup the factors of a product, which is what
pulling the invariant factors of a product or sum together does. A part that depends on
no loop at all stays where it is: it could only go before the outermost loop, whose body
may run no times (a read made there could be out of range), or inside it, which exists
only in a nest of two loops or more, and collapsing a nest into fewer loops
(:mod:`gradc.passes.collapse`) must not change which parts are hoisted: a nest and its
collapsed form give bitwise the same results (``tests/passes/test_collapse.py``). A loop
that collapsing merges is read by every operand either in full or not at all, so every
other part is hoisted in both forms alike.
"""

from __future__ import annotations

import sympy

from gradc.codegen.scalar import cse_block
from gradc.passes.kernels import Buffer, Read


def hoist(exprs: list[sympy.Expr], order: list[int], written: list[Buffer],
          tag: str = "q") -> tuple[dict[int, list[tuple[sympy.Symbol, sympy.Expr]]],
                                   list[sympy.Expr]]:
    """Split the loop-invariant parts out of the expressions of one loop nest.

    Args:
        exprs: the expressions evaluated in the innermost loop.
        order: the loop axes, outermost first (the loop at position ``p`` runs ``i<order[p]>``).
        written: the buffers the kernel stores into (their reads are never hoisted).
        tag: the prefix of the locals (``q0_``, ``q1_``, ...; CSE temps ``q0c0`` ...).

    Returns:
        ``(at, exprs)``: ``at[p]`` the (local, expression) pairs to compute, in order, just
        inside the loop at position ``p`` (only positions before the innermost); and the
        expressions rewritten to read those locals. Every hoisted expression reads the
        index of its position's loop and no index of a loop inside it.
    """
    inner = len(order) - 1
    if inner < 1:
        return {}, list(exprs)
    depth = {axis: p for p, axis in enumerate(order)}
    roots = {id(buf.root) for buf in written}
    found: dict[sympy.Expr, tuple[sympy.Symbol, int]] = {}
    levels: dict[sympy.Expr, int] = {}  # (split asks for a subexpression's level again)

    def level(e: sympy.Expr) -> int:
        """The position of the innermost loop ``e`` depends on (-1: none)."""
        if e not in levels:
            deepest = -1
            for r in e.atoms(Read):
                if id(r.buffer.root) in roots:
                    deepest = inner
                    break
                for a in r.axes:
                    axis = a if isinstance(a, int) or a is None else a.axis
                    if axis is not None:
                        deepest = max(deepest, depth[axis])
            levels[e] = deepest
        return levels[e]

    def local(e: sympy.Expr, lvl: int) -> sympy.Symbol:
        if e not in found:
            found[e] = (sympy.Symbol(f"{tag}{len(found)}_", real=True), lvl)
        return found[e][0]

    def split(e: sympy.Expr) -> sympy.Expr:
        lvl = -1 if e.is_Atom else level(e)
        if lvl < 0:
            return e
        if lvl < inner:
            return local(e, lvl)
        if e.is_Add or e.is_Mul:  # the invariant terms or factors, pulled together
            still = [a for a in e.args if level(a) < inner]
            part = e.func(*still) if len(still) > 1 else None
            if part is not None and level(part) >= 0:
                rest = [split(a) for a in e.args if level(a) == inner]
                return e.func(local(part, level(part)), *rest)
        return e.func(*[split(a) for a in e.args])

    rewritten = [split(e) for e in exprs]
    at: dict[int, list[tuple[sympy.Symbol, sympy.Expr]]] = {}
    for p in sorted({p for _, p in found.values()}):
        here = [(sym, e) for e, (sym, q) in found.items() if q == p]
        temps, reduced = cse_block([e for _, e in here], f"{tag}{p}c")
        at[p] = temps + [(sym, e) for (sym, _), e in zip(here, reduced)]
    return at, rewritten
