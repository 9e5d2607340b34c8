"""Layers (SPEC §1): declarations that own params, applied as functions, composed with >>.

A layer is sugar: applying it expands to graph primitives (matmul, patches, reductions,
elementwise), so autodiff and code generation never see layers. :data:`LAYERS` is the one
table of layer kinds: how to read the constructor's arguments, which params it owns (with
their shapes and initialisers) and how to apply it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import sympy

from gradc.errors import did_you_mean
from gradc.frontend import ast
from gradc.ir import build, recurrence
from gradc.ir.builtins import check_numel, check_size, literal, log_softmax, parse_kwargs
from gradc.ir.errors import LowerError
from gradc.ir.graph import Graph, Node
from gradc.ir.shapes import as_dim, fmt_shape
from gradc.ir.sym import GreaterEq, Select


@dataclass
class Layer:
    """A declared layer instance: of a layer kind, a composition (``kind == 'compose'``,
    ``parts`` applied in order), a block instance (``'block'``, see
    :mod:`gradc.ir.blocks`: ``children`` its layers, ``env`` its names, ``block`` its
    declaration) or a repeat (``'repeat'``: ``parts`` and ``children`` the instances
    ``'0'``, ``'1'``, ...). ``name`` is the full path (``tower.0.fc1``)."""

    kind: str
    name: str
    config: dict
    params: dict[str, Node] = field(default_factory=dict)
    parts: list = field(default_factory=list)
    decl: ast.Stmt | None = None
    children: dict[str, Layer] = field(default_factory=dict)
    env: dict | None = None
    block: ast.Stmt | None = None


@dataclass(frozen=True)
class LayerKind:
    """How to construct and apply one kind of layer.

    Attributes:
        args: positional argument kinds: 'arrow' (``in -> out``), 'int' or 'number'.
        kwargs: keyword -> literal kind, with ``defaults``.
        params: ``params(config) -> [(name, shape, init)]``.
        apply: ``apply(lowerer, layer, x, call) -> Node``.
        aliases: other accepted keyword names (PyTorch's) -> the argument's name.
        inline: whether it may be written inline, without a declaration
            (``h |> maxpool2d(2)``): true for the kinds that own no params.
    """

    args: tuple[str, ...]
    names: tuple[str, ...]
    kwargs: dict
    defaults: dict
    params: Callable
    apply: Callable
    aliases: dict = field(default_factory=dict)
    inline: bool = False


def _arg_value(e: ast.Expr, kind: str, what: str):
    if kind == "arrow":
        if not isinstance(e, ast.Arrow):
            raise LowerError(f"{what}: expected 'in -> out' here", e.span)
        return (_arg_value(e.lhs, "int", what), _arg_value(e.rhs, "int", what))
    if kind == "prob":
        value = literal(e, "number")
        if not 0 <= value <= 1:
            raise LowerError(f"{what}: p must be in [0, 1], got {value:g}", e.span,
                             "p is the probability of zeroing an element")
        return float(value)
    if isinstance(e, ast.Num) and (kind == "number" or e.is_int) and e.value > 0:
        return check_size(int(e.value), e.span, f"{what}: this size") if kind == "int" \
            else float(e.value)
    got = f", got {e.value:g}" if isinstance(e, ast.Num) else ""
    raise LowerError(f"{what}: expected a positive {'integer' if kind == 'int' else 'number'}"
                     f"{got}", e.span)


def _keywords(kind: str, spec: LayerKind, v: ast.Call) -> tuple[dict, list]:
    """Split a layer call's keywords into positional arguments given by name (PyTorch's
    spellings too: ``kernel_size=3``, ``padding=1``) and the layer's own keywords, with
    aliases resolved. Raises for an unknown keyword or one given twice."""
    by_name: dict[str, ast.Keyword] = {}
    kwargs: list[ast.Keyword] = []
    seen: dict[str, ast.Keyword] = {}
    named = {name for name, a in zip(spec.names, spec.args) if a != "arrow"}
    for kw in v.kwargs:
        name = spec.aliases.get(kw.name, kw.name)
        if name not in named and name not in spec.kwargs:
            known = sorted(named | set(spec.kwargs) | set(spec.aliases))
            hint = did_you_mean(kw.name, known) or (
                "accepted: " + ", ".join(known) if known else f"{kind}() takes none")
            raise LowerError(f"{kind}() got an unknown keyword '{kw.name}'", kw.span, hint)
        if name in seen:
            raise LowerError(f"{kind}(): '{kw.name}' and '{seen[name].name}' give the same "
                             "argument" if kw.name != seen[name].name
                             else f"{kind}() got keyword '{kw.name}' twice", kw.span)
        seen[name] = kw
        if name in named:
            index = spec.names.index(name)
            if index < len(v.args):
                raise LowerError(f"{kind}(): '{name}' is given twice: as argument "
                                 f"{index + 1} and as a keyword", kw.span)
            by_name[name] = kw
        else:
            kwargs.append(ast.Keyword(name, kw.value, kw.span))
    return by_name, kwargs


def declare(lw, s: ast.LayerDecl, prefix: str = "", env: dict | None = None) -> Layer:
    """Create the layer of ``layer NAME = ...`` (a layer kind or a composition) and its
    params in the graph, named ``PREFIX NAME.PARAM``; ``env`` is the scope of the enclosing
    block, where a composition's parts are looked up first. (Block instances and repeats
    are declared by :func:`gradc.ir.blocks.declare`, which calls this for the rest.)"""
    v, name = s.value, prefix + s.name
    if isinstance(v, (ast.Compose, ast.Name)):
        parts = v.parts if isinstance(v, ast.Compose) else (v,)
        return Layer("compose", name, {}, parts=[callable_part(lw, p, env) for p in parts],
                     decl=s)
    if not (isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id in LAYERS):
        hint = f"layer kinds: {', '.join(LAYERS)}"
        if lw.blocks:
            hint += f"; blocks: {', '.join(lw.blocks)}"
        if isinstance(v, ast.Call) and isinstance(v.func, ast.Name):
            raise LowerError(f"unknown layer kind '{v.func.id}'", v.func.span,
                             did_you_mean(v.func.id, [*LAYERS, *lw.blocks, "repeat"]) or hint)
        raise LowerError("a layer is a layer call such as dense(3 -> 4) or a composition "
                         "a >> b", v.span, hint)
    return make(lw, name, s.name_span, v, s)


def make(lw, path: str, name_span, v: ast.Call, decl: ast.Stmt | None) -> Layer:
    """The layer ``path`` of the layer-kind call ``v`` (its arguments literals), with its
    params in the graph; ``decl`` is its declaration (None for an inline layer)."""
    kind, spec = v.func.id, LAYERS[v.func.id]
    what = f"{kind}()"
    by_name, kwargs = _keywords(kind, spec, v)
    n, given = len(spec.args), len(v.args)
    missing = [name for name in spec.names[given:] if name not in by_name]
    if given > n or (missing and not by_name):
        args = ["in -> out" if a == "arrow" else n for a, n in zip(spec.args, spec.names)]
        args += [f"{k}={str(spec.defaults[k]).lower()}" for k in spec.kwargs]
        raise LowerError(f"{kind}() takes {n} positional argument{'s' if n != 1 else ''}, "
                         f"got {given}", v.span, f"the form is {kind}({', '.join(args)})")
    if missing:
        raise LowerError(f"{kind}() is missing its argument '{missing[0]}'", v.span,
                         f"give it by position or as {missing[0]}=...")
    config = dict(spec.defaults)
    for name, kind_, e in zip(spec.names, spec.args, v.args):
        config[name] = _arg_value(e, kind_, what)
    for name, kind_ in zip(spec.names, spec.args):
        if name in by_name:
            config[name] = _arg_value(by_name[name].value, kind_, what)
    config.update(parse_kwargs(kind, kwargs, spec.kwargs))
    for kw in kwargs:
        if spec.kwargs.get(kw.name) == "int":
            value = config[kw.name]
            if kw.name == "pad" and value == 0:
                continue  # no padding
            check_size(value, kw.value.span, f"{what}: {kw.name}")
    layer = Layer(kind, path, config, decl=decl)
    for pname, shape, init in spec.params(config):
        full = f"{path}.{pname}"
        check_numel(tuple(as_dim(d) for d in shape), v.span, f"{kind} param {pname}")
        node = lw.g.add("param", (), tuple(as_dim(d) for d in shape), lw.g.float_dtype,
                        name_span, full, name=full)
        lw.g.params[full], lw.g.param_inits[full] = node, init
        lw.values[full] = layer.params[pname] = node
    return layer


def inline(lw, v: ast.Call, prefix: str) -> Layer:
    """The layer of a layer-kind call written inline (``h |> maxpool2d(2)``, ``conv >> relu
    >> maxpool2d(2)``), its value left out of ``v``; named ``PREFIX KIND_LINE_COL``. Only
    the kinds marked ``inline`` (they own no params) may be: the others need a declaration."""
    kind = v.func.id
    if not LAYERS[kind].inline:
        raise LowerError(f"{kind} owns params, so it cannot be written inline: declare it: "
                         f"layer NAME = {kind}(...)", v.func.span,
                         "then apply it by its name, e.g. x |> NAME; kinds usable inline: "
                         + ", ".join(k for k, spec in LAYERS.items() if spec.inline))
    name = f"{prefix}{kind}_{v.span.line}_{v.span.col}"
    return make(lw, name, v.span, v, None)


def callable_part(lw, e: ast.Expr, env: dict | None = None):
    """A part of a composition: a layer (of the enclosing block's ``env`` first), a user
    fn, an activation, an activation call with keywords only (``leaky_relu(alpha=0.2)``)
    or an inline layer kind (``maxpool2d(2)``)."""
    if isinstance(e, ast.Name):
        found = (env or {}).get(e.id)
        if isinstance(found, Layer):
            return found
        if e.id in lw.layers and env is None:
            return lw.layers[e.id]
    if isinstance(e, (ast.Name, ast.Call)):
        return e
    raise LowerError("a composition joins layers and functions: name them, e.g. "
                     "fc1 >> relu >> fc2", e.span)


#: the layers that apply their parts in order: kind -> (what it is, what a part is).
_SEQUENCES = {"compose": ("the composition", "part"), "repeat": ("the repeat", "instance")}


def apply(lw, layer: Layer, x: Node, call: ast.Expr, scope: dict):
    """Apply ``layer`` to the value ``x`` (at the call site ``call``): a lowering step
    (a generator run by :func:`gradc.ir.lower.run_steps`) whose value is the result."""
    if layer.kind in _SEQUENCES:
        what, each = _SEQUENCES[layer.kind]
        for k, part in enumerate(layer.parts):
            try:
                if isinstance(part, Layer):
                    x = yield lw.apply_layer(part, x, call, scope)
                elif isinstance(part, ast.Call):
                    x = yield lw._call(part.func, [x, *part.args], part.kwargs, part, scope)
                else:
                    x = yield lw._call(part, [x], (), part, scope)
            except LowerError as err:
                if k and not err.in_fn:
                    err.hint = (f"in {what} '{layer.name}' (line "
                                f"{layer.decl.span.line}), {each} {k + 1} receives "
                                f"{fmt_shape(x.shape)} from the {each} before it")
                    err.in_fn = True
                raise
        return x
    try:
        return LAYERS[layer.kind].apply(lw, layer, x, call)
    except build.ShapeMismatch as err:
        hint = f"'{layer.name}' is declared at line {layer.decl.span.line}" if layer.decl else None
        raise LowerError(f"{layer.kind} layer '{layer.name}' {err}", call.span, hint) from None


def _expect(layer: Layer, x: Node, rank: tuple[int, int], axis: int, size, what: str) -> None:
    lo, hi = rank
    if not lo <= x.rank <= hi or (size is not None and x.shape[axis] != size):
        raise build.ShapeMismatch(f"expects an input of shape {what}, got "
                                  f"{fmt_shape(x.shape)}")


def _dense(lw, layer, x, call):
    cin, cout = layer.config["features"]
    _expect(layer, x, (1, 99), -1, cin, f"[..., {cin}]")
    out = build.matmul(lw.g, x, layer.params["W"])
    if layer.config["bias"]:
        out = build.ew(lw.g, lambda a, b: a + b, out, layer.params["b"])
    return out


def _embedding(lw, layer, idx, call):
    if idx.is_float:
        raise build.ShapeMismatch(f"expects integer indices, got a {idx.dtype} value")
    return build.take(lw.g, layer.params["W"], idx, 0)


def _conv(g: Graph, layer: Layer, x: Node, k, stride, pad) -> Node:
    """The convolution of NCHW ``x`` with the layer's ``W`` (any shape [cout, cin, ...] whose
    trailing axes are the window's ``k`` = (kh, kw)) and ``b``: im2col, one matmul, the
    bias; returns NCHW. conv2d and conv1d are both this (conv1d on a height-1 view)."""
    cin, cout = layer.config["channels"]
    cols = build.patches(g, x, k, stride, pad)                   # N, OH, OW, cin*kh*kw
    w2 = build.reshape(g, layer.params["W"], (cout, cin * k[0] * k[1]))
    out = build.matmul(g, cols, build.transpose(g, w2))                 # N, OH, OW, cout
    out = build.ew(g, lambda a, b: a + b, out, layer.params["b"])
    return build.transpose(g, out, (0, 3, 1, 2))


def _conv2d(lw, layer, x, call):
    c = layer.config
    k = c["kernel"]
    _expect(layer, x, (4, 4), 1, c["channels"][0], f"NCHW [N, {c['channels'][0]}, H, W]")
    return _conv(lw.g, layer, x, (k, k), c["stride"], c["pad"])


def _conv1d(lw, layer, x, call):
    """PyTorch's conv1d on NCL: the 2-D convolution with a (1, k) window of the height-1
    view [N, cin, 1, L] of ``x`` (a reshape: no copy)."""
    g, c = lw.g, layer.config
    k, stride, pad = c["kernel"], c["stride"], c["pad"]
    _expect(layer, x, (3, 3), 1, c["channels"][0], f"NCL [N, {c['channels'][0]}, L]")
    n, cin, length = x.shape
    if not length.is_Integer:
        raise build.ShapeMismatch(f"needs a fixed length, got {fmt_shape(x.shape)} (give L "
                                  "as a number, or declare it: dim L = 32)")
    if (length + 2 * pad - k) // stride + 1 < 1:
        raise build.ShapeMismatch(f"kernel {k} with stride {stride} and padding {pad} does "
                                  f"not fit the signal {fmt_shape(x.shape)}")
    one = sympy.Integer(1)
    out = _conv(g, layer, build.reshape(g, x, (n, cin, one, length)), (1, k), (1, stride),
                (0, pad))                                                # N, cout, 1, OL
    return build.reshape(g, out, (n, out.shape[1], out.shape[3]))


def _pool(lw, layer, x, call):
    """Max or average over k x k windows. Where the windows tile the image (stride k, H
    and W multiples of k: every pooling of the examples) the image is seen as
    [N*C*OH, k, OW, k] and reduced over axes 1 and 3: no im2col copy forward and no
    col2im scatter backward, and each window's values are met in the same order (row by
    row) as in the patches' last axis. Otherwise (overlapping or leftover rows) the
    windows are im2col patches reduced over their last axis."""
    g, c = lw.g, layer.config
    k, stride = c["size"], c.get("stride") or c["size"]
    _expect(layer, x, (4, 4), 1, None, "NCHW [N, C, H, W]")
    n, ch, h, w = x.shape
    kind = "max" if layer.kind == "maxpool2d" else "sum"
    if stride == k and h.is_Integer and w.is_Integer and h % k == 0 and w % k == 0:
        oh, ow = h // k, w // k
        red = build.reduce(g, build.reshape(g, x, (n * ch * oh, k, ow, k)), kind, (1, 3))
    else:
        one = sympy.Integer(1)
        cols = build.patches(g, build.reshape(g, x, (n * ch, one, h, w)), k, stride, 0)
        red = build.reduce(g, cols, kind, (3,))
        oh, ow = cols.shape[1], cols.shape[2]
    if layer.kind == "avgpool2d":
        red = build.ew(g, lambda a: a / (k * k), red)
    return build.reshape(g, red, (n, ch, oh, ow))


def normalize(g: Graph, x: Node, axes: tuple[int, ...], eps: float = 1e-5):
    """Return (x - mean) / sqrt(var + eps) over ``axes`` and the (mean, var) keepdims nodes."""
    mean = build.ew(g, lambda s_, k: s_ * k, build.reduce(g, x, "sum", axes, True),
                    build.mean_scale(g, x, axes))
    cen = build.ew(g, lambda a, m: a - m, x, mean)
    var = build.ew(g, lambda s_, k: s_ * k,
                   build.reduce(g, build.ew(g, lambda a: a * a, cen), "sum", axes, True),
                   build.mean_scale(g, x, axes))
    return build.ew(g, lambda a, v: a / sympy.sqrt(v + eps), cen, var), mean, var


def _affine(g, y, gamma, beta, axis):
    shape = tuple(d if i == axis % y.rank else sympy.Integer(1) for i, d in enumerate(y.shape))
    gm, bt = build.reshape(g, gamma, shape), build.reshape(g, beta, shape)
    return build.ew(g, lambda a, s_, b: a * s_ + b, y, gm, bt)


def _layernorm(lw, layer, x, call):
    n = layer.config["features"]
    _expect(layer, x, (1, 99), -1, n, f"[..., {n}]")
    y, _, _ = normalize(lw.g, x, (x.rank - 1,))
    return _affine(lw.g, y, layer.params["gamma"], layer.params["beta"], -1)


#: the score a causal mask gives a future position: exp(MASKED - max) is exactly 0 in f32
#: and f64, and MASKED is finite (no inf arithmetic anywhere, derivatives included)
MASKED = -1e30


def _attention(lw, layer, x, call):
    g, c = lw.g, layer.config
    dim, heads = c["dim"], c["heads"]
    _expect(layer, x, (3, 3), -1, dim, f"[B, T, {dim}]")
    if dim % heads:
        raise build.ShapeMismatch(f"dim {dim} is not divisible by heads {heads}")
    b, t, _ = x.shape
    d = dim // heads

    def split(w):  # [B, T, dim] -> [B, heads, T, d]
        proj = build.matmul(g, x, layer.params[w])
        return build.transpose(g, build.reshape(g, proj, (b, t, heads, d)), (0, 2, 1, 3))
    q, k, v = split("Wq"), split("Wk"), split("Wv")
    scores = build.ew(g, lambda s_: s_ / sympy.sqrt(d),
                      build.matmul2(g, q, k, False, True))               # B, h, T, T
    if c["causal"]:  # masked scores are far below any other: their weights are exactly 0
        scores = build.ew(g, lambda s_, m: Select(m, s_, MASKED), scores,
                          build.causal_mask(g, t))
    attn = build.ew(g, sympy.exp, log_softmax(g, scores, 3))
    ctx = build.matmul2(g, attn, v)                                      # B, h, T, d
    ctx = build.reshape(g, build.transpose(g, ctx, (0, 2, 1, 3)), (b, t, as_dim(dim)))
    return build.matmul(g, ctx, layer.params["Wo"])


def _leaf(lw, role: str, name: str, shape, init=None) -> Node:
    g = lw.g
    node = g.add("input", (), shape, g.float_dtype, None, name, name=name, role=role)
    if role == "buffer":
        g.buffers[name], g.buffer_inits[name] = node, init
    else:
        g.noise[name] = node
    return node


def _batchnorm(lw, layer, x, call):
    g, n = lw.g, layer.config["features"]
    _expect(layer, x, (2, 99), 1, n, f"[N, {n}, ...]")
    g.stateful = True
    axes = tuple(a for a in range(x.rank) if a != 1)
    kd = tuple(d if i == 1 else sympy.Integer(1) for i, d in enumerate(x.shape))
    if layer.name not in lw.bn_buffers:
        lw.bn_buffers[layer.name] = (
            _leaf(lw, "buffer", f"{layer.name}.running_mean", (as_dim(n),), ("zeros",)),
            _leaf(lw, "buffer", f"{layer.name}.running_var", (as_dim(n),), ("ones",)))
    rm, rv = lw.bn_buffers[layer.name]
    if lw.mode == "eval":
        y = build.ew(g, lambda a, m, v: (a - m) / sympy.sqrt(v + 1e-5), x,
                     build.reshape(g, rm, kd), build.reshape(g, rv, kd))
    else:
        y, mean, var = normalize(g, x, axes)
        unbias = build.ew(g, lambda s_: 1 / (1 - s_), build.mean_scale(g, x, axes))
        g.buffer_updates += [
            (rm, build.ew(g, lambda r, m: 0.9 * r + 0.1 * m, rm, build.reshape(g, mean, (n,)))),
            (rv, build.ew(g, lambda r, v, u: 0.9 * r + 0.1 * v * u, rv,
                          build.reshape(g, var, (n,)), unbias))]
    return _affine(g, y, layer.params["gamma"], layer.params["beta"], 1)


def _dropout(lw, layer, x, call):
    lw.g.stateful = True
    p = layer.config["p"]
    if lw.mode == "eval" or p == 0:
        return x
    k = sum(1 for name in lw.g.noise if name.startswith(f"{layer.name}."))
    u = _leaf(lw, "noise", f"{layer.name}.{k}", x.shape)
    keep = 1 / (1 - p) if p < 1 else 0  # p = 1 drops every element (zeros, as torch)
    return build.ew(lw.g, lambda a, r: a * Select(GreaterEq(r, p), keep, 0), x, u)


def _rnn(lw, layer, x, call):
    g = lw.g
    cin, hidden = layer.config["features"]
    _expect(layer, x, (3, 3), -1, cin, f"[B, T, {cin}]")
    xw = build.ew(g, lambda a, b: a + b, build.time_matmul(g, x, layer.params["Wx"]),
                  layer.params["b"])
    return build.scan(g, xw, layer.params["Wh"])


def _gated(lw, layer, x, call):
    cin, hidden = layer.config["features"]
    _expect(layer, x, (3, 3), -1, cin, f"[B, T, {cin}]")
    return recurrence.gated(lw.g, layer.kind, x, layer.params, hidden)


def _io(c):
    return c["features"]


def _conv_kind(rank: int, apply: Callable) -> LayerKind:
    """conv1d (``rank`` 1) and conv2d (2): W [cout, cin, k, ...] (``rank`` times k), b."""
    return LayerKind(
        ("arrow", "int"), ("channels", "kernel"), {"stride": "int", "pad": "int"},
        {"stride": 1, "pad": 0},
        lambda c: [("W", (c["channels"][1], c["channels"][0]) + (c["kernel"],) * rank,
                    ("glorot_uniform",)), ("b", (c["channels"][1],), ("zeros",))], apply,
        {"kernel_size": "kernel", "padding": "pad"})


LAYERS: dict[str, LayerKind] = {
    "dense": LayerKind(
        ("arrow",), ("features",), {"bias": "bool"}, {"bias": True},
        lambda c: [("W", _io(c), ("glorot_uniform",))]
        + ([("b", (_io(c)[1],), ("zeros",))] if c["bias"] else []), _dense),
    "embedding": LayerKind(
        ("arrow",), ("features",), {}, {},
        lambda c: [("W", _io(c), ("normal", 1.0))], _embedding),
    "conv2d": _conv_kind(2, _conv2d),
    "conv1d": _conv_kind(1, _conv1d),
    "maxpool2d": LayerKind(("int",), ("size",), {"stride": "int"}, {"stride": 0},
                           lambda c: [], _pool, {"kernel_size": "size", "kernel": "size"},
                           inline=True),
    "avgpool2d": LayerKind(("int",), ("size",), {"stride": "int"}, {"stride": 0},
                           lambda c: [], _pool, {"kernel_size": "size", "kernel": "size"},
                           inline=True),
    "layernorm": LayerKind(
        ("int",), ("features",), {}, {},
        lambda c: [("gamma", (c["features"],), ("ones",)),
                   ("beta", (c["features"],), ("zeros",))], _layernorm),
    "batchnorm": LayerKind(
        ("int",), ("features",), {}, {},
        lambda c: [("gamma", (c["features"],), ("ones",)),
                   ("beta", (c["features"],), ("zeros",))], _batchnorm),
    "dropout": LayerKind(("prob",), ("p",), {}, {}, lambda c: [], _dropout, inline=True),
    "rnn": LayerKind(
        ("arrow",), ("features",), {}, {},
        lambda c: [("Wx", _io(c), ("glorot_uniform",)),
                   ("Wh", (_io(c)[1], _io(c)[1]), ("glorot_uniform",)),
                   ("b", (_io(c)[1],), ("zeros",))], _rnn),
    "lstm": LayerKind(
        ("arrow",), ("features",), {}, {},
        lambda c: [("Wx", (_io(c)[0], 4 * _io(c)[1]), ("glorot_uniform",)),
                   ("Wh", (_io(c)[1], 4 * _io(c)[1]), ("glorot_uniform",)),
                   ("b", (4 * _io(c)[1],), ("zeros",))], _gated),
    "gru": LayerKind(
        ("arrow",), ("features",), {}, {},
        lambda c: [("Wx", (_io(c)[0], 3 * _io(c)[1]), ("glorot_uniform",)),
                   ("Wh", (_io(c)[1], 3 * _io(c)[1]), ("glorot_uniform",)),
                   ("bx", (3 * _io(c)[1],), ("zeros",)),
                   ("bh", (3 * _io(c)[1],), ("zeros",))], _gated),
    "attention": LayerKind(
        ("int", "int"), ("dim", "heads"), {"causal": "bool"}, {"causal": False},
        lambda c: [(w, (c["dim"], c["dim"]), ("glorot_uniform",))
                   for w in ("Wq", "Wk", "Wv", "Wo")], _attention, {"num_heads": "heads"}),
}
