"""``a @ b`` with NumPy's matmul rules for batch dims (issue "Hardening and polish"): a 1-D
or 2-D operand against a batched one, and batch dims that broadcast (``[2, 1, 2, 3] @
[5, 3, 4]``, ``[N, 1, 2, 3] @ [N, 5, 3, 4]``). The outputs equal ``numpy.matmul`` and the
gradients of both operands equal torch autograd's in float64 (the adjoint of a broadcast
operand sums over the axes it was broadcast along); batch dims that do not broadcast are a
located error."""

from __future__ import annotations

import numpy as np
import pytest

import gradc
from gradc.errors import GradcError

torch = pytest.importorskip("torch")

N = 3
CASES = [  # (left shape, right shape); N is the model's dim N
    ("[4, 2]", "[N, 2, 3]"),
    ("[3]", "[N, 3, 4]"),
    ("[2, 3]", "[5, 3, 4]"),
    ("[2, 1, 2, 3]", "[5, 3, 4]"),
    ("[N, 1, 2, 3]", "[N, 5, 3, 4]"),
    ("[N, 2, 3]", "[3]"),
    ("[N, 2, 3]", "[3, 4]"),
]


def _shape(text: str) -> tuple[int, ...]:
    return tuple(N if d.strip() == "N" else int(d) for d in text.strip("[]").split(","))


def _model(left: str, right: str, target: str):
    text = (f"input a : f64{left}\ninput b : f64{right}\noutput o = a @ b\n"
            "loss = sum(sin(a @ b))\n")
    return gradc.compile_string(text, name="mm_broadcast", target=target, wrt=["a", "b"])


#: every case on the numpy target, and one on the cpu target (Numba compile time)
@pytest.mark.parametrize("left, right, target",
                         [(*c, "numpy") for c in CASES] + [(*CASES[3], "cpu")])
def test_batched_matmul_broadcasts_like_numpy_and_torch(left, right, target):
    rng = np.random.default_rng(len(left) + 7 * len(right))
    a, b = rng.standard_normal(_shape(left)), rng.standard_normal(_shape(right))
    m = _model(left, right, target)
    np.testing.assert_allclose(m.forward({}, a=a, b=b)["o"], np.matmul(a, b), rtol=1e-13)
    loss, grads = m.loss_and_grad({}, a=a, b=b)
    ta, tb = (torch.tensor(v, requires_grad=True) for v in (a, b))
    want = torch.sin(ta @ tb).sum()
    want.backward()
    assert loss == pytest.approx(want.item(), rel=1e-12)
    np.testing.assert_allclose(grads["a"], ta.grad.numpy(), rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(grads["b"], tb.grad.numpy(), rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("left, right", [("[2, 2, 3]", "[5, 3, 4]"),
                                         ("[N, 2, 3]", "[4, 3, 4]")])
def test_batch_dims_that_do_not_broadcast_are_a_located_error(left, right):
    with pytest.raises(GradcError, match=r"mm_broadcast\.grad:3:12: error: matmul: batch "
                                         r"dims of .* do not broadcast"):
        _model(left, right, "numpy")
