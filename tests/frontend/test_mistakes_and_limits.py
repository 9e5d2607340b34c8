"""Regression tests of the front end's hardening (issues 12 and 13).

Every user mistake is a located :class:`gradc.errors.ErrorGroup` (FILE:LINE:COL, a caret),
never a raw Python exception or a hang; deep models (nesting, chains and fn chains hundreds
deep) compile; ``a ^ b`` has torch's gradients at a = 0; and the language gaps a newcomer
hit are closed (rebinding, keyword layer arguments, dropout(0), case-insensitive hints, a
warning for a model that computes nothing).

Most checks stop at the graph (:func:`gradc.pipeline.front`) or use the NumPy reference
interpreter; two models are compiled to check generated code.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import gradc
from gradc.errors import ErrorGroup, SourceError
from gradc.ir.expansion import MAX_EXPANDED
from gradc.ir.graph import Graph
from gradc.ir.shapes import MAX_DIM
from gradc.passes.schedule import MAX_FUSED_DEPTH, ProgramSpec, schedule
from gradc.pipeline import Options, front
from gradc.source import Source

from tests.harness.oracles import ReferenceModel

X = "input x : f32[B, 3]\n"


def lower(text: str, **options) -> tuple[Graph, list]:
    return front(Source(text, "m.grad"), Options.make(**options))


def error(text: str, **options) -> SourceError:
    """The one error ``text`` gives; it must be located and render with a caret."""
    with pytest.raises(ErrorGroup) as info:
        lower(text, **options)
    errs = [e for e in info.value.errors if e.severity == "error"]
    assert len(errs) == 1, str(info.value)
    err = errs[0]
    assert err.span is not None, err.render()
    first, line, caret = err.render().split("\n")[:3]
    assert first.startswith(f"m.grad:{err.span.line}:{err.span.col}: error: ")
    assert caret.strip() and set(caret.strip()) == {"^"}, err.render()
    return err


def at(err: SourceError, text: str, snippet: str, last: bool = False) -> None:
    """The error's span starts at the first (or last) occurrence of ``snippet`` in ``text``."""
    pos = text.rindex(snippet) if last else text.index(snippet)
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    assert (err.span.line, err.span.col) == (line, col), err.render()


# ----------------------------------------------------------------------------- fn names

@pytest.mark.parametrize("text, snippet, message", [
    ("fn relu(z) = max(z, 0)\n" + X + "output o = relu(x)\n", "relu(z)",
     "'relu' is already defined (a built-in function)"),
    ("fn elu() = z\n", "elu()", "'elu' is already defined (a built-in function)"),
    ("fn sum(z) = z\n" + X + "output o = x\n", "sum(z)",
     "'sum' is already defined (a built-in function)"),
    ("fn dense(z) = z\n" + X + "output o = dense(x)\n", "dense(z)",
     "'dense' is already defined (a built-in layer kind)"),
])
def test_fn_named_like_a_builtin_is_a_located_error(text, snippet, message):
    err = error(text)
    assert err.message == message
    at(err, text, snippet)
    assert err.hint.startswith("rename it")


def test_fn_defined_twice_names_the_first_line():
    text = "fn F() = R\nfn F() = R\n"
    err = error(text)
    assert err.message == "'F' is already defined (line 1, a fn)"
    assert (err.span.line, err.span.col) == (2, 4)


def test_fn_defined_twice_cli_exit_code_2(tmp_path):
    from gradc.cli import main
    path = tmp_path / "m.grad"
    path.write_text("fn relu(z) = max(z, 0)\n" + X + "output o = relu(x)\n")
    assert main(["compile", str(path), "-o", str(tmp_path / "m.py")]) == 2


# ----------------------------------------------------------------------------- > 64 args

@pytest.mark.parametrize("n", [64, 65, 200])
def test_no_limit_on_the_number_of_arguments(n):
    graph, _ = lower(X + "loss = l2(" + ", ".join(["x"] * n) + ")\n"
                     + "output o = concat(" + ", ".join(["x"] * n) + ")\n")
    assert [str(d) for d in graph.outputs["o"].shape] == ["B", str(3 * n)]
    x = np.arange(6.0).reshape(2, 3) / 7
    ref = ReferenceModel(X + "loss = l2(" + ", ".join(["x"] * n) + ")\n", wrt=("x",))
    loss, grads = ref.loss_and_grad({}, x=x)
    assert loss == pytest.approx(n * (x ** 2).sum())
    np.testing.assert_allclose(grads["x"], 2 * n * x)


