"""The oracle's oracle: the NumPy reference interpreter (:mod:`gradc.runtime.reference`).

* Its forward values for every row of ``tests/harness/op_specs.py`` equal an independent NumPy
  formula written here (so the op table's SymPy forwards and the structural lowering match
  the SPEC's definitions: exact gelu, CS231n hinge, PyTorch's cross-entropy, ...).
* Its gradients, JVPs and VJPs pass the finite-difference oracles: this checks the autodiff
  graph (the derivative rules) with no code generation involved, so a failure here and in
  ``tests/autodiff/test_gradients.py`` points at autodiff, a failure only there at codegen.

No Numba compile happens in this file.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from scipy.special import erf, log_softmax, logsumexp, softmax

from tests.harness.op_specs import REDUCTIONS, ROWS, Row, group
from tests.harness.oracles import ReferenceModel, fd_check_jvp, fd_check_loss, fd_check_vjp, rel_err


def _sig(x):
    return 0.5 * (1 + np.tanh(0.5 * x))


def _softplus(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def _swish(x):
    return x * _sig(x)


def _pick(z, y):
    return np.take_along_axis(z, y[..., None], -1)[..., 0]


def _hinge(s, y, margin, mean=True):
    d = np.maximum(0, s - _pick(s, y)[..., None] + margin)
    d = np.where(np.arange(s.shape[-1]) == y[..., None], 0, d)
    per = d.sum(-1)
    return per.mean() if mean else per.sum()


def _bce(z, t):
    return np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))


def _ce_labels(z, y):
    return logsumexp(z, axis=-1) - _pick(z, y)


#: row name -> NumPy formula over the row's argument values
NUMPY = {
    "exp": lambda v: np.exp(v["x"]),
    "log": lambda v: np.log(v["x"]),
    "log1p": lambda v: np.log1p(v["x"]),
    "sqrt": lambda v: np.sqrt(v["x"]),
    "abs": lambda v: np.abs(v["x"]),
    "sin": lambda v: np.sin(v["x"]),
    "cos": lambda v: np.cos(v["x"]),
    "tan": lambda v: np.tan(v["x"]),
    "tanh": lambda v: np.tanh(v["x"]),
    "sigmoid": lambda v: _sig(v["x"]),
    "relu": lambda v: np.maximum(v["x"], 0),
    "leaky_relu": lambda v: np.where(v["x"] > 0, v["x"], 0.01 * v["x"]),
    "elu": lambda v: np.where(v["x"] > 0, v["x"], np.expm1(v["x"])),
    "elu(alpha=0.5)": lambda v: np.where(v["x"] > 0, v["x"], 0.5 * np.expm1(v["x"])),
    "gelu": lambda v: 0.5 * v["x"] * (1 + erf(v["x"] / np.sqrt(2))),
    "softplus": lambda v: np.log(1 + np.exp(v["x"])),
    "silu": lambda v: _swish(v["x"]),
    "step": lambda v: (v["x"] > 0).astype(float),
    "sign": lambda v: np.sign(v["x"]),
    "max(a,b)": lambda v: np.maximum(v["a"], v["b"]),
    "min(a,b)": lambda v: np.minimum(v["a"], v["b"]),
    "max(a,0)": lambda v: np.maximum(v["x"], 0),
    "where(c,a,b)": lambda v: np.where(v["c"] > 0, v["a"], v["b"]),
    "where(x>0,sqrt(x),0)": lambda v: np.where(v["x"] > 0, np.sqrt(np.abs(v["x"])), 0),
    "where(x>0,log(x),exp(x))": lambda v: np.where(v["x"] > 0, np.log(np.abs(v["x"])),
                                                    np.exp(v["x"])),
    "a/b": lambda v: v["a"] / v["b"],
    "-x": lambda v: -v["x"],
    "x**3": lambda v: v["x"] ** 3,
    "x^0.5": lambda v: v["x"] ** 0.5,
    "a^b": lambda v: v["a"] ** v["b"],
    "2^x": lambda v: 2.0 ** v["x"],
    "a<b": lambda v: (v["a"] < v["b"]).astype(float),
    "a<=b,a>b,a>=b": lambda v: ((v["a"] <= v["b"]) + 2.0 * (v["a"] > v["b"])
                                + 4.0 * (v["a"] >= v["b"]) + v["a"] * (v["b"] > v["a"])),
    "(a>0)==(b>0)": lambda v: ((v["a"] > 0) == (v["b"] > 0)).astype(float),
    "[B,3]+[3]": lambda v: v["a"] + v["b"],
    "[B,1]*[1,4]": lambda v: v["a"] * v["b"],
    "scalar*tensor": lambda v: v["s"] * v["x"],
    "[3]-[B,3]": lambda v: v["a"] - v["b"],
    "[2,B,3]*[B,1]": lambda v: v["a"] * v["b"],
    "max([B,3],[3])": lambda v: np.maximum(v["a"], v["b"]),
    "where([B,1],[3],s)": lambda v: np.where(v["c"] > 0, v["a"], v["s"]),
    "scalar^[B,3]": lambda v: v["s"] ** v["x"],
    "[3]@[3]": lambda v: v["a"] @ v["b"],
    "[3]@[3,4]": lambda v: v["a"] @ v["W"],
    "[B,3]@[3]": lambda v: v["a"] @ v["v"],
    "[B,3]@[3,4]": lambda v: v["a"] @ v["W"],
    "[2,B,3]@[2,3,4]": lambda v: v["a"] @ v["b"],
    "[2,B,3]@[3,4]": lambda v: v["a"] @ v["W"],
    "a.T@b": lambda v: v["a"].T @ v["b"],
    "a@b.T": lambda v: v["a"] @ v["b"].T,
    "relu(x@W+b)": lambda v: np.maximum(v["x"] @ v["W"] + v["b"], 0),
    "x.T": lambda v: v["x"].T,
    "transpose(x,(1,0,2))": lambda v: np.transpose(v["x"], (1, 0, 2)),
    "reshape(x,[B,-1])": lambda v: v["x"].reshape(v["x"].shape[0], -1),
    "reshape(x,[2,B,2])*exp": lambda v: np.exp(v["x"].reshape(2, v["x"].shape[0], 2)),
    "softmax": lambda v: softmax(v["z"], axis=-1),
    "softmax(axis=0)": lambda v: softmax(v["z"], axis=0),
    "log_softmax": lambda v: log_softmax(v["z"], axis=-1),
    "mse": lambda v: np.mean((v["p"] - v["t"]) ** 2),
    "cross_entropy(labels)": lambda v: _ce_labels(v["z"], v["y"]).mean(),
    "cross_entropy(probs)": lambda v: -(v["t"] * log_softmax(v["z"], -1)).sum(-1).mean(),
    "cross_entropy(3d labels)": lambda v: _ce_labels(v["z"], v["y"]).mean(),
    "binary_cross_entropy": lambda v: _bce(v["z"], v["t"]).mean(),
    "cross_entropy(labels|probs,sum)": lambda v: (
        _ce_labels(v["z"], v["y"]).sum() - (v["t"] * log_softmax(v["z"], -1)).sum()),
    "mse(sum)+binary_cross_entropy(sum)": lambda v: (
        np.sum((v["p"] - v["t"]) ** 2) + _bce(v["z"], v["u"]).sum()),
    "hinge": lambda v: _hinge(v["s"], v["y"], 1.0),
    "hinge(margin=2,sum)": lambda v: _hinge(v["s"], v["y"], 2.0, mean=False),
    "l1(a,b)": lambda v: np.abs(v["a"]).sum() + np.abs(v["b"]).sum(),
    "l2(a,b)": lambda v: (v["a"] ** 2).sum() + (v["b"] ** 2).sum(),
    "fn swish": lambda v: _swish(v["x"]),
    "fn gelu_tanh": lambda v: 0.5 * v["x"] * (1 + np.tanh(0.7978845608 * (
        v["x"] + 0.044715 * v["x"] ** 3))),
    "fn calling fn": lambda v: _swish(_swish(v["x"])) + v["x"],
    "fn lerp(a,b,t)": lambda v: v["a"] + v["t"] * (v["b"] - v["a"]),
    "fn where-leaky": lambda v: np.where(v["x"] > 0, v["x"], 0.1 * v["x"]),
    "fn unit(v) (reduction body)": lambda v: v["x"] / np.sqrt(
        (v["x"] ** 2).sum(-1, keepdims=True)),
    "swish(x@W)": lambda v: _swish(v["x"] @ v["W"]),
    "pipe x|>leaky_relu(0.2)": lambda v: np.where(v["x"] > 0, v["x"], 0.2 * v["x"]),
}
_NP_REDUCE = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min,
              "logsumexp": logsumexp}
for _fn, _variants in REDUCTIONS.items():
    for _axis, _keep, _ in _variants:
        _name = f"{_fn}(axis={_axis}{',keepdims' if _keep else ''})".replace(" ", "")
        NUMPY[_name] = (lambda f, ax, k: lambda v: f(v["x"], axis=ax, keepdims=k))(
            _NP_REDUCE[_fn], _axis, _keep)

ROW_PARAMS = [pytest.param(r, id=r.name) for r in ROWS]


@functools.cache
def reference(group_name: str) -> ReferenceModel:
    g = group(group_name)
    return ReferenceModel(g.text, g.filename, "f64", g.wrt)


def row_values(r: Row) -> dict:
    """The row's argument values, as the group model holds them."""
    g = group(r.group)
    k = g.index[r.name]
    return {a: {**g.params, **g.inputs}[f"o{k}_{a}"] for a in r.args}


