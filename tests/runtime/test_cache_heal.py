"""The cache (issue "Time to first result" scope 5, issue "Hardening" § The cache heals
itself): the key is the content, not the path as typed; a damaged entry or Numba cache
file is discarded with a :class:`CacheWarning` and rebuilt, an unusable cache folder gives
way to a temporary one, concurrent compiles of one model agree. Every case ends in the
right numbers."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import gradc
from gradc.runtime import cache as cache_module
from gradc.runtime import loader, tiers
from gradc.runtime.cache import CacheWarning, cache_key, module_path, ready_entries
from gradc.runtime.loader import MODULE_PREFIX
from gradc.runtime.tiers import TierWarning

from tests.harness.paths import ROOT

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
    """Damage the file at ``path`` as a crash, a full disk or a stray tool would; a folder
    is replaced by a file ('file') or removed ('gone')."""
    if path.is_dir():
        shutil.rmtree(path)
        if kind == "file":
            path.write_bytes(b"not a folder")
        return
    data = path.read_bytes()
    path.unlink()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbled":
        path.write_bytes(np.random.default_rng(0).bytes(len(data)))
    elif kind == "folder":  # a folder in its place
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


# --------------------------------------------------- every file of a warm cache, damaged

def _forget_all() -> None:
    """Drop every generated module from this process, as a new process would start."""
    for name in [n for n in sys.modules if n.startswith(MODULE_PREFIX)]:
        del sys.modules[name]


@pytest.fixture(autouse=True)
def no_leftover_compiles():
    """End the background compiles a test started."""
    yield
    tiers.stop_all()


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory) -> Path:
    """A cache as a tiered run leaves it, every kind of file there: the CPU module and its
    digest, the numpy module, Python's bytecode of both, Numba's files of the forward and
    loss kernels and of _ws_view, the ready markers of forward and loss."""
    folder = tmp_path_factory.mktemp("warm")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADC_CACHE_DIR", str(folder))
        mp.setattr(sys, "dont_write_bytecode", False)  # (the suite's environment sets it)
        model = gradc.compile_string(MODEL, "tiny", wait=False)
        _scores(model), _loss(model)
        assert model.wait_for_kernels(timeout=240)
        _scores(model), _loss(model)  # imports the CPU module: its bytecode is written
    tiers.stop_all()
    _forget_all()
    return folder


def _cpu_folder(root: Path) -> Path:
    return module_path(cache_key(MODEL, "tiny.grad", gradc.api.Options.make().key()),
                       root).parent


#: what of the CPU module's entry a case damages: a glob in its folder
FILES = {"module": "gradc_*.py", "digest": "gradc_*.sha256",
         "bytecode": "__pycache__/gradc_*.pyc",
         "kernel .nbi": "__pycache__/*._forward_*.nbi",
         "kernel .nbc": "__pycache__/*._forward_*.nbc",
         "_ws_view .nbi": "__pycache__/*._ws_view-*.nbi",
         "_ws_view .nbc": "__pycache__/*._ws_view-*.nbc",
         "ready markers": "ready", "Numba's files (stale markers)": "__pycache__"}
#: (file, damage, the warning it gives or None)
DAMAGES = [("module", "garbled", "cached module .* is damaged"),
           ("digest", "garbled", "does not match its digest"),
           ("bytecode", "truncated", "cached bytecode .* is damaged"),
           ("kernel .nbi", "empty", "cannot load the Numba cache of _forward_"),
           ("kernel .nbc", "garbled", "cannot load the Numba cache of _forward_"),
           ("_ws_view .nbi", "truncated", "cannot load the Numba cache of _ws_view"),
           ("_ws_view .nbc", "garbled", "cannot load the Numba cache of _ws_view"),
           ("ready markers", "file", None),
           ("Numba's files (stale markers)", "gone", None)]


def _start(wait: bool, reference) -> None:
    """Compile the model as a new process would, run forward and loss (on Numba, once a
    tiered start has switched) and check the numbers."""
    model = gradc.compile_string(MODEL, "tiny", wait=wait)
    for _ in range(2):  # a tiered start: its NumPy tier, then its Numba kernels
        np.testing.assert_allclose(_scores(model), _scores(reference), rtol=1e-12)
        assert _loss(model) == pytest.approx(_loss(reference), rel=1e-12)
        assert model.wait_for_kernels(timeout=240)
    assert model.tier("forward") == model.tier("loss") == "numba"


@pytest.mark.slow
@pytest.mark.parametrize("wait", [True, False], ids=["blocking", "tiered"])
@pytest.mark.parametrize("file, damage, warning", DAMAGES, ids=[d[0] for d in DAMAGES])
def test_a_damaged_cache_file_is_rebuilt(warm_cache, tmp_path, monkeypatch, wait, file,
                                         damage, warning, reference):
    """Each kind of file of a warm entry damaged: the next start warns (once the file is
    one it reads) and gives the right numbers on Numba; the start after it is clean
    (issue 20, item 8: a damaged _ws_view file made every start fail, or stay on NumPy)."""
    shutil.copytree(warm_cache, tmp_path / "c")  # copy2 keeps the stamps Numba checks
    monkeypatch.setenv("GRADC_CACHE_DIR", str(tmp_path / "c"))
    (found,) = _cpu_folder(tmp_path / "c").glob(FILES[file])
    _damage(found, damage)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _start(wait, reference)
    said = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    assert [w for w in caught if issubclass(w.category, TierWarning)] == []
    if warning is None:
        assert said == []
    else:
        assert len(said) == 1 and re.search(warning, said[0]), said
    if not wait:  # the next run is warm: both entries are marked ready again
        assert ready_entries(next(_cpu_folder(tmp_path / "c").glob("gradc_*.py"))) == \
            {"forward", "loss"}
    _forget_all()
    tiers.stop_all()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)  # healed: no warning any more
        _start(wait, reference)
    _forget_all()


# ------------------------------------------------- a cache Numba or gradc cannot write

@pytest.mark.slow
@pytest.mark.parametrize("wait", [True, False], ids=["blocking", "tiered"])
@pytest.mark.parametrize("where", ["under a file", "unwritable", "no home directory"])
def test_an_unusable_cache_folder_gives_way_to_a_temporary_one(tmp_path, monkeypatch, where,
                                                               wait, reference):
    """The module goes to a temporary folder for the process, with one warning, and runs
    on Numba with the right numbers."""
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    if where == "under a file":
        (tmp_path / "file").write_text("not a folder")
        monkeypatch.setenv("GRADC_CACHE_DIR", str(tmp_path / "file" / "cache"))
    elif where == "unwritable":  # nobody, not even root, can write there
        monkeypatch.setenv("GRADC_CACHE_DIR", "/proc/gradc_cache")
    else:  # no HOME, and no home directory for the user (issue 20, item 8: a traceback)
        monkeypatch.delenv("GRADC_CACHE_DIR")
        monkeypatch.delenv("HOME", raising=False)

        def homeless():
            raise RuntimeError("Could not determine home directory.")
        monkeypatch.setattr(Path, "home", homeless)
        cache_module._homeless_root.cache_clear()  # (it warns once per process)
    _forget_all()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _start(wait, reference)
    # one message (each module stored says it, at one place: Python shows it once)
    said = {str(w.message) for w in caught if issubclass(w.category, CacheWarning)}
    assert len(said) == 1 and "for this process" in said.pop()
    _forget_all()


@pytest.mark.slow
@pytest.mark.parametrize("wait", [True, False], ids=["blocking", "tiered"])
def test_a_folder_numba_cannot_write_compiles_in_memory(tmp_path, monkeypatch, wait,
                                                        reference):
    """No folder where Numba may write its cache (what a read-only cache folder is to
    Numba, made here so that root sees it too: its __pycache__ is a file, and HOME, for
    Numba's user-wide cache, is under a file): one warning, the functions compile in
    memory (issue 20, item 8: RuntimeError: cannot cache function '_ws_view')."""
    from numba.core import config

    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("HOME", str(tmp_path / "file" / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr(config, "CACHE_DIR", "")
    monkeypatch.setenv("GRADC_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setattr(loader, "_UNCACHED", set())  # as in a new process
    folder = _cpu_folder(tmp_path / "c")
    folder.mkdir(parents=True)
    (folder / "__pycache__").write_text("not a folder")
    _forget_all()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _start(wait, reference)
    said = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    assert len(said) == 1 and "its functions compile in memory" in said[0], said
    _forget_all()


@pytest.mark.slow
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

