"""Assemble the standalone generated module (SPEC §4) from a model's kernel programs.

Layout: a header naming the model file, imports (math, numpy, numba only), ``SIGNATURE``,
one njit kernel per entry, the helper prelude, the ``_ENTRIES`` table and the public
functions ``init_params``, ``forward``, ``loss_and_grad``, ``train_step``, ``jvp``, ``vjp``.
No text from the model file reaches the module unquoted: names are mangled into
identifiers, strings go through ``repr``, comments are sanitised to printable ASCII.
"""

from __future__ import annotations

import inspect
import re

from gradc.codegen import mathlib, prelude
from gradc.codegen.builder import Builder
from gradc.codegen.cpu import CpuEmitter, int_expr
from gradc.codegen.epoch import batch_dim, emit_epoch, epoch_api
from gradc.codegen.fastpath import emit_fast, supported
from gradc.errors import GradcError
from gradc.ir.graph import Graph, Node

from gradc.passes.entries import Optimizer, build_entries
from gradc.passes.schedule import schedule
from gradc.source import Source

FASTMATH = "{'reassoc', 'contract', 'arcp', 'nsz', 'afn'}"
MATH_JIT = f"@nb.njit(inline='always', error_model='numpy', fastmath={FASTMATH})"
ROLE_PREFIX = {"input": "x_", "tangent": "t_", "cotangent": "c_", "state:m": "m_",
               "state:v": "s_", "buffer": "r_", "noise": "u_"}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


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
    if n.op == "param":
        return "p_" + mangle(n.attrs["name"])
    if n.op == "hyper":
        return "h_" + mangle(n.attrs["name"])
    return ROLE_PREFIX[n.attrs.get("role", "input")] + mangle(n.attrs["name"])


def dim_var(name: str) -> str:
    """The variable name of a call-time dim."""
    return "d_" + mangle(name)


def _spec(node: Node) -> tuple:
    return (node.dtype, tuple(int(d) if d.is_Integer else str(d) for d in node.shape))


def signature(g: Graph, opt: Optimizer) -> dict:
    """The SIGNATURE table: names, dtypes, shapes (ints and dim names), inits, optimizer."""
    return {
        "model": g.name,
        "float": g.float_dtype,
        "params": {k: _spec(n) for k, n in g.params.items()},
        "inits": dict(g.param_inits),
        "inputs": {k: _spec(n) for k, n in g.inputs.items()},
        "outputs": {k: _spec(n) for k, n in g.outputs.items()},
        "loss": g.loss is not None,
        "wrt": [],
        "tangents": {},
        "cotangents": {k: _spec(n) for k, n in g.outputs.items()},
        "optimizer": {"name": opt.name, "hyper": dict(opt.hyper), "states": opt.states},
        "buffers": {k: _spec(n) for k, n in g.buffers.items()},
        "buffer_inits": dict(g.buffer_inits),
        "noise": {k: _spec(n) for k, n in g.noise.items()},
    }


