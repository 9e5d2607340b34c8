"""Training data: read an ``.npz``, check it against a model's inputs, split and batch it.

Every problem with the file is a :class:`GradcError` with a one-line reason, so that
``gradc train`` exits with code 2 and says what is wrong: an unreadable or corrupt file,
a missing or extra array name, a wrong dtype, a wrong shape (the declared shapes are
checked with their symbolic dims bound across all arrays; the leading dim of every input is
the sample count), labels out of range, or NaN/inf in a float array.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gradc.errors import GradcError

NP_DTYPES = {"f32": np.float32, "f64": np.float64, "i32": np.int32, "i64": np.int64}
FLOAT_DTYPES = ("f32", "f64")
INT_DTYPES = ("i32", "i64")


@dataclass(frozen=True)
class Task:
    """What the data means for a model, read from its signature.

    Attributes:
        batch_dim: the symbolic leading dim shared by every input (e.g. ``"B"``).
        output: the first output's name (None when the model has no output).
        labels: the integer input used as class labels (None: not a classifier).
        classes: the class count (the first output's last axis) for a classifier.
        point_input: the float input of shape ``[B, 2]`` when it is the model's only float
            input and the model is a classifier (decision-boundary pictures), else None.
    """

    batch_dim: str
    output: str | None
    labels: str | None
    classes: int | None
    point_input: str | None

    @property
    def classifier(self) -> bool:
        """True when accuracy is defined: integer labels and a float score output."""
        return self.labels is not None


def fmt_shape(shape, dims: dict | None = None) -> str:
    """``('B', 2)`` -> ``[B, 2]``, with bound dims shown as ``B=300``."""
    dims = dims or {}
    return "[" + ", ".join(f"{d}={dims[d]}" if isinstance(d, str) and d in dims else str(d)
                           for d in shape) + "]"


def analyse(signature: dict, where: str = "") -> Task:
    """Return the :class:`Task` of a model from its ``signature``; ``where`` (the model
    file) prefixes error messages.

    Raises:
        GradcError: the model has no loss, no inputs, or inputs without a shared symbolic
            leading (sample) dim.
    """
    name = signature.get("model", "model")
    where = f"{where}: error: " if where else ""
    if not signature.get("loss"):
        raise GradcError(f"{where}model '{name}' declares no loss: nothing to train")
    inputs = signature["inputs"]
    if not inputs:
        raise GradcError(f"{where}model '{name}' declares no inputs: no data to train on")
    leading = {n: (shape[0] if shape else None) for n, (_dt, shape) in inputs.items()}
    batch = next(iter(leading.values()))
    for n, d in leading.items():
        if not isinstance(d, str) or d != batch:
            raise GradcError(
                f"{where}model '{name}': input '{n}' {fmt_shape(inputs[n][1])} has no "
                f"batch dim: "
                f"gradc train needs every input to start with the same symbolic dim "
                f"(like [B, ...]), the sample axis")
    outputs = signature.get("outputs", {})
    out = next(iter(outputs), None)
    labels = classes = point = None
    if out is not None and outputs[out][0] in FLOAT_DTYPES and outputs[out][1]:
        out_shape = tuple(outputs[out][1])
        ints = [n for n, (dt, shape) in inputs.items()
                if dt in INT_DTYPES and tuple(shape) == out_shape[:-1]]
        if ints and isinstance(out_shape[-1], int):
            labels, classes = ints[0], out_shape[-1]
    if labels is not None:
        floats = [n for n, (dt, _s) in inputs.items() if dt in FLOAT_DTYPES]
        if len(floats) == 1 and tuple(inputs[floats[0]][1]) == (batch, 2):
            point = floats[0]
    return Task(batch, out, labels, classes, point)


def read_npz(path) -> dict[str, np.ndarray]:
    """Read every array of the ``.npz`` at ``path``; GradcError with the reason if it cannot."""
    path = Path(path)
    if not path.exists():
        raise GradcError(f"{path}: error: no such data file")
    if path.is_dir():
        raise GradcError(f"{path}: error: is a directory, not an .npz data file")
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
        if magic == b"\x93NUMPY":
            raise GradcError(f"{path}: error: not an .npz data file: it holds one .npy "
                             "array; save named arrays with np.savez(path, x=..., y=...)")
        if not magic.startswith(b"PK"):
            raise GradcError(f"{path}: error: not a readable .npz data file (not a zip "
                             "archive: corrupt, or another format)")
        data = np.load(path, allow_pickle=False)
        with data:
            return {name: np.asarray(data[name]) for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GradcError(f"{path}: error: not a readable .npz data file ({reason})") from None


def load_data(path, signature: dict) -> dict[str, np.ndarray]:
    """Read the ``.npz`` at ``path`` and check it against the model's inputs
    (:func:`read_npz`, then :func:`check_arrays`)."""
    return check_arrays(path, read_npz(path), signature)


def check_arrays(path, arrays: dict, signature: dict) -> dict[str, np.ndarray]:
    """Check the arrays read from ``path`` against the model's inputs.

    Returns:
        dict input name -> C-contiguous array, in the model's input order.

    Raises:
        GradcError: one line naming the file, the array and what is wrong.
    """
    inputs = signature["inputs"]
    extra = [n for n in arrays if n not in inputs]
    missing = [n for n in inputs if n not in arrays]
    want = ", ".join(f"{n} {inputs[n][0]}{fmt_shape(inputs[n][1])}" for n in inputs)
    if missing:
        raise GradcError(f"{path}: error: missing array '{missing[0]}' for input "
                         f"'{missing[0]}' (the model takes {want}; the file has "
                         f"{', '.join(arrays) or 'no arrays'})")
    if extra:
        raise GradcError(f"{path}: error: extra array '{extra[0]}' matches no input of the "
                         f"model (the model takes {want})")
    dims: dict = {}
    out = {}
    for name, (dtype, shape) in inputs.items():
        a = arrays[name]
        if a.dtype != NP_DTYPES[dtype]:
            raise GradcError(f"{path}: error: array '{name}' has dtype {a.dtype.name}, the "
                             f"input needs {dtype} ({np.dtype(NP_DTYPES[dtype]).name})")
        _check_shape(path, name, a, shape, dims)
        if dtype in FLOAT_DTYPES and not np.isfinite(a).all():
            raise GradcError(f"{path}: error: array '{name}' contains NaN or infinite values")
        out[name] = np.ascontiguousarray(a)
    return out


def _check_shape(path: Path, name: str, a: np.ndarray, shape, dims: dict) -> None:
    def bad(why: str = "") -> GradcError:
        return GradcError(f"{path}: error: array '{name}' has shape {list(a.shape)}, the input "
                          f"needs {fmt_shape(shape, dims)}{why}")

    if a.ndim != len(shape):
        raise bad()
    for d, n in zip(shape, a.shape):
        if isinstance(d, str):
            if n < 1:
                raise bad(f" ({d} must be at least 1)")
            bound = dims.setdefault(d, n)
            if bound != n:
                raise bad(f" ({d}={bound} from an earlier array)")
        elif d != n:
            raise bad()


def check_labels(path, data: dict, task: Task) -> None:
    """Raise GradcError when a classifier's labels fall outside ``0 .. classes-1``."""
    if not task.classifier:
        return
    y = data[task.labels]
    if y.size and (y.min() < 0 or y.max() >= task.classes):
        raise GradcError(f"{path}: error: labels '{task.labels}' must be in 0..{task.classes - 1} "
                         f"(the output has {task.classes} classes); found "
                         f"{int(y.min())}..{int(y.max())}")


def split(data: dict, val_split: float, seed: int) -> tuple[dict, dict | None]:
    """Shuffle the samples with ``seed`` and hold out ``round(val_split * N)`` of them.

    Returns:
        (train, val); val is None when no sample is held out.

    Raises:
        GradcError: a split outside [0, 1) or one that leaves no training sample.
    """
    if not 0.0 <= val_split < 1.0:
        raise GradcError(f"--val-split must be in [0, 1), got {val_split}")
    n = len(next(iter(data.values())))
    n_val = int(round(val_split * n))
    if n - n_val < 1:
        raise GradcError(f"--val-split {val_split} leaves no training sample of {n}")
    if n_val == 0:
        return data, None
    perm = np.random.default_rng(seed).permutation(n)
    val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    return take(data, train_idx), take(data, val_idx)


def take(data: dict, idx) -> dict:
    """The samples ``idx`` of every array (C-contiguous copies)."""
    return {name: np.ascontiguousarray(a[idx]) for name, a in data.items()}


def count(data: dict) -> int:
    """The number of samples."""
    return len(next(iter(data.values())))


def batches(data: dict, batch_size: int, order=None):
    """Yield C-contiguous minibatches (dicts) of ``batch_size`` samples (the last may be
    smaller), taken in ``order`` (default: as stored, as views without a copy)."""
    n = count(data)
    for start in range(0, n, batch_size):
        if order is None:
            yield {k: a[start:start + batch_size] for k, a in data.items()}
        else:
            idx = order[start:start + batch_size]
            yield {k: np.ascontiguousarray(a[idx]) for k, a in data.items()}
