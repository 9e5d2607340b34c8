"""Every row of ``tests/harness/op_specs.py`` against the three oracles (DESIGN.md principle 7).

The rows of one group are compiled into ONE model (:class:`op_specs.Group`), once in float64
and once in float32. Each test checks one row inside that model: the loss checks zero every
weight ``wJ`` but the row's and move only the row's leaves, the output checks look at the
row's output only, so a failure names its op.
"""

from __future__ import annotations

import numpy as np
import pytest

from gradc.ir.ops import ELEMENTWISE, OPERATORS

from tests.harness.op_specs import ROWS, Row, by_name, group
from tests.harness.oracles import (diff_leaves, directions, fd_check_jvp, fd_check_loss,
                                   fd_check_vjp, reference_check, rel_err)

pytestmark = pytest.mark.slow  # (every test here takes more than a few seconds)

ROW_PARAMS = [pytest.param(r, id=r.name) for r in ROWS]


def test_table_is_complete():
    """Every elementwise op and every operator has at least one row; names are unique."""
    by_name()
    covered = {c for r in ROWS for c in r.covers}
    missing = sorted(set(ELEMENTWISE) - covered)
    assert not missing, f"elementwise ops without a row in tests/harness/op_specs.py: {missing}"
    missing = sorted(set(OPERATORS) - covered)
    assert not missing, f"operators without a row in tests/harness/op_specs.py: {missing}"
    for r in ROWS:
        assert set(r.covers) <= set(ELEMENTWISE) | set(OPERATORS), r.name


@pytest.mark.parametrize("r", ROW_PARAMS)
def test_fd_loss_and_grad(r: Row):
    g = group(r.group)
    params, inputs = g.values(r)
    fd_check_loss(g.model(), params, inputs, g.wrt, tol=r.tol, only=g.row_leaves(r),
                  label=f"{r.name} ({g.out(r)})")


@pytest.mark.parametrize("r", ROW_PARAMS)
def test_fd_jvp(r: Row):
    g = group(r.group)
    params, inputs = g.values(r)
    fd_check_jvp(g.model(), params, inputs, g.wrt, outputs=[g.out(r)], tol=r.tol,
                 only=g.row_leaves(r), label=f"{r.name} ({g.out(r)})")


@pytest.mark.parametrize("r", ROW_PARAMS)
def test_fd_vjp(r: Row):
    g = group(r.group)
    params, inputs = g.values(r)
    fd_check_vjp(g.model(), params, inputs, g.wrt, output=g.out(r), tol=r.tol,
                 only=g.row_leaves(r), label=f"{r.name} ({g.out(r)})")


@pytest.mark.parametrize("r", ROW_PARAMS)
def test_reference_interpreter(r: Row):
    g = group(r.group)
    params, inputs = g.values(r)
    rng = np.random.default_rng(1)
    model = g.model()
    tangents = directions(rng, diff_leaves(params, inputs, g.wrt), g.row_leaves(r))
    out = g.out(r)
    cot = {out: rng.standard_normal(np.shape(model.forward(params, **inputs)[out]))}
    reference_check(model, g.text, filename=g.filename, dtype="f64", wrt=g.wrt,
                    params=params, inputs=inputs, tangents=tangents, cotangents=cot,
                    outputs=[out], grads=g.row_leaves(r), label=f"{r.name} ({out})")


@pytest.mark.parametrize("r", ROW_PARAMS)
def test_float32_matches_float64(r: Row):
    """The float32 build's vjp agrees with float64's and returns float32 arrays: catches
    float32-specific codegen bugs (literal typing, float64 leaking into results)."""
    g = group(r.group)
    out = g.out(r)
    p64, i64 = g.values(r, "f64")
    p32, i32 = g.values(r, "f32")
    m64, m32 = g.model("f64"), g.model("f32")
    shape = np.shape(m64.forward(p64, **i64)[out])
    cot = np.random.default_rng(2).standard_normal(shape)
    g64 = m64.vjp(p64, {out: cot}, **i64)
    g32 = m32.vjp(p32, {out: np.array(cot, np.float32)}, **i32)
    problems = []
    for n in g.row_leaves(r):
        a32 = g32[n]
        if not (isinstance(a32, np.ndarray) and a32.dtype == np.float32):
            problems.append(f"grad[{n}] is {type(a32).__name__} of dtype "
                            f"{np.asarray(a32).dtype}, not a float32 array")
        e = rel_err(a32, g64[n], floor=1e-6 * (1 + float(np.linalg.norm(cot))))
        if not e <= r.tol32:
            problems.append(f"grad[{n}]: f32 vs f64 relative error {e:.3g}")
    assert not problems, f"[{r.name} ({out})] " + "\n  ".join(problems)
