"""``loop``: a step function (a graph of its own, the body; :mod:`gradc.ir.loops`) run
over axis 0 of its sequences, then constants; attrs ``body`` and ``reverse``; every carry
stacked as [T, ...]. Its rules run a stage on the body, so each imports that stage when
called (the stages import this registry): the VJP and JVP are loops over the body's
derivatives (:mod:`gradc.autodiff.through_time`), the reference evaluates the body per
step, and the scheduler schedules the body as a program of its own, called per step by a
:class:`~gradc.passes.kernels.Scan` kernel."""

from __future__ import annotations

import numpy as np

from gradc.ir.graph import Graph, Node
from gradc.kinds.kind import Kind
from gradc.passes.kernels import Buffer, Scan


def _loop_vjp(g: Graph, n: Node, ct: Node):
    from gradc.autodiff.through_time import loop_vjp  # it differentiates bodies with these rules
    return loop_vjp(g, n, ct)


def _loop_jvp(g: Graph, n: Node, tans):
    from gradc.autodiff.through_time import loop_jvp
    return loop_jvp(g, n, tans)


def _loop(n, ins, shape, dims):
    """A loop node: its body evaluated once per step of axis 0."""
    from gradc.runtime.reference import evaluate  # the interpreter, on the body's graph
    body = n.attrs["body"]
    k = len(body.seqs)
    out, carry = np.zeros(shape), np.zeros(shape[1:])
    steps = range(shape[0] - 1, -1, -1) if n.attrs["reverse"] else range(shape[0])
    for t in steps:
        env = dict(zip((leaf.id for leaf in body.leaves),
                       [carry, *(s[t] for s in ins[:k]), *ins[k:]]))
        carry = out[t] = evaluate(body.graph, [body.out], env, dims)[0]
    return out


def _scan(s, n: Node, out: Buffer) -> Scan:
    from gradc.passes.schedule import ProgramSpec, schedule  # the body's own program
    body = n.attrs["body"]
    spec = ProgramSpec("body", body.leaves, [body.out], graph=body.graph)
    prog = schedule(body.graph, spec, lambda leaf: leaf.attrs["name"] + "_")
    ins = [s.buffer_or_leaf(i) for i in n.inputs]
    k = len(body.seqs)
    return Scan(out, tuple(ins[:k]), tuple(ins[k:]), prog, n.attrs["reverse"], n.span)


KINDS = (
    Kind("loop", "seqs [T, ...], then consts", ("body", "reverse"),
         "a step function run over axis 0 (see :mod:`gradc.ir.loops`), every carry [T, ...]",
         vjp=_loop_vjp, jvp=_loop_jvp, evaluate=_loop, lower=_scan, kernels=(Scan,)),
)
