"""Indexing kinds, each beside its adjoint: ``pick`` ↔ ``unpick`` (a label per row along
the last axis), ``slice`` ↔ ``unslice`` (basic indexing, ``spec`` per axis: ``("i",
index)`` or ``("r", start, step, n)``), ``take`` ↔ ``put`` (gather, scatter-add along
``axis`` by integer indices). Labels and indices are range-checked on every target."""

from __future__ import annotations

import numpy as np
import sympy

from gradc.ir import build
from gradc.ir.graph import Node
from gradc.ir.shapes import numel
from gradc.kinds.kind import Kind, elementwise_loop
from gradc.passes.kernels import Affine, Loop, Pick, Put, Scatter, Take, Unpick, compose_index


# ---------------------------------------------------------------------- pick, unpick
def _pick_vjp(g, n, ct):
    z, labels = n.inputs
    return [g.add("unpick", (ct, labels), z.shape, z.dtype), None]


def _unpick_vjp(g, n, ct):
    _, labels = n.inputs
    return [g.add("pick", (ct, labels), labels.shape, ct.dtype), None]


def _evaluate_pick(n, ins, shape, dims):
    z, lab = ins
    return np.take_along_axis(z, lab[..., None].astype(np.int64), -1)[..., 0]


def _evaluate_unpick(n, ins, shape, dims):
    gv, lab = ins
    out = np.zeros(shape)
    np.put_along_axis(out, lab[..., None].astype(np.int64), gv[..., None], -1)
    return out


def _lower_pick(s, n: Node, out):
    return Pick(out, s.buffer_or_leaf(n.inputs[0]), s.buffer_or_leaf(n.inputs[1]), n.span)


def _lower_unpick(s, n: Node, out):
    return Unpick(out, s.buffer_or_leaf(n.inputs[0]), s.buffer_or_leaf(n.inputs[1]), n.span)


# ---------------------------------------------------------------------- slice, unslice
def slice_index(spec: tuple, axes) -> tuple:
    """The index map of a sliced array: one spec per axis of the array, given the index
    map ``axes`` of the slice's own (kept) axes."""
    out, j = [], 0
    for s in spec:
        if s[0] == "i":
            out.append(Affine(None, s[1], 0))
        else:
            out.append(compose_index(axes[j], s[1], int(s[2])))
            j += 1
    return tuple(out)


def _index(spec, dims) -> tuple:
    def env(v) -> int:
        v = sympy.sympify(v)
        return int(v.xreplace({s: dims[s.name] for s in v.free_symbols}))

    return tuple(env(s[1]) if s[0] == "i" else
                 slice(env(s[1]), env(s[1]) + env(s[2]) * (env(s[3]) - 1) + 1, env(s[2]))
                 for s in spec)


def _unslice(n, ins, shape, dims):
    out = np.zeros(shape)
    out[_index(n.attrs["spec"], dims)] = ins[0]
    return out


def _whole_first_axis(n: Node, samples) -> bool:
    first = n.attrs["spec"][0]
    return first[0] == "r" and first[1] == 0 and first[2] == 1 and first[3] == samples


def _lower_unslice(s, n: Node, out):
    return Scatter(out, (_part(s, n),), span=n.span)


def _part(s, n: Node) -> tuple:
    """The (source buffer, index map) of the unslice ``n``: a part of a Scatter."""
    return s.buffer_or_leaf(n.inputs[0]), slice_index(n.attrs["spec"], range(n.inputs[0].rank))


def lower_placed(s, n: Node, out):
    """The Scatter of a sum of unslices that the scheduler writes part by part
    (:meth:`~gradc.passes.schedule._Scheduler.placed`); no zero fill where the parts
    cover the output (a concat: their regions lie apart, so sizes that add up to the
    output's mean every element is written)."""
    covered = sympy.expand(sum(numel(p.inputs[0].shape) for p in n.inputs)
                           - numel(n.shape)) == 0
    return Scatter(out, tuple(_part(s, p) for p in n.inputs), fill=not covered, span=n.span)


