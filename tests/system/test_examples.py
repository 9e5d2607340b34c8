"""The lecture-note models of ``examples/``, each checked against numbers worked out here
from its formula (never copied from gradc's output), finite differences, or training."""

from __future__ import annotations

import math

import numpy as np
import pytest

import gradc

from tests.harness.data import XOR_X, XOR_Y, mlp_batch, svm_data
from tests.harness.paths import EXAMPLES

pytestmark = pytest.mark.slow  # (every test here takes more than a few seconds)



def compile_example(name: str, **options) -> gradc.Model:
    return gradc.compile(EXAMPLES / f"{name}.grad", **options)


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def fd_directional(f, params: dict, direction: dict, eps: float) -> float:
    """Central difference of ``f`` along ``direction`` (f64 params)."""
    plus = {k: v + eps * direction.get(k, 0.0) for k, v in params.items()}
    minus = {k: v - eps * direction.get(k, 0.0) for k, v in params.items()}
    return (f(plus) - f(minus)) / (2 * eps)


def random_direction(params: dict, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(np.shape(v)).astype(np.asarray(v).dtype)
            for k, v in params.items()}


def dot(grads: dict, direction: dict) -> float:
    return sum(float(np.sum(np.asarray(grads[k], np.float64) * direction[k])) for k in direction)


# ---------------------------------------------------------------------------------- scalar
class TestScalar:
    """f(x, y, z) = (x + y) z at x=2, y=5, z=4: f = 28, df/dx = df/dy = z = 4, df/dz = 7."""

    @pytest.fixture(scope="class")
    @classmethod
    def model(cls):
        return compile_example("scalar")

    def test_init_is_the_notes_point(self, model):
        p = model.init_params()
        assert {k: float(v) for k, v in p.items()} == {"x": 2.0, "y": 5.0, "z": 4.0}

    def test_loss_and_grad(self, model):
        x, y, z = 2.0, 5.0, 4.0
        loss, grads = model.loss_and_grad(model.init_params())
        assert loss == pytest.approx((x + y) * z)
        assert float(grads["x"]) == pytest.approx(z)
        assert float(grads["y"]) == pytest.approx(z)
        assert float(grads["z"]) == pytest.approx(x + y)

    @pytest.mark.parametrize("name, expected", [("x", 4.0), ("y", 4.0), ("z", 7.0)])
    def test_jvp_one_direction_at_a_time(self, model, name, expected):
        outs, tans = model.jvp(model.init_params(), {name: np.array(1.0)})
        assert float(outs["f"]) == pytest.approx(28.0)
        assert float(tans["f"]) == pytest.approx(expected)

    def test_vjp(self, model):
        grads = model.vjp(model.init_params(), {"f": np.array(2.0)})
        assert {k: float(v) for k, v in grads.items()} == pytest.approx(
            {"x": 8.0, "y": 8.0, "z": 14.0})

    def test_train_step_moves_against_the_gradient(self, model):
        p = model.init_params()
        loss = model.train_step(p, lr=0.01)
        assert loss == pytest.approx(28.0)
        assert {k: float(v) for k, v in p.items()} == pytest.approx(
            {"x": 2.0 - 0.04, "y": 5.0 - 0.04, "z": 4.0 - 0.07})


