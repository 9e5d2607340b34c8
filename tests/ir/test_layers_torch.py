"""Every layer, normalisation and loss against PyTorch (``torch.nn.functional``) in float64.

Each case is one small model (one or a few layers, an output each; a big model would cost far
more Numba compile time than several small ones): ``forward`` must equal PyTorch's outputs and
``loss_and_grad`` of ``loss = sum(o1 * w_o1) + sum(o2 * w_o2) + ...`` (random weight inputs
``w_*``) must equal PyTorch's loss and its autograd gradients for every param and every float
input (all in ``wrt``), to 1e-8 relative (norm-wise). Params are drawn at random (not the
layer's initialiser, so that ``gamma``/``beta``/biases are not trivially ones and zeros).

``batchnorm`` and ``dropout`` are stateful and have their own model and tests: batch
statistics in train mode, the running statistics updated by ``train_step`` (PyTorch's
momentum-0.1 update with the unbiased variance) and used by ``forward(training=False)``; the
dropout mask cannot match PyTorch's RNG, so its output is checked against ``x * mask / (1-p)``
with the mask recovered from the output.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass
from collections.abc import Callable

import numpy as np
import pytest

import gradc
from gradc.pipeline import Options, front
from gradc.source import Source

from tests.harness.oracles import rel_err

pytestmark = pytest.mark.slow  # (every test here takes more than a few seconds)

torch = pytest.importorskip("torch")
F = torch.nn.functional

TOL = 1e-8
B = 4


# ---------------------------------------------------------------------- the cases
@dataclass(frozen=True)
class Case:
    """One model: ``src`` declares inputs, layers and outputs (no loss: the test adds the
    weights ``w_<output>`` and the loss); ``make(rng)`` draws the inputs; ``torch_fn(prm, inp)``
    computes the outputs from torch tensors (params ``prm`` by gradc name, inputs ``inp``)."""

    name: str
    src: str
    make: Callable
    torch_fn: Callable
    param_scale: float = 0.5


def _n(rng, *shape, lo=None, hi=None):
    if lo is not None:
        return rng.uniform(lo, hi, shape)
    return rng.standard_normal(shape)


def _dense_torch(prm, inp):
    return {"o": F.linear(inp["x"], prm["fc.W"].T, prm["fc.b"]),
            "o3": F.linear(inp["x3"], prm["fc.W"].T, prm["fc.b"]),
            "on": F.linear(inp["xn"], prm["fcn.W"].T)}


def _conv_torch(prm, inp):
    return {"o1": F.conv2d(inp["x"], prm["c1.W"], prm["c1.b"], stride=2, padding=1),
            "o2": F.conv2d(inp["x2"], prm["c2.W"], prm["c2.b"]),
            "o3": F.conv2d(inp["x3"], prm["c3.W"], prm["c3.b"], stride=3, padding=2)}


def _pool_torch(prm, inp):
    return {"mp": F.max_pool2d(inp["a"], 2),
            "mp3": F.max_pool2d(inp["b"], 3, stride=2),
            "mp7": F.max_pool2d(inp["c"], 2),
            "ap": F.avg_pool2d(inp["d"], 2),
            "ap3": F.avg_pool2d(inp["e"], 3, stride=2),
            "ap13": F.avg_pool2d(inp["f"], 1, stride=3)}


def _ln_torch(prm, inp):
    return {"o": F.layer_norm(inp["x"], (5,), prm["ln.gamma"], prm["ln.beta"], eps=1e-5),
            "o2": F.layer_norm(inp["x2"], (5,), prm["ln.gamma"], prm["ln.beta"], eps=1e-5),
            "z": F.layer_norm(inp["x2"], (5,), eps=1e-5) * inp["s"]}


def _emb_torch(prm, inp):
    return {"o": F.embedding(inp["idx"], prm["emb.W"]),
            "o1": F.embedding(inp["idx1"], prm["emb.W"]) * inp["s"]}


def _rnn_torch(prm, inp):
    rnn = torch.nn.RNN(3, 4, batch_first=True, nonlinearity="tanh").double()
    weights = {"weight_ih_l0": prm["rn.Wx"].T, "weight_hh_l0": prm["rn.Wh"].T,
               "bias_ih_l0": prm["rn.b"], "bias_hh_l0": torch.zeros(4, dtype=torch.float64)}
    out, h_last = torch.func.functional_call(rnn, weights, (inp["x"],))
    assert torch.equal(out[:, -1], h_last[0])
    return {"o": out, "last": out[:, -1, :]}


def attention_reference(x, wq, wk, wv, wo, heads):
    """Multi-head self-attention written out: per head softmax(Q K^T / sqrt(d)) V."""
    b, t, dim = x.shape
    d = dim // heads

    def split(w):
        return (x @ w).reshape(b, t, heads, d).permute(0, 2, 1, 3)        # B, h, T, d
    q, k, v = split(wq), split(wk), split(wv)
    att = torch.softmax(q @ k.transpose(-1, -2) / d ** 0.5, dim=-1)
    ctx = (att @ v).permute(0, 2, 1, 3).reshape(b, t, dim)
    return ctx @ wo


def _att_torch(prm, inp):
    w = [prm[f"at.W{c}"] for c in "qkvo"]
    return {"o": attention_reference(inp["x"], *w, heads=2)}


def _softmax_torch(prm, inp):
    z, z3 = inp["z"], inp["z3"]
    return {"sm": F.softmax(z, dim=-1), "sm0": F.softmax(z, dim=0),
            "lsm": F.log_softmax(z, dim=-1), "lsm3": F.log_softmax(z3, dim=1),
            "lse": torch.logsumexp(z, dim=-1), "lse3": torch.logsumexp(z3, dim=(0, 2)),
            "lse_all": torch.logsumexp(z.reshape(-1), dim=0),
            "lse_keep": torch.logsumexp(z3, dim=1, keepdim=True)}


def _loss_torch(prm, inp):
    z, y, t, s = inp["z"], inp["y"], inp["t"], inp["s"]
    C = z.shape[-1]
    mm = dict(p=1, margin=1.0)
    return {
        "ce": F.cross_entropy(z, y),
        "ce_sum": F.cross_entropy(z, y, reduction="sum"),
        "ce_prob": F.cross_entropy(z, t),
        "ce_prob_sum": F.cross_entropy(z, t, reduction="sum"),
        "ce3": F.cross_entropy(inp["z3"].permute(0, 2, 1), inp["y3"]),
        "bce": F.binary_cross_entropy_with_logits(inp["zb"], inp["tb"]),
        "bce_sum": F.binary_cross_entropy_with_logits(inp["zb"], inp["tb"], reduction="sum"),
        "l_mse": F.mse_loss(inp["p"], inp["q"]),
        "mse_sum": F.mse_loss(inp["p"], inp["q"], reduction="sum"),
        # CS231n's hinge sums over the classes; torch's multi_margin_loss divides by C
        "l_hinge": C * F.multi_margin_loss(s, y, **mm),
        "hinge2": C * F.multi_margin_loss(s, y, p=1, margin=2.0),
        "hinge2_sum": C * F.multi_margin_loss(s, y, p=1, margin=2.0, reduction="sum"),
    }


def _hinge_scores(rng, y, n=5, gap=1e-2):
    """Scores whose hinge terms s_j - s_y + margin (margins 1 and 2) avoid the kink 0."""
    while True:
        s = rng.uniform(-2, 2, (B, n))
        sy = np.take_along_axis(s, y[:, None], 1)
        other = np.arange(n) != y[:, None]
        if all(np.all(np.abs((s - sy + m)[other]) > gap) for m in (1.0, 2.0)):
            return s


def _loss_inputs(rng):
    y = rng.integers(0, 5, B)
    t = rng.uniform(0.05, 1, (B, 5))
    return dict(z=_n(rng, B, 5), y=y, t=t / t.sum(-1, keepdims=True), z3=_n(rng, B, 2, 5),
                y3=rng.integers(0, 5, (B, 2)), zb=_n(rng, B, 3, lo=-4, hi=4),
                tb=_n(rng, B, 3, lo=0, hi=1), p=_n(rng, B, 3), q=_n(rng, B, 3),
                s=_hinge_scores(rng, y))


def _emb_inputs(rng):
    idx = rng.integers(0, 7, (B, 3))
    idx[1, 2] = idx[0, 0] = 3                    # a repeated index: gradients scatter-add
    return dict(idx=idx, idx1=rng.integers(0, 7, B), s=_n(rng, B, 4))


CASES = [
    Case("dense", """
