"""Writing the outputs of ``gradc train`` so that a reader never sees half a file.

Each output is written to a temporary file beside it and renamed over it
(:func:`replacing`): a run killed or interrupted while writing leaves the previous version
(or nothing), never a truncated ``params.npz`` or ``history.csv``.
"""

from __future__ import annotations

import os
from contextlib import contextmanager, suppress
from pathlib import Path

from gradc.errors import GradcError


@contextmanager
def replacing(path):
    """Yield a temporary path beside ``path`` with the same suffix (so ``np.savez`` and
    ``savefig`` keep their format) for the caller to write; then rename it to ``path``.
    On an error the temporary file is removed and ``path`` is left as it was.

    Raises:
        GradcError: the file cannot be written (``PATH: error: cannot write it: REASON``).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        raise GradcError(f"{path}: error: cannot write it: {e.strerror or e}") from None
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: Path) -> None:
    with suppress(OSError):
        path.unlink()
