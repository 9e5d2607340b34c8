"""The ``conv1d`` layer (NCL, PyTorch's ``F.conv1d``) against torch autograd in float64.

conv1d is the 2-D im2col (``patches``) with a (1, k) window over the height-1 view of the
signal, so these tests also cover the per-axis window, stride and padding of ``patches``
and ``unpatches`` on every target: forward, ``loss_and_grad``, ``jvp``, ``vjp`` and ``hvp``
(tests/harness/layer_checks.py) on the numpy target, one model on the CPU target, random layer
configurations (seeded, seed in the message), the reference interpreter, the CUDA target
under the simulator, and the errors a user meets (located, never a traceback).
"""

from __future__ import annotations

import numpy as np
import pytest

import gradc
from gradc.pipeline import Options, front
from gradc.source import Source
from tests.harness import sim_models
from tests.harness.layer_checks import check_entries, front_error, weights
from tests.harness.oracles import reference_check, rel_err

torch = pytest.importorskip("torch")
F = torch.nn.functional

B = 3
#: three layers: padding and stride together, the defaults, stride > kernel with padding
#: wider than half the kernel (windows that skip samples and windows mostly of padding)
SRC = """model c1
input x : f64[B, 2, 9]
input w_o1 : f64[B, 3, 5]
input w_o2 : f64[B, 4, 4]
input w_o3 : f64[B, 2, 4]
layer a = conv1d(2 -> 3, 3, stride=2, pad=1)
layer b = conv1d(3 -> 4, kernel=2)
layer c = conv1d(2 -> 2, 2, stride=3, padding=2)
h = x |> a
output o1 = h
output o2 = tanh(h) |> b
output o3 = x |> c
loss = sum(o1 * o1 * w_o1) + sum(o2 * o2 * w_o2) + sum(o3 * o3 * w_o3)
"""


def torch_fn(prm, inp):
    h = F.conv1d(inp["x"], prm["a.W"], prm["a.b"], stride=2, padding=1)
    return {"o1": h, "o2": F.conv1d(torch.tanh(h), prm["b.W"], prm["b.b"]),
            "o3": F.conv1d(inp["x"], prm["c.W"], prm["c.b"], stride=3, padding=2)}


def _data(model, seed: int) -> tuple[dict, dict]:
    """Params drawn at random (biases not zero) and the inputs, for ``B``."""
    rng = np.random.default_rng(seed)
    params = {k: rng.standard_normal(v.shape) * 0.5 for k, v in model.init_params(0).items()}
    inputs = {"x": rng.standard_normal((B, 2, 9)), **weights(model, {"B": B}, rng)}
    return params, inputs


def test_conv1d_matches_torch_numpy_target():
    model = gradc.compile_string(SRC, name="c1.grad", target="numpy", dtype="f64", wrt=["x"])
    params, inputs = _data(model, seed=11)
    check_entries(model, torch_fn, params, inputs, ("x",), seed=11)


@pytest.mark.slow
def test_conv1d_matches_torch_cpu_target():
    model = gradc.compile_string(SRC, name="c1.grad", target="cpu", dtype="f64", wrt=["x"])
    assert model.tier("hvp") == "numba"
    params, inputs = _data(model, seed=12)
    check_entries(model, torch_fn, params, inputs, ("x",), seed=12)


def test_conv1d_matches_reference_interpreter():
    model = gradc.compile_string(SRC, name="c1.grad", target="numpy", dtype="f64", wrt=["x"])
    params, inputs = _data(model, seed=13)
    rng = np.random.default_rng(13)
    tangents = {k: rng.standard_normal(v.shape) for k, v in {**params, "x": inputs["x"]}.items()}
    cot = {f"o{i}": rng.standard_normal(inputs[f"w_o{i}"].shape) for i in (1, 2, 3)}
    errs = reference_check(model, SRC, filename="c1.grad", dtype="f64", wrt=["x"],
                           params=params, inputs=inputs, tangents=tangents, cotangents=cot)
    assert errs and max(errs.values()) < 1e-12, errs


