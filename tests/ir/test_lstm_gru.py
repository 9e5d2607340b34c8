"""``lstm`` and ``gru`` layers against ``torch.nn.LSTM``/``torch.nn.GRU`` in float64 through
every entry (tests/harness/layer_checks.py): PyTorch's equations, gate order and zero
initial state, on the numpy target, the CPU target and the CUDA simulator."""

from __future__ import annotations

import numpy as np
import pytest

import gradc
from tests.harness import sim_models
from tests.harness.layer_checks import check_entries, same_numbers

torch = pytest.importorskip("torch")

MODEL = """
model {kind}m
input x : f64[B, T, 3]
layer r = {kind}(3 -> 4)
hs = r(x)
output o = hs
loss = sum(tanh(hs) * hs) + sum(hs[:, -1, :])
"""


def _torch_layer(kind: str, name: str, sizes: tuple = (3, 4)):
    """``torch.nn.LSTM``/``GRU`` run on gradc's params of layer ``name``: x -> every h_t."""
    net = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(*sizes, batch_first=True)
    net = net.double()
    gates = (4 if kind == "lstm" else 3) * sizes[1]

    def run(p, x):
        bias_ih = p[f"{name}.b"] if kind == "lstm" else p[f"{name}.bx"]
        bias_hh = torch.zeros(gates, dtype=torch.float64) if kind == "lstm" else \
            p[f"{name}.bh"]
        weights = {"weight_ih_l0": p[f"{name}.Wx"].T, "weight_hh_l0": p[f"{name}.Wh"].T,
                   "bias_ih_l0": bias_ih, "bias_hh_l0": bias_hh}
        return torch.func.functional_call(net, weights, (x,))[0]
    return run


def _torch_fn(kind: str):
    run = _torch_layer(kind, "r")
    return lambda p, inp: {"o": run(p, inp["x"])}


def _loss(o, inp):
    return sum((torch.tanh(hs) * hs).sum() + hs[:, -1].sum() for hs in o.values())


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


#: both layers, the gru reading the lstm's states: one model for the slower targets
STACKED = """
model stacked
input x : f64[B, T, 3]
layer r = lstm(3 -> 4)
layer q = gru(4 -> 3)
h1 = r(x)
h2 = q(h1)
output o1 = h1
output o2 = h2
loss = sum(tanh(h1) * h1) + sum(h1[:, -1, :]) + sum(tanh(h2) * h2) + sum(h2[:, -1, :])
"""


def _stacked_torch():
    lstm, gru = _torch_layer("lstm", "r"), _torch_layer("gru", "q", (4, 3))

    def fn(p, inp):
        h1 = lstm(p, inp["x"])
        return {"o1": h1, "o2": gru(p, h1)}
    return fn


@pytest.mark.slow
def test_cpu_target_matches_the_numpy_target():
    """The CPU target (each body an njit function called per step) on the training path
    (forward, loss_and_grad, train_step) against the numpy target's numbers, which match
    torch's (above); the CPU's jvp, vjp and hvp of loop bodies are those of
    tests/ir/test_scan.py (one printer for every body), skipped here for their Numba
    compile time (minutes)."""
    cpu = gradc.compile_string(STACKED, "stacked", target="cpu")
    assert cpu.tier("train_step") == "numba"
    ref = gradc.compile_string(STACKED, "stacked", target="numpy")
    rng = np.random.default_rng(41)
    params = {k: rng.standard_normal(np.shape(v)) * 0.5
              for k, v in cpu.init_params(0).items()}
    inputs = {"x": rng.standard_normal((2, 4, 3))}
    check_entries(ref, _stacked_torch(), params, inputs, (), 41, 1e-12, _loss)
    same_numbers(cpu, ref, params, inputs, 42,
                 entries=("forward", "loss_and_grad", "train_step"))


@pytest.mark.slow
def test_cuda_simulator_matches_cpu():
    """The CUDA target (the loops on the host, each body's kernels launched per step)
    under the simulator against the CPU target: every entry, float32 and float64
    (tests/harness/sim_models.py)."""
    pytest.importorskip("numba_cuda", reason="numba-cuda is not installed")
    res = sim_models.run({"stacked.grad": STACKED}, {"B": 2, "T": 3})
    assert not res["failures"], "\n".join(res["failures"])
    assert res["checks"] > 50, res
