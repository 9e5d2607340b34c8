"""``grad(s, v)`` inside a model (gradc/ir/derivatives.py), in float64 on the numpy target.

Every form of issue 23 (SPEC §1 "derivatives") is written twice, in the model language
and in PyTorch with ``autograd.grad(create_graph=True)``, and compared: the outputs holding
derivatives, the loss built from them and the params' gradients through them
(``loss_and_grad``), ``hvp`` (a third or fourth derivative), ``jacobian``, and one
``train_step``. Finite differences check ``loss_and_grad``, ``jvp`` and ``vjp`` without
torch. The CPU target's numbers are checked on one model (tests/codegen/numpy/test_target.py
holds the two targets together otherwise).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import gradc
from tests.harness import grad_models, seeds
from tests.harness.oracles import fd_check_jvp, fd_check_loss, fd_check_vjp, rel_err

torch = pytest.importorskip("torch")

TOL = 1e-12          # the same float64 function in torch, evaluated in another order

def _inputs(name, rng):
    if name == "oscillator":
        return {"t": rng.uniform(-1, 1, (7, 1))}
    if name == "poisson":
        return {"x": rng.uniform(0, 1, (6, 2))}
    return {"x": rng.normal(size=(5, 3)), "y": rng.integers(0, 3, 5)}


CASES = grad_models.CASES


@functools.cache
def compiled(name, target="numpy", wrt=()):
    return gradc.compile_string(CASES[name][0], name, target=target, wrt=wrt)


def _torch_run(name, params, inputs, wrt=()):
    """torch's outputs, loss and gradients (params, then the ``wrt`` inputs)."""
    _, fn, _ = CASES[name]
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    ti = {k: torch.tensor(v, requires_grad=v.dtype.kind == "f") for k, v in inputs.items()}
    outs, loss = fn(tp, *ti.values())
    leaves = [*tp.values(), *(ti[w] for w in wrt)]
    grads = torch.autograd.grad(loss, leaves, create_graph=True)
    return outs, loss, dict(zip([*tp, *wrt], grads)), tp, ti


def _np(t):
    return t.detach().numpy()


@pytest.mark.parametrize("name", sorted(CASES))
def test_values_and_gradients_match_torch(name):
    rng = np.random.default_rng(1)
    model = compiled(name)
    params, inputs = model.init_params(seed=2), _inputs(name, rng)
    outs, loss, grads, _, _ = _torch_run(name, params, inputs)
    got = model.forward(params, **inputs)
    assert set(got) == set(outs)
    for k in outs:
        assert rel_err(got[k], _np(outs[k])) <= TOL, k
    g_loss, g_grads = model.loss_and_grad(params, **inputs)
    assert rel_err(g_loss, loss.item()) <= TOL
    assert set(g_grads) == set(grads)
    for k in grads:
        assert rel_err(g_grads[k], _np(grads[k])) <= TOL, k


@pytest.mark.parametrize("name", sorted(CASES))
def test_hvp_and_input_gradient_match_torch(name):
    """hvp differentiates the gradient once more (fourth derivatives of the oscillator's
    net); the gradient with respect to the coordinates goes through every grad too."""
    rng = np.random.default_rng(3)
    var = CASES[name][2]
    model = compiled(name, wrt=(var,))
    params, inputs = model.init_params(seed=4), _inputs(name, rng)
    _, _, grads, tp, ti = _torch_run(name, params, inputs, wrt=(var,))
    vec = {k: rng.normal(size=np.shape(v)) for k, v in {**params, var: inputs[var]}.items()}
    leaves = [*tp.values(), ti[var]]
    dot = sum((grads[k] * torch.tensor(vec[k])).sum() for k in grads)
    want = dict(zip(grads, torch.autograd.grad(dot, leaves)))
    _, g_grads = model.loss_and_grad(params, **inputs)
    assert rel_err(g_grads[var], _np(grads[var])) <= TOL
    got = model.hvp(params, vec, **inputs)
    for k in want:
        assert rel_err(got[k], _np(want[k])) <= 1e-11, k


def test_jacobian_of_a_derivative_output_matches_torch():
    model = compiled("oscillator", wrt=("t",))
    params = model.init_params(seed=5)
    t = np.random.default_rng(6).uniform(-1, 1, (4, 1))
    tp = {k: torch.tensor(v) for k, v in params.items()}

    def d2(tt):
        return grad_models.oscillator_torch(tp, tt)[0]["d2"]
    want = torch.autograd.functional.jacobian(d2, torch.tensor(t, requires_grad=True))
    got = model.jacobian(params, of="d2", wrt="t", t=t)
    assert got.shape == (4, 1, 4, 1)
    assert rel_err(got, _np(want)) <= TOL
    got_w = model.jacobian(params, of="d1", wrt="W2", t=t)

    def d1(w2):
        t_leaf = torch.tensor(t, requires_grad=True)
        return grad_models.oscillator_torch({**tp, "W2": w2}, t_leaf)[0]["d1"]
    assert rel_err(got_w, _np(torch.autograd.functional.jacobian(d1, tp["W2"]))) <= TOL


