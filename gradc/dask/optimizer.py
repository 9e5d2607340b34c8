"""The model's own optimizer, applied on the driver to a gradient combined from workers.

Data-parallel training computes the gradient of a minibatch in slices on the workers; the
driver then takes one optimizer step. :class:`HostOptimizer` runs that step with the very
rule the compiled ``train_step`` runs: the optimizer's row of
:data:`gradc.options.OPTIMIZERS` (its ``update(s, sqrt, flush)`` stores, in order, each later
store reading the values earlier ones wrote as ``new_<slot>``), turned into NumPy
functions with SymPy's ``lambdify``, the same way :func:`gradc.passes.programs.optimizer_stores`
turns it into graph nodes (with the same ``flush`` of values below the dtype's smallest
normal number). The per-step scalars (Adam's bias corrections) come from the
generated module's ``_step_scalars``, the function its ``train_step`` calls.

The state is a dict in the layout of ``Model.state`` (``step``, ``m:W1``, ``v:W1``, ...),
so that :mod:`gradc.training.checkpoint` saves and resumes it, and params and state arrays
are updated in place, as ``train_step`` updates them.
"""

from __future__ import annotations

import numpy as np

from gradc.options import OPTIMIZERS


class HostOptimizer:
    """One optimizer step on NumPy params from a given gradient (see the module docstring)."""

    def __init__(self, model):
        import sympy

        opt = model.signature["optimizer"]
        rule = OPTIMIZERS[opt["name"]]
        self.module = model.module
        self.slots = rule.states
        scalar_names = [name for name, _ in rule.step_scalars]
        self.names = ["w", "g", "lr", *self.slots, *scalar_names,
                      *(f"new_{slot}" for slot in self.slots)]
        symbols = {k: sympy.Symbol(f"opt_{k}") for k in self.names}
        flush = sympy.Function("flush")
        args = [symbols[k] for k in self.names]
        self.stores = [(target, sympy.lambdify(args, expr, [{"flush": _flush}, "numpy"]))
                       for target, expr in rule.update({**symbols, **opt["hyper"]}, sympy.sqrt,
                                                       flush)]
        self.scalar_names = scalar_names

    def step(self, params: dict, grads: dict, lr: float, state: dict) -> None:
        """Apply one step to every param of ``params`` with ``grads`` (same keys), updating
        ``params`` and ``state`` in place; the step count ``state['step']`` goes up by one
        (a fresh state is made when ``state`` has none)."""
        if "step" not in state:
            state.update(self.module.init_state(params))
        t = state["step"] = int(state["step"]) + 1
        scalars = dict(zip(self.scalar_names, self.module._step_scalars(t)))
        for name, w in params.items():
            values = {"w": w, "g": grads[name], "lr": float(lr), **scalars,
                      **{slot: state[f"{slot}:{name}"] for slot in self.slots}}
            for target, fn in self.stores:
                value = fn(*(values.get(k) for k in self.names))
                dest = w if target == "w" else state[f"{target}:{name}"]
                dest[...] = value
                values[f"new_{target}"] = dest


def _flush(x):
    """The rule's ``flush``: 0 where ``|x|`` is below the smallest normal number of its
    dtype, as the compiled stores do (a decaying state never sinks into subnormals)."""
    x = np.asarray(x)
    return np.where(np.abs(x) < np.finfo(x.dtype).tiny, x.dtype.type(0), x)


def weighted_mean(parts: list[tuple[int, dict]], dtypes: dict) -> dict:
    """The size-weighted mean of per-slice gradients ``[(rows, grads)]``: the gradient of
    a mean loss over the union of the slices. Summed in float64, returned in ``dtypes``."""
    total = sum(n for n, _ in parts)
    out = {}
    for name, dtype in dtypes.items():
        acc = None
        for n, grads in parts:
            term = np.asarray(grads[name], dtype=np.float64) * (n / total)
            acc = term if acc is None else acc + term
        out[name] = acc.astype(dtype, copy=False)
    return out
