"""What the thread budget gives a model on this machine: ``python -m benchmarks.thread_gain``.

For each model, in one process, one float32 Adam ``train_step`` on a random batch is timed
in rounds that alternate two settings: ``GRADC_NUM_THREADS=1`` (every call one thread) and
the budget (``GRADC_NUM_THREADS`` unset: the cores this process may use, a race where the
products are large enough; docs/performance.md, "The rules"). Each round makes the plans
afresh (so every budget round races again), times ``--calls`` calls, and keeps the median
of those after the first 20 (the race's calls); the report gives the median of the rounds'
medians, their spread, the thread count the budget's plan held at the end of each round,
and the ratio one thread / budget (above 1: the budget is faster). Run it on a quiet
machine (``uptime``): the budget races one thread against more and keeps one where the
others do not pay, so on a busy machine both settings should come out alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: model file, batch (the MLPs of the benchmark tables and an example)
MODELS = {
    "mlp_784": ("benchmarks/models/mlp_784.grad", 64),
    "mlp_256": ("benchmarks/models/mlp_256.grad", 128),
    "mlp_cifar": ("benchmarks/models/mlp_cifar.grad", 256),
    "mlp_large": ("benchmarks/models/mlp_large.grad", 512),
    "cnn": ("examples/cnn.grad", 64),
}
WARM = 20  # calls of a round not counted (the race runs in its first 6)


def measure(name: str, rounds: int, calls: int) -> dict:
    """Medians per round of both settings, and the budget's thread count per round."""
    import gradc
    from gradc.commands.bench import random_inputs

    path, batch = MODELS[name]
    model = gradc.compile(str(REPO / path), dtype="f32", optimizer="adam", wait=True)
    module, params, state = model.module, model.init_params(0), {}
    inputs = random_inputs(module.SIGNATURE, batch, {})
    out = {"one": [], "budget": [], "counts": []}
    before = os.environ.get("GRADC_NUM_THREADS")
    try:
        for _ in range(rounds):
            for setting in ("one", "budget"):
                if setting == "one":
                    os.environ["GRADC_NUM_THREADS"] = "1"
                else:
                    os.environ.pop("GRADC_NUM_THREADS", None)
                module._LOCAL = type(module._LOCAL)()  # plans (and races) made afresh
                times = []
                for _ in range(WARM + calls):
                    t0 = time.perf_counter()
                    model.train_step(params, 1e-4, state=state, **inputs)
                    times.append(time.perf_counter() - t0)
                out[setting].append(statistics.median(times[WARM:]))
                if setting == "budget":
                    plans = list(module._LOCAL.__dict__.get("spaces", {}).values())
                    out["counts"].append(plans[0][1].n if plans else None)
    finally:
        if before is None:
            os.environ.pop("GRADC_NUM_THREADS", None)
        else:
            os.environ["GRADC_NUM_THREADS"] = before
    return out


def _cell(values: list[float]) -> str:
    med = statistics.median(values)
    return f"{med * 1e3:8.3f} ms ({min(values) * 1e3:.3f}-{max(values) * 1e3:.3f})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.thread_gain",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated: "
                    + ", ".join(MODELS))
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--calls", type=int, default=100, help="timed calls per round and setting")
    args = ap.parse_args(argv)
    os.environ.setdefault("GRADC_TIERED", "0")
    print(f"load average before: {os.getloadavg()[0]:.2f} on {len(os.sched_getaffinity(0))} "
          f"CPUs; train_step (Adam, float32), median (min-max) of {args.rounds} rounds")
    print(f"{'model':10} {'one thread':>30} {'the budget':>30}  ratio  budget's count")
    for name in args.models.split(","):
        res = measure(name, args.rounds, args.calls)
        ratio = statistics.median(res["one"]) / statistics.median(res["budget"])
        print(f"{name:10} {_cell(res['one']):>30} {_cell(res['budget']):>30}  {ratio:4.2f}x "
              f" {res['counts']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
