"""The cache (issue "Time to first result" scope 5, issue "Hardening" § The cache heals
itself): the key is the content, not the path as typed; a damaged entry or Numba cache
file is discarded with a :class:`CacheWarning` and rebuilt, an unusable cache folder gives
way to a temporary one, concurrent compiles of one model agree. Every case ends in the
right numbers."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import gradc
from gradc.runtime.cache import CacheWarning, cache_key, module_path

ROOT = Path(__file__).resolve().parents[1]
MODEL = """model tiny
input  x : f64[B, 3]
input  y : i64[B]
param  W : f64[3, 2] ~ he_normal
output s = x @ W
loss   = cross_entropy(s, y)
input  unused : f64[B]
"""
X = np.linspace(-1.0, 1.0, 12).reshape(4, 3)
Y = np.array([0, 1, 1, 0])


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A fresh, empty cache folder for this test."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("GRADC_CACHE_DIR", str(folder))
    return folder


def _loss(model) -> float:
    return model.loss(model.init_params(0), x=X, y=Y)


def _scores(model) -> np.ndarray:
    return model.forward(model.init_params(0), x=X)["s"]


@pytest.fixture(scope="module")
def reference():
    """The tiny model as the numpy target computes it, uncached."""
    return gradc.compile_string(MODEL, "tiny", target="numpy", cache=False)


@pytest.fixture(scope="module")
def expected(reference) -> float:
    """The loss of the tiny model."""
    return _loss(reference)


def _entries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir())


def test_one_entry_however_the_path_is_typed(cache, tmp_path, monkeypatch, expected):
    """m.grad, ./m.grad, the absolute path and ../x/m.grad share one module; its warnings
    name the file as typed."""
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    model_file = tmp_path / "x" / "m.grad"
    model_file.write_text(MODEL)
    monkeypatch.chdir(tmp_path / "x")
    spellings = ["m.grad", "./m.grad", str(model_file), "../x/m.grad"]
    models = [gradc.compile(spelling, target="numpy") for spelling in spellings[:3]]
    monkeypatch.chdir(tmp_path / "y")
    models.append(gradc.compile(spellings[3], target="numpy"))
    assert len(_entries(cache)) == 1
    assert len({m.path for m in models}) == 1 and len({m.source for m in models}) == 1
    for spelling, model in zip(spellings, models):
        assert len(model.warnings) == 1 and model.warnings[0].startswith(f"{Path(spelling)}:7:")
        assert _loss(model) == pytest.approx(expected, rel=1e-12)
    assert model.module.WARNINGS[0].startswith("m.grad:7:")
    assert cache_key(MODEL, "a/b/m.grad", {}) == cache_key(MODEL, "m.grad", {}) != \
        cache_key(MODEL, "n.grad", {})


def test_the_key_and_a_numpy_model_need_no_numba(cache):
    code = ("import sys, numpy as np, gradc\n"
            f"m = gradc.compile_string({MODEL!r}, 'tiny', target='numpy')\n"
            "x = np.linspace(-1.0, 1.0, 12).reshape(4, 3)\n"
            "m.loss(m.init_params(0), x=x, y=np.array([0, 1, 1, 0]))\n"
            "print('numba' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def _damage(path: Path, kind: str) -> None:
    """Damage the file at ``path`` as a crash, a full disk or a stray tool would."""
    data = path.read_bytes()
    path.unlink()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbled":
        path.write_bytes(np.random.default_rng(0).bytes(len(data)))
    else:  # a folder in its place
        path.mkdir()


def _forget(model) -> None:
    """Drop the model's module from this process, so that the next compile imports it
    (and loads its kernels from Numba's disk cache) anew."""
    sys.modules.pop(model.module.__name__, None)


@pytest.mark.parametrize("kind", ["truncated", "empty", "garbled", "folder"])
def test_a_damaged_module_is_rebuilt(cache, kind, expected):
    model = gradc.compile_string(MODEL, "tiny", target="numpy")
    _forget(model)
    _damage(model.path, kind)
    with pytest.warns(CacheWarning, match="is damaged"):
        again = gradc.compile_string(MODEL, "tiny", target="numpy")
    assert again.path == model.path and again.source == model.source
    assert _loss(again) == pytest.approx(expected, rel=1e-12)
    _forget(again)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)  # healed: no warning any more
        gradc.compile_string(MODEL, "tiny", target="numpy")


def test_a_module_that_lost_its_digest_is_rebuilt(cache, expected):
    model = gradc.compile_string(MODEL, "tiny", target="numpy")
    _forget(model)
    model.path.with_suffix(".sha256").unlink()
    with pytest.warns(CacheWarning, match="does not match its digest"):
        again = gradc.compile_string(MODEL, "tiny", target="numpy")
    assert _loss(again) == pytest.approx(expected, rel=1e-12)


