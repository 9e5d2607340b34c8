"""The worker of ``tests/codegen/cuda/test_simulator.py``: runs groups of models (see
:mod:`tests.harness.agreement`) on the CUDA target under the simulator and on the CPU
target, and compares every entry (see that test's docstring).

By hand, from the checkout's root::

    NUMBA_ENABLE_CUDASIM=1 NUMBA_DISABLE_JIT=1 python -m tests.harness.cuda_sim GROUP [GROUP ...]
"""

from __future__ import annotations

import collections
import os
import sys
import warnings

import numpy as np

from tests.harness.agreement import (LAYERS, OP_GROUPS, draw_inputs, interpret_like_compiled,
                                     run_groups, shrunk_example)

TOL = {"f32": 1e-5, "f64": 1e-10}
#: norms below this count as this (values that cancel to ~0, e.g. the gradient of a shift
#: that batchnorm removes, differ in rounding noise only)
FLOOR = {"f32": 1e-3, "f64": 1e-6}


def cuda_module(text: str, filename: str, **options):
    """The generated CUDA module of ``text``."""
    import gradc
    return gradc.compile_string(text, name=filename, target="cuda", **options).module


def compare(chk, cpu, gpu, inputs: dict, label: str, params=None, steps: int = 2,
            jvp: bool = False, epoch: bool = False, device: bool = False) -> None:
    """Run the entries of the model on both targets and compare (see the test's
    docstring)."""
    sig, rng = cpu.SIGNATURE, np.random.default_rng(1)
    if params is None:
        pc, pg = cpu.init_params(0), gpu.init_params(0)
        chk.dicts(f"{label} init_params", pg, pc, device=True)
    else:  # NumPy params on the CUDA target: copied per call, written back by train_step
        pc = {k: np.array(v) for k, v in params.items()}
        pg = {k: np.array(v) for k, v in params.items()}
    sc, sg = {}, {}

    def both(fn, **kw):
        return getattr(gpu, fn)(pg, state=sg, **kw), getattr(cpu, fn)(pc, state=sc, **kw)

    if sig["outputs"]:
        chk.dicts(f"{label} forward", *both("forward", **inputs))
        if sig["buffers"] or sig["noise"]:
            chk.dicts(f"{label} forward(training)", *both("forward", training=True, seed=3,
                                                          **inputs))
        if jvp:
            tans = {k: np.asarray(rng.standard_normal(np.shape(pc.get(k, inputs.get(k)))),
                                  np.asarray(pc.get(k, inputs.get(k))).dtype)
                    for k in sig["tangents"]}
            (og, tg), (oc, tc) = both("jvp", tangents=tans, **inputs)
            chk.dicts(f"{label} jvp outputs", og, oc)
            chk.dicts(f"{label} jvp tangents", tg, tc)
            outs = cpu.forward(pc, state=sc, **inputs)
            cots = {k: np.asarray(rng.standard_normal(np.shape(v)), np.asarray(v).dtype)
                    for k, v in outs.items()}
            chk.dicts(f"{label} vjp", *both("vjp", cotangents=cots, **inputs))
    if device:
        from numba import cuda
        dev = {k: cuda.to_device(v) for k, v in inputs.items()}
        chk.dicts(f"{label} forward(device inputs)", gpu.forward(pg, state=sg, **dev),
                  cpu.forward(pc, state=sc, **inputs), device=True)
    if not sig["loss"]:
        return
    (lg, gg), (lc, gc) = both("loss_and_grad", seed=5, **inputs)
    chk.close(f"{label} loss", lg, lc)
    chk.dicts(f"{label} grads", gg, gc)
    chk.close(f"{label} loss entry", *both("loss", seed=5, **inputs))
    if sig["buffers"] or sig["noise"]:
        chk.close(f"{label} loss entry(training)", *both("loss", training=True, seed=5,
                                                         **inputs))
    vec = {k: np.asarray(rng.standard_normal(np.shape(pc.get(k, inputs.get(k)))),
                         np.asarray(pc.get(k, inputs.get(k))).dtype) for k in sig["tangents"]}
    chk.dicts(f"{label} hvp", *both("hvp", vector=vec, seed=5, **inputs))
    for t in range(steps):
        chk.close(f"{label} train_step {t}", *both("train_step", lr=0.1, seed=7 + t, **inputs))
    chk.dicts(f"{label} params after train_step", pg, pc)
    chk.dicts(f"{label} state", {k: v for k, v in sg.items() if ":" in k},
              {k: v for k, v in sc.items() if ":" in k})
    if epoch:
        chk.close(f"{label} train_epoch", *both("train_epoch", lr=0.05, batch_size=2, seed=0,
                                                **inputs))
        n = len(next(iter(inputs.values())))       # an order with a repeat, a row left out
        chk.close(f"{label} train_epoch(order)", *both(
            "train_epoch", lr=0.05, batch_size=2, seed=1,
            order=np.array([n - 1, 0, n - 1, 1, 0]), **inputs))
        chk.dicts(f"{label} params after train_epoch", pg, pc)


def pair(text: str, filename: str, **options):
    """The CPU and CUDA modules of one model."""
    import gradc
    cpu = gradc.compile_string(text, name=filename, **options).module
    if os.environ.get("NUMBA_DISABLE_JIT") == "1":
        interpret_like_compiled(cpu)
    return cpu, interpret_like_compiled(cuda_module(text, filename, **options))


