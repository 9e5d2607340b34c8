"""The numpy target: vectorised NumPy modules that agree with the CPU target.

Agreement (the pattern of ``tests/test_cuda_sim.py``, whose helpers it imports): every
example (in float64, shapes shrunk as for the simulator), the optimizers, the layer models
and every op-spec group are compiled for both targets, which run ``forward`` and ``loss``
(and their training mode), ``jvp``, ``vjp``, ``loss_and_grad``, ``hvp``,
``train_step`` and ``train_epoch`` (with dropout noise where a model has it) and must
agree to 1e-12 relative in float64 (norm-wise, per array; 1e-5 in float32). Out-of-range
labels and indices raise the CPU target's ValueError, word for word.

The groups run in worker subprocesses (this file as a script, several groups per worker,
two workers at most) where the CPU target runs with ``NUMBA_DISABLE_JIT=1``: the same
generated code, interpreted, instead of minutes of Numba compilation
(``GRADC_NUMPY_CPU_JIT=1`` compiles it). By hand:
``NUMBA_DISABLE_JIT=1 python tests/test_numpy_target.py GROUP [GROUP ...]``.

The other tests need no CPU kernels: the module imports NumPy alone and runs with Numba and
gradc unimportable, its kernels loop over no elements, and ``gradc compile --target numpy``
writes it.
"""

from __future__ import annotations

import ast
import collections
import json
import os
import subprocess
import sys
import textwrap
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from op_specs import GROUPS as OP_GROUPS  # noqa: E402
from test_cuda_sim import (EXAMPLES, LAYERS, SHRINK, Checker, draw_inputs,  # noqa: E402
                           interpret_like_compiled)

TOL = {"f32": 1e-5, "f64": 1e-12}
#: norms below this count as this (values that cancel to rounding noise)
FLOOR = {"f32": 1e-3, "f64": 1e-6}
WORKERS = 2
GROUP_NAMES = [*[f"example-{p.stem}" for p in sorted(EXAMPLES.glob("*.grad"))], "optimizers",
               *[f"layers-{k}" for k in LAYERS], *[f"ops-{g}" for g in OP_GROUPS]]


# ---------------------------------------------------------------------- the pytest side
def _run_workers(names: list[str]) -> dict:
    """Run ``names`` in at most WORKERS subprocesses: name -> result."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), str(HERE), os.environ.get("PYTHONPATH", "")]))
    if os.environ.get("GRADC_NUMPY_CPU_JIT") != "1":
        env["NUMBA_DISABLE_JIT"] = "1"
    n = max(1, min(WORKERS, os.cpu_count() or 1, len(names)))

    def work(chunk: list[str]) -> dict:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *chunk],
                              env=env, capture_output=True, text=True, timeout=1800,
                              cwd=str(ROOT))
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
    with ThreadPoolExecutor(max_workers=n) as pool:
        for part in pool.map(work, [names[k::n] for k in range(n)]):
            results.update(part)
    return results


@pytest.fixture(scope="module")
def results(request):
    """The selected groups' results, computed once: name -> {checks, failures}."""
    wanted = [it.callspec.params["group"] for it in request.session.items
              if it.module is sys.modules[__name__] and hasattr(it, "callspec")
              and "group" in it.callspec.params]
    return _run_workers(wanted)


@pytest.mark.parametrize("group", GROUP_NAMES)
def test_numpy_matches_cpu(results, group):
    res = results[group]
    assert not res["failures"], f"{group}:\n" + "\n".join(res["failures"])
    assert res["checks"] > 0, f"{group}: nothing was checked"


def _numpy_module(stem: str, **options):
    import gradc
    return gradc.compile(EXAMPLES / f"{stem}.grad", target="numpy", **options)


