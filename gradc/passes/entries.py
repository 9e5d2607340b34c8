"""The compiled entries of a model: forward, loss_and_grad, train_step, jvp, vjp.

Each entry is a set of roots over one shared graph (autodiff adds the backward nodes to the
same hash-consed graph, so forward work is shared), plus the leaves it takes in call order.
Optimizer updates are in-place stores (SPEC §2 ``train_step``).
"""

from __future__ import annotations

import sympy

from gradc.autodiff.forward import jvp
from gradc.autodiff.reverse import vjp

from gradc.ir.graph import Graph, Node
from gradc.ir.ops import ARGS
from gradc.options import OPTIMIZERS, Optimizer
from gradc.passes.schedule import Entry

def leaf(g: Graph, role: str, name: str, like: Node) -> Node:
    """A new argument leaf of ``role`` ('tangent', 'cotangent', 'state:m', ...) shaped like
    ``like``."""
    return g.add("input", (), like.shape, like.dtype, None, name, name=name, role=role)


def hyper(g: Graph, name: str) -> Node:
    """A float scalar passed by value (learning rate, bias corrections)."""
    return g.add("hyper", (), (), g.float_dtype, None, name, name=name)


def needed_inputs(g: Graph, roots: list[Node]) -> list[Node]:
    """The model inputs ``roots`` depend on, in declaration order."""
    ids = {n.id for n in g.topo(roots)}
    return [n for n in g.inputs.values() if n.id in ids]


def _state_leaves(g: Graph, roots: list[Node]) -> list[Node]:
    """The buffers, then the noise leaves, that ``roots`` read."""
    ids = {n.id for n in g.topo(roots)}
    return [n for n in [*g.buffers.values(), *g.noise.values()] if n.id in ids]


def build_entries(g: Graph, wrt: tuple[str, ...], opt: Optimizer,
                  g_eval: Graph | None = None) -> dict[str, Entry]:
    """Return every entry the model supports, by name (each knows its graph).

    ``g`` is the train-mode graph; ``g_eval`` the eval-mode one for models with batchnorm
    or dropout (forward, jvp and vjp run in eval mode; ``forward_train`` is forward in
    train mode), or None when both modes are the same graph.
    """
    entries = {}
    ge = g_eval or g
    if ge.outputs:
        entries.update(_output_entries(ge, wrt))
    if g_eval is not None and g.outputs:
        outs = list(g.outputs.values())
        args = list(g.params.values()) + needed_inputs(g, outs) + _state_leaves(g, outs)
        entries["forward_train"] = Entry("forward_train", args, outs, graph=g)
    if g.loss is not None:
        entries.update(_loss_entries(g, wrt, opt))
    return entries


def _output_entries(g: Graph, wrt) -> dict[str, Entry]:
    params = list(g.params.values())
    diff = params + [g.inputs[w] for w in wrt]
    outs = list(g.outputs.values())
    ins, st = needed_inputs(g, outs), _state_leaves(g, outs)
    tans = [leaf(g, "tangent", n.attrs["name"], n) for n in diff]
    t_outs = jvp(g, outs, {n.id: t for n, t in zip(diff, tans)})
    cots = [leaf(g, "cotangent", name, n) for name, n in g.outputs.items()]
    grads = vjp(g, list(zip(outs, cots)), diff)
    return {"forward": Entry("forward", params + ins + st, outs, graph=g),
            "jvp": Entry("jvp", params + ins + tans + st, outs + t_outs, graph=g),
            "vjp": Entry("vjp", params + ins + cots + st, grads, graph=g)}


def _loss_entries(g: Graph, wrt, opt: Optimizer) -> dict[str, Entry]:
    params = list(g.params.values())
    diff = params + [g.inputs[w] for w in wrt]
    grads = vjp(g, [(g.loss, g.const(1))], diff)
    ins = needed_inputs(g, [g.loss])
    entries = {"loss_and_grad": Entry("loss_and_grad", params + ins +
                                      _state_leaves(g, [g.loss]), [g.loss, *grads], graph=g)}
    states = [leaf(g, f"state:{s}", p.attrs["name"], p) for s in opt.states for p in params]
    by_slot = {s: states[i * len(params):(i + 1) * len(params)]
               for i, s in enumerate(opt.states)}
    lr = hyper(g, "lr")
    extra = [hyper(g, "c1"), hyper(g, "c2")] if opt.name == "adam" else []
    stores = _updates(g, opt, params, grads[:len(params)], by_slot, [lr, *extra])
    stores += g.buffer_updates
    st = _state_leaves(g, [g.loss] + [v for _, v in stores])
    args = params + ins + states + st + [lr, *extra]
    entries["train_step"] = Entry("train_step", args, [g.loss], stores, graph=g)
    return entries


def _updates(g, opt, params, grads, states, hypers):
    """The in-place stores of one optimizer step, in order (state first, then the param)."""
    h = dict(opt.hyper)
    stores = []
    for i, (p, gr) in enumerate(zip(params, grads)):
        def ew(fn, *nodes, like=p):
            return g.ewise(fn(*ARGS[:len(nodes)]), nodes, like.shape, like.dtype)
        if opt.name == "sgd":
            stores.append((p, ew(lambda w, d, lr: w - lr * d, p, gr, hypers[0])))
        elif opt.name == "momentum":
            v = states["v"][i]
            new_v = ew(lambda v_, d: h["momentum"] * v_ + d, v, gr)
            stores += [(v, new_v), (p, ew(lambda w, v_, lr: w - lr * v_, p, new_v, hypers[0]))]
        else:
            m, v = states["m"][i], states["v"][i]
            new_m = ew(lambda m_, d: h["beta1"] * m_ + (1 - h["beta1"]) * d, m, gr)
            new_v = ew(lambda v_, d: h["beta2"] * v_ + (1 - h["beta2"]) * d * d, v, gr)
            step = ew(lambda w, m_, v_, lr, c1, c2: w - lr * (m_ * c1)
                      / (sympy.sqrt(v_ * c2) + h["eps"]), p, new_m, new_v, *hypers)
            stores += [(m, new_m), (v, new_v), (p, step)]
    return stores





__all__ = ["OPTIMIZERS", "Optimizer", "build_entries", "needed_inputs", "leaf", "hyper"]
