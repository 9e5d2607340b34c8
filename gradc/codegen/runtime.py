"""Runtime helpers shared by every target, copied verbatim into each generated module.

The assembler (:mod:`gradc.codegen.assemble`) pastes every function and class of this
module (and of :mod:`gradc.codegen.state`) with ``inspect.getsource``; each target adds its
own hooks (:mod:`gradc.codegen.host` for the targets whose arrays are NumPy arrays,
:mod:`gradc.codegen.cuda.runtime`): ``_check`` (validate one array, moving it where the
kernels run), ``_fresh`` (an array made here, moved there), ``_keep`` (remember a state
array moved to the device), ``_route`` (what a call's results go back as), ``_allocate``
(one workspace), ``_result``/``_loss`` (a result as the caller gets it), ``_write_back``,
``_epoch``, ``init_params``, ``load_params`` and ``to_host``.

Contracts:
- Runtime state belongs to a call, never to the module: workspaces are per thread
  (``_LOCAL``), optimizer state lives in the ``state`` dict the caller passes, so
  concurrent calls on one module from several threads give the single-threaded results.
  The state's own helpers (its layout, ``init_state``, ``save_params``/``load_params``)
  are in :mod:`gradc.codegen.state`.
- A Ctrl-C that lands inside Numba's dispatcher reaches the caller as KeyboardInterrupt,
  not as the SystemError Numba wraps it in.
- Every kernel call goes through ``_invoke`` with the threads of its ``_plan`` (the thread
  budget of :mod:`gradc.codegen.threads`, pasted beside these helpers).
- They may use only ``numpy`` (as ``np``), ``math``, ``difflib``, ``threading``, ``time``,
  ``functools``, ``importlib`` (to find gradc when a function is pickled) and the
  module's tables (``SIGNATURE``, ``_PROGRAMS``, ``_NP``): the module runs without gradc.
"""
# ruff: noqa: F821  (SIGNATURE, _PROGRAMS and the target hooks are the generated module's)

import difflib
import functools
import importlib
import math
import threading
import time

import numpy as np

_LOCAL = threading.local()
_PROGRAMS = {}
SIGNATURE = {}


def _fmt(shape, dims=None):
    """Format a declared shape, with bound dims shown as B=4."""
    dims = dims or {}
    items = [f"{d}={dims[d]}" if isinstance(d, str) and d in dims else str(d) for d in shape]
    return "[" + ", ".join(items) + "]"


def _check_shape(value, name, dtype, shape, dims):
    """Check ``value``'s dtype and shape against the declaration, binding dims in ``dims``;
    raise ValueError naming ``name`` otherwise."""
    np_dtype = _NP[dtype]
    got = np.dtype(value.dtype)
    if got != np_dtype and got.newbyteorder("=") == np_dtype:
        order = "big" if got.byteorder == ">" else "little"
        raise ValueError(f"{name}: expected dtype {dtype} ({np.dtype(np_dtype).name}) in the "
                         f"machine's byte order, got a {order}-endian {got.name}; convert "
                         f"with .astype(np.{got.name})")
    if got != np_dtype:
        raise ValueError(f"{name}: expected dtype {dtype} ({np.dtype(np_dtype).name}), "
                         f"got {np.dtype(value.dtype).name}")
    if len(value.shape) != len(shape):
        raise ValueError(f"{name}: expected shape {_fmt(shape, dims)}, got "
                         f"{list(value.shape)}")
    for d, n in zip(shape, value.shape):
        if isinstance(d, str):
            bound = dims.setdefault(d, n)
            if n < 1:
                if bound == n:  # bound just now, by this very size: show [B, ...]
                    del dims[d]
                raise ValueError(f"{name}: expected shape {_fmt(shape, dims)}, got "
                                 f"{list(value.shape)} (every size must be at least 1: {d} "
                                 f"is {n})")
            if bound != n:
                raise ValueError(f"{name}: expected shape {_fmt(shape, dims)}, got "
                                 f"{list(value.shape)} ({d} was bound to {bound} by an "
                                 "earlier argument)")
        elif d != n:
            raise ValueError(f"{name}: expected shape {_fmt(shape, dims)}, got "
                             f"{list(value.shape)}")


