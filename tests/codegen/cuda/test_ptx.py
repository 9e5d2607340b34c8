"""Every generated CUDA kernel compiles to real PTX (compute capability 9.0), and float32
kernels contain no float64 instruction.

Needs no GPU, but needs the CUDA toolkit wheels (NVVM, libdevice) that ``numba-cuda[cu13]``
installs (~460 MB): without them every test here is skipped. CI does not install them;
run by hand (see docs/cuda.md)::

    pip install "numba-cuda[cu13]"
    python -m pytest tests/codegen/cuda/test_ptx.py

Each kernel is compiled with the argument types the generated module records in
``_SIGNATURES`` (the types it is launched with). The one float64 sequence allowed in a
float32 kernel is libdevice's own: ``sinf``/``cosf``/``tanf`` reduce huge arguments
(Payne-Hanek) with one ``mul.f64`` by 2^-64·π/2 (``0d3BF921FB54442D19``).
"""

from __future__ import annotations

import os
import re
from functools import lru_cache

import pytest

from tests.harness.agreement import LAYERS
from tests.harness.op_specs import GROUPS, Group
from tests.harness.paths import EXAMPLES

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("the CUDA simulator cannot compile PTX", allow_module_level=True)
cuda = pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")

CC = (9, 0)
F64 = re.compile(r"\.f64\b")
#: libdevice's trig argument reduction (the only float64 a float32 kernel may contain)
TRIG = re.compile(r"^(cvt\.rn\.f64\.s64|cvt\.rn\.f32\.f64|mul\.f64\s.*0d3BF921FB54442D19;)")


@lru_cache(maxsize=1)
def toolkit_problem() -> str | None:
    """Why PTX cannot be compiled here (None: it can)."""
    def probe(a):
        a[0] = 1.0
    try:
        cuda.compile_ptx(probe, "void(float32[::1])", cc=CC)
    except Exception as e:  # noqa: BLE001 - any failure means: no usable toolkit
        return f"no CUDA toolkit for compile_ptx ({type(e).__name__}: {str(e)[:200]}); " \
               "install it with: pip install 'numba-cuda[cu13]'"
    return None


def f64_instructions(ptx: str) -> list[str]:
    """The float64 instructions of ``ptx`` (declarations and libdevice's trig reduction
    excluded)."""
    lines = [ln.strip() for ln in ptx.split("\n")]
    bad = [ln for ln in lines if F64.search(ln) and not ln.startswith(".reg")]
    if any(ln.startswith("mul.f64") and TRIG.match(ln) for ln in bad):
        bad = [ln for ln in bad if not TRIG.match(ln)]
    return bad


def models() -> list[tuple[str, str, dict]]:
    """(name, text, options): the examples, the layer models and f32 builds of the op
    table's groups."""
    out = [(p.stem, p.read_text(encoding="utf-8"), {}) for p in sorted(EXAMPLES.glob("*.grad"))]
    out += [(f"layers-{k}", text, {}) for k, text in LAYERS.items()]
    for name in GROUPS:
        g = Group(name, GROUPS[name])
        out.append((f"ops-{name}", g.text, {"dtype": "f32", "wrt": list(g.wrt)}))
    return out


MODELS = models()


@pytest.mark.parametrize("name,text,options", MODELS, ids=[m[0] for m in MODELS])
def test_kernels_compile_without_float64(name, text, options, tmp_path):
    problem = toolkit_problem()
    if problem:
        pytest.skip(problem)
    from tests.harness.cuda_sim import cuda_module
    os.environ.setdefault("GRADC_CACHE_DIR", str(tmp_path))
    module = cuda_module(text, f"{name}.grad", **options)
    f32 = module.SIGNATURE["float"] == "f32"
    problems, compiled = [], 0
    for kernel, sigs in module._SIGNATURES.items():
        for sig in sigs:
            try:
                ptx, _ = cuda.compile_ptx(getattr(module, kernel).py_func, sig, cc=CC)
            except Exception as e:  # noqa: BLE001 - report every kernel that fails
                problems.append(f"{kernel}{sig}: does not compile: {str(e)[:2000]}")
                continue
            compiled += 1
            bad = f64_instructions(ptx) if f32 else []
            if bad:
                problems.append(f"{kernel} {sig}: float64 instructions: {bad[:5]}")
    assert compiled, "no kernel compiled"
    assert not problems, "\n".join(problems)
