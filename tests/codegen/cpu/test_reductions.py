"""The CPU target's reductions whose reduced axes lead kept ones (``sum(x, axis=(0, 2, 3))``
of NCHW: batchnorm's statistics): the reduced axes after the last kept one accumulate in a
local per row, combined into the output once per row (the output, a workspace view, is
not stored to in every step, so the row vectorises). Every pattern of kept and reduced
axes of a rank-4 input, for sum, max and min, against NumPy, in one module: its kernels
also see the input with several shapes of one rank under one name (``x_x_r3``), which
each kernel must name again (a kernel reading the first kernel's view returned garbage
from beyond the array before)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest

import gradc

pytestmark = pytest.mark.slow  # (compiles one module of 3 x 14 reductions: ~10 s)

#: every set of reduced axes of a rank-4 input but none and all
AXES = [c for r in (1, 2, 3) for c in itertools.combinations(range(4), r)]
KINDS = ("sum", "max", "min")


def _model() -> str:
    lines = ["model reductions", "input x : f64[B, 3, 4, 5]"]
    for kind in KINDS:
        for axes in AXES:
            name = f"{kind}_{''.join(map(str, axes))}"
            lines.append(f"output {name} = {kind}(x, axis=({', '.join(map(str, axes))},))")
    return "\n".join(lines) + "\n"


def test_every_axes_pattern_of_sum_max_and_min_is_numpys():
    model = gradc.compile_string(_model(), "reductions.grad", wait=True)
    x = np.random.default_rng(7).standard_normal((6, 3, 4, 5))
    got = model.forward({}, x=x)
    for kind in KINDS:
        for axes in AXES:
            want = getattr(np, kind)(x, axis=axes)
            np.testing.assert_allclose(got[f"{kind}_{''.join(map(str, axes))}"], want,
                                       rtol=1e-13, atol=1e-13, err_msg=f"{kind}{axes}")
    text = Path(model.module.__file__).read_text(encoding="utf-8")
    forward = text[text.index("def _forward_"):]
    forward = forward[:forward.index("\n\n")]
    # (0, 2, 3) keeps axis 1 only: each row over axes 2 and 3 (one loop of 20 once
    # collapsed) sums into a local, added to the output once per row
    assert re.search(r"\n( +)a_ = 0\.0\n\1for i2 in range\(20\):\n(\1    [^\n]+\n)+"
                     r"\1v\d+\[i1\] \+= a_\n", forward), "no row accumulator"
    # x is seen as [B, 3, 20] and as [B, 12, 5], both named x_x_r3: each where it is used
    assert len(re.findall(r"x_x_r3 = x_x\.reshape\(", forward)) > 1