def _scalar_array(value, name, dtype, shape):
    """A Python or NumPy scalar given for a rank-0 declaration, as a 0-d array; a float
    for an integer declaration, or an integer out of its range, is a ValueError."""
    if not shape and isinstance(value, (int, float)) and not isinstance(value, bool):
        if dtype[0] == "i" and not isinstance(value, int):
            raise ValueError(f"{name}: expected an integer ({dtype}), got {value!r}")
        info = np.iinfo(_NP[dtype]) if dtype[0] == "i" else None
        if info is not None and not info.min <= value <= info.max:
            raise ValueError(f"{name}: {value} does not fit in {dtype} "
                             f"([{info.min}, {info.max}])")
        return np.array(value, _NP[dtype])
    if not shape and isinstance(value, np.generic):
        return np.asarray(value)  # a NumPy scalar: its own dtype is checked later
    return value


def _unknown(names, known, what, where=""):
    """Raise ValueError for the first of ``names`` not in ``known``: "unknown {what}
    'NAME'{where}", with a did-you-mean and the known names."""
    for name in names:
        if not isinstance(name, str) or name not in known:  # a None, int or list name too
            by_case = {k.lower(): k for k in known}  # X= for x: the case-insensitive match
            close = [by_case[str(name).lower()]] if str(name).lower() in by_case else \
                difflib.get_close_matches(str(name), list(known), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ValueError(f"unknown {what} '{name}'{where}{hint} (known: "
                             f"{', '.join(known) or 'none'})")


def _fetch(values, name, kind, dims):
    """Validate ``values[name]`` against SIGNATURE[kind][name] (binding dims)."""
    dtype, shape = SIGNATURE[kind][name]
    if name not in values:
        raise ValueError(f"missing {kind[:-1]} '{name}' (shape {_fmt(shape)}, {dtype})")
    return _check(values[name], name, dtype, shape, dims)


def _zeros(kind, name, dims):
    dtype, shape = SIGNATURE[kind][name]
    return np.zeros([dims.get(d, 1) if isinstance(d, str) else d for d in shape], _NP[dtype])


def _prepare(program, params, inputs, extra=None, state=None, seed=None):
    """Validate everything ``program`` takes, in call order (its ``args`` roles).

    ``extra``: ``(argument name, dict)`` of the tangents, cotangents or vector; missing
    entries are zeros. Optimizer state and buffers come from ``state`` (see
    ``state._use_state``); noise is drawn from ``seed`` (else from the counter in
    ``state``).
    Returns the call ``(program, arrays, dims tuple, route)``."""
    info = _PROGRAMS[program]
    if not isinstance(params, dict):
        raise ValueError(f"params: expected a dict of arrays, got {type(params).__name__}")
    _unknown(params, SIGNATURE["params"], "param")
    _unknown(inputs, SIGNATURE["inputs"], "input")
    reads = _state_reads(program, seed)
    if reads:
        _use_state(state, reads)
    if extra is not None:
        if not isinstance(extra[1], dict):
            raise ValueError(f"{extra[0]}: expected a dict of arrays, got "
                             f"{type(extra[1]).__name__}")
        kind = "cotangents" if any(role == "cotangent" for role, _ in info["args"]) \
            else "tangents"
        _unknown(extra[1], SIGNATURE[kind], "key", f" in {extra[0]}")
    dims, arrays, rng = {}, [], None
    for role, name in info["args"]:
        if role == "param":
            arrays.append(_fetch(params, name, "params", dims))
        elif role == "input":
            arrays.append(_fetch(inputs, name, "inputs", dims))
        elif role in ("tangent", "cotangent"):
            value = extra[1].get(name)
            value = _zeros(role + "s", name, dims) if value is None else value
            dtype, shape = SIGNATURE[role + "s"][name]
            arrays.append(_check(value, f"{extra[0]}['{name}']", dtype, shape, dims))
        elif role == "noise":
            if rng is None:
                if seed is None:
                    seed = state["rng"] = state["rng"] + 1
                rng = np.random.default_rng(seed)
            dtype, shape = SIGNATURE["noise"][name]
            arrays.append(_fresh(rng.random(
                [dims[d] if isinstance(d, str) else d for d in shape], dtype=_NP[dtype])))
        else:
            key = _state_key(role, name)
            dtype, shape = SIGNATURE["buffers" if role == "buffer" else "params"][name]
            arrays.append(_check(state[key], f"state '{key}'", dtype, shape, {}))
            _keep(state, key, arrays[-1], shape)
    if program == "train_step":
        _writeable(params)
        if isinstance(state["step"], bool) or not isinstance(state["step"], (int, np.integer)):
            raise ValueError(f"state['step']: expected the step count (an int), got "
                             f"{state['step']!r}")
    return (program, arrays, tuple(dims[d] for d in info["dims"]),
            _route(info, arrays, params, inputs, None if extra is None else extra[1]))


def _writeable(params):
    """Raise ValueError for a read-only NumPy param (train_step updates params in place)."""
    for name, value in params.items():
        if isinstance(value, np.ndarray) and not value.flags.writeable:
            raise ValueError(f"{name}: array is read-only, and train_step updates params in "
                             "place; pass a writeable copy (np.array(...))")


def _plan(program, dims):
    """What a call of ``program`` for these dims runs with: ``(workspace, threads)``, made
    once per thread and reused (calls from several threads never share scratch memory).
    ``threads`` is the plan's :class:`_Threads` (:mod:`gradc.codegen.threads`: the budget
    of the program's work-weighted mean BLAS product, ``_PROGRAMS[program]["macs"]``,
    against the cores; GRADC_NUM_THREADS is read here)."""
    spaces = _LOCAL.__dict__.setdefault("spaces", {})
    plan = spaces.get((program, dims))
    if plan is None:
        cores = _usable_cores()
        plan = spaces[(program, dims)] = (
            _allocate(program, dims),
            _Threads(_thread_budget(_PROGRAMS[program]["macs"](*dims), cores), cores))
    return plan


def _interrupted(error):
    """The exception to raise for ``error``, a SystemError out of a compiled call: a
    KeyboardInterrupt when a Ctrl-C landed inside Numba's dispatcher, else ``error``."""
    cause = error.__cause__ or error.__context__
    return KeyboardInterrupt() if isinstance(cause, KeyboardInterrupt) else error


def _invoke(kernel, threads, *args):
    """Call a compiled kernel with ``threads`` (the :class:`_Threads` of its :func:`_plan`;
    timed where the plan races thread counts), turning Numba's SystemError around a Ctrl-C
    back into the KeyboardInterrupt it was."""
    n = _set_threads(threads)
    try:
        if threads.most == 1:
            return kernel(*args)
        start = time.perf_counter()
        out = kernel(*args)
        end = time.perf_counter()
        threads.record(n, end - start, end)
        return out
    except SystemError as e:
        error = _interrupted(e)
        if error is e:
            raise
        raise error from None


def _run(call, scalars=()):
    """Run a prepared call: the program's kernel with the thread's workspace and threads."""
    program, arrays, dims, _ = call
    ws, threads = _plan(program, dims)
    return _invoke(_PROGRAMS[program]["kernel"], threads, *arrays, *scalars, ws, *dims)


def _named(kind, values, call):
    """Results as a dict name -> array, in the order of SIGNATURE[kind]."""
    return {n: _result(v, SIGNATURE[kind][n], call[3]) for n, v in zip(SIGNATURE[kind], values)}


def _rate(lr):
    """The learning rate as a float; ValueError naming ``lr`` otherwise."""
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.integer, np.floating)):
        raise ValueError(f"lr: expected a number, got {type(lr).__name__}")
    return float(lr)


