"""Blocks (SPEC §1): ``block NAME(ARGS) { layers, params, fns, fn forward }`` templates,
their instances (``layer b1 = res(32)``) and ``repeat(res(32), 4)``.

An instance is a :class:`~gradc.ir.layers.Layer` of kind ``'block'`` named by its full path
(``b1``, ``tower.0``, ``b.inner``): declaring it declares the block's layers and params under
that path (``b1.fc1.W``), and applying it inlines the block's ``forward`` with the
instance's names in scope, so autodiff and code generation never see blocks. A
``repeat`` is a layer of kind ``'repeat'`` whose parts are the instances ``NAME.0`` ...,
applied in order.

Names inside a block body resolve in an :class:`Env`: the block's arguments (numbers), its
own layers, params and fns (in any order, as methods of a class), then the model's dims,
user fns, built-ins, layer kinds and blocks. The model's inputs, params, values and layers
are not visible inside a block: a block is a self-contained template.

Block arguments are numbers. The sizes in a block (layer arguments, nested instances'
arguments, param shapes) may be integer expressions of them: :func:`fold` evaluates them
before a layer is declared, so errors point at the expression (``dense(n -> 2 * n)``).
Every error found while declaring or applying an instance gets a note naming the instance
and where it was declared or applied (innermost first).
"""

from __future__ import annotations

from dataclasses import dataclass

from gradc.errors import did_you_mean
from gradc.frontend import ast
from gradc.ir import layers
from gradc.ir.builtins import check_size
from gradc.ir.errors import LowerError, Poisoned
from gradc.ir.graph import Node

#: the most layers (block instances, repeats and the layers in them included) one model
#: may declare: nested repeats multiply.
MAX_INSTANCES = 10_000
#: the layer kinds a block may not be called (``repeat`` is the repetition form).
RESERVED = ("repeat",)


class Env(dict):
    """A lowering scope: name -> :class:`Node` (a value), number (a block argument),
    :class:`~gradc.ir.layers.Layer` or :class:`LocalFn`; ``inst`` is the block instance
    whose body it belongs to (None outside blocks)."""

    def __init__(self, items=(), inst: layers.Layer | None = None):
        super().__init__(items)
        self.inst = inst


@dataclass(frozen=True)
class LocalFn:
    """A fn declared in a block, bound to the environment of one instance."""

    decl: ast.FnDecl
    env: Env


def instance_of(scope) -> layers.Layer | None:
    """The block instance whose body ``scope`` belongs to, or None."""
    return getattr(scope, "inst", None)


# ----------------------------------------------------------------------------- declaration

def check_block(lw, b: ast.BlockDecl) -> None:
    """The checks a block's text allows before any instance: names declared twice, names
    of built-ins, a missing or argument-less ``forward``. Raises LowerError."""
    seen: dict[str, ast.Stmt] = {p.id: b for p in b.params}
    for item in b.body:
        lw.check_not_builtin(item.name, item, item.name_span)
        if item.name in seen:
            where = "an argument of the block" if seen[item.name] is b else \
                f"line {seen[item.name].span.line}"
            raise LowerError(f"'{item.name}' is already defined in block '{b.name}' "
                             f"({where})", item.name_span)
        seen[item.name] = item
    forward = seen.get("forward")
    if not isinstance(forward, ast.FnDecl):
        raise LowerError(f"block '{b.name}' has no 'fn forward(h)'", b.name_span,
                         "a block is applied through its forward, e.g. "
                         "'fn forward(h) = h + fc(h)'")
    if not forward.params:
        raise LowerError("forward takes the block's input: fn forward(h) ...",
                         forward.name_span)


def declare(lw, s: ast.LayerDecl, prefix: str = "", env: Env | None = None) -> layers.Layer:
    """Declare the layer of ``layer NAME = ...`` (a block instance, a repeat, a layer kind
    or a composition) under ``prefix`` (the enclosing instance's path and a dot)."""
    lw.instances += 1
    if lw.instances > MAX_INSTANCES:
        raise LowerError(f"this model declares more than {MAX_INSTANCES} layers",
                         s.value.span, "nested repeats multiply: repeat(b, 10) inside a "
                         "block repeated 10 times is 100 instances of b")
    value = fold(s.value, env) if env is not None else s.value
    s = ast.LayerDecl(s.span, s.name, s.name_span, value)
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
        if value.func.id in lw.bad_fns:
            raise Poisoned()  # the block's declaration already gave the error
        if value.func.id in lw.blocks:
            return _instantiate(lw, prefix + s.name, value, s)
        if value.func.id == "repeat":
            return _repeat(lw, prefix, s, env)
    return layers.declare(lw, s, prefix, env)


