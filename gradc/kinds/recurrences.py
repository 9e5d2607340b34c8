"""The tanh recurrence of the ``rnn`` layer over axis 1 of [B, T, H] and its two
derivatives, each the other's transpose: ``scan`` (h_t = tanh(xw_t + h_{t-1} wh)),
``scan_bwd`` (backprop through time: d(pre-activation)) and ``scan_lin`` (the tangent:
s_t = (1 - h_t^2)(u_t + s_{t-1} wh)). Each runs as one
:class:`~gradc.passes.kernels.Recur` kernel (one BLAS product and one fused loop per
step)."""

from __future__ import annotations

import numpy as np
import sympy

from gradc.ir import build
from gradc.ir.graph import Graph, Node
from gradc.kinds.kind import Kind
from gradc.passes.kernels import Recur


def _scan_vjp(g: Graph, n: Node, ct: Node):
    xw, wh = n.inputs
    dz = g.add("scan_bwd", (n, wh, ct), n.shape, n.dtype)
    return [dz, build.time_matmul(g, build.shift_time(g, n), dz, ta=True)]


def _scan_jvp(g: Graph, n: Node, tans):
    t_xw, t_wh = tans
    terms = [t for t in (t_xw, t_wh and build.time_matmul(g, build.shift_time(g, n), t_wh))
             if t is not None]
    u = terms[0] if len(terms) == 1 else build.ew(g, lambda a, b: a + b, *terms)
    return g.add("scan_lin", (n, n.inputs[1], u), n.shape, n.dtype)


def _sum(g: Graph, *terms) -> Node | None:
    """The sum of the terms that are not None (None if all are)."""
    terms = [t for t in terms if t is not None]
    if not terms:
        return None
    return terms[0] if len(terms) == 1 else build.ew(g, lambda *a: sympy.Add(*a), *terms)


def _saturation(g: Graph, h: Node, r: Node, t: Node) -> Node:
    """-2 h r t: the derivative of (1 - h^2) r with respect to h, applied to t."""
    return build.ew(g, lambda h_, r_, t_: -2 * h_ * r_ * t_, h, r, t)


# scan_lin (s_t = D_t (u_t + s_{t-1} wh), D_t = 1 - h_t^2) and scan_bwd (dz_t = D_t (g_t +
# c_t), c_t = dz_{t+1} wh^T) are linear in their third input; their other derivatives are
# the same recurrences driven by a new source, plus a term outside the recurrence where h
# has a tangent (recomputed explicitly: dividing the output by D_t would fail where tanh
# saturates). Each is the other's transpose.
def _scan_lin_vjp(g: Graph, n: Node, ct: Node):
    h, wh, u = n.inputs
    mu = g.add("scan_bwd", (h, wh, ct), n.shape, n.dtype)
    prev = build.shift_time(g, n)
    pre = build.ew(g, lambda a, b: a + b, u, build.time_matmul(g, prev, wh))
    d_s = build.ew(g, lambda a, b: a + b, ct,
                   build.time_matmul(g, build.next_time(g, mu), wh, tb=True))
    return [_saturation(g, h, pre, d_s), build.time_matmul(g, prev, mu, ta=True), mu]


def _scan_lin_jvp(g: Graph, n: Node, tans):
    h, wh, u = n.inputs
    t_h, t_wh, t_u = tans
    prev = build.shift_time(g, n)
    out = None
    if t_h is not None:
        pre = build.ew(g, lambda a, b: a + b, u, build.time_matmul(g, prev, wh))
        out = _saturation(g, h, pre, t_h)
    src = _sum(g, t_u, t_wh and build.time_matmul(g, prev, t_wh),
               out and build.time_matmul(g, build.shift_time(g, out), wh))
    lin = g.add("scan_lin", (h, wh, src), n.shape, n.dtype)
    return lin if out is None else build.ew(g, lambda a, b: a + b, lin, out)


def _scan_bwd_vjp(g: Graph, n: Node, ct: Node):
    h, wh, gr = n.inputs
    nu = g.add("scan_lin", (h, wh, ct), n.shape, n.dtype)
    prev_nu = build.shift_time(g, nu)
    pre = build.ew(g, lambda a, b: a + b, gr,
                   build.time_matmul(g, build.next_time(g, n), wh, tb=True))
    d_dz = build.ew(g, lambda a, b: a + b, ct, build.time_matmul(g, prev_nu, wh))
    return [_saturation(g, h, pre, d_dz), build.time_matmul(g, prev_nu, n, ta=True), nu]


def _scan_bwd_jvp(g: Graph, n: Node, tans):
    h, wh, gr = n.inputs
    t_h, t_wh, t_gr = tans
    nxt = build.next_time(g, n)
    out = None
    if t_h is not None:
        pre = build.ew(g, lambda a, b: a + b, gr, build.time_matmul(g, nxt, wh, tb=True))
        out = _saturation(g, h, pre, t_h)
    src = _sum(g, t_gr, t_wh and build.time_matmul(g, nxt, t_wh, tb=True),
               out and build.time_matmul(g, build.next_time(g, out), wh, tb=True))
    lin = g.add("scan_bwd", (h, wh, src), n.shape, n.dtype)
    return lin if out is None else build.ew(g, lambda a, b: a + b, lin, out)


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


def _lower(s, n: Node, out):
    return Recur(n.op, out, tuple(s.buffer_or_leaf(i) for i in n.inputs), n.span)


_RULES = dict(evaluate=_recurrence, lower=_lower, kernels=(Recur,))

KINDS = (
    Kind("scan", "xw [B, T, H], wh [H, H]", (),
         "h_t = tanh(xw_t + h_{t-1} wh), every h_t", vjp=_scan_vjp, jvp=_scan_jvp, **_RULES),
    Kind("scan_bwd", "h, wh, g (all [B, T, H] but wh)", (),
         "backprop through time: d(pre-activation)",
         vjp=_scan_bwd_vjp, jvp=_scan_bwd_jvp, **_RULES),
    Kind("scan_lin", "h, wh, u", (), "tangent: s_t = (1 - h_t^2)(u_t + s_{t-1} wh)",
         vjp=_scan_lin_vjp, jvp=_scan_lin_jvp, **_RULES),
)
