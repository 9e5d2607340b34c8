"""The workloads: networks, batch sizes, targets, and the data every side shares.

All data and initial parameters are made once with NumPy (seed 0) in float32 (labels int64) and
handed to every side, so gradc, PyTorch and JAX start from identical numbers. Nothing is
downloaded: the ``epoch`` workload's "digits" are synthetic, shaped like scikit-learn's digits
(1797 samples of 8x8 = 64 features in [0, 1], 10 classes).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MODELS = Path(__file__).resolve().parent / "models"

#: Learning rate of the correctness check (one step from the shared initial params).
CHECK_LR = 0.1
#: Learning rate while timing: small, so thousands of repeated steps on one batch leave the
#: parameters (and so the work, e.g. relu sparsity) essentially where they started.
TIMING_LR = 1e-5
#: Learning rate of the timed epochs (each timed call trains one more epoch).
EPOCH_LR = 0.01


@dataclass(frozen=True)
class MLP:
    """A multilayer perceptron workload: one SGD training step on one batch.

    Attributes:
        name: workload name (a ``--only`` key).
        sizes: layer widths, input first, classes last.
        activation: hidden activation, ``"relu"`` or ``"tanh"``.
        batch: batch size.
        model: the ``.grad`` file under ``benchmarks/models``.
        targets: side name -> target on peer median / gradc median (``">=1.3"``);
            the key ``"floor"`` is a target on gradc median / GEMM-floor median (``"<=1.15"``).
    """

    name: str
    sizes: tuple[int, ...]
    activation: str
    batch: int
    model: str
    targets: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        """Absolute path of the model file."""
        return MODELS / self.model

    def describe(self) -> str:
        """A one-line description such as ``784-128-10 relu, batch 64``."""
        arch = "-".join(map(str, self.sizes))
        return f"{arch} {self.activation}, batch {self.batch}"


MLPS = {
    "xor_tiny": MLP("xor_tiny", (2, 8, 2), "tanh", 4, "xor.grad",
                    {"torch eager": ">=25", "jax.jit": ">=10"}),
    "mlp_online": MLP("mlp_online", (784, 128, 10), "relu", 1, "mlp_784.grad",
                      {"torch eager": ">=2", "jax.jit": ">=1.2"}),
    "mlp_small": MLP("mlp_small", (784, 128, 10), "relu", 64, "mlp_784.grad",
                     {"torch eager": ">=1.3", "jax.jit": ">=1.2", "floor": "<=1.15"}),
    "mlp_cifar": MLP("mlp_cifar", (3072, 100, 10), "relu", 256, "mlp_cifar.grad",
                     {"torch eager": ">=1.3", "jax.jit": ">=1.2", "floor": "<=1.15"}),
    "mlp_large": MLP("mlp_large", (1024, 1024, 1024, 10), "relu", 512, "mlp_large.grad",
                     {"torch eager": ">=1", "jax.jit": ">=1", "floor": "<=1.1"}),
}

#: The epoch workload: one shuffled epoch of batch-32 SGD over 1797 digits-shaped samples.
EPOCH = MLP("epoch", (64, 32, 10), "relu", 32, "mlp_digits.grad",
            {"torch loop": ">=10"})
EPOCH_SAMPLES = 1797

#: The fused custom activation: tanh-GELU forward + backward on one tensor.
GELU_SHAPE = (4096, 1024)
GELU_MODEL = "gelu.grad"
GELU_C0, GELU_C1 = 0.7978845608, 0.044715
GELU_TOLERANCE = 1e-6
GELU_TARGETS = {"torch formula": ">=3", "torch builtin gelu": ">=1"}

#: Compile time of mlp_cifar in a fresh process, in seconds.
COMPILE_MODEL = "mlp_cifar.grad"
COMPILE_TARGETS = {"cold": 3.0, "warm": 0.4}

#: Every workload name, in run order.
ORDER = (*MLPS, "gelu_fb", "epoch", "compile")


def param_names(n_layers: int) -> list[str]:
    """Parameter names in the ``.grad`` files: ``W1, b1, W2, b2, ...``."""
    names = []
    for i in range(1, n_layers + 1):
        names += [f"W{i}", f"b{i}"]
    return names


def init_params(sizes: tuple[int, ...], seed: int = 0) -> dict[str, np.ndarray]:
    """He-normal weights and zero biases in float32, named as in the model files."""
    rng = np.random.default_rng(seed)
    params = {}
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes), start=1):
        w = rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)
        params[f"W{i}"] = np.ascontiguousarray(w, dtype=np.float32)
        params[f"b{i}"] = np.zeros(fan_out, dtype=np.float32)
    return params


def make_batch(sizes: tuple[int, ...], batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A batch ``x : f32[batch, sizes[0]]`` (standard normal) and ``y : i64[batch]`` labels."""
    rng = np.random.default_rng(seed + 1)
    if sizes == (2, 8, 2):                      # XOR: the four corners and their parity
        corners = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
        x = corners[np.arange(batch) % 4]
        y = (x[:, 0] != x[:, 1]).astype(np.int64)
        return np.ascontiguousarray(x), y
    x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], size=batch).astype(np.int64)
    return x, y


def make_digits(n: int = EPOCH_SAMPLES, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic digits-shaped data: 10 random 8x8 stroke prototypes plus noise, in [0, 1]."""
    rng = np.random.default_rng(seed + 2)
    protos = (rng.random((10, 64)) < 0.35) * rng.uniform(8, 16, (10, 64))
    y = rng.integers(0, 10, size=n).astype(np.int64)
    x = protos[y] + rng.normal(0.0, 3.0, (n, 64))
    x = np.clip(np.round(x), 0, 16) / 16.0
    return np.ascontiguousarray(x, dtype=np.float32), y


def epoch_batches(n: int, batch: int, seed: int) -> list[np.ndarray]:
    """Index arrays of one shuffled epoch; the last batch may be short (``drop_last=False``)."""
    perm = np.random.default_rng(seed).permutation(n)
    return [perm[i:i + batch] for i in range(0, n, batch)]


def make_gelu_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The gelu_fb input ``z`` (normal, std 2) and the cotangent ``g`` (standard normal)."""
    rng = np.random.default_rng(seed + 3)
    z = (rng.standard_normal(GELU_SHAPE) * 2.0).astype(np.float32)
    g = rng.standard_normal(GELU_SHAPE).astype(np.float32)
    return z, g
