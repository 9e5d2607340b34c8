"""Assemble the standalone generated module for ``target="cuda"`` (SPEC §4).

Layout, as for the CPU target (:mod:`gradc.codegen.module`): a header, imports (math,
numpy, numba, numba.cuda; CuPy only if importable, for cuBLAS), ``SIGNATURE``, the launch
constants, then per entry its ``@cuda.jit`` kernels, its workspace planner and its host
function; the helper kernels and host helpers (the CPU prelude's argument checks where
they are target-independent, :mod:`gradc.codegen.cuda_prelude` and
:mod:`gradc.codegen.cuda_host` otherwise), the ``_ENTRIES`` table and the public
functions. ``_SIGNATURES`` records the argument types each kernel is launched with, so
that ``cuda.compile_ptx`` can compile every kernel without a GPU.
"""

from __future__ import annotations

import inspect

from gradc.codegen import cuda_host, cuda_prelude, prelude
from gradc.codegen.builder import Builder
from gradc.codegen.cpu import int_expr
from gradc.codegen.cuda import CudaEmitter
from gradc.codegen.epoch import batch_dim
from gradc.codegen.module import arg_name, dim_var, mangle, safe_comment, signature
from gradc.ir.graph import Graph
from gradc.passes.entries import Optimizer, build_entries
from gradc.passes.schedule import schedule
from gradc.source import Source

#: (threads per block, reduction columns, block cap, matmul threads per side, outputs per
#: thread per side, K slab) on a GPU and in the simulator (tiny, so that it stays fast
#: and every multi-block, multi-tile path still runs)
LAUNCH = {"gpu": (256, 32, 4096, 16, 4, 16), "sim": (8, 4, 2, 2, 2, 4)}

_HOST_CPU = (prelude._fmt, prelude._unknown, prelude._fetch, prelude._zeros)
_RENAMED = {prelude.init_params: "_init_params_host", prelude.load_params: "_load_params_host"}
_HOST = (cuda_prelude._is_device, cuda_prelude._check, cuda_prelude._plan,
         cuda_prelude._grid, cuda_prelude._blocks, cuda_prelude._raise_flag,
         cuda_prelude._matmul, cuda_host._prepare, cuda_host._call, cuda_host._output,
         cuda_host._loss, cuda_host._write_back, cuda_host.init_params,
         cuda_host.init_state, cuda_host.to_host, cuda_host.save_params,
         cuda_host.load_params, cuda_host._epoch)
_DEVICE = (cuda_prelude._k_mm2, cuda_prelude._k_mm3, cuda_prelude._k_gather_rows,
           cuda_prelude._k_accumulate)


def generate_cuda(g: Graph, source: Source, key: str, opt: Optimizer,
                  wrt: tuple[str, ...] = (), versions: str = "",
                  g_eval: Graph | None = None, warnings: list[str] = ()) -> str:
    """Return the source text of the CUDA module for the train-mode graph ``g`` (and
    ``g_eval``, its eval-mode twin, for models with batchnorm or dropout)."""
    for name in list(g.params) + list(g.inputs):
        mangle(name)
    entries = build_entries(g, wrt, opt, g_eval)
    sig = signature(g, opt)
    if g_eval is not None:
        ev = signature(g_eval, opt)
        sig["buffers"], sig["buffer_inits"] = ev["buffers"], ev["buffer_inits"]
    sig["wrt"] = list(wrt)
    sig["tangents"] = {k: sig["params"].get(k) or sig["inputs"][k]
                       for k in list(g.params) + list(wrt)}
    lines = source.text.split("\n")

    def comment(span):
        text = lines[span.line - 1] if 0 < span.line <= len(lines) else ""
        return safe_comment(f"{source.filename.rsplit('/', 1)[-1]}:{span.line}: {text.strip()}")

    b = Builder()
    _header(b, g, source, sig, versions)
    emitter = CudaEmitter(dim_var, comment)
    table = {}
    b.line(f"WARNINGS = {list(warnings)!r}")
    b.line()
    for name, entry in entries.items():
        prog = schedule(entry.graph or g, entry, arg_name)
        fname = f"_{name}_{key[:12]}"
        emitter.emit(b, prog, fname)
        table[name] = (fname, prog, entry)
    b.line(f"_ERRORS = {emitter.errors!r}")
    b.line("# the argument types each kernel is launched with (for cuda.compile_ptx)")
    b.line(f"_SIGNATURES = {_signatures(emitter, prog.float_dtype if table else 'f32')!r}")
    b.line()
    b.line()
    for fn in _DEVICE:
        b.line("@cuda.jit(**_CJIT)")
        _paste(b, fn)
    for fn in _HOST_CPU + tuple(_RENAMED) + _HOST:
        _paste(b, fn, _RENAMED.get(fn))
    _entries_table(b, table)
    _api(b, table, sig)
    return b.text()


