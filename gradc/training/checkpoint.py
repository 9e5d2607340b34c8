"""Saving and restoring what ``--resume`` needs: params, optimizer state and history.

``params.npz`` is :meth:`gradc.api.Model.save_params`' layout (one array per param name).
``optimizer.npz`` beside it holds the optimizer's name, its step count and its per-param
state arrays (``m:W1``, ``v:W1``, ... as in ``model.state``), so that a resumed Adam or
momentum run continues with its moments instead of restarting them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gradc.errors import GradcError
from gradc.training.files import replacing

OPTIMIZER_FILE = "optimizer.npz"


def load_params(model, path, option: str = "--resume") -> dict:
    """Read params for ``option`` (``--resume``, ``--params``); a missing file or a
    mismatch with the model is a GradcError."""
    path = Path(path)
    if not path.is_file():
        raise GradcError(f"{path}: error: no such params file ({option})")
    try:
        return model.load_params(path)
    except ValueError as e:
        raise GradcError(f"{path}: error: these params do not fit the model ({option}): "
                         f"{e}") from None


def save_params(model, params: dict, path) -> None:
    """Write ``params.npz`` with ``model.save_params``, through a temporary file renamed
    over ``path`` (an interrupted or failed write leaves the old file, never half of one)."""
    with replacing(path) as tmp:
        model.save_params(params, tmp)


def save_optimizer(model, path) -> None:
    """Write ``model.state`` to ``path`` (atomically, as :func:`save_params`). Before the
    first optimizer step the state is empty: the file then holds the optimizer's name and
    step 0 only, and resuming from it starts the optimizer fresh."""
    state = model.state
    name = model.signature["optimizer"]["name"]
    arrays = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
    with replacing(path) as tmp:
        np.savez(tmp, __optimizer__=np.array(name),
                 __step__=np.array(int(state.get("step", 0))), **arrays)


def load_optimizer(model, params: dict, path) -> str:
    """Restore ``model.state`` from ``path`` if it fits the model's optimizer and params.

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
            arrays = {k: np.array(data[k], order="C") for k in data.files
                      if not k.startswith("__")}
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
    model.state.clear()
    model.state.update(arrays)
    model.state["step"] = step
    return f"resumed {name} state at step {step} from {path}"
