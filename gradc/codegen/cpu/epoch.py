"""``train_epoch``: a whole epoch of ``train_step`` in one compiled call.

The epoch is given as its rows in order (int64 indices into the data: the caller's
``order`` or the shuffle of ``seed``, see ``runtime._epoch_plan``); its length is the
epoch's size. The compiled loop copies each minibatch's rows into preallocated
contiguous buffers, element by element, and runs train_step's own statements on them
(printed by :meth:`gradc.codegen.cpu.emit.CpuEmitter.body`, inside the loop). One
workspace, planned for the full batch size, serves the smaller last batch too, since
every workspace offset grows with the batch dim.

Why the step is printed inside the loop rather than called: a call of the train_step
kernel makes Numba link that kernel's library into the loop's, and LLVM optimises and
machine-codes the whole step a second time (measured, spiral with Adam: 5.8 s for
train_step, 10.5 s for train_epoch; printed inside, the loop costs little more than the
step). And ``buffer[i] = data[row]`` would make Numba compile the broadcasting error path
of an array assignment (2-5 s, ``../shared/notes/compile-latency.md``); the element loops
have none.

Every name the loop itself assigns starts with ``e`` (``e_``, ``eb_``), a prefix the
step's statements never use: the full data arrays are ``e_<name>`` (the step reads the
minibatch as ``<name>``), the batch dim's full size ``e_<dim>``.
"""

from __future__ import annotations

from contextlib import ExitStack

from gradc.codegen.builder import Builder
from gradc.codegen.cpu.emit import CpuEmitter
from gradc.codegen.indexing import NP, int_expr
from gradc.passes.kernels import Program
from gradc.passes.schedule import ProgramSpec


def emit_epoch(b: Builder, emitter: CpuEmitter, spec: ProgramSpec, prog: Program, fname: str,
               step_scalars: list[tuple[str, str]]) -> None:
    """Append the njit epoch loop of the train_step program ``prog`` of ``spec`` (see the
    module docstring), named ``fname``; ``step_scalars`` are the optimizer's per-step
    scalars (name, expression in ``e_t``), given to the step after the learning rate.

    Its parameters: the step's arrays (inputs and dropout noise at their full size),
    ``h_lr_in``, the step count before the epoch, the epoch's rows in order (``e_perm``,
    int64 indices into the inputs), the batch size, the seed of the dropout draws, the
    workspace and the dims (the batch dim at its full size); it returns the mean loss,
    each minibatch weighted by its size."""
    dim_var = emitter.dim_var
    bdim = spec.batch_dim
    arrays = [a for a in prog.args if a.kind == "arg"]
    scalars = [a.name for a in prog.args if a.kind == "scalar"]
    if len(scalars) != 1 + len(step_scalars):
        raise AssertionError("train_step's scalars are the rate and the optimizer's")
    roles = {a.name: n.attrs.get("role", "input") if n.op == "input" else n.op
             for a, n in zip(arrays, spec.args)}
    inputs = [a for a in arrays if roles[a.name] == "input"]
    noise = [a for a in arrays if roles[a.name] == "noise"]
    rows = {a.name for a in inputs + noise}
    dims = [f"e_{dim_var(d)}" if d == bdim else dim_var(d) for d in prog.dims]
    params = [f"e_{a.name}" if a.name in rows else a.name for a in arrays] + \
        ["h_lr_in", "e_t0", "e_perm", "e_bs", "e_seed", "ws"] + dims
    b.line("@nb.njit(**_JIT)")
    with b.block(f"def {fname}({', '.join(params)}):"):
        b.line("e_n = e_perm.shape[0]")
        if noise:
            b.line("np.random.seed(e_seed)")
        for a in inputs:
            shape = ", ".join(["e_bs"] + [f"e_{a.name}.shape[{k}]" for k in range(1, a.rank)])
            b.line(f"eb_{a.name} = np.empty(({shape}{',' if a.rank == 1 else ''}), "
                   f"e_{a.name}.dtype)")
        b.line("e_total = 0.0")
        b.line("e_t = e_t0")
        with b.block("for e_start in range(0, e_n, e_bs):"):
            b.line("e_m = min(e_bs, e_n - e_start)")
            with b.block("for e_i in range(e_m):"):
                b.line("e_row = e_perm[e_start + e_i]")
                for a in inputs:
                    _copy_row(b, a.name, a.rank)
            if bdim is not None:
                b.line(f"{dim_var(bdim)} = e_m")
            for a in inputs:
                b.line(f"{a.name} = eb_{a.name}[:e_m]")
            for a in noise:
                shape = ", ".join(["e_m"] + [int_expr(d, dim_var) for d in a.shape[1:]])
                b.line(f"{a.name} = np.random.random(({shape}{',' if a.rank == 1 else ''}))"
                       f".astype({NP[a.dtype]})")
            b.line("e_t += 1")
            for s, (_, text) in zip(scalars[1:], step_scalars):
                b.line(f"{s}_in = {text}")
            loss = emitter.body(b, prog)[0]
            b.line(f"e_total += {loss} * e_m")
        b.line("return e_total / e_n")
    b.line()


def _copy_row(b: Builder, name: str, rank: int) -> None:
    """``eb_<name>[e_i] = e_<name>[e_row]``, element by element."""
    axes = [f"e_j{k}" for k in range(1, rank)]
    with ExitStack() as nest:
        for k, j in enumerate(axes, 1):
            nest.enter_context(b.block(f"for {j} in range(e_{name}.shape[{k}]):"))
        at = "".join(f", {j}" for j in axes)
        b.line(f"eb_{name}[e_i{at}] = e_{name}[e_row{at}]")