input x : f64[B, 4]
input x3 : f64[B, 2, 4]
input xn : f64[B, 4]
layer fc = dense(4 -> 3)
layer fcn = dense(4 -> 2, bias=false)
output o = fc(x)
output o3 = x3 |> fc
output on = fcn(xn)
""", lambda rng: dict(x=_n(rng, B, 4), x3=_n(rng, B, 2, 4), xn=_n(rng, B, 4)), _dense_torch),
    Case("conv2d", """
input x : f64[B, 2, 7, 7]
input x2 : f64[B, 2, 5, 6]
input x3 : f64[B, 1, 7, 7]
layer c1 = conv2d(2 -> 3, 3, stride=2, pad=1)
layer c2 = conv2d(2 -> 2, 2)
layer c3 = conv2d(1 -> 2, 3, stride=3, pad=2)
output o1 = c1(x)
output o2 = c2(x2)
output o3 = c3(x3)
""", lambda rng: dict(x=_n(rng, B, 2, 7, 7), x2=_n(rng, B, 2, 5, 6), x3=_n(rng, B, 1, 7, 7)),
         _conv_torch),
    Case("pool2d", """
input a : f64[B, 3, 6, 6]
input b : f64[B, 2, 7, 7]
input c : f64[B, 2, 7, 7]
input d : f64[B, 3, 6, 6]
input e : f64[B, 2, 7, 7]
input f : f64[B, 2, 7, 7]
layer mpool = maxpool2d(2)
layer mpool3 = maxpool2d(3, stride=2)
layer apool = avgpool2d(2)
layer apool3 = avgpool2d(3, stride=2)
layer apool13 = avgpool2d(1, stride=3)
output mp = mpool(a)
output mp3 = mpool3(b)
output mp7 = mpool(c)
output ap = apool(d)
output ap3 = apool3(e)
output ap13 = apool13(f)
""", lambda rng: {k: rng.permutation(np.prod(s)).reshape(s) / 10.0 + _n(rng, *s) * 1e-3
                  for k, s in dict(a=(B, 3, 6, 6), b=(B, 2, 7, 7), c=(B, 2, 7, 7),
                                   d=(B, 3, 6, 6), e=(B, 2, 7, 7), f=(B, 2, 7, 7)).items()},
         _pool_torch),
    Case("layernorm", """
