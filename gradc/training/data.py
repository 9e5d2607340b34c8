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

from gradc.dtypes import FLOAT, INT, NUMPY_NAMES, numpy_dtype
from gradc.errors import GradcError



@dataclass(frozen=True)
class Task:
    """What the data means for a model: which input holds the class labels and which
    output the class scores (see :func:`label_task`).

    Attributes:
        batch_dim: the symbolic leading dim shared by every input (e.g. ``"B"``); None
            for a task made by :func:`label_task` alone.
        output: the output holding the class scores (None: no accuracy).
        labels: the integer input holding the class labels (None: none).
        classes: the class count (the scores' last axis); None when it is known only at
            call time (a dim name) or there are no labels.
        point_input: the float input of shape ``[B, 2]`` when it is the model's only float
            input and the model is a classifier (decision-boundary pictures), else None.
    """

    batch_dim: str | None
    output: str | None
    labels: str | None
    classes: int | None
    point_input: str | None = None

    @property
    def classifier(self) -> bool:
        """True when accuracy is defined: integer labels and their scores as an output."""
        return self.labels is not None and self.output is not None

    def describe(self) -> str:
        """What the header line of ``gradc train`` and ``gradc predict`` says about it:
        ``16-class classifier on 'next'``, or why there is no accuracy."""
        if self.classifier:
            kind = "classifier" if self.classes is None else f"{self.classes}-class classifier"
            return f"{kind} on '{self.labels}'"
        if self.labels is not None:
            return (f"no accuracy: the labels are '{self.labels}', but accuracy needs the "
                    f"scores as an output")
        return "no accuracy (no integer labels in the loss)"

    def hits(self, outputs: dict, data: dict) -> tuple[int, int]:
        """(correct, labels) of a classifier on ``data``: how many labels equal the argmax
        over the last axis of the scores in ``outputs`` (a ``forward`` result), and how
        many labels there are."""
        labels = data[self.labels]
        found = np.argmax(outputs[self.output], axis=-1)
        return int(np.count_nonzero(found == labels)), labels.size


def fmt_shape(shape, dims: dict | None = None) -> str:
    """``('B', 2)`` -> ``[B, 2]``, with bound dims shown as ``B=300``."""
    dims = dims or {}
    return "[" + ", ".join(f"{d}={dims[d]}" if isinstance(d, str) and d in dims else str(d)
                           for d in shape) + "]"


def sample_dim(signature: dict, names, where: str = "", command: str = "gradc train") -> str:
    """The symbolic leading dim that the inputs ``names`` share: the sample axis.

    Raises:
        GradcError: an input without it (``where``, the model file, prefixes the message).
    """
    inputs, model = signature["inputs"], signature.get("model", "model")
    where = f"{where}: error: " if where else ""
    leading = {n: (inputs[n][1][0] if inputs[n][1] else None) for n in names}
    batch = next(iter(leading.values()), None)
    for n, d in leading.items():
        if not isinstance(d, str) or d != batch:
            raise GradcError(
                f"{where}model '{model}': input '{n}' {fmt_shape(inputs[n][1])} has no "
                f"batch dim: {command} needs every input to start with the same symbolic "
                f"dim (like [B, ...]), the sample axis")
    return batch


def analyse(signature: dict, where: str = "", label: str | None = None) -> Task:
    """Return the :class:`Task` of training a model, from its ``signature``: its labels as
    :func:`label_task` finds them (``label`` overrides), its sample dim and the 2-D point
    input of a classifier; ``where`` (the model file) prefixes error messages.

    Raises:
        GradcError: the model has no loss, no inputs, or inputs without a shared symbolic
            leading (sample) dim; a bad ``label``.
    """
    name = signature.get("model", "model")
    prefix = f"{where}: error: " if where else ""
    if not signature.get("loss"):
        raise GradcError(f"{prefix}model '{name}' declares no loss: nothing to train")
    inputs = signature["inputs"]
    if not inputs:
        raise GradcError(f"{prefix}model '{name}' declares no inputs: no data to train on")
    batch = sample_dim(signature, inputs, where)
    task = label_task(signature, where, label)
    point = None
    if task.classifier and task.classes is not None:
        floats = [n for n, (dt, _s) in inputs.items() if dt in FLOAT]
        if len(floats) == 1 and tuple(inputs[floats[0]][1]) == (batch, 2):
            point = floats[0]
    return Task(batch, task.output, task.labels, task.classes, point)


