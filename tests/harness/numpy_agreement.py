"""The worker of ``tests/codegen/numpy/test_target.py``: runs groups of models (see
:mod:`tests.harness.agreement`) on the numpy target and on the CPU target, and compares
every entry (see that test's docstring).

By hand, from the checkout's root::

    NUMBA_DISABLE_JIT=1 python -m tests.harness.numpy_agreement GROUP [GROUP ...]
"""

from __future__ import annotations

import collections
import os
import sys
import warnings

import numpy as np

from tests.harness.agreement import (LAYERS, OP_GROUPS, draw_inputs, interpret_like_compiled,
                                     run_groups, shrunk_example)

TOL = {"f32": 1e-5, "f64": 1e-12}
#: norms below this count as this (values that cancel to rounding noise)
FLOOR = {"f32": 1e-3, "f64": 1e-6}


def pair(text: str, filename: str, **options):
    """The CPU and numpy modules of one model."""
    import gradc
    cpu = gradc.compile_string(text, name=filename, **options).module
    if os.environ.get("NUMBA_DISABLE_JIT") == "1":
        interpret_like_compiled(cpu)
    return cpu, gradc.compile_string(text, name=filename, target="numpy", **options).module


def _like(rng, value):
    value = np.asarray(value)
    return np.asarray(rng.standard_normal(value.shape), value.dtype)


def compare(chk, cpu, npm, inputs: dict, label: str, params=None, steps: int = 2,
            epoch: bool = False) -> None:
    """Run every entry the model has on both targets and compare the results."""
    sig, rng = cpu.SIGNATURE, np.random.default_rng(1)
    if params is None:
        pc, pn = cpu.init_params(0), npm.init_params(0)
        chk.dicts(f"{label} init_params", pn, pc)
    else:
        pc = {k: np.array(v) for k, v in params.items()}
        pn = {k: np.array(v) for k, v in params.items()}
    sc, sn = {}, {}

    def both(fn, **kw):
        return getattr(npm, fn)(pn, state=sn, **kw), getattr(cpu, fn)(pc, state=sc, **kw)

    leaves = {**pc, **inputs}
    if sig["outputs"]:
        chk.dicts(f"{label} forward", *both("forward", **inputs))
        if sig["buffers"] or sig["noise"]:
            chk.dicts(f"{label} forward(training)", *both("forward", training=True, seed=3,
                                                          **inputs))
        tans = {k: _like(rng, leaves[k]) for k in sig["tangents"]}
        (on, tn), (oc, tc) = both("jvp", tangents=tans, **inputs)
        chk.dicts(f"{label} jvp outputs", on, oc)
        chk.dicts(f"{label} jvp tangents", tn, tc)
        cots = {k: _like(rng, v) for k, v in cpu.forward(pc, state=sc, **inputs).items()}
        chk.dicts(f"{label} vjp", *both("vjp", cotangents=cots, **inputs))
    if not sig["loss"]:
        return
    chk.close(f"{label} loss", *both("loss", seed=5, **inputs))
    if sig["buffers"] or sig["noise"]:
        chk.close(f"{label} loss(training)", *both("loss", training=True, seed=5, **inputs))
    (ln, gn), (lc, gc) = both("loss_and_grad", seed=5, **inputs)
    chk.close(f"{label} loss_and_grad loss", ln, lc)
    chk.dicts(f"{label} grads", gn, gc)
    vec = {k: _like(rng, leaves[k]) for k in sig["tangents"]}
    chk.dicts(f"{label} hvp", *both("hvp", vector=vec, seed=5, **inputs))
    for t in range(steps):
        chk.close(f"{label} train_step {t}", *both("train_step", lr=0.1, seed=7 + t, **inputs))
    chk.dicts(f"{label} params after train_step", pn, pc)
    chk.dicts(f"{label} state", {k: v for k, v in sn.items() if ":" in k},
              {k: v for k, v in sc.items() if ":" in k})
    if epoch and hasattr(npm, "train_epoch"):
        for seed in (0, 1):
            chk.close(f"{label} train_epoch {seed}", *both(
                "train_epoch", lr=0.05, batch_size=2, seed=seed, **inputs))
        n = len(next(iter(inputs.values())))       # an order with a repeat, a row left out
        chk.close(f"{label} train_epoch(order)", *both(
            "train_epoch", lr=0.05, batch_size=2, seed=2,
            order=np.array([n - 1, 0, n - 1, 1, 0]), **inputs))
        chk.dicts(f"{label} params after train_epoch", pn, pc)
        chk.close(f"{label} step count", sn["step"], sc["step"])


