"""Where one entry's time goes, kernel by kernel: ``python -m benchmarks.kernel_profile MODEL``.

Generates MODEL's CPU module (float32, one thread, ``--optimizer``, default SGD as in
:mod:`benchmarks.busy`), adds a copy of the entry's Numba function (``--entry``, default
``train_step``) with a timer after each of its top-level statements that does work (a loop
nest, a BLAS product, a call of a recurring run's body), runs the entry once on the
workload's batch to get the kernel's arguments, then calls the copy ``--repeats`` times and
prints each kernel's mean time and share, the slowest first, beside the untimed function's
own time. A timer reads the CPU's cycle counter (converted to seconds by timing the
whole run): a few nanoseconds, so that even small kernels' figures are their own. Inputs: the
workload of :mod:`benchmarks.busy_models` whose model file MODEL is, else random values
(integer inputs in ``[0, 2)``) with every named dim ``--batch``.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

def _cycle_counter():
    """An njit-callable ``_cycles()``: the CPU's cycle counter (LLVM's
    ``readcyclecounter``, a few nanoseconds, where a timer through the interpreter would
    cost microseconds)."""
    from llvmlite import ir
    from numba.core import cgutils, types
    from numba.extending import intrinsic

    @intrinsic
    def _cycles(typingctx):
        def codegen(context, builder, signature, args):
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(
                ir.IntType(64), []), "llvm.readcyclecounter")
            return builder.call(fn, [])
        return types.uint64(), codegen
    return _cycles


def _timed(kernel: ast.FunctionDef) -> tuple[ast.FunctionDef, list[str]]:
    """A copy of ``kernel`` named ``_profiled`` taking one more argument ``tt_`` (float64,
    one slot per timed statement) that it adds each timed statement's cycles to; and the
    timed statements' labels (first line, line within the function)."""
    labels: list[str] = []
    body = ast.parse("tp_ = _cycles()").body
    for st in kernel.body:
        body.append(st)
        text = ast.unparse(st)
        if isinstance(st, ast.For) or (isinstance(st, ast.Expr) and (
                "np.dot(" in text or "_body" in text)):
            body += ast.parse(f"t_ = _cycles()\ntt_[{len(labels)}] += np.float64(t_ - tp_)\n"
                              "tp_ = t_").body
            labels.append(f"{text.splitlines()[0][:72]}  (line {st.lineno - kernel.lineno})")
    args = ast.arguments(posonlyargs=[], args=[*kernel.args.args, ast.arg("tt_")],
                         kwonlyargs=[], kw_defaults=[], defaults=[])
    jit = ast.parse("nb.njit(**_JIT)", mode="eval").body
    copy = ast.FunctionDef(name="_profiled", args=args, body=body, returns=None,
                           decorator_list=[jit], type_params=[])
    return ast.fix_missing_locations(copy), labels


def _inputs(path: Path, signature: dict, batch: int):
    """The busy workload's inputs for ``path``, else random ones of ``batch`` rows."""
    import numpy as np

    from benchmarks.busy_models import WORKLOADS
    from gradc.dtypes import NUMPY_NAMES
    for work in WORKLOADS.values():
        if Path(work.path).resolve() == path.resolve():
            return work.inputs()
    rng = np.random.default_rng(0)
    out = {}
    for name, (dtype, shape) in signature["inputs"].items():
        dims = [batch if isinstance(d, str) else d for d in shape]
        out[name] = (rng.integers(0, 2, dims) if dtype[0] == "i" else
                     rng.standard_normal(dims)).astype(NUMPY_NAMES[dtype])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.kernel_profile",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("model", type=Path)
    p.add_argument("--entry", default="train_step",
                   choices=("forward", "loss", "loss_and_grad", "train_step"))
    p.add_argument("--optimizer", default="sgd")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args(argv)
    os.environ.update(GRADC_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", GRADC_TIERED="0")
    import numpy as np
    from threadpoolctl import threadpool_limits

    from gradc.options import Options
    from gradc.pipeline import compile_source
    from gradc.source import Source
    threadpool_limits(1)

    key = "profile"
    text = compile_source(Source(args.model.read_text(encoding="utf-8"), args.model.name),
                          Options.make(optimizer=args.optimizer, cache=False), key)[0]
    name = f"_{args.entry}_{key}"
    kernel = next((n for n in ast.parse(text).body
                   if isinstance(n, ast.FunctionDef) and n.name == name), None)
    if kernel is None:
        p.error(f"{args.model} has no compiled {args.entry}")
    copy, labels = _timed(kernel)
    folder = Path(tempfile.mkdtemp(prefix="gradc_profile_"))
    (folder / "profiled.py").write_text(text + "\n\n" + ast.unparse(copy) + "\n")
    spec = importlib.util.spec_from_file_location("gradc_profiled", folder / "profiled.py")
    module = importlib.util.module_from_spec(spec)
    module._cycles = _cycle_counter()
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)

    captured = {}
    invoke = module._invoke

    def capture(kern, threads, *call):
        if kern is getattr(module, name):
            captured["args"] = call
        return invoke(kern, threads, *call)
    module._invoke = capture
    params = module.init_params(0)
    inputs = _inputs(args.model, module.SIGNATURE, args.batch)
    entry = getattr(module, args.entry)
    if args.entry == "train_step":
        entry(params, 0.01, **inputs)
    else:
        entry(params, **inputs)
    call, plain = captured["args"], getattr(module, name)
    tt = np.zeros(max(1, len(labels)))
    module._profiled(*call, tt)
    start = time.perf_counter()
    for _ in range(args.repeats):
        plain(*call)
    untimed = (time.perf_counter() - start) / args.repeats
    tt[:] = 0
    start = time.perf_counter()
    for _ in range(args.repeats):
        module._profiled(*call, tt)
    timed = (time.perf_counter() - start) / args.repeats
    tt *= timed / tt.sum()  # cycles -> seconds, the timed statements being nearly all
    print(f"{args.model} {args.entry}, one thread: {untimed * 1e3:.3f} ms untimed, "
          f"{timed * 1e3:.3f} ms timed ({len(labels)} timed statements)")
    for i in np.argsort(-tt)[:args.top]:
        print(f"  {tt[i] * 1e3:8.3f} ms {100 * tt[i] / tt.sum():5.1f}%  {labels[i]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