# -------------------------------------------------------------------------- sigmoid neuron
class TestSigmoidNeuron:
    """f = sigmoid(w0 x0 + w1 x1 + w2) with w2 written b; df/dz = f (1 - f)."""

    POINTS = [
        # (w0, w1, w2), (x0, x1): the notes' forward-pass values, then the classic signs.
        ((2.0, 3.0, 3.0), (1.0, 2.0)),
        ((2.0, -3.0, -3.0), (-1.0, -2.0)),
    ]

    @pytest.fixture(scope="class")
    @classmethod
    def model(cls):
        return compile_example("sigmoid_neuron", wrt=["x"])

    @staticmethod
    def args(w, x):
        return ({"w": np.array(w[:2]), "b": np.array(w[2])}, np.array(x))

    @pytest.mark.parametrize("w, x", POINTS)
    def test_value_and_gradients(self, model, w, x):
        params, xs = self.args(w, x)
        z = w[0] * x[0] + w[1] * x[1] + w[2]
        f = sigmoid(z)
        dz = f * (1 - f)
        loss, grads = model.loss_and_grad(params, x=xs)
        assert loss == pytest.approx(f, rel=1e-12)
        np.testing.assert_allclose(grads["w"], [dz * x[0], dz * x[1]], rtol=1e-10)
        assert float(grads["b"]) == pytest.approx(dz, rel=1e-10)
        np.testing.assert_allclose(grads["x"], [dz * w[0], dz * w[1]], rtol=1e-10)

    def test_classic_numbers(self, model):
        """The notes' rounded numbers for w = (2, -3, -3), x = (-1, -2)."""
        params, xs = self.args((2.0, -3.0, -3.0), (-1.0, -2.0))
        loss, grads = model.loss_and_grad(params, x=xs)
        assert loss == pytest.approx(0.7311, abs=1e-4)
        np.testing.assert_allclose(grads["x"], [0.393, -0.590], atol=1e-3)
        np.testing.assert_allclose(grads["w"], [-0.197, -0.393], atol=1e-3)
        assert float(grads["b"]) == pytest.approx(0.197, abs=1e-3)

    def test_forward_jvp_vjp_agree(self, model):
        w, x = (2.0, -3.0, -3.0), (-1.0, -2.0)
        params, xs = self.args(w, x)
        f = sigmoid(1.0)
        dz = f * (1 - f)
        assert float(model.forward(params, x=xs)["f"]) == pytest.approx(f)
        _, tans = model.jvp(params, {"x": np.array([1.0, 0.0])}, x=xs)
        assert float(tans["f"]) == pytest.approx(dz * w[0])
        _, tans = model.jvp(params, {"b": np.array(1.0)}, x=xs)
        assert float(tans["f"]) == pytest.approx(dz)
        grads = model.vjp(params, {"f": np.array(1.0)}, x=xs)
        np.testing.assert_allclose(grads["w"], [dz * x[0], dz * x[1]], rtol=1e-10)
        np.testing.assert_allclose(grads["x"], [dz * w[0], dz * w[1]], rtol=1e-10)

    def test_without_wrt_only_params_get_gradients(self):
        model = compile_example("sigmoid_neuron")
        params, xs = self.args((2.0, -3.0, -3.0), (-1.0, -2.0))
        _, grads = model.loss_and_grad(params, x=xs)
        assert set(grads) == {"w", "b"}


# ------------------------------------------------------------------------------- AND gate
class TestAndGate:
    @pytest.fixture(scope="class")
    @classmethod
    def model(cls):
        return compile_example("and_gate")

    def test_init_is_the_notes_weights(self, model):
        p = model.init_params()
        np.testing.assert_array_equal(p["w"], [20.0, 20.0])
        assert float(p["b"]) == -30.0

    def test_truth_table(self, model):
        y = model.forward(model.init_params(), x=XOR_X)["y"]
        assert y.shape == (4,) and y.dtype == np.float32
        assert np.all(y[:3] < 1e-4), y
        assert y[3] > 1 - 1e-4, y
        np.testing.assert_allclose(y, [sigmoid(-30), sigmoid(-10), sigmoid(-10), sigmoid(10)],
                                   rtol=1e-5)

    def test_learns_and_from_zero_weights(self, model):
        p = {"w": np.zeros(2, np.float32), "b": np.zeros((), np.float32)}
        t = np.array([0, 0, 0, 1], np.float32)
        first = model.train_step(p, lr=2.0, x=XOR_X, t=t)
        for _ in range(300):
            last = model.train_step(p, lr=2.0, x=XOR_X, t=t)
        assert first == pytest.approx(math.log(2), rel=1e-5)
        assert last < 0.1 < first
        y = model.forward(p, x=XOR_X)["y"]
        np.testing.assert_array_equal(y > 0.5, t > 0.5)


# ------------------------------------------------------------------------------------ XOR
class TestXor:
    @pytest.mark.parametrize("optimizer, lr, seed", [
        ("adam", 0.05, 0), ("adam", 0.05, 1), ("sgd", 0.5, 2)])
    def test_train_step_learns_xor(self, optimizer, lr, seed):
        model = compile_example("xor", optimizer=optimizer)
        p = model.init_params(seed)
        model.reset_optimizer()
        first = model.train_step(p, lr=lr, x=XOR_X, y=XOR_Y)
        for _ in range(299):
            model.train_step(p, lr=lr, x=XOR_X, y=XOR_Y)
        loss, _ = model.loss_and_grad(p, x=XOR_X, y=XOR_Y)
        assert loss < 0.1 < first
        logits = model.forward(p, x=XOR_X)["logits"]
        assert logits.shape == (4, 2)
        accuracy = float(np.mean(np.argmax(logits, axis=1) == XOR_Y))
        assert accuracy == 1.0


