"""Compile-option combinations: ``gradc.compile_string(text, **options)`` must return a Model
or raise ``GradcError`` (never another exception), and must never leave in the cache a
generated module that cannot be imported (issue 13: ``wrt=["x", "x"]``).

:func:`draw` builds one combination from a seed: ``wrt`` (float inputs, integer inputs,
params, unknown names, duplicates, ``"x,x"`` strings with spaces or empty parts, non-string
items, a set), ``dtype``, ``target`` (known, unknown, wrong case, None, ``cuda`` with
``parallel``), ``optimizer`` (names, unknown names, dicts with good and bad hyper-parameters:
strings, None, NaN, infinities, lists, negative, unknown keys, a missing or non-string
name), ``cache`` and ``parallel``. Targets ``cpu`` and ``numpy`` compile for real (the module
is generated and imported, no kernel is run); a successful numpy compile is also called
once with ``train_step``.
"""

from __future__ import annotations

import math
import os
import random
from pathlib import Path

from .common import Outcome, short

MODELS = {
    "batch": "input x : f64[B, 3]\ninput z : f32[B, 3]\ninput y : i64[B]\n"
             "param W : f64[3, 2]\noutput o = x @ W + z @ W\nloss = cross_entropy(o, y)\n",
    "plain": "input x : f32[4]\nparam w : f32[4]\nloss = sum(x * w) ^ 2\n",
    "noloss": "input x : f64[B, 2]\nparam W : f64[2, 2]\noutput o = tanh(x @ W)\n",
    "nothing": "input x : f64[2]\n",
}
NAMES = ["x", "z", "y", "W", "w", "o", "X", "loss", "", " x", "x ", "B", "params", "lr"]
HYPER = ["momentum", "beta1", "beta2", "eps", "lr", "name", "Beta1", "weight_decay"]
BAD = ["abc", None, float("nan"), float("inf"), -float("inf"), [0.9], {"a": 1}, -1, 0, 1,
       2.0, 1e308, "0.9", True, 1j, b"0.9", 10 ** 400]


def draw(seed: int) -> tuple[str, dict]:
    rng = random.Random(f"options:{seed}")
    model = rng.choice(list(MODELS))
    opts: dict = {}
    r = rng.random()
    if r < 0.6:
        items = [rng.choice(NAMES) for _ in range(rng.randint(0, 3))]
        if rng.random() < 0.2:
            items.append(rng.choice([1, None, 2.5, ("x",), b"x"]))
        kind = rng.random()
        opts["wrt"] = (",".join(map(str, items)) if kind < 0.3 else tuple(items)
                       if kind < 0.4 else set(i for i in items if isinstance(i, str))
                       if kind < 0.45 else items)
    if rng.random() < 0.4:
        opts["dtype"] = rng.choice(["f32", "f64", None, "f16", "F64", "float64", "", 64, "i64"])
    if rng.random() < 0.5:
        opts["target"] = rng.choice(["cpu", "numpy", "numpy", "cuda", "CPU", "", None, "tpu",
                                     "gpu", 1])
    if rng.random() < 0.6:
        r = rng.random()
        if r < 0.3:
            opts["optimizer"] = rng.choice(["sgd", "momentum", "adam", "adamw", "SGD", "", None,
                                            42, ["adam"]])
        else:
            spec = {}
            if rng.random() < 0.85:
                spec["name"] = rng.choice(["sgd", "momentum", "adam", "adam", "rmsprop", None, 1])
            for _ in range(rng.randint(0, 3)):
                key = rng.choice(HYPER)
                spec[key] = rng.choice(BAD + [0.9, 0.999, 1e-8, 0.5])
            opts["optimizer"] = spec
    if rng.random() < 0.2:
        opts["cache"] = rng.choice([True, False, "no", None])
    if rng.random() < 0.2:
        opts["parallel"] = rng.choice([True, False, "yes"])
    return model, opts


def _importable(cache: Path) -> list[str]:
    """Generated modules in the cache that do not compile."""
    bad = []
    for path in cache.rglob("*.py"):
        try:
            compile(path.read_text(encoding="utf-8"), str(path), "exec")
        except SyntaxError as e:
            bad.append(f"{path.name}: {e}")
    return bad


def check(seed: int, cache: Path) -> Outcome:
    """Compile the drawn combination (with ``GRADC_CACHE_DIR`` = ``cache``)."""
    import numpy as np

    import gradc
    from gradc.errors import GradcError
    model, opts = draw(seed)
    if opts.get("target") == "cuda":
        opts["target"] = "cuda"  # generates the module (and its PTX check needs no GPU)
    old = os.environ.get("GRADC_CACHE_DIR")
    os.environ["GRADC_CACHE_DIR"] = str(cache)
    label = f"{model} {opts!r}"
    try:
        try:
            m = gradc.compile_string(MODELS[model], name=f"fuzz_opts_{model}", **opts)
        except GradcError as e:
            outcome = Outcome("ok", "options:GradcError", f"{label}: {str(e)[:120]}")
        except Exception as e:  # noqa: BLE001
            outcome = Outcome("finding", f"options:raw:{type(e).__name__}", f"{label}: {short(e)}")
        else:
            outcome = Outcome("ok", "options:compiled", label)
            if getattr(m.options, "target", "") == "numpy" and m.supports("train_step"):
                try:
                    p = m.init_params(0)
                    ins = {"x": np.ones((2, 3)), "z": np.ones((2, 3), np.float32),
                           "y": np.zeros(2, np.int64)} if model == "batch" else \
                        {"x": np.ones(4, np.float32)}
                    if m.signature["float"] == "f64" and model == "plain":
                        ins = {"x": np.ones(4)}
                    if model == "batch" and m.signature["float"] == "f64":
                        ins["z"] = np.ones((2, 3))
                    if model == "batch" and m.signature["float"] == "f32":
                        ins["x"] = np.ones((2, 3), np.float32)
                    loss = m.train_step(p, 0.1, **ins)
                    if not math.isfinite(loss) and all(
                            math.isfinite(v) for k, v in m.options.optimizer.hyper):
                        outcome = Outcome("finding", "options:nonfinite", label)
                except ValueError:
                    pass
                except Exception as e:  # noqa: BLE001
                    outcome = Outcome("finding", f"options:call-raw:{type(e).__name__}",
                                      f"{label}: {short(e)}")
        bad = _importable(cache)
        if bad:
            outcome = Outcome("finding", "options:cached-module-cannot-import",
                              f"{label}: {bad[0][:200]}")
            for path in cache.rglob("*.py"):  # clean up for the next combination
                path.unlink()
        return outcome
    finally:
        if old is None:
            os.environ.pop("GRADC_CACHE_DIR", None)
        else:
            os.environ["GRADC_CACHE_DIR"] = old