def _instantiate(lw, name: str, call: ast.Call, decl: ast.LayerDecl) -> layers.Layer:
    block = lw.blocks[call.func.id]
    if block.name in lw.block_stack:
        raise LowerError(f"block '{block.name}' contains an instance of itself", call.span,
                         "blocks may nest, but not recursively")
    inst = layers.Layer("block", name, _arguments(block, call), decl=decl)
    shown = ", ".join(f"{k}={v:g}" for k, v in inst.config.items())
    lw.g.instances[name] = f"{block.name}({shown})"
    env = Env(inst.config, inst=inst)
    lw.block_stack.append(block.name)
    try:
        for item in block.body:
            if isinstance(item, ast.LayerDecl):
                env[item.name] = inst.children[item.name] = declare(lw, item, name + ".", env)
            elif isinstance(item, ast.ParamDecl):
                env[item.name] = inst.params[item.name] = lw.declare_param(
                    item, f"{name}.{item.name}", env)
            else:
                env[item.name] = LocalFn(item, env)
    except LowerError as err:
        err.notes.append((f"in '{name}', an instance of block '{block.name}' declared here",
                          decl.span))
        raise
    finally:
        lw.block_stack.pop()
    inst.env, inst.block = env, block
    return inst


def _arguments(block: ast.BlockDecl, call: ast.Call) -> dict:
    """The block arguments of the instantiation ``call`` (already folded): name -> number."""
    names = [p.id for p in block.params]
    if len(call.args) > len(names):
        raise LowerError(f"block '{block.name}' takes {len(names)} argument(s), got "
                         f"{len(call.args)}", call.span,
                         f"the form is {block.name}({', '.join(names)})")
    given = dict(zip(names, call.args))
    for kw in call.kwargs:
        if kw.name not in names:
            raise LowerError(f"block '{block.name}' has no argument '{kw.name}'", kw.span,
                             did_you_mean(kw.name, names)
                             or f"its arguments: {', '.join(names) or 'none'}")
        if kw.name in given:
            raise LowerError(f"{block.name}(): '{kw.name}' is given twice", kw.span)
        given[kw.name] = kw.value
    missing = [n for n in names if n not in given]
    if missing:
        raise LowerError(f"{block.name}() is missing its argument '{missing[0]}'", call.span,
                         f"the form is {block.name}({', '.join(names)})")
    out = {}
    for n in names:
        e = given[n]
        if not isinstance(e, ast.Num):
            raise LowerError(f"{block.name}(): argument '{n}' must be a number (an integer "
                             "expression of the enclosing block's arguments)", e.span)
        out[n] = int(e.value) if e.is_int else e.value
    return out


def _repeat(lw, prefix: str, s: ast.LayerDecl, env: Env | None) -> layers.Layer:
    call = s.value
    if len(call.args) != 2 or call.kwargs or not isinstance(call.args[0], ast.Call):
        raise LowerError("repeat takes a layer call and a count: repeat(res(32), 4)",
                         call.span)
    what, count = call.args
    if not (isinstance(count, ast.Num) and count.is_int and count.value > 0):
        raise LowerError("repeat(): the count must be a positive integer", count.span)
    n = check_size(int(count.value), count.span, "repeat(): the count")
    name = prefix + s.name
    lw.g.instances[name] = f"repeat({_text(what)}, {n})"
    parts = [declare(lw, ast.LayerDecl(s.span, str(i), s.name_span, what), name + ".", env)
             for i in range(n)]
    return layers.Layer("repeat", name, {"count": n}, parts=parts, decl=s,
                        children={str(i): p for i, p in enumerate(parts)})


def _text(e) -> str:
    """A layer call as text, its folded sizes shown as numbers: ``res(32)``,
    ``dense(4 -> 8)``, ``res(n=32)``."""
    if isinstance(e, ast.Num):
        return f"{e.value:g}"
    if isinstance(e, ast.Name):
        return e.id
    if isinstance(e, ast.Arrow):
        return f"{_text(e.lhs)} -> {_text(e.rhs)}"
    if isinstance(e, ast.Call):
        args = [_text(a) for a in e.args] + [f"{k.name}={_text(k.value)}" for k in e.kwargs]
        return f"{_text(e.func)}({', '.join(args)})"
    return "..."


