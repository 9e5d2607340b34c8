"""The entries ``loss``, ``hvp`` and ``jacobian`` (gradc/entries.py), in float64 on the CPU.

* ``hvp`` of every example with a loss (examples/*.grad, every float input in ``wrt``, so
  that the Hessian's input blocks and param/input cross terms are checked too) against
  central differences of ``loss_and_grad``'s gradients along a random vector, and ``loss``
  against ``loss_and_grad``'s loss (to the last bits: the ``loss`` program fuses a mean's
  division where ``loss_and_grad`` shares the reciprocal with the backward pass); the same
  for a small model with batchnorm
  and dropout, whose train-mode graph is made deterministic by ``seed=``.
* ``jacobian`` against ``torch.autograd.functional.jacobian`` (the models written again in
  torch) and against a Jacobian assembled from central differences of ``forward``, through
  both its branches — one ``jvp`` per element of ``wrt`` (wrt no bigger than the output),
  one ``vjp`` per element of the output (the output smaller) — with respect to params and
  to ``wrt`` inputs; the result's shape is the output's shape + wrt's shape.
* bad names: an unknown output or wrt for ``jacobian``, an unknown key in ``hvp``'s vector.
* the generated module's own functions give the Model methods' results.

Every model is compiled once (``functools.cache``) and Numba compiles each entry at its
first call, so the checks share entries where they can. The big layer examples (cnn,
resnet_digits, resmlp, attention_block, char_rnn, lstm_chars, tiny_gpt) and the examples with
grad inside run on the ``numpy`` target: their hvp kernels take minutes of Numba compile time, and
tests/codegen/numpy/test_target.py holds the numpy target to the CPU target's results (hvp
included) to 1e-12.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import gradc
from gradc.datasets import spiral
from gradc.pinn import collocation

from tests.harness import data
from tests.harness.oracles import rel_err, shifted
from tests.harness.paths import EXAMPLES

pytestmark = pytest.mark.slow  # (every test here takes more than a few seconds)

torch = pytest.importorskip("torch")
F = torch.nn.functional

PATHS = sorted(EXAMPLES.glob("*.grad"))
#: on the numpy target (see above)
BIG = {"cnn", "resnet_digits", "resmlp", "attention_block", "char_rnn", "lstm_chars",
       "tiny_gpt", "pinn_oscillator", "pinn_poisson", "gradient_penalty"}
SEED = 5                # the noise seed of every call (batchnorm, dropout: one fixed graph)
EPS = 1e-5              # central differences (directions scaled to the values they move)
HVP_RTOL = 1e-5
TORCH_RTOL = 1e-10      # the same function in torch, evaluated in another order
FD_RTOL = 1e-6          # central differences of forward


# ---------------------------------------------------------------------- helpers
def _rms(v) -> float:
    v = np.asarray(v, np.float64)
    return float(np.sqrt(np.mean(v * v))) if v.size else 0.0


def _f64(arrays: dict) -> dict:
    """Float arrays as float64, the others as int64; all C-contiguous."""
    return {k: np.array(v, np.float64 if np.asarray(v).dtype.kind == "f" else np.int64,
                        order="C") for k, v in arrays.items()}


def perturbed(params: dict, seed: int) -> dict:
    """``params`` moved by 20% of their size at random (zero params by 0.1): no dead ReLUs,
    no zero biases, no ties."""
    rng = np.random.default_rng(seed)
    return {k: np.array(v + rng.standard_normal(v.shape)
                        * (0.2 * _rms(v) if _rms(v) > 0 else 0.1), order="C")
            for k, v in params.items()}


def scaled_direction(values: dict, seed: int) -> dict:
    """A random vector like ``values``, each array's entries scaled to its own size, so that
    a step moves every leaf by the same relative amount (weights of 1e-4 and of 20 alike)."""
    rng = np.random.default_rng(seed)
    return {k: np.array(rng.standard_normal(np.shape(v)) * (_rms(v) or 1.0), order="C")
            for k, v in values.items()}


def grads_at(m, params: dict, inputs: dict) -> dict:
    return m.loss_and_grad(params, seed=SEED, **inputs)[1]


def check_hvp(m, params: dict, inputs: dict, *, direction_seed: int = 0,
              label: str = "") -> dict:
    """``hvp`` along a random vector (params and wrt inputs) against central differences of
    ``loss_and_grad``'s gradients; return the hvp."""
    wrt = m.signature["wrt"]
    leaves = {**params, **{k: inputs[k] for k in wrt}}
    v = scaled_direction(leaves, direction_seed)
    hv = m.hvp(params, v, seed=SEED, **inputs)
    assert list(hv) == list(leaves), (label, list(hv), list(leaves))
    for k, value in hv.items():
        assert np.shape(value) == np.shape(leaves[k]), (label, k, np.shape(value))
        assert np.asarray(value).dtype == np.float64, (label, k, np.asarray(value).dtype)
    plus = grads_at(m, *shifted(params, inputs, wrt, v, EPS))
    minus = grads_at(m, *shifted(params, inputs, wrt, v, -EPS))
    fd = {k: (plus[k] - minus[k]) / (2 * EPS) for k in leaves}
    whole = rel_err(np.concatenate([np.ravel(hv[k]) for k in leaves]),
                    np.concatenate([np.ravel(fd[k]) for k in leaves]))
    # each leaf on its own, relative to its part or (for a tiny part) to the whole
    scale = float(np.sqrt(sum(np.sum(np.square(fd[k])) for k in leaves)))
    errs = {k: rel_err(hv[k], fd[k], floor=1e-3 * scale) for k in leaves}
    bad = {k: f"{e:.3g}" for k, e in errs.items() if not e <= HVP_RTOL}
    assert whole <= HVP_RTOL and not bad, \
        f"[{label}] hvp vs central differences: whole {whole:.3g}, leaves {bad}"
    return hv


