"""Numerics by construction (DESIGN.md "Code generation"): stable losses, logsumexp, softmax
and softplus at extreme logits, and ``where`` gradients that cannot leak NaN from the branch
not taken. Exact values are compared with closed forms computed in float64.

One model holds every case (an output each); ``vjp`` with a cotangent of one output gives
that output's gradient, so a float64 and a float32 build cover everything.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import gradc

pytestmark = pytest.mark.slow  # (every test here takes more than a few seconds)

SRC = """\
model numerics
input z : f64[B, 2]
input y : i64[B]
input t : f64[B, 2]
input s : f64[B, 3]
input b : f64[N]
input bt : f64[N]
input l : f64[K]
input x : f64[M]
output ce = cross_entropy(z, y)
output ce_sum = cross_entropy(z, y, reduction="sum")
output ce_prob = cross_entropy(z, t)
output bce = binary_cross_entropy(b, bt)
output sp = softplus(b)
output sg = sigmoid(b)
output lse = logsumexp(l)
output sm = softmax(s)
output lsm = log_softmax(s)
output w_sqrt = where(x > 0, sqrt(x), 0)
output w_log = where(x > 0, log(x), 0.5 * x)
output w_div = where(abs(x) > 0, 1 / x, 0)
"""

WRT = ("z", "t", "s", "b", "bt", "l", "x")
DTYPES = {"f64": np.float64, "f32": np.float32}


@functools.cache
def model(dtype: str) -> gradc.Model:
    return gradc.compile_string(SRC, name="numerics", dtype=dtype, wrt=list(WRT))


def inputs(dtype="f64", **over):
    """Benign defaults for every input (B=2, N=2, K=2, M=3), overridden by ``over``."""
    f = DTYPES[dtype]
    base = {
        "z": [[0.5, -0.5], [0.1, 0.2]], "y": np.array([0, 1], np.int64),
        "t": [[0.5, 0.5], [0.25, 0.75]], "s": [[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]],
        "b": [0.5, -0.5], "bt": [0.2, 0.8], "l": [0.0, 1.0], "x": [1.0, 2.0, 3.0],
    }
    base.update(over)
    return {k: (np.array(v, f) if k != "y" else np.array(v, np.int64)) for k, v in base.items()}


def grad(dtype, out, values, cot=1.0):
    """The gradient of output ``out`` (cotangent ``cot``) w.r.t. every wrt input."""
    m = model(dtype)
    shape = np.shape(m.forward({}, **values)[out])
    c = np.array(np.broadcast_to(cot, shape), DTYPES[dtype])
    return m.vjp({}, {out: c}, **values)


def sigmoid(z):
    z = np.asarray(z, np.float64)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


DT = pytest.mark.parametrize("dtype", ["f64", "f32"])


def rtol(dtype):
    return 1e-12 if dtype == "f64" else 1e-6


@DT
@pytest.mark.parametrize("label, want", [(0, 0.0), (1, 2000.0)])
def test_cross_entropy_of_huge_logits_is_exact(dtype, label, want):
    v = inputs(dtype, z=[[1000.0, -1000.0]], y=[label], t=[[0.5, 0.5]], s=[[0, 0, 0]])
    out = model(dtype).forward({}, **v)
    assert np.isfinite(out["ce"]) and float(out["ce"]) == pytest.approx(want, abs=1e-9)
    assert float(out["ce_sum"]) == pytest.approx(want, abs=1e-9)
    g = grad(dtype, "ce", v)["z"]
    onehot = np.eye(2)[[label]]
    np.testing.assert_allclose(g, np.array([[1.0, 0.0]]) - onehot, rtol=0, atol=1e-12)


@DT
def test_cross_entropy_batch_of_huge_logits(dtype):
    v = inputs(dtype, z=[[1000.0, -1000.0], [-1000.0, 1000.0]], y=[0, 0])
    out = model(dtype).forward({}, **v)
    assert float(out["ce"]) == pytest.approx(1000.0, rel=rtol(dtype))     # (0 + 2000) / 2
    assert float(out["ce_sum"]) == pytest.approx(2000.0, rel=rtol(dtype))
    g = grad(dtype, "ce", v)["z"]
    np.testing.assert_allclose(g, [[0.0, 0.0], [-0.5, 0.5]], rtol=0, atol=1e-12)


@DT
def test_cross_entropy_with_probabilities_at_huge_logits(dtype):
    v = inputs(dtype, z=[[1000.0, -1000.0], [3.0, 3.0]], t=[[0.5, 0.5], [0.25, 0.75]])
    out = model(dtype).forward({}, **v)
    want = (0.5 * 2000.0 + np.log(2.0)) / 2            # -sum t * log_softmax, batch mean
    assert float(out["ce_prob"]) == pytest.approx(want, rel=rtol(dtype))
    g = grad(dtype, "ce_prob", v)
    want_z = (np.array([[1.0, 0.0], [0.5, 0.5]]) - np.array([[0.5, 0.5], [0.25, 0.75]])) / 2
    np.testing.assert_allclose(g["z"], want_z, rtol=rtol(dtype), atol=1e-12)
    np.testing.assert_allclose(g["t"], -np.array([[0.0, -2000.0], [-np.log(2), -np.log(2)]]) / 2,
                               rtol=rtol(dtype), atol=1e-12)


BCE_Z = [100.0, -100.0, 1e4, -1e4, 0.5, -30.0]
BCE_T = [0.0, 1.0, 0.3, 1.0, 0.2, 0.7]


@DT
def test_binary_cross_entropy_of_huge_logits_is_exact(dtype):
    v = inputs(dtype, b=BCE_Z, bt=BCE_T)
    z, t = np.array(BCE_Z), np.array(BCE_T)
    out = model(dtype).forward({}, **v)
    want = np.mean(np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z))))
    assert np.isfinite(out["bce"])
    assert float(out["bce"]) == pytest.approx(want, rel=rtol(dtype))
    g = grad(dtype, "bce", v)
    np.testing.assert_allclose(g["b"], (sigmoid(z) - t) / len(z), rtol=rtol(dtype), atol=1e-15)
    np.testing.assert_allclose(g["bt"], -z / len(z), rtol=rtol(dtype))


@DT
def test_softplus_and_sigmoid_of_huge_logits(dtype):
    z = np.array(BCE_Z)
    v = inputs(dtype, b=BCE_Z, bt=BCE_T)
    out = model(dtype).forward({}, **v)
    np.testing.assert_allclose(out["sp"], np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z))),
                               rtol=rtol(dtype), atol=1e-30)
    np.testing.assert_allclose(out["sg"], sigmoid(z), rtol=rtol(dtype) * 10, atol=1e-30)
    gs = grad(dtype, "sp", v)["b"]
    np.testing.assert_allclose(gs, sigmoid(z), rtol=rtol(dtype) * 10, atol=1e-30)
    gg = grad(dtype, "sg", v)["b"]
    assert np.all(np.isfinite(gg))
    np.testing.assert_allclose(gg, sigmoid(z) * sigmoid(-z), rtol=1e-5, atol=1e-30)


@DT
@pytest.mark.parametrize("vals, want", [([1000.0, 1000.0], 1000.0 + np.log(2.0)),
                                     ([-1000.0, -1000.0], -1000.0 + np.log(2.0)),
                                     ([1000.0, -1000.0], 1000.0),
                                     ([1e4, 0.0], 1e4)])
def test_logsumexp_of_huge_values(dtype, vals, want):
    v = inputs(dtype, l=vals)
    out = model(dtype).forward({}, **v)
    assert float(out["lse"]) == pytest.approx(want, rel=rtol(dtype))
    g = grad(dtype, "lse", v)["l"]
    a = np.array(vals)
    # the gradient exp(l - logsumexp(l)) inherits the absolute rounding error of the
    # logsumexp value (an f32 ulp at 1000 is 6e-5), as in PyTorch
    tol = 1e-12 if dtype == "f64" else 2 * np.spacing(np.float32(np.abs(a).max()))
    np.testing.assert_allclose(g, np.exp(a - a.max()) / np.exp(a - a.max()).sum(),
                               rtol=tol, atol=1e-30)


@DT
def test_softmax_of_huge_logits_sums_to_one(dtype):
    """Also in float32: exp(z - max(z)) / sum(...) is accurate to a few ulps whatever the
    size of the logits (PyTorch's softmax is); exp(z - logsumexp(z)) is not, since the
    logsumexp value carries an absolute rounding error of an ulp of max(z)."""
    s = [[1000.0, 999.0, -1000.0], [1e4, 1e4, 0.0]]
    v = inputs(dtype, s=s)
    out = model(dtype).forward({}, **v)
    sm, lsm = np.asarray(out["sm"], np.float64), np.asarray(out["lsm"], np.float64)
    assert np.all(np.isfinite(sm)) and np.all(np.isfinite(lsm))
    np.testing.assert_allclose(sm.sum(axis=1), 1.0, rtol=rtol(dtype) * 10)
    a = np.array(s)
    want = a - a.max(1, keepdims=True)
    want = want - np.log(np.exp(want).sum(1, keepdims=True))
    np.testing.assert_allclose(lsm, want, rtol=rtol(dtype))
    np.testing.assert_allclose(sm, np.exp(want), rtol=rtol(dtype) * 10, atol=1e-300)
    for out_name in ("sm", "lsm"):
        g = grad(dtype, out_name, v, cot=np.arange(6.0).reshape(2, 3))["s"]
        assert np.all(np.isfinite(g)), out_name


@DT
@pytest.mark.parametrize("out, taken", [
    ("w_sqrt", lambda x: 0.5 / np.sqrt(np.where(x > 0, x, 1))),
    ("w_log", lambda x: 1 / np.where(x > 0, x, 1)),
    ("w_div", lambda x: -1 / np.where(x != 0, x, 1) ** 2),
])
def test_where_gradient_does_not_leak_nan_from_the_branch_not_taken(dtype, out, taken):
    """``where(x > 0, sqrt(x), 0)`` at x = 0 and x < 0: the sqrt branch is not taken, its
    infinite or NaN derivative must not reach the gradient (0 * inf is NaN)."""
    x = np.array([0.0, -1.0, 4.0])
    v = inputs(dtype, x=x)
    fwd = np.asarray(model(dtype).forward({}, **v)[out], np.float64)
    assert np.all(np.isfinite(fwd)), fwd
    g = np.asarray(grad(dtype, out, v)["x"], np.float64)
    assert np.all(np.isfinite(g)), f"{out}: gradient {g} at x = {x}"
    other = {"w_sqrt": 0.0, "w_log": 0.5, "w_div": 0.0}[out]
    want = np.where(x > 0 if out != "w_div" else x != 0, taken(x), other)
    np.testing.assert_allclose(g, want, rtol=rtol(dtype))


@DT
@pytest.mark.parametrize("out, taken", [
    ("w_sqrt", lambda x: 0.5 / np.sqrt(np.where(x > 0, x, 1))),
    ("w_log", lambda x: 1 / np.where(x > 0, x, 1)),
    ("w_div", lambda x: -1 / np.where(x != 0, x, 1) ** 2),
])
def test_where_tangent_does_not_leak_nan_from_the_branch_not_taken(dtype, out, taken):
    """The same in forward mode: jvp's tangent of where(...) is the taken branch's."""
    x = np.array([0.0, -1.0, 4.0])
    v = inputs(dtype, x=x)
    tx = np.array([1.0, 2.0, 3.0], DTYPES[dtype])
    _, tans = model(dtype).jvp({}, {"x": tx}, **v)
    t = np.asarray(tans[out], np.float64)
    assert np.all(np.isfinite(t)), f"{out}: tangent {t} at x = {x}"
    other = {"w_sqrt": 0.0, "w_log": 0.5, "w_div": 0.0}[out]
    want = np.where(x > 0 if out != "w_div" else x != 0, taken(x), other) * tx
    np.testing.assert_allclose(t, want, rtol=rtol(dtype))
