"""Layout kinds: ``transpose`` (``perm``) and ``reshape`` (the node's shape is the new
shape). Neither copies where it can be avoided: a reshape is a view of its input's
buffer, a transpose an index map of its input (or a BLAS transpose flag of a product)."""

from __future__ import annotations

import numpy as np

from gradc.ir import build
from gradc.ir.graph import Node
from gradc.kinds.kind import Kind, elementwise_loop
from gradc.passes.kernels import Loop


def _transpose_vjp(g, n, ct):
    perm = n.attrs["perm"]
    inverse = tuple(sorted(range(len(perm)), key=lambda i: perm[i]))
    return [build.transpose(g, ct, inverse)]


def _is_swap(perm: tuple[int, ...]) -> bool:
    r = len(perm)
    return r >= 2 and perm == tuple(range(r - 2)) + (r - 1, r - 2)


def _fuse_transpose(s, n: Node, cs, fusing):
    if all(s.fuses(c) or (c.op == "matmul" and _is_swap(n.attrs["perm"]))
           for c in cs):
        return "virtual"
    return None


def _define_transpose(s, n: Node, axes: tuple):
    perm = n.attrs["perm"]
    return s.expr_of(n.inputs[0], tuple(axes[perm.index(k)] for k in range(n.rank)))


KINDS = (
    Kind("transpose", "x", ("perm",), "x's axes permuted",
         vjp=_transpose_vjp,
         jvp=lambda g, n, t: build.transpose(g, t[0], n.attrs["perm"]),
         evaluate=lambda n, ins, shape, dims: np.transpose(ins[0], n.attrs["perm"]).copy(),
         keeps_rows=lambda n, live, s: n.attrs["perm"][0] == 0,
         fuse=_fuse_transpose, define=_define_transpose, lower=elementwise_loop,
         kernels=(Loop,), show=lambda n: f"transpose perm={tuple(n.attrs['perm'])}"),
    Kind("reshape", "x", (), "x with the node's shape (same size)",
         vjp=lambda g, n, ct: [build.reshape(g, ct, n.inputs[0].shape)],
         jvp=lambda g, n, t: build.reshape(g, t[0], n.shape),
         evaluate=lambda n, ins, shape, dims: ins[0].reshape(shape),
         keeps_rows=lambda n, live, s: n.inputs[0].shape[0] == s, view=True),
)
