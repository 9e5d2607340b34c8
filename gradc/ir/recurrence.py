"""Recurrences of the language: ``scan(cell, xs, hidden)`` and the ``lstm``/``gru`` cells,
all lowered to the ``loop`` node of :mod:`gradc.ir.loops`.

``scan`` lowers the user's cell once, on placeholders for ``h`` and ``x``; what depends
on them becomes the loop's body, what does not (params, values computed before) its
constants. The sequence runs over axis 1 of ``xs`` [B, T, ...]; the loop itself runs over
axis 0, so ``xs`` goes in and the states come out through a transpose.
"""

from __future__ import annotations

import sympy

from gradc.frontend import ast
from gradc.ir import build, loops
from gradc.ir.builtins import _const_int
from gradc.ir.errors import LowerError
from gradc.ir.graph import Graph, Node
from gradc.ir.shapes import as_dim, fmt_shape

USAGE = "scan(cell, xs, hidden)"
#: the call forms lowered here (names a user may not take), name -> lowering step
FORMS = {}


def _cell(lw, arg, scope: dict):
    """The cell argument's fn declaration, its environment and what to call it in
    messages."""
    if not isinstance(arg, ast.Name):
        raise LowerError(f"{USAGE}: the cell is the name of a fn or a block instance",
                         getattr(arg, "span", None))
    name = arg.id
    found = scope.get(name)
    if found is None and name in lw.fns:
        return lw.fns[name], None, f"fn '{name}'"
    if found is None:
        found = lw.layers.get(name)
    if getattr(found, "kind", None) == "block":
        forward = found.env["forward"]
        return forward.decl, forward.env, f"block instance '{name}' (its forward)"
    if hasattr(found, "decl") and hasattr(found, "env"):  # a fn local to a block
        return found.decl, found.env, f"fn '{name}'"
    raise LowerError(f"{USAGE}: '{name}' is not a fn or a block instance", arg.span,
                     "declare the cell as: fn cell(h, x) = ...")


def lower_scan(lw, args: list, kwargs, call, scope: dict):
    """Lower ``scan(cell, xs, hidden)`` (a lowering step, see
    :func:`gradc.ir.lower.run_steps`)."""
    if len(args) != 3 or kwargs:
        raise LowerError(f"scan takes three arguments: {USAGE}", call.span)
    decl, env, what = _cell(lw, args[0], scope)
    if len(decl.params) != 2:
        raise LowerError(f"{USAGE}: the cell {what} takes {len(decl.params)} "
                         "argument(s); a cell takes two, (h, x)", args[0].span)
    xs = args[1] if isinstance(args[1], Node) else (yield lw._expr(args[1], scope))
    if not xs.is_float or xs.rank < 2:
        raise LowerError(f"{USAGE}: xs must be a float sequence [B, T, ...], got "
                         f"{xs.dtype}{fmt_shape(xs.shape)}", args[1].span)
    hidden = _const_int((yield lw._expr(args[2], scope)), "scan's hidden size", call)
    if hidden < 1:
        raise LowerError(f"{USAGE}: hidden must be at least 1, got {hidden}", args[2].span)
    g = lw.g
    batch = xs.shape[0]
    h = g.add("input", (), (batch, as_dim(hidden)), g.float_dtype, name="scan.h")
    x = g.add("input", (), (batch, *xs.shape[2:]), xs.dtype, name="scan.x")
    out = yield from lw.inline(decl, [h, x], (), call, scope, env)
    if tuple(out.shape) != tuple(h.shape) or not out.is_float:
        raise LowerError(f"{USAGE}: the cell {what} returns {out.dtype}{fmt_shape(out.shape)}"
                         f", but the hidden state is {fmt_shape(h.shape)}", call.span,
                         "the cell's result is the next h: hidden must be its last axis")
    body, consts = loops.from_graph(g, out, h, x)
    return over_time(g, body, xs, consts)


def over_time(g: Graph, body: loops.Body, xs: Node, consts: list[Node]) -> Node:
    """Run ``body`` over axis 1 of ``xs`` [B, T, ...]: every state, [B, T, *state]."""
    time_major = build.transpose(g, xs, (1, 0, *range(2, xs.rank)))
    states = loops.loop(g, body, [time_major], consts)
    return build.transpose(g, states, (1, 0, *range(2, states.rank)))


