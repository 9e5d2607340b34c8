"""The layer examples of ``examples/`` (cnn, resnet_digits, resmlp, attention_block, char_rnn,
lstm_chars, embedding_bag): each compiles (once, in float64 with Adam, so that one build
serves the training, the shape checks and the finite-difference spot check; resnet_digits
and lstm_chars on the numpy target, whose loops need no Numba compile), has the params and
output shapes its comments promise, trains on small synthetic data made here (the loss
goes down, classifiers get clearly above chance) and its ``loss_and_grad`` agrees with
central differences in random directions.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

import gradc
from gradc.datasets import spiral

from tests.harness.data import bags, char_data, digits, mixing_task
from tests.harness.oracles import fd_check_loss
from tests.harness.paths import EXAMPLES

pytestmark = pytest.mark.slow  # (every test here takes more than a few seconds)

NAMES = ("cnn", "resnet_digits", "resmlp", "attention_block", "char_rnn", "lstm_chars",
         "embedding_bag")


@functools.cache
def model(name: str, target: str = "cpu") -> gradc.Model:
    return gradc.compile(EXAMPLES / f"{name}.grad", dtype="f64", optimizer="adam",
                         target=target)


def train_steps(m, params, batches, lr: float) -> list[float]:
    """One ``train_step`` per batch (a dict of inputs); return the losses."""
    return [m.train_step(params, lr=lr, **b) for b in batches]


def minibatches(rng, arrays: dict, batch: int, steps: int) -> list[dict]:
    n = len(next(iter(arrays.values())))
    out = []
    for _ in range(steps):
        idx = rng.choice(n, batch, replace=False)
        out.append({k: np.ascontiguousarray(v[idx]) for k, v in arrays.items()})
    return out


def accuracy(logits, y) -> float:
    return float(np.mean(np.argmax(logits, axis=-1) == y))


@pytest.mark.parametrize("name", NAMES)
def test_example_starts_with_a_comment(name):
    first = (EXAMPLES / f"{name}.grad").read_text().splitlines()[0]
    assert first.startswith("# ") and len(first) > 20, first


# ---------------------------------------------------------------------------------- cnn
# seven-segment-like strokes on an 8x8 grid: (row slice, column slice) of each segment


class TestCNN:
    def test_shapes(self):
        m = model("cnn")
        p = m.init_params(0)
        assert {k: v.shape for k, v in p.items()} == {
            "conv1.W": (8, 1, 3, 3), "conv1.b": (8,), "conv2.W": (16, 8, 3, 3),
            "conv2.b": (16,), "fc.W": (64, 10), "fc.b": (10,)}
        x, _ = digits(5, 0)
        assert m.forward(p, x=x)["logits"].shape == (5, 10)

    def test_trains_above_chance(self):
        m = model("cnn")
        m.reset_optimizer()
        p = m.init_params(1)
        x, y = digits(600, 1)
        xt, yt = digits(200, 2)
        before = accuracy(m.forward(p, x=xt)["logits"], yt)
        losses = train_steps(m, p, minibatches(np.random.default_rng(0), {"x": x, "y": y},
                                               32, 120), lr=0.01)
        after = accuracy(m.forward(p, x=xt)["logits"], yt)
        assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5]), losses
        assert after > 0.6 and after > before + 0.3, (before, after)

    def test_finite_differences(self):
        m = model("cnn")
        x, y = digits(3, 3)
        p = m.init_params(4)
        p = {k: v + 0.05 * np.random.default_rng(5).standard_normal(v.shape)
             for k, v in p.items()}                              # nonzero biases
        fd_check_loss(m, p, {"x": x, "y": y}, n_dirs=2, label="cnn")


# ---------------------------------------------------------------------------- resnet_digits
class TestResNetDigits:
    """Blocks of convolutions, repeated, with inline pools (numpy target: the CPU target's
    Numba kernels of conv layers are compiled by TestCNN; the numpy and CUDA agreement
    groups hold this example's targets to each other)."""

    def test_shapes(self):
        m = model("resnet_digits", "numpy")
        p = m.init_params(0)
        assert p["stem.W"].shape == (8, 1, 3, 3) and p["fc.W"].shape == (32, 10)
        assert {p[f"blocks.{i}.conv{j}.W"].shape for i in (0, 1) for j in (1, 2)} == {
            (8, 8, 3, 3)}
        assert len(p) == 12
        x, _ = digits(5, 0)
        assert m.forward(p, x=x)["logits"].shape == (5, 10)

    def test_trains_above_chance(self):
        m = model("resnet_digits", "numpy")
        m.reset_optimizer()
        p = m.init_params(0)
        x, y = digits(600, 1)
        xt, yt = digits(300, 2)
        before = accuracy(m.forward(p, x=xt)["logits"], yt)
        first = m.train_epoch(p, lr=0.01, batch_size=32, seed=0, x=x, y=y)
        for epoch in range(1, 6):
            last = m.train_epoch(p, lr=0.01, batch_size=32, seed=epoch, x=x, y=y)
        after = accuracy(m.forward(p, x=xt)["logits"], yt)
        assert last < 0.5 * first, (first, last)
        assert after > 0.6 and after > before + 0.3, (before, after)

    def test_finite_differences(self):
        m = model("resnet_digits", "numpy")
        x, y = digits(3, 3)
        rng = np.random.default_rng(5)
        p = {k: v + 0.05 * rng.standard_normal(v.shape) for k, v in m.init_params(4).items()}
        fd_check_loss(m, p, {"x": x, "y": y}, n_dirs=2, label="resnet_digits")


# ---------------------------------------------------------------------------------- resmlp
class TestResMLP:
    def test_shapes(self):
        m = model("resmlp")
        p = m.init_params(0)
        assert p["embed.W"].shape == (2, 32) and p["blocks.0.fc1.W"].shape == (32, 64)
        assert p["blocks.0.ln.gamma"].shape == (32,) and p["head.W"].shape == (32, 3)
        assert len(p) == 18
        x, _ = spiral(points=4)
        assert m.forward(p, x=np.asarray(x, np.float64))["scores"].shape == (12, 3)

    def test_trains_with_train_epoch(self):
        m = model("resmlp")
        m.reset_optimizer()
        p = m.init_params(0)
        x, y = spiral(classes=3, points=100, seed=0)
        x = np.asarray(x, np.float64)
        first = m.train_epoch(p, lr=0.01, batch_size=32, seed=0, x=x, y=y)
        for epoch in range(1, 40):
            last = m.train_epoch(p, lr=0.01, batch_size=32, seed=epoch, x=x, y=y)
        assert last < 0.5 * first, (first, last)
        assert accuracy(m.forward(p, x=x)["scores"], y) > 0.85

    def test_finite_differences(self):
        m = model("resmlp")
        x, y = spiral(points=3, seed=1)
        rng = np.random.default_rng(0)
        p = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in m.init_params(1).items()}
        fd_check_loss(m, p, {"x": np.asarray(x, np.float64), "y": y}, n_dirs=2,
                      label="resmlp")


