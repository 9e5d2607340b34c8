"""The PINN workload of issue 23: one Adam training step of the 2-D Poisson loss
``mean((u_xx + u_yy - f)^2) + mean(net(pb)^2)``, ``f = 2π² sin(πx) sin(πy)``, of a
2-32-32-32-1 tanh MLP at 1024 interior and 256 boundary points, float32, one thread each:

* gradc: ``benchmarks/models/pinn_poisson.grad`` (``grad`` inside the model),
  ``model.train_step(params, lr=..., x=X, pb=PB)``, Adam;
* PyTorch eager: ``autograd.grad(create_graph=True)`` for u_x, u_y, u_xx, u_yy,
  ``loss.backward()``, ``torch.optim.Adam``;
* ``jax.jit``: the Laplacian as the trace of ``jax.hessian`` of the network at one point
  under ``vmap``, ``value_and_grad`` and Adam written out, the whole step jitted.

All sides start from the same params and data (NumPy, seed 0); the check column compares
each side's loss at those params and its params after one step with gradc's (relative
errors). Prints the medians, the peers' ratios to gradc (goal: >= 3 each) and gradc's
achieved GFLOP/s: the step's matrix-product FLOPs counted on gradc's own ``train_step``
graph, against its median. Run: ``python -m benchmarks.pinn [--repeats 50]``.

``--crossover`` measures instead where forward mode stops paying
(:data:`gradc.autodiff.columns.MAX_COLUMNS`): the same step with the Laplacian in d
dimensions (``x : [1024, d]``, the sum of d second derivatives) for several d, compiled
once with forward mode allowed and once with reverse mode only (each in its own cache
folder), gradc alone.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
             "NUMBA_NUM_THREADS", "GRADC_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ["XLA_FLAGS"] = ("--xla_cpu_multi_thread_eigen=false "
                           "intra_op_parallelism_threads=1")

import argparse  # noqa: E402 - after the thread settings, which imports must see
import math  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from gradc.commands.bench import time_calls  # noqa: E402

MODEL = Path(__file__).resolve().parent / "models" / "pinn_poisson.grad"
SIZES = (2, 32, 32, 32, 1)
N_INTERIOR, N_BOUNDARY = 1024, 256
LR, CHECK_LR = 1e-5, 1e-3


def shared_data() -> tuple[dict, dict]:
    """(params by gradc name, inputs): glorot-uniform weights, zero biases, seed 0."""
    rng = np.random.default_rng(0)
    params = {}
    for i, (a, b) in enumerate(zip(SIZES, SIZES[1:]), start=1):
        lim = math.sqrt(6 / (a + b))
        params[f"fc{i}.W"] = rng.uniform(-lim, lim, (a, b)).astype(np.float32)
        params[f"fc{i}.b"] = np.zeros(b, np.float32)
    x = rng.uniform(0, 1, (N_INTERIOR, 2)).astype(np.float32)
    side, s = rng.integers(0, 4, N_BOUNDARY), rng.uniform(0, 1, N_BOUNDARY)
    fixed = (side % 2).astype(np.float64)
    pb = np.where((side < 2)[:, None], np.c_[s, fixed], np.c_[fixed, s]).astype(np.float32)
    return params, {"x": x, "pb": pb}


def median_time(step, repeats: int) -> float:
    """Median seconds of ``step()`` over ``repeats`` calls after a warm-up (gradc bench's
    timing)."""
    return float(np.median(time_calls(step, repeats)[1]))


# ---------------------------------------------------------------------- gradc
def gradc_side(params: dict, inputs: dict):
    import gradc
    model = gradc.compile(MODEL, optimizer="adam", wait=True)
    assert {k: (v.shape, v.dtype) for k, v in model.init_params(0).items()} == \
        {k: (v.shape, v.dtype) for k, v in params.items()}

    def run(p: dict, lr: float, steps: int = 1):
        p = {k: v.copy() for k, v in p.items()}
        model.reset_optimizer()
        loss = [model.train_step(p, lr=lr, **inputs) for _ in range(steps)][0]
        return loss, p

    mine = {k: v.copy() for k, v in params.items()}
    return model, run, lambda: model.train_step(mine, lr=LR, **inputs)


def matmul_flops(model, inputs: dict) -> int:
    """FLOPs of the matrix products of gradc's ``train_step`` graph at ``inputs``' sizes."""
    from gradc.passes.programs import Optimizer, build_programs
    spec = build_programs(model.graph, (), Optimizer.parse("adam"),
                          names=("train_step",))["train_step"]
    dims = {"N": len(inputs["x"]), "M": len(inputs["pb"])}
    def size(d) -> int:
        return int(d.subs({s: dims[s.name] for s in d.free_symbols}))

    total = 0
    for n in spec.graph.topo([*spec.roots, *(v for _, v in spec.stores)]):
        if n.op == "matmul":
            a, _ = n.inputs
            inner = a.shape[-2] if n.attrs["ta"] else a.shape[-1]
            total += 2 * math.prod(size(d) for d in n.shape) * size(inner)
    return total


# ---------------------------------------------------------------------- torch
def torch_side(params: dict, inputs: dict):
    import torch
    torch.set_num_threads(1)
    x, pb = (torch.tensor(inputs[k]) for k in ("x", "pb"))
    f = 2 * math.pi ** 2 * torch.sin(math.pi * x[:, 0]) * torch.sin(math.pi * x[:, 1])

    def make(p: dict):
        ps = {k: torch.tensor(v, requires_grad=True) for k, v in p.items()}

        def net(z):
            for i in range(1, 4):
                z = torch.tanh(torch.addmm(ps[f"fc{i}.b"], z, ps[f"fc{i}.W"]))
            return torch.addmm(ps["fc4.b"], z, ps["fc4.W"])

        def loss_fn():
            xg = x.clone().requires_grad_(True)
            u = net(xg)
            g, = torch.autograd.grad(u.sum(), xg, create_graph=True)
            uxx = torch.autograd.grad(g[:, 0].sum(), xg, create_graph=True)[0][:, 0]
            uyy = torch.autograd.grad(g[:, 1].sum(), xg, create_graph=True)[0][:, 1]
            return ((uxx + uyy - f) ** 2).mean() + (net(pb) ** 2).mean()
        return ps, loss_fn

    def run(p: dict, lr: float):
        ps, loss_fn = make(p)
        opt = torch.optim.Adam(list(ps.values()), lr=lr)
        loss = loss_fn()
        loss.backward()
        opt.step()
        return float(loss.detach()), {k: v.detach().numpy() for k, v in ps.items()}

    ps, loss_fn = make(params)
    opt = torch.optim.Adam(list(ps.values()), lr=LR)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        opt.step()
        return loss
    return run, step


# ---------------------------------------------------------------------- jax
def jax_side(params: dict, inputs: dict):
    import jax
    import jax.numpy as jnp
    x, pb = jnp.asarray(inputs["x"]), jnp.asarray(inputs["pb"])
    f = 2 * math.pi ** 2 * jnp.sin(math.pi * x[:, 0]) * jnp.sin(math.pi * x[:, 1])

    def net(p, z):
        for i in range(1, 4):
            z = jnp.tanh(z @ p[f"fc{i}.W"] + p[f"fc{i}.b"])
        return z @ p["fc4.W"] + p["fc4.b"]

    def u_at(p, point):
        return net(p, point[None, :])[0, 0]

    def loss_fn(p):
        lap = jax.vmap(lambda q: jnp.trace(jax.hessian(u_at, argnums=1)(p, q)))(x)
        return jnp.mean((lap - f) ** 2) + jnp.mean(net(p, pb) ** 2)

    def adam(p, m, v, t, lr):
        loss, g = jax.value_and_grad(loss_fn)(p)
        b1, b2, eps = 0.9, 0.999, 1e-8
        m = jax.tree.map(lambda a, b: b1 * a + (1 - b1) * b, m, g)
        v = jax.tree.map(lambda a, b: b2 * a + (1 - b2) * b * b, v, g)
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        p = jax.tree.map(lambda w, a, b: w - lr * (a / c1) / (jnp.sqrt(b / c2) + eps), p, m, v)
        return loss, p, m, v

    step_fn = jax.jit(adam, donate_argnums=(0, 1, 2))

    def fresh(p):
        p = {k: jnp.asarray(v) for k, v in p.items()}
        return p, *({k: jnp.zeros_like(v) for k, v in p.items()} for _ in range(2))

    def run(p: dict, lr: float):
        loss, p, _, _ = step_fn(*fresh(p), 1.0, lr)
        return float(loss), {k: np.asarray(v) for k, v in p.items()}

    state = list(fresh(params))
    count = [0]

    def step():
        count[0] += 1
        loss, *state[:] = step_fn(*state, float(count[0]), LR)
        jax.block_until_ready((loss, state[0]))
        return loss
    return run, step


def laplacian_model(d: int) -> str:
    """The benchmark's model with the Laplacian in ``d`` dimensions (f = 0)."""
    text = MODEL.read_text(encoding="utf-8").replace("dense(2 ->", f"dense({d} ->")
    head = text[:text.index("g      =")]
    terms = " + ".join(f"grad(sum(g[:, {j}]), x)[:, {j}]" for j in range(d))
    return (head.replace("f32[N, 2]", f"f32[N, {d}]").replace("f32[M, 2]", f"f32[M, {d}]")
            + f"g = grad(sum(net(x)), x)\nloss = mean(({terms}) ^ 2) + mean(net(pb) ^ 2)\n")


