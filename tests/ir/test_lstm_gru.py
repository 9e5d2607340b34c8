"""``lstm`` and ``gru`` layers against ``torch.nn.LSTM``/``torch.nn.GRU`` in float64 through
every entry (numpy target; tests/harness/layer_checks.py): PyTorch's equations, gate order
and zero initial state."""

from __future__ import annotations

import numpy as np
import pytest

import gradc
from tests.harness.layer_checks import check_entries

torch = pytest.importorskip("torch")

MODEL = """
model {kind}m
input x : f64[B, T, 3]
layer r = {kind}(3 -> 4)
hs = r(x)
output o = hs
loss = sum(tanh(hs) * hs) + sum(hs[:, -1, :])
"""


def _torch_fn(kind: str):
    net = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(3, 4, batch_first=True).double()

    def fn(p, inp):
        bias_ih = p["r.b"] if kind == "lstm" else p["r.bx"]
        bias_hh = torch.zeros(16, dtype=torch.float64) if kind == "lstm" else p["r.bh"]
        weights = {"weight_ih_l0": p["r.Wx"].T, "weight_hh_l0": p["r.Wh"].T,
                   "bias_ih_l0": bias_ih, "bias_hh_l0": bias_hh}
        hs, _ = torch.func.functional_call(net, weights, (inp["x"],))
        return {"o": hs}
    return fn


def _loss(o, inp):
    hs = o["o"]
    return (torch.tanh(hs) * hs).sum() + hs[:, -1].sum()


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("steps", [1, 5])
def test_matches_torch(kind, steps):
    model = gradc.compile_string(MODEL.format(kind=kind), f"{kind}m", target="numpy")
    seed = 31 + steps
    rng = np.random.default_rng(seed)
    params = {k: rng.standard_normal(np.shape(v)) * 0.5
              for k, v in model.init_params(0).items()}
    x = rng.standard_normal((2, steps, 3))
    check_entries(model, _torch_fn(kind), params, {"x": x}, (), seed, 1e-12, _loss)


def test_param_layout():
    shapes = {k: v.shape for m in ("lstm", "gru") for k, v in gradc.compile_string(
        MODEL.format(kind=m), f"{m}p", target="numpy").init_params(0).items()
        for k in [f"{m}:{k}"]}
    assert shapes == {"lstm:r.Wx": (3, 16), "lstm:r.Wh": (4, 16), "lstm:r.b": (16,),
                      "gru:r.Wx": (3, 12), "gru:r.Wh": (4, 12), "gru:r.bx": (12,),
                      "gru:r.bh": (12,)}
