"""The random-model fuzzer's CI slice (tests/harness/fuzz/models.py): 36 random well-typed models,
compiled in float64 for the numpy target, agree with their PyTorch twins (forward, loss,
every gradient, vjp, jvp, hvp) and with central differences; 3 more compiled for the cpu
target (Numba) agree on forward and loss_and_grad. Models evaluated too close to a
non-differentiable point are skips, not failures; at most a few may be."""

from __future__ import annotations

import pytest

from tests.harness import seeds
from tests.harness.fuzz import campaign

pytestmark = pytest.mark.slow  # (every test here takes more than a few seconds)

SCALE = campaign.env_int("GRADC_FUZZ_SCALE", 1)


def _check(tally):
    print(tally.report())
    failure = tally.failure()
    assert failure is None, failure
    judged = tally.n - sum(n for c, n in tally.counts.items() if c.startswith("model:kink")
                           or c.startswith("model:nonfinite"))
    assert judged >= 0.8 * tally.n, "too many random models could not be judged"


def test_random_models_agree_with_torch_numpy_target():
    tally = campaign.models(count=36 * SCALE, seed0=seeds.seed(1), target="numpy")
    _check(tally)
    assert tally.counts["model:agrees"] >= 30 * SCALE


def test_random_models_agree_with_torch_cpu_target():
    _check(campaign.models(count=3 * SCALE, seed0=seeds.seed(2), target="cpu"))


def test_the_slice_covers_every_elementwise_builtin_and_every_loss():
    from gradc.ir.ops import ELEMENTWISE
    from tests.harness.fuzz import models
    features = set()
    for i in range(36 * SCALE):
        features |= models.generate(seeds.seed(1) * 1_000_003 + i).features
    need = (set(ELEMENTWISE) - {"max", "min"}) | {"max2", "min2", "matmul", "concat", "slice",
                                                 "reshape", "transpose", "where", "fn",
                                                 "keepdims", "broadcast", "softmax",
                                                 "log_softmax", "neg-pow", "rebinding",
                                                 "scan", "grad"}
    need |= {f"loss-{k}" for k in models.LOSS_KINDS}
    need |= {f"reduce-{r}" for r in ("sum", "mean", "max", "min", "logsumexp")}
    assert not need - features, sorted(need - features)
