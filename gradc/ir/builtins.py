"""The built-in functions that are not one elementwise op: reductions, softmax, shape
functions and losses, each lowered to graph primitives (SPEC §1 "Built-ins").

Every handler has the signature ``handler(g, name, args, kwargs, call) -> Node`` where
``args`` are lowered nodes and ``kwargs`` the AST keywords; it raises
:class:`gradc.ir.errors.LowerError` for user mistakes and
:class:`gradc.ir.build.ShapeMismatch` for shapes that do not fit.
"""

from __future__ import annotations

import sympy

from gradc.errors import did_you_mean
from gradc.frontend import ast
from gradc.ir import build, sym
from gradc.ir.errors import LowerError
from gradc.ir.graph import Graph, Node
from gradc.ir.ops import ELEMENTWISE
from gradc.ir.shapes import MAX_DIM, MAX_NUMEL, dim_symbol, fmt_shape, normalize_axes, numel



def literal(e: ast.Expr, kind: str):
    """Return the Python value of a literal keyword/argument of ``kind``
    ('number', 'int', 'bool', 'str', 'axes'), or raise LowerError."""
    if kind in ("number", "int") and isinstance(e, ast.UnaryOp) and e.op == "-":
        return -literal(e.operand, kind)
    if kind == "number" and isinstance(e, ast.Num):
        return e.value
    if kind == "int" and isinstance(e, ast.Num) and e.is_int:
        return int(e.value)
    if kind == "bool" and isinstance(e, ast.Bool):
        return e.value
    if kind == "str" and isinstance(e, ast.Str):
        return e.value
    if kind == "axes":
        if isinstance(e, ast.TupleLit):
            return tuple(literal(i, "int") for i in e.items)
        return literal(e, "int")
    words = {"number": "a number", "int": "an integer", "bool": "true or false",
             "str": "a string", "axes": "an integer or a tuple of integers"}
    raise LowerError(f"expected {words[kind]} here", e.span)


def check_size(value: int, span, what: str = "this size") -> int:
    """Return ``value`` if it is a valid fixed size (1 to :data:`MAX_DIM`); raise a user error
    at ``span`` otherwise."""
    if value > MAX_DIM:
        raise LowerError(f"{what} is too large: the limit is {MAX_DIM} (2^31 - 1)", span)
    if value < 1:
        raise LowerError(f"{what} must be at least 1, got {value}", span)
    return value


def check_numel(shape, span, what: str) -> None:
    """Raise a user error at ``span`` when the fixed dims of ``shape`` multiply past
    :data:`MAX_NUMEL`."""
    total = 1
    for d in shape:
        if d.is_Integer:
            total *= int(d)
    if total > MAX_NUMEL:
        raise LowerError(f"{what} has more than 2^62 elements", span,
                         "a tensor of this size cannot be allocated or indexed")


def parse_kwargs(name: str, kwargs, allowed: dict[str, str]) -> dict:
    """Check keyword names against ``allowed`` (name -> literal kind) and convert them."""
    out = {}
    for kw in kwargs:
        if kw.name not in allowed:
            hint = did_you_mean(kw.name, allowed) or (
                "accepted: " + ", ".join(allowed) if allowed else f"{name}() takes none")
            raise LowerError(f"{name}() got an unknown keyword '{kw.name}'", kw.span, hint)
        if kw.name in out:
            raise LowerError(f"{name}() got keyword '{kw.name}' twice", kw.span)
        out[kw.name] = literal(kw.value, allowed[kw.name])
    return out


def check_arity(name: str, args: list, n: int | tuple[int, int], call: ast.Expr) -> None:
    """Raise unless ``len(args)`` is ``n`` (or within the inclusive range ``n``)."""
    lo, hi = (n, n) if isinstance(n, int) else n
    if not lo <= len(args) <= hi:
        want = str(lo) if lo == hi else (f"{lo} or more" if hi > 99 else f"{lo} to {hi}")
        raise LowerError(f"{name}() takes {want} positional argument(s), got {len(args)}",
                         call.span)


