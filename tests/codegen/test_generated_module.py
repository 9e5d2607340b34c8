"""The generated module on its own (SPEC §4): it runs without gradc, gives the API's results,
reuses Numba's on-disk cache in a new process, mangles every model name, and reads well."""

from __future__ import annotations

import ast
import json
import keyword
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import gradc
from gradc.codegen.assemble import DIM_PREFIX, ROLE_PREFIX
from gradc.options import OPTIMIZERS

from tests.harness.paths import EXAMPLES

ALLOWED_IMPORTS = {"math", "numpy", "numba", "difflib", "threading", "functools", "importlib",
                   "warnings", "os", "ctypes", "time"}
#: every prefix a generated variable of a model name may carry: a leaf's role, a dim, an
#: optimizer's state slot (read from the library, so a new slot or role cannot drift)
PREFIXES = (*ROLE_PREFIX.values(), DIM_PREFIX,
            *{f"{slot}_" for rule in OPTIMIZERS.values() for slot in rule.states})

# Run in a fresh interpreter, with ``import gradc`` made impossible. Loads the module
# from argv[1]/argv[2].py, runs the calls that argv[3] (JSON) asks for on the arrays of
# argv[4] (.npz: "p:NAME" params, "x:NAME" inputs) and writes the results to argv[5].
RUNNER = textwrap.dedent("""
    import sys
    sys.modules["gradc"] = None          # `import gradc` now raises ImportError
    import importlib, json
    import numpy as np

    folder, name, spec, arrays, out = sys.argv[1:6]
    sys.path.insert(0, folder)
    try:
        import gradc  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("gradc is importable in the runner")
    mod = importlib.import_module(name)
    spec = json.loads(spec)
    data = np.load(arrays)
    params = {k[2:]: data[k] for k in data.files if k.startswith("p:")}
    inputs = {k[2:]: data[k] for k in data.files if k.startswith("x:")}
    res = {}
    if "forward" in spec["calls"]:
        for k, v in mod.forward(params, **inputs).items():
            res["fwd:" + k] = v
    if "loss_and_grad" in spec["calls"]:
        loss, grads = mod.loss_and_grad(params, **inputs)
        res["loss"] = np.array(loss)
        for k, v in grads.items():
            res["grad:" + k] = v
    if "init_params" in spec["calls"]:
        for k, v in mod.init_params(3).items():
            res["init:" + k] = v
    if "train_step" in spec["calls"]:
        trained = {k: v.copy() for k, v in params.items()}
        state = {}
        losses = [mod.train_step(trained, spec["lr"], state=state, **inputs)
                  for _ in range(spec["steps"])]
        res["step_losses"] = np.array(losses)
        for k, v in trained.items():
            res["trained:" + k] = v
    for entry, info in mod._PROGRAMS.items():
        stats = info["kernel"].stats
        res["hits:" + entry] = np.array(sum(stats.cache_hits.values()))
        res["misses:" + entry] = np.array(sum(stats.cache_misses.values()))
    res["gradc_modules"] = np.array(
        [m for m, v in sys.modules.items() if m.split(".")[0] == "gradc" and v is not None],
        dtype=str)
    np.savez(out, **res)
""")


