"""``train_epoch``: a whole shuffled epoch of ``train_step`` in one compiled call.

The compiled loop gathers each minibatch's rows into preallocated contiguous buffers and
calls the train_step kernel (one workspace, planned for the full batch size, serves the
smaller last batch too, since every workspace offset grows with the batch dim).
"""

from __future__ import annotations

from gradc.codegen.builder import Builder
from gradc.codegen.cpu import NP, int_expr
from gradc.passes.kernels import Program
from gradc.passes.schedule import Entry


def batch_dim(entry: Entry) -> str | None:
    """The dim every input of ``entry`` leads with, or None if they do not share one."""
    inputs = [n for n in entry.args if n.op == "input" and n.attrs.get("role", "input") == "input"]
    leads = {n.shape[0] if n.shape else None for n in inputs}
    if len(leads) != 1:
        return None
    lead = leads.pop()
    return lead.name if lead is not None and lead.is_Symbol else None


def emit_epoch(b: Builder, entry: Entry, prog: Program, step_fn: str, fname: str,
               dim_var, step_scalars: list[tuple[str, str]]) -> None:
    """Append the njit epoch loop of a train_step program (see module docstring);
    ``step_scalars`` are the optimizer's per-step scalars (name, expression in ``t``)."""
    bdim = batch_dim(entry)
    arrays = [a for a in prog.args if a.kind == "arg"]
    scalars = [a for a in prog.args if a.kind == "scalar"]
    inputs = {n.id for n in entry.args if n.op == "input" and
              n.attrs.get("role", "input") == "input"}
    names_in = [a.name for a, n in zip(arrays, entry.args) if n.id in inputs]
    noise = [a for a, n in zip(arrays, entry.args) if n.attrs.get("role") == "noise"]
    dims = [dim_var(d) for d in prog.dims]
    params = [a.name for a in arrays] + ["h_lr_in", "t0", "perm", "bs", "seed", "ws"] + dims
    b.line("@nb.njit(**_JIT)")
    with b.block(f"def {fname}({', '.join(params)}):"):
        b.line("n = perm.shape[0]")
        if noise:
            b.line("np.random.seed(seed)")
        for a in arrays:
            if a.name in names_in:
                rest = ", ".join([f"{a.name}.shape[{k}]" for k in range(1, a.rank)])
                b.line(f"b_{a.name} = np.empty((bs,{' ' + rest if rest else ''}), "
                       f"{a.name}.dtype)")
        b.line("total = 0.0")
        b.line("t = t0")
        with b.block("for start in range(0, n, bs):"):
            b.line("m = min(bs, n - start)")
            with b.block("for i in range(m):"):
                b.line("r = perm[start + i]")
                for nm in names_in:
                    b.line(f"b_{nm}[i] = {nm}[r]")
            for a in noise:
                rest = ", ".join(int_expr(d, dim_var) for d in a.shape[1:])
                b.line(f"b_{a.name} = np.random.random((m,{' ' + rest if rest else ''}))"
                       f".astype({NP[a.dtype]})")
            b.line("t += 1")
            hyper = ["h_lr_in"]
            for k, (_, text) in enumerate(step_scalars):
                b.line(f"q{k}_ = {text}")
                hyper.append(f"q{k}_")
            assert len(hyper) == len(scalars)
            batched = set(names_in) | {a.name for a in noise}
            args = [f"b_{a.name}[:m]" if a.name in names_in else
                    f"b_{a.name}" if a.name in batched else a.name for a in arrays]
            call_dims = ["m" if d == bdim else dim_var(d) for d in prog.dims]
            b.line(f"loss = {step_fn}({', '.join(args + hyper + ['ws'] + call_dims)})[0]")
            b.line("total += loss * m")
        b.line("return total / n")
    b.line()