def _axes(name: str, x: Node, axes, call: ast.Expr) -> tuple[int, ...]:
    out = normalize_axes(axes, x.rank)
    if out is None:
        raise LowerError(f"{name}(): axis {axes} is out of range for shape "
                         f"{fmt_shape(x.shape)}", call.span)
    return out


def _tensor(name: str, x) -> Node:
    """Return ``x`` if it is a tensor (a lowered value, not a list or tuple literal)."""
    if not isinstance(x, Node):
        raise LowerError(f"{name}(): expected a tensor here, not a literal", x.span)
    return x


def _float(name: str, x, call: ast.Expr) -> Node:
    """Return ``x`` if it is a float tensor; raise a user error otherwise."""
    if not _tensor(name, x).is_float:
        raise LowerError(f"{name}(): an integer value ({x.dtype}) cannot be differentiated "
                         "or used as data here", call.span)
    return x


def call_elementwise(g: Graph, name: str, args: list, kwargs, call: ast.Expr) -> Node:
    """Lower a call of an op of the elementwise table."""
    op = ELEMENTWISE[name]
    check_arity(name, args, op.nargs, call)
    kw = {**op.kwargs, **parse_kwargs(name, kwargs, {k: "number" for k in op.kwargs})}
    args = [_float(name, a, call) for a in args]
    return build.ew(g, lambda *s: op.build(*s, **kw), *args, what=name, span=call.span)


def _reduction(g, name, args, kwargs, call):
    check_arity(name, args, 1, call)
    kw = parse_kwargs(name, kwargs, {"axis": "axes", "keepdims": "bool"})
    x = _float(name, args[0], call)
    axes = _axes(name, x, kw.get("axis"), call)
    keep = kw.get("keepdims", False)
    if name == "mean":
        total = build.reduce(g, x, "sum", axes, keep)
        return build.ew(g, lambda a, b: a * b, total, build.mean_scale(g, x, axes))
    return build.reduce(g, x, "sum" if name == "sum" else name, axes, keep)


def shifted_logits(g: Graph, z: Node, axis: int) -> tuple[Node, Node]:
    """Return (z - max(z), log(sum(exp(z - max(z))))) along ``axis`` (keepdims).

    The max is detached: it cancels exactly, so no gradient flows into it, and ``z - max``
    is exact in floating point, which keeps softmax and cross-entropy accurate in float32
    at any logit scale (unlike ``z - logsumexp(z)``, which cancels catastrophically)."""
    top = build.reduce(g, z, "max", (axis,), keepdims=True)
    sh = build.ew(g, lambda a, m: a - sym.Detach(m), z, top)
    total = build.reduce(g, build.ew(g, sympy.exp, sh), "sum", (axis,), keepdims=True)
    return sh, build.ew(g, sympy.log, total)


def log_softmax(g: Graph, z: Node, axis: int) -> Node:
    """Return ``(z - max) - log(sum(exp(z - max)))``: stable by construction."""
    sh, log_total = shifted_logits(g, z, axis)
    return build.ew(g, lambda a, b: a - b, sh, log_total)


def _softmax(g, name, args, kwargs, call):
    check_arity(name, args, 1, call)
    kw = parse_kwargs(name, kwargs, {"axis": "int"})
    z = _float(name, args[0], call)
    (axis,) = _axes(name, z, kw.get("axis", -1), call)
    sh, log_total = shifted_logits(g, z, axis)
    if name == "log_softmax":
        return build.ew(g, lambda a, b: a - b, sh, log_total)
    return build.ew(g, lambda a, b: sympy.exp(a - b), sh, log_total)


def _transpose(g, name, args, kwargs, call):
    check_arity(name, args, (1, 2), call)
    kw = parse_kwargs(name, kwargs, {"axes": "axes"})
    x = _float(name, args[0], call)
    perm = kw.get("axes")
    if len(args) == 2 and isinstance(args[1], Node):  # an integer literal arrives lowered
        if not _is_const_int(args[1]):
            raise LowerError("transpose(a, axes): axes must be a tuple of integer literals, "
                             "e.g. (1, 0)", call.span)
        perm = int(args[1].attrs["expr"])
    elif len(args) == 2:
        perm = literal(args[1], "axes")
    if isinstance(perm, int):
        perm = (perm,)
    if perm is not None:
        perm = tuple(p % x.rank if -x.rank <= p < x.rank else p for p in perm)
    return build.transpose(g, x, perm)