# ---------------------------------------------------------------------- example inputs
def _critic_batch(n: int) -> dict:
    rng = np.random.default_rng(4)
    return {"real": rng.normal(size=(n, 2)), "fake": rng.normal(1, 1, (n, 2)),
            "mix": rng.uniform(0, 1, (n, 1))}


def _spiral3() -> dict:
    x, y = spiral(classes=3, points=2, seed=1)
    return {"x": x[::2], "y": y[::2]}                  # one point of each class


INPUTS = {          # example -> small inputs, drawn by the helpers of the examples' own tests
    "and_gate": lambda: {"x": data.XOR_X[1:], "t": np.array([0.0, 0.0, 1.0])},
    "attention_block": lambda: data.mixing_task(2, 3, 4),
    "char_rnn": lambda: data.char_data(4, 3, 3)[0],
    "cnn": lambda: dict(zip(("x", "y"), data.digits(3, 3))),
    "embedding_bag": lambda: data.bags(3, 6, length=4),
    "gradient_penalty": lambda: _critic_batch(3),
    "lstm_chars": lambda: data.char_data(4, 3, 3)[0],
    "mlp": lambda: dict(zip(("x", "y"), data.mlp_batch(1.0, n=3, seed=3))),
    "pinn_oscillator": lambda: collocation("pinn_oscillator", 3, seed=1, dtype="f64"),
    "pinn_poisson": lambda: collocation("pinn_poisson", 3, seed=1, dtype="f64"),
    "quadratic": lambda: {"x": np.random.default_rng(0).standard_normal(4)},
    "resmlp": _spiral3,
    "resnet_digits": lambda: dict(zip(("x", "y"), data.digits(3, 3))),
    "scalar": dict,
    "sigmoid_neuron": lambda: {"x": np.array([-1.0, -2.0])},
    "spiral": _spiral3,
    "svm": lambda: dict(zip(("x", "y"), data.svm_data(n=4, seed=1))),
    "tiny_gpt": lambda: data.char_data(4, 3, 3)[0],
    "xor": lambda: {"x": data.XOR_X, "y": data.XOR_Y},
}


@functools.cache
def example(name: str) -> gradc.Model:
    """The example in float64 with every float input in ``wrt`` (read from a plain
    compile's signature: compiling runs no kernel, Numba compiles at the first call)."""
    path = EXAMPLES / f"{name}.grad"
    target = "numpy" if name in BIG else "cpu"
    sig = gradc.compile(path, dtype="f64", target=target).signature
    wrt = [k for k, (dtype, _) in sig["inputs"].items() if dtype.startswith("f")]
    return gradc.compile(path, dtype="f64", wrt=wrt, target=target)


def example_case(name: str):
    """The model, perturbed params and its inputs."""
    m = example(name)
    params = perturbed(m.init_params(1), seed=2)
    if name == "svm":
        params["W"] = params["W"] * 100          # std 0.01: margins of both signs
    return m, params, _f64(INPUTS[name]())


EXAMPLE_IDS = [p.stem for p in PATHS]