@pytest.mark.parametrize("seed", range(4))
def test_random_conv1d_layers(seed):
    """A random layer (channels, kernel, stride, padding, length with at least one window)
    against torch: the output and the gradients of params and input."""
    rng = np.random.default_rng(1000 + seed)
    cin, cout, k = (int(v) for v in rng.integers(1, 4, 3))
    k += int(rng.integers(0, 3))
    stride, pad = int(rng.integers(1, 4)), int(rng.integers(0, k + 1))
    length = int(rng.integers(max(1, k - 2 * pad), k + 8))
    ol = (length + 2 * pad - k) // stride + 1
    config = f"conv1d({cin} -> {cout}, {k}, stride={stride}, pad={pad}) on length {length}"
    src = (f"model r\ninput x : f64[B, {cin}, {length}]\ninput w_o : f64[B, {cout}, {ol}]\n"
           f"layer c = conv1d({cin} -> {cout}, {k}, stride={stride}, pad={pad})\n"
           "output o = x |> c\nloss = sum(o * o * w_o)\n")
    model = gradc.compile_string(src, name="r.grad", target="numpy", dtype="f64", wrt=["x"])
    params = {k_: rng.standard_normal(v.shape) for k_, v in model.init_params(0).items()}
    inputs = {"x": rng.standard_normal((2, cin, length)), **weights(model, {"B": 2}, rng)}

    def fn(prm, inp):
        return {"o": F.conv1d(inp["x"], prm["c.W"], prm["c.b"], stride=stride, padding=pad)}
    try:
        check_entries(model, fn, params, inputs, ("x",), seed=1000 + seed)
    except AssertionError as err:
        raise AssertionError(f"{config}: {err}") from None


def test_conv1d_params_and_init():
    """W [cout, cin, k] and b [cout]; W drawn like conv2d's (glorot uniform with PyTorch's
    fans: fan_in = cin * k, fan_out = cout * k), b zeros."""
    src = "input x : f32[B, 4, 50]\nlayer c = conv1d(4 -> 6, 5)\noutput o = x |> c\n"
    model = gradc.compile_string(src, name="p.grad", target="numpy")
    params = model.init_params(seed=0)
    assert {k: v.shape for k, v in params.items()} == {"c.W": (6, 4, 5), "c.b": (6,)}
    assert params["c.W"].dtype == np.float32 and not params["c.b"].any()
    limit = np.sqrt(6.0 / (4 * 5 + 6 * 5))
    w = params["c.W"]
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.9 * limit
    assert model.forward(params, x=np.ones((2, 4, 50), np.float32))["o"].shape == (2, 6, 46)


def test_conv1d_is_a_view_of_the_2d_patches():
    """The signal enters im2col as a reshape (no copy) and the window is (1, k)."""
    src = ("input x : f64[B, 2, 8]\nlayer c = conv1d(2 -> 3, 3, stride=2, pad=1)\n"
           "output o = x |> c\n")
    graph, _ = front(Source(src, "v.grad"), Options.make(dtype="f64"))
    (p,) = [n for n in graph.nodes if n.op == "patches"]
    assert p.attrs == {"k": (1, 3), "stride": (1, 2), "pad": (0, 1)}
    assert p.inputs[0].op == "reshape" and p.inputs[0].inputs[0] is graph.inputs["x"]
    assert tuple(p.shape) == (graph.inputs["x"].shape[0], 1, 4, 6)


HEAD = "input x : f32[B, 2, 5]\n"


