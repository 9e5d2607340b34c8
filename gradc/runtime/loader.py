"""Import a generated module from its file so that Numba's ``cache=True`` works, and make
the files Python and Numba cache beside it heal themselves.

Three kinds of files sit beside a module in its cache folder besides the module and its
digest (which :mod:`gradc.runtime.cache` checks): Python's bytecode of the module
(``__pycache__/*.pyc``, where bytecode is written) and Numba's index (``.nbi``) and data
(``.nbc``) files of every cached function of the module: its kernels and ``_ws_view``.
A damaged one (truncated, emptied, garbled, a folder in its place) is deleted with a
one-line :class:`gradc.runtime.cache.CacheWarning` and rebuilt; a folder Numba cannot
write makes the module's functions compile in memory, with one warning. The generated
module itself knows nothing of this (it runs without gradc): :func:`guard_numba` wraps
Numba's ``Dispatcher.enable_caching`` for the functions of generated modules, before the
first such module runs.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import CodeType, ModuleType

from gradc.runtime.cache import delete, module_path, read_entry, store_entry, warn

#: the ``sys.modules`` names of generated modules start with this (:func:`module_name`)
MODULE_PREFIX = "gradc_gen_"
_UNCACHED: set[str] = set()  # modules whose functions compile in memory (warned once)


def load_module(path: Path, name: str) -> ModuleType:
    """Import the module at ``path`` as ``name`` (reusing it if already imported). Its
    bytecode comes from Python's cache when whole (:func:`_code`); a module that uses
    Numba runs with Numba's cache guarded (:func:`guard_numba`).

    The module is registered in ``sys.modules`` before it runs: Numba's cache locates
    functions through their module, and a later process could not load the cache otherwise.
    """
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    code = _code(spec)
    if "numba" in code.co_names:  # (the numpy target's modules never import Numba)
        guard_numba()
    sys.modules[name] = module
    try:
        exec(code, module.__dict__)  # noqa: S102 - what the loader's exec_module does
    except BaseException:
        del sys.modules[name]
        raise
    return module


def module_name(key: str) -> str:
    """The ``sys.modules`` name of the generated module of cache key ``key``."""
    return f"{MODULE_PREFIX}{key[:16]}"


def _code(spec) -> CodeType:
    """The code object of the module of ``spec``, from Python's bytecode cache if that is
    whole. A ``.pyc`` whose header is valid but whose body is not (truncated, garbled:
    Python's loader raises from ``marshal``) is deleted with a CacheWarning, and the
    source compiled (and cached) again."""
    try:
        return spec.loader.get_code(spec.name)
    except (EOFError, ValueError, TypeError) as e:
        pyc = Path(importlib.util.cache_from_source(spec.origin))
        warn(f"gradc: the cached bytecode {pyc} is damaged ({type(e).__name__}: {e}); "
             f"rebuilding it")
        delete(pyc)
        return spec.loader.get_code(spec.name)


def guard_numba() -> None:
    """Make Numba's on-disk cache of every function of a generated module (a module named
    with :data:`MODULE_PREFIX`) heal itself; other modules keep Numba's behaviour.
    Installed once per process, before the first generated module runs: ``_ws_view`` is
    compiled for explicit signatures, so it loads its cache while its decorator runs.

    Numba turns caching on for a function by ``Dispatcher.enable_caching``, wrapped here:

    * when Numba finds no folder it may write (the module's folder read-only and no
      user-wide cache folder: ``RuntimeError: cannot cache function``), the function
      keeps no cache and compiles in memory, with one CacheWarning per module;
    * otherwise its cache's ``load_overload`` and ``save_overload`` are guarded
      (:func:`_guarded`): a cache file that fails to load, whatever Numba raises, is
      deleted with a CacheWarning and the function compiled again (and cached anew); a
      failure to save is a warning too, and the function runs uncached.
    """
    from numba.core.dispatcher import Dispatcher

    original = Dispatcher.enable_caching
    if getattr(original, "_gradc_guard", False):
        return

    def enable_caching(self) -> None:
        module = getattr(self.py_func, "__module__", None) or ""
        if not module.startswith(MODULE_PREFIX):
            return original(self)
        try:
            original(self)
        except (RuntimeError, OSError) as e:  # no cache folder: Numba's NullCache stays
            if module not in _UNCACHED:
                _UNCACHED.add(module)
                warn(f"gradc: Numba cannot cache the compiled code of "
                     f"{getattr(sys.modules.get(module), '__file__', module)} ({e}); "
                     f"its functions compile in memory")
            return
        cache = self._cache
        cache.load_overload = _guarded(cache, cache.load_overload, "load")
        cache.save_overload = _guarded(cache, cache.save_overload, "save")

    enable_caching._gradc_guard = True
    Dispatcher.enable_caching = enable_caching


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
    """Delete one function's Numba index and data files."""
    folder, base = Path(cache._cache_path), cache._impl.filename_base
    for path in [folder / f"{base}.nbi", *folder.glob(f"{base}.*.nbc")]:
        delete(path)


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
