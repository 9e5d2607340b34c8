"""Gradient oracles (DESIGN.md, principle 7), reusable by every test file.

* :func:`fd_check_loss`: central differences of the loss in random directions over all params
  and ``wrt`` inputs jointly, against ``<grad, direction>``.
* :func:`fd_check_jvp`: central differences of outputs against ``jvp``'s tangents.
* :func:`fd_check_vjp`: ``vjp`` of random cotangents against central differences, and the
  dot-product identity ``<c, J t> == <J^T c, t>`` against ``jvp``.
* :func:`reference_check`: the compiled entries against the NumPy reference interpreter
  (:mod:`gradc.runtime.reference`) evaluating the same graph.

All of them work in float64, raise ``AssertionError`` with every mismatch found (prefixed by
``label`` so that a failure inside a batched model names the op) and return the errors
measured.
"""

from __future__ import annotations

import functools

import numpy as np

from gradc.ir.shapes import Shape
from gradc.passes.programs import Optimizer, build_programs
from gradc.pipeline import Options, eval_graph, front
from gradc.runtime.reference import evaluate
from gradc.source import Source

EPS = 1e-6


# ---------------------------------------------------------------------- small helpers
def rel_err(got, want, floor: float = 0.0) -> float:
    """Norm-wise relative error ``|got - want| / max(|got|, |want|, floor)`` (0 if all zero);
    NaN or inf anywhere counts as an infinite error."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape and got.size != want.size:
        return np.inf
    got, want = got.reshape(want.shape), want
    if not (np.all(np.isfinite(got)) and np.all(np.isfinite(want))):
        return np.inf
    diff = float(np.linalg.norm((got - want).ravel()))
    den = max(float(np.linalg.norm(got.ravel())), float(np.linalg.norm(want.ravel())), floor)
    return 0.0 if diff == 0 else (diff / den if den > 0 else np.inf)


def arrays(result) -> list:
    """The arrays of an entry's result, in order (dicts by key, tuples flattened), to
    compare two results of one entry array by array."""
    if isinstance(result, dict):
        return [a for k in sorted(result) for a in arrays(result[k])]
    if isinstance(result, tuple):
        return [a for r in result for a in arrays(r)]
    return [np.asarray(result)]


def _fail(label: str, problems: list[str]) -> None:
    if problems:
        head = f"[{label}] " if label else ""
        raise AssertionError(head + "\n  ".join(problems))


def directions(rng: np.random.Generator, like: dict, only=None) -> dict:
    """Random normal arrays shaped and typed like the float arrays of ``like``; the keys
    not in ``only`` (when given) get zeros."""
    out = {}
    for k, v in like.items():
        d = rng.standard_normal(np.shape(v))
        if only is not None and k not in only:
            d = np.zeros(np.shape(v))
        out[k] = np.array(d, np.asarray(v).dtype, order="C")
    return out


def _nonfinite(arrays: dict) -> list[str]:
    return [k for k, v in arrays.items() if not np.all(np.isfinite(np.asarray(v)))]


def diff_leaves(params: dict, inputs: dict, wrt) -> dict:
    """The differentiated leaves: every param, then the ``wrt`` inputs (gradient key order)."""
    return {**params, **{w: inputs[w] for w in wrt}}


def shifted(params: dict, inputs: dict, wrt, d: dict, step: float) -> tuple[dict, dict]:
    """``(params, inputs)`` moved by ``step * d`` along the differentiated leaves."""
    p = {k: np.array(v + step * d[k], order="C") if k in d else v for k, v in params.items()}
    i = {k: np.array(v + step * d[k], order="C") if k in d and k in wrt else v
         for k, v in inputs.items()}
    return p, i


def inner(a: dict, b: dict, keys=None) -> float:
    """Sum over ``keys`` (default: those of ``b``) of the elementwise products."""
    keys = list(b) if keys is None else keys
    return float(sum(np.sum(np.asarray(a[k], np.float64) * np.asarray(b[k], np.float64))
                     for k in keys))


# ---------------------------------------------------------------------- finite differences
def fd_check_loss(model, params: dict, inputs: dict, wrt=(), *, n_dirs: int = 3,
                  eps: float = EPS, tol: float = 1e-6, seed: int = 0, only=None,
                  label: str = "") -> list[float]:
    """Check ``loss_and_grad`` against central differences of the loss in ``n_dirs`` random
    directions over all params and ``wrt`` inputs jointly (or over the leaves named in
    ``only``); return the relative errors."""
    rng = np.random.default_rng(seed)
    loss, grads = model.loss_and_grad(params, **inputs)
    leaves = diff_leaves(params, inputs, wrt)
    problems = []
    if set(grads) != set(leaves):
        problems.append(f"gradient keys {sorted(grads)} != params + wrt {sorted(leaves)}")
    for k, v in grads.items():
        if k in leaves and np.shape(v) != np.shape(leaves[k]):
            problems.append(f"grad[{k}] has shape {np.shape(v)}, not {np.shape(leaves[k])}")
    bad = [k for k in _nonfinite(grads) if only is None or k in only]
    if bad or not np.isfinite(loss):
        problems.append(f"non-finite loss {loss!r} or gradients of {bad}")
    _fail(label, problems)
    errs = []
    for i in range(n_dirs):
        d = directions(rng, leaves, only)
        fd = (_loss(model, *shifted(params, inputs, wrt, d, eps))
              - _loss(model, *shifted(params, inputs, wrt, d, -eps))) / (2 * eps)
        an = inner(grads, d, [k for k in d if only is None or k in only])
        err = rel_err(an, fd, floor=1e-9 * (1 + abs(loss)))
        errs.append(err)
        if not err <= tol:
            problems.append(f"direction {i}: <grad, d> = {an!r}, finite difference = {fd!r}, "
                            f"relative error {err:.3g} > {tol:g} (loss {loss!r})")
    _fail(label, problems)
    return errs


def _loss(model, params, inputs) -> float:
    return model.loss_and_grad(params, **inputs)[0]


def _forward(model, params, inputs):
    return {k: np.asarray(v, np.float64) for k, v in model.forward(params, **inputs).items()}


def fd_check_jvp(model, params: dict, inputs: dict, wrt=(), *, outputs=None,
                 n_dirs: int = 3, eps: float = EPS, tol: float = 1e-6, seed: int = 0,
                 only=None, label: str = "") -> list[float]:
    """Check ``jvp``'s output tangents (of ``outputs``, default all) against central
    differences of ``forward`` in ``n_dirs`` random directions; also check that ``jvp``'s
    outputs equal ``forward``'s. Return the relative errors."""
    rng = np.random.default_rng(seed)
    leaves = diff_leaves(params, inputs, wrt)
    base = _forward(model, params, inputs)
    outputs = list(base) if outputs is None else list(outputs)
    errs, problems = [], []
    for i in range(n_dirs):
        d = directions(rng, leaves, only)
        outs, tans = model.jvp(params, d, **inputs)
        fp = _forward(model, *shifted(params, inputs, wrt, d, eps))
        fm = _forward(model, *shifted(params, inputs, wrt, d, -eps))
        for o in outputs:
            e0 = rel_err(outs[o], base[o])
            if not e0 <= 1e-12:
                problems.append(f"jvp output '{o}' differs from forward's: rel. error {e0:.3g}")
            fd = (fp[o] - fm[o]) / (2 * eps)
            if np.shape(tans[o]) != np.shape(base[o]):
                problems.append(f"tangent of '{o}' has shape {np.shape(tans[o])}, output "
                                f"{np.shape(base[o])}")
                continue
            err = rel_err(tans[o], fd,
                          floor=1e-9 * (1 + float(np.linalg.norm(base[o].ravel()))))
            errs.append(err)
            if not err <= tol:
                problems.append(f"direction {i}: tangent of '{o}' vs finite difference: "
                                f"relative error {err:.3g} > {tol:g}\n    jvp: "
                                f"{np.asarray(tans[o]).ravel()[:6]}\n    fd:  "
                                f"{np.asarray(fd).ravel()[:6]}")
    _fail(label, problems)
    return errs