@pytest.mark.parametrize("name", sorted(CASES))
def test_finite_differences(name):
    """Without torch: the loss's gradient, jvp and vjp of every derivative output against
    central differences of the compiled loss and forward."""
    rng = np.random.default_rng(7)
    var = CASES[name][2]
    model = compiled(name, wrt=(var,))
    params, inputs = model.init_params(seed=8), _inputs(name, rng)
    fd_check_loss(model, params, inputs, (var,), tol=1e-7, label=name)
    fd_check_jvp(model, params, inputs, (var,), tol=1e-7, label=name)
    for out in model.forward(params, **inputs):
        fd_check_vjp(model, params, inputs, (var,), output=out, tol=1e-7, label=name)


def test_train_step_descends_along_the_gradient_through_grad():
    model = compiled("poisson")
    params = model.init_params(seed=9)
    x = np.random.default_rng(10).uniform(0, 1, (6, 2))
    loss, grads = model.loss_and_grad(params, x=x)
    before = {k: v.copy() for k, v in params.items()}
    assert model.train_step(params, x=x, lr=0.01) == pytest.approx(loss, rel=1e-13)
    for k in params:
        np.testing.assert_allclose(params[k], before[k] - 0.01 * grads[k], rtol=1e-13,
                                   atol=1e-15)


def test_grad_with_respect_to_fn_argument_and_layer_param():
    """Inside a fn, v may be the fn's argument; a layer's param is named as ``fc.W``; a v
    that s does not depend on gives zeros (and a warning)."""
    src = """
input x : f64[B, 2]
layer fc = dense(2 -> 3)
fn slope(z) {
    e = sum(exp(z * 2))
    return grad(e, z)
}
output s = slope(x)
output gw = grad(sum(fc(x) ^ 2), fc.W)
output zero = grad(sum(x), fc.b)
"""
    model = gradc.compile_string(src, "fnarg", target="numpy")
    (warning,) = model.warnings
    assert "warning: grad(s, v): s does not depend on 'fc.b': the derivative is zeros" \
        in warning
    params = model.init_params(seed=11)
    x = np.random.default_rng(12).normal(size=(3, 2))
    out = model.forward(params, x=x)
    np.testing.assert_allclose(out["s"], 2 * np.exp(2 * x), rtol=1e-14)
    y = x @ params["fc.W"] + params["fc.b"]
    np.testing.assert_allclose(out["gw"], 2 * x.T @ y, rtol=1e-13)
    assert out["zero"].shape == (3,) and not out["zero"].any()


@pytest.mark.slow
def test_cpu_target_agrees_with_torch():
    """The Numba CPU target on the oscillator (third order): outputs, loss and gradients."""
    rng = np.random.default_rng(13)
    model = compiled("oscillator", target="cpu")
    params, inputs = model.init_params(seed=14), _inputs("oscillator", rng)
    outs, loss, grads, _, _ = _torch_run("oscillator", params, inputs)
    got = model.forward(params, **inputs)
    for k in outs:
        assert rel_err(got[k], _np(outs[k])) <= TOL, k
    g_loss, g_grads = model.loss_and_grad(params, **inputs)
    assert rel_err(g_loss, loss.item()) <= TOL
    for k in grads:
        assert rel_err(g_grads[k], _np(grads[k])) <= TOL, k


@pytest.mark.parametrize("i", range(8))
def test_random_models_with_nested_grad_match_torch(i):
    """Seeded random nets with chains of grad (tests/harness/grad_models.py) against torch."""
    m = grad_models.generate(seeds.seed(2300 + i))
    model = gradc.compile_string(m.text, f"fuzz{m.seed}", target="numpy")
    params = model.init_params(seed=m.seed)
    t = np.random.default_rng(m.seed).uniform(-1, 1, (5, m.k))
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    outs, loss = m.torch_outputs(tp, torch.tensor(t, requires_grad=True))
    grads = dict(zip(tp, torch.autograd.grad(loss, list(tp.values()))))
    got = model.forward(params, t=t)
    for k in outs:
        assert rel_err(got[k], _np(outs[k])) <= TOL, (k, m.text)
    g_loss, g_grads = model.loss_and_grad(params, t=t)
    assert rel_err(g_loss, loss.item()) <= TOL, m.text
    for k in grads:
        assert rel_err(g_grads[k], _np(grads[k])) <= 1e-11, (k, m.text)