def _signatures(emitter: CudaEmitter, dtype: str) -> dict:
    out = dict(emitter.signatures)
    ft = {"f32": "float32", "f64": "float64"}[dtype]
    out["_k_gather_rows"] = [f"void({t}[:, ::1], {t}[:, ::1], int64[::1], int64, int64)"
                             for t in (ft, "int64")]
    out["_k_accumulate"] = [f"void({ft}[::1], {ft}[::1], {ft})"]
    return out


def _paste(b: Builder, fn, rename: str | None = None) -> None:
    text = inspect.getsource(fn).rstrip("\n")
    if rename:
        text = text.replace(f"def {fn.__name__}(", f"def {rename}(", 1)
    b.lines.extend(text.split("\n"))
    b.line()
    b.line()


def _header(b: Builder, g: Graph, source: Source, sig: dict, versions: str) -> None:
    fname = safe_comment(source.filename.rsplit("/", 1)[-1])
    b.line(f'"""Generated by gradc from {fname} (model {safe_comment(g.name)}, target cuda). '
           "Do not edit.")
    b.line()
    b.line("Standalone: needs only NumPy, Numba and numba-cuda (and uses CuPy's cuBLAS for")
    b.line("matmuls when CuPy is importable). init_params, forward, loss_and_grad, train_step,")
    b.line("train_epoch, jvp and vjp work as in gradc's Python API; params and optimizer state")
    b.line("stay on the device (init_params returns device arrays, to_host copies back).")
    b.line("Results are device arrays when the inputs were device arrays, NumPy otherwise.")
    b.line(f"Built with {safe_comment(versions)}.")
    b.line('"""')
    for line in ("import difflib", "import math", "import os", "", "import numba as nb",
                 "import numpy as np", "from numba import cuda", ""):
        b.line(line)
    b.line(f"SIGNATURE = {sig!r}")
    b.line()
    b.line("_SIM = bool(nb.config.ENABLE_CUDASIM)  # the CUDA simulator: tiny launches")
    b.line("_CJIT = dict(cache=not _SIM)")
    b.line(f"_FT = {'np.float32' if sig['float'] == 'f32' else 'np.float64'}")
    b.line("# threads per block, reduction columns (consecutive outputs per block), block cap;")
    b.line("# matmul: threads per tile side, outputs per thread per side, K slab")
    b.line(f"_TPB, _COLS, _MAXB, _MT, _MR, _MK = {LAUNCH['sim']} if _SIM else {LAUNCH['gpu']}")
    b.line("_MS = _MT * _MR  # matmul tile side")
    b.line("_MSP = _MS + 1  # padded shared-memory row (no bank conflicts)")
    b.line("_BLAS = None  # CuPy, for cuBLAS matmuls (GRADC_CUDA_BLAS=0 turns it off)")
    with b.block("if not _SIM and os.environ.get('GRADC_CUDA_BLAS', '1') != '0':"):
        with b.block("try:"):
            b.line("import cupy as _BLAS")
        with b.block("except Exception:  # no usable CuPy: the tiled kernel does matmuls"):
            b.line("_BLAS = None")
    b.line("_NP = {'f32': np.float32, 'f64': np.float64, 'i32': np.int32, 'i64': np.int64}")
    b.line("_WS = {}")
    if sig["optimizer"]["name"] == "adam":
        h = sig["optimizer"]["hyper"]
        b.line(f"_C1 = lambda t: 1.0 / (1.0 - {h['beta1']!r} ** t)  # Adam's bias corrections")
        b.line(f"_C2 = lambda t: 1.0 / (1.0 - {h['beta2']!r} ** t)")
    b.line("_DEFAULT_STATE = {}")
    b.line()
    b.line()