input x : f64[B, 3, 5]
input x2 : f64[B, 5]
input s : f64[5]
layer ln = layernorm(5)
output o = ln(x)
output o2 = x2 |> ln
c = x2 - mean(x2, axis=-1, keepdims=true)
output z = c / sqrt(mean(c ^ 2, axis=-1, keepdims=true) + 1e-5) * s
""", lambda rng: dict(x=_n(rng, B, 3, 5) * 3 + 1, x2=_n(rng, B, 5), s=_n(rng, 5)), _ln_torch),
    Case("embedding", """
input idx : i64[B, 3]
input idx1 : i64[B]
input s : f64[B, 4]
layer emb = embedding(7 -> 4)
output o = emb(idx)
output o1 = (idx1 |> emb) * s
""", _emb_inputs, _emb_torch),
    Case("rnn", """
input x : f64[B, 5, 3]
layer rn = rnn(3 -> 4)
h = rn(x)
output o = h
output last = h[:, -1, :]
""", lambda rng: dict(x=_n(rng, B, 5, 3)), _rnn_torch),
    Case("attention", """
input x : f64[B, 4, 6]
layer at = attention(6, 2)
output o = at(x)
""", lambda rng: dict(x=_n(rng, B, 4, 6)), _att_torch),
    Case("softmax", """
input z : f64[B, 5]
input z3 : f64[B, 3, 4]
output sm = softmax(z)
output sm0 = softmax(z, axis=0)
output lsm = log_softmax(z)
output lsm3 = log_softmax(z3, axis=1)
output lse = logsumexp(z, axis=-1)
output lse3 = logsumexp(z3, axis=(0, 2))
output lse_all = logsumexp(z)
output lse_keep = logsumexp(z3, axis=1, keepdims=true)
""", lambda rng: dict(z=_n(rng, B, 5) * 2, z3=_n(rng, B, 3, 4) * 2), _softmax_torch),
    Case("losses", """