@pytest.mark.slow
def test_no_limit_on_the_number_of_arguments_compiled():
    n = 65
    text = ("input x : f64[B, 2]\nloss = l2(" + ", ".join(["x"] * n) + ")\n"
            "output o = concat(" + ", ".join(["x"] * n) + ")\n")
    model = gradc.compile_string(text, cache=False, wrt=["x"])
    x = np.array([[1.0, -2.0], [0.5, 3.0]])
    loss, grads = model.loss_and_grad({}, x=x)
    assert loss == pytest.approx(n * (x ** 2).sum())
    np.testing.assert_allclose(grads["x"], 2 * n * x)
    np.testing.assert_array_equal(model.forward({}, x=x)["o"], np.concatenate([x] * n, -1))


# ----------------------------------------------------------------------------- huge ints

BIG = "9" * 400        # not even a float
LARGE = "9" * 23       # a float, but not a size


@pytest.mark.parametrize("text, snippet, words", [
    (f"input x : f32[B, {LARGE}]\noutput o = x\n", LARGE, "is too large"),
    (f"input x : f32[B, {BIG}]\noutput o = x\n", BIG, "is too large"),
    (f"input x : f32[{MAX_DIM}, {MAX_DIM}, {MAX_DIM}]\noutput o = x\n", "f32",
     "more than 2^62 elements"),
    (f"dim N = {LARGE}\ninput x : f32[N]\noutput o = x\n", "dim N", "is too large"),
    (X + f"output o = x[:, 0:{BIG}]\n", BIG, "this number is too large"),
    (X + f"output o = x[:, {BIG}]\n", BIG, "this number is too large"),
    (X + f"output o = x[:, {LARGE}]\n", LARGE, "out of range"),
    (X + f"layer d = dense(3 -> {LARGE})\noutput o = d(x)\n", LARGE, "is too large"),
    (X + f"layer d = dense(3 -> {BIG})\noutput o = d(x)\n", BIG, "this number is too large"),
    ("input x : f32[B, 1, 8, 8]\nlayer c = conv2d(1 -> 2, {LARGE})\noutput o = c(x)\n"
     .replace("{LARGE}", LARGE), LARGE, "is too large"),
    ("input x : f32[B, 1, 8, 8]\nlayer c = conv2d(1 -> 2, 3, stride=0)\noutput o = c(x)\n",
     "0)", "must be at least 1"),
    (X + f"output o = sum(x, axis={BIG})\n", BIG, "this number is too large"),
    (X + f"output o = reshape(x, [{LARGE}, -1])\n", LARGE, "is too large"),
    (X + f"output o = x * {BIG}\n", BIG, "this number is too large"),
])
def test_huge_integers_are_located_errors(text, snippet, words):
    err = error(text)
    assert words in err.message, err.render()
    at(err, text, snippet)


# ----------------------------------------------------------------------------- deep models

@pytest.mark.parametrize("depth", [250, 600, 3000])
def test_deeply_nested_calls_lower(depth):
    graph, _ = lower(X + "output o = " + "tanh(" * depth + "x" + ")" * depth + "\n")
    assert graph.outputs["o"].op == "ewise"
    assert sum(n.op == "ewise" for n in graph.nodes) == depth


def test_a_long_tanh_chain_is_scheduled_in_bounded_kernels():
    """Fusing 600 tanh into one expression would recurse 600 deep in SymPy and the printers:
    the scheduler cuts the chain every MAX_FUSED_DEPTH levels (iteratively walkable)."""
    graph, _ = lower(X + "output o = " + "tanh(" * 600 + "x" + ")" * 600 + "\n")
    x = graph.inputs["x"]
    prog = schedule(graph, ProgramSpec("forward", [x], [graph.outputs["o"]]), lambda n: "t_x")
    stores = [expr for k in prog.kernels for _, expr in k.stores]
    assert 600 // (MAX_FUSED_DEPTH + 1) <= len(stores) <= 600 // MAX_FUSED_DEPTH + 2

    def depth(e):
        return 1 + max((depth(a) for a in e.args), default=0)
    assert max(depth(e) for e in stores) <= MAX_FUSED_DEPTH + 2


