"""Import a generated module from its file so that Numba's ``cache=True`` works."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def load_module(path: Path, name: str) -> ModuleType:
    """Import the module at ``path`` as ``name`` (reusing it if already imported).

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
    return module


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

    from gradc.runtime.cache import module_path, write_atomic
    name = f"gradc_gen_{key[:16]}"
    loaded = sys.modules.get(name)
    if loaded is not None and getattr(loaded, "_KEY", None) == key:
        return loaded
    path = module_path(key)
    try:
        write_atomic(path, text)
        same = path.read_text(encoding="utf-8") == text
    except OSError:
        same = False
    if not same:
        path = module_path(key, Path(tempfile.mkdtemp(prefix="gradc_")))
        write_atomic(path, text)
    return load_module(path, name)