input z : f64[B, 5]
input y : i64[B]
input t : f64[B, 5]
input z3 : f64[B, 2, 5]
input y3 : i64[B, 2]
input zb : f64[B, 3]
input tb : f64[B, 3]
input p : f64[B, 3]
input q : f64[B, 3]
input s : f64[B, 5]
output ce = cross_entropy(z, y)
output ce_sum = cross_entropy(z, y, reduction="sum")
output ce_prob = cross_entropy(z, t)
output ce_prob_sum = cross_entropy(z, t, reduction="sum")
output ce3 = cross_entropy(z3, y3)
output bce = binary_cross_entropy(zb, tb)
output bce_sum = binary_cross_entropy(zb, tb, reduction="sum")
output l_mse = mse(p, q)
output mse_sum = mse(p, q, reduction="sum")
output l_hinge = hinge(s, y)
output hinge2 = hinge(s, y, margin=2)
output hinge2_sum = hinge(s, y, margin=2, reduction="sum")
""", _loss_inputs, _loss_torch),
]


def _dims_text(shape) -> str:
    return ", ".join(str(int(d)) if d.is_Integer else d.name for d in shape)


def with_loss(src: str, name: str) -> tuple[str, list[str], list[str]]:
    """``src`` plus a weight input per output and the loss; the output names and the float
    input names (the ``wrt`` list)."""
    graph, _ = front(Source(src, f"{name}.grad"), Options.make(dtype="f64"))
    outs = list(graph.outputs)
    wrt = [k for k, n in graph.inputs.items() if n.is_float]
    lines = [f"input w_{o} : f64" + (f"[{_dims_text(n.shape)}]" if n.shape else "")
             for o, n in graph.outputs.items()]
    loss = "loss = " + " + ".join(f"sum({o} * w_{o})" for o in outs)
    return f"model {name}\n{src}\n" + "\n".join(lines) + f"\n{loss}\n", outs, wrt


@dataclass
class Run:
    """A compiled case with its values and PyTorch's results."""

    model: object
    outs: list
    wrt: list
    params: dict
    inputs: dict          # without the weights
    weights: dict
    t_outs: dict          # torch outputs (numpy)
    t_loss: float
    t_grads: dict         # torch gradients of the loss (numpy), params and wrt inputs


def to_torch(a, grad: bool):
    t = torch.tensor(np.asarray(a))
    return t.requires_grad_(grad and t.is_floating_point())


@functools.cache
def run(name: str) -> Run:
    case = {c.name: c for c in CASES}[name]
    text, outs, wrt = with_loss(case.src, name)
    model = gradc.compile_string(text, name=name, dtype="f64", wrt=wrt)
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    params = {k: np.ascontiguousarray(case.param_scale * rng.standard_normal(v.shape))
              for k, v in model.init_params(0).items()}
    inputs = {k: np.ascontiguousarray(v) for k, v in case.make(rng).items()}
    prm = {k: to_torch(v, True) for k, v in params.items()}
    inp = {k: to_torch(v, True) for k, v in inputs.items()}
    t_outs = case.torch_fn(prm, inp)
    assert set(t_outs) == set(outs), (sorted(t_outs), outs)
    weights = {f"w_{o}": rng.standard_normal(tuple(t_outs[o].shape)) for o in outs}
    t_loss = sum((t_outs[o] * torch.tensor(weights[f"w_{o}"])).sum() for o in outs)
    t_loss.backward()
    leaves = {**prm, **{k: inp[k] for k in wrt}}
    t_grads = {k: (v.grad.numpy() if v.grad is not None else np.zeros(v.shape))
               for k, v in leaves.items()}
    return Run(model, outs, wrt, params, inputs, weights,
               {k: v.detach().numpy() for k, v in t_outs.items()}, float(t_loss.detach()), t_grads)


CASE_IDS = [c.name for c in CASES]