def _imports(src: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    return names


@pytest.mark.parametrize("stem", ["cnn", "char_rnn", "attention_block"])
def test_module_imports_numpy_alone_and_loops_over_no_elements(stem):
    model = _numpy_module(stem)
    src = model.source
    assert _imports(src) <= {"numpy", "math", "difflib", "threading", "functools",
                             "importlib", "warnings", "os", "ctypes", "time"}, _imports(src)
    assert "target numpy" in ast.get_docstring(ast.parse(src))
    kernels = [f for f in ast.parse(src).body if isinstance(f, ast.FunctionDef)
               and f.name.endswith("_" + model.module._KEY[:12])]
    assert kernels
    for fn in kernels:  # only time steps and kernel-window offsets are looped over
        loops = [n.target.id for n in ast.walk(fn) if isinstance(n, (ast.For, ast.While))]
        assert set(loops) <= {"t_", "kh_", "kw_"}, (fn.name, loops)


RUNNER = textwrap.dedent("""
    import importlib.util, json, sys
    sys.modules["numba"] = None   # neither numba nor gradc can be imported
    sys.modules["gradc"] = None
    import numpy as np
    spec = importlib.util.spec_from_file_location("gen", sys.argv[1])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    p = mod.init_params(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, 6)
    first = mod.loss(p, x=x, y=y)
    epoch = mod.train_epoch(p, 0.1, batch_size=4, x=x, y=y)
    print(json.dumps([first, epoch, mod.loss(p, x=x, y=y)]))
""")


def test_cli_compile_target_numpy_runs_without_numba(tmp_path):
    from gradc.cli import main
    out = tmp_path / "cnn_np.py"
    assert main(["compile", str(EXAMPLES / "cnn.grad"), "--target", "numpy",
                 "-o", str(out)]) == 0
    assert "import numba" not in out.read_text(encoding="utf-8")
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(out)], capture_output=True,
                          text=True, timeout=120, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    first, epoch, after = json.loads(proc.stdout)
    assert np.isfinite([first, epoch, after]).all() and after < first


# ---------------------------------------------------------------------- the worker side
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


def compare(chk: Checker, cpu, npm, inputs: dict, label: str, params=None, steps: int = 2,
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


def errors(chk: Checker, cpu, npm, inputs: dict, label: str) -> None:
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
    text = (EXAMPLES / f"{stem}.grad").read_text(encoding="utf-8")
    for old, new in SHRINK.get(stem, {}).items():
        text = text.replace(old, new)
    cpu, npm = pair(text, f"{stem}.grad", dtype="f64")
    dims = collections.defaultdict(lambda: 2, B=5)  # any other dim (T, L, N): 2
    inputs = draw_inputs(cpu.SIGNATURE, dims, np.random.default_rng(0))
    compare(chk_for("f64"), cpu, npm, inputs, stem, epoch=True)
    errors(chk_for("f64"), cpu, npm, inputs, stem)


def group_optimizers(chk_for) -> None:
    text = (EXAMPLES / "mlp.grad").read_text(encoding="utf-8")
    for old, new in SHRINK["mlp"].items():
        text = text.replace(old, new)
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
    from op_specs import Group
    grp = Group(name, OP_GROUPS[name])
    cpu, npm = pair(grp.text, grp.filename, dtype="f64", wrt=list(grp.wrt))
    compare(chk_for("f64"), cpu, npm, dict(grp.inputs), f"ops-{name}", params=grp.params,
            steps=1)


def run_group(name: str) -> dict:
    """Run group ``name``: {checks, failures}."""
    checkers = []

    def chk_for(dtype):
        chk = Checker(_ToHost(), dtype)
        chk.tol, chk.floor = TOL[dtype], FLOOR[dtype]
        checkers.append(chk)
        return chk

    kind, _, arg = name.partition("-")
    try:
        {"example": lambda: group_example(arg, chk_for),
         "optimizers": lambda: group_optimizers(chk_for),
         "layers": lambda: group_layers(arg, chk_for),
         "ops": lambda: group_ops(arg, chk_for)}[kind]()
    except Exception as e:  # noqa: BLE001 - reported as the group's failure
        import traceback
        return {"checks": 0, "failures": [f"{type(e).__name__}: {e}\n"
                                          f"{traceback.format_exc()[-3000:]}"]}
    return {"checks": sum(c.checks for c in checkers),
            "failures": [f for c in checkers for f in c.failures]}


class _ToHost:
    """What :class:`Checker` converts results with (both targets return NumPy arrays)."""

    to_host = staticmethod(np.asarray)


def main(names: list[str]) -> None:
    """Run each group of ``names`` and print ``RESULT name {json}`` for each."""
    np.seterr(all="ignore")
    warnings.simplefilter("ignore", RuntimeWarning)
    for name in names:
        res = run_group(name)
        for f in res["failures"]:
            print("FAIL", name, f)
        print(f"RESULT {name} " + json.dumps(res), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