def generate(g: Graph, source: Source, key: str, opt: Optimizer, wrt: tuple[str, ...] = (),
             parallel: bool = False, versions: str = "", g_eval: Graph | None = None,
             warnings: list[str] = ()) -> str:
    """Return the full source text of the generated module for the train-mode graph ``g``
    (and ``g_eval``, its eval-mode twin, for models with batchnorm or dropout)."""
    for name in list(g.params) + list(g.inputs):
        mangle(name)
    entries = build_entries(g, wrt, opt, g_eval)
    sig = signature(g, opt)
    if g_eval is not None:
        sig["buffers"] = {k: _spec(n) for k, n in g_eval.buffers.items()}
        sig["buffer_inits"] = dict(g_eval.buffer_inits)
    diff = list(g.params) + list(wrt)
    sig["wrt"] = list(wrt)
    sig["tangents"] = {k: _spec(g.params.get(k) or g.inputs[k]) for k in diff}
    b = Builder()
    lines = source.text.split("\n")

    def comment(span):
        text = lines[span.line - 1] if 0 < span.line <= len(lines) else ""
        return safe_comment(f"{source.filename.rsplit('/', 1)[-1]}:{span.line}: {text.strip()}")

    emitter = CpuEmitter(dim_var, comment, parallel)
    _header(b, g, source, sig, versions, parallel)
    b.line(f"WARNINGS = {list(warnings)!r}")
    b.line()
    math_at = len(b.lines)
    table = {}
    for name, entry in entries.items():
        prog = schedule(entry.graph or g, entry, arg_name)
        fname = f"_{name}_{key[:12]}"
        emitter.emit(b, prog, fname)
        table[name] = (fname, prog, entry)
        if name == "train_step" and batch_dim(entry) is not None:
            adam = dict(opt.hyper) if opt.name == "adam" else None
            efname = f"_train_epoch_{key[:12]}"
            emit_epoch(b, entry, prog, fname, efname, dim_var, adam)
            table["train_epoch"] = (efname, prog, entry)
    if emitter.math_used:
        text = mathlib.sources(sorted(emitter.math_used), MATH_JIT)
        b.lines[math_at:math_at] = ["# Vectorisable math (gradc.codegen.mathlib): error bounds "
                                    "tested against NumPy.", *text.split("\n"), "", ""]
    for fn in (prelude._fmt, prelude._check, prelude._unknown, prelude._fetch,
               prelude._workspace, prelude._zeros, prelude._prepare, prelude._call,
               prelude._as_output, prelude.init_params, prelude.init_state,
               prelude.save_params, prelude.load_params):
        b.lines.extend(inspect.getsource(fn).rstrip("\n").split("\n"))
        b.line()
        b.line()
    _entries_table(b, table)
    _api(b, table, sig)
    return b.text()


def _header(b: Builder, g: Graph, source: Source, sig: dict, versions: str, parallel) -> None:
    fname = safe_comment(source.filename.rsplit("/", 1)[-1])
    b.line(f'"""Generated by gradc from {fname} (model {safe_comment(g.name)}). Do not edit.')
    b.line()
    b.line("Standalone: needs only NumPy and Numba. The functions init_params, forward,")
    b.line("loss_and_grad, train_step, jvp and vjp work as in gradc's Python API.")
    b.line(f"Built with {safe_comment(versions)}.")
    b.line('"""')
    b.line("import difflib")
    b.line("import math")
    b.line()
    b.line("import numba as nb")
    b.line("import numpy as np")
    b.line()
    b.line(f"SIGNATURE = {sig!r}")
    b.line()
    b.line(f"_JIT = dict(cache=True, nogil=True, error_model='numpy', boundscheck=False,"
           f" parallel={bool(parallel)}, fastmath={FASTMATH})")
    b.line("_NP = {'f32': np.float32, 'f64': np.float64, 'i32': np.int32, 'i64': np.int64}")
    b.line("_DT = {k: np.dtype(v) for k, v in _NP.items()}")
    b.line("_WS = {}")
    if sig["optimizer"]["name"] == "adam":
        h = sig["optimizer"]["hyper"]
        b.line(f"_C1 = lambda t: 1.0 / (1.0 - {h['beta1']!r} ** t)  # Adam's bias corrections")
        b.line(f"_C2 = lambda t: 1.0 / (1.0 - {h['beta2']!r} ** t)")
    b.line("_DEFAULT_STATE = {}")
    b.line()


def _entries_table(b: Builder, table: dict) -> None:
    b.line("_ENTRIES = {")
    for name, (fname, prog, entry) in table.items():
        ws = int_expr(prog.ws_size, dim_var)
        dims = ", ".join(dim_var(d) for d in prog.dims)
        args = [("param" if n.op == "param" else n.attrs.get("role", "input"),
                 n.attrs["name"]) for n in entry.args if n.op != "hyper"]
        b.line(f"    {name!r}: {{'kernel': {fname}, 'dims': {prog.dims!r},")
        b.line(f"        'args': {args!r},")
        b.line(f"        'ws': lambda {dims}: {ws}}},")
    b.line("}")
    b.line()