def _epoch_plan(params, lr, batch_size, seed, order, state, inputs):
    """What every target's train_epoch starts with: (lr as a float, the prepared
    train_step call, the rows of the epoch in order, the batch size). The rows are
    ``order`` (see :func:`_epoch_rows`), or ``default_rng(seed).permutation(n)`` of the
    n samples; the epoch is their minibatches of ``batch_size``, the last one smaller."""
    lr = _rate(lr)
    call = _prepare("train_step", params, inputs, None, state, seed)
    n = call[2][_PROGRAMS["train_step"]["dims"].index(SIGNATURE["batch"])]
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    rows = np.random.default_rng(seed).permutation(n) if order is None else \
        _epoch_rows(order, n)
    return lr, call, rows, min(batch_size, len(rows))


def _epoch_rows(order, n):
    """``order`` as the rows of an epoch, an int64 array: it must be a non-empty 1-D
    integer array (or sequence) of indices into the ``n`` samples; ValueError naming
    ``order`` otherwise."""
    rows = np.asarray(order)
    if rows.ndim != 1 or rows.dtype.kind not in "iu" or not rows.size:
        raise ValueError(f"order: expected a non-empty 1-D integer array of row indices, "
                         f"got {type(order).__name__} of shape {list(rows.shape)} and "
                         f"dtype {rows.dtype}")
    low, high = rows.min(), rows.max()
    if low < 0 or high >= n:
        raise ValueError(f"order: row indices must lie in [0, {n}) (the inputs have {n} "
                         f"rows), got {low if low < 0 else high}")
    return np.ascontiguousarray(rows, np.int64)