def errors(chk, cpu, npm, inputs: dict, label: str) -> None:
    """Out-of-range labels and indices raise the CPU's ValueError, and leave params alone."""
    sig = cpu.SIGNATURE
    if not sig["loss"]:
        return
    for name, (dtype, _) in sig["inputs"].items():
        if dtype[0] != "i":
            continue
        for value in (-1, 10 ** 6):
            bad = np.array(inputs[name])
            bad.flat[-1] = value
            args = {**inputs, name: bad}
            pn, pc = npm.init_params(0), cpu.init_params(0)
            said = []
            for mod, params in ((cpu, pc), (npm, pn)):
                chk.checks += 1
                try:
                    mod.train_step(params, 0.1, state={}, **args)
                    chk.failures.append(f"{label} {name}={value}: {mod.__name__} raised "
                                        "nothing")
                except ValueError as e:
                    said.append(str(e))
            if len(said) == 2 and said[0] != said[1]:
                chk.failures.append(f"{label} {name}={value}: numpy says {said[1]!r}, the "
                                    f"CPU {said[0]!r}")
            chk.dicts(f"{label} params after a failed train_step", pn, npm.init_params(0))


def group_example(stem: str, chk_for) -> None:
    cpu, npm = pair(shrunk_example(stem), f"{stem}.grad", dtype="f64")
    dims = collections.defaultdict(lambda: 2, B=5)  # any other dim (T, L, N): 2
    inputs = draw_inputs(cpu.SIGNATURE, dims, np.random.default_rng(0))
    compare(chk_for("f64"), cpu, npm, inputs, stem, epoch=True)
    errors(chk_for("f64"), cpu, npm, inputs, stem)


def group_optimizers(chk_for) -> None:
    text = shrunk_example("mlp")
    for opt in ("sgd", "momentum", "adam"):
        cpu, npm = pair(text, "mlp.grad", dtype="f64", optimizer=opt)
        inputs = draw_inputs(cpu.SIGNATURE, {"B": 5}, np.random.default_rng(2))
        compare(chk_for("f64"), cpu, npm, inputs, f"mlp/{opt}", steps=3, epoch=True)
    cpu, npm = pair(text, "mlp.grad", optimizer="adam")
    compare(chk_for("f32"), cpu, npm, draw_inputs(cpu.SIGNATURE, {"B": 4},
            np.random.default_rng(3)), "mlp/adam/f32", steps=2, epoch=True)


def group_layers(name: str, chk_for) -> None:
    for dtype in ("f64", "f32"):
        cpu, npm = pair(LAYERS[name], f"{name}.grad", dtype=dtype)
        inputs = draw_inputs(cpu.SIGNATURE, {"B": 5, "T": 3}, np.random.default_rng(4))
        compare(chk_for(dtype), cpu, npm, inputs, f"{name}/{dtype}", epoch=True)
        if dtype == "f64":
            errors(chk_for(dtype), cpu, npm, inputs, name)


def group_ops(name: str, chk_for) -> None:
    from tests.harness.op_specs import Group
    grp = Group(name, OP_GROUPS[name])
    cpu, npm = pair(grp.text, grp.filename, dtype="f64", wrt=list(grp.wrt))
    compare(chk_for("f64"), cpu, npm, dict(grp.inputs), f"ops-{name}", params=grp.params,
            steps=1)


def run_group(name: str, make_checker) -> None:
    """Run group ``name`` (``kind-arg``), each comparison with a checker of its dtype
    (both targets return NumPy arrays)."""
    def chk_for(dtype):
        return make_checker(np.asarray, TOL[dtype], FLOOR[dtype])

    kind, _, arg = name.partition("-")
    {"example": lambda: group_example(arg, chk_for),
     "optimizers": lambda: group_optimizers(chk_for),
     "layers": lambda: group_layers(arg, chk_for),
     "ops": lambda: group_ops(arg, chk_for)}[kind]()


def main(names: list[str]) -> None:
    """Run the groups ``names`` and print their results."""
    np.seterr(all="ignore")
    warnings.simplefilter("ignore", RuntimeWarning)
    run_groups(names, run_group)


if __name__ == "__main__":
    main(sys.argv[1:])
