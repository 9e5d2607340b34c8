"""Regression tests of the call-time and option findings of the fuzzers (issue
"Hardening, continued"): each was a raw exception, a silently wrong value or a module
that could not import."""

from __future__ import annotations

import numpy as np
import pytest

import gradc
from gradc.cli import main
from gradc.errors import GradcError

LABEL = """
model labels
input  x : f64[3]
input  k : i64
loss   = cross_entropy(x, k)
"""


def test_wrt_given_twice_is_an_error_and_nothing_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADC_CACHE_DIR", str(tmp_path / "cache"))
    text = "input x : f64[3]\nparam w : f64[3]\nloss = sum(x * w)\n"
    with pytest.raises(GradcError, match="wrt: 'x' is given more than once"):
        gradc.compile_string(text, wrt=["x", "x"])
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.py"))
    # the same model with wrt=x still compiles and differentiates x
    model = gradc.compile_string(text, wrt=["x"])
    _, grads = model.loss_and_grad({"w": np.arange(3.0)}, x=np.ones(3))
    np.testing.assert_array_equal(grads["x"], np.arange(3.0))


def test_cli_wrt_given_twice_exits_2(tmp_path, capsys):
    path = tmp_path / "m.grad"
    path.write_text("input x : f64[3]\nparam w : f64[3]\nloss = sum(x * w)\n")
    code = main(["compile", str(path), "--wrt", "x,x", "-o", str(tmp_path / "out.py")])
    assert code == 2
    assert "given more than once" in capsys.readouterr().err
    assert not (tmp_path / "out.py").exists()


def test_constant_loss_has_zero_gradients():
    model = gradc.compile_string("param w : f64[2]\nloss = 1\n", name="constant")
    loss, grads = model.loss_and_grad({"w": np.array([3.0, 4.0])})
    assert loss == 1.0
    np.testing.assert_array_equal(grads["w"], [0.0, 0.0])
    alone = gradc.compile_string("loss = 1\n", name="constant_alone")
    assert alone.loss_and_grad({}) == (1.0, {})
    assert alone.loss({}) == 1.0


@pytest.fixture(scope="module")
def labels():
    return gradc.compile_string(LABEL, name="labels")


def test_float_for_an_integer_input_is_a_value_error(labels):
    with pytest.raises(ValueError, match=r"k: expected an integer \(i64\), got 1.7"):
        labels.loss({}, x=np.ones(3), k=1.7)
    assert labels.loss({}, x=np.ones(3), k=2) == pytest.approx(np.log(3), rel=1e-15)


def test_integer_out_of_range_is_a_value_error(labels):
    with pytest.raises(ValueError, match="k: 1180591620717411303424 does not fit in i64"):
        labels.loss({}, x=np.ones(3), k=2 ** 70)


def test_big_endian_array_names_the_byte_order(labels):
    x = np.ones(3, dtype=">f8")
    with pytest.raises(ValueError, match=r"x: expected dtype f64 \(float64\) in the "
                                         r"machine's byte order, got a big-endian float64"):
        labels.loss({}, x=x, k=1)
    assert labels.loss({}, x=x.astype(np.float64), k=1) == pytest.approx(np.log(3), rel=1e-15)


def test_forward_fast_path_still_checks_names():
    """After a warm call (the fast path), an unknown input is still a ValueError."""
    model = gradc.compile_string("input x : f64[B, 3]\nparam w : f64[3]\noutput o = x * w\n",
                                 name="fast_forward")
    params, x = {"w": np.ones(3)}, np.ones((2, 3))
    model.forward(params, x=x)
    model.forward(params, x=x)
    with pytest.raises(ValueError, match="unknown input 'X'"):
        model.forward(params, x=x, X=x)
    with pytest.raises(ValueError, match="params: expected a dict"):
        model.forward([np.ones(3)], x=x)


def test_read_only_params_to_train_step_are_a_value_error():
    model = gradc.compile_string("input x : f64[B, 3]\nparam w : f64[3]\nloss = sum(x * w)\n",
                                 name="read_only")
    w = np.ones(3)
    w.flags.writeable = False
    for _ in range(2):  # the general path, then the fast path
        with pytest.raises(ValueError, match="w: array is read-only"):
            model.train_step({"w": w}, 0.1, x=np.ones((2, 3)))
        model.train_step({"w": np.ones(3)}, 0.1, x=np.ones((2, 3)))


def test_vjp_binds_the_dims_of_a_wrt_input_no_output_reads():
    model = gradc.compile_string("input x1 : f64[B, 2]\ninput x2 : f64[B, T, 3]\n"
                                 "output o = x1 * 2\nloss = sum(x2)\n", name="unbound",
                                 wrt=["x2"])
    grads = model.vjp({}, {}, x1=np.ones((2, 2)), x2=np.ones((2, 3, 3)))
    np.testing.assert_array_equal(grads["x2"], np.zeros((2, 3, 3)))


def test_bad_seed_state_and_options_are_clear_errors():
    model = gradc.compile_string("input x : f64[B, 3]\nparam w : f64[3]\nloss = sum(x * w)\n",
                                 name="seed_state")
    params, x = {"w": np.ones(3)}, np.ones((2, 3))
    with pytest.raises(ValueError, match="seed: expected an int or None, got str"):
        model.loss(params, seed="abc", x=x)
    with pytest.raises(ValueError, match="state: expected a dict, got list"):
        model.train_step(params, 0.1, state=[], x=x)
    for _ in range(2):  # the general path, then (after a good step) the fast path
        with pytest.raises(ValueError, match=r"state\['step'\]: expected the step count"):
            model.train_step(params, 0.1, state={"step": "x"}, x=x)
        model.train_step(params, 0.1, x=x)
    for bad in (["adam"], 42, {"name": "adam", "beta1": "abc"}, {"name": {"a": 1}}):
        with pytest.raises(GradcError, match="optimizer"):
            gradc.compile_string("param w : f64\nloss = w * w\n", optimizer=bad)
    with pytest.raises(GradcError, match="wrt: expected input names, got None"):
        gradc.compile_string("input x : f64\nloss = x * x\n", wrt=[None])


def test_call_time_hints_and_empty_batches():
    model = gradc.compile_string("input x : f64[B, 3]\nparam w : f64[3]\noutput o = x * w\n",
                                 name="hints")
    params = {"w": np.ones(3)}
    with pytest.raises(ValueError, match=r"unknown input 'X'; did you mean 'x'\?"):
        model.forward(params, X=np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"x: expected shape \[B, 3\], got \[0, 3\] "
                                         r"\(every size must be at least 1: B is 0\)"):
        model.forward(params, x=np.ones((0, 3)))
