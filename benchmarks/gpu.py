"""The CUDA target on a GPU: correctness against the CPU target, then timings against torch.

    python -m benchmarks.gpu [--only mlp_cifar,mlp_large,gelu_fb] [--batch 4096]
                             [--repeats 50] [--json PATH] [--dry-run]

Workloads: ``mlp_cifar`` (3072-100-10) and ``mlp_large`` (1024-1024-1024-10) SGD training
steps at batch 4096, and ``gelu_fb`` (the tanh-GELU ``fn`` forward+backward on 4096x1024,
gradc's ``vjp``). Params, data and optimizer state live on the device for both sides; a
gradc ``train_step`` returns the loss as a float, so the torch step calls ``.item()`` too.
Each row prints the median time, the ratio torch / gradc (> 1: gradc is faster), the
achieved bandwidth (a lower bound of the bytes a step must move, divided by the time) and
that bandwidth as a share of the measured device-to-device copy bandwidth; MLP rows also
print achieved TFLOP/s. Before timing, one step of each workload runs on both targets from
the same params and must agree with the CPU target.

Without a GPU the script stops with a clear message (exit status 2); ``--dry-run`` needs
no GPU: it parses the options, builds every model for the CUDA target and prints the plan.
Set ``GRADC_CUDA_BLAS=0`` to time the tiled matmul kernel instead of cuBLAS (CuPy).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.workloads import GELU_SHAPE, MLPS, MODELS, init_params, make_batch

WORKLOADS = ("mlp_cifar", "mlp_large", "gelu_fb")
CHECK_TOL = 2e-4  # float32, after sums over thousands of terms in different orders
NO_GPU = 2


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=",".join(WORKLOADS),
                   help=f"comma-separated workloads (default: {','.join(WORKLOADS)})")
    p.add_argument("--batch", type=int, default=4096, help="MLP batch size (default 4096)")
    p.add_argument("--repeats", type=int, default=50, help="timed calls per side")
    p.add_argument("--json", help="also write the rows to this file")
    p.add_argument("--dry-run", action="store_true",
                   help="build the CUDA models and print the plan; needs no GPU")
    args = p.parse_args(argv)
    args.only = [w for w in args.only.split(",") if w]
    unknown = sorted(set(args.only) - set(WORKLOADS))
    if unknown:
        p.error(f"unknown workload(s) {', '.join(unknown)}; known: {', '.join(WORKLOADS)}")
    if args.batch < 1 or args.repeats < 1:
        p.error("--batch and --repeats must be positive")
    return args


# ---------------------------------------------------------------------- building models
def cuda_model(path: Path, **options):
    """The generated CUDA module of the model at ``path``."""
    import gradc
    return gradc.compile(path, target="cuda", **options).module


def model_path(name: str) -> tuple[Path, dict]:
    """The model file and compile options of a workload."""
    if name == "gelu_fb":
        return MODELS / "gelu.grad", {"wrt": ["z"]}
    return MLPS[name].path, {}


# ---------------------------------------------------------------------- cost models
def mlp_cost(sizes, batch: int) -> tuple[float, float]:
    """(bytes, flops) of one SGD step, lower bounds: every activation written once and read
    back by the backward, every weight read by forward and backward and read, updated and
    written by SGD, the gradients written and read once; 3 matmuls per layer."""
    nbytes, flops = 4.0 * batch * sizes[0], 0.0
    for fan_in, fan_out in zip(sizes, sizes[1:]):
        w = fan_in * fan_out + fan_out
        nbytes += 4.0 * (3 * batch * fan_out + 5 * w)
        flops += 6.0 * batch * fan_in * fan_out
    return nbytes, flops


def gelu_cost() -> float:
    """Bytes of one tanh-GELU backward: read z and the cotangent, write dz."""
    return 3 * 4.0 * GELU_SHAPE[0] * GELU_SHAPE[1]


# ---------------------------------------------------------------------- timing
def median_ms(fn, repeats: int, sync) -> float:
    """Median wall time of ``fn`` in ms (3 warm-up calls; ``sync`` waits for the GPU)."""
    for _ in range(3):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def copy_bandwidth(cuda, nbytes: int = 1 << 28) -> float:
    """Device-to-device copy bandwidth in GB/s (bytes read + written per second)."""
    src = cuda.to_device(np.ones(nbytes // 4, np.float32))
    dst = cuda.device_array_like(src)
    ms = median_ms(lambda: dst.copy_to_device(src), 20, cuda.synchronize)
    return 2 * nbytes / (ms * 1e-3) / 1e9


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


# ---------------------------------------------------------------------- workloads
def run_mlp(name: str, args, cuda, torch) -> dict:
    import gradc
    w = MLPS[name]
    params = init_params(w.sizes)
    x, y = make_batch(w.sizes, args.batch)
    gpu = cuda_model(w.path)
    cpu = gradc.compile(w.path)
    # correctness: one step from the same params on both targets
    pc = {k: v.copy() for k, v in params.items()}
    pg = {k: cuda.to_device(v) for k, v in params.items()}
    xd, yd = cuda.to_device(x), cuda.to_device(y)
    lc, lg = cpu.train_step(pc, 0.1, x=x, y=y), gpu.train_step(pg, 0.1, state={}, x=xd, y=yd)
    err = max([rel(lg, lc)] + [rel(pg[k].copy_to_host(), pc[k]) for k in pc])
    state = {}
    gradc_ms = median_ms(lambda: gpu.train_step(pg, 1e-5, state=state, x=xd, y=yd),
                         args.repeats, cuda.synchronize)
    torch_ms = None
    if torch is not None:
        from benchmarks.peers_torch import TorchMLP
        tm = TorchMLP(params, w.activation)
        tm.tensors = [t.detach().cuda().requires_grad_(True) for t in tm.tensors]
        xt, yt = torch.tensor(x).cuda(), torch.tensor(y).cuda()
        torch_ms = median_ms(lambda: float(tm.step(xt, yt, 1e-5)), args.repeats,
                             torch.cuda.synchronize)
    nbytes, flops = mlp_cost(w.sizes, args.batch)
    return row(f"{name} ({w.describe().split(',')[0]}, batch {args.batch})", gradc_ms,
               torch_ms, nbytes, err, flops)


def run_gelu(args, cuda, torch) -> dict:
    import gradc
    from benchmarks.workloads import make_gelu_data
    z, g = make_gelu_data()
    path, opts = model_path("gelu_fb")
    gpu, cpu = cuda_model(path, **opts), gradc.compile(path, **opts)
    zd, gd = cuda.to_device(z), cuda.to_device(g)
    want = cpu.vjp({}, {"out": g}, z=z)["z"]
    err = rel(gpu.vjp({}, {"out": gd}, z=zd)["z"].copy_to_host(), want)
    gradc_ms = median_ms(lambda: gpu.vjp({}, {"out": gd}, z=zd), args.repeats,
                         cuda.synchronize)
    torch_ms = None
    if torch is not None:
        zt = torch.tensor(z).cuda().requires_grad_(True)
        gt = torch.tensor(g).cuda()

        def step():
            out = 0.5 * zt * (1.0 + torch.tanh(0.7978845608 * (zt + 0.044715 * zt ** 3)))
            out.backward(gt)
            zt.grad = None
        torch_ms = median_ms(step, args.repeats, torch.cuda.synchronize)
    return row(f"gelu_fb (tanh-GELU fwd+bwd, {GELU_SHAPE[0]}x{GELU_SHAPE[1]})", gradc_ms,
               torch_ms, gelu_cost(), err)


def row(label, gradc_ms, torch_ms, nbytes, err, flops=None) -> dict:
    return {"workload": label, "gradc_ms": gradc_ms, "torch_ms": torch_ms,
            "ratio": None if torch_ms is None else torch_ms / gradc_ms,
            "gbps": nbytes / (gradc_ms * 1e-3) / 1e9,
            "tflops": None if flops is None else flops / (gradc_ms * 1e-3) / 1e12,
            "check_rel_err": err, "check_ok": err <= CHECK_TOL}


def report(rows: list[dict], copy_gbps: float) -> str:
    head = (f"{'workload':52} {'gradc ms':>9} {'torch ms':>9} {'torch/gradc':>11} "
            f"{'GB/s':>7} {'% copy':>6} {'TFLOP/s':>7}  check")
    lines = [f"device copy bandwidth: {copy_gbps:.0f} GB/s (read + write)", head,
             "-" * len(head)]
    for r in rows:
        def fmt(v, spec):
            return format(v, spec) if v is not None else "-".rjust(len(format(1.0, spec)))
        lines.append(f"{r['workload']:52} {r['gradc_ms']:9.3f} {fmt(r['torch_ms'], '9.3f')} "
                     f"{fmt(r['ratio'], '11.2f')} {r['gbps']:7.0f} "
                     f"{100 * r['gbps'] / copy_gbps:6.1f} {fmt(r['tflops'], '7.1f')}  "
                     f"{'ok' if r['check_ok'] else 'MISMATCH'} ({r['check_rel_err']:.1e})")
    return "\n".join(lines)


def dry_run(args) -> int:
    """Build each workload's CUDA module (no GPU needed) and print the plan."""
    for name in args.only:
        path, opts = model_path(name)
        module = cuda_model(path, **opts)
        kernels = sum(len(v) for v in module._SIGNATURES.values())
        what = "vjp" if name == "gelu_fb" else f"train_step at batch {args.batch}"
        print(f"{name}: {path.name} -> {len(module._PROGRAMS)} entries, {kernels} kernel "
              f"signatures; would time {what}, {args.repeats} repeats")
    return 0