# ---------------------------------------------------------------------------------- attention
class TestAttentionBlock:
    def test_shapes(self):
        m = model("attention_block")
        p = m.init_params(0)
        assert {p[f"attn.W{c}"].shape for c in "qkvo"} == {(8, 8)}
        assert p["fc1.W"].shape == (8, 32) and p["ln1.gamma"].shape == (8,)
        for t in (3, 5):                                   # T is a call-time dim
            assert m.forward(p, **mixing_task(2, t, 0))["out"].shape == (2, t, 8)

    def test_trains(self):
        m = model("attention_block")
        m.reset_optimizer()
        p = m.init_params(0)
        data = mixing_task(256, 6, 1)
        test = mixing_task(64, 6, 2)
        before = m.loss_and_grad(p, **test)[0]
        train_steps(m, p, minibatches(np.random.default_rng(0), data, 32, 150), lr=0.01)
        after = m.loss_and_grad(p, **test)[0]
        # the best per-position map (out = (0.5 + 1/6) x_t, no mixing) leaves the other
        # five tokens' share of the mean, variance 5/36 = 0.139: beating it needs attention
        assert after < 0.25 * before and after < 0.1, (before, after)

    def test_finite_differences(self):
        m = model("attention_block")
        rng = np.random.default_rng(3)
        p = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in m.init_params(3).items()}
        fd_check_loss(m, p, mixing_task(2, 4, 4), n_dirs=2, label="attention_block")


