"""The derivative at each non-differentiable point (docs/language.md, "Non-differentiable
points"): every row of that table checked against its documented value, on the numpy and
cpu targets and the reference interpreter, and against torch where the convention is
torch's. ``max(a, b)`` with a = b used to give the whole gradient to ``a``; it is now split
half and half, as ``torch.maximum`` does."""

from __future__ import annotations

import numpy as np
import pytest

import gradc

from tests.harness.oracles import ReferenceModel

torch = pytest.importorskip("torch")

MODEL = """
input x : f64[4]
input a : f64[3]
input b : f64[3]
input z : f64[2, 3]
input img : f64[1, 1, 2, 2]
input s : f64[1, 3]
input y : i64[1]
layer pool = maxpool2d(2)
output relu0 = relu(x)
output abs0 = abs(x)
output l1_0 = l1(x) + 0 * x
output lrelu0 = leaky_relu(x, alpha=0.1)
output elu0 = elu(x, alpha=0.5)
output sign0 = sign(x)
output step0 = step(x)
output cmp0 = (x > 0) + (x <= 0) + (x == 0)
output mx = max(a, b)
output mn = min(a, b)
output rmax = max(z, axis=1)
output rmin = min(z)
output pooled = pool(img)
output wh = where(x > 0, sqrt(x), 0)
output sq = sqrt(x)
output lg = log(x)
output hinge0 = hinge(s, y) + 0 * s
loss = sum(x)
"""
WRT = ["x", "a", "b", "z", "img", "s"]
INPUTS = {
    "x": np.array([0.0, 0.0, 1.0, -1.0]),
    "a": np.array([1.0, 2.0, 3.0]), "b": np.array([1.0, 1.0, 4.0]),
    "z": np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]),
    "img": np.array([[[[5.0, 5.0], [1.0, 5.0]]]]),
    "s": np.array([[1.0, 0.0, -5.0]]), "y": np.array([0]),  # margin exactly met at j = 1
}
THIRD = 1 / 3

#: output -> {input: the documented gradient of sum(output)}
DOCUMENTED = {
    "relu0": {"x": [0, 0, 1, 0]},
    "abs0": {"x": [0, 0, 1, -1]},
    "l1_0": {"x": [0, 0, 4, -4]},  # sum over 4 copies of l1(x): 4 sign(x)
    "lrelu0": {"x": [0.1, 0.1, 1, 0.1]},
    "elu0": {"x": [0.5, 0.5, 1, 0.5 * np.exp(-1)]},
    "sign0": {"x": [0, 0, 0, 0]},
    "step0": {"x": [0, 0, 0, 0]},
    "cmp0": {"x": [0, 0, 0, 0]},
    "mx": {"a": [0.5, 1, 0], "b": [0.5, 0, 1]},
    "mn": {"a": [0.5, 0, 1], "b": [0.5, 1, 0]},
    "rmax": {"z": [[0, 0.5, 0.5], [THIRD, THIRD, THIRD]]},
    "rmin": {"z": [[1, 0, 0], [0, 0, 0]]},
    "pooled": {"img": [[[[THIRD, THIRD], [0, THIRD]]]]},
    "wh": {"x": [0, 0, 0.5, 0]},
    "sq": {"x": [np.inf, np.inf, 0.5, np.nan]},
    "lg": {"x": [np.inf, np.inf, 1, -1]},
    "hinge0": {"s": [[0, 0, 0]]},  # sum of 3 copies of a hinge whose margin is met: 0
}


