"""Import a generated module from its file so that Numba's ``cache=True`` works, and make
Numba's on-disk cache of its kernels heal itself."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from gradc.runtime.cache import module_path, read_entry, store_entry, warn


def load_module(path: Path, name: str) -> ModuleType:
    """Import the module at ``path`` as ``name`` (reusing it if already imported), with
    its kernels' Numba cache guarded (:func:`guard_numba_cache`).

    The module is registered in ``sys.modules`` before it runs: Numba's cache locates
    functions through their module, and a later process could not load the cache otherwise.
    """
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    guard_numba_cache(module)
    return module


def module_name(key: str) -> str:
    """The ``sys.modules`` name of the generated module of cache key ``key``."""
    return f"gradc_gen_{key[:16]}"


def guard_numba_cache(module: ModuleType) -> None:
    """Make a damaged Numba cache file of the module's kernels (an index ``.nbi`` or a
    data ``.nbc`` file truncated, emptied or garbled) a cache miss instead of an error:
    the failure is caught, the kernel's index and data files are deleted with a one-line
    :class:`gradc.runtime.cache.CacheWarning`, and the kernel is compiled again (and
    cached anew). A failure to save is a warning too: the kernel runs, uncached. Kernels
    without a disk cache (``cache=False``, other targets) are left alone."""
    for info in getattr(module, "_ENTRIES", {}).values():
        cache = getattr(info.get("kernel"), "_cache", None)
        if cache is None or not hasattr(cache, "_cache_file") or \
                getattr(cache, "_gradc_guarded", False):
            continue
        cache._gradc_guarded = True
        cache.load_overload = _guarded(cache, cache.load_overload, "load")
        cache.save_overload = _guarded(cache, cache.save_overload, "save")


def _guarded(cache, method, what: str):
    def call(*args):
        try:
            return method(*args)
        except Exception as e:  # any failure of Numba's unpickling and rebuilding
            _drop(cache)
            warn(f"gradc: cannot {what} the Numba cache of {cache._py_func.__qualname__} "
                 f"({type(e).__name__}: {e}); its cache files are deleted, "
                 f"{'it is compiled again' if what == 'load' else 'it runs uncached'}")
            return None
    return call


def _drop(cache) -> None:
    """Delete one kernel's Numba index and data files."""
    folder, base = Path(cache._cache_path), cache._impl.filename_base
    for path in [folder / f"{base}.nbi", *folder.glob(f"{base}.*.nbc")]:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass


def rebuild_function(key: str, text: str, name: str):
    """The public function ``name`` of the generated module ``text`` (cache key ``key``):
    what a pickled function of a generated module unpickles to. The module is loaded from
    the cache when it holds this text, else written there first (or, when the cache has
    another text under that key, into a private folder), so that Numba's on-disk cache
    serves later loads."""
    return getattr(module_from_text(key, text), name)


def module_from_text(key: str, text: str) -> ModuleType:
    """The generated module ``text`` of cache key ``key``, imported (see
    :func:`rebuild_function`)."""
    import tempfile

    loaded = sys.modules.get(module_name(key))
    if loaded is not None and getattr(loaded, "_KEY", None) == key:
        return loaded
    path = module_path(key)
    found = read_entry(path)
    if found is None:
        path = store_entry(path, text)
    elif found != text:
        path = store_entry(module_path(key, Path(tempfile.mkdtemp(prefix="gradc_"))), text)
    return load_module(path, module_name(key))