# ---------------------------------------------------------------------- 1. hvp and loss
def test_every_example_has_inputs_here():
    """A new example needs its inputs in INPUTS, or its second-order entries go unchecked."""
    missing = {p.stem for p in PATHS} - set(INPUTS)
    assert not missing, f"add inputs for {sorted(missing)}"


@pytest.mark.parametrize("name", EXAMPLE_IDS)
def test_example_hvp_matches_finite_differences(name):
    m = example(name)
    if not m.signature["loss"]:
        assert not m.supports("hvp") and not m.supports("loss")
        pytest.skip(f"{name} declares no loss")
    check_hvp(*example_case(name), direction_seed=3, label=name)


@pytest.mark.parametrize("name", EXAMPLE_IDS)
def test_example_loss_equals_loss_and_grad(name):
    m = example(name)
    if not m.signature["loss"]:
        pytest.skip(f"{name} declares no loss")
    m, params, inputs = example_case(name)
    loss = m.loss(params, seed=SEED, **inputs)
    assert type(loss) is float
    want = m.loss_and_grad(params, seed=SEED, **inputs)[0]
    assert loss == pytest.approx(want, rel=1e-15, abs=0)


NORM_DROP = """
model norm_drop
input  x : f64[B, 3]
input  t : f64[B, 4]
layer  fc = dense(3 -> 4)
layer  bn = batchnorm(4)
layer  drop = dropout(0.3)
h      = x |> fc |> bn |> tanh |> drop
output o = h
loss   = mse(h, t)
"""


def test_hvp_with_batchnorm_and_dropout_is_seeded():
    """Train mode: batch statistics (so x's rows interact) and a dropout mask from seed."""
    m = gradc.compile_string(NORM_DROP, name="norm_drop", dtype="f64", wrt=["x"])
    rng = np.random.default_rng(0)
    params = perturbed(m.init_params(0), seed=1)
    inputs = {"x": rng.standard_normal((4, 3)), "t": rng.standard_normal((4, 4))}
    hv = check_hvp(m, params, inputs, direction_seed=2, label="norm_drop")
    v = scaled_direction({**params, "x": inputs["x"]}, 2)
    again = m.hvp(params, v, seed=SEED, **inputs)
    assert all(np.array_equal(again[k], hv[k]) for k in hv)        # the same mask
    other = m.hvp(params, v, seed=SEED + 1, **inputs)
    assert not all(np.array_equal(other[k], hv[k]) for k in hv)    # another mask
    # loss is eval mode unless training=True, which is loss_and_grad's (and hvp's) mode
    assert m.loss(params, training=True, seed=SEED, **inputs) == m.loss_and_grad(
        params, seed=SEED, **inputs)[0] != m.loss(params, seed=SEED, **inputs)


# ---------------------------------------------------------------------- 2. jacobian
SMALL_MLP = """
model small_mlp
input  x : f64[B, 3]
input  y : i64[B]
param  W1 : f64[3, 6] ~ glorot_uniform
param  b1 : f64[6]    ~ zeros
param  W2 : f64[6, 4] ~ glorot_uniform
param  b2 : f64[4]    ~ zeros
h      = tanh(x @ W1 + b1)
output hidden = h
output out = h @ W2 + b2
output s = sum(out ^ 2)
loss   = cross_entropy(out, y)
"""
B = 4


@functools.cache
def small_mlp() -> gradc.Model:
    return gradc.compile_string(SMALL_MLP, name="small_mlp", dtype="f64", wrt=["x"])


def small_mlp_values():
    rng = np.random.default_rng(7)
    params = perturbed(small_mlp().init_params(3), seed=4)
    inputs = {"x": rng.standard_normal((B, 3)), "y": rng.integers(0, 4, B)}
    return params, inputs


def small_mlp_torch(prm: dict, inp: dict) -> dict:
    h = torch.tanh(inp["x"] @ prm["W1"] + prm["b1"])
    out = h @ prm["W2"] + prm["b2"]
    return {"hidden": h, "out": out, "s": (out ** 2).sum()}


def cnn_torch(prm: dict, inp: dict) -> dict:
    h = F.max_pool2d(F.relu(F.conv2d(inp["x"], prm["conv1.W"], prm["conv1.b"], padding=1)), 2)
    h = F.max_pool2d(F.relu(F.conv2d(h, prm["conv2.W"], prm["conv2.b"], padding=1)), 2)
    return {"logits": h.reshape(h.shape[0], -1) @ prm["fc.W"] + prm["fc.b"]}