def _check_seed(seed):
    """ValueError unless ``seed`` (given, not None) is an integer."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed: expected an int or None, got {type(seed).__name__}")


def _jacobian(params, of, wrt, state, inputs):
    """The Jacobian of output ``of`` with respect to ``wrt`` (a param or a ``wrt`` input),
    shape of's shape + wrt's shape, by the cheaper mode: one jvp per element of ``wrt``
    when it has fewer elements than ``of``, else one vjp per element of ``of``."""
    _unknown([of], SIGNATURE["outputs"], "output")
    _unknown([wrt], SIGNATURE["tangents"], "param or wrt input")
    y = to_host(forward(params, state=state, **inputs)[of])
    x = to_host((params if wrt in SIGNATURE["params"] else inputs)[wrt])
    jac = np.zeros(y.shape + x.shape, y.dtype)
    flat = jac.reshape(y.size, x.size)
    if x.size <= y.size:
        for k in range(x.size):
            basis = np.zeros(x.size, x.dtype)
            basis[k] = 1
            tans = jvp(params, {wrt: basis.reshape(x.shape)}, state=state, **inputs)[1]
            flat[:, k] = to_host(tans[of]).ravel()
    else:
        for k in range(y.size):
            basis = np.zeros(y.size, y.dtype)
            basis[k] = 1
            grads = vjp(params, {of: basis.reshape(y.shape)}, state=state, **inputs)
            flat[k] = to_host(grads[wrt]).ravel()
    return jac


def _init_params_host(seed=0):
    """A fresh dict of params (C-contiguous NumPy arrays) drawn with ``seed``."""
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


class _Public(functools.partial):
    """A public function of the module that pickles by value: as the module's text and
    the function's name, rebuilt by gradc in the receiving process (which need not have
    this model in its cache). Calls go straight to the function (``partial``'s C call)."""

    def __new__(cls, fn):
        self = super().__new__(cls, fn)
        self.__name__, self.__qualname__, self.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
        self.__wrapped__ = fn
        return self

    def __reduce__(self):
        try:
            rebuild = importlib.import_module("gradc.runtime.loader").rebuild_function
        except ImportError:
            raise TypeError("pickling a gradc module's function needs gradc installed, to "
                            "rebuild the module in the receiving process") from None
        with open(__file__, encoding="utf-8") as f:
            text = f.read()
        return rebuild, (_KEY, text, self.__name__)

    def __repr__(self):
        return f"<gradc function {self.__name__} of {__name__}>"
