"""The public entries registry: every function a compiled model offers, declared once.

Each :class:`PublicEntry` says how the function is called, what it returns, its docstring,
which kernel programs it runs (built by :data:`gradc.passes.programs.PROGRAMS`) and when a
model has it. From this one table come the generated module's public functions (every
target: :mod:`gradc.codegen.assemble`), their fast argument path (CPU) and the methods of
:class:`gradc.Model`. Adding an entry is one row here (plus a program builder when it needs
kernels of its own). This module is light: importing it imports no compiler.

The generated bodies use the runtime helpers of :mod:`gradc.codegen.runtime` and the
target hooks (``_prepare``, ``_run``, ``_named``, ``_loss``, ...), never a target's own API,
so one body serves every target.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PublicEntry:
    """One public function of a compiled model.

    Attributes:
        name: the function's name.
        params: its parameters after ``params`` and before ``**inputs``, as Python source:
            the positional ones SPEC shows (``lr``; the tangent, cotangent or vector
            dict), then ``*`` and the keyword-only ones, so ``forward(p, X)`` is a
            TypeError instead of X bound to ``training`` (``state=None`` is always among
            them: the optimizer state and running statistics to use; the module's or the
            Model's own by default).
        doc: the docstring.
        needs: when a model has it: 'outputs' (the model declares outputs), 'loss' (it
            declares a loss) or 'batch' (a loss, and inputs sharing their leading dim).
        programs: the kernel programs it runs (every one must exist for the model).
        body: the function's body after ``state`` is resolved, as lines of Python.
        fast: for the fast argument path: (program, condition or '', result expression of
            the kernel's result ``r``), or None when the entry has none.
    """

    name: str
    params: str
    doc: str
    needs: str
    programs: tuple[str, ...]
    body: tuple[str, ...]
    fast: tuple[str, str, str] | None = None

    def arguments(self) -> list[tuple[str, bool]]:
        """``(name, required)`` of each parameter in :attr:`params` (the ``*`` left out)."""
        return [(item.split("=")[0].strip(), "=" not in item)
                for item in self.params.split(",") if item.strip() not in ("", "*")]


_OUTS = "_named('outputs', r, call)"
_GRADS = "_named('tangents', r, call)"
#: the fast path's condition of an entry with a training mode: the eval-mode program runs
_EVAL_MODE = "not training or '{}_train' not in _PROGRAMS"


def _in_mode(program: str) -> str:
    """The body line that prepares ``program`` in eval mode, or its train-mode twin
    ``program_train`` with training=True (models with batchnorm or dropout have one)."""
    return (f"call = _prepare('{program}_train' if training and '{program}_train' in "
            f"_PROGRAMS else '{program}', params, inputs, None, state, seed)")


ENTRIES: dict[str, PublicEntry] = {e.name: e for e in [
    PublicEntry(
        "forward", "*, training=False, seed=None, state=None",
        "Return the outputs: a dict name -> array. training=True runs batchnorm on batch "
        "statistics and dropout with a mask drawn from seed.",
        "outputs", ("forward",),
        (_in_mode("forward"), "r = _run(call)", f"return {_OUTS}"),
        ("forward", _EVAL_MODE.format("forward"), "_named('outputs', r, _FAST)")),
    PublicEntry(
        "loss", "*, training=False, seed=None, state=None",
        "Return the loss alone, as a float (no gradients). Eval mode, as forward: "
        "training=True runs batchnorm on batch statistics and dropout with a mask drawn "
        "from seed.",
        "loss", ("loss",),
        (_in_mode("loss"), "return _loss(_run(call)[0])"),
        ("loss", _EVAL_MODE.format("loss"), "_loss(r[0])")),
    PublicEntry(
        "loss_and_grad", "*, seed=None, state=None",
        "Return (loss, gradients): a float and a dict with the keys of params (and the "
        "wrt inputs). Training mode: batchnorm on batch statistics, dropout masks drawn "
        "from seed.",
        "loss", ("loss_and_grad",),
        ("call = _prepare('loss_and_grad', params, inputs, None, state, seed)",
         "r = _run(call)", "return _loss(r[0]), _named('tangents', r[1:], call)"),
        ("loss_and_grad", "", "_loss(r[0]), _named('tangents', r[1:], _FAST)")),
    PublicEntry(
        "train_step", "lr, *, state=None, seed=None",
        "One optimizer step on params, in place; return the loss before the step.",
        "loss", ("train_step",),
        ("lr = _rate(lr)",
         "call = _prepare('train_step', params, inputs, None, state, seed)",
         "t = state['step'] = state['step'] + 1",
         "r = _run(call, (lr, *_step_scalars(t)))",
         "_write_back(call)", "return _loss(r[0])"),
        ("train_step", "type(lr) is float", "_loss(r[0])")),
    PublicEntry(
        "train_epoch", "lr, *, batch_size=32, seed=0, order=None, state=None",
        "One epoch of train_step in one call: minibatches of batch_size rows taken in "
        "order (row indices into the inputs; default: the shuffle of seed), the last one "
        "smaller; seed also draws the dropout masks. Return the mean loss (each batch "
        "weighted by its size).",
        "batch", ("train_step",),
        ("return _epoch(params, lr, batch_size, seed, order, state, inputs)",)),
    PublicEntry(
        "jvp", "tangents, *, state=None",
        "Forward mode: return (outputs, output tangents) for tangents of params and wrt "
        "inputs (missing: zero).",
        "outputs", ("jvp",),
        ("call = _prepare('jvp', params, inputs, ('tangents', tangents), state)",
         "r = _run(call)", "n = len(SIGNATURE['outputs'])",
         "return _named('outputs', r[:n], call), _named('outputs', r[n:], call)")),
    PublicEntry(
        "vjp", "cotangents, *, state=None",
        "Reverse mode: return the gradients of params and wrt inputs for cotangents of the "
        "outputs (missing: zero).",
        "outputs", ("vjp",),
        ("call = _prepare('vjp', params, inputs, ('cotangents', cotangents), "
         "state)",
         "r = _run(call)", f"return {_GRADS}")),
    PublicEntry(
        "hvp", "vector, *, seed=None, state=None",
        "Return the Hessian of the loss (with respect to params and wrt inputs) times "
        "vector, a dict with the keys of the gradients (missing: zero); forward over "
        "reverse mode.",
        "loss", ("hvp",),
        ("call = _prepare('hvp', params, inputs, ('vector', vector), state, seed)",
         "r = _run(call)", f"return {_GRADS}")),
    PublicEntry(
        "jacobian", "*, of, wrt, state=None",
        "Return the Jacobian of output 'of' with respect to 'wrt' (a param or wrt input), "
        "shape of.shape + wrt.shape, by the cheaper of forward and reverse mode.",
        "outputs", ("jvp", "vjp"),
        ("return _jacobian(params, of, wrt, state, inputs)",)),
]}


def argument_names() -> tuple[str, ...]:
    """Every argument name of the public functions (``params`` included): a model input
    cannot take one, since it is passed as a keyword argument beside them."""
    names = ["params"]
    for e in ENTRIES.values():
        names += [name for name, _ in e.arguments() if name not in names]
    return tuple(names)


def available(signature: dict, entry: PublicEntry) -> bool:
    """Whether a model with this SIGNATURE has ``entry``."""
    if entry.needs == "outputs":
        return bool(signature["outputs"])
    if entry.needs == "loss":
        return bool(signature["loss"])
    return bool(signature["loss"]) and signature.get("batch") is not None


def missing_reason(signature: dict, entry: PublicEntry) -> str:
    """Why a model does not have ``entry`` (for the error a call raises)."""
    if entry.needs == "batch" and signature["loss"]:
        return "its inputs do not share a leading (batch) dim"
    return "it declares no " + ("output" if entry.needs == "outputs" else "loss")
