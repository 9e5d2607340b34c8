"""The numpy target: vectorised NumPy modules that agree with the CPU target.

Agreement (the pattern of ``tests/codegen/cuda/test_simulator.py``; both share
:mod:`tests.harness.agreement`): every example (in float64, shapes shrunk as for the
simulator), the optimizers, the layer models and every op-spec group are compiled for
both targets, which run ``forward`` and ``loss`` (and their training mode), ``jvp``,
``vjp``, ``loss_and_grad``, ``hvp``, ``train_step`` and ``train_epoch`` (with dropout
noise where a model has it) and must agree to 1e-12 relative in float64 (norm-wise, per
array; 1e-5 in float32). Out-of-range labels and indices raise the CPU target's ValueError,
word for word.

The groups run in worker subprocesses (:mod:`tests.harness.numpy_agreement`, several
groups per worker, two workers at most) where the CPU target runs with
``NUMBA_DISABLE_JIT=1``: the same generated code, interpreted, instead of minutes of Numba
compilation (``GRADC_NUMPY_CPU_JIT=1`` compiles it). By hand:
``NUMBA_DISABLE_JIT=1 python -m tests.harness.numpy_agreement GROUP [GROUP ...]``.

The other tests need no CPU kernels: the module imports NumPy alone and runs with Numba and
gradc unimportable, its kernels loop over no elements, and ``gradc compile --target numpy``
writes it.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.harness.agreement import GROUP_NAMES, check_result, run_workers, selected
from tests.harness.paths import EXAMPLES

WORKERS = 2


@pytest.fixture(scope="module")
def results(request):
    """The selected groups' results, computed once in at most WORKERS subprocesses:
    name -> {checks, failures}."""
    env = dict(os.environ)
    if os.environ.get("GRADC_NUMPY_CPU_JIT") != "1":
        env["NUMBA_DISABLE_JIT"] = "1"
    wanted = selected(request, __name__)
    n = max(1, min(WORKERS, os.cpu_count() or 1, len(wanted)))
    return run_workers("tests.harness.numpy_agreement", [wanted[k::n] for k in range(n)],
                       env, n, timeout=1800)


@pytest.mark.slow
@pytest.mark.parametrize("group", GROUP_NAMES)
def test_numpy_matches_cpu(results, group):
    check_result(results, group)


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
