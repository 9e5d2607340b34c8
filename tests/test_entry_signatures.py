"""Regression tests of keyword-only arguments (issue 12): every public function takes
``params`` and what SPEC shows by position (``lr``; the tangent, cotangent or vector dict),
and everything after them by keyword only. ``forward(p, X)`` used to bind X to
``training`` and run; now it is a TypeError naming the function, raised as the arguments
are bound, before any kernel is compiled or run."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import gradc
from gradc.entries import ENTRIES, argument_names
from gradc.errors import ErrorGroup

pytestmark = pytest.mark.slow  # (every test here takes more than a few seconds)

MODEL = ("input x : f64[B, 3]\ninput y : i64[B]\nparam W : f64[3, 2]\n"
         "output o = x @ W\nloss = cross_entropy(o, y)\n")

#: the positional parameters of each function (SPEC §2 and §4); the rest is keyword-only
POSITIONAL = {"forward": ["params"], "loss": ["params"], "loss_and_grad": ["params"],
              "train_step": ["params", "lr"], "train_epoch": ["params", "lr"],
              "jvp": ["params", "tangents"], "vjp": ["params", "cotangents"],
              "hvp": ["params", "vector"], "jacobian": ["params"]}


@pytest.fixture(scope="module", params=["numpy", "cpu"])
def model(request):
    return gradc.compile_string(MODEL, name="kw", target=request.param)


def data():
    return {"x": np.ones((2, 3)), "y": np.array([0, 1])}


def test_the_registry_has_a_row_for_every_function():
    assert set(POSITIONAL) == set(ENTRIES)


@pytest.mark.parametrize("name", sorted(POSITIONAL))
def test_generated_signatures_are_keyword_only_after_spec_positionals(model, name):
    sig = inspect.signature(getattr(model.module, name).__wrapped__)
    kinds = {p.name: p.kind for p in sig.parameters.values()}
    positional = [n for n, k in kinds.items() if k is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert positional == POSITIONAL[name]
    assert list(kinds.values())[-1] is inspect.Parameter.VAR_KEYWORD
    assert all(k in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD)
               for n, k in kinds.items() if n not in POSITIONAL[name])
    assert "state" in kinds
    assert f"{name}(params, " in getattr(type(model), name).__doc__


@pytest.mark.parametrize("name", sorted(POSITIONAL))
def test_one_positional_too_many_is_a_type_error_naming_the_function(model, name):
    p = model.init_params(0)
    args = {"forward": [], "loss": [], "loss_and_grad": [], "train_step": [0.1],
            "train_epoch": [0.1], "jvp": [{}], "vjp": [{}], "hvp": [{}],
            "jacobian": []}[name]
    extra = np.ones((2, 3))  # an input passed by position
    for fn in (getattr(model, name), getattr(model.module, name)):
        with pytest.raises(TypeError, match=rf"^{name}\(\) takes {len(args) + 1} positional"):
            fn(p, *args, extra, **data())


def test_forward_with_an_input_by_position_no_longer_runs(model):
    p = model.init_params(0)
    with pytest.raises(TypeError, match="forward"):
        model.forward(p, np.ones((2, 3)))


def test_what_spec_shows_still_works(model):
    p = model.init_params(0)
    assert set(model.forward(p, **data())) == {"o"}
    first = model.loss(p, **data())
    model.train_step(p, 0.1, state={}, **data())        # SPEC §4: train_step(params, lr, ...)
    model.train_step(p, lr=0.1, state={}, **data())     # SPEC §2: lr= by keyword
    model.train_epoch(p, 0.1, batch_size=1, seed=0, state={}, **data())
    model.train_epoch(p, lr=0.1, batch_size=2, seed=0, state={}, **data())
    assert model.loss(p, **data()) < first
    _, tans = model.jvp(p, {"W": np.ones((3, 2))}, **data())
    assert tans["o"].shape == (2, 2)
    assert model.vjp(p, {"o": np.ones((2, 2))}, **data())["W"].shape == (3, 2)
    assert model.hvp(p, {"W": np.ones((3, 2))}, **data())["W"].shape == (3, 2)
    assert model.jacobian(p, of="o", wrt="W", x=np.ones((2, 3))).shape == (2, 2, 3, 2)


@pytest.mark.parametrize("name", ["vector", "of", "wrt", "lr", "training"])
def test_an_input_named_like_an_argument_is_a_located_error(name):
    assert name in argument_names()
    with pytest.raises(ErrorGroup, match=rf"input name '{name}' is reserved") as info:
        gradc.compile_string(f"input {name} : f64[B, 3]\noutput o = {name} * 2\n",
                             target="numpy")
    assert info.value.errors[0].span.line == 1