def torch_jacobian(fn, params: dict, inputs: dict, of: str, wrt: str) -> np.ndarray:
    prm = {k: torch.tensor(v) for k, v in params.items()}
    inp = {k: torch.tensor(v) for k, v in inputs.items()}
    where = prm if wrt in prm else inp

    def f(value):
        return fn({**prm, wrt: value} if where is prm else prm,
                  {**inp, wrt: value} if where is inp else inp)[of]
    return torch.autograd.functional.jacobian(f, where[wrt]).numpy()


def fd_jacobian(m, params: dict, inputs: dict, of: str, wrt: str, eps: float = 1e-6):
    """The Jacobian by central differences of forward, one element of wrt at a time."""
    where = params if wrt in params else inputs
    base = where[wrt]
    cols = []
    for k in range(base.size):
        outs = []
        for sign in (1, -1):
            moved = base.copy()
            moved.reshape(-1)[k] += sign * eps
            p = {**params, wrt: moved} if where is params else params
            i = {**inputs, wrt: moved} if where is inputs else inputs
            outs.append(np.asarray(m.forward(p, **i)[of]))
        cols.append((outs[0] - outs[1]) / (2 * eps))
    return np.stack(cols, axis=-1).reshape(np.shape(cols[0]) + base.shape)


class CountCalls:
    """Wraps the generated module's ``jvp`` and ``vjp`` (which ``jacobian`` calls) and
    counts the calls, to tell the branch taken."""

    def __init__(self, monkeypatch, module):
        self.calls = {"jvp": 0, "vjp": 0}
        for name in self.calls:
            monkeypatch.setattr(module, name, self._counting(name, getattr(module, name)))

    def _counting(self, name, fn):
        def wrapped(*args, **kwargs):
            self.calls[name] += 1
            return fn(*args, **kwargs)
        return wrapped


