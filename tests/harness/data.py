"""Synthetic data for the examples' models (examples/*.grad), made here from seeds:
XOR, CIFAR-sized batches for the MLP and the SVM, 8x8 digit images for the CNN, a mixing
task for the attention block, character windows for the char-RNN, bags of tokens."""

from __future__ import annotations

import numpy as np

from gradc import datasets

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
XOR_Y = np.array([0, 1, 1, 0], np.int64)


def mlp_batch(scale: float, n: int = 16, seed: int = 0, dtype=np.float32):
    """``n`` CIFAR-sized rows (standard normal times ``scale``) and labels in [0, 10)."""
    rng = np.random.default_rng(seed)
    x = (scale * rng.standard_normal((n, 3072))).astype(dtype)
    y = rng.integers(0, 10, n).astype(np.int64)
    return x, y


def svm_data(n=20, seed=0, dtype=np.float64):
    """``n`` rows of 3072 uniform features and a bias column of ones, labels in [0, 10)."""
    rng = np.random.default_rng(seed)
    x = np.ones((n, 3073), dtype)
    x[:, :3072] = rng.uniform(-1, 1, (n, 3072))
    return x, rng.integers(0, 10, n).astype(np.int64)


def digits(n: int, seed: int, noise: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """``n`` noisy 8x8 digit images [n, 1, 8, 8] (float64) and labels: the data set of
    ``python -m gradc.datasets digits``."""
    x, y = datasets.digits(n, seed, noise)
    return x.astype(np.float64), y


def mixing_task(n: int, t: int, seed: int) -> dict:
    """x [n, t, 8] and the target 0.5 x + mean over the sequence of x."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, t, 8))
    return {"x": x, "target": 0.5 * x + x.mean(axis=1, keepdims=True)}


TEXT = "hello world, gradc rnn! " * 40


def char_data(seq: int, seed: int, n: int) -> tuple[dict, int]:
    """``n`` windows of ``seq`` characters of :data:`TEXT` and the characters that follow
    each (as ids), and the vocabulary's size."""
    vocab = sorted(set(TEXT))
    ids = np.array([vocab.index(c) for c in TEXT], np.int64)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(ids) - seq - 1, n)
    chars = np.stack([ids[s:s + seq] for s in starts])
    nxt = np.stack([ids[s + 1:s + seq + 1] for s in starts])
    return {"chars": chars, "next": nxt}, len(vocab)


def bags(n: int, seed: int, length: int = 8) -> dict:
    """Bags of ``length`` token ids: 3 keywords of the class (10 per class, ids 0..39) and
    the rest shared noise tokens (ids 40..49)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    tokens = rng.integers(40, 50, (n, length))
    tokens[:, :3] = 10 * y[:, None] + rng.integers(0, 10, (n, 3))
    tokens = rng.permuted(tokens, axis=1)
    return {"tokens": np.ascontiguousarray(tokens.astype(np.int64)), "y": y.astype(np.int64)}
