"""A fuzz campaign: ``python -m tests.harness.fuzz --minutes N`` (from the repository root).

Runs the call-time misuse table once (cpu and numpy targets), then shares the time between
the front-end fuzzer (35 %), random models against PyTorch (50 %, a few on the cpu target),
compile options (15 %) and random block models against their hand-inlined twins (10 %,
one on the cpu target, shared bodies against inline), the shares scaled to the fuzzers
chosen, and prints outcome counts by category, the known findings met and every new
finding with the command that reproduces it (``--repro SPEC``). Exit code 1 when a new
finding was met.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.harness.fuzz",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=None, help="default: from the clock")
    ap.add_argument("--only", default="front,models,options,blocks,misuse",
                    help="comma-separated fuzzers to run")
    ap.add_argument("--deep", type=int, default=2000, help="the deepest nesting generated")
    ap.add_argument("--repro", metavar="SPEC", help="rerun one input, e.g. text:mutate:17")
    args = ap.parse_args(argv)
    os.environ.setdefault("GRADC_CACHE_DIR", tempfile.mkdtemp(prefix="gradc_fuzz_cache_"))
    from . import campaign
    if args.repro:
        print(campaign.repro(args.repro))
        return 0
    seed = args.seed if args.seed is not None else int(time.time()) % 100_000
    only = set(args.only.split(","))
    total = args.minutes * 60
    start = time.time()
    print(f"fuzz campaign: {args.minutes:g} min, seed {seed}, "
          f"cache {os.environ['GRADC_CACHE_DIR']}", flush=True)
    tallies = []
    if "misuse" in only:
        for target in ("cpu", "numpy"):
            tallies.append(campaign.misuse(target))
            print(tallies[-1].report(), flush=True)
    left = max(total - (time.time() - start), 10.0)
    shares = {"front": 0.35, "models": 0.5, "options": 0.15, "blocks": 0.1}
    norm = sum(v for k, v in shares.items() if k in only) or 1.0
    if "front" in only:
        tallies.append(campaign.front(seconds=left * shares["front"] / norm, seed0=seed,
                                      deep=args.deep))
        print(tallies[-1].report(), flush=True)
    if "options" in only:
        tallies.append(campaign.options(seconds=left * shares["options"] / norm, seed0=seed))
        print(tallies[-1].report(), flush=True)
    if "models" in only:
        budget = left * shares["models"] / norm
        tallies.append(campaign.models(count=3, seed0=seed, target="cpu"))
        print(tallies[-1].report(), flush=True)
        tallies.append(campaign.models(seconds=max(budget - tallies[-1].seconds, 5), seed0=seed))
        print(tallies[-1].report(), flush=True)
    if "blocks" in only:
        budget = left * shares["blocks"] / norm
        tallies.append(campaign.blocks(count=1, seed0=seed, target="cpu"))
        print(tallies[-1].report(), flush=True)
        tallies.append(campaign.blocks(seconds=max(budget - tallies[-1].seconds, 5),
                                       seed0=seed))
        print(tallies[-1].report(), flush=True)
    print(f"\n===== summary ({(time.time() - start) / 60:.1f} min, seed {seed})")
    for t in tallies:
        print(f"{t.name:<32} {t.n:>7} inputs  {sum(t.known.values()):>5} known findings"
              f"  {len(t.new):>4} new findings")
    return 1 if any(t.new for t in tallies) else 0


if __name__ == "__main__":
    sys.exit(main())