def test_a_600_long_matmul_chain_lowers_and_schedules():
    text = "".join([X, "param W : f32[3, 3]\n", "h0 = x\n"]
                   + [f"h{i + 1} = h{i} @ W\n" for i in range(600)] + ["output o = h600\n"])
    graph, _ = lower(text)
    prog = schedule(graph, ProgramSpec("forward", [graph.params["W"], graph.inputs["x"]],
                                 [graph.outputs["o"]]), lambda n: f"t_{n.attrs['name']}")
    assert len(prog.kernels) >= 600


def test_a_long_sum_of_gradient_terms_schedules():
    """The gradient of W in a 600-long chain is a 600-term sum of matmuls (a 600-deep chain
    of inlinable adds before): its backward program is built without recursion."""
    text = "".join([X, "param W : f32[3, 3]\n", "h0 = x\n"]
                   + [f"h{i + 1} = h{i} @ W\n" for i in range(600)] + ["loss = sum(h600)\n"])
    graph, _ = lower(text)
    from gradc.passes.programs import build_programs, Optimizer
    entries = build_programs(graph, (), Optimizer.parse("sgd"), None)
    e = entries["loss_and_grad"]
    prog = schedule(e.graph or graph, e, lambda n: f"t_{n.attrs['name']}")
    assert prog.kernels


def test_a_600_deep_fn_chain_lowers():
    text = "".join(["fn f0(z) = tanh(z)\n"] + [f"fn f{i + 1}(z) = f{i}(z) @ W\n"
                                               for i in range(600)])
    graph, _ = lower(text + X + "param W : f32[3, 3]\noutput o = f600(x)\n")
    assert sum(n.op == "matmul" for n in graph.nodes) == 600


@pytest.mark.parametrize("levels, body", [
    (18, "f{i}(z) + f{i}(z)"), (24, "f{i}(z) + f{i}(z)"), (24, "f{i}(z) * f{i}(z + 1)"),
])
def test_exponential_fn_expansion_stops_fast_with_a_located_error(levels, body):
    fns = ["fn f0(z) = tanh(z)\n"] + [f"fn f{i + 1}(z) = " + body.format(i=i) + "\n"
                                      for i in range(levels)]
    text = "".join(fns) + X + f"h = x + 1\noutput o = h * f{levels}(x)\n"
    start = time.perf_counter()
    err = error(text)
    assert time.perf_counter() - start < 1.0
    assert f"the limit is {MAX_EXPANDED}" in err.message
    at(err, text, f"f{levels}(x)")
    assert f"'f{levels}' calls 'f{levels - 1}' 2 times" in err.hint


def test_fn_expansion_below_the_limit_compiles():
    fns = ["fn f0(z) = tanh(z)\n"] + [f"fn f{i + 1}(z) = f{i}(z) + f{i}(z)\n" for i in range(8)]
    graph, _ = lower("".join(fns) + X + "output o = f8(x)\n")
    assert graph.outputs["o"].op == "ewise"


# ----------------------------------------------------------------------------- unbound dims

@pytest.mark.parametrize("text, snippet", [
    ("input x : f32[B, 3]\ninput y : f32[4]\noutput o = x\nloss = sum(y) / B\n", "B\n"),
    ("dim B\ninput y : f32[4]\nloss = sum(y) / B\n", "B\n"),
    ("input x : f32[B, 3]\ninput y : f32[4]\noutput o = sum(y) / B\nloss = sum(x)\n",
     "B\nloss"),
])
def test_a_dim_no_input_binds_is_a_compile_time_error(text, snippet):
    err = error(text)
    assert "needs the call-time dim B" in err.message
    at(err, text, snippet, last=True)


def test_a_dim_bound_by_another_output_is_fine():
    graph, _ = lower("input x : f32[B, 3]\ninput y : f32[4]\noutput o = sum(y) / B\n"
                     "output p = x\nloss = mean(x) + sum(x) / B\n")
    assert set(graph.outputs) == {"o", "p"}


# ----------------------------------------------------------------------------- a ^ b

POW = ("input x : f64[3]\nparam p : f64[] ~ constant(2)\nloss = sum(relu(x) ^ p)\n"
       "input a : f64[2]\ninput b : f64[2]\noutput o = a ^ b\noutput q = -0.7 ^ 2 + 0 * a\n")