# ---------------------------------------------------------------------------------- char models
#: the character models: example -> (target, param shapes); lstm_chars on the numpy target
CHAR_MODELS = {
    "char_rnn": ("cpu", {"embed.W": (16, 16), "cell.Wx": (16, 64), "cell.Wh": (64, 64),
                         "cell.b": (64,), "proj.W": (64, 16), "proj.b": (16,)}),
    "lstm_chars": ("numpy", {"embed.W": (16, 16), "cell.Wx": (16, 128),
                             "cell.Wh": (32, 128), "cell.b": (128,), "proj.W": (32, 16),
                             "proj.b": (16,)}),
}


@pytest.mark.parametrize("name", CHAR_MODELS)
class TestCharModels:
    def test_shapes(self, name):
        target, shapes = CHAR_MODELS[name]
        m = model(name, target)
        p = m.init_params(0)
        assert {k: v.shape for k, v in p.items()} == shapes
        data, vocab = char_data(7, 0, 3)
        assert vocab <= 16
        assert m.forward(p, chars=data["chars"])["logits"].shape == (3, 7, 16)

    def test_learns_the_text(self, name):
        m = model(name, CHAR_MODELS[name][0])
        m.reset_optimizer()
        p = m.init_params(0)
        data, _ = char_data(12, 1, 512)
        test, _ = char_data(12, 2, 64)
        before = m.loss_and_grad(p, **test)[0]
        train_steps(m, p, minibatches(np.random.default_rng(0), data, 32, 150), lr=0.01)
        after = m.loss_and_grad(p, **test)[0]
        assert before > 0.7 * math.log(16), before
        assert after < 0.3 * math.log(16), (before, after)
        # after the first few characters the next one is determined: predicted right
        logits = m.forward(p, chars=test["chars"])["logits"]
        assert accuracy(logits[:, 4:], test["next"][:, 4:]) > 0.95

    def test_finite_differences(self, name):
        m = model(name, CHAR_MODELS[name][0])
        data, _ = char_data(5, 3, 2)
        rng = np.random.default_rng(4)
        p = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in m.init_params(4).items()}
        fd_check_loss(m, p, data, n_dirs=2, label=name)


# ---------------------------------------------------------------------------------- bag
class TestEmbeddingBag:
    def test_shapes(self):
        m = model("embedding_bag")
        p = m.init_params(0)
        assert {k: v.shape for k, v in p.items()} == {
            "embed.W": (50, 16), "fc.W": (16, 4), "fc.b": (4,)}
        for length in (1, 8):                              # L is a call-time dim
            b = bags(3, 0, max(length, 3))
            tokens = np.ascontiguousarray(b["tokens"][:, :length])
            assert m.forward(p, tokens=tokens)["logits"].shape == (3, 4)

    def test_bag_is_the_mean_of_embeddings(self):
        m = model("embedding_bag")
        p = m.init_params(1)
        b = bags(5, 1)
        want = p["embed.W"][b["tokens"]].mean(axis=1) @ p["fc.W"] + p["fc.b"]
        np.testing.assert_allclose(m.forward(p, tokens=b["tokens"])["logits"], want,
                                   rtol=1e-12, atol=1e-12)

    def test_trains(self):
        m = model("embedding_bag")
        m.reset_optimizer()
        p = m.init_params(0)
        data, test = bags(512, 2), bags(200, 3)
        losses = train_steps(m, p, minibatches(np.random.default_rng(0), data, 32, 100),
                             lr=0.02)
        assert np.mean(losses[-10:]) < 0.3 * np.mean(losses[:5]), losses
        assert accuracy(m.forward(p, tokens=test["tokens"])["logits"], test["y"]) > 0.9

    def test_finite_differences(self):
        m = model("embedding_bag")
        rng = np.random.default_rng(5)
        p = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in m.init_params(5).items()}
        fd_check_loss(m, p, bags(4, 6), n_dirs=2, label="embedding_bag")
