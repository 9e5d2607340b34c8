"""``gradc bench MODEL.grad [--batch N] [--repeats N]``: time a model's entry points.

Random inputs of batch N (floats standard normal; integers uniform in ``0 .. K-1`` with K the
first output's last axis, the class count of a classifier), fresh params, then for each of
``forward``, ``loss_and_grad`` and ``train_step``: the first call (Numba compile or cache
load) timed alone, a few warm-up calls, then ``--repeats`` timed calls; it prints the median
and the minimum time per call and the samples per second at the median.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from gradc.commands import EXIT_OK, load_model
from gradc.commands._options import add_threads_option
from gradc.codegen.target import TARGETS
from gradc.dtypes import FLOAT, numpy_dtype
from gradc.errors import GradcError
from gradc.options import OPTIMIZERS
from gradc.training.data import fmt_shape

WARMUP = 3
DEFAULT_DIM = 16
BENCH_LR = 1e-3


def register(subparsers) -> None:
    """Add the ``bench`` subparser."""
    p = subparsers.add_parser(
        "bench", help="time forward, loss_and_grad and train_step of a model",
        description="Time the compiled forward, loss_and_grad and train_step of MODEL.grad "
                    "on random inputs of batch N: median and minimum per call, samples/s.")
    p.add_argument("model", metavar="MODEL.grad", help="the model file")
    p.add_argument("--batch", type=int, default=64, metavar="N",
                   help="the batch size: the value of every input's leading symbolic dim "
                        "(default 64)")
    p.add_argument("--repeats", type=int, default=100, metavar="N",
                   help="timed calls per function after the warm-up (default 100)")
    p.add_argument("--dim", action="append", default=[], metavar="NAME=INT",
                   help=f"the value of another symbolic dim (default {DEFAULT_DIM}); "
                        "repeatable")
    p.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default="adam",
                   help="the optimizer of train_step (default adam, as gradc train)")
    p.add_argument("--target", choices=TARGETS, default="cpu", help="code target (default cpu)")
    p.add_argument("--seed", type=int, default=0, metavar="N",
                   help="seed of the params and inputs (default 0)")
    add_threads_option(p)
    p.set_defaults(run=run)


def _dims(items: list[str]) -> dict[str, int]:
    dims = {}
    for item in items:
        name, _sep, value = item.partition("=")
        try:
            dims[name.strip()] = int(value)
        except ValueError:
            dims[name.strip()] = 0
        if not name.strip() or dims[name.strip()] < 1:
            raise GradcError(f"--dim {item}: expected NAME=INT with INT >= 1")
    return dims


def random_inputs(signature: dict, batch: int, dims: dict, seed: int = 0) -> dict:
    """Random inputs for ``signature``: the leading symbolic dim of each input is ``batch``,
    other symbolic dims come from ``dims`` (default 16); floats are standard normal,
    integers uniform in ``0 .. K-1`` (K: the last axis of the first output, else 2)."""
    rng = np.random.default_rng(seed)
    outputs = signature.get("outputs", {})
    first = next(iter(outputs.values()), None)
    classes = first[1][-1] if first and first[1] and isinstance(first[1][-1], int) else 2
    bound: dict = {}
    out = {}
    for name, (dtype, shape) in signature["inputs"].items():
        size = []
        for i, d in enumerate(shape):
            if isinstance(d, str):
                default = batch if i == 0 else dims.get(d, DEFAULT_DIM)
                d = bound.setdefault(d, dims.get(d, default))
            size.append(d)
        if dtype in FLOAT:
            a = rng.standard_normal(size)
        else:
            a = rng.integers(0, classes, size)
        out[name] = np.ascontiguousarray(a, dtype=numpy_dtype(dtype))
    return out


def fmt_time(seconds: float) -> str:
    """``0.0000123`` -> ``12.3 µs``; ms and s for longer times."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def time_calls(fn, repeats: int) -> tuple[float, list[float]]:
    """Return (the first call's seconds, the seconds of ``repeats`` calls after a warm-up)."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    for _ in range(WARMUP):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return first, times


def run(args) -> int:
    """Compile the model, time its entry points, print one line each."""
    if args.batch < 1:
        raise GradcError(f"--batch must be at least 1, got {args.batch}")
    if args.repeats < 1:
        raise GradcError(f"--repeats must be at least 1, got {args.repeats}")
    dims = _dims(args.dim)
    t0 = time.perf_counter()
    model = load_model(args.model, target=args.target, optimizer=args.optimizer,
                       wait=True)  # time the compiled kernels, not the NumPy tier
    compiled = time.perf_counter() - t0
    sig = model.signature
    inputs = random_inputs(sig, args.batch, dims, args.seed)
    params = model.init_params(args.seed)
    shapes = ", ".join(f"{n} {sig['inputs'][n][0]}{fmt_shape(a.shape)}"
                       for n, a in inputs.items())
    print(f"model {model.name} ({args.model}): batch {args.batch}, {shapes}; "
          f"{args.repeats} timed calls after {WARMUP} warm-up calls")
    print(f"compile {fmt_time(compiled)} (generated module; Numba compiles on first call)")

    calls = []
    if sig.get("outputs"):
        calls.append(("forward", lambda: model.forward(params, **inputs)))
    if sig.get("loss"):
        calls.append(("loss_and_grad", lambda: model.loss_and_grad(params, **inputs)))
        calls.append((f"train_step ({args.optimizer})",
                      lambda: model.train_step(params, BENCH_LR, **inputs)))
    if not calls:
        raise GradcError(f"model '{model.name}' has neither outputs nor a loss: "
                         "nothing to time")
    width = max(len(name) for name, _ in calls)
    for name, fn in calls:
        first, times = time_calls(fn, args.repeats)
        median, best = statistics.median(times), min(times)
        print(f"  {name:<{width}}  median {fmt_time(median):>10}  min {fmt_time(best):>10}"
              f"  {args.batch / median:>14,.0f} samples/s  (first call {fmt_time(first)})")
    return EXIT_OK
