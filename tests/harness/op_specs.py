"""THE op test table: one row per op (and per variant of an op), checked by three oracles.

Each :class:`Row` is a `.grad` expression template over the row's own arguments (``{x}``
names argument ``x``), the domain its float arguments are drawn from, and a tolerance.
``tests/autodiff/test_gradients.py`` batches the rows of one ``group`` into ONE model (an output per
row, ``loss = sum(o0 * w0) + sum(o1 * w1) + ...`` with random weight inputs ``wK``) and checks
every row separately inside it: finite differences of the loss, the JVP and the VJP in float64,
the NumPy reference interpreter, and the float32 build.

Adding an elementwise op to :data:`gradc.ir.ops.ELEMENTWISE` or an operator to
:data:`gradc.ir.ops.OPERATORS` without a row here fails ``test_table_is_complete``.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import gradc
from gradc.pipeline import Options, front
from gradc.source import Source

#: call-time values of the dims used in the shapes below
DIMS = {"B": 4}

#: values keep at least this distance from kinks and ties (FD steps are ~1e-6)
GAP = 1e-3


@dataclass(frozen=True)
class Arg:
    """One argument of a row.

    Attributes:
        shape: dims (ints and dim names); () for a scalar.
        lo, hi: float values are drawn uniformly from [lo, hi].
        avoid: points every value keeps at least GAP away from (kinks).
        kind: "x" a float input differentiated (in ``wrt``), "param" a param,
            "label" an i64 label input (values in [0, classes)), "prob" a float input whose
            last axis is a probability distribution (in ``wrt``).
        classes: number of classes of a label input.
    """

    shape: tuple = ("B", 3)
    lo: float = -2.0
    hi: float = 2.0
    avoid: tuple = ()
    kind: str = "x"
    classes: int = 0


@dataclass(frozen=True)
class Row:
    """One op (or variant) under test.

    Attributes:
        name: the test id.
        expr: the `.grad` expression; ``{a}`` stands for argument ``a``.
        args: argument name -> :class:`Arg`.
        group: rows of one group are compiled into one model.
        covers: entries of ``ELEMENTWISE`` / ``OPERATORS`` this row exercises.
        tol: relative tolerance of the float64 finite-difference checks.
        tol32: relative tolerance of float32 against float64.
        valid: ``valid(values) -> bool`` over the drawn argument values (dict name ->
            array); values are redrawn until it holds (ties, composite kinks).
        fns: names of :data:`FNS` declarations the expression calls.
        decls: declarations the expression needs (layers, fns), templates on ``{pre}``,
            the row's prefix in its group model (``layer {pre}fc = dense(4 -> 3)``).
    """

    name: str
    expr: str
    args: dict
    group: str
    covers: tuple = ()
    tol: float = 1e-6
    tol32: float = 1e-4
    valid: Callable | None = None
    fns: tuple = ()
    decls: tuple = ()


#: user functions rows may call (declared once per group model that needs them)
FNS = {
    "swish": "fn swish(z) = z * sigmoid(z)",
    "gelu_tanh": "fn gelu_tanh(z) = 0.5 * z * (1 + tanh(0.7978845608 * (z + 0.044715 * z ^ 3)))",
    "swish2": "fn swish2(z) = swish(swish(z)) + z",
    "lerp": "fn lerp(a, b, t) = a + t * (b - a)",
    "mish": "fn mish(z) = z * tanh(softplus(z))",
    "leaky": "fn leaky(z) = where(z > 0, z, 0.1 * z)",
    "unit": "fn unit(v) = v / sqrt(sum(v ^ 2, axis=-1, keepdims=true))",
}


# ---------------------------------------------------------------------- validity helpers
def apart(a, b, gap: float = GAP) -> bool:
    """True when ``a`` and ``b`` (broadcast) differ by at least ``gap`` everywhere."""
    return bool(np.all(np.abs(np.asarray(a) - np.asarray(b)) >= gap))


def distinct_along(x, axis, gap: float = GAP) -> bool:
    """True when the values along ``axis`` (int, tuple or None = all) have no near-ties."""
    x = np.asarray(x)
    if axis is None:
        axis = tuple(range(x.ndim))
    axis = (axis,) if isinstance(axis, int) else tuple(axis)
    axis = tuple(a % x.ndim for a in axis)
    rest = [a for a in range(x.ndim) if a not in axis]
    flat = np.transpose(x, rest + list(axis)).reshape(
        int(np.prod([x.shape[a] for a in rest])), -1)
    s = np.sort(flat, axis=1)
    return bool(np.all(np.diff(s, axis=1) >= gap))


def hinge_ok(margin: float):
    """Validity of hinge(s, y, margin): no s_j - s_y + margin within GAP of the kink 0."""
    def ok(v):
        s, y = v["s"], v["y"]
        sy = np.take_along_axis(s, y[..., None], -1)
        d = s - sy + margin
        mask = np.arange(s.shape[-1]) != y[..., None]
        return bool(np.all(np.abs(d[mask]) >= GAP))
    return ok


def _both(a="a", b="b"):
    return lambda v: apart(v[a], v[b])


# ---------------------------------------------------------------------- the rows
X = Arg()                                  # [B, 3] in [-2, 2]
KINK0 = Arg(avoid=(0.0,))
POS = Arg(lo=0.1, hi=3.0)
ROWS: list[Row] = []


def row(name, expr, args=None, group="unary", **kw):
    """Append a row (``args`` default: one argument ``x`` = X)."""
    ROWS.append(Row(name, expr, dict(args or {"x": X}), group, **kw))


# ---- every elementwise op of the table (group "unary" and "binary")
row("exp", "exp({x})", covers=("exp",))
row("log", "log({x})", {"x": POS}, covers=("log",))
row("log1p", "log1p({x})", {"x": Arg(lo=-0.5, hi=3.0)}, covers=("log1p",))
row("sqrt", "sqrt({x})", {"x": POS}, covers=("sqrt",))
row("abs", "abs({x})", {"x": KINK0}, covers=("abs",))
row("sin", "sin({x})", {"x": Arg(lo=-3, hi=3)}, covers=("sin",))
row("cos", "cos({x})", {"x": Arg(lo=-3, hi=3)}, covers=("cos",))
row("tan", "tan({x})", {"x": Arg(lo=-1.2, hi=1.2)}, covers=("tan",))
row("tanh", "tanh({x})", covers=("tanh",))
row("sigmoid", "sigmoid({x})", {"x": Arg(lo=-6, hi=6)}, covers=("sigmoid",))
row("relu", "relu({x})", {"x": KINK0}, covers=("relu",))
row("leaky_relu", "leaky_relu({x})", {"x": KINK0}, covers=("leaky_relu",))
row("elu", "elu({x})", {"x": KINK0}, covers=("elu",))
row("elu(alpha=0.5)", "elu({x}, alpha=0.5)", {"x": KINK0}, covers=("elu",))
row("gelu", "gelu({x})", {"x": Arg(lo=-3, hi=3)}, covers=("gelu",))
row("softplus", "softplus({x})", {"x": Arg(lo=-6, hi=6)}, covers=("softplus",))
row("silu", "silu({x})", {"x": Arg(lo=-4, hi=4)}, covers=("silu",))
row("step", "step({x})", {"x": KINK0}, covers=("step",))
row("sign", "sign({x})", {"x": KINK0}, covers=("sign",))

B2 = {"a": X, "b": X}
row("max(a,b)", "max({a}, {b})", B2, "binary", covers=("max",), valid=_both())
row("min(a,b)", "min({a}, {b})", B2, "binary", covers=("min",), valid=_both())
row("max(a,0)", "max({x}, 0)", {"x": KINK0}, "binary", covers=("max",))
row("where(c,a,b)", "where({c} > 0, {a}, {b})", {"c": KINK0, "a": X, "b": X}, "binary",
    covers=("where", ">"))
row("where(x>0,sqrt(x),0)", "where({x} > 0, sqrt({x}), 0)", {"x": KINK0}, "binary",
    covers=("where", "sqrt"))
row("where(x>0,log(x),exp(x))", "where({x} > 0, log({x}), exp({x}))",
    {"x": Arg(lo=-2, hi=2, avoid=(0.0,))}, "binary", covers=("where",),
    valid=lambda v: bool(np.all(np.abs(v["x"]) > 0.05)))

# ---- infix operators
row("a/b", "{a} / {b}", {"a": X, "b": Arg(lo=0.5, hi=2.0)}, "binary", covers=("/",))
row("-x", "-{x}", group="binary")
row("x**3", "{x} ** 3", group="binary", covers=("^",))
row("x^0.5", "{x} ^ 0.5", {"x": POS}, "binary", covers=("^",))
row("a^b", "{a} ^ {b}", {"a": Arg(lo=0.5, hi=2.0), "b": X}, "binary", covers=("^",))
row("2^x", "2 ^ {x}", group="binary", covers=("^",))
row("a<b", "{a} < {b}", B2, "binary", covers=("<",), valid=_both())
row("a<=b,a>b,a>=b", "({a} <= {b}) + 2 * ({a} > {b}) + 4 * ({a} >= {b}) + {a} * ({b} > {a})",
    B2, "binary", covers=("<=", ">", ">="), valid=_both())
row("(a>0)==(b>0)", "({a} > 0) == ({b} > 0)", {"a": KINK0, "b": KINK0}, "binary",
    covers=("==", ">"))

# ---- broadcasting
row("[B,3]+[3]", "{a} + {b}", {"a": X, "b": Arg(shape=(3,))}, "broadcast", covers=("+",))
row("[B,1]*[1,4]", "{a} * {b}", {"a": Arg(shape=("B", 1)), "b": Arg(shape=(1, 4))},
    "broadcast", covers=("*",))
row("scalar*tensor", "{s} * {x}", {"s": Arg(shape=()), "x": X}, "broadcast", covers=("*",))
row("[3]-[B,3]", "{a} - {b}", {"a": Arg(shape=(3,)), "b": X}, "broadcast", covers=("-",))
row("[2,B,3]*[B,1]", "{a} * {b}", {"a": Arg(shape=(2, "B", 3)), "b": Arg(shape=("B", 1))},
    "broadcast", covers=("*",))
row("max([B,3],[3])", "max({a}, {b})", {"a": X, "b": Arg(shape=(3,))}, "broadcast",
    covers=("max",), valid=lambda v: apart(v["a"], v["b"]))
row("where([B,1],[3],s)", "where({c} > 0, {a}, {s})",
    {"c": Arg(shape=("B", 1), avoid=(0.0,)), "a": Arg(shape=(3,)), "s": Arg(shape=())},
    "broadcast", covers=("where",))
row("scalar^[B,3]", "{s} ^ {x}", {"s": Arg(shape=(), lo=0.5, hi=2.0), "x": X},
    "broadcast", covers=("^",))

# ---- matmul and shape ops
V3, M34 = Arg(shape=(3,)), Arg(shape=(3, 4), kind="param")
row("[3]@[3]", "{a} @ {b}", {"a": V3, "b": V3}, "linalg")
row("[3]@[3,4]", "{a} @ {W}", {"a": V3, "W": M34}, "linalg")
row("[B,3]@[3]", "{a} @ {v}", {"a": X, "v": V3}, "linalg")
row("[B,3]@[3,4]", "{a} @ {W}", {"a": X, "W": M34}, "linalg")
row("[2,B,3]@[2,3,4]", "{a} @ {b}", {"a": Arg(shape=(2, "B", 3)), "b": Arg(shape=(2, 3, 4))},
    "linalg")
row("[2,B,3]@[3,4]", "{a} @ {W}", {"a": Arg(shape=(2, "B", 3)), "W": M34}, "linalg")
row("a.T@b", "{a}.T @ {b}", {"a": X, "b": Arg(shape=("B", 4))}, "linalg")
row("a@b.T", "{a} @ {b}.T", {"a": X, "b": Arg(shape=(5, 3))}, "linalg")
row("relu(x@W+b)", "relu({x} @ {W} + {b})",
    {"x": X, "W": M34, "b": Arg(shape=(4,), kind="param")}, "linalg", covers=("relu",),
    valid=lambda v: apart(v["x"] @ v["W"] + v["b"], 0))
row("x.T", "{x}.T", group="linalg")
row("transpose(x,(1,0,2))", "transpose({x}, (1, 0, 2))", {"x": Arg(shape=(2, "B", 3))},
    "linalg")
row("reshape(x,[B,-1])", "reshape({x}, [B, -1])", {"x": Arg(shape=("B", 2, 3))}, "linalg")
row("reshape(x,[2,B,2])*exp", "exp(reshape({x}, [2, B, 2]))", {"x": Arg(shape=("B", 4))},
    "linalg", covers=("exp",))

# ---- reductions
X3 = Arg(shape=("B", 3, 2))
X2 = Arg(shape=("B", 3))
REDUCTIONS = {  # function -> (axis, keepdims, rank of the argument) variants
    "sum": ((None, False, 2), ((0, 2), True, 3)),
    "mean": ((-1, True, 2),),
    "max": ((None, False, 2), ((0, 2), True, 3)),
    "min": ((1, False, 3),),
    "logsumexp": ((0, False, 2), ((0, 2), True, 3)),
}
for fn_, variants in REDUCTIONS.items():
    for axis, keep, rank in variants:
        a = "" if axis is None else f", axis={axis}"
        k = ", keepdims=true" if keep else ""
        ok = None
        if fn_ in ("max", "min"):
            ok = (lambda ax: lambda v: distinct_along(v["x"], ax))(axis)
        row(f"{fn_}(axis={axis}{',keepdims' if keep else ''})".replace(" ", ""),
            f"{fn_}({{x}}{a}{k})", {"x": X3 if rank == 3 else X2}, "reduce", valid=ok)


# ---- softmax and log_softmax
Z = Arg(shape=("B", 5), lo=-3, hi=3)
row("softmax", "softmax({z})", {"z": Z}, "reduce")
row("softmax(axis=0)", "softmax({z}, axis=0)", {"z": Z}, "reduce")
row("log_softmax", "log_softmax({z})", {"z": Z}, "reduce")

# ---- losses
LAB = Arg(shape=("B",), kind="label", classes=5)
PROB = Arg(shape=("B", 5), kind="prob")
T01 = Arg(lo=0.0, hi=1.0)
row("mse", "mse({p}, {t})", {"p": X, "t": X}, "loss")
row("cross_entropy(labels)", "cross_entropy({z}, {y})", {"z": Z, "y": LAB}, "loss")
row("cross_entropy(probs)", "cross_entropy({z}, {t})", {"z": Z, "t": PROB}, "loss")
row("cross_entropy(3d labels)", "cross_entropy({z}, {y})",
    {"z": Arg(shape=("B", 2, 5)), "y": Arg(shape=("B", 2), kind="label", classes=5)}, "loss")
row("binary_cross_entropy", "binary_cross_entropy({z}, {t})",
    {"z": Arg(lo=-4, hi=4), "t": T01}, "loss")
row("cross_entropy(labels|probs,sum)",
    'cross_entropy({z}, {y}, reduction="sum") + cross_entropy({z}, {t}, reduction="sum")',
    {"z": Z, "y": LAB, "t": PROB}, "loss")
row("mse(sum)+binary_cross_entropy(sum)",
    'mse({p}, {t}, reduction="sum") + binary_cross_entropy({z}, {u}, reduction="sum")',
    {"p": X, "t": X, "z": Arg(lo=-4, hi=4), "u": T01}, "loss")
row("hinge", "hinge({s}, {y})", {"s": Z, "y": LAB}, "loss", valid=hinge_ok(1.0))
row("hinge(margin=2,sum)", 'hinge({s}, {y}, margin=2, reduction="sum")',
    {"s": Z, "y": LAB}, "loss", valid=hinge_ok(2.0))
row("l1(a,b)", "l1({a}, {b})", {"a": KINK0, "b": Arg(shape=(3, 4), avoid=(0.0,),
                                                      kind="param")}, "loss")
row("l2(a,b)", "l2({a}, {b})", {"a": X, "b": Arg(shape=(3, 4), kind="param")}, "loss")

# ---- user functions and where
row("fn swish", "swish({x})", fns=("swish",), group="broadcast", covers=("sigmoid",))
row("fn gelu_tanh", "gelu_tanh({x})", {"x": Arg(lo=-3, hi=3)}, fns=("gelu_tanh",),
    group="broadcast", covers=("tanh",))
row("fn calling fn", "swish2({x})", fns=("swish", "swish2"), group="broadcast")
row("fn lerp(a,b,t)", "lerp({a}, {b}, {t})", {"a": X, "b": X, "t": Arg(lo=0, hi=1)},
    fns=("lerp",), group="broadcast")
row("fn where-leaky", "leaky({x})", {"x": KINK0}, fns=("leaky",), group="broadcast",
    covers=("where",))
row("fn unit(v) (reduction body)", "unit({x})", fns=("unit",), group="broadcast")
row("swish(x@W)", "swish({x} @ {W})", {"x": X, "W": M34}, fns=("swish",), group="broadcast")
row("pipe x|>leaky_relu(0.2)", "{x} |> leaky_relu(alpha=0.2)", {"x": KINK0}, group="broadcast",
    covers=("leaky_relu",))


#: rows compiled into one model at most (compile time grows faster than linearly)
CHUNK = 8


def _chunk(rows: list[Row]) -> dict[str, list[Row]]:
    by_kind: dict[str, list[Row]] = {}
    for r in rows:
        by_kind.setdefault(r.group, []).append(r)
    out = {}
    for kind, rs in by_kind.items():
        n = -(-len(rs) // CHUNK)
        for i in range(n):
            part = rs[i::n]
            name = kind if n == 1 else f"{kind}{i + 1}"
            out[name] = [dataclasses.replace(r, group=name) for r in part]
    return out


#: group name -> its rows (each row's ``group`` is the name of its group here)
GROUPS: dict[str, list[Row]] = _chunk(ROWS)
ROWS[:] = [r for rs in GROUPS.values() for r in rs]


def by_name() -> dict[str, Row]:
    """The rows by name (names are unique)."""
    out = {r.name: r for r in ROWS}
    assert len(out) == len(ROWS), "duplicate row names in tests/harness/op_specs.py"
    return out


# ---------------------------------------------------------------------- drawing values
def _draw_arg(rng: np.random.Generator, arg: Arg, dims: dict) -> np.ndarray:
    shape = tuple(dims[d] if isinstance(d, str) else d for d in arg.shape)
    if arg.kind == "label":
        return rng.integers(0, arg.classes, size=shape).astype(np.int64)
    if arg.kind == "prob":
        p = rng.uniform(0.05, 1.0, size=shape)
        v = p / p.sum(axis=-1, keepdims=True)
    else:
        v = rng.uniform(arg.lo, arg.hi, size=shape)
        for point in arg.avoid:
            near = np.abs(v - point) < 10 * GAP
            v = np.where(near, point + np.where(v >= point, 1, -1) * 10 * GAP, v)
    # f32-representable values: the float32 build sees exactly the same numbers
    return np.asarray(np.asarray(v, np.float32), np.float64)


def draw(rng: np.random.Generator, r: Row, dims: dict | None = None) -> dict:
    """Draw values (dict argument name -> array) for row ``r``, honouring ``r.valid``."""
    dims = dims or DIMS
    for _ in range(200):
        values = {name: _draw_arg(rng, arg, dims) for name, arg in r.args.items()}
        if r.valid is None or r.valid(values):
            return values
    raise AssertionError(f"row {r.name}: no valid values in 200 draws")


# ---------------------------------------------------------------------- group models
DIFF_KINDS = ("x", "prob")


def _dim_text(d) -> str:
    if d.is_Integer:
        return str(int(d))
    assert d.is_Symbol, f"output dim {d}: give the row a shape the test can declare"
    return d.name


def _type(shape, dtype="f64") -> str:
    return dtype + (f"[{', '.join(str(d) for d in shape)}]" if shape else "")


class Group:
    """The rows of one group as ONE model: an output ``oK`` per row, the row's arguments as
    inputs/params ``oK_<arg>`` (float inputs in ``wrt``), a weight input ``wK`` shaped like
    ``oK`` and ``loss = sum(o0 * w0) + sum(o1 * w1) + ...``; its values and compiled builds.

    A row may also carry ``decls``, declarations (layers, fns) templated on ``{pre}``, the
    row's prefix ``oK_``, so that whatever they declare belongs to that row alone."""

    def __init__(self, name: str, rows: list, seed: int = 0):
        self.name, self.rows = name, rows
        self.index = {r.name: k for k, r in enumerate(rows)}
        self.rng = rng = np.random.default_rng(seed)
        decls, outs, self.wrt = [], [], []
        self.params, self.inputs = {}, {}
        fns = [text for key, text in FNS.items() if any(key in r.fns for r in rows)]
        layers = []
        for k, r in enumerate(rows):
            values = draw(rng, r)
            names = {a: f"o{k}_{a}" for a in r.args}
            for a, arg in r.args.items():
                n = names[a]
                if arg.kind == "param":
                    decls.append(f"param {n} : {_type(arg.shape)}")
                    self.params[n] = values[a]
                elif arg.kind == "label":
                    decls.append(f"input {n} : {_type(arg.shape, 'i64')}")
                    self.inputs[n] = values[a]
                else:
                    decls.append(f"input {n} : {_type(arg.shape)}")
                    self.inputs[n] = values[a]
                    if arg.kind in DIFF_KINDS:
                        self.wrt.append(n)
            layers += [d.format(pre=f"o{k}_") for d in r.decls]
            outs.append(f"output o{k} = {r.expr.format(pre=f'o{k}_', **names)}")
        head = [f"model {name.replace('-', '_')}", *fns, *decls, *layers]
        self.filename = f"group_{name}.grad"
        graph, _ = front(Source("\n".join(head + outs) + "\n", self.filename),
                         Options.make(dtype="f64"))
        weights, terms = [], []
        for k in range(len(rows)):
            shape = [_dim_text(d) for d in graph.outputs[f"o{k}"].shape]
            weights.append(f"input w{k} : {_type(shape)}")
            self.inputs[f"w{k}"] = np.asarray(
                rng.standard_normal([DIMS.get(d, 0) or int(d) for d in shape])
                .astype(np.float32), np.float64)
            terms.append(f"sum(o{k} * w{k})")
        self.text = "\n".join(head + weights + outs + ["loss = " + " + ".join(terms)]) + "\n"
        self._models: dict[str, gradc.Model] = {}

    def model(self, dtype: str = "f64") -> gradc.Model:
        """The compiled model (cached per dtype)."""
        if dtype not in self._models:
            t0 = time.perf_counter()
            m = gradc.compile_string(self.text, name=self.filename, dtype=dtype,
                                     wrt=list(self.wrt))
            m.compile_seconds = time.perf_counter() - t0
            self._models[dtype] = m
        return self._models[dtype]

    def values(self, r: Row, dtype: str = "f64") -> tuple[dict, dict]:
        """(params, inputs) with every loss weight but row ``r``'s set to zero."""
        k = self.index[r.name]
        np_t = {"f64": np.float64, "f32": np.float32}[dtype]
        params = {n: np.array(v, np_t, order="C") for n, v in self.params.items()}
        inputs = {}
        for n, v in self.inputs.items():
            if v.dtype.kind == "f":
                v = v if n[0] != "w" or n == f"w{k}" else np.zeros_like(v)
                v = np.array(v, np_t, order="C")
            inputs[n] = v
        return params, inputs

    def out(self, r: Row) -> str:
        return f"o{self.index[r.name]}"

    def row_leaves(self, r: Row) -> list[str]:
        """The differentiated leaves that belong to row ``r``."""
        prefix = f"o{self.index[r.name]}_"
        return [n for n in list(self.params) + self.wrt if n.startswith(prefix)]


@functools.cache
def group(name: str) -> Group:
    """The (cached) :class:`Group` of the rows of group ``name``."""
    return Group(name, GROUPS[name])



__all__ = ["Group", "group", "Arg", "Row", "ROWS", "GROUPS", "FNS", "DIMS", "GAP", "draw",
           "by_name", "apart", "distinct_along"]
