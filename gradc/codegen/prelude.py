"""Python helpers copied verbatim into every generated module (by ``inspect.getsource``).

They validate arguments, cache workspaces, initialise params and keep optimizer state,
reading the module-level tables ``SIGNATURE`` and ``_ENTRIES`` of the generated module.
They may use only ``numpy`` (as ``np``), ``math`` and each other: the generated module
must run without gradc installed.
"""
# ruff: noqa: F821  (SIGNATURE and _ENTRIES are defined by the generated module)

import difflib
import math

import numpy as np

_NP = {"f32": np.float32, "f64": np.float64, "i32": np.int32, "i64": np.int64}
_WS = {}
_DEFAULT_STATE = {}
_ENTRIES = {}
SIGNATURE = {}


def _fmt(shape, dims=None):
    """Format a declared shape, with bound dims shown as B=4."""
    dims = dims or {}
    items = [f"{d}={dims[d]}" if isinstance(d, str) and d in dims else str(d) for d in shape]
    return "[" + ", ".join(items) + "]"


def _check(value, name, dtype, shape, dims):
    """Return ``value`` validated against ``dtype``/``shape`` (binding dims in ``dims``),
    as a 1-element view when it is a scalar; raise ValueError naming ``name`` otherwise."""
    np_dtype = _NP[dtype]
    if not shape and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = np.array(value, np_dtype)
    elif not shape and isinstance(value, np.generic):
        value = np.asarray(value)  # a NumPy scalar: its own dtype is checked below
    if not isinstance(value, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array of {dtype} with shape "
                         f"{_fmt(shape, dims)}, got {type(value).__name__}")
    if value.dtype != np_dtype:
        raise ValueError(f"{name}: expected dtype {dtype} ({np.dtype(np_dtype).name}), "
                         f"got {value.dtype.name}")
    if value.ndim != len(shape):
        raise ValueError(f"{name}: expected shape {_fmt(shape, dims)}, got "
                         f"{list(value.shape)}")
    for d, n in zip(shape, value.shape):
        if isinstance(d, str):
            bound = dims.setdefault(d, n)
            if n < 1 or bound != n:
                raise ValueError(f"{name}: expected shape {_fmt(shape, dims)}, got "
                                 f"{list(value.shape)}" + ("" if n < 1 else
                                 f" ({d} was bound to {bound} by an earlier argument)"))
        elif d != n:
            raise ValueError(f"{name}: expected shape {_fmt(shape, dims)}, got "
                             f"{list(value.shape)}")
    if not value.flags.c_contiguous:
        raise ValueError(f"{name}: array is not C-contiguous (shape {list(value.shape)}); "
                         "pass np.ascontiguousarray(...)")
    return value.reshape(1) if not shape else value


def _unknown(names, known, what):
    """Raise ValueError for the first of ``names`` not in ``known``."""
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ValueError(f"unknown {what} '{name}'{hint} (known: "
                             f"{', '.join(known) or 'none'})")


def _fetch(values, name, kind, dims):
    """Validate ``values[name]`` against SIGNATURE[kind][name] (binding dims)."""
    dtype, shape = SIGNATURE[kind][name]
    if name not in values:
        raise ValueError(f"missing {kind[:-1]} '{name}' (shape {_fmt(shape)}, {dtype})")
    return _check(values[name], name, dtype, shape, dims)


def _workspace(entry, dims):
    """The workspace array of ``entry`` for these dims, allocated once and reused."""
    key = (entry, dims)
    ws = _WS.get(key)
    if ws is None:
        info = _ENTRIES[entry]
        ws = _WS[key] = np.empty(max(info["ws"](*dims), 1), _NP[SIGNATURE["float"]])
    return ws


def _zeros(kind, name, dims):
    dtype, shape = SIGNATURE[kind][name]
    return np.zeros([dims.get(d, 1) if isinstance(d, str) else d for d in shape], _NP[dtype])