def _reshape(g, name, args, kwargs, call):
    check_arity(name, args, 2, call)
    parse_kwargs(name, kwargs, {})
    x, spec = _float(name, args[0], call), args[1]
    if not isinstance(spec, ast.ListLit):
        raise LowerError("reshape(a, [d0, d1, ...]): the new shape is a list literal",
                         spec.span)
    dims, free = [], None
    for item in spec.items:
        if isinstance(item, ast.Name):
            dims.append(dim_symbol(item.id))
        elif literal(item, "int") == -1 and free is None:
            free = len(dims)
            dims.append(None)
        elif literal(item, "int") > 0:
            dims.append(sympy.Integer(check_size(literal(item, "int"), item.span,
                                                 "reshape: this size")))
        else:
            raise LowerError("reshape: dims are positive integers, dim names and one -1",
                             item.span)
    if free is not None:
        known = numel(tuple(d for d in dims if d is not None))
        rest = sympy.simplify(numel(x.shape) / known)
        if not (rest.is_integer and rest.is_positive):
            raise build.ShapeMismatch(f"reshape: cannot reshape {fmt_shape(x.shape)} with "
                                      "-1 here: sizes do not divide")
        dims[free] = rest
    return build.reshape(g, x, tuple(dims))


def _reduce_loss(g: Graph, per_item: Node, reduction: str, batch_axes) -> Node:
    """Sum ``per_item`` over everything; for 'mean' divide by the size of ``batch_axes``."""
    total = build.reduce(g, per_item, "sum", tuple(range(per_item.rank)))
    if reduction == "sum":
        return total
    return build.ew(g, lambda a, b: a * b, total, build.mean_scale(g, per_item, batch_axes))


def _loss_kwargs(name, kwargs, extra=None):
    kw = parse_kwargs(name, kwargs, {"reduction": "str", **(extra or {})})
    red = kw.get("reduction", "mean")
    if red not in ("mean", "sum"):
        raise LowerError(f'{name}(): reduction must be "mean" or "sum", got "{red}"',
                         next(k.span for k in kwargs if k.name == "reduction"))
    return kw, red


def _same_shape(name, a, b):
    if a.shape != b.shape:
        raise build.ShapeMismatch(f"{name}: prediction {fmt_shape(a.shape)} and target "
                                  f"{fmt_shape(b.shape)} differ")


def _mse(g, name, args, kwargs, call):
    check_arity(name, args, 2, call)
    _, red = _loss_kwargs(name, kwargs)
    p, t = (_float(name, a, call) for a in args)
    _same_shape(name, p, t)
    sq = build.ew(g, lambda a, b: (a - b) ** 2, p, t)
    return _reduce_loss(g, sq, red, tuple(range(sq.rank)))


def _bce(g, name, args, kwargs, call):
    check_arity(name, args, 2, call)
    _, red = _loss_kwargs(name, kwargs)
    z, t = (_float(name, a, call) for a in args)
    _same_shape(name, z, t)
    per = build.ew(g, lambda a, b: sym.Softplus(a) - a * b, z, t)
    return _reduce_loss(g, per, red, tuple(range(per.rank)))


def _labels(name: str, scores: Node, labels: Node) -> None:
    if scores.rank < 1 or labels.shape != scores.shape[:-1]:
        raise build.ShapeMismatch(f"{name}: integer labels {fmt_shape(labels.shape)} must have "
                                  f"the shape of the scores {fmt_shape(scores.shape)} "
                                  "without its last axis")


