"""The blocks fuzzer: random block models against their hand-inlined twins.

An input is :func:`tests.harness.block_models.random_case` of a seed: a model written with
blocks, nested instances and ``repeat`` (random widths, activations, layernorm or not,
repeat counts), and the same network written out layer by layer. On the numpy target the
two must give bitwise the same loss and gradients: an instance is its layers and nothing
else. On the cpu target the block model is compiled twice, with its recurring runs of
kernels shared as one Numba function (:mod:`gradc.codegen.cpu.outline`) and printed
inline, and the two must agree bitwise: ``loss_and_grad``, an Adam ``train_step`` and the
params after it.
"""

from __future__ import annotations

import numpy as np

from tests.harness.block_models import perturbed, random_case, shared_and_inlined

from .common import Outcome, short


def check(seed: int, target: str = "numpy") -> Outcome:
    """The outcome of the random block model of ``seed`` on ``target``."""
    block, hand, mapping = random_case(seed)
    return check_case(block, hand, mapping, seed, target)


def check_case(block: str, hand: str, mapping: dict, seed: int,
               target: str = "numpy") -> Outcome:
    """Compare ``block`` with its twin ``hand`` (numpy) or with itself inlined (cpu);
    ``mapping`` names each block param's twin in ``hand``."""
    import gradc
    try:
        if target == "numpy":
            first = gradc.compile_string(block, name=f"fuzz_block_{seed}", target="numpy",
                                         dtype="f64")
            second = gradc.compile_string(hand, name=f"fuzz_hand_{seed}", target="numpy",
                                          dtype="f64")
        else:
            first, second = shared_and_inlined(block, f"fuzz_block_{seed}")
            mapping = {k: k for k in mapping}
    except Exception as e:  # noqa: BLE001 - a well-formed random model must compile
        return Outcome("finding", f"block:compile-raw:{type(e).__name__}", short(e))
    p = perturbed(first.init_params(seed), seed + 100)
    if set(p) != set(mapping):
        return Outcome("finding", "block:param-names", f"{sorted(set(p) ^ set(mapping))}")
    q = {mapping[k]: v.copy() for k, v in p.items()}
    x = np.random.default_rng(seed).standard_normal((3, p["net.0.g"].shape[0]))
    (la, ga), (lb, gb) = first.loss_and_grad(p, x=x), second.loss_and_grad(q, x=x)
    problems = [f"loss {la!r} != {lb!r}"] if np.asarray(la).tobytes() != np.asarray(
        lb).tobytes() else []
    problems += [f"gradient of {k}" for k in p if ga[k].tobytes() != gb[mapping[k]].tobytes()]
    if target != "numpy":
        la, lb = first.train_step(p, 0.05, x=x), second.train_step(q, 0.05, x=x)
        problems += [f"train_step loss {la!r} != {lb!r}"] if la != lb else []
        problems += [f"{k} after train_step" for k in p if p[k].tobytes() != q[k].tobytes()]
    if problems:
        return Outcome("finding", f"block:differs:{target}", "; ".join(problems)[:300])
    return Outcome("ok", f"block:bitwise:{target}")