@pytest.mark.parametrize("decl,use,want", [
    ("conv1d(2 -> 3, 3)", "output o = reshape(x, [B, 2, 5, 1]) |> c",
     "conv1d layer 'c' expects an input of shape NCL [N, 2, L], "
     "got [B, 2, 5, 1]"),
    ("conv1d(3 -> 3, 3)", "output o = x |> c",
     "conv1d layer 'c' expects an input of shape NCL [N, 3, L], "
     "got [B, 2, 5]"),
    ("conv1d(2 -> 3, 4, stride=2)", "output o = x[:, :, 0:3] |> c",
     "conv1d layer 'c' kernel 4 with stride 2 and padding 0 does not "
     "fit the signal [B, 2, 3]"),
    ("conv1d(2 -> 3, 8, pad=1)", "output o = x |> c",
     "conv1d layer 'c' kernel 8 with stride 1 and padding 1 does not "
     "fit the signal [B, 2, 5]"),
])
def test_conv1d_shape_errors(decl, use, want):
    """Located at the layer's use (line 3, the column of its name there)."""
    text = front_error(f"{HEAD}layer c = {decl}\n{use}\n")
    assert text.split("\n")[0] == f"e.grad:3:{use.rindex('c') + 1}: error: {want}", text
    assert "Traceback" not in text and "hint: 'c' is declared at line 2" in text


@pytest.mark.parametrize("decl,want", [
    ("conv1d(2 -> 3)", "e.grad:2:11: error: conv1d() takes 2 positional arguments, got 1"),
    ("conv1d(2 -> 3, 0)", "e.grad:2:26: error: conv1d(): expected a positive integer, got 0"),
    ("conv1d(2 -> 3, 2, strde=2)",
     "e.grad:2:29: error: conv1d() got an unknown keyword 'strde'"),
    ("conv1d(2, 3)", "e.grad:2:18: error: conv1d(): expected 'in -> out' here"),
    ("conv1d(2 -> 3, 2, stride=0)",
     "e.grad:2:36: error: conv1d(): stride must be at least 1, got 0"),
])
def test_conv1d_argument_errors(decl, want):
    text = front_error(f"{HEAD}layer c = {decl}\noutput o = x |> c\n")
    assert text.split("\n")[0] == want, text


def test_a_symbolic_length_or_image_size_is_a_located_error():
    """A length (conv1d) or image size (conv2d, pools) that is a dim: a message, not the
    TypeError of comparing a symbol (conv2d's was a raw traceback)."""
    text = front_error("input x : f32[B, 2, L]\nlayer c = conv1d(2 -> 3, 3)\n"
                       "output o = x |> c\n")
    assert text.split("\n")[0] == (
        "e.grad:3:17: error: conv1d layer 'c' needs a fixed length, got [B, 2, L] (give L "
        "as a number, or declare it: dim L = 32)"), text
    text = front_error("input x : f32[B, 2, H, 4]\nlayer c = conv2d(2 -> 3, 3)\n"
                       "output o = x |> c\n")
    assert text.split("\n")[0] == (
        "e.grad:3:17: error: conv2d layer 'c' needs a fixed image size, got [B, 2, H, 4] "
        "(give H and W as numbers, or declare them: dim H = 32)"), text
    src = "dim L = 6\ninput x : f64[B, 2, L]\nlayer c = conv1d(2 -> 3, 3)\noutput o = x |> c\n"
    model = gradc.compile_string(src, name="d.grad", target="numpy", dtype="f64")
    params = model.init_params(seed=1)
    x = np.random.default_rng(2).standard_normal((2, 2, 6))
    want = F.conv1d(torch.tensor(x), torch.tensor(params["c.W"]), torch.tensor(params["c.b"]))
    assert rel_err(model.forward(params, x=x)["o"], want.numpy()) < 1e-14


@pytest.mark.slow
def test_cuda_simulator_matches_cpu():
    """The CUDA target's im2col/col2im kernels with (1, k) windows, under the simulator,
    against the CPU target (every entry, float32 and float64; tests/harness/sim_models.py)."""
    pytest.importorskip("numba_cuda", reason="numba-cuda is not installed")
    res = sim_models.run({"c1.grad": SRC}, {"B": 3})
    assert not res["failures"], "\n".join(res["failures"])
    assert res["checks"] > 50, res
