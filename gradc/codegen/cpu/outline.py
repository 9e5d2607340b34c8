"""Recurring kernel runs as one function: why a repeated block compiles once (CPU target).

``repeat(res(32), 8)`` puts eight copies of the block's kernels into every entry (its
forward, its backward, the optimizer's update of its params), and Numba's compile time
grows faster than linearly with a function's size: ``train_step`` took 4.2 CPU s for one
block and 50 s for eight. :func:`outline` finds runs of consecutive kernels that recur in a
program (the same kernel classes, shapes, dtypes and expressions; which buffers they touch
aside) and moves each occurrence into a :class:`Call`: a body program, the occurrence's own
kernels with the arrays they touch as arguments and the workspace slots as offsets, called
with those. The emitter prints the bodies after the programs
(:class:`gradc.codegen.bodies.Bodies`), and a body whose text equals an earlier one's is
that function again, so the eight occurrences call one compiled function. Nothing else
changes: the same kernels run in the same order on the same memory and print as they would
inline (under the caller's names: SymPy orders a sum's terms by name), so the results are
those of the inlined form; tests/codegen/cpu/test_outline.py compares them bitwise (the
kernels' fastmath flags would let LLVM round differently in another function: the CPU
target does not outline ``train_epoch``'s step, where it measured a 1 ulp difference).

A loop whose stores fall into independent groups (the fused update of every param of one
shape: each param's m, v and value) is searched as one loop per group, and the groups no
run takes are fused again as they were.

The search (:func:`_units`) works on one code per kernel. Along every offset ``d`` (up to
:data:`MAX_PERIOD`) it finds
the longest stretch where the kernels ``d`` apart are equal; the heaviest stretch wins (the
smaller offset on a tie: a block repeated eight times is found as a unit of one block, not
of four). Its unit is its first ``length`` kernels when ``length < d``, else the fewest
whole periods ``d`` that weigh :data:`MIN_WEIGHT`; each place, left to right, where the
unit's kernels recur is an occurrence. Lighter units are left inline: a call costs Numba a
function of its own and the caller an argument per array.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import sympy

from gradc.passes.kernels import Buffer, Kernel, Loop, Program, Read, View
from gradc.source import Span

#: the prefix of the offset dims of a body (``ws.o0`` ...), after the caller's dims
OFFSET = "ws.o"

#: the longest period searched (kernels): a block of a few hundred kernels is long; the
#: search costs a pass over the program per offset, and a 10,000-layer model has ~40,000
MAX_PERIOD = 1024

#: the least weight (kernels, a loop weighing its stores) a recurring run must have to
#: become a function
MIN_WEIGHT = 6


@dataclass(eq=False)
class Call(Kernel):
    """``body(*arrays, ws, dims..., offsets...)``: the kernels of one occurrence of a
    recurring run. ``arrays`` are the caller's arrays and scalars in the order of
    ``body.args``; ``offsets`` the workspace offsets (expressions in the caller's dims)
    passed for the body's offset dims, which follow the caller's dims in ``body.dims``;
    ``outs`` and ``ins`` the caller's buffers the run writes and reads; ``length`` the
    number of the caller's kernels it stands for."""

    body: Program
    arrays: tuple
    offsets: tuple
    outs: tuple
    ins: tuple
    length: int
    span: Span | None = None

    def writes(self) -> list[Buffer]:
        return list(self.outs)

    def reads(self) -> list[Buffer]:
        return list(self.ins)


def outline(prog: Program) -> Program:
    """``prog`` with each occurrence of a recurring run of kernels replaced by a
    :class:`Call` (see the module docstring); ``prog`` itself when nothing recurs. An
    occurrence whose body would print like no other's (:func:`_print_key`) stays inline: a
    body called once only adds a function to compile."""
    split = [_split(k) for k in prog.kernels]
    pieces = [(piece, i) for i, parts in enumerate(split) for piece in parts]
    numbers: dict = {}
    codes = [numbers.setdefault(_key(piece), len(numbers)) for piece, _ in pieces]
    weights = [0 if isinstance(p, View) else len(p.stores) if isinstance(p, Loop) else 1
               for p, _ in pieces]
    calls: dict[int, Call] = {}
    for length, starts in _units(codes, weights):
        alike: dict = {}
        for start in starts:
            call = _call(prog, [p for p, _ in pieces[start:start + length]])
            alike.setdefault(_print_key(call.body), []).append((start, call))
        calls.update(pair for group in alike.values() if len(group) > 1 for pair in group)
    if not calls:
        return prog
    kernels, i = [], 0
    while i < len(pieces):
        if i in calls:
            kernels.append(calls[i])
            i += calls[i].length
            continue
        j = i + 1  # the pieces of one kernel no call takes: that kernel, or a loop of them
        while j < len(pieces) and j not in calls and pieces[j][1] == pieces[i][1]:
            j += 1
        whole = prog.kernels[pieces[i][1]]
        kernels.append(whole if j - i == len(split[pieces[i][1]]) else dataclasses.replace(
            whole, stores=[st for p, _ in pieces[i:j] for st in p.stores]))
        i = j
    return dataclasses.replace(prog, kernels=kernels)


def _split(kern) -> list:
    """``kern``, or a loop's independent groups of stores as one loop each (stores that
    write or read a buffer another writes stay together, in their order)."""
    if not isinstance(kern, Loop) or len(kern.stores) < 2:
        return [kern]
    written = {id(buf) for buf, _ in kern.stores}
    parent = list(range(len(kern.stores)))

    def find(j: int) -> int:
        while parent[j] != j:
            parent[j] = parent[parent[j]]
            j = parent[j]
        return j

    owner: dict[int, int] = {}  # a written buffer -> a store touching it
    for j, (buf, expr) in enumerate(kern.stores):
        for b in [buf, *(r.buffer for r in expr.atoms(Read))]:
            if id(b) in written:
                parent[find(j)] = find(owner.setdefault(id(b), j))
    groups: dict[int, list] = {}
    for j, store in enumerate(kern.stores):
        groups.setdefault(find(j), []).append(store)
    if len(groups) == 1:
        return [kern]
    return [dataclasses.replace(kern, stores=stores) for stores in groups.values()]


def _call(prog: Program, run: list) -> Call:
    """The :class:`Call` running ``run`` (kernels of ``prog``) in a body of its own. The
    body takes the arrays the run touches at their roots (a caller's view is reshaped
    again inside), the scalars, and, for each workspace slot, its offset as an int: so it
    makes its views of the workspace itself, once, however often it is called: one
    offset per slot the run uses, even where the caller's plan put two of them at one
    offset (their values are never alive at once there; an instance whose plan reuses a
    slot then still shares the others' body). Its arguments and offsets follow the order
    the buffers were made in."""
    outs: dict[int, Buffer] = {}
    ins: dict[int, Buffer] = {}
    for k in run:
        if not isinstance(k, View):
            outs.update((id(b), b) for b in k.writes())
            ins.update((id(b), b) for b in k.reads())
    touched = sorted({**ins, **outs}.values(), key=lambda b: b.serial)
    offsets: dict[int, tuple] = {}  # a caller's slot -> (its offset, the body's dim)
    args: dict[int, tuple[Buffer, Buffer]] = {}  # a caller's root -> (it, the body's)
    swap: dict[int, Buffer] = {}
    for buf in touched:
        root = buf.root
        if root.kind == "dim":  # printed as the dim's variable, which the body takes too
            swap[id(buf)] = buf
        elif root.kind == "ws":
            at = offsets.setdefault(id(root), (root.offset, f"{OFFSET}{len(offsets)}"))[1]
            swap[id(buf)] = _named(buf, buf.shape, "ws", offset=sympy.Symbol(at))
        else:
            arg = args.setdefault(id(root), (root, _named(
                root, root.shape, "scalar" if root.kind == "scalar" else "arg")))[1]
            swap[id(buf)] = arg if root is buf else _named(buf, buf.shape, "view", base=arg)
    order = sorted(args.values(), key=lambda pair: pair[1].kind == "scalar")
    body = Program(f"{prog.name}_run", [arg for _, arg in order],
                   [*prog.dims, *(dim for _, dim in offsets.values())],
                   [_rebased(k, swap) for k in run if not isinstance(k, View)],
                   float_dtype=prog.float_dtype)
    return Call(body, tuple(root for root, _ in order),
                tuple(sympy.sympify(at) for at, _ in offsets.values()),
                tuple(outs.values()), tuple(b for i, b in ins.items() if i not in outs),
                len(run))


def _named(buf: Buffer, shape, kind: str, **kw) -> Buffer:
    """The body's buffer standing for the caller's ``buf``: its name and title (the body
    prints its kernels exactly as the caller would: SymPy orders a sum's terms by name,
    and a float sum's order is its rounding), a new kind."""
    return Buffer(buf.name, shape, buf.dtype, kind, title=buf.title, **kw)


def _rebased(value, swap: dict):
    """``value`` (a kernel, or one of its fields) with every buffer ``b`` replaced by
    ``swap[id(b)]`` (inside its expressions too)."""
    if isinstance(value, Buffer):
        return swap[id(value)]
    if isinstance(value, sympy.Basic):
        return value.xreplace({r: Read(swap[id(r.buffer)], r.axes)
                               for r in value.atoms(Read)})
    if isinstance(value, (list, tuple)):
        return type(value)(_rebased(v, swap) for v in value)
    if isinstance(value, Kernel):
        return dataclasses.replace(value, **{f.name: _rebased(getattr(value, f.name), swap)
                                             for f in dataclasses.fields(value)})
    return value


def _describe(value, buffer: Callable[[Buffer], object]):
    """A hashable description of ``value`` (a kernel, a list of them or a field), each
    buffer described by ``buffer`` (inside expressions too)."""
    if isinstance(value, Buffer):
        return buffer(value)
    if isinstance(value, sympy.Basic):
        return sympy.srepr(value.xreplace({r: sympy.Symbol(f"R{buffer(r.buffer)}{r.axes}")
                                           for r in value.atoms(Read)}))
    if isinstance(value, (list, tuple)):
        return tuple(_describe(v, buffer) for v in value)
    if isinstance(value, Kernel):
        return (type(value).__name__,) + tuple(_describe(getattr(value, f.name), buffer)
                                               for f in dataclasses.fields(value))
    return id(value) if isinstance(value, Program) else repr(value)


def _key(kern) -> tuple:
    """``kern`` with its buffers reduced to their shape, dtype and whether they are
    scalars: kernels of equal keys differ at most in the buffers they touch."""
    return _describe(kern, lambda b: (str(tuple(b.shape)), b.dtype, b.kind == "scalar"))


def _names(body: Program) -> set[str]:
    """The names of the buffers ``body`` takes and its kernels touch."""
    return {b.name for b in body.args} | {b.name for k in body.kernels
                                          for b in k.writes() + k.reads()}


def _print_key(body: Program) -> tuple:
    """What a body's printed text depends on besides its buffers' names: its kernels with
    each buffer as its rank among the names (SymPy orders a sum's terms by name, so the
    names' order, not the names, decides the order of the printed terms), kind, shape,
    offset and base. Bodies of equal keys print alike up to names (:func:`alpha_key`, which
    the printed text is grouped by in the end; this key only spares printing every
    occurrence to find the ones that recur)."""
    rank = {n: f"{i:06d}" for i, n in enumerate(sorted(_names(body), key=lambda n: n + "@"))}

    def buffer(b: Buffer) -> tuple:
        return (rank.get(b.name, b.name), b.kind, str(tuple(b.shape)), b.dtype,
                str(b.offset), b.base and rank[b.base.name])
    return _describe([body.kernels, body.args], buffer) + tuple(body.dims)


_TOKEN = re.compile(r"'[^']*'|\"[^\"]*\"|[A-Za-z_][A-Za-z0-9_]*")


def alpha_key(text: str, fname: str, body: Program, dim_var: Callable[[str], str]) -> str:
    """``text``, a printed body named ``fname``, with that name and every name of its
    buffers and offset dims (printed by ``dim_var``), and the names printed from them
    (``v7_r1``), replaced by its rank of first appearance: bodies of equal keys compute the
    same with their arguments in the same places, so one function serves all of them.
    String literals (messages) are kept as printed."""
    names = _names(body) | {dim_var(d) for d in body.dims if d.startswith(OFFSET)}
    rank: dict[str, str] = {}

    def canon(m: re.Match) -> str:
        word = m.group(0)
        if word == fname:
            return "_body_"
        if word[0] in "'\"" or re.sub(r"_(r\d+|3)$", "", word) not in names:
            return word
        return rank.setdefault(word, f"#{len(rank)}")
    return _TOKEN.sub(canon, text)


def _units(codes: list[int], weights: list[int]) -> list[tuple[int, list[int]]]:
    """The recurring runs of ``codes`` (kernels of the given ``weights``): (length, the
    start of each occurrence), no two occurrences overlapping (see the module
    docstring)."""
    c = np.asarray(codes, dtype=np.int64)
    total = np.concatenate(([0], np.cumsum(weights)))
    free = np.ones(len(c), bool)
    plan = []
    while True:
        best = (0, 0, 0, 0)  # (stretch weight, -offset, start, unit)
        for d in range(1, min(len(c), MAX_PERIOD + 1)):
            same = (c[:-d] == c[d:]) & free[:-d] & free[d:]
            if not same.any():
                continue
            edges = np.diff(np.concatenate(([0], same.astype(np.int8), [0])))
            begins, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
            heavy = total[ends] - total[begins]
            j = int(np.argmax(heavy))
            start, length = int(begins[j]), int(ends[j] - begins[j])
            if length < d:
                unit = length
            else:  # the stretch repeats a period of d: the fewest whole periods that weigh
                period = int(total[start + d] - total[start])
                unit = d * max(1, -(-MIN_WEIGHT // period)) if period else length + d
            if (length + d >= 2 * unit and total[start + unit] - total[start] >= MIN_WEIGHT
                    and (int(heavy[j]), -d) > best[:2]):
                best = (int(heavy[j]), -d, start, unit)
        _, _, start, unit = best
        if not unit:
            return plan
        pattern = c[start:start + unit]
        starts, i = [], 0
        while i + unit <= len(c):
            if free[i:i + unit].all() and (c[i:i + unit] == pattern).all():
                starts.append(i)
                free[i:i + unit] = False
                i += unit
            else:
                i += 1
        plan.append((unit, starts))