POW_WANT = {"loss": 0.25 + 4.0, "x": [0.0, 1.0, 4.0],
            "p": 0.25 * np.log(0.5) + 4 * np.log(2.0)}  # torch: [0, 1, 4], 2.5993


def _check_pow(model):
    x = np.array([-1.0, 0.5, 2.0])
    a, b = np.zeros(2), np.array([2.0, 3.0])
    loss, grads = model.loss_and_grad({"p": np.array(2.0)}, x=x, a=a, b=b)
    assert loss == pytest.approx(POW_WANT["loss"])
    np.testing.assert_allclose(grads["x"], POW_WANT["x"])
    assert float(grads["p"]) == pytest.approx(POW_WANT["p"])  # 2.5993
    got = model.vjp({"p": np.array(2.0)}, {"o": np.ones(2)}, x=x, a=a, b=b)
    np.testing.assert_array_equal(got["a"], [0.0, 0.0])  # b a^(b-1) at a = 0
    np.testing.assert_array_equal(got["b"], [0.0, 0.0])  # a^b log a := 0 at a = 0, b >= 0
    out = model.forward({"p": np.array(2.0)}, x=x, a=a, b=b)
    np.testing.assert_allclose(out["q"], [-0.49, -0.49])  # -0.7 ^ 2 is -(0.7 ^ 2)


def test_pow_gradients_at_zero_match_torch_reference():
    _check_pow(ReferenceModel(POW, wrt=("x", "a", "b")))


@pytest.mark.slow
def test_pow_gradients_at_zero_match_torch_compiled():
    _check_pow(gradc.compile_string(POW, cache=False, wrt=["x", "a", "b"]))


def test_pow_gradients_elsewhere_are_unchanged():
    ref = ReferenceModel("input a : f64[3]\ninput b : f64[3]\nloss = sum(a ^ b)\n",
                         wrt=("a", "b"))
    a, b = np.array([0.5, 2.0, 3.0]), np.array([1.5, -1.0, 0.0])
    _, g = ref.loss_and_grad({}, a=a, b=b)
    np.testing.assert_allclose(g["a"], np.where(b == 0, 0, b * a ** (b - 1)))
    np.testing.assert_allclose(g["b"], a ** b * np.log(a))


# ----------------------------------------------------------------------------- language gaps

@pytest.mark.parametrize("spelling", ["ReLU", "RELU", "Relu"])
def test_hints_compare_case_insensitively_first(spelling):
    err = error(X + f"output o = {spelling}(x)\n")
    assert err.hint == "did you mean 'relu'?"


def test_case_insensitive_hint_for_values():
    err = error("input Xs : f32[B, 3]\noutput o = xs\n")
    assert err.hint == "did you mean 'Xs'?"


def _dropout(p: str):
    text = X + f"layer d = dropout({p})\noutput o = d(x)\nloss = sum(d(x))\n"
    return text, ReferenceModel(text, wrt=("x",))


def test_dropout_0_is_the_identity():
    text, ref = _dropout("0")
    graph, _ = lower(text)
    assert graph.outputs["o"] is graph.inputs["x"]
    x = np.arange(6.0).reshape(2, 3)
    _, grads = ref.loss_and_grad({}, x=x)
    np.testing.assert_array_equal(grads["x"], np.ones_like(x))


def test_dropout_1_gives_zeros_like_torch():
    text, ref = _dropout("1")
    x = np.arange(6.0).reshape(2, 3) + 1
    loss, grads = ref.loss_and_grad({}, x=x)
    assert loss == 0.0
    np.testing.assert_array_equal(grads["x"], np.zeros_like(x))
    np.testing.assert_array_equal(ref.forward({}, x=x)["o"], x)  # eval: the identity


@pytest.mark.parametrize("p", ["1.5", "-0.5"])
def test_dropout_p_out_of_range(p):
    err = error(X + f"layer d = dropout({p})\noutput o = d(x)\n")
    assert "p must be in [0, 1]" in err.message