def label_task(signature: dict, where: str = "", label: str | None = None) -> Task:
    """The labels and scores of a model (a :class:`Task` without a sample dim).

    They are those of its loss (the SIGNATURE's ``labels``: the integer input given to
    the loss's first ``cross_entropy`` or ``hinge``, and the output whose value is that
    call's scores); ``label``, the name of an integer input, overrides them: its scores
    are then the first float output shaped like it plus one class axis.

    Raises:
        GradcError: ``label`` is not an integer input, or no output fits it.
    """
    if label is not None:
        return _named_labels(signature, label, f"{where}: error: " if where else "")
    found = signature.get("labels")
    if not found:
        return Task(None, None, None, None)
    classes = found["classes"] if isinstance(found["classes"], int) else None
    return Task(None, found["output"], found["input"], classes)


def _named_labels(signature: dict, label: str, prefix: str) -> Task:
    inputs, outputs = signature["inputs"], signature.get("outputs", {})
    model = signature.get("model", "model")
    ints = [n for n, (dt, _s) in inputs.items() if dt in INT]
    if inputs.get(label, ("",))[0] not in INT:
        what = (f"input '{label}' is {inputs[label][0]}" if label in inputs
                else f"model '{model}' has no input '{label}'")
        raise GradcError(f"{prefix}label '{label}': {what}; the labels must be an integer "
                         f"input (the model's integer inputs: {', '.join(ints) or 'none'})")
    shape = tuple(inputs[label][1])
    for name, (dtype, out_shape) in outputs.items():
        if dtype in FLOAT and tuple(out_shape[:-1]) == shape \
                and len(out_shape) == len(shape) + 1:
            classes = out_shape[-1] if isinstance(out_shape[-1], int) else None
            return Task(None, name, label, classes)
    have = ", ".join(f"{n} {fmt_shape(s)}" for n, (_d, s) in outputs.items()) or "none"
    raise GradcError(f"{prefix}label '{label}': no output has the shape of '{label}' "
                     f"{fmt_shape(shape)} plus a class axis, for its scores (the model's "
                     f"outputs: {have})")


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


def check_arrays(path, arrays: dict, signature: dict, optional=()) -> dict[str, np.ndarray]:
    """Check the arrays read from ``path`` against the model's inputs; the inputs named in
    ``optional`` may be missing, every other one must be there.

    Returns:
        dict input name -> C-contiguous array, in the model's input order (the inputs
        found).

    Raises:
        GradcError: one line naming the file, the array and what is wrong.
    """
    inputs = signature["inputs"]
    extra = [n for n in arrays if n not in inputs]
    missing = [n for n in inputs if n not in arrays and n not in optional]
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
        if name not in arrays:
            continue
        a = arrays[name]
        if a.dtype != numpy_dtype(dtype):
            raise GradcError(f"{path}: error: array '{name}' has dtype {a.dtype.name}, the "
                             f"input needs {dtype} ({NUMPY_NAMES[dtype]})")
        _check_shape(path, name, a, shape, dims)
        if dtype in FLOAT and not np.isfinite(a).all():
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
    """Raise GradcError when the labels of ``task`` (when ``data`` has them) fall outside
    ``0 .. classes-1`` (only below 0 when the class count is known at call time alone)."""
    if task.labels is None or task.labels not in data:
        return
    y, k = data[task.labels], task.classes
    if y.size and (y.min() < 0 or (k is not None and y.max() >= k)):
        want = f"in 0..{k - 1} (the scores have {k} classes)" if k is not None else "at least 0"
        raise GradcError(f"{path}: error: labels '{task.labels}' must be {want}; found "
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
