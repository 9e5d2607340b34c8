"""What the target-agreement tests share (the CUDA target under the simulator and the
numpy target, each against the CPU target): the groups of models, the comparison of two
targets' results, the inputs, and the pytest side that runs the groups in worker
subprocesses.

A worker is a harness module run as ``python -m tests.harness.MODULE GROUP [GROUP ...]``
(from the checkout's root) that prints one line ``RESULT GROUP {"checks": N, "failures":
[...]}`` per group; a group without such a line failed with the worker's output.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tests.harness.op_specs import GROUPS as OP_GROUPS
from tests.harness.paths import EXAMPLES, ROOT

#: examples whose shapes are shrunk for the simulator (text replacements); the examples
#: with grad inside also lose their loss weights (100, 10, 2π²): the groups' SGD steps
#: (lr 0.1, inputs drawn standard normal) diverge on them (loss 1e18), where rounding
#: differences grow without bound and no two targets can agree
SHRINK = {"mlp": {"3072": "12", "100": "5"}, "svm": {"3073": "13"}, "spiral": {"100": "6"},
          "cnn": {"1 -> 8": "1 -> 2", "8 -> 16": "2 -> 3", "64 -> 10": "12 -> 10"},
          "resnet_digits": {"1 -> 8": "1 -> 2", "resconv(8)": "resconv(2)",
                            "dense(32 -> 10)": "dense(8 -> 10)"},
          "char_rnn": {"16 -> 64": "16 -> 6", "64 -> 16": "6 -> 16"},
          "lstm_chars": {"(16 -> 16)": "(16 -> 4)", "(16 -> 32)": "(4 -> 3)",
                         "(32 -> 16)": "(3 -> 16)"},
          "tiny_gpt": {"(16 -> 32)": "(16 -> 4)", "layernorm(32)": "layernorm(4)",
                       "attention(32, 4,": "attention(4, 2,", "(32 -> 64)": "(4 -> 6)",
                       "(64 -> 32)": "(6 -> 4)", "(32 -> 16)": "(4 -> 16)"},
          "pinn_oscillator": {"-> 32)": "-> 4)", "(32 ->": "(4 ->"},
          "pinn_poisson": {"-> 32)": "-> 4)", "(32 ->": "(4 ->", "2 * pi ^ 2 *": "",
                           "100 *": ""},
          "gradient_penalty": {"-> 64)": "-> 5)", "(64 ->": "(5 ->", "10 *": ""}}

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

#: every group: each example, the optimizers, each layer model, each op-spec group
GROUP_NAMES = [*[f"example-{p.stem}" for p in sorted(EXAMPLES.glob("*.grad"))], "optimizers",
               *[f"layers-{k}" for k in LAYERS], *[f"ops-{g}" for g in OP_GROUPS]]


def shrunk_example(stem: str) -> str:
    """The text of ``examples/STEM.grad`` with the shapes of :data:`SHRINK`."""
    text = (EXAMPLES / f"{stem}.grad").read_text(encoding="utf-8")
    for old, new in SHRINK.get(stem, {}).items():
        text = text.replace(old, new)
    return text


# ---------------------------------------------------------------------- the pytest side
def selected(request, module_name: str) -> list[str]:
    """The ``group`` parameters of the items of test module ``module_name`` this session
    runs (so that ``-k`` runs only the groups it selects)."""
    return [it.callspec.params["group"] for it in request.session.items
            if it.module.__name__ == module_name and hasattr(it, "callspec")
            and "group" in it.callspec.params]


def run_workers(worker: str, chunks: list[list[str]], env: dict, processes: int,
                timeout: float) -> dict:
    """Run ``python -m WORKER CHUNK...`` for each chunk, ``processes`` at a time, with
    ``env``: group name -> {checks, failures}."""
    env = dict(env, PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))

    def work(chunk: list[str]) -> dict:
        proc = subprocess.run([sys.executable, "-m", worker, *chunk], env=env,
                              capture_output=True, text=True, timeout=timeout, cwd=str(ROOT))
        out = {}
        for line in proc.stdout.splitlines():
            if line.startswith("RESULT "):
                name, _, blob = line[len("RESULT "):].partition(" ")
                out[name] = json.loads(blob)
        for name in chunk:
            out.setdefault(name, {"checks": 0, "failures": [
                f"worker exited with {proc.returncode}:\n{proc.stdout[-2000:]}\n"
                f"{proc.stderr[-4000:]}"]})
        return out

    results = {}
    with ThreadPoolExecutor(max_workers=max(1, processes)) as pool:
        for part in pool.map(work, chunks):
            results.update(part)
    return results


def check_result(results: dict, group: str) -> None:
    """Fail with the group's failures, or when it checked nothing."""
    res = results[group]
    assert not res["failures"], f"{group}:\n" + "\n".join(res["failures"])
    assert res["checks"] > 0, f"{group}: nothing was checked"


# ---------------------------------------------------------------------- the worker side
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
    """Collects comparisons of one target's results (``to_host`` makes them NumPy arrays)
    with the CPU target's: relative error (norm-wise, per array) at most ``tol``, norms
    below ``floor`` counting as ``floor``."""

    def __init__(self, to_host, tol: float, floor: float):
        self.to_host, self.tol, self.floor = to_host, tol, floor
        self.checks, self.failures = 0, []

    def close(self, label: str, got, want, device: bool = False) -> None:
        self.checks += 1
        if device and not hasattr(got, "copy_to_host"):
            self.failures.append(f"{label}: expected a device array, got {type(got)}")
            return
        got, want = np.asarray(self.to_host(got), np.float64), np.asarray(want, np.float64)
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


def run_groups(names: list[str], run_group) -> None:
    """The worker's main: :func:`group_result` of each name, printed as ``RESULT name
    {json}`` (and each failure as a ``FAIL`` line)."""
    for name in names:
        res = group_result(name, run_group)
        for f in res["failures"]:
            print("FAIL", name, f)
        print(f"RESULT {name} " + json.dumps(res), flush=True)


def group_result(name: str, run_group) -> dict:
    """``run_group(name, make_checker)``, where ``make_checker(to_host, tol, floor)`` makes
    a :class:`Checker`: {checks, failures} of all of them (an exception is the failure)."""
    import traceback
    checkers = []

    def make_checker(*args) -> Checker:
        checkers.append(Checker(*args))
        return checkers[-1]

    try:
        run_group(name, make_checker)
    except Exception as e:  # noqa: BLE001 - reported as the group's failure
        return {"checks": 0, "failures": [f"{type(e).__name__}: {e}\n"
                                          f"{traceback.format_exc()[-3000:]}"]}
    return {"checks": sum(c.checks for c in checkers),
            "failures": [f for c in checkers for f in c.failures]}
