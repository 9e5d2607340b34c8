"""Saving and restoring what ``--resume`` needs: params, running statistics, optimizer
state and history.

``params.npz`` is :meth:`gradc.api.Model.save_params`' layout: one array per param name,
and batchnorm's running statistics (``buffer:NAME``), which ``model.load_params`` puts
back into ``model.state``. ``optimizer.npz`` beside it holds the optimizer's name, its step
count, the dropout noise counter and its per-param slots (``m:W1``, ``v:W1``, ... as in
``model.state``), so that a resumed Adam or momentum run continues with its moments
instead of restarting them.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

from gradc.errors import GradcError
from gradc.training.files import replacing
from gradc.training.history import HISTORY_FILE

OPTIMIZER_FILE = "optimizer.npz"
PARAMS_FILE = "params.npz"


def params_file(path: str) -> Path:
    """The params file that ``--resume``/``--params PATH`` names: ``PATH`` itself, or
    ``PATH/params.npz`` when ``PATH`` is a folder (the ``--out`` folder of an earlier run,
    where ``optimizer.npz`` and ``history.csv`` lie beside it). The argparse ``type`` of
    both options, so that every later use (the optimizer state and history beside it)
    reads the resolved file."""
    path = Path(path)
    return path / PARAMS_FILE if path.is_dir() else path


def save_run(model, params: dict, history, out: Path) -> list[Path]:
    """Write what ``--resume`` reads into the folder ``out``: the params, the optimizer
    state and the history (``history.write``); return the paths written."""
    written = [out / PARAMS_FILE, out / OPTIMIZER_FILE, out / HISTORY_FILE]
    save_params(model, params, written[0])
    save_optimizer(model, written[1])
    history.write(written[2])
    return written


def load_params(model, path, option: str = "--resume") -> dict:
    """Read params for ``option`` (``--resume``, ``--params``): the running statistics
    saved with them go into ``model.state`` (a file without them is a note on stderr); a
    missing file or a mismatch with the model is a GradcError."""
    path = Path(path)
    if not path.is_file():
        where = (f"no {PARAMS_FILE} in the folder {path.parent}" if path.name == PARAMS_FILE
                 and path.parent.is_dir() else "no such params file")
        raise GradcError(f"{path}: error: {where} ({option})")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            params = model.load_params(path)
    except ValueError as e:
        raise GradcError(f"{path}: error: these params do not fit the model ({option}): "
                         f"{e}") from None
    for w in caught:    # a file without running statistics: one line, not a warning's two
        print(f"gradc: note: {w.message}", file=sys.stderr, flush=True)
    return params


def save_params(model, params: dict, path, state: dict | None = None) -> None:
    """Write ``params.npz`` with ``model.save_params`` (the running statistics of
    ``state``, default ``model.state``, with them), through a temporary file renamed over
    ``path`` (an interrupted or failed write leaves the old file, never half of one)."""
    with replacing(path) as tmp:
        model.save_params(params, tmp, state=state)


def _slots(model, state: dict) -> dict:
    """The optimizer's arrays of ``state`` (``SLOT:PARAM`` keys), as NumPy arrays."""
    slots = model.signature["optimizer"]["states"]
    return {k: model.to_host(v) for k, v in state.items() if k.split(":")[0] in slots}


def save_optimizer(model, path) -> None:
    """Write the optimizer's part of ``model.state`` to ``path`` (atomically, as
    :func:`save_params`): its name, step count, the noise counter and its slots (the
    running statistics go into ``params.npz``). Before the first optimizer step the state
    is empty: the file then holds the optimizer's name and step 0 only, and resuming from
    it starts the optimizer fresh."""
    state = model.state
    name = model.signature["optimizer"]["name"]
    with replacing(path) as tmp:
        np.savez(tmp, __optimizer__=np.array(name),
                 __step__=np.array(int(state.get("step", 0))),
                 __rng__=np.array(int(state.get("rng", 0))), **_slots(model, state))


def load_optimizer(model, params: dict, path) -> str:
    """Restore the optimizer's part of ``model.state`` (slots, step count, noise counter)
    from ``path`` if it fits the model's optimizer and params; the rest of the state (the
    running statistics ``load_params`` put there) stays. An empty state is first filled
    with ``model.init_state()``.

    Returns:
        a one-line note for the user: what was restored, or why not (then the optimizer
        starts fresh).
    """
    path = Path(path)
    if not path.is_file():
        return "no optimizer state beside the params: the optimizer starts fresh"
    name = model.signature["optimizer"]["name"]
    try:
        with np.load(path, allow_pickle=False) as data:
            saved = str(data["__optimizer__"])
            step = int(data["__step__"])
            rng = int(data["__rng__"]) if "__rng__" in data.files else None
            arrays = {k: np.array(data[k], order="C") for k in data.files
                      if not k.startswith(("__", "buffer:"))}  # buffers: an older layout
    except (OSError, ValueError, KeyError, EOFError, TypeError, AttributeError) as e:
        return f"{path}: unreadable optimizer state ({e}): the optimizer starts fresh"
    if saved != name:
        return f"{path} is {saved} state, this run uses {name}: the optimizer starts fresh"
    if step == 0 and not arrays:
        return f"{path}: no optimizer step was taken before: the optimizer starts fresh"
    slots = model.signature["optimizer"]["states"]
    want = {f"{s}:{p}": params[p] for s in slots for p in params}
    if set(arrays) != set(want) or any(arrays[k].shape != want[k].shape or
                                       arrays[k].dtype != want[k].dtype for k in want):
        return f"{path} does not match the model's params: the optimizer starts fresh"
    if not model.state:
        model.state.update(model.init_state())
    model.state.update(arrays)
    model.state["step"] = step
    if rng is not None:
        model.state["rng"] = rng
    return f"resumed {name} state at step {step} from {path}"