# ------------------------------------------------------------------------------------ MLP
class TestMlp:
    """The CIFAR-10 two-layer net, 3072-100-10, cross-entropy + 1e-4 * L2."""

    REG = 1e-4

    @pytest.fixture(scope="class")
    @classmethod
    def model(cls):
        return compile_example("mlp")

    def test_shapes_and_dtypes(self, model):
        p = model.init_params(0)
        assert {k: (v.shape, v.dtype) for k, v in p.items()} == {
            "W1": ((3072, 100), np.float32), "b1": ((100,), np.float32),
            "W2": ((100, 10), np.float32), "b2": ((10,), np.float32)}
        x, y = mlp_batch(0.01)
        loss, grads = model.loss_and_grad(p, x=x, y=y)
        assert isinstance(loss, float)
        assert {k: (g.shape, g.dtype) for k, g in grads.items()} == \
            {k: (v.shape, v.dtype) for k, v in p.items()}
        assert model.forward(p, x=x)["logits"].shape == (16, 10)

    def test_loss_at_init_is_log10_plus_reg(self, model):
        p = model.init_params(0)
        x, y = mlp_batch(1e-3)  # small inputs: logits near 0, softmax near uniform
        reg = self.REG * sum(float(np.sum(p[k].astype(np.float64) ** 2)) for k in ("W1", "W2"))
        assert reg > 0.01  # the reg term is big enough to be told apart from log(10)
        loss, _ = model.loss_and_grad(p, x=x, y=y)
        assert loss == pytest.approx(math.log(10) + reg, abs=5e-4)

    def test_loss_matches_numpy(self, model):
        p = model.init_params(1)
        x, y = mlp_batch(1.0)
        P = {k: v.astype(np.float64) for k, v in p.items()}
        h = np.maximum(x.astype(np.float64) @ P["W1"] + P["b1"], 0)
        z = h @ P["W2"] + P["b2"]
        m = z.max(axis=1, keepdims=True)
        lse = (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]
        ce = np.mean(lse - z[np.arange(len(y)), y])
        ref = ce + self.REG * (np.sum(P["W1"] ** 2) + np.sum(P["W2"] ** 2))
        loss, _ = model.loss_and_grad(p, x=x, y=y)
        assert loss == pytest.approx(ref, rel=1e-4)

    def test_gradient_finite_differences_f64(self):
        model = compile_example("mlp", dtype="f64")
        p = model.init_params(0)
        assert p["W1"].dtype == np.float64
        x, y = mlp_batch(1.0, n=8, seed=3, dtype=np.float64)
        _, grads = model.loss_and_grad(p, x=x, y=y)
        d = random_direction(p, seed=4)

        def f(q):
            return model.loss_and_grad(q, x=x, y=y)[0]

        fd = fd_directional(f, p, d, eps=1e-6)
        assert dot(grads, d) == pytest.approx(fd, rel=1e-5)
        # and one coordinate of each param
        for name in p:
            e = {name: np.zeros_like(p[name])}
            e[name].reshape(-1)[7 % p[name].size] = 1.0
            fd = fd_directional(f, p, e, eps=1e-6)
            assert grads[name].reshape(-1)[7 % p[name].size] == pytest.approx(fd, rel=1e-4,
                                                                               abs=1e-9)

    def test_train_steps_reduce_the_loss(self, model):
        p = model.init_params(0)
        x, y = mlp_batch(1.0, n=32, seed=5)
        model.reset_optimizer()
        losses = [model.train_step(p, lr=0.01, x=x, y=y) for _ in range(5)]
        after, _ = model.loss_and_grad(p, x=x, y=y)
        assert all(b < a for a, b in zip(losses, losses[1:])), losses
        assert after < losses[0]


