"""Hand-written VJP and JVP rules of the structural ops, and the generic elementwise rule.

``VJP[op](g, node, ct)`` returns one cotangent (or None) per input of ``node``;
``JVP[op](g, node, tangents)`` returns the tangent of ``node`` given its inputs' tangents
(None for zero; at least one is not None).
"""

from __future__ import annotations

import sympy

from gradc.autodiff.derive import OUT, may_blow_up, partials, selects, shifted
from gradc.ir import build
from gradc.ir.graph import Graph, Node
from gradc.ir.ops import ARGS
from gradc.ir.shapes import keepdims_shape
from gradc.ir.sym import Equal, Select


def _ewise_vjp(g: Graph, n: Node, ct: Node):
    expr, k = n.attrs["expr"], len(n.inputs)
    out = []
    for inp, d in zip(n.inputs, partials(expr, k)):
        if d == 0 or not inp.is_float:
            out.append(None)
            continue
        part = shifted(d, 2, k).xreplace({OUT: ARGS[1]})
        # A strong zero: where the cotangent is 0 (an untaken where-branch), so is the
        # gradient, even if the partial is infinite there.
        body = Select(ARGS[0], ARGS[0] * part, 0) if may_blow_up(part) else ARGS[0] * part
        grad = g.ewise(body, (ct, n, *n.inputs), n.shape, n.dtype)
        out.append(build.sum_to(g, grad, inp.shape))
    return out


def _ewise_jvp(g: Graph, n: Node, tans):
    expr, k = n.attrs["expr"], len(n.inputs)
    terms, nodes = [], [n, *n.inputs]
    for inp, d, t in zip(n.inputs, partials(expr, k), tans):
        if t is None or d == 0 or not inp.is_float:
            continue
        nodes.append(t)
        part, tan = shifted(d, 1, k).xreplace({OUT: ARGS[0]}), ARGS[len(nodes) - 1]
        terms.append(Select(part, part * tan, 0) if selects(part) else part * tan)
    if not terms:
        return None
    return g.ewise(sympy.Add(*terms), tuple(nodes), n.shape, n.dtype)


def _matmul_vjp(g: Graph, n: Node, ct: Node):
    a, b = n.inputs
    ta, tb = n.attrs["ta"], n.attrs["tb"]
    da = build.matmul2(g, b, ct, tb, True) if ta else build.matmul2(g, ct, b, False, not tb)
    db = build.matmul2(g, ct, a, True, ta) if tb else build.matmul2(g, a, ct, not ta, False)
    return [da, db]


def _matmul_jvp(g: Graph, n: Node, tans):
    a, b = n.inputs
    ta, tb = n.attrs["ta"], n.attrs["tb"]
    terms = []
    if tans[0] is not None:
        terms.append(build.matmul2(g, tans[0], b, ta, tb))
    if tans[1] is not None:
        terms.append(build.matmul2(g, a, tans[1], ta, tb))
    return terms[0] if len(terms) == 1 else build.ew(g, lambda x, y: x + y, *terms)


def _spread(g: Graph, x: Node, ct: Node, axes) -> Node:
    """Return ``ct`` (reduced over ``axes`` of x) reshaped to broadcast against x."""
    return build.reshape(g, ct, keepdims_shape(x.shape, axes))


def _reduce_weights(g: Graph, n: Node) -> Node:
    """d out / d x of a reduction node, shaped like x."""
    (x,), axes = n.inputs, n.attrs["axes"]
    out_kd = _spread(g, x, n, axes)
    if n.op == "logsumexp":
        return build.ew(g, lambda a, m: sympy.exp(a - m), x, out_kd)
    if n.attrs["kind"] == "sum":
        return g.const(1, x.shape)
    mask = build.ew(g, Equal, x, out_kd)
    count = _spread(g, x, build.reduce(g, mask, "sum", axes), axes)
    return build.ew(g, lambda m, c: m / c, mask, count)


def _reduce_vjp(g: Graph, n: Node, ct: Node):
    (x,), axes = n.inputs, n.attrs["axes"]
    w = _reduce_weights(g, n)
    return [build.ew(g, lambda c, w_: c * w_, _spread(g, x, ct, axes), w)]