def fd_check_vjp(model, params: dict, inputs: dict, wrt=(), *, output: str,
                 n_dirs: int = 3, eps: float = EPS, tol: float = 1e-6, dot_tol: float = 1e-10,
                 seed: int = 0, only=None, label: str = "") -> list[float]:
    """Check ``vjp`` for a random cotangent of ``output`` (other outputs: none given):
    ``<vjp(c), t>`` against central differences of ``<c, forward(x + eps t)>`` and,
    tighter, against ``<c, jvp(t)>`` (the dot-product test). Return the relative errors."""
    rng = np.random.default_rng(seed)
    leaves = diff_leaves(params, inputs, wrt)
    base = _forward(model, params, inputs)
    c = np.array(rng.standard_normal(base[output].shape), model_float(model))
    grads = model.vjp(params, {output: c}, **inputs)
    problems = []
    if set(grads) != set(leaves):
        problems.append(f"vjp keys {sorted(grads)} != params + wrt {sorted(leaves)}")
    bad = [k for k in _nonfinite(grads) if only is None or k in only]
    if bad:
        problems.append(f"non-finite vjp gradients of {bad}")
    _fail(label, problems)
    errs = []
    keys = [k for k in leaves if only is None or k in only]
    for i in range(n_dirs):
        t = directions(rng, leaves, only)
        rhs = inner(grads, t, keys)
        _, tans = model.jvp(params, t, **inputs)
        lhs = float(np.sum(c * np.asarray(tans[output], np.float64)))
        scale = float(sum(np.linalg.norm(np.ravel(grads[k])) * np.linalg.norm(np.ravel(t[k]))
                          for k in keys))
        err = rel_err(rhs, lhs, floor=1e-6 * scale)
        errs.append(err)
        if not err <= dot_tol:
            problems.append(f"direction {i}: dot-product test <vjp(c), t> = {rhs!r} but "
                            f"<c, jvp(t)> = {lhs!r}: relative error {err:.3g} > {dot_tol:g}")
        fp = _forward(model, *shifted(params, inputs, wrt, t, eps))[output]
        fm = _forward(model, *shifted(params, inputs, wrt, t, -eps))[output]
        fd = float(np.sum(c * (fp - fm))) / (2 * eps)
        err = rel_err(rhs, fd, floor=1e-9 * (1 + float(np.linalg.norm(c.ravel())
                                                       * np.linalg.norm(base[output].ravel()))))
        errs.append(err)
        if not err <= tol:
            problems.append(f"direction {i}: <vjp(c), t> = {rhs!r}, finite difference "
                            f"{fd!r}: relative error {err:.3g} > {tol:g}")
    _fail(label, problems)
    return errs


