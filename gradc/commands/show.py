"""``gradc show MODEL.grad``: the model's interface, its graph and its derivative rules.

Three sections (SPEC §3): params (dtype, shape, initialiser), inputs, outputs and the loss
(and each ``grad`` of the model: the mode chosen for it, forward or reverse, why, and the
symbolic form of an elementwise one);
the forward graph, one node per line in topological order (``--backward`` adds the graph of
``loss_and_grad``); the derivative rules: for each user ``fn`` with an elementwise body, its
forward expression and partial derivatives as SymPy differentiates them, and for each
elementwise built-in the model calls, its derivative rule (``out`` stands for the op's own
value, which the backward kernel reads instead of recomputing it).

Nothing is compiled to machine code: the model is only parsed and lowered.
"""

from __future__ import annotations

import dataclasses

import sympy

from gradc.autodiff.derive import OUT, partials
from gradc.commands import EXIT_OK, front_graph
from gradc.errors import GradcError
from gradc.frontend import ast
from gradc.frontend.parser import parse
from gradc.ir import sym
from gradc.ir.builtins import literal
from gradc.ir.errors import LowerError
from gradc.ir.graph import Graph
from gradc.ir.lower import lower
from gradc.ir.ops import ARGS, ELEMENTWISE
from gradc.ir.printer import format_expr, format_graph, format_type
from gradc.ir.shapes import numel
from gradc.source import Source

#: display names of a built-in's arguments, by arity.
ARG_NAMES = {1: ("x",), 2: ("a", "b"), 3: ("c", "a", "b")}


def register(subparsers) -> None:
    """Add the ``show`` subparser."""
    p = subparsers.add_parser(
        "show", help="print params, shapes, the graph and the derived derivative rules",
        description="Print a model's params (dtype, shape, initialiser), inputs, outputs "
                    "and loss; its forward graph in topological order; and the derivative "
                    "rules SymPy derives for its elementwise functions.")
    p.add_argument("model", metavar="MODEL.grad", help="the model file")
    p.add_argument("--backward", action="store_true",
                   help="also print the graph of loss_and_grad (forward and backward)")
    p.add_argument("--dtype", choices=("f32", "f64"), help="override every float dtype")
    p.set_defaults(run=run)


def run(args) -> int:
    """Print the three sections for ``args.model``."""
    graph, source = front_graph(args.model, dtype=args.dtype)
    module = parse(source)
    print(interface(graph, source))
    if graph.derivatives:
        print()
        print(derivatives_section(graph, source))
    print()
    print(f"forward graph ({len(graph.topo(_roots(graph)))} nodes)")
    print(_indent(format_graph(graph, filename=_base(source))))
    if args.backward:
        print()
        print(backward_section(graph, source))
    print()
    print("derivative rules")
    print(_indent(rules_section(module, source, graph.float_dtype)))
    return EXIT_OK


# ----------------------------------------------------------------------------- interface

def format_init(init: tuple) -> str:
    """``('uniform', -0.1, 0.1)`` -> ``uniform(-0.1, 0.1)``; ``('zeros',)`` -> ``zeros``."""
    name, *vals = init
    return f"{name}({', '.join(f'{v:g}' for v in vals)})" if vals else name


def interface(graph: Graph, source: Source) -> str:
    """The model line and the params / inputs / outputs / loss tables."""
    total = sum(int(numel(p.shape)) for p in graph.params.values())
    lines = [f"model {graph.name}  ({source.filename}, float dtype {graph.float_dtype})", ""]
    rows = [(k, format_type(p), f"~ {format_init(graph.param_inits[k])}")
            for k, p in graph.params.items()]
    tensors = f"{len(rows)} tensor{'s' if len(rows) != 1 else ''}"
    lines += _table(f"params ({tensors}, {total:,} number{'s' if total != 1 else ''})", rows)
    if graph.instances:
        lines += instances_section(graph)
    lines += _table("inputs", [(k, format_type(n), "") for k, n in graph.inputs.items()])
    lines += _table("outputs", [(k, format_type(n), "") for k, n in graph.outputs.items()])
    if graph.loss is not None:
        lines += _table("loss", [("loss", format_type(graph.loss), "")])
    else:
        lines += ["loss", "  (none: the model has no loss_and_grad or train_step)"]
    return "\n".join(lines).rstrip()