@pytest.mark.parametrize("name", CASE_IDS)
def test_forward_matches_torch(name):
    r = run(name)
    got = r.model.forward(r.params, **r.inputs)
    errs = {o: rel_err(got[o], r.t_outs[o]) for o in r.outs}
    shapes = {o: (np.shape(got[o]), r.t_outs[o].shape) for o in r.outs
              if np.shape(got[o]) != r.t_outs[o].shape}
    assert not shapes, f"output shapes (gradc, torch): {shapes}"
    bad = {o: e for o, e in errs.items() if not e <= TOL}
    assert not bad, f"forward vs torch relative errors: {bad}"


@pytest.mark.parametrize("name", CASE_IDS)
def test_gradients_match_torch(name):
    r = run(name)
    loss, grads = r.model.loss_and_grad(r.params, **r.inputs, **r.weights)
    assert rel_err(loss, r.t_loss) <= TOL, (loss, r.t_loss)
    assert set(grads) == set(r.t_grads)
    errs = {k: rel_err(grads[k], r.t_grads[k], floor=1e-12) for k in r.t_grads}
    bad = {k: e for k, e in errs.items() if not e <= TOL}
    assert not bad, f"gradient vs torch relative errors: {bad}"


def test_attention_matches_torch_multi_head_attention_forward():
    """The hand-written reference is PyTorch's own multi-head attention (no biases)."""
    r = run("attention")
    x = torch.tensor(r.inputs["x"]).transpose(0, 1)                       # T, B, E
    w = {c: torch.tensor(r.params[f"at.W{c}"]) for c in "qkvo"}
    out, _ = F.multi_head_attention_forward(
        x, x, x, 6, 2, torch.cat([w["q"].T, w["k"].T, w["v"].T]), None, None, None, False,
        0.0, w["o"].T, None, training=False, need_weights=False)
    assert rel_err(out.transpose(0, 1).numpy(), r.t_outs["o"]) <= 1e-12


# ---------------------------------------------------------------------- batchnorm, dropout
P_DROP = 0.3
STATE_SRC = """
model norm_drop
input x2 : f64[B, 3]
input x4 : f64[B, 2, 3, 3]
input xd : f64[B, 60, 50]
input w2 : f64[B, 3]
input w4 : f64[B, 2, 3, 3]
input wd : f64[B, 60, 50]
layer bn1 = batchnorm(3)
layer bn2 = batchnorm(2)
layer drop = dropout(0.3)
output o2 = bn1(x2)
output o4 = bn2(x4)
output od = drop(xd)
loss = sum(o2 * w2) + sum(o4 * w4) + sum(od * wd)
"""


@functools.cache
def state_model():
    return gradc.compile_string(STATE_SRC, name="norm_drop", dtype="f64",
                                wrt=["x2", "x4", "xd"])


def _state_values(seed):
    rng = np.random.default_rng(seed)
    params = {"bn1.gamma": rng.uniform(0.5, 1.5, 3), "bn1.beta": rng.standard_normal(3),
              "bn2.gamma": rng.uniform(0.5, 1.5, 2), "bn2.beta": rng.standard_normal(2)}
    inputs = {"x2": rng.standard_normal((B, 3)) * 2 + 1,
              "x4": rng.standard_normal((B, 2, 3, 3)) * 3 - 1,
              "xd": rng.uniform(0.5, 1.5, (B, 60, 50)) * rng.choice([-1, 1], (B, 60, 50))}
    weights = {"w2": rng.standard_normal((B, 3)), "w4": rng.standard_normal((B, 2, 3, 3)),
               "wd": rng.standard_normal((B, 60, 50))}
    return params, inputs, weights


def _bn_torch(params, inputs, weights, training, running=None):
    """torch outputs and gradients of sum(o * w) for both batchnorms."""
    outs, grads = {}, {}
    for layer, x, w, o in (("bn1", "x2", "w2", "o2"), ("bn2", "x4", "w4", "o4")):
        g = to_torch(params[f"{layer}.gamma"], True)
        b = to_torch(params[f"{layer}.beta"], True)
        xt = to_torch(inputs[x], True)
        rm, rv = running[layer] if running else (None, None)
        out = F.batch_norm(xt, rm, rv, g, b, training=training, momentum=0.1, eps=1e-5)
        (out * torch.tensor(weights[w])).sum().backward()
        outs[o] = out.detach().numpy()
        grads.update({f"{layer}.gamma": g.grad.numpy(), f"{layer}.beta": b.grad.numpy(),
                      x: xt.grad.numpy()})
    return outs, grads