def main(argv=None) -> int:
    args = parse(argv)
    if args.dry_run:
        return dry_run(args)
    try:
        from numba import cuda
    except ImportError as e:
        print(f"benchmarks.gpu: numba-cuda is not installed ({e}); pip install 'gradc[cuda]'",
              file=sys.stderr)
        return NO_GPU
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or not cuda.is_available():
        print("benchmarks.gpu: no NVIDIA GPU is visible (numba.cuda.is_available() is "
              "False, or the simulator is on); this benchmark needs one. "
              "'python -m benchmarks.gpu --dry-run' builds the models without a GPU.",
              file=sys.stderr)
        return NO_GPU
    try:
        import torch
        torch = torch if torch.cuda.is_available() else None
    except ImportError:
        torch = None
    if torch is None:
        print("note: torch with CUDA is not available: no peer column", file=sys.stderr)
    name = cuda.get_current_device().name
    print(f"GPU: {name.decode() if isinstance(name, bytes) else name}")
    copy_gbps = copy_bandwidth(cuda)
    rows = [run_gelu(args, cuda, torch) if name == "gelu_fb" else
            run_mlp(name, args, cuda, torch) for name in args.only]
    print(report(rows, copy_gbps))
    if args.json:
        Path(args.json).write_text(json.dumps({"copy_gbps": copy_gbps, "rows": rows},
                                              indent=2), encoding="utf-8")
    return 0 if all(r["check_ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
