"""The gradc side of every workload, written against the public API of SPEC section 2 only.

Calls used (and nothing else)::

    model = gradc.compile(path, dtype="f32", optimizer="sgd")           # MLPs
    model = gradc.compile(path, dtype="f32", wrt=["z"])                 # gelu.grad
    model.init_params(seed=0)              # only to check names/shapes/dtypes of shared params
    loss = model.train_step(params, lr=lr, x=X, y=Y)                    # in place, returns loss
    loss = model.train_epoch(params, lr=lr, batch_size=32, seed=s, x=XS, y=YS)
    outs = model.forward(params, z=Z)                                   # gelu check: outs["out"]
    grads = model.vjp(params, {"out": G}, z=Z)                          # gelu: grads["z"]

The parameters handed to gradc are a private float32 copy of the shared NumPy initial values
(C-contiguous, the names of the model files), not ``init_params``' own draw, so every side
starts from the same numbers. Anything gradc raises (ImportError while the core is missing,
NotImplementedError, GradcError, ...) propagates to the harness, which reports the row as
``unavailable: <reason>``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Options given to ``gradc.compile`` for the training workloads.
TRAIN_OPTIONS = {"dtype": "f32", "optimizer": "sgd"}
#: Options given to ``gradc.compile`` for gelu.grad (``z`` is an input we differentiate).
GELU_OPTIONS = {"dtype": "f32", "wrt": ["z"]}

_MODELS: dict[tuple, object] = {}


def compile_model(path: Path, **options):
    """``gradc.compile(path, **options)``, memoised per process (mlp_online/mlp_small share)."""
    key = (str(path), repr(sorted(options.items())))
    if key not in _MODELS:
        import gradc

        _MODELS[key] = gradc.compile(str(path), **options)
    return _MODELS[key]


def version() -> str:
    """gradc's version for the report header, or why it cannot be imported."""
    try:
        import gradc

        return f"gradc {getattr(gradc, '__version__', '(no __version__)')}"
    except Exception as exc:
        return f"gradc unavailable ({type(exc).__name__}: {exc})"


def _own_params(model, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Copy ``params`` after checking them against what the model declares."""
    declared = model.init_params(seed=0)
    if set(declared) != set(params):
        raise ValueError(f"model params {sorted(declared)} != benchmark params {sorted(params)}")
    for name, value in declared.items():
        if value.shape != params[name].shape or value.dtype != params[name].dtype:
            raise ValueError(f"param {name}: model {value.dtype}{list(value.shape)}, "
                             f"benchmark {params[name].dtype}{list(params[name].shape)}")
    return {k: np.ascontiguousarray(v).copy() for k, v in params.items()}


class GradcTrainer:
    """Holds gradc's copy of the parameters; ``params()`` returns a NumPy copy of them."""

    def __init__(self, model, params: dict[str, np.ndarray]):
        self.model = model
        self.values = _own_params(model, params)

    def params(self) -> dict[str, np.ndarray]:
        """A copy of the current parameters."""
        return {k: v.copy() for k, v in self.values.items()}


def mlp_trainer(path: Path, params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray):
    """A :class:`GradcTrainer` and ``step(lr) -> loss``: ``model.train_step`` on ``x, y``."""
    model = compile_model(path, **TRAIN_OPTIONS)
    trainer = GradcTrainer(model, params)
    train_step, values = model.train_step, trainer.values

    def step(lr: float):
        return train_step(values, lr=lr, x=x, y=y)

    return trainer, step


def epoch_trainer(path: Path, params: dict[str, np.ndarray], xs: np.ndarray, ys: np.ndarray,
                  batch: int):
    """A :class:`GradcTrainer` and ``epoch(lr, seed)``: one ``model.train_epoch`` call."""
    model = compile_model(path, **TRAIN_OPTIONS)
    trainer = GradcTrainer(model, params)
    train_epoch, values = model.train_epoch, trainer.values

    def epoch(lr: float, seed: int):
        return train_epoch(values, lr=lr, batch_size=batch, seed=seed, x=xs, y=ys)

    return trainer, epoch


def gelu_vjp(path: Path, z: np.ndarray, g: np.ndarray):
    """A callable returning ``dz = vjp(out <- g)``: one ``model.vjp`` call."""
    model = compile_model(path, **GELU_OPTIONS)
    params = model.init_params(seed=0)
    vjp = model.vjp

    def run():
        return vjp(params, {"out": g}, z=z)["z"]

    return run


def gelu_forward_vjp(path: Path, z: np.ndarray, g: np.ndarray):
    """A callable returning ``(out, dz)``: ``model.forward`` then ``model.vjp`` (two calls)."""
    model = compile_model(path, **GELU_OPTIONS)
    params = model.init_params(seed=0)
    forward, vjp = model.forward, model.vjp

    def run():
        return forward(params, z=z)["out"], vjp(params, {"out": g}, z=z)["z"]

    return run