def _reduce_jvp(g: Graph, n: Node, tans):
    axes = n.attrs["axes"]
    if n.op == "reduce" and n.attrs["kind"] == "sum":
        return build.reduce(g, tans[0], "sum", axes)
    weighted = build.ew(g, lambda t, w_: t * w_, tans[0], _reduce_weights(g, n))
    return build.reduce(g, weighted, "sum", axes)


def _transpose_vjp(g, n, ct):
    perm = n.attrs["perm"]
    inverse = tuple(sorted(range(len(perm)), key=lambda i: perm[i]))
    return [build.transpose(g, ct, inverse)]


def _pick_vjp(g, n, ct):
    z, labels = n.inputs
    return [g.add("unpick", (ct, labels), z.shape, z.dtype), None]


def _unpick_vjp(g, n, ct):
    _, labels = n.inputs
    return [g.add("pick", (ct, labels), labels.shape, ct.dtype), None]


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


def _loop_vjp(g: Graph, n: Node, ct: Node):
    from gradc.autodiff.through_time import loop_vjp  # it differentiates bodies with these rules
    return loop_vjp(g, n, ct)


def _loop_jvp(g: Graph, n: Node, tans):
    from gradc.autodiff.through_time import loop_jvp
    return loop_jvp(g, n, tans)


def _attrs(n: Node) -> dict:
    return {k: n.attrs[k] for k in ("k", "stride", "pad")}


VJP = {
    "ewise": _ewise_vjp,
    "matmul": _matmul_vjp,
    "reduce": _reduce_vjp,
    "logsumexp": _reduce_vjp,
    "transpose": _transpose_vjp,
    "reshape": lambda g, n, ct: [build.reshape(g, ct, n.inputs[0].shape)],
    "pick": _pick_vjp,
    "unpick": _unpick_vjp,
    "slice": lambda g, n, ct: [build.unslice(g, ct, n.attrs["spec"], n.inputs[0].shape)],
    "unslice": lambda g, n, ct: [build.slice_(g, ct, n.attrs["spec"])],
    "take": lambda g, n, ct: [build.put(g, ct, n.inputs[1], n.attrs["axis"],
                                        n.inputs[0].shape[n.attrs["axis"]]), None],
    "put": lambda g, n, ct: [build.take(g, ct, n.inputs[1], n.attrs["axis"]), None],
    "patches": lambda g, n, ct: [build.unpatches(g, ct, n.inputs[0], **_attrs(n))],
    "scan": _scan_vjp,
    "scan_bwd": _scan_bwd_vjp,
    "scan_lin": _scan_lin_vjp,
    "loop": _loop_vjp,
    "unpatches": lambda g, n, ct: [build.patches(g, ct, **_attrs(n))],
}

JVP = {
    "ewise": _ewise_jvp,
    "matmul": _matmul_jvp,
    "reduce": _reduce_jvp,
    "logsumexp": _reduce_jvp,
    "transpose": lambda g, n, t: build.transpose(g, t[0], n.attrs["perm"]),
    "reshape": lambda g, n, t: build.reshape(g, t[0], n.shape),
    "pick": lambda g, n, t: g.add("pick", (t[0], n.inputs[1]), n.shape, n.dtype),
    "unpick": lambda g, n, t: g.add("unpick", (t[0], n.inputs[1]), n.shape, n.dtype),
    "slice": lambda g, n, t: build.slice_(g, t[0], n.attrs["spec"]),
    "unslice": lambda g, n, t: build.unslice(g, t[0], n.attrs["spec"], n.shape),
    "take": lambda g, n, t: build.take(g, t[0], n.inputs[1], n.attrs["axis"]),
    "put": lambda g, n, t: build.put(g, t[0], n.inputs[1], n.attrs["axis"],
                                     n.shape[n.attrs["axis"]]),
    "patches": lambda g, n, t: build.patches(g, t[0], **_attrs(n)),
    "scan": _scan_jvp,
    "scan_bwd": _scan_bwd_jvp,
    "scan_lin": _scan_lin_jvp,
    "loop": _loop_jvp,
    "unpatches": lambda g, n, t: build.unpatches(g, t[0], n, **_attrs(n)),
}
