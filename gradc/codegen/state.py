"""The state dict's runtime helpers, copied verbatim into each generated module (beside
:mod:`gradc.codegen.runtime`, under the same rules: numpy, the standard library the
module imports (``warnings`` here: a params file without the running statistics), the
shared helpers and the module's tables).

A state holds the step count (``step``), the noise counter (``rng``), the optimizer's
slots (``SLOT:PARAM``) and the running statistics (``buffer:NAME``). Contracts: an empty
state dict is filled with a fresh :func:`init_state` by the first call that reads it; any
other must hold every key the call reads and none a state cannot have, and what the caller
passed is never replaced or reset (only a training step's in-place updates, the counters
and ``load_params`` change it). ``save_params`` and ``load_params`` carry the running
statistics with the params.
"""
# ruff: noqa: F821  (SIGNATURE, _STATE_KEYS, _DEFAULT_STATE and the hooks are the module's)

import warnings

import numpy as np


def _state_key(role, name):
    """The state key of an argument of ``role`` 'buffer' (``buffer:NAME``) or
    'state:SLOT' (``SLOT:NAME``)."""
    return f"buffer:{name}" if role == "buffer" else f"{role[6:]}:{name}"


def _state_reads(program, seed):
    """The state keys a call of program ``program`` reads: the step count (train_step), the
    noise counter (noise drawn without a seed), its optimizer slots and buffers."""
    args = _PROGRAMS[program]["args"]
    reads = ["step"] if program == "train_step" else []
    if seed is None and any(role == "noise" for role, _ in args):
        reads.append("rng")
    return reads + [_state_key(role, name) for role, name in args
                    if role == "buffer" or role.startswith("state:")]


def _use_state(state, reads):
    """Make ``state`` ready for a call that reads the keys ``reads``. An empty dict is
    filled with a fresh :func:`init_state` (the first use); any other must already hold
    every key the call reads and no key a state cannot have: ValueError otherwise, and
    the caller's entries are never replaced or reset."""
    if not state:
        state.update(init_state())
        return
    _unknown(state, _STATE_KEYS, "key", " in state")
    missing = [key for key in reads if key not in state]
    if missing:
        raise ValueError(f"state: missing {', '.join(repr(k) for k in missing)}, which "
                         "this call reads; pass a complete state (init_state(), "
                         "Model.init_state()) with your entries changed, or an empty "
                         "dict to have a fresh one made")


def _state_arrays():
    """The arrays of a complete state: key -> (dtype, shape, np.zeros or np.ones), each
    optimizer slot of each param (``m:W1``, ...), then each buffer (``buffer:NAME``)."""
    out = {}
    for slot in SIGNATURE["optimizer"]["states"]:
        for name, (dtype, shape) in SIGNATURE["params"].items():
            out[f"{slot}:{name}"] = (dtype, shape, np.zeros)
    for name, (dtype, shape) in SIGNATURE["buffers"].items():
        fill = np.ones if SIGNATURE["buffer_inits"][name][0] == "ones" else np.zeros
        out[f"buffer:{name}"] = (dtype, shape, fill)
    return out


def _state_keys():
    """Every key of a complete state, in order (a set-like view): the step count, the
    noise counter, the arrays."""
    return dict.fromkeys(("step", "rng", *_state_arrays())).keys()


def init_state(params=None):
    """Return a fresh state: the step count and the noise seed counter (0), optimizer
    slots (zeros) and batchnorm running statistics (their inits). ``params`` is not
    needed (accepted for older callers)."""
    state = {"step": 0, "rng": 0}
    for key, (dtype, shape, fill) in _state_arrays().items():
        state[key] = _fresh(fill(shape, _NP[dtype]))
    return state


def _buffer_keys():
    """The state keys of the running statistics (``buffer:NAME``), in SIGNATURE order."""
    return [f"buffer:{name}" for name in SIGNATURE["buffers"]]


def save_params(params, path, *, state=None):
    """Write ``params`` to ``path`` as .npz, one array per param name, with the running
    statistics of ``state`` (the module's own by default) as ``buffer:NAME`` arrays, as
    PyTorch's state_dict carries buffers: a batchnorm model loaded from the file predicts
    as it did. (An empty state is filled on first use: the statistics' inits.)"""
    state = _DEFAULT_STATE if state is None else state
    if type(state) is not dict:
        raise ValueError(f"state: expected a dict, got {type(state).__name__}")
    _unknown(params, SIGNATURE["params"], "param")
    for name in SIGNATURE["params"]:
        _fetch(params, name, "params", {})
    arrays = {name: to_host(params[name]).reshape(shape)
              for name, (_, shape) in SIGNATURE["params"].items()}
    if _buffer_keys():
        _use_state(state, _buffer_keys())
    for key, name in zip(_buffer_keys(), SIGNATURE["buffers"]):
        arrays[key] = to_host(state[key]).reshape(SIGNATURE["buffers"][name][1])
        _check_shape(arrays[key], f"state '{key}'", *SIGNATURE["buffers"][name], {})
    np.savez(path, **arrays)


def _load_params_host(path, state):
    """Params saved by ``save_params`` as NumPy arrays; names, shapes and dtypes must
    match. The running statistics of the file are written into ``state`` (the module's
    own for None; an empty one is first filled with a fresh init_state()); a file without
    them (saved by an older gradc) leaves the state as it is, with a warning."""
    state = _DEFAULT_STATE if state is None else state
    if type(state) is not dict:
        raise ValueError(f"state: expected a dict, got {type(state).__name__}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: np.array(data[name], order="C") for name in data.files}
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"{path}: not a params file ({e})") from None
    _unknown(arrays, [*SIGNATURE["params"], *_buffer_keys()], "array", f" in {path}")
    buffers = [key for key in _buffer_keys() if key in arrays]
    specs = dict(SIGNATURE["params"])
    if buffers:  # all of them, or the file is not one save_params wrote for this model
        specs.update(zip(_buffer_keys(), SIGNATURE["buffers"].values()))
    for name, (dtype, shape) in specs.items():
        if name not in arrays:
            raise ValueError(f"{path}: missing array '{name}' (shape {_fmt(shape)}, {dtype})")
        _check_shape(arrays[name], name, dtype, shape, {})
    if _buffer_keys() and not buffers:
        warnings.warn(f"{path} holds no running statistics ({', '.join(_buffer_keys())}): "
                      "the state keeps its own; save with this gradc's save_params (or "
                      "gradc train) to keep them with the params", stacklevel=3)
    if buffers and not state:
        state.update(init_state())
    for key in buffers:
        state[key] = _fresh(arrays[key])
    return {name: arrays[name] for name in SIGNATURE["params"]}
