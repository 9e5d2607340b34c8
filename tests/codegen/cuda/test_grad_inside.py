"""``grad`` inside a model on the CUDA target, under Numba's CUDA simulator: the models of
tests/harness/grad_models.py (third derivatives of a 1-D net, a 2-D Laplacian by slices
of the input gradient, gradient penalties on a classifier) against the CPU target, whose
numbers tests/autodiff/test_grad_inside.py holds to torch: every entry (forward, loss,
loss_and_grad, hvp, train_step, jvp, vjp; train_epoch in float32), float32 and float64
(tests/harness/sim_models.py)."""

from __future__ import annotations

import pytest

from tests.harness import grad_models, sim_models

pytestmark = pytest.mark.slow  # (about 30 s of simulated kernels)


def test_cuda_simulator_matches_cpu():
    pytest.importorskip("numba_cuda", reason="numba-cuda is not installed")
    models = {f"{name}.grad": text for name, (text, _, _) in grad_models.CASES.items()}
    res = sim_models.run(models, {"B": 3})
    assert not res["failures"], "\n".join(res["failures"])
    assert res["checks"] > 150, res