def derivatives_section(graph: Graph, source: Source) -> str:
    """Each ``grad`` of the model: where, the mode chosen and why, and for a derivative
    whose path is elementwise, its symbolic form."""
    count = len(graph.derivatives)
    lines = [f"derivatives ({count} grad{'s' if count != 1 else ''})"]
    for d in graph.derivatives:
        sp = d.span
        text = source.line(sp.line)[sp.col - 1:sp.end_col - 1] if sp.end_line == sp.line \
            else source.line(sp.line)[sp.col - 1:] + " ..."
        lines.append(f"  line {sp.line}: {text}")
        lines.append(f"    {d.mode} mode: {d.why}")
        if d.formula:
            lines.append(f"    {d.formula}")
    return "\n".join(lines)


def instances_section(graph: Graph) -> list[str]:
    """The block instances and repeats as a tree: each with what it instantiates, then its
    nested instances and its own params (names relative to it, types aligned)."""
    paths = list(graph.instances)

    def parent(path: str) -> str | None:
        owners = [p for p in paths if path.startswith(p + ".")]
        return max(owners, key=len) if owners else None

    rows: list[tuple[str, str | None, str]] = []  # (indented name, type or None, init)

    def walk(path: str | None, depth: int) -> None:
        for child in (p for p in paths if parent(p) == path):
            rows.append(("  " * depth + f"{_relative(child, path)} = "
                         f"{graph.instances[child]}", None, ""))
            walk(child, depth + 1)
            rows.extend(("  " * (depth + 1) + _relative(k, child), format_type(n),
                         f"~ {format_init(graph.param_inits[k])}")
                        for k, n in graph.params.items() if parent(k) == child)

    walk(None, 0)
    w0 = max((len(a) for a, b, _ in rows if b is not None), default=0)
    w1 = max((len(b) for _, b, _ in rows if b is not None), default=0)
    return [f"block instances ({len(paths)})"] + [
        f"  {a}" if b is None else f"  {a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows]


def _relative(path: str, owner: str | None) -> str:
    return path[len(owner) + 1:] if owner else path


def _table(title: str, rows: list[tuple[str, str, str]]) -> list[str]:
    if not rows:
        return [title, "  (none)"]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    return [title] + [f"  {a:<{w0}}  {b:<{w1}}  {c}".rstrip() for a, b, c in rows]


def backward_section(graph: Graph, source: Source) -> str:
    """The graph of ``loss_and_grad``: the loss and the gradient of each param."""
    from gradc.passes.programs import Optimizer, build_programs

    if graph.loss is None:
        return "backward graph: (none: the model has no loss)"
    entry = build_programs(graph, (), Optimizer.parse("sgd"))["loss_and_grad"]
    names = ["loss"] + [f"d loss/d {k}" for k in graph.params]
    text = format_graph(graph, entry.roots, _base(source), names)
    return f"loss_and_grad graph ({len(graph.topo(entry.roots))} nodes)\n{_indent(text)}"


def _roots(graph: Graph) -> list:
    roots = list(graph.outputs.values())
    return roots + ([graph.loss] if graph.loss is not None and graph.loss not in roots else [])


def _base(source: Source) -> str:
    return source.filename.replace("\\", "/").rsplit("/", 1)[-1]


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" if line else line for line in text.split("\n"))


# ----------------------------------------------------------------------------- rules

def rules_section(module: ast.Module, source: Source, dtype: str = "f64") -> str:
    """The derivative rules of the user fns and of the elementwise built-ins used."""
    fns = [s for s in module.stmts if isinstance(s, ast.FnDecl)]
    out = []
    if fns:
        out.append("user functions")
        for fn in fns:
            out += ["  " + line for line in fn_rules(module, fn, source, dtype)]
    used = builtins_used(module)
    if used:
        out.append("built-ins (out = the op's value, which the backward kernel reuses)")
        for name, kw in used:
            out += ["  " + line for line in builtin_rules(name, kw)]
    return "\n".join(out) if out else "(no user functions or elementwise built-ins)"


def fn_expression(module: ast.Module, fn: ast.FnDecl, source: Source,
                  dtype: str = "f64") -> sympy.Expr | None:
    """The SymPy expression of ``fn``'s body over symbols named as its arguments, or None
    when the body is not elementwise (a matmul, a reduction, a model value, ...)."""
    fns = tuple(s for s in module.stmts if isinstance(s, ast.FnDecl))
    span = fn.span
    args = [f"__gradc_arg{i}" for i in range(len(fn.params))]
    typ = ast.TypeExpr(dtype, (ast.DimRef("N", span),), span)
    stmts = fns + tuple(ast.InputDecl(span, a, span, typ) for a in args) + (
        ast.OutputDecl(span, "__gradc_result", span,
                       ast.Call(span, ast.Name(span, fn.name),
                                tuple(ast.Name(span, a) for a in args), ())),)
    try:
        g, _ = lower(ast.Module(stmts), source, dtype)
    except (GradcError, LowerError):
        return None
    symbols = {g.inputs[a].id: sympy.Symbol(p.id, real=True) for a, p in zip(args, fn.params)}
    exprs: dict[int, sympy.Expr] = {}
    for node in g.topo([g.outputs["__gradc_result"]]):
        if node.id in symbols:
            exprs[node.id] = symbols[node.id]
        elif node.op == "ewise":
            exprs[node.id] = node.attrs["expr"].xreplace(
                {ARGS[i]: exprs[n.id] for i, n in enumerate(node.inputs)})
        else:
            return None
    return exprs[g.outputs["__gradc_result"].id]


def fn_rules(module: ast.Module, fn: ast.FnDecl, source: Source, dtype: str) -> list[str]:
    """``swish(z) = z*sigmoid(z)`` and ``d/dz swish(z) = ...`` lines for one user fn."""
    names = [p.id for p in fn.params]
    call = f"{fn.name}({', '.join(names)})"
    expr = fn_expression(module, fn, source, dtype)
    if expr is None:
        return [f"{call}: not elementwise (inlined where called; its matmuls, reductions "
                "and shape ops have hand-written rules)"]
    lines = [f"{call} = {format_expr(expr)}"]
    for name in names:
        d = _tidy(sympy.diff(expr, sympy.Symbol(name, real=True)))
        lines.append(f"d/d{name} {call} = {format_expr(d)}")
    return lines


def builtin_rules(name: str, kwargs: tuple) -> list[str]:
    """Definition (when it is not the op itself) and derivative lines of one built-in."""
    op = ELEMENTWISE[name]
    names = ARG_NAMES[op.nargs]
    kw = {**op.kwargs, **dict(kwargs)}
    expr = op.build(*ARGS[:op.nargs], **kw)
    shown = {ARGS[i]: sympy.Symbol(n, real=True) for i, n in enumerate(names)}
    extra = "".join(f", {k}={v:g}" for k, v in kw.items())
    call = f"{name}({', '.join(names)}{extra})"
    lines = [call]
    if format_expr(expr.xreplace(shown)) != f"{name}({', '.join(names)})":
        lines = [f"{call} = {format_expr(expr.xreplace(shown))}"]
    if not op.differentiable:
        return lines + [f"d/d{names[0]} {call} = 0 (by definition)"]
    for i, (n, kern) in enumerate(zip(names, partials(expr, op.nargs))):
        math = _tidy(sympy.diff(expr, ARGS[i]).xreplace(shown))
        kern = _tidy(kern.xreplace(shown))
        line = f"d/d{n} {call} = {format_expr(math)}"
        if OUT in kern.free_symbols:
            line += f"   [kernel: {format_expr(kern)}]"
        lines.append(line)
    return lines


def _tidy(expr: sympy.Expr) -> sympy.Expr:
    """``where(c, a, a)`` -> ``a`` (the derivative of where in its condition)."""
    return expr.replace(lambda e: isinstance(e, sym.Select) and e.args[1] == e.args[2],
                        lambda e: e.args[1])


def builtins_used(module: ast.Module) -> list[tuple[str, tuple]]:
    """The elementwise built-ins the model calls, in order of first use, each with its
    literal keyword arguments: ``[("leaky_relu", (("alpha", 0.1),)), ("relu", ())]``."""
    found: dict[tuple, None] = {}

    def visit(node, piped: int = 0) -> None:
        if isinstance(node, ast.Pipe):
            visit(node.value)
            parts = node.func.parts if isinstance(node.func, ast.Compose) else (node.func,)
            for part in parts:
                visit(part, piped=1)
            return
        if isinstance(node, ast.Name) and piped:
            _note(found, node.id, 1, ())
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            _note(found, node.func.id, len(node.args) + piped, node.kwargs)
        if dataclasses.is_dataclass(node):
            for f in dataclasses.fields(node):
                visit(getattr(node, f.name))
        elif isinstance(node, tuple):
            for item in node:
                visit(item)

    for stmt in module.stmts:
        if not isinstance(stmt, ast.ParamDecl):
            visit(stmt)
    return list(found)


def _note(found: dict, name: str, nargs: int, kwargs) -> None:
    op = ELEMENTWISE.get(name)
    if op is None or nargs != op.nargs:  # max(x) with one argument is a reduction
        return
    try:
        kw = tuple((k.name, float(literal(k.value, "number"))) for k in kwargs
                   if k.name in op.kwargs)
    except LowerError:
        kw = ()
    found.setdefault((name, kw), None)
