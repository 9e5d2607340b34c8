"""``gradc check MODEL.grad``: finite-difference check of every derivative, in float64.

The model is compiled with ``dtype="f64"`` and ``wrt`` = every float input, params come from
``init_params(seed)`` (params with a constant initialiser are jittered so that the check does
not sit on a kink such as ``relu(0)``), float inputs are standard normal and integer inputs
are random labels below the size of the axis they index (the class count of the scores for
``cross_entropy``/``hinge``, the rows of ``take``/``embedding``). Symbolic dims are bound to
``--batch`` (or ``--dim NAME=N``). Then :func:`gradc.gradcheck.check_model` compares
``loss_and_grad``, ``vjp`` and ``jvp`` with central differences (dropout masks drawn from
``--seed``, the same in every call). Exit code 1 on a mismatch.
"""

from __future__ import annotations

import argparse

import numpy as np
import sympy

from gradc.commands import EXIT_CHECK_FAILED, EXIT_OK, front_graph
from gradc.errors import GradcError
from gradc.gradcheck import check_model, format_results
from gradc.ir.graph import Graph
from gradc.ir.shapes import fmt_shape
from gradc.kinds import KINDS

#: jitter added to params whose initialiser is a constant (zeros, ones, constant(v)).
JITTER = 0.1
CONSTANT_INITS = ("zeros", "ones", "constant")


def register(subparsers) -> None:
    """Add the ``check`` subparser."""
    p = subparsers.add_parser(
        "check", help="finite-difference check of the gradients in f64 (exit 1 on mismatch)",
        description="Compile MODEL.grad in float64 with every float input differentiable, "
                    "then compare loss_and_grad, vjp and jvp with central finite "
                    "differences in random directions. Exit code 1 when a check fails.")
    p.add_argument("model", metavar="MODEL.grad", help="the model file")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of params, inputs, directions and dropout masks")
    p.add_argument("--batch", type=_positive, default=4, help="value of every symbolic dim "
                   "(default 4)")
    p.add_argument("--dim", action="append", default=[], metavar="NAME=N",
                   help="value of one symbolic dim (repeatable), overriding --batch")
    p.add_argument("--tol", type=float, default=1e-5, help="largest accepted relative error "
                   "(default 1e-5)")
    p.add_argument("--eps", type=float, default=1e-6, help="relative finite-difference step "
                   "(default 1e-6)")
    p.add_argument("--directions", type=_positive, default=3,
                   help="random directions per variable (default 3)")
    p.set_defaults(run=run)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'")
    return value


def parse_dims(items: list[str]) -> dict[str, int]:
    """``["T=5"]`` -> ``{"T": 5}``; raise GradcError on a malformed item."""
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        if not name.strip() or not value.strip().isdigit() or int(value) < 1:
            raise GradcError(f"gradc check: --dim expects NAME=N with N a positive integer, "
                             f"got '{item}'")
        out[name.strip()] = int(value)
    return out


def _concrete(shape, dims: dict[str, int], batch: int) -> tuple[int, ...]:
    out = []
    for d in shape:
        d = sympy.sympify(d)
        d = d.xreplace({s: dims.get(s.name, batch) for s in d.free_symbols})
        out.append(int(d))
    return tuple(out)


def class_counts(graph: Graph, dims: dict[str, int], batch: int) -> dict[str, int]:
    """For each integer input, the number of classes (or rows) it indexes: the smallest
    size among the axes it picks from (each node kind's ``lookup``: for ``pick``, the
    scores' last axis; for ``take``, the gathered axis); 2 when nothing indexes with it."""
    counts: dict[str, int] = {}
    int_inputs = {n.id: k for k, n in graph.inputs.items() if not n.is_float}
    for node in graph.nodes:
        lookup = KINDS[node.op].lookup
        if lookup is None:
            continue
        idx, axis_size, _ = lookup(node)
        size = _concrete((axis_size,), dims, batch)[0]
        for dep in graph.topo([idx]):
            if dep.id in int_inputs:
                name = int_inputs[dep.id]
                counts[name] = min(counts.get(name, size), size)
    return {k: counts.get(k, 2) for k in int_inputs.values()}


def make_inputs(graph: Graph, dims: dict[str, int], batch: int, seed: int) -> dict:
    """Random inputs: floats standard normal (f64), integers labels in range."""
    rng = np.random.default_rng(seed + 1)
    classes = class_counts(graph, dims, batch)
    out = {}
    for name, node in graph.inputs.items():
        shape = _concrete(node.shape, dims, batch)
        if node.is_float:
            out[name] = rng.standard_normal(shape)
        else:
            dtype = np.int32 if node.dtype == "i32" else np.int64
            out[name] = rng.integers(0, max(classes[name], 1), size=shape).astype(dtype)
    return out


def make_params(model, seed: int) -> dict:
    """``init_params(seed)`` with params of constant initialisers jittered."""
    params = model.init_params(seed)
    rng = np.random.default_rng(seed + 2)
    for name, init in model.signature["inits"].items():
        if init[0] in CONSTANT_INITS:
            p = params[name]
            params[name] = np.array(p + JITTER * rng.standard_normal(p.shape),
                                    dtype=p.dtype, order="C")
    return params


def run(args) -> int:
    """Compile in f64, check, print the table; exit 1 when a check fails."""
    import gradc

    dims = parse_dims(args.dim)
    graph, source = front_graph(args.model, dtype="f64")
    bound = sorted({s for n in graph.inputs.values() for d in n.shape
                    for s in (str(x) for x in sympy.sympify(d).free_symbols)})
    for name in dims:
        if name not in bound:
            raise GradcError(f"gradc check: --dim {name}: the model's inputs have no dim "
                             f"'{name}'" + (f" (they have {', '.join(bound)})" if bound else ""))
    wrt = [k for k, n in graph.inputs.items() if n.is_float]
    model = gradc.compile(args.model, dtype="f64", wrt=wrt, wait=True)  # check the kernels
    inputs = make_inputs(graph, dims, args.batch, args.seed)
    params = make_params(model, args.seed)
    results = check_model(model, inputs, params, directions=args.directions, eps=args.eps,
                          tol=args.tol, seed=args.seed)
    where = ", ".join(f"{d}={dims.get(d, args.batch)}" for d in bound)
    shapes = ", ".join(f"{k}: {fmt_shape(v.shape)}" for k, v in inputs.items())
    print(f"gradc check {source.filename}: f64, {where or 'no symbolic dims'}, seed "
          f"{args.seed}, {args.directions} direction(s) per variable, eps {args.eps:g}")
    if shapes:
        print(f"inputs {shapes}")
    print(format_results(results, args.tol))
    return EXIT_OK if all(r.ok for r in results) else EXIT_CHECK_FAILED
