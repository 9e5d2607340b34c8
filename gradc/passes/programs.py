"""The kernel programs of a model: what each compiled function computes, as graph roots.

One builder per program (:data:`PROGRAMS`), each taking the :class:`Graphs` of a model and
returning an :class:`ProgramSpec` (the leaves it takes in call order and its roots) or None when
the model has no such program. Autodiff adds the backward and tangent nodes to the same
hash-consed graph, so forward work is shared. Which public function calls which program is
the public registry's business (:mod:`gradc.entries`); this module only builds graphs.
Optimizer updates are in-place stores built from :data:`gradc.options.OPTIMIZERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import sympy

from gradc.autodiff.forward import jvp
from gradc.autodiff.reverse import vjp
from gradc.ir import sym
from gradc.ir.graph import Graph, Node
from gradc.ir.ops import ARGS
from gradc.kinds import KINDS
from gradc.options import OPTIMIZERS, Optimizer
from gradc.passes.schedule import ProgramSpec


@dataclass(frozen=True)
class Graphs:
    """A model's graphs and the options that shape its programs.

    train: the train-mode graph; eval: the eval-mode one for models with batchnorm or
    dropout (forward, loss, jvp and vjp run in eval mode), else None; wrt: inputs
    differentiated besides the params; opt: the optimizer of train_step.
    """

    train: Graph
    eval: Graph | None
    wrt: tuple[str, ...]
    opt: Optimizer

    @property
    def outputs_graph(self) -> Graph:
        """The graph of eval mode, which forward, loss, jvp and vjp run on."""
        return self.eval or self.train

    @property
    def train_twin(self) -> Graph | None:
        """The train graph where it differs from eval mode's (batchnorm, dropout): what
        forward_train and loss_train run on; else None."""
        return self.train if self.eval is not None else None

    def diff(self, g: Graph) -> list[Node]:
        """The differentiated leaves of ``g``: params, then the ``wrt`` inputs."""
        return list(g.params.values()) + [g.inputs[w] for w in self.wrt]


def leaf(g: Graph, role: str, name: str, like: Node) -> Node:
    """A new argument leaf of ``role`` ('tangent', 'cotangent', 'state:m', ...) shaped like
    ``like``."""
    return g.add("input", (), like.shape, like.dtype, None, name, name=name, role=role)


def hyper(g: Graph, name: str) -> Node:
    """A float scalar passed by value (learning rate, per-step optimizer scalars)."""
    return g.add("hyper", (), (), g.float_dtype, None, name, name=name)


def needed_inputs(g: Graph, roots: list[Node]) -> list[Node]:
    """The model inputs ``roots`` depend on, in declaration order."""
    ids = {n.id for n in g.topo(roots)}
    return [n for n in g.inputs.values() if n.id in ids]


def _state_leaves(g: Graph, roots: list[Node]) -> list[Node]:
    """The buffers, then the noise leaves, that ``roots`` read."""
    ids = {n.id for n in g.topo(roots)}
    return [n for n in [*g.buffers.values(), *g.noise.values()] if n.id in ids]


def _spec(name: str, g: Graph, roots: list[Node], extra: list[Node] = (),
           stores: list = (), scalars: list[Node] = (), primal: list[Node] = ()) -> ProgramSpec:
    """The program taking the params, the inputs that ``primal`` (the values it differentiates
    and the leaves it differentiates with respect to) and ``roots`` (and ``stores``) read,
    the state leaves they read, then ``extra`` leaves and ``scalars``, in that call order.
    A derivative program takes the inputs of its primal and its ``wrt`` inputs even where the
    derivative does not read them (a linear model's vjp; a zero gradient's shape), so that
    it is called like the function it differentiates and every dim is bound."""
    reads = list(primal) + roots + [v for _, v in stores]
    args = list(g.params.values()) + needed_inputs(g, reads)
    return ProgramSpec(name, args + list(extra) + _state_leaves(g, reads) + list(scalars), roots,
                 list(stores), graph=g, checks=_lookups(g, reads))


def _lookups(g: Graph, reads: list[Node]) -> list[tuple[Node, sympy.Expr, str]]:
    """The label and index tensors that ``reads`` look up (pick, unpick, take, put), each
    with the size it indexes and its kind ('label' or 'index'), once per (tensor, size)."""
    out = {}
    for n in g.topo(reads):
        lookup = KINDS[n.op].lookup
        if lookup is not None:
            idx, limit, kind = lookup(n)
            out.setdefault((idx.id, limit), (idx, limit, kind))
    return list(out.values())


def _tangents(g: Graph, gs: Graphs) -> list[Node]:
    return [leaf(g, "tangent", n.attrs["name"], n) for n in gs.diff(g)]


def _gradients(g: Graph, gs: Graphs) -> list[Node]:
    return vjp(g, [(g.loss, g.const(1))], gs.diff(g))


# ---------------------------------------------------------------------- the programs
def _outputs_of(name: str, g: Graph | None) -> ProgramSpec | None:
    """Program ``name``: the outputs of ``g`` (None without ``g`` or outputs)."""
    return _spec(name, g, list(g.outputs.values())) if g is not None and g.outputs else None


def _loss_of(name: str, g: Graph | None) -> ProgramSpec | None:
    """Program ``name``: the loss of ``g`` alone (None without ``g`` or a loss)."""
    return _spec(name, g, [g.loss]) if g is not None and g.loss is not None else None


def _forward(gs: Graphs) -> ProgramSpec | None:
    return _outputs_of("forward", gs.outputs_graph)


def _forward_train(gs: Graphs) -> ProgramSpec | None:
    return _outputs_of("forward_train", gs.train_twin)


def _loss(gs: Graphs) -> ProgramSpec | None:
    return _loss_of("loss", gs.outputs_graph)


def _loss_train(gs: Graphs) -> ProgramSpec | None:
    return _loss_of("loss_train", gs.train_twin)


def _jvp(gs: Graphs) -> ProgramSpec | None:
    g = gs.outputs_graph
    if not g.outputs:
        return None
    outs, tans = list(g.outputs.values()), _tangents(g, gs)
    t_outs = jvp(g, outs, {n.id: t for n, t in zip(gs.diff(g), tans)})
    return _spec("jvp", g, outs + t_outs, tans, primal=outs + gs.diff(g))


def _vjp(gs: Graphs) -> ProgramSpec | None:
    g = gs.outputs_graph
    if not g.outputs:
        return None
    cots = [leaf(g, "cotangent", name, n) for name, n in g.outputs.items()]
    grads = vjp(g, list(zip(g.outputs.values(), cots)), gs.diff(g))
    return _spec("vjp", g, grads, cots, primal=list(g.outputs.values()) + gs.diff(g))


def _loss_and_grad(gs: Graphs) -> ProgramSpec | None:
    g = gs.train
    if g.loss is None:
        return None
    return _spec("loss_and_grad", g, [g.loss, *_gradients(g, gs)],
                  primal=[g.loss, *gs.diff(g)])


def _hvp(gs: Graphs) -> ProgramSpec | None:
    """Forward over reverse: the tangent of the gradient along ``vector``."""
    g = gs.train
    if g.loss is None:
        return None
    tans = _tangents(g, gs)
    hv = jvp(g, _gradients(g, gs), {n.id: t for n, t in zip(gs.diff(g), tans)})
    return _spec("hvp", g, hv, tans, primal=[g.loss, *gs.diff(g)])


def _train_step(gs: Graphs) -> ProgramSpec | None:
    g = gs.train
    if g.loss is None:
        return None
    params = list(g.params.values())
    grads = _gradients(g, gs)[:len(params)]
    rule = OPTIMIZERS[gs.opt.name]
    states = {s: [leaf(g, f"state:{s}", p.attrs["name"], p) for p in params]
              for s in rule.states}
    scalars = [hyper(g, "lr")] + [hyper(g, name) for name, _ in rule.step_scalars]
    stores = []
    for i, (p, gr) in enumerate(zip(params, grads)):
        stores += optimizer_stores(g, gs.opt, p, gr, {s: v[i] for s, v in states.items()},
                                   scalars)
    stores += g.buffer_updates
    extra = [v for s in rule.states for v in states[s]]
    return _spec("train_step", g, [g.loss], extra, stores, scalars)


def optimizer_stores(g: Graph, opt: Optimizer, p: Node, grad: Node, states: dict,
                     scalars: list[Node]) -> list[tuple[Node, Node]]:
    """The in-place stores of one optimizer step on param ``p``, as the optimizer's rule
    states them (state first, then the param)."""
    rule = OPTIMIZERS[opt.name]
    leaves = {"w": p, "g": grad, **states, **{s.attrs["name"]: s for s in scalars}}
    symbols = {k: sympy.Symbol(f"opt_{k}") for k in leaves}
    new = {f"new_{slot}": sympy.Symbol(f"opt_new_{slot}") for slot in rule.states}
    tiny = float(np.finfo(f"float{p.dtype[1:]}").tiny)  # f32 -> float32

    def flush(x):  # 0 below the smallest normal number (see OptimizerRule.update)
        return sym.Select(sym.Less(sym.Absv(x), tiny), 0, x)
    stores, written = [], {}
    for target, expr in rule.update({**symbols, **new, **dict(opt.hyper)}, sympy.sqrt,
                                    flush):
        bound = {sym: written[k] for k, sym in new.items() if k in written}
        bound.update({symbols[k]: n for k, n in leaves.items()})
        used = sorted(expr.free_symbols, key=lambda s: s.name)
        nodes = tuple(bound[s] for s in used)
        value = g.ewise(expr.xreplace(dict(zip(used, ARGS))), nodes, p.shape, p.dtype)
        stores.append((leaves[target], value))
        written[f"new_{target}"] = value
    return stores


#: every kernel program, by name, in the order the module lists them
PROGRAMS: dict[str, Callable[[Graphs], ProgramSpec | None]] = {
    "forward": _forward, "forward_train": _forward_train, "jvp": _jvp, "vjp": _vjp,
    "loss": _loss, "loss_train": _loss_train, "loss_and_grad": _loss_and_grad,
    "train_step": _train_step, "hvp": _hvp,
}


def build_programs(g: Graph, wrt: tuple[str, ...], opt: Optimizer,
                  g_eval: Graph | None = None,
                  names: tuple[str, ...] | None = None) -> dict[str, ProgramSpec]:
    """Every program the model has (or those of ``names``), by name; see :class:`Graphs`."""
    gs = Graphs(g, g_eval, tuple(wrt), opt)
    built = {name: PROGRAMS[name](gs) for name in (names or PROGRAMS)}
    return {name: e for name, e in built.items() if e is not None}


__all__ = ["OPTIMIZERS", "Optimizer", "Graphs", "PROGRAMS", "build_programs", "needed_inputs",
           "leaf", "hyper", "optimizer_stores"]