def _cols(g: Graph, x: Node, start: int, n: int) -> Node:
    """Columns ``start:start + n`` of the last axis of a 2-D ``x``."""
    return build.slice_(g, x, (("r", 0, 1, x.shape[0]), ("r", start, 1, n)))


def _sig(g: Graph, x: Node) -> Node:
    return build.ew(g, lambda a: 1 / (1 + sympy.exp(-a)), x)


def _lstm_step(hidden: int):
    """PyTorch's LSTM cell on the carry [h, c] (gates i, f, g, o of x Wx + b + h Wh)."""
    def step(g, carry, s, c):
        h, cell = _cols(g, carry, 0, hidden), _cols(g, carry, hidden, hidden)
        z = build.ew(g, lambda a, b: a + b, s[0], build.matmul(g, h, c[0]))
        i, f, gg, o = (_cols(g, z, k * hidden, hidden) for k in range(4))
        new_c = build.ew(g, lambda f_, c_, i_, g_: f_ * c_ + i_ * sympy.tanh(g_),
                         _sig(g, f), cell, _sig(g, i), gg)
        new_h = build.ew(g, lambda o_, c_: o_ * sympy.tanh(c_), _sig(g, o), new_c)
        full = carry.shape
        return build.ew(g, lambda a, b: a + b,
                        build.unslice(g, new_h, _span(full, 0, hidden), full),
                        build.unslice(g, new_c, _span(full, hidden, hidden), full))
    return step


def _span(shape, start: int, n: int) -> tuple:
    return (("r", 0, 1, shape[0]), ("r", start, 1, n))


def _gru_step(hidden: int):
    """PyTorch's GRU cell (gates r, z, n; n = tanh(x Wxn + bxn + r (h Whn + bhn)))."""
    def step(g, h, s, c):
        hw = build.ew(g, lambda a, b: a + b, build.matmul(g, h, c[0]), c[1])
        xr, xz, xn = (_cols(g, s[0], k * hidden, hidden) for k in range(3))
        hr, hz, hn = (_cols(g, hw, k * hidden, hidden) for k in range(3))
        r = _sig(g, build.ew(g, lambda a, b: a + b, xr, hr))
        z = _sig(g, build.ew(g, lambda a, b: a + b, xz, hz))
        n = build.ew(g, lambda a, r_, b: sympy.tanh(a + r_ * b), xn, r, hn)
        return build.ew(g, lambda z_, n_, h_: (1 - z_) * n_ + z_ * h_, z, n, h)
    return step


#: layer kind -> (carry width in hidden units, the bias param added to x Wx, the params the
#: step reads, the step); the carry is [h] or [h, c], the layer returns its h part. (The
#: tanh ``rnn`` keeps its dedicated ``scan`` op: through this machinery its char_rnn step
#: ran 1.5-1.7x slower, see docs/language.md, Recurrence.)
CELLS = {"lstm": (2, "b", ("Wh",), _lstm_step),
         "gru": (1, "bx", ("Wh", "bh"), _gru_step)}


def gated(g: Graph, kind: str, x: Node, params: dict, hidden: int) -> Node:
    """A recurrent layer of :data:`CELLS` over axis 1 of x [B, T, in]: every h_t,
    [B, T, hidden]."""
    width, bias, reads, step = CELLS[kind]
    xw = build.ew(g, lambda a, b: a + b, build.time_matmul(g, x, params["Wx"]), params[bias])
    consts = [params[name] for name in reads]
    body = loops.make_body(g.float_dtype, ((x.shape[0], as_dim(width * hidden)),
                                           g.float_dtype),
                           [], consts, step(hidden), [((x.shape[0], xw.shape[2]), xw.dtype)])
    states = over_time(g, body, xw, consts)
    if width == 1:
        return states
    b, t, _ = states.shape
    return build.slice_(g, states, (("r", 0, 1, b), ("r", 0, 1, t), ("r", 0, 1, as_dim(hidden))))


FORMS["scan"] = lower_scan