def _torch_grads(name):
    """torch's gradient of sum(output), for the rows whose convention is torch's."""
    t = {k: torch.tensor(v, requires_grad=k in WRT) for k, v in INPUTS.items()}
    F = torch.nn.functional
    x = t["x"]
    out = {
        "relu0": lambda: torch.relu(x), "abs0": lambda: torch.abs(x),
        "l1_0": lambda: x.abs().sum() + 0 * x,
        "lrelu0": lambda: F.leaky_relu(x, 0.1), "elu0": lambda: F.elu(x, 0.5),
        "sign0": lambda: torch.sign(x),
        "cmp0": lambda: (x > 0).double() + (x <= 0).double() + (x == 0).double() + 0 * x,
        "mx": lambda: torch.maximum(t["a"], t["b"]), "mn": lambda: torch.minimum(t["a"], t["b"]),
        "rmax": lambda: torch.amax(t["z"], dim=1), "rmin": lambda: torch.min(t["z"]),
        "sq": lambda: torch.sqrt(x), "lg": lambda: torch.log(x),
        "hinge0": lambda: F.multi_margin_loss(t["s"], t["y"]) + 0 * t["s"],
    }[name]()
    out.sum().backward()
    return {k: v.grad.numpy() for k, v in t.items() if v.grad is not None
            and k in DOCUMENTED[name]}


def _check(model, name):
    outs = model.forward({}, **INPUTS)
    grads = model.vjp({}, {name: np.ones_like(np.asarray(outs[name]))}, **INPUTS)
    for inp in WRT:
        want = np.asarray(DOCUMENTED[name].get(inp, np.zeros_like(INPUTS[inp])), np.float64)
        np.testing.assert_allclose(grads[inp], want, rtol=1e-12, atol=0,
                                   err_msg=f"d sum({name}) / d {inp}")


@pytest.fixture(scope="module", params=["numpy", "cpu", "reference"])
def model(request):
    if request.param == "reference":
        return ReferenceModel(MODEL, wrt=tuple(WRT))
    return gradc.compile_string(MODEL, name="nondiff", target=request.param, wrt=WRT)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_documented_derivative(model, name):
    _check(model, name)


@pytest.mark.parametrize("name", ["relu0", "abs0", "l1_0", "lrelu0", "elu0", "sign0", "cmp0",
                                  "mx", "mn", "rmax", "rmin", "sq", "lg",
                                  "hinge0"])
def test_documented_value_is_torchs(name):
    for inp, got in _torch_grads(name).items():
        np.testing.assert_allclose(got, DOCUMENTED[name][inp], rtol=1e-12, atol=0,
                                   err_msg=f"torch: d sum({name}) / d {inp}")


def test_where_maxpool_and_max_dim_differ_from_torch_as_documented():
    """The three documented differences: torch's where gives NaN where the untaken branch's
    derivative is inf, max_pool2d and max(dim) give a tie's gradient to one element."""
    x = torch.tensor([0.0, 4.0], dtype=torch.float64, requires_grad=True)
    torch.where(x > 0, torch.sqrt(x), torch.zeros_like(x)).sum().backward()
    assert np.isnan(x.grad[0].item())
    img = torch.tensor(INPUTS["img"], requires_grad=True)
    torch.nn.functional.max_pool2d(img, 2).sum().backward()
    assert sorted(img.grad.flatten().tolist()) == [0, 0, 0, 1]
    z = torch.tensor(INPUTS["z"], requires_grad=True)
    torch.max(z, dim=1).values.sum().backward()
    assert z.grad.sum(dim=1).tolist() == [1, 1] and z.grad.max().item() == 1


def test_max_tie_split_reaches_jvp_and_second_order():
    """The tie rule is the derivative itself: forward mode gives the same half."""
    m = gradc.compile_string("input a : f64[2]\ninput b : f64[2]\noutput o = max(a, b)\n"
                             "loss = sum(max(a, b) ^ 2)\n", name="tie", target="numpy",
                             wrt=["a", "b"])
    a, b = np.array([2.0, 1.0]), np.array([2.0, 3.0])
    _, tans = m.jvp({}, {"a": np.ones(2)}, a=a, b=b)
    np.testing.assert_allclose(tans["o"], [0.5, 0.0])
    hv = m.hvp({}, {"a": np.ones(2), "b": np.ones(2)}, a=a, b=b)
    # d/da of 2 max(a,b) max'_a = 2 max'_a (max'_a + max'_b) : at the tie 2 * 0.5 * 1
    np.testing.assert_allclose(hv["a"], [1.0, 0.0])
    np.testing.assert_allclose(hv["b"], [1.0, 2.0])