def group_example(stem: str, chk_for) -> None:
    cpu, gpu = pair(shrunk_example(stem), f"{stem}.grad")
    dims = collections.defaultdict(lambda: 2, B=3)  # any other dim (T, L, N): 2
    compare(chk_for(cpu.SIGNATURE["float"], gpu), cpu, gpu, draw_inputs(
        cpu.SIGNATURE, dims, np.random.default_rng(0)), stem, jvp=True, device=stem == "mlp")


def group_optimizers(chk_for) -> None:
    text = shrunk_example("mlp")
    for opt in ("sgd", "momentum", "adam"):
        cpu, gpu = pair(text, "mlp.grad", optimizer=opt)
        inputs = draw_inputs(cpu.SIGNATURE, {"B": 5}, np.random.default_rng(2))
        compare(chk_for("f32", gpu), cpu, gpu, inputs, f"mlp/{opt}", steps=3,
                epoch=opt != "momentum")
    cpu, gpu = pair(text, "mlp.grad", dtype="f64", optimizer="adam")
    compare(chk_for("f64", gpu), cpu, gpu, draw_inputs(cpu.SIGNATURE, {"B": 4},
            np.random.default_rng(3)), "mlp/adam/f64", steps=2)
    errors(chk_for("f64", gpu), cpu, gpu)


def errors(chk, cpu, gpu) -> None:
    """User mistakes raise the CPU target's ValueError; a failed train_step leaves the
    params alone; NumPy params are updated in place like on the CPU."""
    inputs = draw_inputs(cpu.SIGNATURE, {"B": 4}, np.random.default_rng(5))
    bad = {**inputs, "y": np.array([0, 1, 10, 2])}
    x32 = inputs["x"].astype(np.float32)
    cases = {"label out of range": bad, "wrong dtype": {**inputs, "x": x32},
             "wrong shape": {**inputs, "y": inputs["y"][:3]},
             "non-contiguous": {**inputs, "x": np.asfortranarray(inputs["x"])},
             "unknown input": {**inputs, "z": x32}}
    pg, before = gpu.init_params(0), cpu.init_params(0)
    for what, args in cases.items():
        last = None
        for fn in (cpu, gpu):
            chk.checks += 1
            try:
                fn.train_step(pg if fn is gpu else cpu.init_params(0), 0.1, state={}, **args)
                chk.failures.append(f"{what}: {fn.__name__} raised nothing")
            except ValueError as e:
                if fn is gpu and str(e) != str(last):
                    chk.failures.append(f"{what}: CUDA says {e}, the CPU {last}")
                last = e
    chk.dicts("params after failed train_steps", pg, before)
    pn, pc = gpu.init_params(0, device=False), cpu.init_params(0)
    chk.close("numpy param train_step", gpu.train_step(pn, 0.1, state={}, **inputs),
              cpu.train_step(pc, 0.1, state={}, **inputs))
    chk.dicts("numpy params after train_step", pn, pc)


def group_layers(name: str, chk_for) -> None:
    for dtype in ("f32", "f64"):
        cpu, gpu = pair(LAYERS[name], f"{name}.grad", dtype=dtype)
        compare(chk_for(dtype, gpu), cpu, gpu, draw_inputs(cpu.SIGNATURE, {"B": 4, "T": 3},
                np.random.default_rng(4)), f"{name}/{dtype}", jvp=True, epoch=dtype == "f32")


def group_ops(name: str, chk_for) -> None:
    from tests.harness.op_specs import Group
    grp = Group(name, OP_GROUPS[name])
    cpu, gpu = pair(grp.text, grp.filename, dtype="f64", wrt=list(grp.wrt))
    compare(chk_for("f64", gpu), cpu, gpu, dict(grp.inputs), f"ops-{name}",
            params=grp.params, steps=1, jvp=True)


def patch_simulator_shared() -> None:
    """Make the simulator's ``cuda.shared.array`` thread-safe (it looks the array up by
    call site and creates it if missing, unlocked: two threads preempted in between get
    different arrays; the short switch interval makes that frequent)."""
    import threading

    from numba.cuda.simulator import kernelapi
    lock, original = threading.Lock(), kernelapi.FakeCUDAShared.array

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:
            return original(self, shape, dtype, alignment)
        if isinstance(dtype, kernelapi.types.Type):
            dtype = kernelapi.numpy_support.as_dtype(dtype)
        caller = (sys._getframe(1).f_code.co_filename, sys._getframe(1).f_lineno)
        with lock:
            if caller not in self._allocations:
                self._allocations[caller] = np.empty(shape, dtype)
            return self._allocations[caller]

    kernelapi.FakeCUDAShared.array = array


def run_group(name: str, make_checker) -> None:
    """Run group ``name`` (``kind-arg``), each comparison with a checker of its dtype."""
    def chk_for(dtype, gpu):
        return make_checker(gpu.to_host, TOL[dtype], FLOOR[dtype])

    kind, _, arg = name.partition("-")
    {"example": lambda: group_example(arg, chk_for), "optimizers": lambda: group_optimizers(
        chk_for), "layers": lambda: group_layers(arg, chk_for),
     "ops": lambda: group_ops(arg, chk_for)}[kind]()


def main(names: list[str]) -> None:
    """Run the groups ``names`` under the simulator and print their results."""
    sys.setswitchinterval(5e-5)
    np.seterr(all="ignore")
    warnings.simplefilter("ignore", RuntimeWarning)  # (seterr is per thread)
    assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", "run with NUMBA_ENABLE_CUDASIM=1"
    patch_simulator_shared()
    run_groups(names, run_group)


if __name__ == "__main__":
    main(sys.argv[1:])
