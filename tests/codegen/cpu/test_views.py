"""The CPU target's workspace views (gradc/codegen/cpu/views.py): one small Numba function,
compiled once per rank for its explicit signatures, however many call sites and constant
dims the kernels have; in plain Python it is the slice-and-reshape it replaces."""

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
