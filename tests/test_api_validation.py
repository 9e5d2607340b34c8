"""Argument validation of the Python API (SPEC §2): wrong names, shapes, dtypes or
non-contiguous arrays raise ``ValueError`` naming the argument (and the expected and actual
shape), never a crash and never a silent copy."""

from __future__ import annotations

import functools
import re

import numpy as np
import pytest

import gradc

pytestmark = pytest.mark.slow  # (every test here takes more than a few seconds)

SRC = """\
model api
input x : f32[B, 6]
input y : i64[B]
input s : f32
param W : f32[6, 3]
param b : f32[3]
output logits = x @ W + b * s
loss = cross_entropy(logits, y)
"""


@functools.cache
def model() -> gradc.Model:
    return gradc.compile_string(SRC, name="api")


def good(batch=4):
    rng = np.random.default_rng(0)
    params = model().init_params(0)
    x = rng.standard_normal((batch, 6)).astype(np.float32)
    y = rng.integers(0, 3, batch).astype(np.int64)
    return params, {"x": x, "y": y, "s": 1.5}


def names(msg: str, arg: str) -> bool:
    """True when ``msg`` names ``arg`` as a word (not inside a mangled name like x_y)."""
    return re.search(rf"(?<![\w.]){re.escape(arg)}(?![\w])", msg) is not None


def raises(fn, *args, arg: str, **kw) -> str:
    """Call ``fn``; assert a ValueError whose message names ``arg``; return the message."""
    with pytest.raises(ValueError) as info:
        fn(*args, **kw)
    msg = str(info.value)
    assert names(msg, arg), f"message does not name {arg!r}: {msg}"
    return msg


# ---------------------------------------------------------------------- what works
def test_valid_call_works_and_python_float_scalars_are_accepted():
    params, ins = good()
    loss, grads = model().loss_and_grad(params, **ins)
    assert np.isfinite(loss) and set(grads) == {"W", "b"}
    assert model().loss_and_grad(params, **dict(ins, s=np.array(1.5, np.float32)))[0] == loss
    out = model().forward(params, x=ins["x"], s=2)      # a Python int is a number too
    assert out["logits"].shape == (4, 3) and out["logits"].dtype == np.float32


def test_numpy_scalar_of_the_declared_dtype_is_accepted():
    """np.float32(1.5) for an f32 scalar input (np.float64 works: it subclasses float)."""
    params, ins = good()
    out = model().forward(params, x=ins["x"], s=np.float32(1.5))
    np.testing.assert_allclose(out["logits"], ins["x"] @ params["W"] + params["b"] * 1.5,
                               rtol=1e-5)


# ---------------------------------------------------------------------- names
def test_unknown_input_name_suggests_the_close_one():
    params, ins = good()
    msg = raises(model().forward, params, x=ins["x"], ss=ins["s"], arg="ss")
    assert "'s'" in msg, msg
    msg = raises(model().loss_and_grad, params, x=ins["x"], s=1.0, yy=ins["y"], arg="yy")
    assert "did you mean 'y'" in msg, msg


def test_missing_input():
    params, ins = good()
    raises(model().loss_and_grad, params, x=ins["x"], s=1.0, arg="y")
    raises(model().forward, params, s=1.0, arg="x")


def test_params_missing_or_unknown_key():
    params, ins = good()
    del params["b"]
    raises(model().forward, params, **ins, arg="b")
    params, ins = good()
    params["c"] = np.zeros(3, np.float32)
    raises(model().loss_and_grad, params, **ins, arg="c")
    params, ins = good()
    params["w"] = params.pop("W")
    msg = raises(model().forward, params, **ins, arg="w")
    assert names(msg, "W"), msg


def test_params_not_a_dict():
    _, ins = good()
    raises(model().forward, [1, 2], **ins, arg="params")


# ---------------------------------------------------------------------- dtypes and shapes
def test_wrong_dtype_f64_for_f32():
    params, ins = good()
    msg = raises(model().forward, params, **dict(ins, x=ins["x"].astype(np.float64)), arg="x")
    assert "f32" in msg or "float32" in msg, msg
    assert "float64" in msg or "f64" in msg, msg
    params["W"] = params["W"].astype(np.float64)
    raises(model().forward, params, **ins, arg="W")


def test_wrong_integer_dtype_for_labels():
    params, ins = good()
    raises(model().loss_and_grad, params, **dict(ins, y=ins["y"].astype(np.float32)), arg="y")
    raises(model().loss_and_grad, params, **dict(ins, y=ins["y"].astype(np.int32)), arg="y")


def test_wrong_rank():
    params, ins = good()
    msg = raises(model().forward, params, **dict(ins, x=ins["x"][0]), arg="x")
    assert "[6]" in msg, msg
    raises(model().forward, params, **dict(ins, s=np.ones(1, np.float32)), arg="s")


def test_wrong_shape_message_shows_expected_and_actual():
    params, ins = good()
    x = np.zeros((4, 30), np.float32)
    msg = raises(model().forward, params, **dict(ins, x=x), arg="x")
    assert "x: expected shape [B=4, 6], got [4, 30]" in msg, msg
    params["b"] = np.zeros(4, np.float32)
    msg = raises(model().forward, params, **ins, arg="b")
    assert "[3]" in msg and "[4]" in msg, msg


