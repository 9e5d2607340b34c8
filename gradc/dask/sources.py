"""Partitions of the training data, and where each is loaded: always on a worker.

``plan(data, signature, client, parts)`` turns what the user gave into a list of
:class:`Part` (index = position in the global sample order, label for messages, source,
preferred worker); the driver never reads the samples:

* a dict of ``dask.array`` (one per model input, chunked along the batch axis): checked
  on the driver from metadata alone (names, dtypes, ranks, fixed dims, equal lengths),
  rechunked to common row blocks, persisted on the cluster; each row block is a part and
  prefers the worker that holds it (as XGBoost's and LightGBM's dask modules do);
* a folder of ``.npz`` shards: one part per file (sorted by name);
* one ``.npz`` file: ``parts`` slices of it (default: one per worker).

:func:`load` runs on the worker: it reads a file part (:class:`NpzSlice`) or takes the
arrays Dask resolved for a dask part, then checks them against the model
(:func:`gradc.training.data.check_arrays`, :func:`~gradc.training.data.check_labels`):
a part with a wrong dtype or shape, a missing array or bad labels is a
:class:`GradcError` naming the part. Files must be readable at the same path by the
workers (a shared file system on a real cluster).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gradc.dtypes import NUMPY_NAMES, numpy_dtype
from gradc.errors import GradcError
from gradc.training.data import (
    check_arrays,
    check_labels,
    count,
    fmt_shape,
    read_npz,
)


@dataclass(frozen=True)
class NpzSlice:
    """Rows ``[part*n//parts, (part+1)*n//parts)`` of the ``.npz`` at ``path``."""

    path: str
    part: int = 0
    parts: int = 1

    def read(self) -> dict:
        """The arrays of this slice (read on the worker)."""
        arrays = read_npz(self.path)
        if self.parts == 1 or not arrays:
            return arrays
        n = count(arrays)
        if n < self.parts:
            raise GradcError(f"{self.path}: error: {n} samples cannot fill {self.parts} "
                             f"partitions (one per worker); give fewer partitions")
        lo, hi = self.part * n // self.parts, (self.part + 1) * n // self.parts
        return {k: a[lo:hi] for k, a in arrays.items()}


@dataclass(frozen=True)
class Part:
    """One partition: ``index`` orders the samples globally; ``source`` is an
    :class:`NpzSlice` or a dict input name -> Dask future of its row block; ``where`` is
    the worker that already holds it (None: any)."""

    index: int
    label: str
    source: object
    where: str | None = None


def load(label: str, source, signature: dict, task) -> dict:
    """The checked arrays of one part, on the worker (see the module docstring)."""
    arrays = source.read() if isinstance(source, NpzSlice) else dict(source)
    data = check_arrays(label, arrays, signature)
    check_labels(label, data, task)
    return data


def plan(data, signature: dict, client, parts: int | None = None,
         timeout: float = 600.0) -> list[Part]:
    """The partitions of ``data`` (see the module docstring); ``parts`` splits one .npz
    file (default: the number of workers); dask arrays are computed on the workers within
    ``timeout`` seconds.

    Raises:
        ValueError: ``data`` is of another kind, or a dask array does not fit the model.
        GradcError: no such file or folder, or a folder without .npz files.
    """
    if isinstance(data, Mapping):
        return _dask_parts(data, signature, client, timeout)
    if not isinstance(data, (str, os.PathLike)):
        raise ValueError(f"data: expected a dict of dask arrays, a folder of .npz shards or "
                         f"an .npz file, got {type(data).__name__}")
    path = Path(data)
    if path.suffix == ".npz" and not path.is_dir():
        if not path.exists():
            raise GradcError(f"{path}: error: no such data file")
        if parts is not None and (isinstance(parts, bool) or not isinstance(parts, int)
                                  or parts < 1):
            raise ValueError(f"parts: expected a positive int, got {parts!r}")
        k = parts or max(1, len(client.scheduler_info(n_workers=-1)["workers"]))
        return [Part(i, f"{path} (part {i + 1} of {k})", NpzSlice(str(path), i, k))
                for i in range(k)]
    if not path.is_dir():
        raise GradcError(f"{path}: error: no such data folder or .npz file")
    shards = sorted(path.glob("*.npz"))
    if not shards:
        raise GradcError(f"{path}: error: the folder holds no .npz shards")
    return [Part(i, str(p), NpzSlice(str(p))) for i, p in enumerate(shards)]


def _dask_parts(data: Mapping, signature: dict, client, timeout: float) -> list[Part]:
    import dask.array as da
    from distributed import futures_of, wait

    inputs = signature["inputs"]
    want = ", ".join(f"{n} {dt}{fmt_shape(s)}" for n, (dt, s) in inputs.items())
    for name in inputs:
        if name not in data:
            raise ValueError(f"data: missing array '{name}' for input '{name}' (the model "
                             f"takes {want}; data has {', '.join(map(str, data)) or 'none'})")
    for name in data:
        if name not in inputs:
            raise ValueError(f"data: extra array '{name}' matches no input of the model "
                             f"(the model takes {want})")
    rows = None
    for name, (dtype, shape) in inputs.items():
        a = data[name]
        if not isinstance(a, da.Array):
            raise ValueError(f"data['{name}']: expected a dask.array, got {type(a).__name__} "
                             f"(wrap it with dask.array.from_array(a, chunks=...))")
        if a.dtype != numpy_dtype(dtype):
            raise ValueError(f"data['{name}']: dtype {a.dtype.name}, the input needs {dtype} "
                             f"({NUMPY_NAMES[dtype]})")
        fixed_ok = all(isinstance(d, str) or d == n for d, n in zip(shape[1:], a.shape[1:]))
        if a.ndim != len(shape) or not fixed_ok:
            raise ValueError(f"data['{name}']: shape {list(a.shape)}, the input needs "
                             f"{fmt_shape(shape)}")
        if rows is not None and a.shape[0] != rows:
            raise ValueError(f"data['{name}']: {a.shape[0]} rows, an earlier array has {rows}")
        rows = a.shape[0]
    first = next(iter(inputs))
    chunks = data[first].chunks[0]
    if any(c != c for c in chunks):     # NaN: unknown chunk sizes
        raise ValueError(f"data['{first}']: unknown chunk sizes; call "
                         f"compute_chunk_sizes() first")
    blocks = [data[n].rechunk({0: chunks, **{ax: -1 for ax in range(1, data[n].ndim)}})
              for n in inputs]
    blocks = client.persist(blocks)
    futures = {f.key: f for f in futures_of(blocks)}
    try:
        wait(list(futures.values()), timeout=timeout)
    except TimeoutError:
        raise GradcError(f"data: the dask arrays were not computed on the workers within "
                         f"{timeout:g} s") from None
    parts, start = [], 0
    for i, size in enumerate(chunks):
        source = {n: futures[_block_key(a, i)] for n, a in zip(inputs, blocks)}
        holders = client.who_has([source[first]]).get(source[first].key) or ()
        parts.append(Part(i, f"data block {i} (rows {start}..{start + size - 1})", source,
                          holders[0] if holders else None))
        start += size
    return parts


def _block_key(array, i: int):
    """The key of row block ``i`` of a dask array chunked on axis 0 only."""
    key = array.__dask_keys__()[i]
    while isinstance(key, list):
        key = key[0]
    return key
