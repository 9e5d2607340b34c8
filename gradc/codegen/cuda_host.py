"""Host-side API helpers copied verbatim into every generated CUDA module.

The design (see ``docs/cuda.md``): params and optimizer state live on the device.
``init_params`` and ``load_params`` return device arrays; ``init_state`` creates the
optimizer state and batchnorm statistics on the device. Every array argument may be a
NumPy array (copied to the device for the call) or a device array (used in place); a
``train_step`` on NumPy params writes the updated values back into them, so the in-place
contract of the CPU target holds either way. Results are device arrays when the caller
passed a device array as an input (or tangent / cotangent; for entries without those: as
a param), NumPy arrays otherwise; losses are floats.

Same rules as :mod:`gradc.codegen.cuda_prelude`: numpy, math, cuda and the generated
module's names only.
"""
# ruff: noqa: F821  (cuda, SIGNATURE, _ENTRIES and the helpers are the generated module's)

import numpy as np

_NP = {"f32": np.float32, "f64": np.float64, "i32": np.int32, "i64": np.int64}


def _prepare(entry, params, inputs, extra=None, state=None, seed=None):
    """Validate everything an entry takes, in call order; return (device arrays, dims
    tuple, whether results go back as device arrays, [(device param, NumPy param)] to
    write back after an in-place update)."""
    info = _ENTRIES[entry]
    if not isinstance(params, dict):
        raise ValueError(f"params: expected a dict of arrays, got {type(params).__name__}")
    _unknown(params, SIGNATURE["params"], "param")
    _unknown(inputs, SIGNATURE["inputs"], "input")
    dims, arrays, rng, back = {}, [], None, []
    data, on_device = [], []
    for role, name in info["args"]:
        if role == "param":
            arrays.append(_fetch(params, name, "params", dims))
            if isinstance(params[name], np.ndarray):
                back.append((arrays[-1], params[name]))
            on_device.append(_is_device(params[name]))
        elif role == "input":
            arrays.append(_fetch(inputs, name, "inputs", dims))
            data.append(_is_device(inputs[name]))
        elif role in ("tangent", "cotangent"):
            _unknown(extra, SIGNATURE[role + "s"], role)
            value = extra.get(name)
            value = _zeros(role + "s", name, dims) if value is None else value
            data.append(_is_device(value))
            dtype, shape = SIGNATURE[role + "s"][name]
            arrays.append(_check(value, f"{role} '{name}'", dtype, shape, dims))
        elif role == "noise":
            if rng is None:
                if seed is None:
                    seed = state["rng"] = state.get("rng", 0) + 1
                rng = np.random.default_rng(seed)
            dtype, shape = SIGNATURE["noise"][name]
            arrays.append(cuda.to_device(rng.random(
                [dims[d] if isinstance(d, str) else d for d in shape], dtype=_NP[dtype])))
        else:
            if "step" not in state:
                state.update(init_state(params))
            kind = "buffers" if role == "buffer" else "params"
            key = f"buffer:{name}" if role == "buffer" else f"{role[6:]}:{name}"
            dtype, shape = SIGNATURE[kind][name]
            arrays.append(_check(state.get(key), f"state '{key}'", dtype, shape, {}))
            if isinstance(state.get(key), np.ndarray):
                state[key] = arrays[-1].reshape(tuple(shape))  # kept on the device from now
    if entry == "train_step" and "step" not in state:
        state.update(init_state(params))
    device = any(data) if data else any(on_device)
    return arrays, tuple(dims[d] for d in info["dims"]), device, back


def _call(entry, arrays, scalars, dim_values):
    """Run ``entry``'s host function: its kernels, launched in order."""
    info = _ENTRIES[entry]
    return info["kernel"](*arrays, *scalars, _plan(entry, dim_values), *dim_values)


def _output(value, shape, device):
    """A result as the caller gets it: a fresh device array or a NumPy array."""
    if not device:
        host = value.copy_to_host()
        return host.reshape(()) if not shape else host
    if not shape:  # a 1-element workspace slice: hand out a copy of its own
        return cuda.to_device(value.copy_to_host().reshape(()))
    return value


def _loss(value):
    """A scalar result as a Python float (waits for the kernels)."""
    return float(value.copy_to_host()[0])