_OUTS = "{n: _as_output(v, SIGNATURE['outputs'][n]) for n, v in zip(SIGNATURE['outputs'], r)}"
_GRADS = ("{n: _as_output(v, SIGNATURE['tangents'][n]) "
          "for n, v in zip(SIGNATURE['tangents'], r[1:])}")
_RETURNS = {"forward": _OUTS, "loss_and_grad": f"float(r[0]), {_GRADS}",
            "train_step": "float(r[0])"}
_DOCS = {
    "forward": "Return the outputs: a dict name -> array.",
    "loss_and_grad": "Return (loss, gradients): a float and a dict with the keys of params.",
    "train_step": "One optimizer step on params, in place; return the loss before the step.",
    "jvp": "Return (outputs, output tangents) for tangents of params (missing: zero).",
    "vjp": "Return the gradients for cotangents of the outputs (missing: zero).",
}


def _api(b: Builder, table: dict, sig: dict) -> None:
    """The public functions, for the entries the model has."""
    def fn(name: str, header: str, body: list[str]) -> None:
        with b.block(header):
            b.line(f'"""{_DOCS[name]}"""')
            b.line("state = _DEFAULT_STATE if state is None else state")
            if name in _RETURNS and supported(table[name][2]):
                fname, prog, entry = table[name]
                n_in = sum(1 for n in entry.args if n.op == "input" and
                           n.attrs.get("role", "input") == "input")
                extra = "not training" if name == "forward" and "forward_train" in table \
                    else ""
                emit_fast(b, entry, prog, dim_var, fname, _RETURNS[name],
                          len(sig["params"]), n_in, extra)
            for line in body:
                b.line(line)
        b.line()
        b.line()

    if "forward" in table:
        pick = ("'forward_train' if training else 'forward'" if "forward_train" in table
                else "'forward'")
        fn("forward", "def forward(params, training=False, seed=None, state=None, **inputs):",
           [f"entry = {pick}",
            "arrays, dims = _prepare(entry, params, inputs, None, state, seed)",
            "r = _call(entry, arrays, (), dims)", f"return {_OUTS}"])
        fn("jvp", "def jvp(params, tangents, state=None, **inputs):",
           ["arrays, dims = _prepare('jvp', params, inputs, tangents, state)",
            "r = _call('jvp', arrays, (), dims)", "n = len(SIGNATURE['outputs'])",
            f"outs = {_OUTS.replace(', r)', ', r[:n])')}",
            f"tans = {_OUTS.replace(', r)', ', r[n:])')}", "return outs, tans"])
        fn("vjp", "def vjp(params, cotangents, state=None, **inputs):",
           ["arrays, dims = _prepare('vjp', params, inputs, cotangents, state)",
            "r = (None,) + tuple(_call('vjp', arrays, (), dims))", f"return {_GRADS}"])
    if "loss_and_grad" in table:
        fn("loss_and_grad", "def loss_and_grad(params, seed=None, state=None, **inputs):",
           ["arrays, dims = _prepare('loss_and_grad', params, inputs, None, state, seed)",
            "r = _call('loss_and_grad', arrays, (), dims)", f"return {_RETURNS['loss_and_grad']}"])
        adam = sig["optimizer"]["name"] == "adam"
        fn("train_step", "def train_step(params, lr, state=None, seed=None, **inputs):",
           ["arrays, dims = _prepare('train_step', params, inputs, None, state, seed)",
            "t = state['step'] = state['step'] + 1",
            f"r = _call('train_step', arrays, {'(lr, _C1(t), _C2(t))' if adam else '(lr,)'}, "
            "dims)", "return float(r[0])"])
    if "train_epoch" in table:
        epoch_api(b, batch_dim(table["train_epoch"][2]))
