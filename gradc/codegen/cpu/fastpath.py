"""A straight-line argument check per entry: the per-call overhead on small models.

The general validator (``_prepare`` of :mod:`gradc.codegen.runtime`) is generic and gives
precise messages. The fast path generated here handles the common case only — exactly the
needed names, the declared dtypes, C-contiguous arrays of the declared shapes, a workspace
already planned — with one comparison per fact and no loops; anything else falls through
to ``_prepare``, which either accepts the call or raises the precise ``ValueError``.
"""

from __future__ import annotations

from gradc.codegen.builder import Builder
from gradc.passes.kernels import Program
from gradc.passes.schedule import ProgramSpec


def _source(node) -> str:
    role = node.attrs.get("role", "input") if node.op == "input" else "param"
    name = node.attrs["name"]
    if role == "param":
        return f"params[{name!r}]"
    if role == "input":
        return f"inputs[{name!r}]"
    if role == "buffer":
        return f"state[{('buffer:' + name)!r}]"
    return f"state[{(role.split(':', 1)[1] + ':' + name)!r}]"


def supported(spec: ProgramSpec) -> bool:
    """The fast path covers programs without scalar (rank-0) array arguments and without
    noise (dropout masks are drawn by the general path)."""
    return all(n.shape for n in spec.args if n.op != "hyper") and \
        not any(n.attrs.get("role") == "noise" for n in spec.args)


def emit_fast(b: Builder, spec: ProgramSpec, prog: Program, dim_var, call: str, ret: str,
              n_params: int, extra: str = "") -> None:
    """Emit ``if <all checks pass>: return <ret of call(...)>`` for ``spec``.

    ``call`` is the kernel's name; ``ret`` an expression of the kernel's result ``r``;
    ``extra`` one more condition. The state dict must already be named ``state``. The
    workspace and threads come from the calling thread's plans (``_LOCAL``, see the
    runtime's ``_plan``); the first call of a thread for given dims takes the general path,
    which makes the plan.
    """
    arrays = [n for n in spec.args if n.op != "hyper"]
    scalars = [n for n in spec.args if n.op == "hyper"]
    if not arrays:  # nothing to check (a constant model): the general path is as fast
        return
    n_inputs = sum(1 for n in arrays if n.op == "input" and
                   n.attrs.get("role", "input") == "input")
    cond = f"type(params) is dict and len(params) == {n_params} and len(inputs) == {n_inputs}"
    if spec.name == "train_step" or any(
            n.op == "input" and n.attrs.get("role", "").startswith(("state", "buffer"))
            for n in arrays):
        # a complete state of the right layout (anything else: _prepare's checks)
        cond += " and type(state.get('step')) is int and state.keys() == _STATE_KEYS"
    if extra:
        cond += f" and ({extra})"
    with b.block(f"if {cond}:"):
        with b.block("try:"):
            for k, n in enumerate(arrays):
                b.line(f"a{k} = {_source(n)}")
            bound, checks = {}, []
            for k, n in enumerate(arrays):
                dims = []
                for axis, d in enumerate(n.shape):
                    if d.is_Integer:
                        dims.append(str(int(d)))
                    elif d.is_Symbol and d.name not in bound:
                        bound[d.name] = f"a{k}.shape[{axis}]"
                        b.line(f"{dim_var(d.name)} = a{k}.shape[{axis}]")
                        checks.append(f"{dim_var(d.name)} > 0")
                        dims.append(dim_var(d.name))
                    else:
                        dims.append(dim_var(d.name))
                shape = "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"
                checks += [f"a{k}.shape == {shape}", f"a{k}.dtype is _DT[{n.dtype!r}]",
                           f"a{k}.flags.c_contiguous"]
                if spec.stores:  # updated in place: must be writeable
                    checks.append(f"a{k}.flags.writeable")
            b.line(f"ok = ({checks[0]}")
            for check in checks[1:]:
                b.line(f"      and {check}")
            b.line("      )")
        with b.block("except (KeyError, AttributeError):"):
            b.line("ok = False")
        with b.block("if ok:"):
            dims = "(" + "".join(f"{dim_var(d)}, " for d in prog.dims) + ")"
            b.line(f"plan = _LOCAL.__dict__.get('spaces', {{}}).get(({spec.name!r}, "
                   f"{dims}))")
            with b.block("if plan is not None:"):
                args = [f"a{k}" for k in range(len(arrays))]
                if scalars:  # train_step: the learning rate, then the optimizer's scalars
                    b.line("t = state['step'] = state['step'] + 1")
                    args += ["lr", "*_step_scalars(t)"]
                args += ["plan[0]"] + [dim_var(d) for d in prog.dims]
                b.line(f"r = _invoke({call}, plan[1], {', '.join(args)})")
                b.line(f"return {ret}")