def test_every_row_has_a_numpy_formula():
    missing = sorted(r.name for r in ROWS if r.name not in NUMPY)
    assert not missing, f"rows without a NumPy formula in {__file__}: {missing}"
    stale = sorted(set(NUMPY) - {r.name for r in ROWS})
    assert not stale, f"NumPy formulas of rows that no longer exist: {stale}"


@pytest.mark.parametrize("r", ROW_PARAMS)
def test_reference_forward_matches_numpy(r: Row):
    g = group(r.group)
    params, inputs = g.values(r)
    got = reference(r.group).forward(params, **inputs)[g.out(r)]
    with np.errstate(all="ignore"):
        want = NUMPY[r.name](row_values(r))
    assert np.shape(got) == np.shape(want), f"shape {np.shape(got)} != {np.shape(want)}"
    assert rel_err(got, want) <= 1e-12, f"reference {got} vs numpy {want}"


@pytest.mark.parametrize("r", ROW_PARAMS)
def test_reference_derivatives_pass_finite_differences(r: Row):
    """The autodiff graph (loss gradient, JVP, VJP) evaluated by the reference interpreter
    against central differences: derivative rules checked with no codegen."""
    g = group(r.group)
    m = reference(r.group)
    params, inputs = g.values(r)
    only, label = g.row_leaves(r), f"reference: {r.name} ({g.out(r)})"
    fd_check_loss(m, params, inputs, g.wrt, tol=r.tol, only=only, n_dirs=2, label=label)
    fd_check_jvp(m, params, inputs, g.wrt, outputs=[g.out(r)], tol=r.tol, only=only,
                 n_dirs=2, label=label)
    fd_check_vjp(m, params, inputs, g.wrt, output=g.out(r), tol=r.tol, only=only, n_dirs=2,
                 label=label)
