"""Loop bodies as every target prints them (shared by the CPU, CUDA and NumPy emitters).

A :class:`~gradc.passes.kernels.Scan` (the ``loop`` node of :mod:`gradc.ir.loops`) calls
its body, a program of its own, once per time step. Each target prints that body as a
function like any program's (an njit function on the CPU, a host function launching
kernels on CUDA, a NumPy function), named ``_body<k>_`` and printed after the programs
(:class:`Bodies`: a body whose printed text equals an earlier one's, as the forward step
recurs in every entry, becomes an alias of that function, so Numba compiles it once), and
prints the time loop in place of the kernel: a carry of zeros, the
body's workspace allocated once, then per step ``carry = body(carry, seq[t], ...,
consts..., ws, dims...)`` stored at ``out[t]`` (:func:`step_args` spells the call's
arguments the same way on every target, rank-0 constants made into arrays once, before the
loop). The CPU target prints the bodies of its recurring runs of kernels through the same
:class:`Bodies` (:mod:`gradc.codegen.cpu.outline`), comparing them up to buffer names.
"""

from __future__ import annotations

from collections.abc import Callable

from gradc.codegen.builder import Builder
from gradc.passes.kernels import Buffer, Program, Scan


class Bodies:
    """The bodies the printed programs call, printed after them, each distinct one once.

    Args:
        derived: the module names a target prints for a body named ``f`` besides ``f``
            itself (CUDA: its views planner ``_views<f>``, its kernels ``<f>_k<i>``); an
            alias is printed for each of the first kind, see :meth:`emit`.
        key: what makes two printed bodies one function, from the text, the name and
            the program (default: the text with the name blanked; the CPU's runs of
            kernels compare up to their buffers' names,
            :func:`gradc.codegen.cpu.outline.alpha_key`).
    """

    def __init__(self, derived: Callable[[str], list[str]] = lambda fname: [],
                 key: Callable[[str, str, Program], str] | None = None):
        self.pending: list[tuple[Program, str]] = []
        self.count = 0
        self.derived = derived
        self.key = key or (lambda text, fname, body: text.replace(fname, "_body_"))
        self.printed: dict[str, str] = {}  # key -> the name

    def add(self, body: Program) -> str:
        """The function name of a new body (printed by :meth:`emit`)."""
        fname = f"_body{self.count}_"
        self.count += 1
        self.pending.append((body, fname))
        return fname

    def emit(self, b: Builder, emit: Callable[[Builder, Program, str], None]) -> list[str]:
        """Print each body with ``emit(builder, program, name)`` into ``b``, those the
        printed bodies call included (a body printed here may add more); a body printed
        as an earlier one was becomes ``name = earlier`` (and the same for its
        :attr:`derived` names). Returns the names of the bodies printed as aliases."""
        aliases = []
        while self.pending:
            body, fname = self.pending.pop(0)
            text = Builder()
            emit(text, body, fname)
            first = self.printed.setdefault(self.key("\n".join(text.lines), fname, body),
                                            fname)
            if first == fname:
                b.lines.extend(text.lines)
                continue
            aliases.append(fname)
            for name, earlier in zip([fname, *self.derived(fname)],
                                     [first, *self.derived(first)]):
                b.line(f"{name} = {earlier}")
            b.line()
        return aliases


def steps(k: Scan, size: Callable) -> str:
    """The ``range`` of the time loop: ascending, or descending with ``k.reverse``."""
    n = size(k.out.shape[0])
    return f"range({n} - 1, -1, -1)" if k.reverse else f"range({n})"


def step_args(k: Scan, carry: str, ws: str, one: Callable[[Buffer], str],
              dim_var: Callable[[str], str]) -> tuple[list[str], list[str]]:
    """The arguments of one call of ``k``'s body at step ``t_``, and the lines that must run
    once before the time loop: the carry, one step of each sequence (a rank-0 step as a
    1-element slice), the constants (a rank-0 one as ``one(buffer)``, a 1-element array
    made once before the loop, not per step), the workspace, the dims."""
    hoisted, consts = [], []
    for i, c in enumerate(k.consts):
        if c.shape:
            consts.append(c.name)
        else:
            consts.append(f"{k.out.name}_c{i}")
            hoisted.append(f"{consts[-1]} = {one(c)}")
    args = [carry]
    args += [f"{s.name}[t_]" if s.rank > 1 else f"{s.name}[t_:t_ + 1]" for s in k.seqs]
    return hoisted, args + consts + [ws] + [dim_var(d) for d in k.body.dims]