@pytest.fixture(scope="module")
def numba_cached(tmp_path_factory) -> Path:
    """A cache folder whose CPU module has the forward kernel in Numba's cache."""
    folder = tmp_path_factory.mktemp("numba_cached")
    old = os.environ.get("GRADC_CACHE_DIR")
    os.environ["GRADC_CACHE_DIR"] = str(folder)
    try:
        model = gradc.compile_string(MODEL, "tiny", wait=True)
        _scores(model)
        _forget(model)
    finally:
        os.environ["GRADC_CACHE_DIR"] = old
    return folder


@pytest.mark.parametrize("suffix", [".nbi", ".nbc"])
@pytest.mark.parametrize("kind", ["truncated", "empty", "garbled"])
def test_a_damaged_numba_cache_file_is_rebuilt(numba_cached, tmp_path, monkeypatch, suffix,
                                                kind, reference):
    import shutil
    shutil.copytree(numba_cached, tmp_path / "c")  # copy2 keeps the stamps Numba checks
    monkeypatch.setenv("GRADC_CACHE_DIR", str(tmp_path / "c"))
    (found,) = (tmp_path / "c").glob(f"*/__pycache__/*_forward_*{suffix}")
    _damage(found, kind)
    model = gradc.compile_string(MODEL, "tiny", wait=True)
    with pytest.warns(CacheWarning, match="cannot load the Numba cache of _forward_"):
        np.testing.assert_allclose(_scores(model), _scores(reference), rtol=1e-12)
    _forget(model)
    model = gradc.compile_string(MODEL, "tiny", wait=True)
    kernel = model.module._ENTRIES["forward"]["kernel"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)  # cached anew: loads cleanly
        np.testing.assert_allclose(_scores(model), _scores(reference), rtol=1e-12)
    assert sum(kernel.stats.cache_hits.values()) == 1
    _forget(model)


@pytest.mark.parametrize("where", ["under a file", "unwritable"])
def test_an_unusable_cache_folder_gives_way_to_a_temporary_one(tmp_path, monkeypatch, where,
                                                               expected):
    if where == "under a file":
        (tmp_path / "file").write_text("not a folder")
        folder = tmp_path / "file" / "cache"
    else:
        folder = Path("/proc/gradc_cache")  # nobody, not even root, can write there
        if not Path("/proc").is_dir():
            pytest.skip("no /proc")
    monkeypatch.setenv("GRADC_CACHE_DIR", str(folder))
    with pytest.warns(CacheWarning, match="cannot write to the cache folder"):
        model = gradc.compile_string(MODEL, "tiny", target="numpy")
    assert not model.path.is_relative_to(folder) and model.path.is_file()
    assert _loss(model) == pytest.approx(expected, rel=1e-12)


def test_four_processes_compile_one_model_at_once(cache, reference):
    """Four processes write one module and one Numba cache at once: all agree."""
    code = ("import sys, numpy as np, gradc\n"
            f"m = gradc.compile_string({MODEL!r}, 'tiny', wait=True)\n"
            "x = np.linspace(-1.0, 1.0, 12).reshape(4, 3)\n"
            "print(m.forward(m.init_params(0), x=x)['s'].sum().hex())\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(4)]
    try:
        outs = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0 and "Warning" not in err, err
        assert float.fromhex(out) == pytest.approx(_scores(reference).sum(), rel=1e-12)
    assert len(_entries(cache)) == 1
    assert module_path(cache_key(MODEL, "tiny.grad", gradc.api.Options.make().key()),
                       cache).is_file()


def test_editing_the_public_functions_registry_changes_the_key(tmp_path):
    """gradc/entries.py writes the bodies of the generated public functions, so it is
    part of the compiler's digest: a module cached before loss ran in eval mode must not
    be reused by a gradc whose loss does (same version number, edited registry)."""
    import shutil

    shutil.copytree(ROOT / "gradc", tmp_path / "gradc",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "grammar", tmp_path / "grammar")

    def digest() -> str:
        out = subprocess.run([sys.executable, "-c", "from gradc.runtime.cache import "
                              "code_digest; print(code_digest())"], capture_output=True,
                             text=True, timeout=120, cwd=tmp_path,
                             env={**os.environ, "PYTHONPATH": str(tmp_path)})
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    before = digest()
    with open(tmp_path / "gradc" / "entries.py", "a", encoding="utf-8") as f:
        f.write("# edited\n")
    assert digest() != before
