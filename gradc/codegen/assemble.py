"""Assemble a generated module (SPEC §4) from kernel programs, for any target.

Layout, the same for every target: a docstring naming the model file, the imports,
``SIGNATURE`` and ``WARNINGS``, the dtype table, the target's constants, the per-step
optimizer scalars, the kernels (printed by the target), the shared runtime helpers of
:mod:`gradc.codegen.runtime` and the target's hooks (copied verbatim), the ``_PROGRAMS``
table and the public functions of :data:`gradc.entries.ENTRIES` the model has. No text
from the model file reaches the module unquoted: names are mangled into identifiers,
strings go through ``repr``, comments are sanitised to printable ASCII. Nothing is
patched after it is printed.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass

from gradc.codegen import runtime, state, threads
from gradc.codegen.builder import Builder
from gradc.codegen.indexing import int_expr
from gradc.entries import ENTRIES, PublicEntry, available
from gradc.dtypes import NUMPY_NAMES
from gradc.errors import GradcError
from gradc.ir.graph import Graph, Node
from gradc.options import Optimizer, Options
from gradc.passes.kernels import Program, blas_work
from gradc.passes.schedule import ProgramSpec
from gradc.source import Source

#: the variable prefix of each kind of leaf (an input's role, or the op of a param or
#: hyper-parameter); an optimizer's state slot SLOT is ``SLOT_`` (:func:`arg_name`)
ROLE_PREFIX = {"input": "x_", "tangent": "t_", "cotangent": "c_", "buffer": "r_",
               "noise": "u_", "param": "p_", "hyper": "h_"}
DIM_PREFIX = "d_"  # a call-time dim's
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def definitions(module) -> tuple:
    """The functions and classes ``module`` defines, in source order: a runtime module's
    whole content, as the assembler pastes it (so a helper added there reaches every
    generated module without a list to keep in step)."""
    found = [v for v in vars(module).values()
             if (inspect.isfunction(v) or inspect.isclass(v)) and v.__module__ == module.__name__]
    return tuple(sorted(found, key=lambda v: inspect.getsourcelines(v)[1]))


#: the target-independent helpers every module gets, in order
SHARED = definitions(runtime) + definitions(state) + definitions(threads)


def mangle(name: str) -> str:
    """Map a model name (``[A-Za-z_][A-Za-z0-9_.]*``) to an identifier fragment."""
    if not _NAME.match(name):
        raise GradcError(f"invalid name {name!r}")
    return name.replace("_", "__").replace(".", "_d")


def safe_comment(text: str) -> str:
    """Printable ASCII without quotes and backslashes: safe in a comment and in a
    docstring (nothing can end the comment line or the string)."""
    return "".join(c if " " <= c <= "~" and c not in "\"'\\" else "?" for c in text).strip()


def arg_name(n: Node) -> str:
    """The variable name of a leaf in generated code."""
    role = n.op if n.op in ("param", "hyper") else n.attrs.get("role", "input")
    if role.startswith("state:"):
        prefix = role.removeprefix("state:") + "_"
        if prefix in ROLE_PREFIX.values() or prefix == DIM_PREFIX:
            raise GradcError(f"optimizer state slot {role!r}: its prefix {prefix!r} is "
                             "another kind of leaf's; rename the slot")
    else:
        prefix = ROLE_PREFIX[role]
    return prefix + mangle(n.attrs["name"])


def dim_var(name: str) -> str:
    """The variable name of a call-time dim."""
    return DIM_PREFIX + mangle(name)


@dataclass
class Unit:
    """What a target prints: the programs of one model and everything around them.

    programs: name -> (kernel program, its entry), in module order; signature: the
    SIGNATURE table; key: the cache key (kernel names carry its prefix, so modules of
    different models never collide in Numba's cache); options: the compile options;
    comment: span -> the sanitised ``FILE.grad:LINE: text`` comment of a kernel.
    """

    programs: dict[str, tuple[Program, ProgramSpec]]
    signature: dict
    key: str
    options: Options
    comment: object

    def kernel_name(self, program: str) -> str:
        """The generated name of ``program``'s kernel."""
        return f"_{program}_{self.key[:12]}"


def _spec(node: Node) -> tuple:
    return (node.dtype, tuple(int(d) if d.is_Integer else str(d) for d in node.shape))


def loss_labels(g: Graph) -> dict | None:
    """The class labels of the model's loss, for accuracy: the first ``cross_entropy`` or
    ``hinge`` the loss reaches whose integer labels are a model input gives ``{"input":
    that input, "output": the output whose value is the loss's scores (the same graph
    node; None when no output is), "classes": the scores' last axis (an int or a dim
    name)}``; None when the loss has no such term (or there is no loss)."""
    if g.loss is None:
        return None
    reached = {n.id for n in g.topo([g.loss])}
    for scores, labels, pick in g.label_uses:
        if pick.id in reached and g.inputs.get(labels.attrs.get("name")) is labels:
            output = next((k for k, n in g.outputs.items() if n is scores), None)
            return {"input": labels.attrs["name"], "output": output,
                    "classes": _spec(scores)[1][-1]}
    return None


def signature(g: Graph, g_eval: Graph | None, opt: Optimizer, wrt: tuple[str, ...],
              batch: str | None) -> dict:
    """The SIGNATURE table: names, dtypes, shapes (ints and dim names), inits, optimizer,
    the differentiated leaves (``tangents``), the batch dim of train_epoch and the loss's
    class labels (:func:`loss_labels`)."""
    ge = g_eval or g
    return {
        "model": g.name,
        "float": g.float_dtype,
        "params": {k: _spec(n) for k, n in g.params.items()},
        "inits": dict(g.param_inits),
        "inputs": {k: _spec(n) for k, n in g.inputs.items()},
        "outputs": {k: _spec(n) for k, n in g.outputs.items()},
        "loss": g.loss is not None,
        "wrt": list(wrt),
        "tangents": {k: _spec(g.params.get(k) or g.inputs[k]) for k in [*g.params, *wrt]},
        "cotangents": {k: _spec(n) for k, n in g.outputs.items()},
        "optimizer": {"name": opt.name, "hyper": dict(opt.hyper), "states": opt.states},
        "buffers": {k: _spec(n) for k, n in ge.buffers.items()},
        "buffer_inits": dict(ge.buffer_inits),
        "noise": {k: _spec(n) for k, n in g.noise.items()},
        "batch": batch,
        "labels": loss_labels(g),
    }


def assemble(target, unit: Unit, source: Source, versions: str, warnings: list[str]) -> str:
    """The module text of ``unit`` for ``target`` (a :class:`gradc.codegen.target.Target`)."""
    sig, b = unit.signature, Builder()
    fname = safe_comment(source.filename.rsplit("/", 1)[-1])
    b.line(f'"""Generated by gradc from {fname} (model {safe_comment(sig["model"])}, target '
           f'{target.name}). Do not edit.')
    b.line()
    for line in target.summary:
        b.line(line)
    b.line(f"Built with {safe_comment(versions)}.")
    b.line('"""')
    for line in ("import ctypes", "import difflib", "import functools", "import importlib",
                 "import math", "import os", "import threading", "import time",
                 "import warnings", "",
                 *target.imports, ""):
        b.line(line)
    b.line(f"SIGNATURE = {sig!r}")
    b.line(f"WARNINGS = {list(warnings)!r}")
    b.line(f"_KEY = {unit.key!r}")
    b.line("_NP = {" + ", ".join(f"{k!r}: np.{v}" for k, v in NUMPY_NAMES.items()) + "}")
    b.line("_DT = {k: np.dtype(v) for k, v in _NP.items()}")
    b.line("_LOCAL = threading.local()  # per-thread workspaces")
    b.line("_DEFAULT_STATE = {}")
    scalars = ", ".join(text for _, text in unit.options.optimizer.step_scalars())
    b.line(f"_step_scalars = lambda t: ({scalars}{',' if scalars else ''})"
           "  # the optimizer's per-step scalars")
    for line in target.constants(unit):
        b.line(line)
    if unit.options.parallel:  # Numba's parallel loops: their threads are set per call
        b.line("_LOOP_THREADS = (nb.set_num_threads, nb.config.NUMBA_NUM_THREADS)")
    else:
        b.line("_LOOP_THREADS = None  # no parallel loops")
    b.line(f"_BLAS_MODULES = {target.blas_modules!r}  # imported to load the kernels' BLAS")
    for name, value in vars(threads).items():  # its tables (_MACS_PER_THREAD, ...)
        if name.startswith("_") and name[1:2].isupper() and not callable(value):
            b.line(f"{name} = {value!r}")
    b.line()
    extra = target.emit(b, unit)
    for fn in SHARED + target.hooks:
        paste(b, fn)
    b.line("_STATE_KEYS = _state_keys()  # every key of a complete state")
    b.line()
    _entries_table(b, unit, extra)
    for entry in ENTRIES.values():
        if available(sig, entry) and all(p in unit.programs for p in entry.programs):
            _public(b, entry, unit, target)
    return b.text()


def paste(b: Builder, fn) -> None:
    """Append the source of ``fn`` (a runtime function or class) and two blank lines."""
    b.lines.extend(inspect.getsource(fn).rstrip("\n").split("\n"))
    b.line()
    b.line()


def _entries_table(b: Builder, unit: Unit, extra: dict) -> None:
    """``_PROGRAMS``: per program its kernel, dims, argument roles, work-weighted mean BLAS
    product (multiply-adds, for the thread budget) and workspace size, plus the fields the
    target adds (``extra``: program -> {field: Python expression})."""
    b.line("_PROGRAMS = {")
    for name, (prog, entry) in unit.programs.items():
        ws = int_expr(prog.ws_size, dim_var)
        dims = ", ".join(dim_var(d) for d in prog.dims)
        args = [("param" if n.op == "param" else n.attrs.get("role", "input"),
                 n.attrs["name"]) for n in entry.args if n.op != "hyper"]
        fields = "".join(f"{k!r}: {v}, " for k, v in extra.get(name, {}).items())
        b.line(f"    {name!r}: {{'kernel': {unit.kernel_name(name)}, {fields}"
               f"'dims': {prog.dims!r},")
        squares, macs = blas_work(prog)
        b.line(f"        'args': {args!r},")
        b.line(f"        'macs': lambda {dims}: {int_expr(squares, dim_var)} // "
               f"max({int_expr(macs, dim_var)}, 1),  # work-weighted mean BLAS product")
        b.line(f"        'ws': lambda {dims}: {ws}}},")
    for name, fields in extra.items():
        if name not in unit.programs:  # a kernel that is no program (train_epoch's loop)
            prog = unit.programs["train_step"][0]
            items = "".join(f"{k!r}: {v}, " for k, v in fields.items())
            b.line(f"    {name!r}: {{{items}'dims': {prog.dims!r}}},")
    b.line("}")
    b.line()
    b.line()


def _public(b: Builder, entry: PublicEntry, unit: Unit, target) -> None:
    """One public function, from its registry row (with the target's fast path, if any)."""
    with b.block(f"def {entry.name}(params, {entry.params}, **inputs):"):
        b.line(f'"""{entry.doc}"""')
        with b.block("if state is None:"):
            b.line("state = _DEFAULT_STATE")
        with b.block("elif type(state) is not dict:"):
            b.line("raise ValueError(f'state: expected a dict, got {type(state).__name__}')")
        if "seed=" in entry.params:
            with b.block("if seed is not None:"):
                b.line("_check_seed(seed)")
        target.fast_path(b, entry, unit)
        for line in entry.body:
            b.line(line)
    b.line()
    b.line()
    b.line(f"{entry.name} = _Public({entry.name})")
    b.line()
    b.line()