def model_float(model) -> type:
    """The NumPy float type of a compiled model."""
    return {"f32": np.float32, "f64": np.float64}[model.signature["float"]]


# ---------------------------------------------------------------------- reference interpreter
@functools.lru_cache(maxsize=64)
def reference_graph(text: str, filename: str, dtype: str | None, wrt: tuple):
    """The graph of ``text`` as :func:`gradc.pipeline.front` builds it, and its entries
    (name -> (graph, ProgramSpec)); a model with batchnorm or dropout gets its eval-mode graph
    for forward, jvp and vjp, as the compiled module does."""
    opts = Options.make(dtype=dtype, wrt=wrt)
    source = Source(text, filename)
    graph = front(source, opts)[0]
    entries = build_programs(graph, tuple(wrt), Optimizer.parse("sgd"),
                            eval_graph(source, opts, graph))
    return graph, {k: (v.graph, v) for k, v in entries.items()}  # each runs on its graph


def bind_dims(graph, arrays: dict) -> dict[str, int]:
    """The call-time dims implied by the shapes of the input arrays."""
    dims: dict[str, int] = {}
    for name, node in graph.inputs.items():
        if name in arrays:
            for d, n in zip(node.shape, np.shape(arrays[name])):
                if not d.is_Integer:
                    assert d.is_Symbol, f"input {name}: dim {d} is not a name"
                    dims.setdefault(d.name, int(n))
    return dims


def _shape(shape: Shape, dims: dict) -> tuple:
    return tuple(int(d.xreplace({s: dims[s.name] for s in d.free_symbols})) for d in shape)


def reference_values(graph, entry, params: dict, inputs: dict, tangents=None,
                     cotangents=None, state=None, seed=None) -> list[np.ndarray]:
    """Evaluate ``entry``'s roots with the reference interpreter, leaves fed by node id
    (missing tangents/cotangents are zero). Batchnorm buffers are read from ``state`` (a
    compiled model's ``state``), dropout noise is drawn as the generated module draws it:
    one generator seeded with ``seed``, in argument order."""
    dims = bind_dims(graph, inputs)
    env, rng = {}, None
    for n in entry.args:
        name, role = n.attrs.get("name"), n.attrs.get("role", "input")
        if n.op == "param":
            v = params[name]
        elif n.op == "input" and role == "input":
            v = inputs[name]
        elif n.op == "input" and role in ("tangent", "cotangent"):
            extra = (tangents if role == "tangent" else cotangents) or {}
            v = extra.get(name)
            v = np.zeros(_shape(n.shape, dims)) if v is None else v
        elif n.op == "input" and role == "buffer" and state is not None:
            v = state[f"buffer:{name}"]
        elif n.op == "input" and role == "noise":
            rng = rng or np.random.default_rng(seed)
            v = rng.random(_shape(n.shape, dims))
        else:
            raise AssertionError(f"reference: unexpected leaf {n} {n.attrs}")
        a = np.asarray(v)
        env[n.id] = a.astype(np.float64) if n.is_float else a
    return evaluate(graph, entry.roots, env, dims)


