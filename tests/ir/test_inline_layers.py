"""Parameterless layer kinds written inline (docs/language.md "Layers"): ``maxpool2d(k)``,
``avgpool2d(k)`` and ``dropout(p)`` wherever a layer goes, without a declaration
(``conv >> relu >> maxpool2d(2)``, ``h |> maxpool2d(2)``, ``maxpool2d(h, 2)``), checked
against PyTorch in float64 and against the same model with declared layers; a kind that
owns params is refused with a located error.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradc
from gradc.errors import GradcError
from gradc.pipeline import Options, front
from gradc.source import Source

from tests.harness.oracles import rel_err

INLINE = """
input x : f64[N, 2, 8, 8]
input w : f64[N, 3, 2, 2]
layer conv = conv2d(2 -> 3, 3, pad=1)
layer net = conv >> relu >> maxpool2d(2)
output y = x |> net |> avgpool2d(kernel_size=3, stride=1) |> dropout(0.5)
output z = avgpool2d(x, 2)
loss = sum(y * w)
"""

DECLARED = """
input x : f64[N, 2, 8, 8]
input w : f64[N, 3, 2, 2]
layer conv = conv2d(2 -> 3, 3, pad=1)
layer mp = maxpool2d(2)
layer ap = avgpool2d(kernel_size=3, stride=1)
layer ap2 = avgpool2d(2)
layer drop = dropout(0.5)
layer net = conv >> relu >> mp
output y = x |> net |> ap |> drop
output z = ap2(x)
loss = sum(y * w)
"""


def numpy_model(src: str, name: str) -> gradc.Model:
    return gradc.compile_string(src, name=name, target="numpy", dtype="f64")


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(11)
    m = numpy_model(INLINE, "inline")
    p = {k: rng.standard_normal(v.shape) for k, v in m.init_params(0).items()}
    data = {"x": rng.standard_normal((2, 2, 8, 8)), "w": rng.standard_normal((2, 3, 2, 2))}
    return m, p, data


def test_inline_pools_against_torch(case):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    m, p, data = case
    prm = {k: torch.tensor(v, requires_grad=True) for k, v in p.items()}
    x = torch.tensor(data["x"])

    def y_of(prm):
        h = F.max_pool2d(F.relu(F.conv2d(x, prm["conv.W"], prm["conv.b"], padding=1)), 2)
        return F.avg_pool2d(h, 3, stride=1)

    outs = m.forward(p, x=data["x"])      # eval mode: dropout is the identity
    y = y_of(prm)
    assert rel_err(outs["y"], y.detach().numpy()) < 1e-12
    assert rel_err(outs["z"], F.avg_pool2d(x, 2).numpy()) < 1e-12
    # loss_and_grad trains: dropout(0.5) keeps an element as 2x or zeroes it; the mask is
    # recovered from gradc's own forward (training=True) with the same seed
    train = m.forward(p, x=data["x"], training=True, seed=3)["y"]
    ratio = np.divide(train, outs["y"], out=np.zeros_like(train), where=outs["y"] != 0)
    assert set(np.round(ratio[outs["y"] != 0], 12)) <= {0.0, 2.0}
    mask = torch.tensor(ratio)
    loss = torch.sum(y * mask * torch.tensor(data["w"]))
    loss.backward()
    got_loss, grads = m.loss_and_grad(p, seed=3, **data)
    assert rel_err(got_loss, loss.item()) < 1e-12
    for k in p:
        assert rel_err(grads[k], prm[k].grad.numpy()) < 1e-12, k


def test_inline_equals_declared(case):
    m, p, data = case
    d = numpy_model(DECLARED, "declared")
    assert list(d.init_params(0)) == list(p) == ["conv.W", "conv.b"]
    for mode in ({}, {"training": True, "seed": 5}):
        a, b = m.forward(p, x=data["x"], **mode), d.forward(p, x=data["x"], **mode)
        np.testing.assert_array_equal(a["z"], b["z"])
        if not mode:
            np.testing.assert_array_equal(a["y"], b["y"])
    # the masks are drawn per dropout name: compare the gradients with dropout left out
    src = [s.replace(" |> dropout(0.5)", "").replace(" |> drop", "") for s in (INLINE, DECLARED)]
    ma, mb = numpy_model(src[0], "inline_nodrop"), numpy_model(src[1], "declared_nodrop")
    (la, ga), (lb, gb) = ma.loss_and_grad(p, **data), mb.loss_and_grad(p, **data)
    assert la == lb
    for k in p:
        np.testing.assert_array_equal(ga[k], gb[k])


def test_each_inline_dropout_draws_its_own_mask():
    """Two inline dropouts (and one in each instance of a repeated block) are separate
    noise inputs: their masks differ."""
    src = """
input x : f64[B, 64]
block drop(n) {
    fn forward(h) = h |> dropout(0.5)
}
layer t = repeat(drop(64), 2)
output a = x |> dropout(0.5)
output b = x |> dropout(0.5)
output c = x |> t
"""
    m = numpy_model(src, "drops")
    noise = m.signature["noise"]
    assert len(noise) == 4 and sum(k.startswith("t.0.") for k in noise) == 1 \
        and sum(k.startswith("t.1.") for k in noise) == 1, noise
    x = np.ones((2, 64))
    out = m.forward({}, x=x, training=True, seed=1)
    assert set(np.unique(out["a"])) <= {0.0, 2.0} and set(np.unique(out["c"])) <= {0.0, 4.0}
    assert not np.array_equal(out["a"], out["b"])
    np.testing.assert_array_equal(m.forward({}, x=x)["c"], x)   # eval: the identity


@pytest.mark.parametrize("src, message", [
    ("input x : f32[B, 4]\noutput y = x |> relu >> dense(4 -> 2)\n",
     "m.grad:2:25: error: dense owns params, so it cannot be written inline: declare it: "
     "layer NAME = dense(...)\n"
     "  output y = x |> relu >> dense(4 -> 2)\n"
     "                          ^^^^^\n"
     "  hint: then apply it by its name, e.g. x |> NAME; kinds usable inline: maxpool2d, "
     "avgpool2d, dropout"),
    ("input x : f32[B, 1, 4, 4]\noutput y = maxpool2d(2)\n",
     "m.grad:2:12: error: maxpool2d(...) written inline is applied to a value: "
     "x |> maxpool2d(...) or maxpool2d(x, ...)\n"
     "  output y = maxpool2d(2)\n"
     "             ^^^^^^^^^^^^"),
    ("input x : f32[B, 1, 4, 4]\noutput y = x |> maxpool2d(0)\n",
     "m.grad:2:27: error: maxpool2d(): expected a positive integer, got 0\n"
     "  output y = x |> maxpool2d(0)\n"
     "                            ^"),
    ("input x : f32[B, 4]\noutput y = x |> dropout(1.5)\n",
     "m.grad:2:25: error: dropout(): p must be in [0, 1], got 1.5\n"
     "  output y = x |> dropout(1.5)\n"
     "                          ^^^\n"
     "  hint: p is the probability of zeroing an element"),
])
def test_inline_errors(src, message):
    with pytest.raises(GradcError) as info:
        front(Source(src, "m.grad"), Options.make())
    assert str(info.value) == message + "\n\n1 error"