def run_module(folder: Path, name: str, arrays: dict, calls, lr=0.05, steps=3) -> dict:
    """Run the module ``folder/name.py`` in a fresh process (without gradc); return results."""
    runner = folder / "_runner.py"
    runner.write_text(RUNNER, encoding="utf-8")
    npz, out = folder / "_in.npz", folder / "_out.npz"
    np.savez(npz, **arrays)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "PYTHON"))}
    spec = json.dumps({"calls": list(calls), "lr": lr, "steps": steps})
    proc = subprocess.run([sys.executable, str(runner), str(folder), name, spec, str(npz),
                           str(out)], capture_output=True, text=True, env=env, cwd=folder,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with np.load(out) as data:
        return {k: data[k] for k in data.files}


def write_module(model: gradc.Model, folder: Path, name: str) -> Path:
    """Write the model's generated source as ``folder/name.py``, as ``gradc compile`` does."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(model.source, encoding="utf-8")
    return path


def xor_batch():
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    return x, np.array([0, 1, 1, 0], np.int64)


@pytest.fixture(scope="module")
def xor_adam():
    return gradc.compile(EXAMPLES / "xor.grad", optimizer="adam")


# ------------------------------------------------------------------ standalone, same results
def _cache_files(folder: Path) -> dict[str, int]:
    """Numba's cache files beside a module: name -> mtime (ns)."""
    cache = folder / "__pycache__"
    return {p.name: p.stat().st_mtime_ns for p in cache.iterdir()
            if p.suffix in (".nbi", ".nbc")} if cache.is_dir() else {}


CALLS = ["forward", "loss_and_grad", "init_params", "train_step"]
KERNELS = ["forward", "loss_and_grad", "train_step"]  # the entries CALLS run


@pytest.fixture(scope="module")
def standalone(xor_adam, tmp_path_factory):
    """The xor module written to a fresh folder and run once in a new process (A), which
    compiles its kernels and fills Numba's cache: (folder, arrays, results, cache files)."""
    folder = tmp_path_factory.mktemp("standalone")
    write_module(xor_adam, folder, "xor_gen")
    params = xor_adam.init_params(1)
    x, y = xor_batch()
    arrays = {**{f"p:{k}": v for k, v in params.items()}, "x:x": x, "x:y": y}
    assert _cache_files(folder) == {}
    first = run_module(folder, "xor_gen", arrays, CALLS, lr=0.05, steps=3)
    return folder, arrays, first, _cache_files(folder)


@pytest.mark.slow
def test_standalone_module_matches_the_api(xor_adam, standalone):
    _, arrays, res, _ = standalone
    model = xor_adam
    params = {k[2:]: v for k, v in arrays.items() if k.startswith("p:")}
    x, y = arrays["x:x"], arrays["x:y"]
    assert res["gradc_modules"].size == 0  # ran without gradc

    np.testing.assert_array_equal(res["fwd:logits"], model.forward(params, x=x)["logits"])
    loss, grads = model.loss_and_grad(params, x=x, y=y)
    assert float(res["loss"]) == loss
    for k, g in grads.items():
        np.testing.assert_array_equal(res[f"grad:{k}"], g)
    for k, v in model.init_params(3).items():
        np.testing.assert_array_equal(res[f"init:{k}"], v)

    trained = {k: v.copy() for k, v in params.items()}
    model.reset_optimizer()
    losses = [model.train_step(trained, lr=0.05, x=x, y=y) for _ in range(3)]
    np.testing.assert_array_equal(res["step_losses"], losses)
    for k, v in trained.items():
        np.testing.assert_array_equal(res[f"trained:{k}"], v)


@pytest.mark.slow
def test_second_process_loads_kernels_from_numbas_cache(standalone):
    folder, arrays, first, files = standalone
    assert any(n.endswith(".nbi") for n in files) and any(n.endswith(".nbc") for n in files)
    assert all(n.startswith("xor_gen.") for n in files), files
    for entry in KERNELS:
        assert int(first[f"misses:{entry}"]) >= 1, entry  # process A compiled it
        assert int(first[f"hits:{entry}"]) == 0, entry

    second = run_module(folder, "xor_gen", arrays, CALLS, lr=0.05, steps=3)
    assert _cache_files(folder) == files  # same names, same mtimes: nothing rewritten
    for entry in KERNELS:
        assert int(second[f"hits:{entry}"]) >= 1, entry  # process B loaded it
        assert int(second[f"misses:{entry}"]) == 0, entry
    for key in first:
        if not key.startswith(("hits:", "misses:")):
            np.testing.assert_array_equal(first[key], second[key])


def test_module_path_is_the_module_source(xor_adam):
    assert Path(xor_adam.path).read_text(encoding="utf-8") == xor_adam.source


@pytest.mark.slow
def test_cli_compile_writes_the_api_module(xor_adam, tmp_path):
    """``gradc compile`` writes the same module the API loads (same file, same options)."""
    out = tmp_path / "xor_gen.py"
    proc = subprocess.run([sys.executable, "-m", "gradc", "compile", str(EXAMPLES / "xor.grad"),
                           "--optimizer", "adam", "-o", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text(encoding="utf-8") == xor_adam.source


# ------------------------------------------------------------------ names are mangled
# Legal model names that are Python keywords, builtins, module names the generated code
# imports, or look like the generator's own variables (v3, i0, ws, p_W, d_B, ...).
TRICKY = {
    "inputs": {"import_": "f64[range, 3]", "os": "f64[range]", "np": "f64[3]",
               "SIGNATURE": "f64"},
    "params": {"exec": "f64[3, 4]", "__class__": "f64[4]", "d_B": "f64[4, 2]", "p_W": "f64[2]",
               "ws": "f64", "i0": "f64[3]", "v3": "f64", "nb": "f64[2]", "lambda": "f64",
               "None": "f64", "_check": "f64", "_PROGRAMS": "f64", "forward": "f64"},
    "dims": ["range"],
    "values": ["math", "True", "return", "h_lr", "r0"],
    "outputs": ["v4", "class", "x_x"],
}
TRICKY_BODY = """
math = tanh((import_ + np * i0) @ exec + __class__)
v4 = math @ d_B + p_W + nb
True = sum(v4 * v4, axis=1) * ws + v3 + os * lambda + None * _check
return = True - _PROGRAMS * os + forward * SIGNATURE
output class = return
output x_x = v4
h_lr = mean(return ^ 2)
r0 = h_lr + 0.01 * sum(exec ^ 2)
loss = r0
"""


def _names() -> list[str]:
    return (list(TRICKY["inputs"]) + list(TRICKY["params"]) + TRICKY["dims"]
            + TRICKY["values"] + TRICKY["outputs"])


def _model_text(rename: dict[str, str]) -> str:
    def sub(text: str) -> str:
        return re.sub(r"[A-Za-z_][A-Za-z0-9_]*", lambda m: rename.get(m[0], m[0]), text)

    lines = [f"model {sub('math')}", f"dim {sub('range')}"]
    lines += [f"input {sub(n)} : {sub(t)}" for n, t in TRICKY["inputs"].items()]
    lines += [f"param {sub(n)} : {t} ~ normal(0.5)" for n, t in TRICKY["params"].items()]
    lines += [sub(line) for line in TRICKY_BODY.strip().splitlines()]
    lines.insert(len(lines) - 2, f"output {sub('v4')}")
    return "\n".join(lines) + "\n"


def _identifiers(source: str) -> set[str]:
    """Every name the module binds or reads as a bare Python identifier."""
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name):
            out.add(node.id)
        elif isinstance(node, ast.arg):
            out.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, ast.keyword) and node.arg:
            out.add(node.arg)
        elif isinstance(node, ast.alias):
            out.add(node.asname or node.name.split(".")[0])
    return out


def _numpy_tricky(p: dict, i: dict) -> tuple[dict, float]:
    """TRICKY_BODY in NumPy: (outputs, loss)."""
    math_ = np.tanh((i["import_"] + i["np"] * p["i0"]) @ p["exec"] + p["__class__"])
    v4 = math_ @ p["d_B"] + p["p_W"] + p["nb"]
    true = np.sum(v4 * v4, axis=1) * p["ws"] + p["v3"] + i["os"] * p["lambda"] \
        + p["None"] * p["_check"]
    ret = true - p["_PROGRAMS"] * i["os"] + p["forward"] * i["SIGNATURE"]
    loss = np.mean(ret ** 2) + 0.01 * np.sum(p["exec"] ** 2)
    return {"v4": v4, "class": ret, "x_x": v4}, float(loss)


@pytest.mark.slow
def test_tricky_names_are_mangled_and_work():
    names = _names()
    plain = {n: f"n{i}" for i, n in enumerate(names)}
    tricky = gradc.compile_string(_model_text({}), name="tricky", optimizer="momentum")
    # the same model with plain names, only generated (its kernels are never compiled)
    baseline = gradc.compile_string(_model_text(plain), name="plain", optimizer="momentum")

    # no user name is a bare identifier of its own: what the tricky module has beyond the
    # baseline's identifiers is prefixed (p_, x_, ...) or a kernel's hashed name
    ids, base_ids = _identifiers(tricky.source), _identifiers(baseline.source)
    extra = ids - base_ids
    kernel = re.compile(r"^_[a-z_]+_[0-9a-f]{8,}$")
    assert all(e.startswith(PREFIXES) or kernel.match(e) for e in extra), sorted(extra)
    assert not set(names) & extra, sorted(set(names) & extra)
    for n in names:
        assert n not in ids or n in base_ids, n
    # and the generated module compiles though several names are Python keywords
    assert any(keyword.iskeyword(n) for n in names)
    assert list(tricky.signature["params"]) == list(TRICKY["params"])

    # it computes what NumPy computes
    p = tricky.init_params(0)
    assert list(p) == list(TRICKY["params"])
    rng = np.random.default_rng(0)
    inputs = {"import_": rng.standard_normal((5, 3)), "os": rng.standard_normal(5),
              "np": rng.standard_normal(3), "SIGNATURE": np.array(0.5)}
    ref_outs, ref_loss = _numpy_tricky(p, inputs)
    outs = tricky.forward(p, **inputs)
    assert set(outs) == {"v4", "class", "x_x"}
    for k, v in outs.items():
        np.testing.assert_allclose(v, ref_outs[k], rtol=1e-12)
    loss, grads = tricky.loss_and_grad(p, **inputs)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    assert list(grads) == list(TRICKY["params"])

    # gradients: finite differences of the NumPy loss in a random direction
    d = {k: rng.standard_normal(np.shape(v)) for k, v in p.items()}
    eps = 1e-6
    fd = (_numpy_tricky({k: v + eps * d[k] for k, v in p.items()}, inputs)[1]
          - _numpy_tricky({k: v - eps * d[k] for k, v in p.items()}, inputs)[1]) / (2 * eps)
    assert sum(float(np.sum(grads[k] * d[k])) for k in p) == pytest.approx(fd, rel=1e-6)

    # jvp and vjp (tangent t_ and cotangent c_ names) agree: <vjp(c), t> == <c, jvp(t)>
    outs_t, tans = tricky.jvp(p, d, **inputs)
    for k, v in outs_t.items():
        np.testing.assert_allclose(v, ref_outs[k], rtol=1e-12)
    cots = {"v4": rng.standard_normal((5, 2)), "class": rng.standard_normal(5),
            "x_x": rng.standard_normal((5, 2))}
    back = tricky.vjp(p, cots, **inputs)
    lhs = sum(float(np.sum(back[k] * d[k])) for k in p)
    rhs = sum(float(np.sum(cots[k] * tans[k])) for k in cots)
    assert lhs == pytest.approx(rhs, rel=1e-10)

    # train_step with momentum (state m_/s_ names): v = 0.9 v + g; w -= lr v
    state, w, v = {}, {k: x.copy() for k, x in p.items()}, {k: 0.0 for k in p}
    for _ in range(2):
        _, g = tricky.loss_and_grad(w, **inputs)
        expected = {}
        for k in p:
            v[k] = 0.9 * v[k] + np.asarray(g[k])
            expected[k] = w[k] - 0.01 * v[k]
        step_loss = tricky.module.train_step(w, 0.01, state=state, **inputs)
        assert step_loss == pytest.approx(_numpy_tricky(
            {k: expected[k] + 0.01 * v[k] for k in p}, inputs)[1], rel=1e-12)
        for k in p:
            np.testing.assert_allclose(w[k], expected[k], rtol=1e-12, atol=1e-15)


@pytest.mark.slow
def test_names_that_extend_other_names_do_not_collide():
    """Temporaries derived from a variable's name (e.g. a batched matmul's 3-D views) must
    not land on another variable: here params W and W3 (p_W, p_W3) in a batched matmul."""
    model = gradc.compile_string(
        "param W : f64[2, 3, 4]\nparam W3 : f64[2, 4, 5]\nparam W33 : f64[2, 5, 2]\n"
        "output o = (W @ W3) @ W33\n", name="suffixes")
    rng = np.random.default_rng(0)
    p = {k: rng.standard_normal(v[1]) for k, v in model.signature["params"].items()}
    np.testing.assert_allclose(model.forward(p)["o"], (p["W"] @ p["W3"]) @ p["W33"],
                               rtol=1e-12)
    grads = model.vjp(p, {"o": np.ones((2, 3, 2))})
    np.testing.assert_allclose(grads["W33"], np.swapaxes(p["W"] @ p["W3"], 1, 2)
                               @ np.ones((2, 3, 2)), rtol=1e-12)


@pytest.mark.parametrize("filename", ['q"""x', "back\\slash", "tab\tand'quote", "hex\\x4"])
def test_file_names_cannot_break_the_module(filename):
    """The file name reaches the module's docstring and comments: it must stay inert."""
    model = gradc.compile_string("param w : f64\nloss = w * w\n", name=filename)
    ast.parse(model.source)
    loss, grads = model.loss_and_grad({"w": np.array(3.0)})
    assert (loss, float(grads["w"])) == (9.0, 6.0)


# ------------------------------------------------------------------ readable, few imports
def _imported_modules(source: str) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            out.add("." if node.level else node.module.split(".")[0])
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                node.func.id in ("__import__", "exec", "eval"):
            out.add(node.func.id)
    return out


@pytest.mark.parametrize("example", ["mlp", "xor", "scalar", "svm"])
def test_source_is_readable_and_imports_only_numeric_modules(example):
    model = gradc.compile(EXAMPLES / f"{example}.grad")
    src = model.source
    assert _imported_modules(src) <= ALLOWED_IMPORTS, _imported_modules(src)
    assert "gradc" not in _imported_modules(src)
    # every kernel comment names a line of the .grad file and quotes it
    grad_lines = (EXAMPLES / f"{example}.grad").read_text(encoding="utf-8").splitlines()
    comments = re.findall(rf"^\s*# {example}\.grad:(\d+): (.*)$", src, re.M)
    assert comments
    for line, text in comments:
        assert grad_lines[int(line) - 1].strip() == text
    # a docstring naming the model file, public functions at module level, SIGNATURE
    tree = ast.parse(src)
    assert f"{example}.grad" in ast.get_docstring(tree)
    defs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert {"init_params", "loss_and_grad", "train_step"} <= defs
    assert model.signature["model"] == example


def test_kernel_comments_point_at_the_right_lines(xor_adam):
    src = xor_adam.source
    lines = {int(n) for n in re.findall(r"# xor\.grad:(\d+):", src)}
    text = (EXAMPLES / "xor.grad").read_text(encoding="utf-8").splitlines()
    h_line = next(i for i, t in enumerate(text, 1) if t.startswith("h = "))
    logits_line = next(i for i, t in enumerate(text, 1) if t.startswith("output logits"))
    assert {h_line, logits_line} <= lines