def _pick_label(g: Graph, scores: Node, labels: Node, source: Node) -> Node:
    """``source[..., labels]`` (``source``: the ``scores`` of a loss with integer
    ``labels``, or a shift of them); records the use in ``g.label_uses``, which the
    SIGNATURE's ``labels`` field reads."""
    picked = g.add("pick", (source, labels), labels.shape, scores.dtype)
    g.label_uses.append((scores, labels, picked))
    return picked


def _float_labels(name: str, scores: Node, labels: Node, call) -> LowerError:
    """The error for float ``labels`` shaped like class labels of ``scores``: name the
    declaration that would make them integers."""
    typed = "i64" + (fmt_shape(scores.shape[:-1]) if scores.rank > 1 else "")
    if labels.op == "input":
        return LowerError(f"{name}(): labels must be integers: declare "
                          f"'{labels.attrs['name']} : {typed}'", call.span,
                          f"'{labels.attrs['name']}' is declared at line {labels.span.line}"
                          if labels.span else None)
    return LowerError(f"{name}(): labels must be integers, but this value is {labels.dtype}"
                      f"{fmt_shape(labels.shape)}", call.span,
                      f"class labels come from an integer input, e.g. 'input y : {typed}'")


def _cross_entropy(g, name, args, kwargs, call):
    check_arity(name, args, 2, call)
    _, red = _loss_kwargs(name, kwargs)
    z, t = _float(name, args[0], call), _tensor(name, args[1])
    batch = tuple(range(z.rank - 1))
    if t.is_float and z.rank and t.shape == z.shape[:-1]:
        raise _float_labels(name, z, t, call)
    if t.is_float:
        _same_shape(name, z, t)
        per = build.ew(g, lambda a, b: -a * b, log_softmax(g, z, z.rank - 1), t)
    else:
        _labels(name, z, t)
        sh, log_total = shifted_logits(g, z, z.rank - 1)
        picked = _pick_label(g, z, t, sh)
        per = build.ew(g, lambda a, b: a - b, build.reshape(g, log_total, t.shape), picked)
    return _reduce_loss(g, per, red, batch)


def _hinge(g, name, args, kwargs, call):
    check_arity(name, args, 2, call)
    kw, red = _loss_kwargs(name, kwargs, {"margin": "number"})
    margin = kw.get("margin", 1.0)
    if margin < 0:
        raise LowerError("hinge(): margin must be >= 0", call.span)
    s, y = _float(name, args[0], call), _tensor(name, args[1])
    if y.is_float:
        raise _float_labels(name, s, y, call)
    _labels(name, s, y)
    picked = build.reshape(g, _pick_label(g, s, y, s), y.shape + (1,))
    # sum_j max(0, s_j - s_y + margin) counts j = y as exactly `margin`: subtract it.
    per = build.ew(g, lambda a, b: sym.Relu(a - b + margin) - margin / s.shape[-1], s, picked)
    return _reduce_loss(g, per, red, tuple(range(s.rank - 1)))


def _norm_loss(g, name, args, kwargs, call):
    check_arity(name, args, (1, 999), call)
    parse_kwargs(name, kwargs, {})
    fn = (lambda a: sym.Absv(a)) if name == "l1" else (lambda a: a ** 2)
    terms = [build.reduce(g, build.ew(g, fn, _float(name, t, call)), "sum",
                          tuple(range(t.rank))) for t in args]
    return build.ew(g, lambda *s: sympy.Add(*s), *terms)


def index(g: Graph, x: Node, e: ast.Index) -> Node:
    """Lower ``x[items]``: integer literals and slices of integer literals."""
    if len(e.items) > x.rank:
        raise LowerError(f"too many indices: {len(e.items)} for shape {fmt_shape(x.shape)}",
                         e.span)
    spec = []
    for axis, dim in enumerate(x.shape):
        item = e.items[axis] if axis < len(e.items) else ast.Slice(e.span, None, None, None)
        spec.append(_index_item(item, dim, axis))
    return build.slice_(g, x, tuple(spec))