def crossover(dims: tuple[int, ...], repeats: int, rounds: int = 3) -> None:
    """Print the median train_step of each d with forward mode allowed and reverse only
    (the two compiled first, then timed in alternating rounds: the median of the rounds'
    medians), and each one's matrix-product MFLOP."""
    import tempfile

    import gradc
    from gradc.autodiff import columns
    rng = np.random.default_rng(0)
    print(f"{'d':>3}{'forward allowed':>24}{'reverse only':>24}{'reverse/forward':>17}")
    allowed = columns.MAX_COLUMNS
    for d in dims:
        inputs = {"x": rng.uniform(0, 1, (N_INTERIOR, d)).astype(np.float32),
                  "pb": rng.uniform(0, 1, (N_BOUNDARY, d)).astype(np.float32)}
        steps, flops = [], []
        for limit in (allowed, 0):
            columns.MAX_COLUMNS = limit
            os.environ["GRADC_CACHE_DIR"] = tempfile.mkdtemp(prefix="gradc_pinn_")
            model = gradc.compile_string(laplacian_model(d), f"lap{d}", optimizer="adam",
                                         wait=True)
            params = model.init_params(0)
            steps.append(lambda m=model, p=params, x=inputs: m.train_step(p, lr=LR, **x))
            flops.append(matmul_flops(model, inputs) / 1e6)
        columns.MAX_COLUMNS = allowed
        times = [[], []]
        for _ in range(rounds):
            for k, step in enumerate(steps):
                times[k].append(median_time(step, repeats))
        fwd, rev = (float(np.median(t)) for t in times)
        print(f"{d:>3}{fwd * 1e3:>10.3f} ms {flops[0]:>6.1f} MFLOP"
              f"{rev * 1e3:>10.3f} ms {flops[1]:>6.1f} MFLOP{rev / fwd:>16.2f}x")


