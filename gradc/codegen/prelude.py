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


def _gather(values, names, kind, dims):
    """Validate the arrays ``values[name]`` for ``names`` of SIGNATURE[kind]."""
    spec = SIGNATURE[kind]
    out = []
    for name in names:
        if name not in values:
            raise ValueError(f"missing {kind[:-1]} '{name}' (shape "
                             f"{_fmt(spec[name][1])}, {spec[name][0]})")
        dtype, shape = spec[name]
        out.append(_check(values[name], name, dtype, shape, dims))
    return out


def _workspace(entry, dims):
    """The workspace array of ``entry`` for these dims, allocated once and reused."""
    key = (entry, dims)
    ws = _WS.get(key)
    if ws is None:
        info = _ENTRIES[entry]
        ws = _WS[key] = np.empty(max(info["ws"](*dims), 1), _NP[SIGNATURE["float"]])
    return ws


def _prepare(entry, params, inputs, extra_kind=None, extra=None):
    """Validate everything an entry takes; return (arrays in call order, dims tuple)."""
    info = _ENTRIES[entry]
    if not isinstance(params, dict):
        raise ValueError(f"params: expected a dict of arrays, got {type(params).__name__}")
    _unknown(params, SIGNATURE["params"], "param")
    _unknown(inputs, SIGNATURE["inputs"], "input")
    dims = {}
    arrays = _gather(params, SIGNATURE["params"], "params", dims)
    arrays += _gather(inputs, info["inputs"], "inputs", dims)
    if extra_kind is not None:
        _unknown(extra, SIGNATURE[extra_kind], extra_kind[:-1])
        for name in SIGNATURE[extra_kind]:
            dtype, shape = SIGNATURE[extra_kind][name]
            value = extra.get(name)
            if value is None:
                value = np.zeros([dims.get(d, 1) if isinstance(d, str) else d
                                  for d in shape], _NP[dtype])
            arrays.append(_check(value, f"{extra_kind[:-1]} '{name}'", dtype, shape, dims))
    dim_values = tuple(dims[d] for d in info["dims"])
    return arrays, dim_values


def _call(entry, arrays, scalars, dim_values):
    info = _ENTRIES[entry]
    return info["kernel"](*arrays, *scalars, _workspace(entry, dim_values), *dim_values)


def _as_output(value, shape):
    return value.reshape(()) if not shape and isinstance(value, np.ndarray) else value


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
    """Return a fresh optimizer state for ``params`` (zeros, step 0)."""
    state = {"step": 0}
    for slot in SIGNATURE["optimizer"]["states"]:
        for name in SIGNATURE["params"]:
            state[f"{slot}:{name}"] = np.zeros_like(params[name])
    return state


def _state_arrays(state, params):
    """The optimizer state arrays in call order (created on first use), checked against
    the params they belong to."""
    if not state:
        state.update(init_state(params))
    out = []
    for slot in SIGNATURE["optimizer"]["states"]:
        for name in SIGNATURE["params"]:
            value = state.get(f"{slot}:{name}")
            dtype, shape = SIGNATURE["params"][name]
            out.append(_check(value, f"optimizer state '{slot}:{name}'", dtype, shape, {}))
    return out


def save_params(params, path):
    """Write ``params`` to ``path`` as .npz, one array per param name."""
    _unknown(params, SIGNATURE["params"], "param")
    arrays = _gather(params, SIGNATURE["params"], "params", {})
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
    _gather(params, SIGNATURE["params"], "params", {})
    return params
