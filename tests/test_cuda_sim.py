"""The CUDA target against the CPU target, under the CUDA simulator (no GPU needed).

Each group of models runs in a subprocess (this file as a script) with
``NUMBA_ENABLE_CUDASIM=1`` set before numba is imported, so no other test module sees the
simulator; groups run side by side on the available cores. Both targets run ``forward``,
``loss``, ``loss_and_grad``, ``hvp``, ``train_step`` (and jvp/vjp, train_epoch,
training-mode forward and loss, device inputs, user errors where a group says so) and must
agree: 1e-5 relative in float32, 1e-10 in float64 (norm-wise, per array).

Speed: the simulator runs each CUDA thread as a Python thread, so the generated module
launches tiny grids under it (8 threads a block, at most 2 blocks: every grid-stride,
multi-block and multi-tile path still runs), shapes are tiny, and the worker shortens
Python's thread switch interval (the simulator polls its threads). The CPU target runs
with ``NUMBA_DISABLE_JIT=1``: the same generated code, interpreted, instead of minutes of
Numba compilation (``GRADC_CUDA_SIM_CPU_JIT=1`` compiles it).

By hand: ``NUMBA_ENABLE_CUDASIM=1 NUMBA_DISABLE_JIT=1 python tests/test_cuda_sim.py GROUP``.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import math
import os
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
EXAMPLES = ROOT / "examples"
TOL = {"f32": 1e-5, "f64": 1e-10}
#: norms below this count as this (values that cancel to ~0, e.g. the gradient of a shift
#: that batchnorm removes, differ in rounding noise only)
FLOOR = {"f32": 1e-3, "f64": 1e-6}
#: examples whose shapes are shrunk for the simulator (text replacements)
SHRINK = {"mlp": {"3072": "12", "100": "5"}, "svm": {"3073": "13"}, "spiral": {"100": "6"},
          "cnn": {"1 -> 8": "1 -> 2", "8 -> 16": "2 -> 3", "64 -> 10": "12 -> 10"},
          "char_rnn": {"16 -> 64": "16 -> 6", "64 -> 16": "6 -> 16"}}

#: small models covering the layers (conv2d, pooling, layernorm, batchnorm, dropout,
#: embedding, rnn, attention, concat, slices, indexing, take)
LAYERS = {
    "conv": """model conv
input x : f32[B, 2, 6, 6]
input y : i64[B]
layer c1 = conv2d(2 -> 3, 3, stride=1, pad=1)
layer c2 = conv2d(3 -> 2, 2, stride=2)
layer mp = maxpool2d(2)
layer ap = avgpool2d(2)
layer fc = dense(2 -> 4)
h = x |> c1 |> relu |> mp
a = x |> ap
z = reshape(h |> c2 |> relu, [B, -1])
output logits = z[:, 0:2] |> fc
loss = cross_entropy(logits, y) + 0.1 * sum(a ^ 2) + 0.01 * l2(c1.W)
""",
    "norm": """model norm
input x : f32[B, 4]
input y : i64[B]
layer ln = layernorm(4)
layer bn = batchnorm(4)
layer drop = dropout(0.25)
layer fc = dense(4 -> 3)
output logits = x |> bn |> tanh |> ln |> drop |> fc
loss = cross_entropy(logits, y)
""",
    "seq": """model seq