def test_batchnorm_train_mode_matches_torch():
    m = state_model()
    params, inputs, weights = _state_values(0)
    outs = m.forward(params, training=True, seed=1, **inputs)
    t_outs, t_grads = _bn_torch(params, inputs, weights, training=True)
    for o in ("o2", "o4"):
        assert rel_err(outs[o], t_outs[o]) <= TOL, o
    _, grads = m.loss_and_grad(params, seed=1, **inputs, **weights)
    bad = {k: rel_err(grads[k], v) for k, v in t_grads.items()
           if not rel_err(grads[k], v) <= TOL}
    assert not bad, f"batchnorm (train mode) gradients vs torch: {bad}"


def test_batchnorm_running_statistics_and_eval_mode_match_torch():
    m = state_model()
    m.reset_optimizer()
    params, inputs, weights = _state_values(1)
    running = {"bn1": (torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)),
               "bn2": (torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64))}
    for step in range(2):                        # two steps: the momentum accumulates
        _, batch, _ = _state_values(10 + step)
        m.train_step(params, lr=0.05, seed=step, **batch, **weights)
        for layer, x in (("bn1", "x2"), ("bn2", "x4")):
            F.batch_norm(torch.tensor(batch[x]), *running[layer], training=True,
                         momentum=0.1, eps=1e-5)
            for k, t in zip(("running_mean", "running_var"), running[layer]):
                got = m.state[f"buffer:{layer}.{k}"]
                assert rel_err(got, t.numpy()) <= TOL, (step, layer, k, got, t.numpy())
    # eval mode: the running statistics, forward and gradients (vjp runs in eval mode)
    outs = m.forward(params, **inputs)
    t_outs, t_grads = _bn_torch(params, inputs, weights, training=False, running=running)
    for o in ("o2", "o4"):
        assert rel_err(outs[o], t_outs[o]) <= TOL, o
    assert np.array_equal(outs["od"], inputs["xd"])          # dropout: identity in eval mode
    grads = m.vjp(params, {"o2": weights["w2"], "o4": weights["w4"]}, **inputs)
    bad = {k: rel_err(grads[k], v) for k, v in t_grads.items()
           if not rel_err(grads[k], v) <= TOL}
    assert not bad, f"batchnorm (eval mode) vjp vs torch: {bad}"


def test_dropout_mask_scaling_and_seed():
    m = state_model()
    params, inputs, weights = _state_values(2)
    x = inputs["xd"]
    od = m.forward(params, training=True, seed=7, **inputs)["od"]
    mask = od != 0
    keep = mask.mean()
    # a binomial of 12000 draws: 6 standard deviations is about 0.025
    assert abs(keep - (1 - P_DROP)) < 0.025, keep
    np.testing.assert_allclose(od, x * mask / (1 - P_DROP), rtol=1e-15, atol=0)
    # the same seed gives the same mask, another seed another one
    assert np.array_equal(m.forward(params, training=True, seed=7, **inputs)["od"], od)
    other = m.forward(params, training=True, seed=8, **inputs)["od"] != 0
    assert not np.array_equal(other, mask)
    # eval mode (the default) is the identity
    assert np.array_equal(m.forward(params, **inputs)["od"], x)
    assert np.array_equal(m.forward(params, training=False, seed=7, **inputs)["od"], x)
    # loss_and_grad with the same seed uses the same mask: torch's gradient of the same
    # masked function, x * mask / (1 - p)
    xt = to_torch(x, True)
    ref = xt * torch.tensor(mask) / (1 - P_DROP)
    (ref * torch.tensor(weights["wd"])).sum().backward()
    loss, grads = m.loss_and_grad(params, seed=7, **inputs, **weights)
    assert rel_err(grads["xd"], xt.grad.numpy()) <= TOL
    assert rel_err(grads["xd"], weights["wd"] * mask / (1 - P_DROP)) <= TOL
    o = m.forward(params, training=True, seed=7, **inputs)
    want = sum(float(np.sum(o[k] * weights[w])) for k, w in (("o2", "w2"), ("o4", "w4"),
                                                              ("od", "wd")))
    assert rel_err(loss, want) <= TOL
