"""The CUDA target's runtime hooks, copied verbatim into its generated modules.

They complete the shared helpers of :mod:`gradc.codegen.runtime` (see there for each
hook's contract). The design (see ``docs/cuda.md``): params and optimizer state live on
the device. ``init_params`` and ``load_params`` return device arrays; ``init_state``
creates the optimizer state and batchnorm statistics on the device. Every array argument
may be a NumPy array (copied to the device for the call) or a device array (used in
place); a ``train_step`` on NumPy params writes the updated values back into them, so the
in-place contract of the CPU target holds either way. Results are device arrays when the
caller passed a device array as an input (or tangent / cotangent; for entries without
those: as a param), NumPy arrays otherwise; losses are floats.

Same rules as :mod:`gradc.codegen.cuda.helpers`: numpy, math, cuda and the generated
module's names only.
"""
# ruff: noqa: F821  (cuda, SIGNATURE, _PROGRAMS and the helpers are the generated module's)

import numpy as np


def _is_device(value):
    """True for device arrays: numba's, the simulator's, and any object exposing
    ``__cuda_array_interface__`` (CuPy, torch CUDA tensors)."""
    return hasattr(value, "__cuda_array_interface__") or hasattr(value, "copy_to_host")


def _check(value, name, dtype, shape, dims):
    """Return ``value`` validated against ``dtype``/``shape`` (binding dims in ``dims``) as
    a device array (1 element for a scalar): a NumPy array is copied to the device once,
    a device array is used in place. Raise ValueError naming ``name`` otherwise."""
    value = _scalar_array(value, name, dtype, shape)
    device = _is_device(value)
    if device and not hasattr(value, "copy_to_host"):
        value = cuda.as_cuda_array(value)  # a view of the same memory: no copy
    if not device and not isinstance(value, np.ndarray):
        raise ValueError(f"{name}: expected a numpy or device array of {dtype} with shape "
                         f"{_fmt(shape, dims)}, got {type(value).__name__}")
    _check_shape(value, name, dtype, shape, dims)
    contiguous = value.is_c_contiguous() if device else value.flags.c_contiguous
    if not contiguous:
        raise ValueError(f"{name}: array is not C-contiguous (shape {list(value.shape)}); "
                         + ("pass a contiguous copy" if device else
                            "pass np.ascontiguousarray(...)"))
    if not device:
        value = cuda.to_device(value)
    return value.reshape(1) if not shape else value


def _fresh(array):
    """An array made on the host, copied to the device."""
    return cuda.to_device(array)


def _keep(state, key, array, shape):
    """A NumPy state array moved to the device stays there from now on."""
    if isinstance(state.get(key), np.ndarray):
        state[key] = array.reshape(tuple(shape))


def _route(info, arrays, params, inputs, extra):
    """(whether results go back as device arrays, [(device param, NumPy param)] to write
    back after an in-place update)."""
    data, on_device, back = [], [], []
    for (role, name), array in zip(info["args"], arrays):
        if role == "param":
            on_device.append(_is_device(params[name]))
            if isinstance(params[name], np.ndarray):
                back.append((array, params[name]))
        elif role == "input":
            data.append(_is_device(inputs[name]))
        elif role in ("tangent", "cotangent"):
            data.append(_is_device(extra.get(name)))
    return (any(data) if data else any(on_device)), back


def _allocate(program, dims):
    """The workspace views of ``program`` for these dims."""
    info = _PROGRAMS[program]
    ws = cuda.device_array(max(info["ws"](*dims), 1), _FT)
    return info["views"](ws, *dims)


def _result(value, spec, route):
    """A result as the caller gets it: a fresh device array or a NumPy array."""
    shape = spec[1]
    if not route[0]:
        host = value.copy_to_host()
        return host.reshape(()) if not shape else host
    if not shape:  # a 1-element workspace slice: hand out a copy of its own
        return cuda.to_device(value.copy_to_host().reshape(()))
    return value


def _loss(value):
    """A scalar result as a Python float (waits for the kernels)."""
    return float(value.copy_to_host()[0])


def _write_back(call):
    """Copy params updated on the device into the caller's NumPy arrays."""
    for dev, host in call[3][1]:
        dev.copy_to_host(host.reshape(dev.shape))


def init_params(seed=0, device=True):
    """Return a fresh dict of params drawn with ``seed`` (the same values as the CPU
    target): device arrays, or C-contiguous NumPy arrays with ``device=False``."""
    params = _init_params_host(seed)
    return {k: cuda.to_device(v) for k, v in params.items()} if device else params


def to_host(values):
    """NumPy copies of a dict of (device or NumPy) arrays, or of one array."""
    if isinstance(values, dict):
        return {k: to_host(v) for k, v in values.items()}
    if hasattr(values, "copy_to_host"):
        return values.copy_to_host()
    if hasattr(values, "__cuda_array_interface__"):
        return cuda.as_cuda_array(values).copy_to_host()
    return np.array(values)


def load_params(path, device=True, *, state=None):
    """Read params saved by ``save_params`` (names, shapes and dtypes must match), as
    device arrays (NumPy with ``device=False``). The running statistics saved with them
    go into ``state`` (the module's own by default), on the device."""
    params = _load_params_host(path, state)
    return {k: cuda.to_device(v) for k, v in params.items()} if device else params


def _epoch(params, lr, batch_size, seed, order, state, inputs):
    """One epoch of train_step over the rows of :func:`_epoch_plan`: the data goes to the
    device once, each minibatch is gathered there, and the loss is summed there (one
    wait at the end)."""
    lr, call, rows, bs = _epoch_plan(params, lr, batch_size, seed, order, state, inputs)
    _, arrays, dims, _ = call
    info, bdim, n = _PROGRAMS["train_step"], SIGNATURE["batch"], len(rows)
    rows_dev = cuda.to_device(rows)
    noise = np.random.RandomState(seed)  # the CPU target's epoch draws the same masks
    roles = [role for role, _ in info["args"]]
    batched = {}
    for k, role in enumerate(roles):
        if role == "input":
            samples = arrays[k].shape[0]
            flat = arrays[k].reshape((samples, arrays[k].size // samples))
            batched[k] = (flat, cuda.device_array((bs, flat.shape[1]), arrays[k].dtype))
    acc = cuda.to_device(np.zeros(1, _FT))
    for start in range(0, n, bs):
        m = min(bs, n - start)
        step_dims = tuple(m if d == bdim else v for d, v in zip(info["dims"], dims))
        step = list(arrays)
        for k, (flat, buf) in batched.items():
            _k_gather_rows[_grid(m * flat.shape[1]), _TPB](buf, flat, rows_dev, start, m)
            step[k] = buf[:m].reshape((m,) + tuple(arrays[k].shape[1:]))
        for k, role in enumerate(roles):
            if role == "noise":
                shape = (m,) + tuple(arrays[k].shape[1:])
                step[k] = cuda.to_device(noise.random_sample(shape).astype(arrays[k].dtype))
        t = state["step"] = state["step"] + 1
        r = _run(("train_step", step, step_dims, None), (lr, *_step_scalars(t)))
        _k_accumulate[1, 1](acc, r[0], _FT(m))
    _write_back(call)
    return float(acc.copy_to_host()[0]) / n
