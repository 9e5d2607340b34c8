"""AST -> graph: names, declarations, user functions, operators and calls.

:func:`lower` is the entry. It reports every independent error of the file at once: an
error inside a statement is recorded, the statement's name is bound to a poisoned value,
and later statements that use it are skipped silently (no cascades).
"""

from __future__ import annotations

from gradc.entries import argument_names
from gradc.errors import Collector, did_you_mean
from gradc.frontend import ast
from gradc.ir import blocks, build, derivatives, expansion, layers, recurrence
from gradc.ir.builtins import (BUILTINS, call_elementwise, check_numel, check_size, index,
                                literal)
from gradc.ir.errors import LowerError, Poisoned
from gradc.dtypes import FLOAT, INT
from gradc.ir.graph import Graph, Node
from gradc.ir.ops import COMPARISONS, ELEMENTWISE, OPERATORS
from gradc.ir.shapes import as_dim, fmt_shape, free_dims
from gradc.source import Source

INITS = {"zeros": 0, "ones": 0, "glorot_uniform": 0, "he_normal": 0,
         "constant": 1, "normal": 1, "uniform": 2}
NOT_YET = "is not supported yet"
#: argument names of the API functions (SPEC §2): an input may not take one of them.
RESERVED_INPUTS = argument_names()
POISON = object()
#: the special forms: calls lowered by a function of their own (``grad``, ``scan``), a
#: generator ``lower(lowerer, args, kwargs, call, scope)`` like :meth:`_Lowerer._call`
FORMS = {derivatives.GRAD: derivatives.lower_grad, **recurrence.FORMS}


def lower(module: ast.Module, source: Source, dtype: str | None = None,
          wrt: tuple[str, ...] = (), mode: str = "train") -> tuple[Graph, list]:
    """Lower a parsed module to a graph.

    Args:
        module: the parsed file.
        source: its text, for error messages.
        dtype: if given ('f32'/'f64'), overrides every float dtype of the model.
        wrt: float inputs to differentiate besides the params.
        mode: 'train' or 'eval' (batchnorm and dropout differ).

    Returns:
        The graph and the list of warnings (:class:`gradc.errors.SourceError`).

    Raises:
        gradc.errors.ErrorGroup: every user error found.
    """
    lw = _Lowerer(module, source, dtype)
    lw.mode = lw.g.mode = mode
    lw.run(wrt)
    return lw.g, lw.c.warnings


