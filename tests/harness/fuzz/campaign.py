"""Running the fuzzers: bounded slices (CI) and timed campaigns (``python -m tests.harness.fuzz``).

Each runner returns a :class:`Tally`: outcome counts by category, the findings that match a
known one (:mod:`tests.harness.fuzz.known`) counted as ``known:<id>``, and the new findings with the
command that reproduces each.
"""

from __future__ import annotations

import collections
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import known
from .common import Outcome


@dataclass
class Tally:
    name: str
    counts: collections.Counter = field(default_factory=collections.Counter)
    known: collections.Counter = field(default_factory=collections.Counter)
    new: list = field(default_factory=list)  # (repro, Outcome)
    seconds: float = 0.0
    n: int = 0

    def add(self, outcome: Outcome, repro: str) -> None:
        self.n += 1
        self.counts[outcome.category] += 1
        if outcome.finding:
            k = known.match(outcome.category, outcome.detail)
            if k is not None:
                self.known[k.id] += 1
            else:
                self.new.append((repro, outcome))

    def report(self) -> str:
        lines = [f"{self.name}: {self.n} inputs in {self.seconds:.0f} s"]
        for cat, n in self.counts.most_common():
            lines.append(f"  {cat:<44} {n}")
        for kid, n in self.known.most_common():
            lines.append(f"  known finding {kid:<30} {n}")
        for repro, o in self.new[:50]:
            lines.append(f"  NEW FINDING {o.category}: {o.detail[:300]}\n    repro: {repro}")
        if len(self.new) > 50:
            lines.append(f"  ... {len(self.new) - 50} more new findings")
        return "\n".join(lines)

    def failure(self) -> str | None:
        """The message a CI slice fails with: every new finding, or None."""
        if not self.new:
            return None
        return f"{len(self.new)} new finding(s) of the {self.name} fuzzer:\n" + "\n".join(
            f"- {o.category}: {o.detail[:400]}\n  reproduce: python -m tests.harness.fuzz --repro "
            f"{repro}" for repro, o in self.new[:20])


def _until(deadline: float | None, count: int | None, i: int) -> bool:
    if count is not None and i >= count:
        return False
    return deadline is None or time.time() < deadline


def front(count: int | None = None, seconds: float | None = None, seed0: int = 0,
          generators: list[str] | None = None, deep: int = 300) -> Tally:
    """The front-end property on ``count`` inputs (or for ``seconds``)."""
    import random

    from . import texts
    from .common import check_front
    tally = Tally("front end")
    start = time.time()
    deadline = start + seconds if seconds else None
    rng = random.Random(seed0)
    names = generators or list(texts.WEIGHTS)
    weights = [texts.WEIGHTS[n] for n in names]
    i = 0
    while _until(deadline, count, i):
        gen = rng.choices(names, weights)[0]
        seed = seed0 * 1_000_003 + i
        text = texts.make(gen, seed, deep)
        tally.add(check_front(text), f"text:{gen}:{seed}" + (f":{deep}" if deep != 300 else ""))
        i += 1
    tally.seconds = time.time() - start
    return tally


def options(count: int | None = None, seconds: float | None = None, seed0: int = 0) -> Tally:
    from . import options as opt
    tally = Tally("compile options")
    start = time.time()
    deadline = start + seconds if seconds else None
    with tempfile.TemporaryDirectory(prefix="gradc_fuzz_opts_") as tmp:
        i = 0
        while _until(deadline, count, i):
            seed = seed0 * 1_000_003 + i
            tally.add(opt.check(seed, Path(tmp)), f"options:{seed}")
            i += 1
    tally.seconds = time.time() - start
    return tally


def _seeded(name: str, check, spec: str, count: int | None, seconds: float | None,
            seed0: int) -> Tally:
    """A tally of ``check(seed)`` over the seeds ``seed0 * 1_000_003 + i``, for ``count``
    inputs or ``seconds``; ``spec`` formats an input's repro spec from its seed."""
    tally = Tally(name)
    start = time.time()
    deadline = start + seconds if seconds else None
    i = 0
    while _until(deadline, count, i):
        seed = seed0 * 1_000_003 + i
        tally.add(check(seed), spec.format(seed=seed))
        i += 1
    tally.seconds = time.time() - start
    return tally


def models(count: int | None = None, seconds: float | None = None, seed0: int = 0,
           target: str = "numpy") -> Tally:
    """Random models against their PyTorch twins (:mod:`tests.harness.fuzz.models`)."""
    from . import models as mod
    return _seeded(f"random models ({target})",
                   lambda seed: mod.check(mod.generate(seed), target=target,
                                          full=target != "cpu"),
                   f"model:{{seed}}:{target}", count, seconds, seed0)


def blocks(count: int | None = None, seconds: float | None = None, seed0: int = 0,
           target: str = "numpy") -> Tally:
    """Random block models against their twins (:mod:`tests.harness.fuzz.blocks`)."""
    from . import blocks as blk
    return _seeded(f"random block models ({target})", lambda seed: blk.check(seed, target),
                   f"block:{{seed}}:{target}", count, seconds, seed0)


def misuse(target: str = "cpu") -> Tally:
    from . import misuse as mis
    tally = Tally(f"call-time misuse ({target})")
    start = time.time()
    for cid, outcome in sorted(mis.run(target=target).items()):
        tally.add(outcome, f"misuse:{target}:{cid}")
    tally.seconds = time.time() - start
    return tally


def repro(spec: str) -> str:
    """Rebuild and rerun one input: ``text:GEN:SEED[:DEEP]``, ``options:SEED``,
    ``model:SEED[:TARGET]``, ``block:SEED[:TARGET]`` or ``misuse:TARGET:CASE``."""
    kind, _, rest = spec.partition(":")
    if kind == "text":
        from . import texts
        from .common import check_front
        gen, seed, *deep = rest.split(":")
        text = texts.make(gen, int(seed), int(deep[0]) if deep else 300)
        o = check_front(text)
        return f"----- {spec}\n{text}\n----- {o.kind} {o.category}: {o.detail}"
    if kind == "options":
        from . import options as opt
        model, opts = opt.draw(int(rest))
        with tempfile.TemporaryDirectory() as tmp:
            o = opt.check(int(rest), Path(tmp))
        return (f"gradc.compile_string({opt.MODELS[model]!r}, **{opts!r})\n"
                f"----- {o.kind} {o.category}: {o.detail}")
    if kind == "model":
        from . import models as mod
        seed, *target = rest.split(":")
        m = mod.generate(int(seed))
        target = target[0] if target else "numpy"
        o = mod.check(m, target=target, full=target != "cpu")
        return (f"----- model {seed} (wrt={list(m.wrt)})\n{m.text}\n----- torch twin\n"
                f"{m.torch_src}\n----- {o.kind} {o.category}: {o.detail}")
    if kind == "block":
        from tests.harness.block_models import random_case

        from . import blocks as blk
        seed, *target = rest.split(":")
        target = target[0] if target else "numpy"
        block, hand, mapping = random_case(int(seed))
        o = blk.check_case(block, hand, mapping, int(seed), target)
        return (f"----- block model {seed}\n{block}\n----- hand-written twin\n{hand}\n"
                f"----- {o.kind} {o.category}: {o.detail}")
    if kind == "misuse":
        from . import misuse as mis
        target, _, cid = rest.partition(":")
        o = mis.run([cid], target=target)[cid]
        return f"----- {cid} ({target})\n----- {o.kind} {o.category}: {o.detail}"
    raise SystemExit(f"unknown repro spec {spec!r}")


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))