def test_rebinding_a_value_makes_a_new_ssa_value():
    text = (X + "param W : f32[3, 3]\nh = x @ W\nh = relu(h @ W)\nh = h + 1\noutput h\n"
            "loss = sum(h)\n")
    graph, _ = lower(text)
    out = graph.outputs["h"]
    assert out.op == "ewise" and out.span.line == 5
    relu = out.inputs[0]
    assert relu.span.line == 4 and relu.inputs[0].op == "matmul"
    first = relu.inputs[0].inputs[0]
    assert first.op == "matmul" and first.label == "h"  # the first h = x @ W
    ref = ReferenceModel(text)
    W = np.eye(3)
    x = np.array([[1.0, -2.0, 3.0]])
    assert ref.forward({"W": W}, x=x)["h"].tolist() == [[2.0, 1.0, 4.0]]


@pytest.mark.parametrize("text, snippet, kind", [
    (X + "x = x + 1\noutput o = x\n", "x = x", "(line 1, an input)"),
    (X + "param W : f32[3]\nW = x\noutput o = x\n", "W = x", "(line 2, a param)"),
    (X + "layer d = dense(3 -> 2)\nd = x\noutput o = d\n", "d = x", "(line 2, a layer)"),
    ("fn f(z) = z\n" + X + "f = x\noutput o = f\n", "f = x", "(line 1, a fn)"),
    (X + "output o = x\no = x + 1\n", "o = x +", "(line 2, an output)"),
    (X + "h = x\noutput h = h + 1\n", "h = h", "(line 2, a value)"),
])
def test_rebinding_keeps_the_error_for_declarations(text, snippet, kind):
    err = error(text)
    assert err.message.endswith(f"is already defined {kind}")
    at(err, text, snippet)


def test_a_failed_rebinding_poisons_later_uses_without_cascade():
    with pytest.raises(ErrorGroup) as info:
        lower(X + "h = x\nh = sigmoud(h)\noutput o = h * 2\n")
    assert [e.message for e in info.value.errors] == ["unknown function 'sigmoud'"]


IMG = "input x : f32[B, 1, 8, 8]\n"


@pytest.mark.parametrize("call", [
    "conv2d(1 -> 8, kernel=3, pad=1, stride=2)",
    "conv2d(1 -> 8, kernel_size=3, padding=1, stride=2)",
    "conv2d(1 -> 8, 3, padding=1, stride=2)",
])
def test_keyword_spellings_of_layer_arguments(call):
    want, _ = lower(IMG + "layer c = conv2d(1 -> 8, 3, stride=2, pad=1)\noutput o = c(x)\n")
    graph, _ = lower(IMG + f"layer c = {call}\noutput o = c(x)\n")
    assert graph.params["c.W"].shape == want.params["c.W"].shape
    (p,) = [n for n in graph.nodes if n.op == "patches"]
    assert p.attrs == {"k": 3, "stride": 2, "pad": 1}
    assert graph.outputs["o"].shape == want.outputs["o"].shape


def test_keyword_spellings_of_pool_and_attention():
    graph, _ = lower(IMG + "layer p = maxpool2d(kernel_size=2)\noutput o = p(x)\n")
    assert [str(d) for d in graph.outputs["o"].shape] == ["B", "1", "4", "4"]
    graph, _ = lower("input x : f32[B, 5, 8]\nlayer a = attention(8, num_heads=2)\n"
                     "output o = a(x)\n")
    assert graph.outputs["o"].shape == graph.inputs["x"].shape


@pytest.mark.parametrize("call, message, hint", [
    ("conv2d(1 -> 8, 3, kernel=3)", "'kernel' is given twice", None),
    ("conv2d(1 -> 8, kernel=3, kernel_size=3)", "give the same argument", None),
    ("conv2d(1 -> 8, kernal=3)", "unknown keyword 'kernal'", "did you mean 'kernel'?"),
    ("conv2d(1 -> 8, stride=2, padding=1)", "takes 2 positional arguments, got 1",
     "the form is conv2d(in -> out, kernel, stride=1, pad=0)"),
])
def test_keyword_layer_argument_errors(call, message, hint):
    err = error(IMG + f"layer c = {call}\noutput o = c(x)\n")
    assert message in err.message
    if hint:
        assert err.hint == hint


def test_a_model_without_output_or_loss_warns():
    graph, warnings = lower(X + "h = x * 2\n")
    assert [w.severity for w in warnings] == ["warning"]
    assert "no output and no loss" in warnings[0].message


def test_a_model_with_an_output_does_not_warn():
    assert lower(X + "output o = x * 2\n")[1] == []