def test_inconsistent_dim_between_inputs():
    params, ins = good()
    msg = raises(model().loss_and_grad, params, **dict(ins, y=ins["y"][:3]), arg="y")
    assert "B" in msg and "4" in msg and "3" in msg, msg


def test_empty_batch_is_rejected():
    params, ins = good()
    raises(model().forward, params, **dict(ins, x=np.zeros((0, 6), np.float32)), arg="x")


@pytest.mark.parametrize("make", [
    lambda x: np.repeat(x, 2, axis=1)[:, ::2],                 # strided view
    lambda x: np.asfortranarray(x),                            # Fortran order
    lambda x: np.ascontiguousarray(x.T).T,                     # a transpose
])
def test_non_contiguous_arrays_are_rejected(make):
    params, ins = good()
    x = make(ins["x"])
    assert x.shape == ins["x"].shape and not x.flags.c_contiguous
    msg = raises(model().forward, params, **dict(ins, x=x), arg="x")
    assert "contiguous" in msg, msg
    params["W"] = np.asfortranarray(params["W"])
    raises(model().loss_and_grad, params, **ins, arg="W")


def test_not_an_array():
    params, ins = good()
    raises(model().forward, params, **dict(ins, x=ins["x"].tolist()), arg="x")
    raises(model().forward, params, **dict(ins, x=1.0), arg="x")
    raises(model().forward, params, **dict(ins, s="1.0"), arg="s")


# ---------------------------------------------------------------------- labels
@pytest.mark.parametrize("bad", [3, -1, 10**6])
def test_label_out_of_range_is_a_value_error(bad):
    params, ins = good()
    y = ins["y"].copy()
    y[2] = bad
    before = {k: v.copy() for k, v in params.items()}
    msg = raises(model().loss_and_grad, params, **dict(ins, y=y), arg="y")
    assert "label" in msg, msg
    raises(model().train_step, params, 0.1, **dict(ins, y=y), arg="y")
    for k in params:     # no update happened
        np.testing.assert_array_equal(params[k], before[k])


# ---------------------------------------------------------------------- jvp / vjp extras
def test_tangents_and_cotangents_are_validated():
    params, ins = good()
    fwd = {"x": ins["x"], "s": ins["s"]}
    raises(model().jvp, params, {"V": np.zeros((6, 3), np.float32)}, **fwd, arg="V")
    raises(model().jvp, params, {"W": np.zeros((6, 4), np.float32)}, **fwd, arg="W")
    raises(model().vjp, params, {"logit": np.zeros((4, 3), np.float32)}, **fwd, arg="logit")
    raises(model().vjp, params, {"logits": np.zeros((5, 3), np.float32)}, **fwd,
           arg="logits")
    raises(model().vjp, params, {"logits": np.zeros((4, 3), np.float64)}, **fwd,
           arg="logits")


@pytest.mark.parametrize("fn,arg", [("jvp", "tangents"), ("vjp", "cotangents"),
                                    ("hvp", "vector")])
def test_a_bad_direction_dict_names_its_argument(fn, arg):
    """jvp's tangents, vjp's cotangents and hvp's vector are named as the caller wrote
    them (hvp said 'tangent'): an unknown key, a wrong shape, not a dict."""
    params, ins = good()
    call = functools.partial(getattr(model(), fn), params, **(
        ins if fn == "hvp" else {"x": ins["x"], "s": ins["s"]}))
    known = "logits" if fn == "vjp" else "W, b"
    with pytest.raises(ValueError, match=rf"^unknown key 'q' in {arg} \(known: {known}\)$"):
        call({"q": np.zeros(3, np.float32)})
    key = "logits" if fn == "vjp" else "W"
    with pytest.raises(ValueError, match=rf"^{arg}\['{key}'\]: expected shape"):
        call({key: np.zeros(2, np.float32)})
    with pytest.raises(ValueError, match=rf"^{arg}: expected a dict of arrays, got list$"):
        call([])


def test_no_silent_copy_train_step_updates_the_callers_arrays():
    params, ins = good()
    W = params["W"]
    before = W.copy()
    model().train_step(params, 0.5, **ins)
    assert params["W"] is W and not np.array_equal(W, before)


def test_cuda_target_without_a_gpu_is_a_clear_error(monkeypatch):
    """Target 'cuda' compiles anywhere (the module is only text), but the first call that
    needs the device on a machine without one is a GradcError saying what to do, not a
    driver exception."""
    cuda = pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
    monkeypatch.setattr(cuda, "is_available", lambda: False)
    m = gradc.compile_string(SRC, name="api", target="cuda")
    assert "from numba import cuda" in m.source
    for call in (lambda: m.init_params(0), lambda: m.forward({}, x=np.zeros((2, 6)))):
        with pytest.raises(gradc.GradcError, match="target 'cuda' needs an NVIDIA GPU") as e:
            call()
        assert "NUMBA_ENABLE_CUDASIM=1" in str(e.value)
