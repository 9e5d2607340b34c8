"""The cache key's code digest covers every source that decides a generated module's text.

A cached module is reused only by the gradc that generated it: the key holds a digest of
:func:`gradc.runtime.cache.compiler_files`, which follows the imports of the pipeline and
of every target instead of a hand-kept list (the list missed ``gradc/entries.py``: after
an edit of an entry, a warm cache served the module the old code had printed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from gradc.runtime.cache import compiler_files
from tests.harness.paths import ROOT

MODEL = """\
model digest
input  x : f64[B, 2]
param  W : f64[2, 1] ~ he_normal
output y = x @ W
loss   = sum(y ^ 2)
"""


def _run(code: str, cwd: Path, **env) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=cwd, env={**os.environ, **env})
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_an_edited_entry_is_in_the_module_a_warm_cache_returns(tmp_path):
    """The issue's case, end to end: compile a model, edit the docstring of an entry in
    (a copy of) gradc/entries.py, compile again on the same cache: the module has the
    new docstring (before, it was the cached module with the old one)."""
    shutil.copytree(ROOT / "gradc", tmp_path / "gradc",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "grammar", tmp_path / "grammar")
    (tmp_path / "digest.grad").write_text(MODEL)
    cache = tmp_path / "cache"
    old, new = "Return the outputs: a dict name -> array.", "Return the outputs (edited)."
    code = ("import gradc; m = gradc.compile('digest.grad', target='numpy'); "
            f"print({old!r} in m.source, {new!r} in m.source)")
    env = {"PYTHONPATH": str(tmp_path), "GRADC_CACHE_DIR": str(cache)}

    assert _run(code, tmp_path, **env).split() == ["True", "False"]
    entries = tmp_path / "gradc" / "entries.py"
    text = entries.read_text(encoding="utf-8")
    assert text.count(old) == 1
    entries.write_text(text.replace(old, new), encoding="utf-8")
    assert _run(code, tmp_path, **env).split() == ["False", "True"]


def test_the_digest_covers_every_gradc_module_code_generation_loads(tmp_path):
    """Every gradc module that generating a model's modules for every target loads
    (beyond what ``import gradc`` loads: the API, the cache, the loader) is in the
    digest; so are the modules whose text is printed into every module."""
    code = """if True:
        import json, sys
        import gradc
        before = set(sys.modules)
        from gradc.codegen.target import TARGETS
        from gradc.options import Options
        from gradc.pipeline import compile_sources
        from gradc.source import Source
        model = Source(sys.stdin.read(), 'm.grad')
        compile_sources(model, [(Options.make(target=t), 'k' * 64) for t in TARGETS])
        print(json.dumps(sorted(str(m.__file__) for n, m in sys.modules.items()
                                if n.startswith('gradc') and n not in before)))
    """
    out = subprocess.run([sys.executable, "-c", code], input=MODEL, capture_output=True,
                         text=True, timeout=300, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    loaded = {Path(f).resolve() for f in json.loads(out.stdout)}
    covered = {p.resolve() for p in compiler_files()}
    assert len(loaded) > 20
    assert loaded <= covered, sorted(map(str, loaded - covered))
    for printed in ("entries.py", "source.py", "errors.py", "dtypes.py",
                    "codegen/runtime.py", "codegen/state.py", "codegen/host.py",
                    "codegen/numpy/helpers.py", "codegen/cuda/helpers.py",
                    "codegen/cpu/mathlib.py"):
        assert ROOT / "gradc" / printed in covered, printed
