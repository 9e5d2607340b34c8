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