def _entries_table(b: Builder, table: dict) -> None:
    b.line("_ENTRIES = {")
    for name, (fname, prog, entry) in table.items():
        ws = int_expr(prog.ws_size, dim_var)
        dims = ", ".join(dim_var(d) for d in prog.dims)
        args = [("param" if n.op == "param" else n.attrs.get("role", "input"),
                 n.attrs["name"]) for n in entry.args if n.op != "hyper"]
        b.line(f"    {name!r}: {{'kernel': {fname}, 'views': _views{fname}, "
               f"'dims': {prog.dims!r},")
        b.line(f"        'args': {args!r},")
        b.line(f"        'ws': lambda {dims}: {ws}}},")
    b.line("}")
    b.line()
    b.line()


_OUTS = ("{n: _output(v, SIGNATURE['outputs'][n][1], device) "
         "for n, v in zip(SIGNATURE['outputs'], r)}")
_GRADS = ("{n: _output(v, SIGNATURE['tangents'][n][1], device) "
          "for n, v in zip(SIGNATURE['tangents'], r[1:])}")
_DOCS = {
    "forward": "Return the outputs: a dict name -> array.",
    "loss_and_grad": "Return (loss, gradients): a float and a dict with the keys of params.",
    "train_step": "One optimizer step on params, in place; return the loss before the step.",
    "train_epoch": "One shuffled epoch of train_step; return the mean loss.",
    "jvp": "Return (outputs, output tangents) for tangents of params (missing: zero).",
    "vjp": "Return the gradients for cotangents of the outputs (missing: zero).",
}


def _api(b: Builder, table: dict, sig: dict) -> None:
    """The public functions, for the entries the model has."""
    def fn(name: str, header: str, body: list[str]) -> None:
        with b.block(header):
            b.line(f'"""{_DOCS[name]}"""')
            b.line("state = _DEFAULT_STATE if state is None else state")
            for line in body:
                b.line(line)
        b.line()
        b.line()

    def prep(entry: str, extra: str = "None", seed: str = ", seed") -> str:
        return f"arrays, dims, device, back = _prepare({entry}, params, inputs, {extra}, " \
               f"state{seed})"

    if "forward" in table:
        pick = ("'forward_train' if training else 'forward'" if "forward_train" in table
                else "'forward'")
        fn("forward", "def forward(params, training=False, seed=None, state=None, **inputs):",
           [f"entry = {pick}", prep("entry"), "r = _call(entry, arrays, (), dims)",
            f"return {_OUTS}"])
        fn("jvp", "def jvp(params, tangents, state=None, **inputs):",
           [prep("'jvp'", "tangents", ""), "r = _call('jvp', arrays, (), dims)",
            "n = len(SIGNATURE['outputs'])",
            f"outs = {_OUTS.replace(', r)', ', r[:n])')}",
            f"tans = {_OUTS.replace(', r)', ', r[n:])')}", "return outs, tans"])
        fn("vjp", "def vjp(params, cotangents, state=None, **inputs):",
           [prep("'vjp'", "cotangents", ""),
            "r = (None,) + tuple(_call('vjp', arrays, (), dims))", f"return {_GRADS}"])
    if "loss_and_grad" in table:
        fn("loss_and_grad", "def loss_and_grad(params, seed=None, state=None, **inputs):",
           [prep("'loss_and_grad'"), "r = _call('loss_and_grad', arrays, (), dims)",
            f"grads = {_GRADS}", "return _loss(r[0]), grads"])
        adam = sig["optimizer"]["name"] == "adam"
        fn("train_step", "def train_step(params, lr, state=None, seed=None, **inputs):",
           [prep("'train_step'"), "t = state['step'] = state['step'] + 1",
            f"r = _call('train_step', arrays, {'(lr, _C1(t), _C2(t))' if adam else '(lr,)'}, "
            "dims)", "_write_back(back)", "return _loss(r[0])"])
        bdim = batch_dim(table["train_step"][2])
        if bdim is not None:
            h = sig["optimizer"]["hyper"]
            betas = (h["beta1"], h["beta2"]) if adam else None
            fn("train_epoch",
               "def train_epoch(params, lr, batch_size=32, seed=0, state=None, **inputs):",
               [f"return _epoch(params, lr, batch_size, seed, state, inputs, {bdim!r}, "
                f"{betas!r})"])
