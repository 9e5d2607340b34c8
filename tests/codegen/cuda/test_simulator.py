"""The CUDA target against the CPU target, under the CUDA simulator (no GPU needed).

Each group of models (:data:`tests.harness.agreement.GROUP_NAMES`) runs in a subprocess
(the worker :mod:`tests.harness.cuda_sim`) with ``NUMBA_ENABLE_CUDASIM=1`` set before numba
is imported, so no other test module sees the simulator; groups run side by side on the
available cores. Both targets run ``forward``, ``loss``, ``loss_and_grad``, ``hvp``,
``train_step`` (and jvp/vjp, train_epoch, training-mode forward and loss, device inputs,
user errors where a group says so) and must agree: 1e-5 relative in float32, 1e-10 in
float64 (norm-wise, per array).

Speed: the simulator runs each CUDA thread as a Python thread, so the generated module
launches tiny grids under it (8 threads a block, at most 2 blocks: every grid-stride,
multi-block and multi-tile path still runs), shapes are tiny, and the worker shortens
Python's thread switch interval (the simulator polls its threads). The CPU target runs
with ``NUMBA_DISABLE_JIT=1``: the same generated code, interpreted, instead of minutes of
Numba compilation (``GRADC_CUDA_SIM_CPU_JIT=1`` compiles it).

By hand: ``NUMBA_ENABLE_CUDASIM=1 NUMBA_DISABLE_JIT=1 python -m tests.harness.cuda_sim GROUP``.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

from tests.harness.agreement import GROUP_NAMES, check_result, run_workers, selected

pytestmark = pytest.mark.slow  # (every test here takes more than a few seconds)

needs_cuda = pytest.mark.skipif(importlib.util.find_spec("numba_cuda") is None,
                                reason="numba-cuda is not installed (pip install gradc[cuda])")


@pytest.fixture(scope="module")
def results(request):
    """The workers of the selected groups, one group each, ``os.cpu_count()`` at a time:
    name -> result."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    if os.environ.get("GRADC_CUDA_SIM_CPU_JIT") != "1":
        env["NUMBA_DISABLE_JIT"] = "1"
    wanted = selected(request, __name__)
    return run_workers("tests.harness.cuda_sim", [[name] for name in wanted], env,
                       os.cpu_count() or 1, timeout=900)


@needs_cuda
@pytest.mark.parametrize("group", GROUP_NAMES)
def test_cuda_matches_cpu(results, group):
    check_result(results, group)