# ------------------------------------------------------------------------------------ SVM
def svm_loss_numpy(W, X, y, reg):
    """The CS231n vectorised multiclass SVM loss and its analytic gradient (in float64)."""
    n = X.shape[0]
    scores = X @ W
    correct = scores[np.arange(n), y][:, None]
    margins = np.maximum(0.0, scores - correct + 1.0)
    margins[np.arange(n), y] = 0.0
    loss = margins.sum() / n + reg * np.sum(W * W)
    mask = (margins > 0).astype(np.float64)
    mask[np.arange(n), y] = -mask.sum(axis=1)
    return loss, X.T @ mask / n + 2 * reg * W


class TestSvm:
    REG = 2.5e-4

    @pytest.fixture(scope="class")
    @classmethod
    def model64(cls):
        return compile_example("svm", dtype="f64")

    def test_loss_and_gradient_match_cs231n(self, model64):
        p = model64.init_params(0)
        p["W"] = p["W"] * 100  # std 0.01: margins of both signs
        x, y = svm_data()
        ref_loss, ref_grad = svm_loss_numpy(p["W"], x, y, self.REG)
        loss, grads = model64.loss_and_grad(p, x=x, y=y)
        assert loss == pytest.approx(ref_loss, rel=1e-10)
        np.testing.assert_allclose(grads["W"], ref_grad, rtol=1e-8, atol=1e-12)

    def test_gradient_finite_differences(self, model64):
        p = model64.init_params(1)
        p["W"] = p["W"] * 100
        x, y = svm_data(seed=1)
        _, grads = model64.loss_and_grad(p, x=x, y=y)

        def f(q):
            return model64.loss_and_grad(q, x=x, y=y)[0]

        d = random_direction(p, seed=2)
        assert dot(grads, d) == pytest.approx(fd_directional(f, p, d, eps=1e-7), rel=1e-5)
        for idx in [(0, 0), (100, 3), (3072, 9)]:  # (3072, k): the bias row
            e = {"W": np.zeros_like(p["W"])}
            e["W"][idx] = 1.0
            assert grads["W"][idx] == pytest.approx(fd_directional(f, p, e, eps=1e-7),
                                                    rel=1e-5, abs=1e-10)

    def test_f32_loss_matches(self):
        model = compile_example("svm")
        p = model.init_params(0)
        x, y = svm_data(dtype=np.float32)
        ref_loss, _ = svm_loss_numpy(p["W"].astype(np.float64), x.astype(np.float64), y,
                                     self.REG)
        loss, _ = model.loss_and_grad(p, x=x, y=y)
        assert loss == pytest.approx(ref_loss, rel=1e-5)
        # tiny weights: every margin is about 1, so the loss is about (C - 1) = 9
        assert loss == pytest.approx(9.0, abs=0.1)
        assert model.forward(p, x=x)["s"].shape == (20, 10)


# ------------------------------------------------------------------------------ quadratic
class TestQuadratic:
    """f = ||W x||^2: df/dW = 2 (W x) x^T, df/dx = 2 W^T W x."""

    def test_gradients_match_the_analytic_forms(self):
        model = compile_example("quadratic", wrt=["x"])
        rng = np.random.default_rng(0)
        W = rng.standard_normal((3, 4))
        x = rng.standard_normal(4)
        loss, grads = model.loss_and_grad({"W": W}, x=x)
        q = W @ x
        assert loss == pytest.approx(float(q @ q), rel=1e-12)
        np.testing.assert_allclose(grads["W"], 2 * np.outer(q, x), rtol=1e-12)
        np.testing.assert_allclose(grads["x"], 2 * W.T @ W @ x, rtol=1e-12)

    def test_params_only_by_default(self):
        model = compile_example("quadratic")
        p = model.init_params(0)
        x = np.arange(4.0)
        loss, grads = model.loss_and_grad(p, x=x)
        assert set(grads) == {"W"}
        np.testing.assert_allclose(grads["W"], 2 * np.outer(p["W"] @ x, x), rtol=1e-12)


# ---------------------------------------------------------------------------------- all
@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.grad")), ids=lambda p: p.stem)
def test_every_example_starts_with_a_comment_and_compiles(path):
    first = path.read_text(encoding="utf-8").lstrip().splitlines()[0]
    assert first.startswith("#"), f"{path.name} should start with a comment saying what it is"
    model = gradc.compile(path)
    assert model.warnings == []
