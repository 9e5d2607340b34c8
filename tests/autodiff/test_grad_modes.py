"""The mode of each ``grad`` (gradc/autodiff/columns.py): forward mode by a few columns of
per-sample points only where no operation mixes samples, reverse mode otherwise, and the
same numbers either way (torch's ``autograd.grad`` in float64, numpy target); the slices
of a forward-mode gradient read its columns directly; ``gradc show`` prints the modes and
the symbolic form of elementwise derivatives.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradc
from gradc.cli import main
from gradc.pipeline import Options, eval_graph, front
from gradc.source import Source
from tests.harness.oracles import rel_err

torch = pytest.importorskip("torch")

HEAD = """input x : f64[B, 2]
param W : f64[2, 3] ~ normal(1.0)
param V : f64[3, 1] ~ normal(1.0)
"""


def modes(body: str) -> list[tuple[str, str]]:
    graph, _ = front(Source(HEAD + body, "m.grad"), Options.make())
    return [(d.mode, d.why) for d in graph.derivatives]


@pytest.mark.parametrize("body, mode, why", [
    ("output o = grad(sum(tanh(x @ W) @ V), x)\n", "forward",
     "2 tangent columns, samples kept apart"),
    ("output o = grad(sum(tanh(x @ W)[:, 1:3] * x[:, 0:1]), x)\n", "forward",
     "2 tangent columns, samples kept apart"),
    ("output o = grad(sum(softmax(x @ W, axis=1)), x)\n", "forward",
     "2 tangent columns, samples kept apart"),
    ("h = tanh(x @ W)\noutput o = grad(sum(h - mean(h, axis=0)), x)\n", "reverse",
     "reduce [3] may mix samples"),
    ("output o = grad(sum(transpose(x) @ x), x)\n", "reverse",
     "transpose [2, B] may mix samples"),
    ("output o = grad(sum(softmax(x @ W, axis=0)), x)\n", "reverse",
     "reduce [3] may mix samples"),
    ("output o = grad(mean(tanh(x @ W)), x)\n", "reverse",
     "s is not a sum over all axes of a value"),
    ("output o = grad(sum(tanh(x @ W)), W)\n", "reverse",
     "matmul [B, 3] may mix samples"),
    ("h = x @ W\noutput o = grad(sum(tanh(h) @ V), h)\n", "forward",
     "3 tangent columns, samples kept apart"),
])
def test_mode_and_reason(body, mode, why):
    assert modes(body) == [(mode, why)]


def test_wide_and_unshaped_variables_use_reverse_mode():
    wide = "input z : f64[B, 5]\nparam U : f64[5, 2]\noutput o = grad(sum(tanh(z @ U)), z)\n"
    assert modes(wide) == [("reverse", "v has 5 columns (forward mode: at most 4)")]
    flat = "input z : f64[B]\noutput o = grad(sum(tanh(z)), z)\n"
    assert modes(flat) == [("reverse", "v is [B], not [samples, columns]")]


#: (model body, torch function of (x, W, V) giving the output) for models of both modes,
#: including ones whose samples mix (where forward mode would be wrong).
CASES = {
    "per_sample": ("output o = grad(sum(tanh(x @ W) @ V), x)\n",
                   lambda x, W, V: torch.tanh(x @ W) @ V),
    "batch_mean": ("h = tanh(x @ W)\noutput o = grad(sum((h - mean(h, axis=0)) ^ 2), x)\n",
                   lambda x, W, V: (torch.tanh(x @ W) - torch.tanh(x @ W).mean(0)) ** 2),
    "gram": ("output o = grad(sum(sin(transpose(x) @ x)), x)\n",
             lambda x, W, V: torch.sin(x.T @ x)),
    "softmax_batch": ("output o = grad(sum(softmax(x @ W, axis=0) * x[:, 0:1]), x)\n",
                      lambda x, W, V: torch.softmax(x @ W, 0) * x[:, 0:1]),
    "columns_slices": ("g = grad(sum(tanh(x @ W) @ V), x)\n"
                       "output o = grad(sum(g[:, 0]), x)[:, 0] + grad(sum(g[:, 1]), x)[:, 1]\n",
                       None),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_both_modes_match_torch(name):
    body, fn = CASES[name]
    model = gradc.compile_string(HEAD + body, name, target="numpy")
    params = model.init_params(seed=3)
    x = np.random.default_rng(4).normal(size=(5, 2))
    tp = {k: torch.tensor(v) for k, v in params.items()}
    tx = torch.tensor(x, requires_grad=True)
    if fn is None:       # the Laplacian of the per-sample net, columns read by slices
        u = torch.tanh(tx @ tp["W"]) @ tp["V"]
        g, = torch.autograd.grad(u.sum(), tx, create_graph=True)
        want = sum(torch.autograd.grad(g[:, j].sum(), tx, create_graph=True)[0][:, j]
                   for j in range(2))
    else:
        want, = torch.autograd.grad(fn(tx, tp["W"], tp["V"]).sum(), tx)
    got = model.forward(params, x=x)["o"]
    assert rel_err(got, want.detach().numpy()) <= 1e-12


def test_a_column_of_a_forward_mode_gradient_is_read_without_a_slice():
    """``g[:, 0]`` of ``g = grad(sum(u), x)`` built by columns is the first column's
    tangent itself: no slice node, and the second column's direction (an unslice of ones
    into column 1) is not in the graph of a loss that reads only the first."""
    src = HEAD + "g = grad(sum(tanh(x @ W) @ V), x)\nloss = sum(g[:, 0])\n"
    graph, _ = front(Source(src, "m.grad"), Options.make())
    nodes = graph.topo([graph.loss])
    assert "slice" not in [n.op for n in nodes]
    placed = [n.attrs["spec"][1] for n in nodes if n.op == "unslice"]
    assert placed == [("r", 0, 1, 1)]


def test_show_prints_modes_and_elementwise_forms(tmp_path, capsys):
    path = tmp_path / "m.grad"
    path.write_text("input t : f64[B, 1]\nparam w : f64[1, 1]\nparam b : f64[1]\n"
                    "u = tanh(t @ w + b)\noutput du = grad(sum(u), t)\n"
                    "output dw = grad(sum(u - mean(u, axis=0)), t)\n", encoding="utf-8")
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    section = out.split("derivatives (2 grads)\n", 1)[1].split("\n\n", 1)[0]
    assert section == (
        "  line 5: grad(sum(u), t)\n"
        "    forward mode: 1 tangent column, samples kept apart\n"
        "    d/dt tanh(b + t*w) = w*(1 - tanh(b + t*w)**2)\n"
        "  line 6: grad(sum(u - mean(u, axis=0)), t)\n"
        "    reverse mode: reduce [1] may mix samples")


def test_batchnorm_mixes_samples_in_training_mode_only():
    """In the train graph (loss_and_grad, train_step) batchnorm normalises with the batch's
    statistics: reverse mode; the eval graph (forward) reads running statistics, which keep
    samples apart: forward mode."""
    src = HEAD + "layer bn = batchnorm(3)\noutput o = grad(sum(tanh(bn(x @ W))), x)\n"
    source = Source(src, "m.grad")
    train, _ = front(source, Options.make())
    evaluated = eval_graph(source, Options.make(), train)
    assert [d.mode for d in train.derivatives] == ["reverse"]
    assert [d.mode for d in evaluated.derivatives] == ["forward"]