def _prepare(entry, params, inputs, extra=None, state=None, seed=None):
    """Validate everything an entry takes, in call order (SIGNATURE's roles); return
    (arrays, dims tuple). Missing tangents/cotangents are zeros; optimizer state and
    buffers come from ``state`` (created on first use); noise is drawn from ``seed``."""
    info = _ENTRIES[entry]
    if not isinstance(params, dict):
        raise ValueError(f"params: expected a dict of arrays, got {type(params).__name__}")
    _unknown(params, SIGNATURE["params"], "param")
    _unknown(inputs, SIGNATURE["inputs"], "input")
    dims, arrays, rng = {}, [], None
    for role, name in info["args"]:
        if role == "param":
            arrays.append(_fetch(params, name, "params", dims))
        elif role == "input":
            arrays.append(_fetch(inputs, name, "inputs", dims))
        elif role in ("tangent", "cotangent"):
            _unknown(extra, SIGNATURE[role + "s"], role)
            value = extra.get(name)
            value = _zeros(role + "s", name, dims) if value is None else value
            dtype, shape = SIGNATURE[role + "s"][name]
            arrays.append(_check(value, f"{role} '{name}'", dtype, shape, dims))
        elif role == "noise":
            if rng is None:
                if seed is None:
                    seed = state["rng"] = state.get("rng", 0) + 1
                rng = np.random.default_rng(seed)
            dtype, shape = SIGNATURE["noise"][name]
            arrays.append(rng.random([dims[d] if isinstance(d, str) else d for d in shape],
                                     dtype=_NP[dtype]))
        else:
            if "step" not in state:
                state.update(init_state(params))
            kind = "buffers" if role == "buffer" else "params"
            key = f"buffer:{name}" if role == "buffer" else f"{role[6:]}:{name}"
            dtype, shape = SIGNATURE[kind][name]
            arrays.append(_check(state.get(key), f"state '{key}'", dtype, shape, {}))
    if entry == "train_step" and "step" not in state:
        state.update(init_state(params))
    return arrays, tuple(dims[d] for d in info["dims"])


def _call(entry, arrays, scalars, dim_values):
    info = _ENTRIES[entry]
    return info["kernel"](*arrays, *scalars, _workspace(entry, dim_values), *dim_values)


def _as_output(value, spec):
    """A result as the caller sees it: scalars as 0-d arrays of the declared dtype."""
    dtype, shape = spec
    return value if shape else np.array(value, _NP[dtype]).reshape(())


def init_params(seed=0):
    """Return a fresh dict of params (C-contiguous arrays) drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, (dtype, shape) in SIGNATURE["params"].items():
        kind, *args = SIGNATURE["inits"][name]
        fan_in = shape[1] * math.prod(shape[2:]) if len(shape) > 2 else shape[0] if shape else 1
        fan_out = shape[0] * math.prod(shape[2:]) if len(shape) > 2 else \
            shape[-1] if shape else 1
        if kind == "zeros":
            value = np.zeros(shape)
        elif kind == "ones":
            value = np.ones(shape)
        elif kind == "constant":
            value = np.full(shape, args[0])
        elif kind == "normal":
            value = rng.normal(0.0, args[0], shape)
        elif kind == "uniform":
            value = rng.uniform(args[0], args[1], shape)
        elif kind == "glorot_uniform":
            limit = math.sqrt(6.0 / (fan_in + fan_out))
            value = rng.uniform(-limit, limit, shape)
        else:  # he_normal
            value = rng.normal(0.0, math.sqrt(2.0 / fan_in), shape)
        out[name] = np.array(value, dtype=_NP[dtype], order="C")
    return out


def init_state(params):
    """Return a fresh state for ``params``: optimizer state (zeros, step 0), batchnorm
    running statistics and the noise seed counter."""
    state = {"step": 0, "rng": 0}
    for slot in SIGNATURE["optimizer"]["states"]:
        for name in SIGNATURE["params"]:
            state[f"{slot}:{name}"] = np.zeros_like(params[name])
    for name, (dtype, shape) in SIGNATURE["buffers"].items():
        fill = np.ones if SIGNATURE["buffer_inits"][name][0] == "ones" else np.zeros
        state[f"buffer:{name}"] = fill(shape, _NP[dtype])
    return state


def save_params(params, path):
    """Write ``params`` to ``path`` as .npz, one array per param name."""
    _unknown(params, SIGNATURE["params"], "param")
    arrays = [_fetch(params, name, "params", {}) for name in SIGNATURE["params"]]
    np.savez(path, **{name: a.reshape(SIGNATURE["params"][name][1])
                      for name, a in zip(SIGNATURE["params"], arrays)})


def load_params(path):
    """Read params saved by ``save_params``; names, shapes and dtypes must match."""
    try:
        with np.load(path, allow_pickle=False) as data:
            params = {name: np.array(data[name], order="C") for name in data.files}
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"{path}: not a params file ({e})") from None
    _unknown(params, SIGNATURE["params"], "param")
    for name in SIGNATURE["params"]:
        _fetch(params, name, "params", {})
    return params
