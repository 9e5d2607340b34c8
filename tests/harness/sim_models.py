"""Models of single-layer tests through the CUDA target's comparison with the CPU target
under Numba's CUDA simulator (:mod:`tests.harness.cuda_sim`).

:func:`run` (the pytest side) starts this module in a subprocess with the simulator switched
on before Numba is imported, as ``tests/codegen/cuda/test_simulator.py`` runs its groups,
and returns the worker's ``{"checks": n, "failures": [...]}``. The worker compiles each model
for both targets in float32 and float64 and runs :func:`tests.harness.cuda_sim.compare`
(forward, loss, loss_and_grad, hvp, train_step, jvp and vjp, and train_epoch in float32):
1e-5 relative in float32, 1e-10 in float64. Float inputs named ``w_…`` (the loss weights of
:mod:`tests.harness.layer_checks`, ``loss = sum(o * o * w_o)``) are drawn positive: a loss
unbounded below would make the training steps diverge.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.harness.paths import ROOT


def run(models: dict[str, str], dims: dict[str, int]) -> dict:
    """Compare ``models`` (file name -> model text) at ``dims`` on both targets."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", NUMBA_DISABLE_JIT="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", __name__], env=env, timeout=900,
                          input=json.dumps({"models": models, "dims": dims}),
                          capture_output=True, text=True, cwd=str(ROOT))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {"checks": 0, "failures": [f"worker exited with {proc.returncode}:\n"
                                          f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"]}
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    """The worker: read the job from stdin, print ``RESULT {json}``."""
    import numpy as np

    from tests.harness import cuda_sim as sim
    from tests.harness.agreement import Checker, draw_inputs

    job = json.loads(sys.stdin.read())
    sys.setswitchinterval(5e-5)
    np.seterr(all="ignore")
    sim.patch_simulator_shared()
    checkers = []
    for filename, text in job["models"].items():
        for dtype in ("f32", "f64"):
            cpu, gpu = sim.pair(text, filename, dtype=dtype)
            checkers.append(Checker(gpu.to_host, sim.TOL[dtype], sim.FLOOR[dtype]))
            inputs = draw_inputs(cpu.SIGNATURE, job["dims"], np.random.default_rng(4))
            inputs = {k: np.abs(v) if k.startswith("w_") else v for k, v in inputs.items()}
            sim.compare(checkers[-1], cpu, gpu, inputs, f"{filename}/{dtype}", jvp=True,
                        epoch=dtype == "f32")
    print("RESULT " + json.dumps({"checks": sum(c.checks for c in checkers),
                                  "failures": [f for c in checkers for f in c.failures]}))


if __name__ == "__main__":
    main()
