"""Scale-out benchmark: gradc.dask on a LocalCluster (``python -m benchmarks.scale_out``).

Measures, for ``examples/mlp.grad`` (3072-100-10, float32, SGD) on synthetic data made on
the workers (``dask.array`` random numbers: nothing is sent from the driver):

* samples/s of data-parallel training (:func:`gradc.dask.fit`, batch 256) with 1 and 2
  workers, beside single-process training (the same loop, ``train_step`` per minibatch);
* the per-step coordination overhead: the wall time of one step's round trip to every
  holder minus the longest gradient computation on a holder (median, 10th and 90th
  percentile over repeats), and the driver's optimizer update; beside it the same step
  done as a fresh task per worker per step (``client.submit``), the route not taken;
* sweep throughput (trials/min) with 1 and 2 workers: 4 settings, 1 epoch each on a
  smaller data set, read from an ``.npz`` on a worker;
* the projections of docs/scale-out.md from these numbers (see :func:`project`).

Options: ``--rows N`` (default 4096), ``--epochs N`` (2), ``--repeats N`` (40),
``--workers 1,2``. Prints one table; numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "examples" / "mlp.grad"
BATCH = 256


def _model():
    import gradc
    return gradc.compile(MODEL, optimizer="sgd")


def _data(rows: int, chunks: int):
    import dask.array as da
    rng = da.random.default_rng(0)
    x = rng.standard_normal((rows, 3072), chunks=(rows // chunks, 3072), dtype=np.float32)
    y = rng.integers(0, 10, rows, chunks=rows // chunks, dtype=np.int64)
    return {"x": x, "y": y}


def _spread(values: list[float]) -> tuple[float, float, float]:
    q = np.percentile(values, [50, 10, 90])
    return float(q[0]), float(q[1]), float(q[2])


def single_process(model, rows: int, epochs: int) -> float:
    """Samples/s of the single-process loop (train_step per minibatch), after a warm-up
    that compiles the kernels (so that the workers load them from the cache)."""
    from gradc.training.data import analyse
    from gradc.training.history import History
    from gradc.training.loop import Config, fit
    rng = np.random.default_rng(0)
    data = {"x": rng.standard_normal((rows, 3072), dtype=np.float32),
            "y": rng.integers(0, 10, rows)}
    params = model.init_params(0)
    model.reset_optimizer()
    scratch = {k: v.copy() for k, v in params.items()}
    for fused in (True, False):     # compile (or load) every kernel training and sweeps use
        fit(model, scratch, {k: a[:2 * BATCH] for k, a in data.items()}, None,
            analyse(model.signature), Config(1, BATCH, 0.01, 0, progress=False, quiet=True,
                                             fused=fused), History())
    model.reset_optimizer()
    history = fit(model, params, data, None, analyse(model.signature),
                  Config(epochs, BATCH, 0.01, 0, progress=False, quiet=True, fused=False),
                  History())
    return rows * epochs / sum(r.seconds for r in history.rows)


def data_parallel(model, client, rows: int, epochs: int, workers: int) -> dict:
    """Samples/s of gradc.dask.fit and per-worker samples/s in loss_and_grad."""
    from gradc.dask import fit
    model.reset_optimizer()
    r = fit(model, client, _data(rows, 2 * workers), epochs=epochs, batch_size=BATCH,
            lr=0.01, seed=0)
    steps = sum(row.seconds for row in r.history.rows)
    return {"samples_s": r.n_train * epochs / steps,
            "per_worker": [s.samples_per_s for s in r.workers.values()]}


def overhead(model, client, rows: int, workers: int, repeats: int) -> dict:
    """Per-step coordination overhead of the actor route and of a task per step (µs)."""
    from distributed import wait

    from gradc.dask.fleet import Fleet
    from gradc.dask.optimizer import HostOptimizer, weighted_mean
    from gradc.dask.sources import plan
    params = model.init_params(0)
    parts = plan(_data(rows, 2 * workers), model.signature, client)
    fleet = Fleet(client, model, parts)
    try:
        fleet.start(params, 0.0, 0)
        order = np.random.default_rng(0).permutation(rows)
        coord, update, walls = [], [], []
        opt = HostOptimizer(model)
        for i in range(repeats):
            batch = order[(i * BATCH) % (rows - BATCH):][:BATCH]
            t0 = time.perf_counter()
            results = fleet.each("grad", params, batch)
            wall = time.perf_counter() - t0
            walls.append(wall)
            coord.append(wall - max(r[3] for _, r in results))
            t1 = time.perf_counter()
            done = [(r[0], r[2]) for _, r in results if r[0]]
            opt.step(params, weighted_mean(done, {k: v.dtype for k, v in params.items()}),
                     0.01, model.state)
            update.append(time.perf_counter() - t1)
        # The route not taken: one fresh task per holder per step, through the scheduler.
        shipped = client.scatter(model, broadcast=True, hash=False)
        blocks = [(p.source, p.where) for p in parts]
        task_coord = []
        for i in range(max(5, repeats // 4)):
            batch = order[(i * BATCH) % (rows - BATCH):][:BATCH]
            t0 = time.perf_counter()
            futs = [client.submit(_task_grad, shipped, src, params, batch, i * len(parts) + j,
                                  len(parts), rows, workers=[w] if w else None, pure=False)
                    for j, (src, w) in enumerate(blocks)]
            wait(futs, timeout=120)
            got = client.gather(futs)
            task_coord.append(time.perf_counter() - t0 - max(g[1] for g in got))
    finally:
        fleet.close()
    return {"actor": _spread(coord), "update": _spread(update), "step": _spread(walls),
            "task": _spread(task_coord)}


def _task_grad(model, arrays, params, batch, _tag, parts, rows):
    """loss_and_grad on a block's rows of ``batch`` (a fresh task): (rows, seconds)."""
    t0 = time.perf_counter()
    n = len(next(iter(arrays.values())))
    local = batch[batch < n]
    if len(local):
        model.loss_and_grad(params, **{k: np.ascontiguousarray(a[local])
                                       for k, a in arrays.items()})
    return len(local), time.perf_counter() - t0