def reference_check(model, text: str, *, filename: str = "model.grad", dtype: str | None = None,
                    wrt=(), params: dict, inputs: dict, tangents: dict | None = None,
                    cotangents: dict | None = None, outputs=None, grads=None,
                    rtol: float = 1e-10,
                    entries=("forward", "loss_and_grad", "jvp", "vjp"),
                    label: str = "") -> dict[str, float]:
    """Compare the compiled model's entries with the reference interpreter's evaluation of
    the graph of ``text`` (compiled with ``dtype``/``wrt``); ``outputs`` restricts the
    output checks of forward/jvp to those names, ``grads`` the gradient checks of
    loss_and_grad/vjp. Return ``{check: relative error}`` (inf for non-finite values)."""
    graph, ents = reference_graph(text, filename, dtype, tuple(wrt))
    wanted = set(graph.outputs if outputs is None else outputs)
    diff = list(params) + list(wrt)
    keep = set(diff if grads is None else grads)
    errs: dict[str, float] = {}

    def cmp(key, got, want):
        errs[key] = rel_err(got, want, floor=1e-300)

    if "forward" in entries and "forward" in ents:
        got = model.forward(params, **inputs)
        ref = reference_values(*ents["forward"], params, inputs)
        for (name, _), want in zip(graph.outputs.items(), ref):
            if name in wanted:
                cmp(f"forward:{name}", got[name], want)
    if "loss_and_grad" in entries and "loss_and_grad" in ents:
        loss, got = model.loss_and_grad(params, **inputs)
        ref = reference_values(*ents["loss_and_grad"], params, inputs)
        cmp("loss_and_grad:loss", loss, ref[0])
        for name, want in zip(diff, ref[1:]):
            if name in keep:
                cmp(f"loss_and_grad:grad[{name}]", got[name], want)
    if "jvp" in entries and "jvp" in ents and tangents is not None:
        outs, tans = model.jvp(params, tangents, **inputs)
        ref = reference_values(*ents["jvp"], params, inputs, tangents=tangents)
        k = len(graph.outputs)
        for i, name in enumerate(graph.outputs):
            if name in wanted:
                cmp(f"jvp:{name}", outs[name], ref[i])
                cmp(f"jvp:tangent[{name}]", tans[name], ref[k + i])
    if "vjp" in entries and "vjp" in ents and cotangents is not None:
        got = model.vjp(params, cotangents, **inputs)
        ref = reference_values(*ents["vjp"], params, inputs, cotangents=cotangents)
        for name, want in zip(diff, ref):
            if name in keep:
                cmp(f"vjp:grad[{name}]", got[name], want)
    _fail(label, [f"{k}: compiled vs reference relative error {e:.3g} > {rtol:g}"
                  + (" (non-finite values)" if e == np.inf else "")
                  for k, e in errs.items() if not e <= rtol])
    return errs


class ReferenceModel:
    """The reference interpreter behind the compiled model's API (forward, loss_and_grad,
    jvp, vjp), so that the finite-difference oracles can check the autodiff graph itself,
    without any code generation."""

    def __init__(self, text: str, filename: str = "model.grad", dtype: str | None = None,
                 wrt=()):
        self.graph, self.entries = reference_graph(text, filename, dtype, tuple(wrt))
        self.wrt = tuple(wrt)
        self.signature = {"float": self.graph.float_dtype}

    def _names(self):
        return list(self.graph.params) + list(self.wrt)

    def forward(self, params, **inputs):
        ref = reference_values(*self.entries["forward"], params, inputs)
        return dict(zip(self.graph.outputs, ref))

    def loss_and_grad(self, params, **inputs):
        ref = reference_values(*self.entries["loss_and_grad"], params, inputs)
        return float(ref[0]), dict(zip(self._names(), ref[1:]))

    def jvp(self, params, tangents, **inputs):
        ref = reference_values(*self.entries["jvp"], params, inputs, tangents=tangents)
        k = len(self.graph.outputs)
        return dict(zip(self.graph.outputs, ref[:k])), dict(zip(self.graph.outputs, ref[k:]))

    def vjp(self, params, cotangents, **inputs):
        ref = reference_values(*self.entries["vjp"], params, inputs, cotangents=cotangents)
        return dict(zip(self._names(), ref))


__all__ = ["ReferenceModel", "rel_err", "directions", "fd_check_loss", "fd_check_jvp",
           "fd_check_vjp", "reference_check", "reference_graph", "reference_values", "bind_dims"]