def _write_back(back):
    """Copy params updated on the device into the caller's NumPy arrays."""
    for dev, host in back:
        dev.copy_to_host(host.reshape(dev.shape))


def init_params(seed=0, device=True):
    """Return a fresh dict of params drawn with ``seed`` (the same values as the CPU
    target): device arrays, or C-contiguous NumPy arrays with ``device=False``."""
    params = _init_params_host(seed)
    return {k: cuda.to_device(v) for k, v in params.items()} if device else params


def init_state(params):
    """Return a fresh state: optimizer state (zeros, step 0) and batchnorm running
    statistics on the device, and the noise seed counter."""
    state = {"step": 0, "rng": 0}
    for slot in SIGNATURE["optimizer"]["states"]:
        for name, (dtype, shape) in SIGNATURE["params"].items():
            state[f"{slot}:{name}"] = cuda.to_device(np.zeros(shape, _NP[dtype]))
    for name, (dtype, shape) in SIGNATURE["buffers"].items():
        fill = np.ones if SIGNATURE["buffer_inits"][name][0] == "ones" else np.zeros
        state[f"buffer:{name}"] = cuda.to_device(fill(shape, _NP[dtype]))
    return state


def to_host(values):
    """NumPy copies of a dict of (device or NumPy) arrays, or of one array."""
    if isinstance(values, dict):
        return {k: to_host(v) for k, v in values.items()}
    if hasattr(values, "copy_to_host"):
        return values.copy_to_host()
    if hasattr(values, "__cuda_array_interface__"):
        return cuda.as_cuda_array(values).copy_to_host()
    return np.array(values)


def save_params(params, path):
    """Write ``params`` (device or NumPy arrays) to ``path`` as .npz."""
    _unknown(params, SIGNATURE["params"], "param")
    for name in SIGNATURE["params"]:
        _fetch(params, name, "params", {})
    np.savez(path, **{name: to_host(params[name]).reshape(SIGNATURE["params"][name][1])
                      for name in SIGNATURE["params"]})


def load_params(path, device=True):
    """Read params saved by ``save_params`` (names, shapes and dtypes must match), as
    device arrays (NumPy with ``device=False``)."""
    params = _load_params_host(path)
    return {k: cuda.to_device(v) for k, v in params.items()} if device else params


def _epoch(params, lr, batch_size, seed, state, inputs, bdim, adam):
    """One shuffled epoch of train_step: the data goes to the device once, each
    minibatch is gathered there, and the loss is summed there (one wait at the end)."""
    state = _DEFAULT_STATE if state is None else state
    arrays, dims, _, back = _prepare("train_step", params, inputs, None, state, seed)
    info = _ENTRIES["train_step"]
    n = dims[info["dims"].index(bdim)]
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    bs = min(batch_size, n)
    perm = cuda.to_device(np.random.default_rng(seed).permutation(n))
    noise = np.random.RandomState(seed)  # the CPU target's epoch draws the same masks
    roles = [role for role, _ in info["args"]]
    batched = {}
    for k, role in enumerate(roles):
        if role == "input":
            flat = arrays[k].reshape((n, arrays[k].size // n))
            batched[k] = (flat, cuda.device_array((bs, flat.shape[1]), arrays[k].dtype))
    acc = cuda.to_device(np.zeros(1, _FT))
    for start in range(0, n, bs):
        m = min(bs, n - start)
        step_dims = tuple(m if d == bdim else v for d, v in zip(info["dims"], dims))
        call = list(arrays)
        for k, (flat, buf) in batched.items():
            _k_gather_rows[_grid(m * flat.shape[1]), _TPB](buf, flat, perm, start, m)
            call[k] = buf[:m].reshape((m,) + tuple(arrays[k].shape[1:]))
        for k, role in enumerate(roles):
            if role == "noise":
                shape = (m,) + tuple(arrays[k].shape[1:])
                call[k] = cuda.to_device(noise.random_sample(shape).astype(arrays[k].dtype))
        t = state["step"] = state["step"] + 1
        hyper = (lr,) if adam is None else \
            (lr, 1.0 / (1.0 - adam[0] ** t), 1.0 / (1.0 - adam[1] ** t))
        r = info["kernel"](*call, *hyper, _plan("train_step", step_dims), *step_dims)
        _k_accumulate[1, 1](acc, r[0], _FT(m))
    _write_back(back)
    return float(acc.copy_to_host()[0]) / n

