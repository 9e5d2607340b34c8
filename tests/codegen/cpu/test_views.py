"""The CPU target's workspace views (gradc/codegen/cpu/views.py): one small Numba function,
compiled once per rank for its explicit signatures, however many call sites and constant
dims the kernels have; in plain Python it is the slice-and-reshape it replaces. A function
views each workspace slot and shape once and names only what it uses, and reads its
float32 literals as module constants (both cut Numba's compile time)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import gradc
from gradc.codegen.cpu import views as cpu_views

from tests.harness.paths import EXAMPLES

pytestmark = pytest.mark.slow  # (every test here takes more than a few seconds)



def test_a_view_is_the_slice_reshaped_without_a_copy():
    ws = np.arange(40.0)
    view = cpu_views._ws_view(ws, 7, (2, 3, 4))
    assert np.array_equal(view, ws[7:31].reshape(2, 3, 4))
    view[1, 2, 3] = -1.0
    assert ws[30] == -1.0


def test_signatures_are_one_per_dtype_and_rank():
    assert cpu_views.signatures({("f64", 2), ("f32", 3)}) == [
        "float32[:, :, ::1](float32[::1], int64, UniTuple(int64, 3))",
        "float64[:, ::1](float64[::1], int64, UniTuple(int64, 2))"]


@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_the_kernels_compile_no_view_per_call_site(dtype):
    """cnn's forward and loss make dozens of views with constant dims (8, 16, 72, ...):
    after running them, the view function still has only its declared signatures, and
    the kernels print no reshape of a workspace slice."""
    model = gradc.compile(EXAMPLES / "cnn.grad", dtype=dtype, wait=True)
    module = model.module
    x = np.random.default_rng(0).standard_normal((5, 1, 8, 8)).astype(f"float{dtype[1:]}")
    y = np.arange(5)
    params = model.init_params(0)
    model.forward(params, x=x)
    model.loss(params, x=x, y=y)
    declared = set(module._ws_view.signatures)
    assert len(declared) == 3  # ranks 2, 3 and 4
    text = Path(module.__file__).read_text()
    assert "_ws_view(ws, " in text and not re.search(r"= ws\[[^\]]*\]\.reshape\(", text)
    reference = gradc.compile(EXAMPLES / "cnn.grad", dtype=dtype, target="numpy")
    tol = 1e-5 if dtype == "f32" else 1e-12
    assert model.loss(params, x=x, y=y) == pytest.approx(
        reference.loss(params, x=x, y=y), rel=tol)


def _kernels(dtype: str, model: str = "cnn.grad") -> tuple[str, list[str]]:
    """The module text of an example (compiler only, Adam: train_epoch's loop included)
    and the source of each of its njit kernels and bodies."""
    from gradc.pipeline import Options, compile_source
    from gradc.source import Source

    path = EXAMPLES / model
    text = compile_source(Source(path.read_text(encoding="utf-8"), path.name),
                          Options.make(dtype=dtype, optimizer="adam"), "0" * 64)[0]
    chunks = text.split("@nb.njit(**_JIT)\n")[1:]
    return text, [re.split(r"\n(?=\S)", c, maxsplit=1)[0] for c in chunks]


@pytest.mark.parametrize("model", ["cnn.grad", "spiral.grad", "char_rnn.grad"])
def test_a_function_views_each_slot_and_shape_once_and_names_only_what_it_uses(model):
    """Each (offset, shape) of the workspace is one ``_ws_view`` call per function; every
    view or alias a function assigns is read again (no view printed for nothing)."""
    _, kernels = _kernels("f32", model)
    assert kernels
    for body in kernels:
        calls = re.findall(r"= (_ws_view\(ws, .*\))$", body, re.M)
        assert len(calls) == len(set(calls)), body.split("\n")[0]
        names = re.findall(r"^\s+(v\w+) = (?:_ws_view\(|ws\[|v\w+$|\w+\.reshape\()", body,
                           re.M)
        for name in names:
            assert len(re.findall(rf"\b{name}\b", body)) >= 2, (name, body.split("\n")[0])


def test_float32_literals_are_module_constants_named_by_their_value():
    """No ``np.float32(<literal>)`` call inside a float32 kernel: each literal is a module
    constant whose name spells its value; float64 kernels have none."""
    from gradc.codegen.cpu.printer import constant_name

    text, kernels = _kernels("f32")
    used = set()
    for body in kernels:
        assert not re.search(r"np\.float32\((-?[0-9.]|float|np\.inf)", body), body[:80]
        used |= set(re.findall(r"\b_f32_\w+", body))
    defined = dict(re.findall(r"^(_f32_\w+) = np\.float32\((.*)\)$", text, re.M))
    assert used and used == set(defined)
    for name, value in defined.items():
        number = float(value[7:-2]) if value.startswith("float(") else float(value)
        assert name == constant_name(repr(number))
    assert "_f32_" not in _kernels("f64")[0]
