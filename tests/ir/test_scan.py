"""``scan(cell, xs, hidden)``: a user cell run over axis 1, against PyTorch loops and against
the same model unrolled by hand, through every entry (float64;
tests/harness/layer_checks.py) on the numpy target, the CPU target and the CUDA simulator,
and its errors."""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest

import gradc
from gradc.errors import ErrorGroup
from tests.harness import seeds, sim_models
from tests.harness.layer_checks import check_entries, same_numbers
from tests.harness.oracles import rel_err

torch = pytest.importorskip("torch")

CELL_FN = """
model sc
input x : f64[B, T, 3]
input y : f64[B, T, 4]
param Wx : f64[3, 4]
param Wh : f64[4, 4]
param b : f64[4]
param v : f64[4]
param a : f64
s = softplus(v)
fn cell(h, xt) {
    z = xt @ Wx + h @ Wh + b
    return tanh(z) * s + sigmoid(z) * h * (a - mean(v)) - h / T
}
hs = scan(cell, x, 4)
output o = hs
loss = mean((hs - y) ^ 2) + sum(hs[:, -1, :] ^ 2)
"""


def _fn_torch(p, inp):
    x = inp["x"]
    h, hs = torch.zeros(x.shape[0], 4, dtype=torch.float64), []
    s = torch.nn.functional.softplus(p["v"])
    for t in range(x.shape[1]):
        z = x[:, t] @ p["Wx"] + h @ p["Wh"] + p["b"]
        h = torch.tanh(z) * s + torch.sigmoid(z) * h * (p["a"] - p["v"].mean()) - h / x.shape[1]
        hs.append(h)
    return {"o": torch.stack(hs, 1)}


def _fn_loss(o, inp):
    hs = o["o"]
    return ((hs - inp["y"]) ** 2).mean() + (hs[:, -1] ** 2).sum()


CELL_BLOCK = """
model scb
input x : f64[B, T, 3]
block gate(n, m) {
    layer fx = dense(m -> n)
    layer fh = dense(n -> n, bias=false)
    fn forward(h, x) {
        u = fx(x)
        return tanh(u + fh(h)) + 0.5 * h
    }
}
layer c = gate(5, 3)
hs = scan(c, x, 5)
output o = hs
loss = sum(sin(hs))
"""


def _block_torch(p, inp):
    x = inp["x"]
    h, hs = torch.zeros(x.shape[0], 5, dtype=torch.float64), []
    for t in range(x.shape[1]):
        h = torch.tanh(x[:, t] @ p["c.fx.W"] + p["c.fx.b"] + h @ p["c.fh.W"]) + 0.5 * h
        hs.append(h)
    return {"o": torch.stack(hs, 1)}


def _block_loss(o, inp):
    return torch.sin(o["o"]).sum()


def _params(model, rng, scale=0.6) -> dict:
    return {k: rng.standard_normal(np.shape(v)) * scale
            for k, v in model.init_params(0).items()}


@pytest.mark.parametrize("steps", [1, 2, 6])
def test_fn_cell_matches_torch_for_any_length(steps):
    """A symbolic T: one compiled model, run at several lengths (no unrolling)."""
    model = gradc.compile_string(CELL_FN, "sc", target="numpy")
    seed = 100 + steps
    rng = np.random.default_rng(seed)
    inputs = {"x": rng.standard_normal((3, steps, 3)), "y": rng.standard_normal((3, steps, 4))}
    check_entries(model, _fn_torch, _params(model, rng), inputs, (), seed, 1e-12, _fn_loss)


def test_block_cell_matches_torch():
    """A block instance whose forward takes (h, x) as the cell."""
    model = gradc.compile_string(CELL_BLOCK, "scb", target="numpy")
    rng = np.random.default_rng(7)
    inputs = {"x": rng.standard_normal((2, 4, 3))}
    check_entries(model, _block_torch, _params(model, rng), inputs, (), 7, 1e-12, _block_loss)


CELL = """
dim T = 3
input x : f64[B, T, 2]
param Wx : f64[2, 3]
param Wh : f64[3, 3]
fn cell(h, xt) = tanh(xt @ Wx + h @ Wh) * exp(-h * h)
"""

SCANNED = CELL + """
hs = scan(cell, x, 3)
output last = hs[:, -1, :]
loss = sum(hs ^ 2) + sum(hs[:, 0, :])
"""

UNROLLED = CELL + """
h0 = 0 * (x[:, 0, :] @ Wx)
h1 = cell(h0, x[:, 0, :])
h2 = cell(h1, x[:, 1, :])
h3 = cell(h2, x[:, 2, :])
output last = h3
loss = sum(h1 ^ 2) + sum(h2 ^ 2) + sum(h3 ^ 2) + sum(h1)
"""


def test_scan_equals_the_unrolled_model():
    """Every entry of the scanned model equals the hand-unrolled one's to 1e-12."""
    a = gradc.compile_string(SCANNED, "a", target="numpy")
    b = gradc.compile_string(UNROLLED, "b", target="numpy")
    seed = 11
    rng = np.random.default_rng(seed)
    p = _params(a, rng, 0.8)
    x = rng.standard_normal((4, 3, 2))
    la, ga = a.loss_and_grad(p, x=x)
    lb, gb = b.loss_and_grad(p, x=x)
    assert abs(la - lb) < 1e-12 * abs(lb)
    tan = {k: rng.standard_normal(v.shape) for k, v in p.items()}
    cot = {"last": rng.standard_normal((4, 3))}
    pairs = [(ga, gb), (a.jvp(p, tan, x=x)[1], b.jvp(p, tan, x=x)[1]),
             (a.vjp(p, cot, x=x), b.vjp(p, cot, x=x)),
             (a.hvp(p, tan, x=x), b.hvp(p, tan, x=x))]
    for got, want in pairs:
        for k in want:
            assert rel_err(got[k], want[k]) < 1e-12, (k, seed)


