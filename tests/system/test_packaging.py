"""A non-editable install ships the grammar inside the package and works outside the repo.

Builds and installs the checkout with pip into a fresh virtual environment (about 10-60 s).
The environment sees the running interpreter's packages (NumPy, Numba, SymPy, Lark, ...)
through a ``.pth`` file, so nothing is downloaded for them; the build backend (hatchling) is
used from the running environment when it is importable there (no network at all), else
pip fetches it into an isolated build environment.
"""

from __future__ import annotations

import importlib.util
import os
import site
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from tests.harness.paths import ROOT

pytestmark = pytest.mark.slow  # (every test here takes more than a few seconds)

CHECK = textwrap.dedent("""
    import importlib.resources, os, sys
    import gradc
    here = os.path.realpath(gradc.__file__)
    assert here.startswith(os.path.realpath(sys.prefix)), (here, sys.prefix)
    grammar = importlib.resources.files("gradc") / "grammar" / "gradc.lark"
    assert grammar.is_file(), grammar
    assert "module" in grammar.read_text(encoding="utf-8")
    m = gradc.compile_string("param w : f64 ~ constant(3)\\nloss = w * w\\n", name="pkg")
    loss, grads = m.loss_and_grad(m.init_params())
    assert (loss, float(grads["w"])) == (9.0, 6.0), (loss, grads)
    print("OK", here)
""")


def _run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout}\n{proc.stderr}"
    return proc


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def test_wheel_install_ships_the_grammar(tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], timeout=120)
    py = _venv_python(venv)
    # Let the new environment see this interpreter's packages (after its own): with
    # --system-site-packages alone, a venv made from inside a venv sees only the base.
    purelib = _run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]
                   ).stdout.strip()
    parents = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib"),
               *site.getsitepackages()}
    Path(purelib, "_parent_env.pth").write_text("\n".join(sorted(parents)) + "\n")

    cmd = [str(py), "-m", "pip", "install", "--no-deps", "--no-input", "--quiet",
           "--disable-pip-version-check"]
    if importlib.util.find_spec("hatchling") is not None:
        cmd.append("--no-build-isolation")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    _run(cmd + [str(ROOT)], cwd=tmp_path, env=env, timeout=600)

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env["GRADC_CACHE_DIR"] = str(tmp_path / "cache")
    out = _run([str(py), "-c", CHECK], cwd=outside, env=env, timeout=300).stdout
    assert out.startswith("OK " + os.path.realpath(purelib))
