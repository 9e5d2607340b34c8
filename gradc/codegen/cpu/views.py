"""The workspace views of the CPU target's kernels, as one small Numba function.

A kernel sees each buffer it keeps in the workspace as an N-d view of a slice of ``ws``.
Printed as ``ws[a:b].reshape(shape)``, every such view costs Numba about 40 ms of lowering
(its reshape is lowered in place, error paths included; the cnn's train_step has over a
hundred), while a call of :func:`_ws_view` costs about 10 ms (measured: 80 views in one
function compile in 4.3 s as reshapes, 1.8 s as calls). The function is compiled once per
rank, when the module is imported (about 0.35 CPU-s each on a cold cache), for the
signatures :func:`signatures` lists: explicit signatures, because a call with constant dims
would otherwise compile one specialisation per call site (Numba types each constant as its
own literal type).

Contract: plain Numba nopython code; :func:`source` is pasted into the generated module,
decorated with ``@nb.njit(<signatures>, ...)``. Its cache files heal like the kernels'
(:func:`gradc.runtime.loader.guard_numba`, installed before the module runs, since the
decorator reads them); the module itself stays standalone.
"""

from __future__ import annotations

import inspect
import textwrap
from gradc.dtypes import NUMPY_NAMES



def _ws_view(ws, offset, shape):
    """The elements of the workspace ``ws`` from ``offset`` on, seen with ``shape``
    (C order); no data moves."""
    n = 1
    for d in shape:
        n *= d
    return ws[offset:offset + n].reshape(shape)


def signatures(used: set[tuple[str, int]]) -> list[str]:
    """Numba signatures of :func:`_ws_view` for each (gradc dtype, rank) in ``used``."""
    out = []
    for dtype, rank in sorted(used):
        t = NUMPY_NAMES[dtype]
        axes = ", ".join([":"] * (rank - 1) + ["::1"])
        out.append(f"{t}[{axes}]({t}[::1], int64, UniTuple(int64, {rank}))")
    return out


def source(used: set[tuple[str, int]], options: str) -> str:
    """The decorated source of :func:`_ws_view` for the views ``used`` (``options``: the
    rest of the ``nb.njit`` arguments, e.g. ``"cache=True, nogil=True"``)."""
    return f"@nb.njit({signatures(used)!r}, {options})\n" + \
        textwrap.dedent(inspect.getsource(_ws_view))