def sweep_rate(model, client, path: Path) -> float:
    """Trials per minute of a 4-setting sweep (1 epoch each)."""
    from gradc.dask import sweep
    r = sweep(model, client, str(path), {"lr": [0.02, 0.01, 0.005, 0.001]}, epochs=1,
              batch_size=BATCH, val_split=0.1)
    return 60 * len(r.trials) / r.seconds


def project(rate: float, params: int, coord_base: float, coord_per_worker: float,
            bandwidth: float, update_per_value: float, local_batch: int,
            workers: int) -> float:
    """Scaling efficiency of synchronous data parallelism through the driver (weak
    scaling: ``local_batch`` samples per worker per step): compute / (compute + overhead)
    with compute = local_batch / rate, overhead = coord_base + P·(coord_per_worker +
    2·4·params / bandwidth) + update_per_value·params."""
    compute = local_batch / rate
    comm = coord_base + workers * (coord_per_worker + 2 * 4 * params / bandwidth)
    return compute / (compute + comm + update_per_value * params)


def main(argv=None) -> int:
    import distributed

    ap = argparse.ArgumentParser(prog="python -m benchmarks.scale_out", description=__doc__)
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--workers", default="1,2")
    args = ap.parse_args(argv)
    os.environ.setdefault("GRADC_TIERED", "0")
    model = _model()
    n_params = sum(p.size for p in model.init_params(0).values())
    single = single_process(model, args.rows, args.epochs)   # also compiles the kernels
    tmp = Path(tempfile.mkdtemp(prefix="gradc_scale_out_"))
    rng = np.random.default_rng(1)
    np.savez(tmp / "sweep.npz", x=rng.standard_normal((1024, 3072), dtype=np.float32),
             y=rng.integers(0, 10, 1024))
    print(f"model {MODEL.name}: {n_params:,} params (float32, sgd), batch {BATCH}, "
          f"{args.rows} synthetic rows, {os.cpu_count()} CPUs, load "
          f"{os.getloadavg()[0]:.2f}")
    print(f"single process: {single:,.0f} samples/s")
    found = {}
    for w in (int(v) for v in args.workers.split(",")):
        with distributed.LocalCluster(n_workers=w, threads_per_worker=1, processes=True,
                                      dashboard_address=None,
                                      silence_logs=logging.ERROR) as lc, \
                distributed.Client(lc) as client:
            dp = data_parallel(model, client, args.rows, args.epochs, w)
            oh = overhead(model, client, args.rows, w, args.repeats)
            sw = sweep_rate(model, client, tmp / "sweep.npz")
        found[w] = (dp, oh, sw)
        per = ", ".join(f"{v:,.0f}" for v in dp["per_worker"])
        print(f"{w} worker(s): {dp['samples_s']:,.0f} samples/s (per worker in "
              f"loss_and_grad: {per}); sweep {sw:.1f} trials/min")
        for key, what in (("step", "step wall"), ("actor", "coordination (actor)"),
                          ("update", "driver update"), ("task", "coordination (task/step)")):
            med, lo, hi = oh[key]
            print(f"    {what:26s} median {1e6 * med:9,.0f} µs  (p10 {1e6 * lo:,.0f}, "
                  f"p90 {1e6 * hi:,.0f})")
    if 1 in found and 2 in found:
        o1, o2 = found[1][1]["actor"][0], found[2][1]["actor"][0]
        per_worker = max(o2 - o1, 1e-6)
        base = max(o1 - per_worker, 0.0)
        rate = statistics.mean(found[1][0]["per_worker"])
        upd = found[1][1]["update"][0] / n_params
        bw = 1e9    # bytes/s through the driver, a 10 GbE-class link (assumption)
        print(f"projection: {rate:,.0f} samples/s per worker, coordination {1e6 * base:,.0f} "
              f"µs + per worker λ + 2·4·params/{bw / 1e9:g} GB/s, driver update "
              f"{1e9 * upd:.2f} ns/param; efficiency at P = 8, 64, 512 workers "
              f"[P where it falls to 50%]:")
        for lam, why in ((per_worker, "measured here"), (1e-3, "1 ms")):
            for name, params, r in (("mlp_cifar", n_params, rate),
                                    ("10M MLP", 10_000_000, rate * n_params / 10_000_000)):
                for local in (256, 4096):
                    eff = [project(r, params, base, lam, bw, upd, local, p)
                           for p in (8, 64, 512)]
                    half = next((p for p in range(1, 100_000)
                                 if project(r, params, base, lam, bw, upd, local, p) < 0.5),
                                None)
                    print(f"    λ {why:13s} {name:9s} local batch {local:5d}: "
                          + "  ".join(f"P={p}: {100 * e:5.1f}%" for p, e in
                                      zip((8, 64, 512), eff)) + f"  [{half}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
