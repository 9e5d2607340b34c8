"""The runtime hooks of the targets whose arrays are NumPy arrays (cpu and numpy), copied
verbatim into their generated modules (every function here: the assembler pastes the
whole module).

They complete the shared helpers of :mod:`gradc.codegen.runtime` (see there for each
hook's contract): arrays stay NumPy arrays, the workspace is one NumPy array, results are
handed out as they come from the kernel. Same rules: numpy, math and the module's tables.
"""
# ruff: noqa: F821  (SIGNATURE, _PROGRAMS and the shared helpers are the generated module's)

import numpy as np



def _check(value, name, dtype, shape, dims):
    """Return ``value`` validated against ``dtype``/``shape`` (binding dims in ``dims``),
    as a 1-element view when it is a scalar; raise ValueError naming ``name`` otherwise."""
    value = _scalar_array(value, name, dtype, shape)
    if not isinstance(value, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array of {dtype} with shape "
                         f"{_fmt(shape, dims)}, got {type(value).__name__}")
    _check_shape(value, name, dtype, shape, dims)
    if not value.flags.c_contiguous:
        raise ValueError(f"{name}: array is not C-contiguous (shape {list(value.shape)}); "
                         "pass np.ascontiguousarray(...)")
    return value.reshape(1) if not shape else value


def _fresh(array):
    """An array made on the host, where the kernels read it: here, the array itself."""
    return array


def _keep(state, key, array, shape):
    """State arrays are used where they are: nothing to remember."""


def _route(info, arrays, params, inputs, extra):
    """Results are NumPy arrays: no routing needed."""


def _allocate(program, dims):
    info = _PROGRAMS[program]
    return np.empty(max(info["ws"](*dims), 1), _NP[SIGNATURE["float"]])


def _result(value, spec, route):
    """A result as the caller sees it: scalars as 0-d arrays of the declared dtype."""
    dtype, shape = spec
    return value if shape else np.array(value, _NP[dtype]).reshape(())


def _loss(value):
    return float(value)


def _write_back(call):
    """Params were updated in place: nothing to copy."""


def _epoch(params, lr, batch_size, seed, order, state, inputs):
    """One epoch of train_step: the minibatches of the rows of :func:`_epoch_plan`. Where
    the module has a train_epoch kernel (the CPU target, for a step of few kernels) it is
    one compiled call; otherwise a loop over the minibatches calling the train_step
    kernel, with the same rows and the same dropout draws (np.random.RandomState(seed) is
    the stream of the compiled loop's np.random.seed(seed))."""
    lr, (_, arrays, dims, _), rows, bs = _epoch_plan(params, lr, batch_size, seed, order,
                                                     state, inputs)
    info, bdim, n = _PROGRAMS["train_step"], SIGNATURE["batch"], len(rows)
    ws, threads = _plan("train_step", tuple(bs if d == bdim else v
                                            for d, v in zip(info["dims"], dims)))
    if "train_epoch" in _PROGRAMS:
        loss = _invoke(_PROGRAMS["train_epoch"]["kernel"], threads, *arrays, lr,
                       state["step"], rows, bs, seed, ws, *dims)
        state["step"] += -(-n // bs)
        return float(loss)
    noise = np.random.RandomState(seed)
    roles = [role for role, _ in info["args"]]
    total = 0.0
    for start in range(0, n, bs):
        m = min(bs, n - start)
        batch = rows[start:start + m]
        step = [a[batch] if role == "input" else
                noise.random_sample((m,) + a.shape[1:]).astype(a.dtype) if role == "noise"
                else a for role, a in zip(roles, arrays)]
        t = state["step"] + 1
        step_dims = tuple(m if d == bdim else v for d, v in zip(info["dims"], dims))
        loss = _invoke(info["kernel"], threads, *step, lr, *_step_scalars(t), ws,
                       *step_dims)[0]
        state["step"] = t
        total += float(loss) * m
    return total / n


def init_params(seed=0):
    """Return a fresh dict of params (C-contiguous arrays) drawn with ``seed``."""
    return _init_params_host(seed)


def load_params(path, *, state=None):
    """Read params saved by ``save_params``; names, shapes and dtypes must match. The
    running statistics saved with them go into ``state`` (the module's own by default)."""
    return _load_params_host(path, state)


def to_host(values):
    """NumPy arrays of a dict of arrays, or of one array (the CPU target's already are)."""
    if isinstance(values, dict):
        return {k: to_host(v) for k, v in values.items()}
    return np.asarray(values)