def _index_item(item: ast.Expr, dim, axis: int) -> tuple:
    if isinstance(item, ast.Slice):
        parts = [None if p is None else literal(p, "int") for p in (item.start, item.stop,
                                                                      item.step)]
        step = 1 if parts[2] is None else parts[2]
        if step < 1:
            raise LowerError("slice steps must be positive", item.span)
        if not dim.is_Integer:
            if parts[:2] != [None, None] and parts[:2] != [0, None] or step != 1:
                raise LowerError(f"axis {axis} has the call-time size {dim}: only ':' can "
                                 "slice it", item.span)
            return ("r", 0, 1, dim)
        start, stop, _ = slice(parts[0], parts[1], step).indices(int(dim))
        length = len(range(start, stop, step))
        if length == 0:
            raise LowerError(f"this slice of axis {axis} (size {dim}) is empty", item.span)
        return ("r", start, step, length)
    if isinstance(item, (ast.Num, ast.UnaryOp)):
        i = literal(item, "int")
        if not dim.is_Integer:
            if i not in (0, -1):
                raise LowerError(f"axis {axis} has the call-time size {dim}: only index 0 or "
                                 "-1 is always valid", item.span)
            return ("i", 0 if i == 0 else dim - 1)
        if not -int(dim) <= i < int(dim):
            raise LowerError(f"index {i} is out of range for axis {axis} of size {dim}",
                             item.span)
        return ("i", i % int(dim))
    raise LowerError("an index is an integer literal or a slice; gather by a tensor with "
                     "take(a, idx, axis)", item.span)


def _is_const_int(x) -> bool:
    """Whether ``x`` is a lowered integer literal (a constant node)."""
    return isinstance(x, Node) and x.op == "ewise" and not x.inputs \
        and x.attrs["expr"].is_Integer


def _const_int(x, what: str, call) -> int:
    if _is_const_int(x):
        return int(x.attrs["expr"])
    raise LowerError(f"{what} must be an integer literal", call.span)


def _concat(g, name, args, kwargs, call):
    check_arity(name, args, (1, 999), call)
    kw = parse_kwargs(name, kwargs, {"axis": "int"})
    xs = [_float(name, a, call) for a in args]
    rank = xs[0].rank
    (axis,) = _axes(name, xs[0], kw.get("axis", -1), call)
    for x in xs[1:]:
        if x.rank != rank or any(d != e for i, (d, e) in enumerate(zip(x.shape, xs[0].shape))
                                 if i != axis):
            raise build.ShapeMismatch(f"concat: shapes {fmt_shape(xs[0].shape)} and "
                                      f"{fmt_shape(x.shape)} differ outside axis {axis}")
    total = sympy.Add(*(x.shape[axis] for x in xs))
    full = tuple(total if i == axis else d for i, d in enumerate(xs[0].shape))
    parts, offset = [], sympy.Integer(0)
    for x in xs:
        spec = tuple(("r", offset if i == axis else 0, 1, d) for i, d in enumerate(x.shape))
        parts.append(build.unslice(g, x, spec, full) if len(xs) > 1 else x)
        offset += x.shape[axis]
    return build.ew(g, lambda *s_: sympy.Add(*s_), *parts)


def _take(g, name, args, kwargs, call):
    check_arity(name, args, (2, 3), call)
    kw = parse_kwargs(name, kwargs, {"axis": "int"})
    a = _float(name, args[0], call)
    idx = args[1]
    if not isinstance(idx, Node) or idx.is_float:
        raise LowerError("take(a, idx, axis): idx must be an integer tensor", call.span)
    axis = _const_int(args[2], "take's axis", call) if len(args) == 3 else kw.get("axis", 0)
    (axis,) = _axes(name, a, axis, call)
    return build.take(g, a, idx, axis)


BUILTINS = {
    **{n: _reduction for n in ("sum", "mean", "max", "min", "logsumexp")},
    "softmax": _softmax, "log_softmax": _softmax,
    "transpose": _transpose, "reshape": _reshape,
    "concat": _concat, "take": _take,
    "mse": _mse, "binary_cross_entropy": _bce, "cross_entropy": _cross_entropy,
    "hinge": _hinge, "l1": _norm_loss, "l2": _norm_loss,
}