# ----------------------------------------------------------------------------- sizes

_ARITH = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
          "/": lambda a, b: a / b, "^": lambda a, b: a ** b}


def fold(e, env) -> ast.Expr:
    """``e`` with every sub-expression made of numbers and the block arguments in ``env``
    replaced by its value (a :class:`~gradc.frontend.ast.Num` keeping the span). ``/`` of
    integers that divide exactly is an integer; anything else is left as it is."""
    sizes = {k: v for k, v in (env or {}).items()
             if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if not sizes:
        return e
    return _fold(e, sizes)


def _fold(e, sizes: dict):
    if isinstance(e, ast.Name) and e.id in sizes:
        v = sizes[e.id]
        return ast.Num(e.span, float(v), isinstance(v, int))
    if isinstance(e, ast.BinOp):
        a, b = _fold(e.left, sizes), _fold(e.right, sizes)
        if isinstance(a, ast.Num) and isinstance(b, ast.Num) and e.op in _ARITH:
            return _arith(e, a, b)
        return ast.BinOp(e.span, e.op, a, b)
    if isinstance(e, ast.UnaryOp):
        x = _fold(e.operand, sizes)
        if isinstance(x, ast.Num):
            return ast.Num(e.span, -x.value if e.op == "-" else x.value, x.is_int)
        return ast.UnaryOp(e.span, e.op, x)
    if isinstance(e, ast.Arrow):
        return ast.Arrow(e.span, _fold(e.lhs, sizes), _fold(e.rhs, sizes))
    if isinstance(e, ast.Call):
        return ast.Call(e.span, e.func, tuple(_fold(a, sizes) for a in e.args),
                        tuple(ast.Keyword(k.name, _fold(k.value, sizes), k.span)
                              for k in e.kwargs))
    if isinstance(e, ast.Compose):
        return ast.Compose(e.span, tuple(_fold(p, sizes) for p in e.parts))
    return e


def _arith(e: ast.BinOp, a: ast.Num, b: ast.Num) -> ast.Num:
    if e.op == "/" and b.value == 0:
        raise LowerError("division by zero in a size", e.span)
    try:
        value = float(_ARITH[e.op](a.value, b.value))
    except OverflowError:
        raise LowerError("this size is too large", e.span) from None
    return ast.Num(e.span, value, a.is_int and b.is_int and value.is_integer())


# ----------------------------------------------------------------------------- use

def layer_ref(lw, e: ast.Expr, scope) -> layers.Layer | None:
    """The layer that the name or attribute path ``e`` denotes (``b1``, ``tower.0.fc1``,
    a layer of the enclosing block), or None when ``e`` names no layer."""
    if isinstance(e, ast.Name):
        if e.id in scope:
            found = scope[e.id]
            return found if isinstance(found, layers.Layer) else None
        return lw.layers.get(e.id) if instance_of(scope) is None else None
    if isinstance(e, ast.Attr):
        owner = layer_ref(lw, e.obj, scope)
        if owner is None or e.attr in owner.children:
            return owner.children[e.attr] if owner is not None else None
        if e.attr in owner.params:
            raise LowerError(f"'{owner.name}.{e.attr}' is a param: it has no attributes",
                             e.span)
        names = [*owner.children, *owner.params]
        raise LowerError(f"layer '{owner.name}' has no layer '{e.attr}'", e.span,
                         did_you_mean(e.attr, names)
                         or f"it has: {', '.join(names) or 'nothing'}")
    return None


def apply(lw, inst: layers.Layer, x: Node, call: ast.Expr):
    """Apply the block instance ``inst`` to ``x`` at ``call``: a lowering step (see
    :func:`gradc.ir.lower.run_steps`) that inlines the block's forward."""
    forward: LocalFn = inst.env["forward"]
    if len(forward.decl.params) != 1:
        raise LowerError(f"'{inst.name}' is applied to one value, but forward of block "
                         f"'{inst.block.name}' takes {len(forward.decl.params)}",
                         call.span)
    try:
        return (yield from lw.inline(forward.decl, [x], (), call, {}, forward.env))
    except LowerError as err:
        err.notes.append((f"in '{inst.name}', an instance of block '{inst.block.name}' "
                          f"(declared at line {inst.decl.span.line}), applied here",
                          call.span))
        raise