class _Lowerer:
    def __init__(self, module: ast.Module, source: Source, dtype: str | None):
        self.module, self.c = module, Collector(source)
        name = next((s.name for s in module.stmts if isinstance(s, ast.ModelDecl)), None)
        stem = source.filename.rsplit("/", 1)[-1].removesuffix(".grad") or "model"
        self.g = Graph(name or stem, dtype or self._float_dtype(module))
        self.values: dict[str, object] = {}
        self.defined_at: dict[str, ast.Stmt] = {}
        self.fns: dict[str, ast.FnDecl] = {}
        self.bad_fns: set[str] = set()  # fns whose declaration failed (calls are skipped)
        self.dims: dict[str, int | None] = {}
        self.used: set[str] = set()
        self.stack: list[int] = []  # id() of the fns being inlined (no recursion)
        self.layers: dict[str, layers.Layer] = {}
        self.blocks: dict[str, ast.BlockDecl] = {}
        self.block_stack: list[str] = []  # the blocks being instantiated, outermost first
        self.instances = 0  # layers declared so far (see blocks.MAX_INSTANCES)
        self.bn_buffers: dict[str, tuple] = {}
        self.mode = "train"
        self.root_stmts: list[tuple[ast.Stmt, Node]] = []  # outputs and the loss

    @staticmethod
    def _float_dtype(module: ast.Module) -> str:
        types = [s.type.dtype for s in module.stmts if isinstance(s, (ast.InputDecl,
                 ast.ParamDecl)) and s.type.dtype in FLOAT]
        return "f64" if types and all(t == "f64" for t in types) else "f32"

    # ------------------------------------------------------------------ statements
    def run(self, wrt: tuple[str, ...]) -> None:
        for stmt in self.module.stmts:
            if isinstance(stmt, (ast.FnDecl, ast.BlockDecl)):
                try:
                    self._declare(stmt.name, stmt, stmt.name_span)
                    if isinstance(stmt, ast.BlockDecl):
                        blocks.check_block(self, stmt)
                        self.blocks[stmt.name] = stmt
                    else:
                        self.fns[stmt.name] = stmt
                except LowerError as e:
                    self.c.error(e.message, e.span, e.hint, tuple(e.notes))
                    self.bad_fns.add(stmt.name)
            elif isinstance(stmt, ast.DimDecl):
                self.dims[stmt.name] = stmt.value
                if stmt.value is not None:
                    try:
                        check_size(stmt.value, stmt.span, f"dim {stmt.name}")
                    except LowerError as e:
                        self.c.error(e.message, e.span, e.hint, tuple(e.notes))
                        self.dims[stmt.name] = None  # no cascade: a call-time dim
        self.sizes = expansion.Sizes(self.fns, self.module)
        for block in list(self.blocks.values()):
            local = {f.name: f for f in block.body if isinstance(f, ast.FnDecl)}
            sizes = expansion.Sizes({**self.fns, **local}, ast.Module(block.body))
            try:
                for f in local.values():
                    self._check_size(expansion.fn_body(f), sizes)
            except LowerError as e:
                self.c.error(e.message, e.span, e.hint)
                self.bad_fns.add(block.name)
        for stmt in self.module.stmts:
            try:
                self._stmt(stmt)
            except LowerError as e:
                self.c.error(e.message, e.span, e.hint, tuple(e.notes))
                self._poison(stmt)
            except Poisoned:
                self._poison(stmt)
        self._finish(wrt)
        self.c.check()

    def _poison(self, stmt: ast.Stmt) -> None:
        name = getattr(stmt, "name", None)
        if name and not isinstance(stmt, (ast.FnDecl, ast.BlockDecl, ast.ModelDecl,
                                          ast.DimDecl)):
            self.values[name] = POISON

    def _declare(self, name: str, stmt: ast.Stmt, span) -> None:
        """Bind ``name`` to the statement ``stmt``, or raise if it may not be (re)bound.

        An assignment may rebind a name that an earlier assignment bound (a new SSA value,
        as in ``h = relu(h @ W2)``); nothing may rebind an input, param, layer, fn or
        output, or take the name of a built-in."""
        self.check_not_builtin(name, stmt, span)
        prev = self.defined_at.get(name)
        if prev is None and name in self.fns and not isinstance(stmt, ast.FnDecl):
            prev = self.fns[name]
        if prev is not None and not (isinstance(stmt, ast.Assign)
                                     and isinstance(prev, ast.Assign)):
            what = {ast.InputDecl: "an input", ast.ParamDecl: "a param",
                    ast.LayerDecl: "a layer", ast.FnDecl: "a fn", ast.BlockDecl: "a block",
                    ast.OutputDecl: "an output", ast.Assign: "a value"}[type(prev)]
            hint = ("only a name bound by '=' can be bound again; this needs another name"
                    if isinstance(stmt, ast.Assign) else
                    f"'output {name}' outputs the value of '{name}'; an output with '=' "
                    "needs a new name" if isinstance(stmt, ast.OutputDecl) else None)
            raise LowerError(f"'{name}' is already defined (line {prev.span.line}, "
                             f"{what})", span, hint)
        self.defined_at[name] = stmt

    def check_not_builtin(self, name: str, stmt: ast.Stmt, span) -> None:
        """Raise if ``stmt`` may not take ``name``: a built-in function's name, or for a fn
        or block a built-in layer kind's (or ``repeat``)."""
        if name in BUILTINS or name in ELEMENTWISE or name in FORMS:
            kind = "a built-in function"
        elif isinstance(stmt, (ast.FnDecl, ast.BlockDecl)) and (
                name in layers.LAYERS or name in blocks.RESERVED):
            kind = "a built-in layer kind"
        else:
            return
        raise LowerError(f"'{name}' is already defined ({kind})", span,
                         f"rename it, e.g. 'my_{name}'")

    def _check_size(self, e: ast.Expr, sizes: expansion.Sizes | None = None) -> None:
        """Refuse an expression that inlining fns would blow up (before lowering it);
        ``sizes`` counts with a block's own fns (default: the model's)."""
        sizes = sizes or self.sizes
        size = sizes.of_expr(e)
        if size > expansion.MAX_EXPANDED:
            where, hint = sizes.culprit(e)
            shown = f"more than {100 * expansion.MAX_EXPANDED}" \
                if size >= 100 * expansion.MAX_EXPANDED else str(size)
            raise LowerError(f"this expression expands to {shown} operations once its fn "
                             f"calls are inlined; the limit is {expansion.MAX_EXPANDED}",
                             where.span, hint)

    def _stmt(self, s: ast.Stmt) -> None:
        g = self.g
        value = getattr(s, "value", None)
        if isinstance(value, ast.Expr) and not isinstance(s, ast.LayerDecl):
            self._check_size(value)
        if isinstance(s, ast.InputDecl):
            self._declare(s.name, s, s.name_span)
            if s.name in RESERVED_INPUTS:
                raise LowerError(f"input name '{s.name}' is reserved: the API functions take "
                                 f"an argument of that name", s.name_span,
                                 f"rename it, e.g. '{s.name}_'")
            dtype, shape = self._type(s.type)
            self.values[s.name] = g.add("input", (), shape, dtype, s.name_span, s.name, name=s.name)
            g.inputs[s.name] = self.values[s.name]
        elif isinstance(s, ast.ParamDecl):
            self._declare(s.name, s, s.name_span)
            self.values[s.name] = self.declare_param(s, s.name, {})
        elif isinstance(s, ast.Assign):
            self._declare(s.name, s, s.name_span)
            self.values[s.name] = self._labelled(self.expr(s.value), s.name)
        elif isinstance(s, ast.OutputDecl):
            self._output(s)
        elif isinstance(s, ast.LossDecl):
            if g.loss is not None:
                raise LowerError("a model has at most one loss", s.span)
            node = self.expr(s.value)
            if node.rank:
                raise LowerError(f"loss must be a scalar, but this expression has shape "
                                 f"{fmt_shape(node.shape)}", s.value.span,
                                 "reduce it, e.g. with mean(...) or sum(...)")
            self._float_value(node, s.value.span)
            g.loss = node
            self.root_stmts.append((s, node))
        elif isinstance(s, ast.LayerDecl):
            self._declare(s.name, s, s.name_span)
            self.layers[s.name] = blocks.declare(self, s)

    def declare_param(self, s: ast.ParamDecl, name: str, sizes: dict) -> Node:
        """Add the param of ``s`` to the graph as ``name``; its shape may use the numbers
        in ``sizes`` (the arguments of the enclosing block)."""
        dtype, shape = self._type(s.type, sizes)
        if dtype in INT:
            raise LowerError(f"param '{s.name}' is {dtype}: params must be f32 or f64 "
                             "(no gradient through an integer value)", s.type.span)
        free = sorted({x.name for d in shape for x in d.free_symbols})
        if free:
            raise LowerError(f"param '{s.name}' has the call-time dim {free[0]}: a param "
                             f"with a call-time dim {NOT_YET} (its shape must be known "
                             "when the model compiles)", s.type.span,
                             f"fix it with 'dim {free[0]} = N'")
        init = self._init(s, len(shape))
        node = self.g.add("param", (), shape, dtype, s.name_span, name, name=name)
        self.g.params[name], self.g.param_inits[name] = node, init
        return node

    def _labelled(self, node: Node, label: str) -> Node:
        if node.label is None and node.op not in ("input", "param"):
            node.label = label
        return node

    def _output(self, s: ast.OutputDecl) -> None:
        if s.name in self.g.outputs:
            raise LowerError(f"output '{s.name}' is already defined", s.name_span)
        if s.value is None:
            node = self._name(ast.Name(s.name_span, s.name), {})
        else:
            self._declare(s.name, s, s.name_span)
            node = self.values[s.name] = self._labelled(self.expr(s.value), s.name)
        self.g.outputs[s.name] = node
        self.root_stmts.append((s, node))

    def _dims_needed(self, roots: list[Node]) -> tuple[set[str], set[str]]:
        """(dims whose value ``roots`` need, dims their model inputs bind by shape)."""
        nodes = self.g.topo(roots)
        inputs = {n.id for n in self.g.inputs.values()}
        needed = {n.attrs["name"] for n in nodes if n.op == "dim"}
        needed |= {d for n in nodes for d in free_dims(n.shape)}
        bound = {d for n in nodes if n.id in inputs for d in free_dims(n.shape)}
        return needed, bound

    def _check_dims_bound(self) -> None:
        """A call-time dim is known only from the shape of an input: refuse an output or
        loss that uses the value of a dim (``sum(h) / B``) none of its inputs binds."""
        outputs = [(s, n) for s, n in self.root_stmts if isinstance(s, ast.OutputDecl)]
        _, bound_by_outputs = self._dims_needed([n for _, n in outputs])
        for s, node in self.root_stmts:
            needed, bound = self._dims_needed([node])
            if isinstance(s, ast.OutputDecl):
                bound = bound_by_outputs
            missing = sorted(needed - bound)
            if not missing:
                continue
            dim = missing[0]
            what = "the loss" if isinstance(s, ast.LossDecl) else f"output '{s.name}'"
            whose = "it depends on" if isinstance(s, ast.LossDecl) else "the outputs depend on"
            span = _find_name(s.value, dim) if s.value is not None else None
            self.c.error(f"{what} needs the call-time dim {dim}, but no input {whose} "
                         f"has {dim} in its shape, so {dim} is unknown when it is computed",
                         span or s.span, f"fix it with 'dim {dim} = N', or compute with an "
                         f"input whose shape has {dim}")

    def _finish(self, wrt: tuple[str, ...]) -> None:
        self._check_dims_bound()
        for name in wrt:
            node = self.g.inputs.get(name)
            if node is None:
                self.c.error(f"wrt: '{name}' is not an input of the model", None,
                             did_you_mean(name, self.g.inputs))
            elif not node.is_float:
                self.c.error(f"wrt: input '{name}' is {node.dtype}: no gradient through "
                             "an integer value", node.span)
        for name, node in self.g.inputs.items():
            if name not in self.used:
                self.c.warn(f"input '{name}' is never used", node.span)
        if not self.g.outputs and self.g.loss is None and not self.c.errors:
            self.c.warn("the model has no output and no loss: it computes nothing", None,
                        "add 'output NAME = EXPR' or 'loss = EXPR'")

    # ------------------------------------------------------------------ declarations
    def _type(self, t: ast.TypeExpr, sizes: dict | None = None) -> tuple[str, tuple]:
        dtype = t.dtype
        if dtype in FLOAT:
            dtype = self.g.float_dtype
        shape = []
        for d in t.shape or ():
            size = (sizes or {}).get(d.value, d.value)
            if isinstance(size, int) and not isinstance(size, bool):
                shape.append(as_dim(check_size(size, d.span)))
            elif isinstance(size, (float, layers.Layer, blocks.LocalFn, Node)):
                raise LowerError(f"'{d.value}' is not an integer size here", d.span)
            elif self.dims.get(d.value) is not None:
                shape.append(as_dim(self.dims[d.value]))
            elif d.value in self.dims or d.value[:1].isupper():
                shape.append(as_dim(d.value))
            else:
                raise LowerError(f"unknown dim '{d.value}'", d.span,
                                 f"declare it with 'dim {d.value}' or capitalise it")
        check_numel(shape, t.span, f"the type {t.dtype}{fmt_shape(shape)}")
        return dtype, tuple(shape)

    def _init(self, s: ast.ParamDecl, rank: int) -> tuple:
        if s.init is None:
            return ("glorot_uniform",) if rank >= 2 else ("zeros",)
        call = s.init if isinstance(s.init, ast.Call) else None
        head = call.func if call else s.init
        if not isinstance(head, ast.Name) or head.id not in INITS:
            name = getattr(head, "id", "")
            raise LowerError("unknown initialiser" + (f" '{name}'" if name else ""), head.span,
                             did_you_mean(name, INITS) or "one of: " + ", ".join(INITS))
        args = call.args if call else ()
        if len(args) != INITS[head.id] or (call and call.kwargs):
            raise LowerError(f"{head.id} takes {INITS[head.id]} number argument(s), "
                             f"got {len(args)}", s.init.span)
        vals = tuple(float(literal(a, "number")) for a in args)
        if head.id in ("glorot_uniform", "he_normal") and rank < 2:
            raise LowerError(f"{head.id} needs a param of rank >= 2", s.init.span)
        return (head.id, *vals)

    # ------------------------------------------------------------------ expressions
    def expr(self, e: ast.Expr, scope: dict | None = None) -> Node:
        """Lower one expression in ``scope`` (a user fn's arguments) over the globals."""
        return run_steps(self._expr(e, scope or {}))

    def call(self, func: ast.Expr, args: list, kwargs, call: ast.Expr, scope: dict) -> Node:
        """Lower a call; ``args`` are AST expressions or already-lowered nodes (pipes)."""
        return run_steps(self._call(func, args, kwargs, call, scope))

    # The lowering of expressions is written as generators run by :func:`run_steps`: where
    # a recursive version would call ``self.expr(sub)``, a step yields ``self._expr(sub)``
    # and receives the node. Nesting (tanh(tanh(...)), fn chains 600 deep) then grows a
    # list, not Python's stack.
    def _expr(self, e: ast.Expr, scope: dict):
        if isinstance(e, ast.Num):
            return self.g.const(e.value)
        if isinstance(e, ast.Name):
            return self._name(e, scope)
        if isinstance(e, ast.UnaryOp):
            x = self._float_value((yield self._expr(e.operand, scope)), e.operand.span)
            return x if e.op == "+" else build.ew(self.g, lambda a: -a, x, span=e.span)
        if isinstance(e, ast.BinOp):
            return (yield from self._binop(e, scope))
        if isinstance(e, ast.Call):
            return (yield self._call(e.func, list(e.args), e.kwargs, e, scope))
        if isinstance(e, ast.Pipe):
            return (yield from self._pipe(e, scope))
        if isinstance(e, ast.Attr):
            return (yield from self._attr(e, scope))
        if isinstance(e, ast.Index):
            return self._wrap(e, index, (yield self._expr(e.obj, scope)), e)
        if isinstance(e, ast.Compose):
            raise LowerError("a composition is applied with |> or declared as a layer: "
                             "x |> a >> b, or layer net = a >> b", e.span)
        if isinstance(e, (ast.Arrow, ast.Slice)):
            raise LowerError("'->' belongs in a layer call such as dense(3 -> 4)"
                             if isinstance(e, ast.Arrow) else "a slice belongs inside [...]",
                             e.span)
        what = {ast.Str: "a string", ast.Bool: "a boolean", ast.TupleLit: "a tuple",
                ast.ListLit: "a list"}.get(type(e), "this")
        raise LowerError(f"{what} is not a tensor value here", e.span)

    def _attr(self, e: ast.Attr, scope: dict):
        if e.attr == "T":
            return self._wrap(e, build.transpose, (yield self._expr(e.obj, scope)))
        layer = blocks.layer_ref(self, e.obj, scope)
        if layer is not None:
            if e.attr in layer.params:
                return layer.params[e.attr]
            if e.attr in layer.children:
                raise LowerError(f"'{layer.name}.{e.attr}' is a layer, not a param", e.span,
                                 f"its params: {', '.join(layer.children[e.attr].params)}")
            names = [*layer.params, *layer.children]
            raise LowerError(f"layer '{layer.name}' has no param '{e.attr}'", e.span,
                             did_you_mean(e.attr, names) or
                             f"its params: {', '.join(names) or 'none'}")
        raise LowerError(f"unknown attribute '.{e.attr}': only .T and a layer's params "
                         "(fc1.W) are attributes", e.span)

    def _wrap(self, e: ast.Expr, fn, *args, **kw) -> Node:
        try:
            return fn(self.g, *args, **kw)
        except build.ShapeMismatch as err:
            raise LowerError(str(err), e.span) from None

    def _float_value(self, node: Node, span) -> Node:
        if not node.is_float:
            raise LowerError(f"an integer value ({node.dtype}) cannot be used in arithmetic: "
                             "integers are labels or indices and carry no gradient", span,
                             "declare the input f32 to use it as data")
        return node

    def _name(self, e: ast.Name, scope: dict) -> Node:
        if e.id in scope:
            found = scope[e.id]
            if isinstance(found, Node):
                return found
            if isinstance(found, (int, float)):
                return self.g.const(found)  # a block argument
            what = "a layer: apply it" if isinstance(found, layers.Layer) else \
                "a function: call it"
            raise LowerError(f"'{e.id}' is {what}, e.g. {e.id}(x)", e.span)
        inst = blocks.instance_of(scope)
        if inst is not None and (e.id in self.values or e.id in self.layers):
            raise LowerError(f"'{e.id}' belongs to the model, and block "
                             f"'{inst.block.name}' cannot see it", e.span,
                             "a block sees its arguments, its own layers, params and fns, "
                             "and the values its fns are given")
        if e.id in self.values:
            v = self.values[e.id]
            if v is POISON:
                raise Poisoned()
            if e.id in self.g.inputs:
                self.used.add(e.id)
            return v
        if e.id in self.dims or (e.id[:1].isupper() and self._dim_in_use(e.id)):
            fixed = self.dims.get(e.id)
            if fixed is not None:
                return self.g.const(fixed)
            return self.g.add("dim", (), (), self.g.float_dtype, name=e.id)
        if e.id in self.layers:
            raise LowerError(f"'{e.id}' is a layer: apply it, e.g. {e.id}(x) or x |> {e.id}",
                             e.span)
        if e.id in self.fns or e.id in ELEMENTWISE or e.id in BUILTINS or e.id in FORMS:
            raise LowerError(f"'{e.id}' is a function: call it, e.g. {e.id}(x)", e.span)
        known = list(self.values) + list(scope) + list(self.fns) + list(ELEMENTWISE) \
            + list(BUILTINS) + list(FORMS)
        raise LowerError(f"unknown name '{e.id}'", e.span, did_you_mean(e.id, known))

    def _dim_in_use(self, name: str) -> bool:
        return any(name in {s.name for d in n.shape for s in d.free_symbols}
                   for n in list(self.g.inputs.values()) + list(self.g.params.values()))

    def _binop(self, e: ast.BinOp, scope: dict):
        a = self._float_value((yield self._expr(e.left, scope)), e.left.span)
        b = self._float_value((yield self._expr(e.right, scope)), e.right.span)
        if e.op == "@":
            return self._wrap(e, build.matmul, a, b)
        what = "comparison" if e.op in COMPARISONS else f"'{e.op}'"
        return self._wrap(e, build.ew, OPERATORS[e.op], a, b, what=what, span=e.span)

    def _pipe(self, e: ast.Pipe, scope: dict):
        value, func = e.value, e.func
        parts = func.parts if isinstance(func, ast.Compose) else (func,)
        node = yield self._expr(value, scope)
        for part in parts:
            if isinstance(part, ast.Call):
                node = yield self._call(part.func, [node, *part.args], part.kwargs, part, scope)
            else:
                node = yield self._call(part, [node], (), part, scope)
        return node

    def _call(self, func: ast.Expr, args: list, kwargs, call: ast.Expr, scope: dict):
        if not isinstance(func, ast.Name):
            raise LowerError("only named functions can be called", func.span)
        name = func.id
        local = scope.get(name)
        if isinstance(local, blocks.LocalFn):
            return (yield from self.inline(local.decl, args, kwargs, call, scope, local.env))
        if self.values.get(name) is POISON or (name in self.bad_fns and name not in self.fns):
            raise Poisoned()  # its statement (or its fn) already gave the error
        layer = local if isinstance(local, layers.Layer) else \
            self.layers.get(name) if blocks.instance_of(scope) is None else None
        if layer is not None:
            if len(args) != 1 or kwargs:
                raise LowerError(f"layer '{name}' takes one input, e.g. {name}(x)", call.span)
            x = args[0] if isinstance(args[0], Node) else (yield self._expr(args[0], scope))
            return (yield self.apply_layer(layer, x, call, scope))
        if name in layers.LAYERS or name in self.blocks:
            return (yield from self._inline_layer(func, args, kwargs, call, scope))
        if name in self.fns:
            return (yield from self.inline(self.fns[name], args, kwargs, call, scope))
        if name in FORMS:
            return (yield from FORMS[name](self, args, kwargs, call, scope))
        if name in BUILTINS or name in ELEMENTWISE:
            lowered = []
            for a in args:
                lowered.append(a if isinstance(a, (Node, ast.ListLit, ast.TupleLit))
                               else (yield self._expr(a, scope)))
            try:
                if name in BUILTINS and not (name in ELEMENTWISE and len(args) == 2):
                    return BUILTINS[name](self.g, name, lowered, kwargs, call)
                return call_elementwise(self.g, name, lowered, kwargs, call)
            except build.ShapeMismatch as err:
                raise LowerError(str(err), call.span) from None
        if name in self.values or name in scope:
            raise LowerError(f"'{name}' is a value, not a function", func.span)
        known = list(self.fns) + list(ELEMENTWISE) + list(BUILTINS) + list(FORMS) \
            + list(self.layers) + list(layers.LAYERS)
        raise LowerError(f"unknown function '{name}'", func.span, did_you_mean(name, known))

    def apply_layer(self, layer: layers.Layer, x: Node, call: ast.Expr, scope: dict):
        """Apply ``layer`` to ``x`` at ``call``: a lowering step (see :func:`run_steps`)."""
        if layer.kind == "block":
            return blocks.apply(self, layer, x, call)
        return layers.apply(self, layer, x, call, scope)

    def _inline_layer(self, func: ast.Name, args: list, kwargs, call: ast.Expr, scope: dict):
        """A layer kind written inline, applied to its first argument (the piped value):
        ``h |> maxpool2d(2)`` is ``maxpool2d(h, 2)``."""
        if func.id in self.blocks:
            raise LowerError(f"{func.id} is a block: declare an instance first, e.g. "
                             f"layer b1 = {func.id}(...)", func.span,
                             "each instance owns its params")
        if not args or isinstance(args[0], ast.Num):
            raise LowerError(f"{func.id}(...) written inline is applied to a value: "
                             f"x |> {func.id}(...) or {func.id}(x, ...)", call.span)
        x = args[0] if isinstance(args[0], Node) else (yield self._expr(args[0], scope))
        inst = blocks.instance_of(scope)
        v = blocks.fold(ast.Call(call.span, func, tuple(args[1:]), tuple(kwargs)), scope)
        layer = layers.inline(self, v, f"{inst.name}." if inst is not None else "")
        return (yield self.apply_layer(layer, x, call, scope))

    def inline(self, fn: ast.FnDecl, args: list, kwargs, call: ast.Expr, scope: dict,
               outer: dict | None = None):
        """Inline a call of the user fn ``fn`` (a lowering step): ``args`` are lowered in
        the caller's ``scope``, the body in ``outer`` (the block environment of a fn
        declared in a block; None for a model fn), the fn's arguments and its local
        assignments, in order."""
        if kwargs:
            raise LowerError(f"{fn.name}() takes no keyword arguments", kwargs[0].span)
        if len(args) != len(fn.params):
            raise LowerError(f"{fn.name}() takes {len(fn.params)} argument(s), got {len(args)}",
                             call.span)
        if id(fn) in self.stack:
            raise LowerError(f"'{fn.name}' calls itself (recursion is not allowed)", call.span)
        nodes = []
        for a in args:
            nodes.append(a if isinstance(a, Node) else (yield self._expr(a, scope)))
        self.stack.append(id(fn))
        inner = blocks.Env(outer or {}, inst=blocks.instance_of(outer))
        inner.update((p.id, n) for p, n in zip(fn.params, nodes))
        try:
            for let in fn.lets:
                self.check_not_builtin(let.name, let, let.name_span)
                inner[let.name] = yield self._expr(let.value, inner)
            return (yield self._expr(fn.body, inner))
        except LowerError as err:
            if err.span is not None and fn.span.line <= err.span.line <= fn.span.end_line \
                    and not err.in_fn and outer is None:
                err.hint = err.hint or f"in {fn.name}(), called at line {call.span.line}"
                err.in_fn = True
            raise
        finally:
            self.stack.pop()



def _find_name(e: ast.Expr, name: str):
    """The span of the first use of ``name`` in ``e``, or None."""
    todo = [e]
    while todo:
        node = todo.pop(0)
        if isinstance(node, ast.Name) and node.id == name:
            return node.span
        todo += expansion.children(node)
    return None


def run_steps(gen):
    """Run a lowering generator to its value without recursion.

    A generator yields another generator whose value it needs; that one runs next (on an
    explicit stack) and its value, or its exception, is sent back into the one that asked
    for it. The depth of the model's nesting is the length of a list, not of Python's stack.
    """
    stack, value, error = [gen], None, None
    while stack:
        top = stack[-1]
        try:
            if error is not None:
                err, error = error, None
                step = top.throw(err)
            else:
                step = top.send(value)
        except StopIteration as stop:
            stack.pop()
            value = stop.value
            continue
        except BaseException as err:  # noqa: BLE001 - handed to the generator that asked
            stack.pop()
            if not stack:
                raise
            error = err
            continue
        stack.append(step)
        value = None
    return value