# ---------------------------------------------------------------------- take, put
def _put(n, ins, shape, dims):
    src, idx = ins
    axis = n.attrs["axis"]
    out = np.zeros(shape)
    flat = src.reshape(shape[:axis] + (-1,) + shape[axis + 1:])   # the index axes as one
    np.add.at(np.moveaxis(out, axis, 0), idx.reshape(-1).astype(np.int64),
              np.moveaxis(flat, axis, 0))
    return out


def _lower_gather(kernel):
    def lower(s, n: Node, out):
        src = s.buffer_or_leaf(n.inputs[0])
        return kernel(out, src, s.buffer_or_leaf(n.inputs[1]), n.attrs["axis"], n.span)
    return lower


KINDS = (
    Kind("pick", "z [..., C], labels int [...]", (), "out[...] = z[..., labels[...]]",
         vjp=_pick_vjp,
         jvp=lambda g, n, t: g.add("pick", (t[0], n.inputs[1]), n.shape, n.dtype),
         evaluate=_evaluate_pick,
         lookup=lambda n: (n.inputs[1], n.inputs[0].shape[-1], "label"),
         lower=_lower_pick, kernels=(Pick,)),
    Kind("unpick", "g [...], labels int [...]", (),
         "out[..., c] = g[...] if c == labels[...] else 0",
         vjp=_unpick_vjp,
         jvp=lambda g, n, t: g.add("unpick", (t[0], n.inputs[1]), n.shape, n.dtype),
         evaluate=_evaluate_unpick,
         lookup=lambda n: (n.inputs[1], n.shape[-1], "label"),
         lower=_lower_unpick, kernels=(Unpick,)),
    Kind("slice", "x", ("spec",),
         "spec: per axis (\"i\", index) or (\"r\", start, step, n)",
         vjp=lambda g, n, ct: [build.unslice(g, ct, n.attrs["spec"], n.inputs[0].shape)],
         jvp=lambda g, n, t: build.slice_(g, t[0], n.attrs["spec"]),
         evaluate=lambda n, ins, shape, dims: np.asarray(
             ins[0][_index(n.attrs["spec"], dims)]).copy(),
         keeps_rows=lambda n, live, s: _whole_first_axis(n, s),
         fuse=lambda s, n, cs, fusing: "virtual" if fusing else None,
         define=lambda s, n, axes: s.expr_of(n.inputs[0], slice_index(n.attrs["spec"], axes)),
         lower=elementwise_loop, kernels=(Loop,)),
    Kind("unslice", "x", ("spec",), "spec: zeros of the node's shape, x placed at spec",
         vjp=lambda g, n, ct: [build.slice_(g, ct, n.attrs["spec"])],
         jvp=lambda g, n, t: build.unslice(g, t[0], n.attrs["spec"], n.shape),
         evaluate=_unslice,
         keeps_rows=lambda n, live, s: _whole_first_axis(n, s),
         lower=_lower_unslice, kernels=(Scatter,)),
    Kind("take", "a, idx int", ("axis",), "gather along axis",
         vjp=lambda g, n, ct: [build.put(g, ct, n.inputs[1], n.attrs["axis"],
                                         n.inputs[0].shape[n.attrs["axis"]]), None],
         jvp=lambda g, n, t: build.take(g, t[0], n.inputs[1], n.attrs["axis"]),
         evaluate=lambda n, ins, shape, dims: np.take(ins[0], ins[1].astype(np.int64),
                                                      n.attrs["axis"]),
         lookup=lambda n: (n.inputs[1], n.inputs[0].shape[n.attrs["axis"]], "index"),
         lower=_lower_gather(Take), kernels=(Take,)),
    Kind("put", "src, idx int", ("axis",), "scatter-add into zeros along axis",
         vjp=lambda g, n, ct: [build.take(g, ct, n.inputs[1], n.attrs["axis"]), None],
         jvp=lambda g, n, t: build.put(g, t[0], n.inputs[1], n.attrs["axis"],
                                       n.shape[n.attrs["axis"]]),
         evaluate=_put,
         lookup=lambda n: (n.inputs[1], n.shape[n.attrs["axis"]], "index"),
         lower=_lower_gather(Put), kernels=(Put,)),
)
