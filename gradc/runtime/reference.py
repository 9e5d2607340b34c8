"""A plain NumPy interpreter of the graph: the oracle that generated code is tested against.

It shares nothing with code generation: elementwise expressions are evaluated through
``sympy.lambdify`` with NumPy implementations, structural ops with NumPy calls.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import sympy

from gradc.ir.build import window
from gradc.ir.graph import Graph, Node
from gradc.ir.ops import ARGS
from gradc.ir.sym import NUMPY_IMPLS



@lru_cache(maxsize=4096)
def _lambdified(expr: sympy.Expr, nargs: int):
    return sympy.lambdify(ARGS[:nargs], expr, modules=[NUMPY_IMPLS, "numpy"])


def eval_shape(shape, dims: dict[str, int]) -> tuple[int, ...]:
    """Return ``shape`` with its symbolic dims bound to the ints of ``dims``."""
    env = {s: dims[s.name] for d in shape for s in d.free_symbols}
    return tuple(int(d.xreplace(env)) for d in shape)


def evaluate(g: Graph, roots: list[Node], env: dict[int, np.ndarray],
             dims: dict[str, int]) -> list[np.ndarray]:
    """Evaluate ``roots`` given leaf values ``env`` (node id -> array) and the dims.

    Floats are computed in float64 whatever the graph's dtype (an oracle should be exact).
    """
    vals = dict(env)
    for n in g.topo(roots):
        if n.id not in vals:
            vals[n.id] = _eval(n, [vals[i.id] for i in n.inputs], dims)
    return [vals[r.id] for r in roots]


def _eval(n: Node, ins: list[np.ndarray], dims: dict[str, int]) -> np.ndarray:
    shape = eval_shape(n.shape, dims)
    if n.op == "dim":
        return np.float64(dims[n.attrs["name"]])
    if n.op == "ewise":
        f = _lambdified(n.attrs["expr"], len(ins))
        with np.errstate(all="ignore"):
            out = f(*[np.asarray(x, np.float64) for x in ins])
        return np.broadcast_to(np.asarray(out, np.float64), shape).copy()
    if n.op == "matmul":
        a, b = ins
        a = np.swapaxes(a, -1, -2) if n.attrs["ta"] else a
        b = np.swapaxes(b, -1, -2) if n.attrs["tb"] else b
        return np.matmul(a, b)
    if n.op == "reduce":
        fn = {"sum": np.sum, "max": np.max, "min": np.min}[n.attrs["kind"]]
        return np.asarray(fn(ins[0], axis=n.attrs["axes"]), np.float64)
    if n.op == "logsumexp":
        x, axes = ins[0], n.attrs["axes"]
        m = np.max(x, axis=axes, keepdims=True)
        m = np.where(np.isfinite(m), m, 0)
        return np.squeeze(np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True)) + m, axes)
    if n.op == "transpose":
        return np.transpose(ins[0], n.attrs["perm"]).copy()
    if n.op == "reshape":
        return ins[0].reshape(shape)
    if n.op == "pick":
        z, lab = ins
        return np.take_along_axis(z, lab[..., None].astype(np.int64), -1)[..., 0]
    if n.op == "unpick":
        gv, lab = ins
        out = np.zeros(shape)
        np.put_along_axis(out, lab[..., None].astype(np.int64), gv[..., None], -1)
        return out
    if n.op in _STRUCTURAL:
        return _STRUCTURAL[n.op](n, ins, shape, dims)
    raise AssertionError(f"reference: no rule for op {n.op}")


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


def _put(n, ins, shape, dims):
    src, idx = ins
    axis = n.attrs["axis"]
    out = np.zeros(shape)
    flat = src.reshape(shape[:axis] + (-1,) + shape[axis + 1:])   # the index axes as one
    np.add.at(np.moveaxis(out, axis, 0), idx.reshape(-1).astype(np.int64),
              np.moveaxis(flat, axis, 0))
    return out


def _windows(n, x):
    """The (N, C, OH, OW, kh, kw) view of the padded input windows."""
    (kh, kw), (sh, sw), (ph, pw) = window(n)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    return win[:, :, ::sh, ::sw]


def _patches(n, ins, shape, dims):
    win = _windows(n, ins[0])                     # N, C, OH, OW, kh, kw
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(shape)


def _unpatches(n, ins, shape, dims):
    (kh, kw), (sh, sw), (ph, pw) = window(n)
    N, C, H, W = shape
    cols = ins[0]
    oh, ow = cols.shape[1], cols.shape[2]
    cols = cols.reshape(N, oh, ow, C, kh, kw)
    out = np.zeros((N, C, H + 2 * ph, W + 2 * pw))
    for i in range(kh):
        for j in range(kw):
            taps = cols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
            out[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw] += taps
    return out[:, :, ph:ph + H, pw:pw + W].copy()


def _recurrence(n, ins, shape, dims):
    """scan, scan_bwd and scan_lin, step by step over axis 1."""
    out = np.zeros(shape)
    if n.op == "scan":
        xw, wh = ins
        h = np.zeros((shape[0], shape[2]))
        for t in range(shape[1]):
            h = out[:, t] = np.tanh(xw[:, t] + h @ wh)
    elif n.op == "scan_bwd":
        hs, wh, gr = ins
        carry = np.zeros((shape[0], shape[2]))
        for t in reversed(range(shape[1])):
            dz = out[:, t] = (gr[:, t] + carry) * (1 - hs[:, t] ** 2)
            carry = dz @ wh.T
    else:
        hs, wh, u = ins
        s_ = np.zeros((shape[0], shape[2]))
        for t in range(shape[1]):
            s_ = out[:, t] = (1 - hs[:, t] ** 2) * (u[:, t] + s_ @ wh)
    return out


def _loop(n, ins, shape, dims):
    """A loop node: its body evaluated once per step of axis 0."""
    body = n.attrs["body"]
    k = len(body.seqs)
    out, carry = np.zeros(shape), np.zeros(shape[1:])
    steps = range(shape[0] - 1, -1, -1) if n.attrs["reverse"] else range(shape[0])
    for t in steps:
        env = dict(zip((leaf.id for leaf in body.leaves),
                       [carry, *(s[t] for s in ins[:k]), *ins[k:]]))
        carry = out[t] = evaluate(body.graph, [body.out], env, dims)[0]
    return out


_STRUCTURAL = {
    "loop": _loop,
    "scan": _recurrence, "scan_bwd": _recurrence, "scan_lin": _recurrence,
    "slice": lambda n, ins, shape, dims: np.asarray(ins[0][_index(n.attrs["spec"], dims)]).copy(),
    "unslice": _unslice,
    "take": lambda n, ins, shape, dims: np.take(ins[0], ins[1].astype(np.int64), n.attrs["axis"]),
    "put": _put,
    "patches": _patches,
    "unpatches": _unpatches,
}