def test_random_cells_match_their_unrolled_twin():
    """Seeded random cells (a random mix of ops, seeds from GRADC_TEST_SEED) against the
    unrolled loop in NumPy."""
    ops = ["tanh({})", "sigmoid({})", "sin({})", "({}) * h", "({}) + h"]
    for seed in (seeds.seed(k) for k in range(3)):
        rng = np.random.default_rng(seed)
        picks = rng.choice(len(ops), 2)
        body = "xt @ W + h @ U"
        for i in picks:
            body = ops[i].format(body)
        text = (f"input x : f64[B, T, 2]\nparam W : f64[2, 3]\nparam U : f64[3, 3]\n"
                f"fn cell(h, xt) = {body}\noutput o = scan(cell, x, 3)\n")
        model = gradc.compile_string(text, f"r{seed}", target="numpy")
        p = _params(model, rng, 0.5)
        x = rng.standard_normal((2, 5, 2))
        numpy_ops = {"tanh": np.tanh, "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
                     "sin": np.sin}
        h, want = np.zeros((2, 3)), []
        for t in range(5):
            env = {"xt": x[:, t], "h": h, "W": p["W"], "U": p["U"], **numpy_ops}
            h = eval(body, env)  # noqa: S307 - the cell's text is NumPy too
            want.append(h)
        got = model.forward(p, x=x)["o"]
        assert rel_err(got, np.stack(want, 1)) < 1e-13, f"seed {seed}: {body}"


@pytest.mark.parametrize("text, message", [
    ("fn cell(h) = tanh(h)\noutput o = scan(cell, x, 4)",
     "the cell fn 'cell' takes 1 argument(s); a cell takes two, (h, x)"),
    ("param W : f64[3, 5]\nfn cell(h, xt) = tanh(xt @ W)\noutput o = scan(cell, x, 4)",
     "the cell fn 'cell' returns f64[B, 5], but the hidden state is [B, 4]"),
    ("param W : f64[3, 4]\nfn cell(h, xt) = tanh(xt @ W + h)\noutput o = scan(cell, x, 0)",
     "hidden must be at least 1, got 0"),
    ("output o = scan(tanh, x, 4)", "'tanh' is not a fn or a block instance"),
    ("block g(n) {\n    fn forward(h) = h\n}\nlayer c = g(4)\noutput o = scan(c, x, 4)",
     "block instance 'c' (its forward) takes 1 argument(s)"),
    ("fn cell(h, xt) = h\noutput o = scan(cell, x)", "scan takes three arguments"),
])
def test_errors_name_the_call(text, message):
    src = "input x : f64[B, T, 3]\n" + text + "\n"
    with pytest.raises(ErrorGroup) as err:
        gradc.compile_string(src, "bad", target="numpy")
    text_err = str(err.value)
    assert message in text_err
    assert f"bad.grad:{src.count(chr(10))}:" in text_err  # located at the scan call


def test_each_distinct_body_is_printed_once():
    """The forward step recurs in every entry (and derived bodies in several): a body whose
    text equals an earlier one's is an alias of that function, so Numba compiles it once."""
    mod = gradc.compile_string(CELL_FN, "sc", target="numpy").module
    names = [n for n in vars(mod) if re.fullmatch(r"_body\d+_", n)]
    functions = {id(getattr(mod, n)): getattr(mod, n) for n in names}
    assert len(names) > 2 * len(functions) > 0, (len(names), len(functions))
    texts = [re.sub(r"_body\d+_", "_body_", inspect.getsource(f)) for f in functions.values()]
    assert len(set(texts)) == len(texts)


@pytest.mark.slow
def test_cpu_target_matches_torch_and_the_numpy_target():
    """The CPU target (the body an njit function called per step) through every entry,
    against torch and against the numpy target's numbers (train_epoch: the CPU's compiled
    loop over the minibatches, with the time loops inside it)."""
    cpu = gradc.compile_string(CELL_FN, "sc", target="cpu")
    assert cpu.tier("hvp") == "numba"
    assert "train_epoch" in cpu.module._PROGRAMS
    rng = np.random.default_rng(21)
    params = _params(cpu, rng)
    inputs = {"x": rng.standard_normal((3, 4, 3)), "y": rng.standard_normal((3, 4, 4))}
    check_entries(cpu, _fn_torch, params, inputs, (), 21, 1e-12, _fn_loss)
    ref = gradc.compile_string(CELL_FN, "sc", target="numpy")
    same_numbers(cpu, ref, params, inputs, 22)


@pytest.mark.slow
def test_cuda_simulator_matches_cpu():
    """The CUDA target (the loop on the host, the body's kernels launched per step) under
    the simulator against the CPU target: every entry, float32 and float64, reverse loops
    (vjp, loss_and_grad) and tangent loops (jvp, hvp) included
    (tests/harness/sim_models.py)."""
    pytest.importorskip("numba_cuda", reason="numba-cuda is not installed")
    res = sim_models.run({"sc.grad": CELL_FN}, {"B": 2, "T": 3})
    assert not res["failures"], "\n".join(res["failures"])
    assert res["checks"] > 50, res