input tok : i64[B, T]
input y : i64[B]
layer emb = embedding(7 -> 4)
layer r = rnn(4 -> 4)
layer att = attention(4, 2)
layer fc = dense(8 -> 3)
e = tok |> emb
h = e |> r
s = h + (h |> att)
last = concat(s[:, -1], s[:, 0], axis=-1)
output logits = last |> fc
loss = cross_entropy(logits, y) + 0.1 * mean(take(e, y, 1) ^ 2)
""",
}


# ---------------------------------------------------------------------- the pytest side
def _run_group(name: str) -> dict:
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=os.pathsep.join(
        [str(ROOT), str(HERE), os.environ.get("PYTHONPATH", "")]))
    if os.environ.get("GRADC_CUDA_SIM_CPU_JIT") != "1":
        env["NUMBA_DISABLE_JIT"] = "1"
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), name], env=env,
                          capture_output=True, text=True, timeout=900, cwd=str(ROOT))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {"checks": 0, "failures": [
            f"worker exited with {proc.returncode}:\n{proc.stdout[-2000:]}\n"
            f"{proc.stderr[-4000:]}"]}
    return json.loads(lines[-1][len("RESULT "):])


sys.path.insert(0, str(HERE))
from op_specs import GROUPS as OP_GROUPS  # noqa: E402

GROUP_NAMES = [*[f"example-{p.stem}" for p in sorted(EXAMPLES.glob("*.grad"))], "optimizers",
               *[f"layers-{k}" for k in LAYERS],
               *[f"ops-{g}" for g in OP_GROUPS]]
needs_cuda = pytest.mark.skipif(importlib.util.find_spec("numba_cuda") is None,
                                reason="numba-cuda is not installed (pip install gradc[cuda])")


@pytest.fixture(scope="module")
def results(request):
    """The workers of the selected groups, ``os.cpu_count()`` at a time: name -> result."""
    wanted = [it.callspec.params["group"] for it in request.session.items
              if it.module is sys.modules[__name__] and hasattr(it, "callspec")]
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        return dict(zip(wanted, pool.map(_run_group, wanted)))


@needs_cuda
@pytest.mark.parametrize("group", GROUP_NAMES)
def test_cuda_matches_cpu(results, group):
    res = results[group]
    assert not res["failures"], f"{group}:\n" + "\n".join(res["failures"])
    assert res["checks"] > 0, f"{group}: nothing was checked"


# ---------------------------------------------------------------------- the worker side
def cuda_module(text: str, filename: str, **options):
    """The generated CUDA module of ``text``."""
    import gradc
    return gradc.compile_string(text, name=filename, target="cuda", **options).module


class NanMath:
    """``math`` as compiled code sees it: NaN and inf, not the exceptions that kernels run
    as Python (simulator, interpreted CPU code) would raise (``math.sqrt(-1)``)."""

    def __init__(self):
        for name in ("sqrt", "exp", "log", "log1p", "expm1", "tanh", "sin", "cos", "tan"):
            setattr(self, name, getattr(np, name))

    def __getattr__(self, name):
        return getattr(math, name)


def interpret_like_compiled(module):
    """Give ``module`` (whose kernels run as Python) the NaN-returning ``math``."""
    module.math = NanMath()
    return module


class Checker:
    """Collects comparisons of CUDA results (device or NumPy) with CPU ones."""

    def __init__(self, gpu, dtype: str):
        self.gpu, self.tol, self.floor = gpu, TOL[dtype], FLOOR[dtype]
        self.checks, self.failures = 0, []

    def close(self, label: str, got, want, device: bool = False) -> None:
        self.checks += 1
        if device and not hasattr(got, "copy_to_host"):
            self.failures.append(f"{label}: expected a device array, got {type(got)}")
            return
        got, want = np.asarray(self.gpu.to_host(got), np.float64), np.asarray(want, np.float64)
        if got.shape != want.shape:
            self.failures.append(f"{label}: shape {got.shape} != {want.shape}")
            return
        bad = ~np.isfinite(want)
        if np.array_equal(bad, ~np.isfinite(got)):  # NaN and inf where the CPU has them
            got, want = np.where(bad, 0, got), np.where(bad, 0, want)
        diff = float(np.linalg.norm((got - want).ravel()))
        e = diff / max(float(np.linalg.norm(want.ravel())), self.floor) if diff else 0.0
        if not e <= self.tol:
            self.failures.append(f"{label}: relative error {e:.3g} > {self.tol:g}")

    def dicts(self, label: str, got: dict, want: dict, device: bool = False) -> None:
        if set(got) != set(want):
            self.failures.append(f"{label}: keys {sorted(got)} != {sorted(want)}")
        for k in want:
            if k in got:
                self.close(f"{label}[{k}]", got[k], want[k], device)


def draw_inputs(sig: dict, dims: dict, rng) -> dict:
    """Values for every input: labels/indices in [0, 2), floats standard normal."""
    types = {"i32": np.int32, "i64": np.int64, "f32": np.float32, "f64": np.float64}
    return {name: (rng.integers(0, 2, shp) if dtype[0] == "i" else rng.standard_normal(shp))
            .astype(types[dtype]) for name, (dtype, shape) in sig["inputs"].items()
            for shp in [[dims[d] if isinstance(d, str) else d for d in shape]]}


def compare(chk: Checker, cpu, gpu, inputs: dict, label: str, params=None, steps: int = 2,
            jvp: bool = False, epoch: bool = False, device: bool = False) -> None:
    """Run the entries of the model on both targets and compare (see module docstring)."""
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
    text = (EXAMPLES / f"{stem}.grad").read_text(encoding="utf-8")
    for old, new in SHRINK.get(stem, {}).items():
        text = text.replace(old, new)
    cpu, gpu = pair(text, f"{stem}.grad")
    dims = collections.defaultdict(lambda: 2, B=3)  # any other dim (T, L, N): 2
    compare(chk_for(cpu.SIGNATURE["float"], gpu), cpu, gpu, draw_inputs(
        cpu.SIGNATURE, dims, np.random.default_rng(0)), stem, jvp=True, device=stem == "mlp")


def group_optimizers(chk_for) -> None:
    text = (EXAMPLES / "mlp.grad").read_text(encoding="utf-8")
    for old, new in SHRINK["mlp"].items():
        text = text.replace(old, new)
    for opt in ("sgd", "momentum", "adam"):
        cpu, gpu = pair(text, "mlp.grad", optimizer=opt)
        inputs = draw_inputs(cpu.SIGNATURE, {"B": 5}, np.random.default_rng(2))
        compare(chk_for("f32", gpu), cpu, gpu, inputs, f"mlp/{opt}", steps=3,
                epoch=opt != "momentum")
    cpu, gpu = pair(text, "mlp.grad", dtype="f64", optimizer="adam")
    compare(chk_for("f64", gpu), cpu, gpu, draw_inputs(cpu.SIGNATURE, {"B": 4},
            np.random.default_rng(3)), "mlp/adam/f64", steps=2)
    errors(chk_for("f64", gpu), cpu, gpu)


def errors(chk: Checker, cpu, gpu) -> None:
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
    from op_specs import Group
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


def main(name: str) -> None:
    """Run group ``name`` and print ``RESULT {json}``."""
    sys.setswitchinterval(5e-5)
    np.seterr(all="ignore")
    warnings.simplefilter("ignore", RuntimeWarning)  # (seterr is per thread)
    assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", "run with NUMBA_ENABLE_CUDASIM=1"
    patch_simulator_shared()
    checkers = []

    def chk_for(dtype, gpu):
        checkers.append(Checker(gpu, dtype))
        return checkers[-1]

    kind, _, arg = name.partition("-")
    {"example": lambda: group_example(arg, chk_for), "optimizers": lambda: group_optimizers(
        chk_for), "layers": lambda: group_layers(arg, chk_for),
     "ops": lambda: group_ops(arg, chk_for)}[kind]()
    failures = [f for c in checkers for f in c.failures]
    for f in failures:
        print("FAIL", f)
    print("RESULT " + json.dumps({"checks": sum(c.checks for c in checkers),
                                  "failures": failures}))


if __name__ == "__main__":
    main(sys.argv[1])
