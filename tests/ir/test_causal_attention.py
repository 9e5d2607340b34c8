"""``attention(dim, heads, causal=true)``: position t attends to positions <= t.

Against the formula written out in torch with a causal mask (float64; itself checked
against ``torch.nn.MultiheadAttention`` with a causal ``attn_mask``) for forward,
``loss_and_grad``, ``jvp``, ``vjp`` and ``hvp`` (tests/harness/layer_checks.py) on the numpy target
and on the CPU target, with the sequence length a dim (so the mask is built for any T, T = 1
included); the properties the mask promises, exactly (seeded random lengths, seed in the
message): an output at t does not change, to the bit, when the positions after t change, and
its gradient with respect to them is exactly 0; no NaN for any row, in float32 too, however
large the scores; the default stays ``causal=false``; the argument errors; and the CUDA
target under the simulator.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradc
from tests.harness import sim_models
from tests.harness.layer_checks import check_entries, front_error, weights
from tests.harness.oracles import rel_err

torch = pytest.importorskip("torch")

DIM, HEADS = 4, 2
SRC = f"""model att
input x : f64[B, T, {DIM}]
input w_o : f64[B, T, {DIM}]
input w_full : f64[B, T, {DIM}]
layer c = attention({DIM}, {HEADS}, causal=true)
layer n = attention({DIM}, num_heads={HEADS})
output o = x |> c
output full = x |> n
loss = sum(o * o * w_o) + sum(full * full * w_full)
"""
#: the causal layer alone, for the slower targets (the CPU's Numba compiles, the simulator)
CAUSAL = "\n".join(line for line in SRC.splitlines()
                   if "full" not in line and "layer n " not in line) + \
    "\nloss = sum(o * o * w_o)\n"


def attend(prm, x, name: str, causal: bool):
    """Multi-head self-attention written out (x @ W, per head softmax(Q K^T / sqrt(d)) V,
    heads concatenated, @ Wo); ``causal``: scores above the diagonal set to -inf before the
    softmax, as ``torch.nn.MultiheadAttention`` does with a boolean ``attn_mask``."""
    b, t, dim = x.shape
    d = dim // HEADS

    def split(w):
        return (x @ prm[f"{name}.{w}"]).reshape(b, t, HEADS, d).permute(0, 2, 1, 3)
    q, k, v = split("Wq"), split("Wk"), split("Wv")
    scores = q @ k.transpose(-1, -2) / d ** 0.5
    if causal:
        scores = scores.masked_fill(torch.triu(torch.ones(t, t, dtype=torch.bool), 1),
                                    float("-inf"))
    ctx = (torch.softmax(scores, dim=-1) @ v).permute(0, 2, 1, 3).reshape(b, t, dim)
    return ctx @ prm[f"{name}.Wo"]


def torch_fn(prm, inp):
    return {"o": attend(prm, inp["x"], "c", True), "full": attend(prm, inp["x"], "n", False)}


def test_the_written_out_formula_is_torch_multihead_attention():
    """The torch side of these tests equals nn.MultiheadAttention with a causal mask
    (gradc's x @ W is torch's weight W^T; no biases)."""
    rng = np.random.default_rng(7)
    prm = {f"c.W{c}": torch.tensor(rng.standard_normal((DIM, DIM))) for c in "qkvo"}
    x = torch.tensor(rng.standard_normal((3, 5, DIM)))
    layer = torch.nn.MultiheadAttention(DIM, HEADS, bias=False, batch_first=True).double()
    with torch.no_grad():
        layer.in_proj_weight.copy_(torch.cat([prm[f"c.W{c}"].T for c in "qkv"]))
        layer.out_proj.weight.copy_(prm["c.Wo"].T)
        mask = torch.triu(torch.ones(5, 5, dtype=torch.bool), 1)
        want, _ = layer(x, x, x, attn_mask=mask, need_weights=False)
        assert rel_err(attend(prm, x, "c", True).numpy(), want.numpy()) < 1e-14


def _compile(target: str = "numpy", dtype: str = "f64", src: str = SRC):
    return gradc.compile_string(src, name="att.grad", target=target, dtype=dtype, wrt=["x"])


def _data(model, b: int, t: int, seed: int) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    params = {k: rng.standard_normal(v.shape) for k, v in model.init_params(0).items()}
    inputs = {"x": rng.standard_normal((b, t, DIM)), **weights(model, {"B": b, "T": t}, rng)}
    return params, inputs


@pytest.mark.parametrize("t", [1, 2, 5])
def test_causal_attention_matches_torch_numpy_target(t):
    model = _compile()
    params, inputs = _data(model, 3, t, seed=20 + t)
    check_entries(model, torch_fn, params, inputs, ("x",), seed=20 + t)


@pytest.mark.slow
def test_causal_attention_matches_torch_cpu_target():
    """The causal layer alone (CAUSAL: Numba compiles each entry)."""
    model = _compile("cpu", src=CAUSAL)
    assert model.tier("hvp") == "numba"
    for t in (1, 4):
        params, inputs = _data(model, 2, t, seed=30 + t)
        check_entries(model, lambda prm, inp: {"o": attend(prm, inp["x"], "c", True)},
                      params, inputs, ("x",), seed=30 + t)


def test_the_mask_matches_torch_for_a_fixed_length():
    """T a number instead of a dim: the same mask (the graph folds no differently)."""
    model = _compile(src=SRC.replace("B, T,", "B, 6,"))
    params, inputs = _data(model, 2, 6, seed=40)
    check_entries(model, torch_fn, params, inputs, ("x",), seed=40)


@pytest.mark.parametrize("seed", range(3))
def test_the_future_has_no_effect_exactly(seed):
    """Changing x after position s leaves every output at <= s bitwise equal, and the
    gradient of the outputs at <= s with respect to x after s is exactly 0."""
    model = _compile()
    rng = np.random.default_rng(100 + seed)
    t = int(rng.integers(2, 9))
    s = int(rng.integers(0, t - 1))
    params, inputs = _data(model, 2, t, seed=100 + seed)
    tag = f"seed {100 + seed}, T = {t}, s = {s}"
    moved = {**inputs, "x": inputs["x"].copy()}
    moved["x"][:, s + 1:] = rng.standard_normal(moved["x"][:, s + 1:].shape) * 10
    o, o2 = model.forward(params, **inputs)["o"], model.forward(params, **moved)["o"]
    assert np.array_equal(o[:, :s + 1], o2[:, :s + 1]), tag
    assert not np.array_equal(o[:, s + 1:], o2[:, s + 1:]), tag
    cot = {"o": np.zeros_like(o), "full": np.zeros_like(o)}
    cot["o"][:, :s + 1] = rng.standard_normal(o[:, :s + 1].shape)
    gx = model.vjp(params, cot, **inputs)["x"]
    assert np.all(gx[:, s + 1:] == 0), tag
    assert np.all(gx[:, :s + 1] != 0), tag
    _, tans = model.jvp(params, {"x": np.where(np.arange(t)[None, :, None] > s, 1.0, 0.0)
                                 * np.ones_like(inputs["x"])}, **inputs)
    assert np.all(tans["o"][:, :s + 1] == 0) and np.all(tans["o"][:, s + 1:] != 0), tag


@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_no_nan_for_any_row_however_large_the_scores(dtype):
    """Scores of 1e6 and more (x scaled up): every row keeps its own position, so no row
    is all masked; the first output is exactly value(x_0) @ Wo (its one weight is 1)."""
    model = _compile(dtype=dtype)
    params, inputs = _data(model, 2, 5, seed=50)
    np_t = np.float32 if dtype == "f32" else np.float64
    params = {k: v.astype(np_t) for k, v in params.items()}
    inputs = {k: (v * (1e3 if k == "x" else 1)).astype(np_t) for k, v in inputs.items()}
    o = model.forward(params, **inputs)["o"]
    loss, grads = model.loss_and_grad(params, **inputs)
    assert np.isfinite(o).all() and np.isfinite(loss)
    assert all(np.isfinite(g).all() for g in grads.values())
    first = inputs["x"][:, 0] @ params["c.Wv"] @ params["c.Wo"]
    assert rel_err(o[:, 0], first) < (1e-6 if dtype == "f32" else 1e-14)


def test_causal_defaults_to_false():
    """``attention(dim, heads)`` is the unmasked layer: equal, to the bit, to causal=false
    written out; with equal weights, causal=true differs from it except at the last
    position, which attends to every position."""
    base = SRC.replace("num_heads=2)", "num_heads=2, causal=false)")
    m1, m2 = _compile(), _compile(src=base)
    params, inputs = _data(m1, 2, 3, seed=60)
    full1, full2 = (m.forward(params, **inputs)["full"] for m in (m1, m2))
    assert np.array_equal(full1, full2)
    p2 = {**params, **{k.replace("c.", "n."): v for k, v in params.items() if k[0] == "c"}}
    out = m1.forward(p2, **inputs)   # the same weights in both layers
    assert rel_err(out["o"][:, -1], out["full"][:, -1]) < 1e-14   # the last row sees all
    assert rel_err(out["o"][:, 0], out["full"][:, 0]) > 1e-3


@pytest.mark.parametrize("decl,want", [
    ("attention(4, 2, causal=1)", "e.grad:2:34: error: expected true or false here"),
    ("attention(4, 2, casual=true)",
     "e.grad:2:27: error: attention() got an unknown keyword 'casual'"),
    ("attention(4, 2, causal=true, causal=false)",
     "e.grad:2:40: error: keyword argument 'causal' given twice"),
])
def test_argument_errors(decl, want):
    text = front_error(f"input x : f32[B, T, 4]\nlayer a = {decl}\noutput o = x |> a\n")
    assert text.split("\n")[0] == want, text
    assert "Traceback" not in text


def test_shape_errors_name_the_layer():
    text = front_error("input x : f32[B, T, 6]\nlayer a = attention(6, 4, causal=true)\n"
                  "output o = x |> a\n")
    assert text.split("\n")[0] == ("e.grad:3:17: error: attention layer 'a' dim 6 is not "
                                   "divisible by heads 4"), text
    text = front_error("input x : f32[B, 4]\nlayer a = attention(4, 2, causal=true)\n"
                  "output o = x |> a\n")
    assert text.split("\n")[0] == ("e.grad:3:17: error: attention layer 'a' expects an "
                                   "input of shape [B, T, 4], got [B, 4]"), text


#: a loop over [B, 3*T] (its second axis a product of dims), as the mask's [T, 2*T]:
#: the CUDA kernels' flat index was split with ``f_ % 3 * d_T``, i.e. (f_ % 3) * d_T
FLAT = """model flat
input x : f64[B, T, 3]
input y : f64[B, T, 3]
output o = exp(reshape(x, [B, -1])) * reshape(y, [B, -1])
loss = sum(o)
"""


@pytest.mark.slow
def test_cuda_simulator_matches_cpu():
    """The causal mask's kernels on the CUDA target, under the simulator, against the CPU
    target (every entry, float32 and float64; tests/harness/sim_models.py), and a loop over an
    axis whose size is a product of dims."""
    pytest.importorskip("numba_cuda", reason="numba-cuda is not installed")
    res = sim_models.run({"att.grad": CAUSAL, "flat.grad": FLAT}, {"B": 4, "T": 3})
    assert not res["failures"], "\n".join(res["failures"])
    assert res["checks"] > 50, res
