"""The on-disk cache: content hash -> folder holding the generated module.

The key hashes the model text, its file name, the compile options and the versions of
gradc, Numba, NumPy and Python, so any change gives a new module (and Numba's own on-disk
cache, kept beside it, stays valid). Modules are written atomically and never rewritten:
rewriting would change the file's timestamp and invalidate Numba's cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path


def versions() -> str:
    """The versions the generated code depends on, as one line."""
    import numba
    import numpy

    from gradc import __version__
    return (f"gradc {__version__}, numba {numba.__version__}, numpy {numpy.__version__}, "
            f"python {sys.version_info.major}.{sys.version_info.minor}")


def cache_dir() -> Path:
    """``$GRADC_CACHE_DIR``, else ``$XDG_CACHE_HOME/gradc``, else ``~/.cache/gradc``."""
    env = os.environ.get("GRADC_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gradc"


def cache_key(text: str, filename: str, options: dict) -> str:
    """A hex SHA-256 of everything the generated module depends on."""
    blob = json.dumps({"text": text, "file": filename, "options": options,
                       "versions": versions()}, sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()


def module_path(key: str, root: Path | None = None) -> Path:
    """Where the module of ``key`` lives: ``ROOT/KEY[:24]/gradc_KEY[:16].py``."""
    return (root or cache_dir()) / key[:24] / f"gradc_{key[:16]}.py"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` unless it is already there: temp file + rename, so a
    concurrent reader sees either nothing or the whole file."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp_", suffix=".py")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