def rel(a, b) -> float:
    a, b = np.ravel(np.asarray(a, np.float64)), np.ravel(np.asarray(b, np.float64))
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.pinn", description=__doc__)
    ap.add_argument("--repeats", type=int, default=50, help="timed steps per side")
    ap.add_argument("--crossover", action="store_true",
                    help="forward against reverse mode for the Laplacian in 1, 2 and 4 dims")
    args = ap.parse_args(argv)
    if args.crossover:
        crossover((1, 2, 4), args.repeats)
        return 0
    params, inputs = shared_data()
    model, g_run, g_step = gradc_side(params, inputs)
    want_loss, want_p = g_run(params, CHECK_LR)
    flops = matmul_flops(model, inputs)
    rows = [("gradc", median_time(g_step, args.repeats), "")]
    for name, side in (("torch eager", torch_side), ("jax.jit", jax_side)):
        try:
            run, step = side(params, inputs)
        except ImportError as e:
            rows.append((name, None, f"missing: {e}"))
            continue
        loss, p = run(params, CHECK_LR)
        upd = max(rel(p[k] - params[k], want_p[k] - params[k]) for k in params)
        rows.append((name, median_time(step, args.repeats),
                     f"loss {rel(loss, want_loss):.1e} upd {upd:.1e}"))
    base = rows[0][1]
    print(f"PINN Poisson step: 2-32-32-32-1 tanh, {N_INTERIOR} interior + {N_BOUNDARY} "
          f"boundary points, Adam, float32, one thread; {args.repeats} timed steps a side")
    print(f"{'side':<14}{'median':>12}{'ratio':>9}   check (relative to gradc)")
    for name, t, check in rows:
        if t is None:
            print(f"{name:<14}{'':>12}{'':>9}   {check}")
            continue
        ratio = "" if name == "gradc" else f"{t / base:.2f}x"
        print(f"{name:<14}{t * 1e3:>9.3f} ms{ratio:>9}   {check}")
    print(f"gradc: {flops / 1e6:.1f} MFLOP of matrix products a step, "
          f"{flops / base / 1e9:.2f} GFLOP/s achieved")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
