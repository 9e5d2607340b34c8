"""Where Numba's compile time goes, per entry: ``python -m benchmarks.compile_stages``.

For each model and entry, a fresh process with an empty cache writes the model's CPU
module (Adam, float32, as ``gradc train`` does), calls the entry once on tiny arrays (the
background compile's call, :func:`gradc.runtime.warm.compile_entry`) and reports the CPU
seconds of that call, then, summed over every kernel the call compiled, Numba's
``pipeline_times`` by stage: the untyped passes (bytecode to Numba IR, SSA, inlining),
type inference, native lowering (Numba IR to LLVM IR, LLVM's optimiser and machine code)
and the rest of the typed passes (a body the kernels call, a loop's step or a recurring
run, is compiled while its caller is typed: it is counted in its own stages, not again in
the caller's type inference). ``lines`` counts the generated lines of the entry's
kernels. Medians over ``--repeats`` (min-max). Check that the machine is otherwise
idle (``uptime``): another process on the cores inflates every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.first_result import models

ENTRIES = ("forward", "loss", "loss_and_grad", "train_step", "train_epoch")
STAGES = ("untyped", "typing", "lowering", "other")
CHILD = r"""
import json, os, sys, time
import gradc
from gradc.codegen.cpu import outline
from gradc.runtime import warm
if os.environ.get("GRADC_BENCH_INLINE"):  # --inline: no recurring run becomes a call
    outline.MIN_WEIGHT = 10 ** 9
model = gradc.compile(sys.argv[1], optimizer="adam", wait=True)
module = model.module
before = {n: set(getattr(module, n).overloads) for n in dir(module)
          if hasattr(getattr(module, n), "overloads")}
t = time.process_time()
warm.compile_entry(module, sys.argv[2])
cpu = time.process_time() - t
stages = dict.fromkeys(("untyped", "typing", "lowering", "other"), 0.0)
kernels, seen, nested = [], set(), 0.0
for n, old in before.items():
    disp = getattr(module, n)
    if id(disp) in seen:  # an alias of a body printed once (_body4_ = _body3_)
        continue
    seen.add(id(disp))
    for sig in set(disp.overloads) - old:
        kernels.append(n)
        for pipeline in disp.get_metadata(sig)["pipeline_times"].values():
            typed = False
            for name, times in pipeline.items():
                total = times.init + times.run + times.finalize
                typed = typed or "type_inference" in name
                stage = ("typing" if "type_inference" in name else
                         "lowering" if "native_lowering" in name else
                         "other" if typed else "untyped")
                stages[stage] += total
                nested += total if n.startswith("_body") else 0.0
# a body (a loop's step, an outlined run) compiles while its caller is typed: its time is
# in its own stages and in the caller's type inference; count it once
stages["typing"] -= nested
lines = 0
text = open(module.__file__).read().split("\n")
for k, line in enumerate(text):
    if line.startswith("def ") and line[4:].split("(")[0] in kernels:
        end = next((j for j in range(k + 1, len(text)) if text[j].startswith(("def ", "@"))),
                   len(text))
        lines += end - k
print(json.dumps({"cpu": cpu, "stages": stages, "kernels": sorted(kernels), "lines": lines}))
"""


TOWER = """model tower{n}
input  x : f32[B, 32]
input  y : i64[B]
block res(n) {{
    layer ln  = layernorm(n)
    layer fc1 = dense(n -> 2 * n)
    layer fc2 = dense(2 * n -> n)
    fn forward(h) {{
        u = relu(fc1(ln(h)))
        return h + fc2(u)
    }}
}}
layer  tower = repeat(res(32), {n})
layer  head  = dense(32 -> 10)
output scores = x |> tower |> head
loss   = cross_entropy(scores, y)
"""


CHAIN = """model chain{n}
input x : f32[B, 8]
input y : f32[B, 8]
param W : f32[8, 8]
h0 = x
{layers}
loss = mse(h{n}, y)
"""


def chains(folder: Path) -> dict:
    """``chain100``, ``chain600``: ``h = h @ W`` repeated with one shared ``W`` (the deep
    chains of the fuzz and workspace tests, tests/passes/test_workspace.py, in float32),
    whose runs of matmuls recur (issue 22: they get cheaper too)."""
    out = {}
    for n in (100, 600):
        path = folder / f"chain{n}.grad"
        path.write_text(CHAIN.format(n=n, layers="\n".join(f"h{i + 1} = h{i} @ W"
                                                            for i in range(n))))
        out[f"chain{n}"] = (path,)
    return out


def towers(folder: Path) -> dict:
    """``tower1`` ... ``tower8``: ``repeat(res(32), N)`` (pre-norm residual blocks) and a
    dense head, the models of issue 22's compile table (a repeated block compiles once)."""
    out = {}
    for n in (1, 2, 4, 8):
        path = folder / f"tower{n}.grad"
        path.write_text(TOWER.format(n=n))
        out[f"tower{n}"] = (path,)
    return out


def measure(model: Path, entry: str, inline: bool = False) -> dict:
    """One fresh process, empty cache: the CPU seconds and stages of compiling ``entry``
    (with ``inline``, every recurring run printed inline, as before outlining)."""
    with tempfile.TemporaryDirectory(prefix="gradc_stages_") as tmp:
        env = {k: v for k, v in os.environ.items()
               if k not in ("NUMBA_CACHE_DIR", "GRADC_BENCH_INLINE")}
        env.update({"GRADC_BENCH_INLINE": "1"} if inline else {})
        env.update(GRADC_CACHE_DIR=tmp, GRADC_TIERED="0",
                   PYTHONPATH=os.pathsep.join(p for p in (str(Path.cwd()),
                                                          env.get("PYTHONPATH")) if p))
        out = subprocess.run([sys.executable, "-c", CHILD, str(model), entry], env=env,
                             capture_output=True, text=True, timeout=900)
    if out.returncode:
        raise SystemExit(f"{model.stem} {entry}: the compiling process failed:\n"
                         + out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cell(values: list[float]) -> str:
    return f"{statistics.median(values):5.2f} ({min(values):.2f}-{max(values):.2f})"


def main(argv: list[str] | None = None) -> int:
    """Run the measurements and print one row per model and entry."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.compile_stages",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="spiral,digits,cnn",
                   help="comma-separated: spiral, digits, cnn, tower1, tower2, tower4, "
                        "tower8, chain100, chain600")
    p.add_argument("--entries", default=",".join(ENTRIES), help="comma-separated")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--inline", action="store_true",
                   help="print recurring runs inline (no outlined bodies), to compare")
    args = p.parse_args(argv)
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; "
          f"CPU seconds, median (min-max) of {args.repeats}", flush=True)
    print(f"{'model':10}{'entry':15}{'lines':>7}{'compile':>21}"
          + "".join(f"{s:>21}" for s in STAGES) + "  kernels", flush=True)
    with tempfile.TemporaryDirectory(prefix="gradc_stages_data_") as tmp:
        table = {**models(Path(tmp)), **towers(Path(tmp)), **chains(Path(tmp))}
        for name in args.models.split(","):
            for entry in args.entries.split(","):
                runs = [measure(table[name][0], entry, args.inline)
                        for _ in range(args.repeats)]
                print(f"{name:10}{entry:15}{runs[0]['lines']:>7}"
                      f"{_cell([r['cpu'] for r in runs]):>21}"
                      + "".join(f"{_cell([r['stages'][s] for r in runs]):>21}"
                                for s in STAGES)
                      + "  " + ",".join(k.strip("_").rsplit("_", 1)[0]
                                        for k in runs[0]["kernels"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