def _size(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


# (of, wrt): sizes with B = 4 — out 16, hidden 24, s 1; x 12, W1 18, b1 6, W2 24, b2 4
MLP_CASES = [("out", "x"),       # forward mode, wrt an input
             ("out", "b2"),      # forward mode
             ("hidden", "W2"),   # forward mode (equal sizes), an output that ignores wrt
             ("hidden", "x"),    # forward mode
             ("out", "W1"),      # reverse mode
             ("s", "W1"),        # reverse mode, a scalar output
             ("s", "x")]         # reverse mode, wrt an input


@pytest.mark.parametrize("of, wrt", MLP_CASES, ids=[f"{o}-{w}" for o, w in MLP_CASES])
def test_jacobian_small_mlp_matches_torch_and_finite_differences(of, wrt, monkeypatch):
    m = small_mlp()
    params, inputs = small_mlp_values()
    sig = m.signature
    of_shape = np.shape(m.forward(params, **inputs)[of])
    wrt_shape = (params if wrt in params else inputs)[wrt].shape
    calls = CountCalls(monkeypatch, m.module)
    jac = m.jacobian(params, of=of, wrt=wrt, **inputs)
    forward_mode = _size(wrt_shape) <= _size(of_shape)
    assert calls.calls == ({"jvp": _size(wrt_shape), "vjp": 0} if forward_mode
                           else {"jvp": 0, "vjp": _size(of_shape)}), calls.calls
    assert isinstance(jac, np.ndarray) and jac.dtype == np.float64
    assert jac.shape == of_shape + wrt_shape
    assert of_shape == tuple(B if isinstance(d, str) else d for d in sig["outputs"][of][1])
    want = torch_jacobian(small_mlp_torch, params, inputs, of, wrt)
    assert want.shape == jac.shape
    assert rel_err(jac, want, floor=1e-12) <= TORCH_RTOL, (of, wrt)
    if of == "hidden" and wrt == "W2":
        assert not np.any(jac)
    assert rel_err(jac, fd_jacobian(m, params, inputs, of, wrt), floor=1e-9) <= FD_RTOL


@pytest.mark.parametrize("wrt", ["fc.b", "x"])     # 10 < 30: forward mode; 192 > 30: reverse
def test_jacobian_cnn_matches_torch(wrt, monkeypatch):
    m, params, inputs = example_case("cnn")       # compiled with wrt=["x"]
    calls = CountCalls(monkeypatch, m.module)
    jac = m.jacobian(params, of="logits", wrt=wrt, **inputs)
    wrt_shape = (params if wrt in params else inputs)[wrt].shape
    assert jac.shape == (3, 10) + wrt_shape
    assert calls.calls == ({"jvp": 10, "vjp": 0} if wrt == "fc.b" else {"jvp": 0, "vjp": 30})
    want = torch_jacobian(cnn_torch, params, {"x": inputs["x"]}, "logits", wrt)
    assert rel_err(jac, want, floor=1e-12) <= TORCH_RTOL


def test_jacobian_of_a_model_without_batch_dims():
    """quadratic has no output: it has no jacobian; sigmoid_neuron's scalar output f wrt the
    input x [2] (reverse mode) and the scalar param b (forward mode): f' = f (1 - f)."""
    assert not example("quadratic").supports("jacobian")
    m = example("sigmoid_neuron")
    params = {"w": np.array([2.0, -3.0]), "b": np.array(-3.0)}
    x = np.array([-1.0, -2.0])
    f = float(m.forward(params, x=x)["f"])
    df = f * (1 - f)
    jx = m.jacobian(params, of="f", wrt="x", x=x)
    jb = m.jacobian(params, of="f", wrt="b", x=x)
    assert jx.shape == (2,) and jb.shape == ()
    np.testing.assert_allclose(jx, df * params["w"], rtol=1e-13)
    np.testing.assert_allclose(jb, df, rtol=1e-13)


# ---------------------------------------------------------------------- 3. bad names
def test_jacobian_and_hvp_reject_unknown_names():
    m = small_mlp()
    params, inputs = small_mlp_values()
    with pytest.raises(ValueError, match="'nope'"):
        m.jacobian(params, of="nope", wrt="W1", **inputs)
    with pytest.raises(ValueError, match="'W1'"):            # a param is not an output
        m.jacobian(params, of="W1", wrt="W1", **inputs)
    with pytest.raises(ValueError, match="'nope'"):
        m.jacobian(params, of="out", wrt="nope", **inputs)
    with pytest.raises(ValueError, match="'y'"):             # an integer input: no wrt
        m.jacobian(params, of="out", wrt="y", **inputs)
    with pytest.raises(ValueError, match="'nope'"):
        m.hvp(params, {"nope": np.zeros(3)}, **inputs)
    with pytest.raises(ValueError, match="'y'"):
        m.hvp(params, {"y": np.zeros(B)}, **inputs)
    plain = gradc.compile_string(SMALL_MLP, name="small_mlp", dtype="f64")   # no wrt
    with pytest.raises(ValueError, match="'x'"):
        plain.jacobian(params, of="out", wrt="x", **inputs)
    with pytest.raises(ValueError, match="'x'"):
        plain.hvp(params, {"x": inputs["x"]}, **inputs)


def test_hvp_missing_vector_keys_are_zero():
    m = small_mlp()
    params, inputs = small_mlp_values()
    v = scaled_direction({"W1": params["W1"]}, 0)
    full = {k: np.zeros_like(a) for k, a in {**params, "x": inputs["x"]}.items()} | v
    np.testing.assert_equal(m.hvp(params, v, **inputs), m.hvp(params, full, **inputs))
    assert not any(np.any(a) for a in m.hvp(params, {}, **inputs).values())


# ---------------------------------------------------------------------- 4. the module
def test_module_functions_give_the_model_methods_results():
    m = small_mlp()
    params, inputs = small_mlp_values()
    mod = m.module
    assert mod.loss(params, **inputs) == m.loss(params, **inputs)
    v = scaled_direction({**params, "x": inputs["x"]}, 1)
    np.testing.assert_equal(mod.hvp(params, v, **inputs), m.hvp(params, v, **inputs))
    for of, wrt in (("out", "x"), ("out", "W1")):
        np.testing.assert_array_equal(mod.jacobian(params, of=of, wrt=wrt, **inputs),
                                      m.jacobian(params, of=of, wrt=wrt, **inputs))
    check_hvp(m, params, inputs, direction_seed=1, label="small_mlp")


def test_hvp_is_symmetric():
    """<w, H v> == <v, H w> over params and the wrt input (the Hessian is symmetric)."""
    m = small_mlp()
    params, inputs = small_mlp_values()
    leaves = {**params, "x": inputs["x"]}
    v, w = scaled_direction(leaves, 2), scaled_direction(leaves, 3)
    hv, hw = m.hvp(params, v, **inputs), m.hvp(params, w, **inputs)
    left = sum(float(np.sum(w[k] * hv[k])) for k in leaves)
    right = sum(float(np.sum(v[k] * hw[k])) for k in leaves)
    assert left == pytest.approx(right, rel=1e-12)
