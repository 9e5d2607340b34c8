"""Random well-typed models, each written twice: as a ``.grad`` text and as a PyTorch function.

:func:`generate` draws a model from a seed: inputs ``[B, n]`` (and ``[B, T, n]``, ``[n]``,
integer labels), params created as the ops need them, then a sequence of statements over a
pool of typed values, drawing from every elementwise built-in of ``gradc/ir/ops.py`` (with
domain guards: ``log(softplus(z) + 0.1)``), the infix operators (with ``-a ^ 2`` written
bare, to pin the precedence ``-(a^2)``), matmul of every promoted form, broadcasting,
reductions with ``axis`` (int, tuple, negative) and ``keepdims``, softmax and log_softmax,
concat, slices and indexing, reshape, transpose and ``.T``, ``where``, comparisons, ``take``,
dim names as values, user fns (elementwise and not, one or two arguments), ``scan`` of a
random cell over a ``[B, T, n]`` input (its twin a Python loop), ``grad`` of the deepest
value by a param with its square in the loss (its twin ``torch.autograd.grad`` with
``create_graph``), rebinding, and ends with 1-2 outputs and a loss of 1-3 terms drawn from
every loss (both reductions, integer and probability targets for cross_entropy, hinge
margins).

:func:`check` compiles it in float64 (target ``numpy`` unless told), draws data, evaluates
the PyTorch twin and compares forward, loss, every gradient (params and ``wrt`` inputs), a
vjp, a jvp (by the dot-product identity against PyTorch's vjp) and an hvp (against PyTorch's
double backward), then checks the loss gradient against central differences of gradc's own
loss. The twin records, for every non-differentiable op (relu, abs, step, sign, leaky_relu,
elu, max/min, comparisons, where, max/min reductions, hinge, l1, tan's poles), how far the
point is from the kink; data too close to one is redrawn, and a model that stays too close is
a skip, not a finding.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

import numpy as np

from .common import Outcome, short

BSIZE = 5      # the call-time value of B (no fixed size equals it)
TSIZE = 2      # the call-time value of T
KINK = 1e-3    # data closer than this to a non-differentiable point is redrawn
TOL = 1e-6     # norm-wise relative error, gradc vs torch, float64 (a bug is O(1); rounding in
#               ill-conditioned random models reaches 1e-7)
FD_TOL = 1e-4  # central differences vs <grad, direction>

SMOOTH_UNARY = ["exp", "log", "log1p", "sqrt", "sin", "cos", "tan", "tanh", "sigmoid",
                "softplus", "silu", "gelu"]
KINKED_UNARY = ["abs", "relu", "leaky_relu", "elu", "step", "sign"]
ALL_UNARY = SMOOTH_UNARY + KINKED_UNARY
LOSS_KINDS = ["mse", "binary_cross_entropy", "cross_entropy", "cross_entropy_probs", "hinge",
              "l1", "l2", "sum", "mean"]


@dataclass
class Value:
    name: str
    shape: tuple  # ints and "B" / "T"


@dataclass
class Model:
    seed: int
    text: str
    torch_src: str
    inputs: dict  # name -> (dtype, shape, kind) kind: data | unit | label:C | index:V
    params: dict  # name -> shape
    outputs: list
    wrt: tuple
    features: set = field(default_factory=set)


def conc(shape) -> tuple:
    return tuple(BSIZE if d == "B" else TSIZE if d == "T" else d for d in shape)


def _dims(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


class Gen:
    """The state of one model being drawn."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.lines: list[str] = []      # gradc statements
        self.tlines: list[str] = []     # torch statements (inside f(P, I))
        self.decl: list[str] = []       # input/param declarations
        self.fns: list[str] = []        # fn declarations (gradc) and their torch defs
        self.tfns: list[str] = []
        self.inputs: dict = {}
        self.params: dict = {}
        self.pool: list[Value] = []
        self.count = 0
        self.features: set = set()
        self.terms: list[tuple[str, str]] = []  # loss terms the ops ask for (gradc, torch)

    # ----------------------------------------------------------------- names and leaves
    def fresh(self, prefix="v") -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def input(self, shape, kind="data", dtype="f64") -> str:
        name = self.fresh("x" if kind == "data" else "t" if kind == "unit" else "y")
        self.inputs[name] = (dtype, tuple(shape), kind)
        self.decl.append(f"input {name} : {dtype}{_dims(shape) if shape else ''}")
        return name

    def param(self, shape) -> str:
        for name, s in self.params.items():
            if s == tuple(shape) and self.rng.random() < 0.3:
                return name
        name = self.fresh("W" if len(shape) >= 2 else "b" if shape else "s")
        self.params[name] = tuple(shape)
        init = self.rng.choice(["", " ~ normal(0.5)", " ~ uniform(-1, 1)", " ~ constant(0.3)"])
        self.decl.append(f"param {name} : f64{_dims(shape) if shape else ''}{init}")
        return name

    def emit(self, gexpr: str, texpr: str, shape, name=None) -> Value:
        """``name = expr`` in both languages; rebinding an existing name sometimes."""
        if name is None:
            if self.pool and self.rng.random() < 0.08:
                old = self.rng.choice(self.pool)
                if old.name not in self.inputs and old.name not in self.params:
                    name = old.name
                    self.pool.remove(old)
                    self.features.add("rebinding")
            name = name or self.fresh()
        self.lines.append(f"{name} = {gexpr}")
        self.tlines.append(f"{name} = {texpr}")
        v = Value(name, tuple(shape))
        self.pool.append(v)
        return v

    def pick(self, pred=lambda v: True) -> Value | None:
        cands = [v for v in self.pool if pred(v)]
        if not cands:
            return None
        # favour recent values: deeper models
        return cands[-1] if self.rng.random() < 0.4 else self.rng.choice(cands)

    # ------------------------------------------------------------------------- ops
    def op_unary(self, fn: str | None = None):
        v = self.pick()
        fn = fn or self.rng.choice(ALL_UNARY)
        self.features.add(fn)
        a, ta = v.name, v.name
        if fn in ("log", "sqrt"):
            c = self.rng.choice(["0.1", "0.5", "1"])
            g, t = f"{fn}(softplus({a}) + {c})", f"K.{fn}(K.softplus({ta}) + {c})"
        elif fn == "log1p":
            g, t = f"log1p({a} * {a})", f"K.log1p({ta} * {ta})"
        elif fn == "exp":
            g, t = f"exp(tanh({a}) * 2)", f"K.exp(K.tanh({ta}) * 2)"
        elif fn == "tan":
            g, t = f"tan({a})", f"K.tan({ta})"
        elif fn in ("leaky_relu", "elu") and self.rng.random() < 0.6:
            alpha = self.rng.choice(["0.1", "0.5", "2", "0.01"])
            g, t = f"{fn}({a}, alpha={alpha})", f"K.{fn}({ta}, {alpha})"
        else:
            g, t = f"{fn}({a})", f"K.{fn}({ta})"
        return self.emit(g, t, v.shape)

    def _broadcast_partner(self, v: Value) -> tuple[str, str, tuple]:
        """A second operand that broadcasts against ``v``: (gradc, torch, result shape)."""
        r = self.rng.random()
        same = [w for w in self.pool if w.shape == v.shape and w is not v]
        if r < 0.3 and same:
            w = self.rng.choice(same)
            return w.name, w.name, v.shape
        if r < 0.55 and v.shape:
            k = self.rng.randint(0, len(v.shape))
            suffix = tuple(1 if (d in ("B", "T") or self.rng.random() < 0.2) else d
                           for d in v.shape[k:])
            if all(d == 1 for d in suffix) and suffix:
                suffix = suffix[:-1]
            p = self.param(suffix)
            self.features.add("broadcast")
            return p, f"P['{p}']", v.shape
        if r < 0.7:
            c = self.rng.choice(["2", "0.5", "3.0", "1e-1", "-1.5"])
            return c, c, v.shape
        if r < 0.8 and len(v.shape) >= 1:
            axis = self.rng.randrange(len(v.shape))
            red = self.rng.choice(["sum", "mean", "logsumexp"])
            self.features.add("keepdims")
            return (f"{red}({v.name}, axis={axis}, keepdims=true)",
                    f"K.{red}({v.name}, ({axis},), True)", v.shape)
        if r < 0.9 and "B" in v.shape:
            self.features.add("dim-value")
            return "B", str(BSIZE) + ".0", v.shape
        w = self.pick(lambda w: w is not v and len(w.shape) <= len(v.shape) and
                      w.shape == v.shape[len(v.shape) - len(w.shape):])
        if w is not None:
            return w.name, w.name, v.shape
        p = self.param(())
        return p, f"P['{p}']", v.shape

    def op_arith(self, op: str | None = None, neg_pow: bool = False):
        v = self.pick()
        g2, t2, shape = self._broadcast_partner(v)
        op = op or self.rng.choice(["+", "-", "*", "*", "/", "max", "min", "^"])
        swap = self.rng.random() < 0.3 and op in "+-*"
        a, ta, b, tb = v.name, v.name, g2, t2
        if swap:
            a, ta, b, tb = b, tb, a, ta
        if op == "/":
            self.features.add("div")
            g = f"{a} / (softplus({b}) + 0.5)"
            t = f"{ta} / (K.softplus(K.t({tb})) + 0.5)"
        elif op in ("max", "min"):
            self.features.add(op + "2")
            g, t = f"{op}({a}, {b})", f"K.{op}2({ta}, {tb})"
        elif op == "^":
            self.features.add("pow")
            r = self.rng.random()
            if r < 0.4 and not neg_pow:
                e = self.rng.choice(["2", "3", "0.5", "-1", "1.5"])
                if e in ("0.5", "-1", "1.5"):
                    g, t = f"(softplus({a}) + 0.2) ^ {e}", f"(K.softplus({ta}) + 0.2) ** {e}"
                else:
                    g, t = f"{a} ^ {e}", f"K.t({ta}) ** {e}"
            elif r < 0.6 or neg_pow:  # precedence: -a ^ 2 is -(a ^ 2)
                self.features.add("neg-pow")
                g, t = f"-{a} ^ 2", f"-(K.t({ta}) ** 2)"
            elif r < 0.75:
                g, t = f"{a} ** 2", f"K.t({ta}) ** 2"
            else:  # a non-constant exponent
                g = f"(softplus({a}) + 0.1) ^ sigmoid({b})"
                t = f"(K.softplus({ta}) + 0.1) ** K.sigmoid(K.t({tb}))"
        else:
            g, t = f"{a} {op} {b}", f"K.t({ta}) {op} K.t({tb})"
        return self.emit(g, t, v.shape)

    def op_compare(self):
        v = self.pick()
        g2, t2, shape = self._broadcast_partner(v)
        cmp = self.rng.choice(["<", "<=", ">", ">="])
        self.features.add("compare")
        if self.rng.random() < 0.5:
            w = self.pick(lambda w: w.shape == v.shape)
            self.features.add("where")
            return self.emit(f"where({v.name} {cmp} {g2}, {v.name}, tanh({w.name}))",
                             f"K.where(K.cmp('{cmp}', {v.name}, {t2}), {v.name}, "
                             f"K.tanh({w.name}))", v.shape)
        return self.emit(f"({v.name} {cmp} {g2}) * {v.name}",
                         f"K.cmp('{cmp}', {v.name}, {t2}) * {v.name}", v.shape)

    def op_matmul(self):
        v = self.pick(lambda v: v.shape and isinstance(v.shape[-1], int))
        if v is None:
            return self.op_unary()
        self.features.add("matmul")
        n = v.shape[-1]
        r = self.rng.random()
        if r < 0.15:  # vector: [.., n] @ [n] -> [..]
            p = self.param((n,))
            return self.emit(f"{v.name} @ {p}", f"{v.name} @ P['{p}']", v.shape[:-1])
        if r < 0.25 and len(v.shape) == 1:  # [n] @ [n, m]
            m = self.rng.randint(2, 4)
            p = self.param((n, m))
            return self.emit(f"{v.name} @ {p}", f"{v.name} @ P['{p}']", (m,))
        if r < 0.35 and len(v.shape) >= 2 and isinstance(v.shape[-2], int):  # [m, ..] @ v
            m = self.rng.randint(2, 4)
            p = self.param((m, v.shape[-2]))
            return self.emit(f"{p} @ {v.name}", f"P['{p}'] @ {v.name}",
                             v.shape[:-2] + (m, n))
        m = self.rng.randint(2, 4)
        p = self.param((n, m))
        self.features.add(f"matmul-rank{len(v.shape)}")
        return self.emit(f"{v.name} @ {p}", f"{v.name} @ P['{p}']", v.shape[:-1] + (m,))

    def op_reduce(self, red: str | None = None):
        v = self.pick(lambda v: len(v.shape) >= 1)
        if v is None:
            return self.op_unary()
        red = red or self.rng.choice(["sum", "mean", "max", "min", "logsumexp"])
        self.features.add(f"reduce-{red}")
        rank = len(v.shape)
        r = self.rng.random()
        keep = self.rng.random() < 0.3
        if r < 0.2:
            axes = tuple(range(rank))
            kw = ""
        elif r < 0.7:
            a = self.rng.randrange(rank)
            axes = (a,)
            kw = f", axis={a - rank if self.rng.random() < 0.4 else a}"
        else:
            axes = tuple(sorted(self.rng.sample(range(rank), self.rng.randint(1, rank))))
            written = [a - rank if self.rng.random() < 0.3 else a for a in axes]
            kw = f", axis=({', '.join(map(str, written))}{',' if len(axes) == 1 else ''})"
        if keep and kw:
            kw += ", keepdims=true"
            self.features.add("keepdims")
        shape = tuple(1 if i in axes else d for i, d in enumerate(v.shape)) if (keep and kw) \
            else tuple(d for i, d in enumerate(v.shape) if i not in axes)
        return self.emit(f"{red}({v.name}{kw})",
                         f"K.{red}({v.name}, {axes!r}, {bool(keep and kw)})", shape)

    def op_softmax(self):
        v = self.pick(lambda v: len(v.shape) >= 1)
        if v is None:
            return self.op_unary()
        fn = self.rng.choice(["softmax", "log_softmax"])
        self.features.add(fn)
        rank = len(v.shape)
        if self.rng.random() < 0.5:
            return self.emit(f"{fn}({v.name})", f"K.{fn}({v.name}, -1)", v.shape)
        a = self.rng.randrange(rank)
        return self.emit(f"{fn}({v.name}, axis={a})", f"K.{fn}({v.name}, {a})", v.shape)

    def op_concat(self):
        v = self.pick(lambda v: len(v.shape) >= 1)
        if v is None:
            return self.op_unary()
        self.features.add("concat")
        rank = len(v.shape)
        axis = self.rng.randrange(rank)
        parts, tparts = [v.name], [v.name]
        extra = 0
        for _ in range(self.rng.randint(1, 3)):
            r = self.rng.random()
            if r < 0.5:
                fn = self.rng.choice(["tanh", "sin", "sigmoid"])
                parts.append(f"{fn}({v.name})")
                tparts.append(f"K.{fn}({v.name})")
                extra += 1
            elif isinstance(v.shape[axis], int) or r < 0.7:
                w = self.pick(lambda w: len(w.shape) == rank and
                              isinstance(w.shape[axis], int) and all(
                    a == b for i, (a, b) in enumerate(zip(w.shape, v.shape)) if i != axis))
                if w is None:
                    continue
                parts.append(w.name)
                tparts.append(w.name)
                extra += 1
        if extra == 0:
            parts.append(v.name)
            tparts.append(v.name)
        # the size of the concat axis: the sum of the parts' sizes (a part is a pool value or
        # a function of v)
        total = 0
        for p in parts:
            found = next((w for w in self.pool if w.name == p), None)
            total += conc(found.shape if found else v.shape)[axis]
        d = v.shape[axis]
        if d in ("B", "T"):  # a call-time axis: the result has a fixed size only if known
            return self.op_unary()
        ax = axis - rank if self.rng.random() < 0.5 else axis
        shape = v.shape[:axis] + (total,) + v.shape[axis + 1:]
        return self.emit(f"concat({', '.join(parts)}, axis={ax})",
                         f"K.cat([{', '.join(tparts)}], {axis})", shape)

    def op_slice(self):
        v = self.pick(lambda v: len(v.shape) >= 1)
        if v is None:
            return self.op_unary()
        self.features.add("slice")
        subs, tsubs, shape = [], [], []
        nsub = self.rng.randint(1, len(v.shape))
        for d in v.shape[:nsub]:
            r = self.rng.random()
            if d in ("B", "T"):
                if r < 0.8:
                    subs.append(":")
                    tsubs.append(":")
                    shape.append(d)
                else:
                    k = self.rng.choice(["0", "-1"])
                    subs.append(k)
                    tsubs.append(k)
            else:
                if r < 0.3:
                    subs.append(":")
                    tsubs.append(":")
                    shape.append(d)
                elif r < 0.5:
                    k = self.rng.randrange(-d, d)
                    subs.append(str(k))
                    tsubs.append(str(k))
                elif r < 0.8:
                    lo = self.rng.randrange(0, d)
                    hi = self.rng.randrange(lo + 1, d + 1)
                    subs.append(f"{lo}:{hi}")
                    tsubs.append(f"{lo}:{hi}")
                    shape.append(hi - lo)
                else:
                    step = self.rng.choice([2, 3])
                    subs.append(f"::{step}")
                    tsubs.append(f"::{step}")
                    shape.append(len(range(0, d, step)))
        shape += list(v.shape[nsub:])
        return self.emit(f"{v.name}[{', '.join(subs)}]", f"{v.name}[{', '.join(tsubs)}]", shape)

    def op_reshape(self):
        v = self.pick(lambda v: len(v.shape) >= 1)
        if v is None:
            return self.op_unary()
        self.features.add("reshape")
        fixed = [d for d in v.shape if isinstance(d, int)]
        dims = [d for d in v.shape if not isinstance(d, int)]
        n = int(np.prod(fixed)) if fixed else 1
        facs = [f for f in range(1, n + 1) if n % f == 0]
        a = self.rng.choice(facs)
        pieces = [a, n // a] if self.rng.random() < 0.5 else [n]
        pieces = [p for p in pieces if p != 1] or [1]
        if dims:  # keep call-time dims first, in order
            target = dims + pieces
            written = dims + (["-1"] if self.rng.random() < 0.5 and len(pieces) == 1 else
                              [str(p) for p in pieces])
        else:
            target = pieces
            written = [str(p) for p in pieces]
            if self.rng.random() < 0.3:
                written[0] = "-1"
        order = dims and v.shape[:len(dims)] != tuple(dims)
        if order:  # the call-time dims are not leading: transpose them first
            return self.op_transpose()
        tshape = ", ".join(f"{BSIZE}" if d == "B" else f"{TSIZE}" if d == "T" else str(d)
                           for d in target)
        return self.emit(f"reshape({v.name}, [{', '.join(str(w) for w in written)}])",
                         f"{v.name}.reshape({tshape},)", tuple(target))

    def op_transpose(self):
        v = self.pick(lambda v: len(v.shape) >= 2)
        if v is None:
            return self.op_unary()
        self.features.add("transpose")
        rank = len(v.shape)
        r = self.rng.random()
        if r < 0.4:
            perm = tuple(reversed(range(rank)))
            g = f"{v.name}.T" if self.rng.random() < 0.5 else f"transpose({v.name})"
        else:
            perm = tuple(self.rng.sample(range(rank), rank))
            g = f"transpose({v.name}, ({', '.join(map(str, perm))}))"
        return self.emit(g, f"{v.name}.permute{perm!r}", tuple(v.shape[i] for i in perm))

    def op_fn(self):
        v = self.pick()
        name = self.fresh("f")
        self.features.add("fn")
        r = self.rng.random()
        if r < 0.5:  # elementwise, one argument
            body, tbody = self.rng.choice([
                ("z * sigmoid(z)", "z * K.sigmoid(z)"),
                ("0.5 * z * (1 + tanh(0.79788 * (z + 0.044715 * z ^ 3)))",
                 "0.5 * z * (1 + K.tanh(0.79788 * (z + 0.044715 * z ** 3)))"),
                ("log(1 + exp(-z ^ 2))", "K.log(1 + K.exp(-(z ** 2)))"),
                ("max(z, 0.1 * z) - min(z, 0)", "K.max2(z, 0.1 * z) - K.min2(z, 0)"),
                ("sin(z) ^ 2 + cos(z)", "K.sin(z) ** 2 + K.cos(z)"),
                ("z / (1 + abs(z))", "z / (1 + K.abs(z))")])
            self.fns.append(f"fn {name}(z) = {body}")
            self.tfns.append(f"def {name}(z):\n    return {tbody}")
            return self.emit(f"{name}({v.name})", f"{name}({v.name})", v.shape)
        if r < 0.75:  # two arguments, broadcasting
            g2, t2, shape = self._broadcast_partner(v)
            self.fns.append(f"fn {name}(a, b) = a * tanh(b) + b")
            self.tfns.append(f"def {name}(a, b):\n    return a * K.tanh(K.t(b)) + b")
            return self.emit(f"{name}({v.name}, {g2})", f"{name}({v.name}, {t2})", v.shape)
        # a non-elementwise fn: an affine map over the last axis, then a fn of a fn
        if not v.shape or not isinstance(v.shape[-1], int):
            return self.op_unary()
        n = v.shape[-1]
        m = self.rng.randint(2, 4)
        w, b = self.param((n, m)), self.param((m,))
        inner = self.fresh("f")
        self.fns.append(f"fn {inner}(h) = h @ {w} + {b}")
        self.tfns.append(f"def {inner}(h):\n    return h @ P['{w}'] + P['{b}']")
        self.fns.append(f"fn {name}(h) = tanh({inner}(h))")
        self.tfns.append(f"def {name}(h):\n    return K.tanh({inner}(h))")
        self.features.add("fn-nested")
        return self.emit(f"{v.name} |> {name}" if self.rng.random() < 0.3 else
                         f"{name}({v.name})", f"{name}({v.name})", v.shape[:-1] + (m,))

    #: scan cells (gradc body, torch body) over h [B, m], x [B, n] and params W [n, m], U
    #: [m, m]; none keeps h = 0 from h_0 = 0 (zeros would sit on the kinks of later ops)
    CELLS = [("tanh(x @ {W} + h @ {U})", "K.tanh(x @ P['{W}'] + h @ P['{U}'])"),
             ("sigmoid(x @ {W}) * (h - 1) + 0.5 * tanh(h @ {U})",
              "K.sigmoid(x @ P['{W}']) * (h - 1) + 0.5 * K.tanh(h @ P['{U}'])"),
             ("0.9 * sin(x @ {W} + h @ {U}) + 0.1 * h",
              "0.9 * K.sin(x @ P['{W}'] + h @ P['{U}']) + 0.1 * h")]

    def op_scan(self, seq: Value, rng: random.Random):
        """``scan(cell, seq, m)`` of a cell drawn by ``rng`` over ``seq`` [B, T, n]."""
        n, m = seq.shape[2], rng.randint(2, 4)
        names = {"W": self.param((n, m)), "U": self.param((m, m))}
        body, tbody = (c.format(**names) for c in rng.choice(self.CELLS))
        cell = self.fresh("cell")
        self.features.add("scan")
        self.fns.append(f"fn {cell}(h, x) = {body}")
        self.tfns.append(f"def {cell}(xs):\n    h, hs = K.zeros(xs.shape[0], {m}, "
                         f"dtype=K.float64), []\n    for t in range(xs.shape[1]):\n"
                         f"        x = xs[:, t]\n        h = {tbody}\n        hs.append(h)\n"
                         f"    return K.stack(hs, 1)")
        v = self.emit(f"scan({cell}, {seq.name}, {m})", f"{cell}({seq.name})", ("B", "T", m))
        self.terms.append((f"mean({v.name} ^ 2)", f"({v.name} ** 2).mean()"))  # always used
        return v

    def op_grad(self, rng: random.Random):
        """``grad(sum(v), W)`` of the deepest value v by a param W that v depends on (drawn by
        ``rng``; any param where none is found), its mean square a loss term only (not in the
        pool: a gradient of zeros would put later ops on their kinks): a gradient penalty
        through the random graph, differentiated again by every entry."""
        if not self.params:
            return None
        v = self.pool[-1]
        deps = self.param_deps()
        w = rng.choice(sorted(deps.get(v.name) or self.params))
        self.features.add("grad")
        d = self.emit(f"grad(sum({v.name}), {w})", f"K.grad({v.name}, P['{w}'])",
                      self.params[w], name=self.fresh("g"))
        self.pool.remove(d)
        self.terms.append((f"mean({d.name} ^ 2)", f"({d.name} ** 2).mean()"))
        return d

    def param_deps(self) -> dict:
        """name -> the params its value reads, through the lines so far and the fns they
        call (names read off the text: a superset where a name is rebound)."""
        words = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
        fn_reads = {}
        for fn in self.fns:
            head, _, body = fn.partition("=")
            fn_reads[words.findall(head)[1]] = set(words.findall(body)) & set(self.params)
        deps: dict = {p: {p} for p in self.params}
        for line in self.lines:
            name, _, expr = line.partition(" = ")
            found = set()
            for word in words.findall(expr):
                found |= deps.get(word, set()) | fn_reads.get(word, set())
            deps[name.strip()] = found
        return deps

    def op_take(self):
        vocab, width = self.rng.randint(3, 5), self.rng.randint(2, 4)
        table = self.param((vocab, width))
        idx = self.input(("B",), kind=f"index:{vocab}", dtype="i64")
        self.features.add("take")
        return self.emit(f"take({table}, {idx}, 0)", f"P['{table}'][I['{idx}']]", ("B", width))

    OPS = [("unary", 6), ("arith", 6), ("compare", 1), ("matmul", 3), ("reduce", 2),
           ("softmax", 1), ("concat", 1), ("slice", 1.5), ("reshape", 1), ("transpose", 1),
           ("fn", 1.5), ("take", 0.3)]

    # ------------------------------------------------------------------------ losses
    def loss_term(self, kind: str | None = None) -> tuple[str, str]:
        kind = kind or self.rng.choice(LOSS_KINDS)
        self.features.add(f"loss-{kind}")
        red = self.rng.random() < 0.25
        kw, tkw = (', reduction="sum"', "'sum'") if red else ("", "'mean'")
        if kind in ("cross_entropy", "hinge"):
            v = self.pick(lambda v: len(v.shape) >= 2 and isinstance(v.shape[-1], int)
                          and v.shape[-1] >= 2)
            if v is None:
                v = self.op_matmul_to_classes()
            classes = v.shape[-1]
            y = self.input(v.shape[:-1], kind=f"label:{classes}", dtype="i64")
            if kind == "hinge":
                m = self.rng.choice([None, "0.5", "2"])
                mk = f", margin={m}" if m else ""
                return (f"hinge({v.name}, {y}{mk}{kw})",
                        f"K.hinge({v.name}, I['{y}'], {m or 1}, {tkw})")
            return f"cross_entropy({v.name}, {y}{kw})", f"K.ce({v.name}, I['{y}'], {tkw})"
        v = self.pick()
        if kind == "cross_entropy_probs":
            if not v.shape:
                return f"sum({v.name})", f"{v.name}.sum()"
            t = self.input(v.shape, kind="data")
            return (f"cross_entropy({v.name}, softmax({t}){kw})",
                    f"K.ce_probs({v.name}, K.softmax(I['{t}'], -1), {tkw})")
        if kind == "mse":
            t = self.input(v.shape, kind="data")
            return f"mse({v.name}, {t}{kw})", f"K.mse({v.name}, I['{t}'], {tkw})"
        if kind == "binary_cross_entropy":
            t = self.input(v.shape, kind="unit")
            return (f"binary_cross_entropy({v.name}, {t}{kw})",
                    f"K.bce({v.name}, I['{t}'], {tkw})")
        if kind in ("l1", "l2"):
            others = [v] + ([self.pick()] if self.rng.random() < 0.5 else [])
            ps = [p for p in self.params if self.rng.random() < 0.5][:2]
            g = ", ".join([o.name for o in others] + ps)
            t = ", ".join([o.name for o in others] + [f"P['{p}']" for p in ps])
            return f"{kind}({g})", f"K.{kind}({t})"
        return f"{kind}({v.name})", f"K.t({v.name}).{kind}()"

    def op_matmul_to_classes(self) -> Value:
        v = self.pick(lambda v: v.shape and isinstance(v.shape[-1], int))
        if v is None:
            v = self.pool[0]
        c = self.rng.randint(2, 4)
        p = self.param((v.shape[-1],  c))
        return self.emit(f"{v.name} @ {p}", f"{v.name} @ P['{p}']", v.shape[:-1] + (c,))


def generate(seed: int, n_ops: int | None = None) -> Model:
    rng = random.Random(f"model:{seed}")
    g = Gen(rng)
    # the inputs
    x = g.input(("B", rng.randint(2, 4)))
    g.pool.append(Value(x, g.inputs[x][1]))
    g.tlines.append(f"{x} = I['{x}']")
    r = rng.random()
    if r < 0.3:
        x2 = g.input(("B", "T", rng.randint(2, 4)))
        g.pool.append(Value(x2, g.inputs[x2][1]))
        g.tlines.append(f"{x2} = I['{x2}']")
        scan = random.Random(f"scan:{seed}")  # its own draws: the others stay as they were
        if scan.random() < 0.5:
            g.op_scan(g.pool[-1], scan)
    elif r < 0.5:
        x2 = g.input((rng.randint(2, 4),))
        g.pool.append(Value(x2, g.inputs[x2][1]))
        g.tlines.append(f"{x2} = I['{x2}']")
    if rng.random() < 0.3:
        p = g.param((rng.randint(2, 3), rng.randint(2, 3)))
        g.pool.append(Value(p, g.params[p]))
        g.tlines.append(f"{p} = P['{p}']")
    # consecutive seeds rotate through every elementwise built-in and every loss
    g.op_unary(ALL_UNARY[seed % len(ALL_UNARY)])
    [lambda: g.op_reduce("sum"), lambda: g.op_reduce("mean"), lambda: g.op_reduce("max"),
     lambda: g.op_reduce("min"), lambda: g.op_reduce("logsumexp"),
     lambda: g.op_arith("^", neg_pow=True), g.op_softmax, g.op_concat][seed % 8]()
    names, weights = zip(*Gen.OPS)
    for _ in range(n_ops or rng.randint(1, 7)):
        getattr(g, "op_" + rng.choices(names, weights)[0])()
    derivative = random.Random(f"grad:{seed}")  # its own draws: the others stay as they were
    if derivative.random() < 0.3:
        g.op_grad(derivative)
    # outputs: the last value and maybe another one, under a fresh or an existing name
    outs = []
    for v in [g.pool[-1]] + ([rng.choice(g.pool)] if rng.random() < 0.4 else []):
        if v.name in outs or v.name in g.inputs:
            continue
        if rng.random() < 0.5 and v.name not in g.params:
            g.lines.append(f"output {v.name}")
            outs.append(v.name)
        else:
            o = g.fresh("o")
            g.lines.append(f"output {o} = {v.name}")
            g.tlines.append(f"{o} = {v.name}")
            outs.append(o)
    terms = [g.loss_term(LOSS_KINDS[seed % len(LOSS_KINDS)])]
    terms += [g.loss_term() for _ in range(rng.choice([0, 0, 1, 2]))]
    coefs = [rng.choice(["", "0.5 * ", "2 * ", "1e-2 * "]) for _ in terms]
    terms, coefs = terms + g.terms, coefs + [""] * len(g.terms)
    g.lines.append("loss = " + " + ".join(c + t[0] for c, t in zip(coefs, terms)))
    g.tlines.append("loss = " + " + ".join(c + t[1] for c, t in zip(coefs, terms)))
    # a model's params must all be used by the torch twin too (they are leaves either way)
    text = "\n".join([f"model m{seed}"] + g.decl + g.fns + g.lines) + "\n"
    tsrc = "\n".join(g.tfns + ["def model(P, I):"] + ["    " + ln for ln in g.tlines] +
                     [f"    return {{{', '.join(repr(o) + ': ' + o for o in outs)}}}, loss"])
    floats = [n for n, (dt, s, kind) in g.inputs.items() if kind == "data" and dt == "f64"]
    wrt = tuple(rng.sample(floats, 1)) if floats and rng.random() < 0.4 else ()
    return Model(seed, text, tsrc, g.inputs, g.params, outs, wrt, g.features)


# --------------------------------------------------------------------------- the torch twin
class _K:
    """The PyTorch side's built-ins; every kinked op records its distance to the kink."""

    def __init__(self):
        import torch
        import torch.nn.functional as F
        self.torch, self.F = torch, F
        self.margins: list[float] = []

    def _m(self, z):
        z = self.t(z)
        if z.numel():
            self.margins.append(float(z.detach().abs().min()))

    def t(self, z):
        return z if isinstance(z, self.torch.Tensor) else self.torch.tensor(
            float(z), dtype=self.torch.float64)

    def grad(self, v, w):
        """``grad(sum(v), w)``: ``w``'s gradient of ``sum(v)``, itself differentiable;
        zeros where ``v`` does not depend on ``w`` (as gradc)."""
        v = self.t(v)
        g = self.torch.autograd.grad(v.sum(), w, create_graph=True, allow_unused=True)[0] \
            if v.requires_grad else None
        return self.torch.zeros_like(w) if g is None else g

    def __getattr__(self, name):  # exp, log, sin, ... as torch has them
        return getattr(self.torch, name)

    def tan(self, z):  # away from the poles: |tan| < 5
        self.margins.append(float(self.torch.cos(z).detach().abs().min()) - 0.2 + KINK)
        return self.torch.tan(z)

    def softplus(self, z):
        return self.torch.logaddexp(self.t(z), self.torch.zeros((), dtype=self.torch.float64))

    def gelu(self, z):
        return self.F.gelu(z)

    def silu(self, z):
        return z * self.torch.sigmoid(z)

    def relu(self, z):
        self._m(z)
        return self.torch.relu(z)

    def abs(self, z):
        self._m(z)
        return self.torch.abs(z)

    def step(self, z):
        self._m(z)
        return (z > 0).to(self.torch.float64)

    def sign(self, z):
        self._m(z)
        return self.torch.sign(z)

    def leaky_relu(self, z, alpha=0.01):
        self._m(z)
        return self.torch.where(z > 0, z, alpha * z)

    def elu(self, z, alpha=1.0):
        self._m(z)
        return self.torch.where(z > 0, z, alpha * self.torch.expm1(z))

    def max2(self, a, b):
        a, b = self.t(a), self.t(b)
        self._m(a - b)
        return self.torch.maximum(a, b)

    def min2(self, a, b):
        a, b = self.t(a), self.t(b)
        self._m(a - b)
        return self.torch.minimum(a, b)

    def cmp(self, op, a, b):
        a, b = self.t(a), self.t(b)
        self._m(a - b)
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op].to(self.torch.float64)

    def where(self, c, a, b):
        return self.torch.where(c != 0, a, b)

    def sum(self, z, axes, keep):
        return z.sum(dim=axes, keepdim=keep) if axes else z

    def mean(self, z, axes, keep):
        return z.mean(dim=axes, keepdim=keep) if axes else z

    def logsumexp(self, z, axes, keep):
        return self.torch.logsumexp(z, dim=axes, keepdim=keep) if axes else z

    def _extreme(self, z, axes, keep, sign):
        if not axes:
            return z
        moved = self.torch.movedim(z, axes, tuple(range(z.dim() - len(axes), z.dim())))
        flat = moved.reshape(*moved.shape[:z.dim() - len(axes)], -1)
        if flat.shape[-1] > 1:
            top = self.torch.sort(sign * flat, dim=-1, descending=True).values
            self.margins.append(float((top[..., 0] - top[..., 1]).detach().min()))
        return (self.torch.amax if sign > 0 else self.torch.amin)(z, dim=axes, keepdim=keep)

    def max(self, z, axes, keep):
        return self._extreme(z, axes, keep, 1)

    def min(self, z, axes, keep):
        return self._extreme(z, axes, keep, -1)

    def softmax(self, z, axis):
        return self.torch.softmax(z, dim=axis)

    def log_softmax(self, z, axis):
        return self.torch.log_softmax(z, dim=axis)

    def cat(self, parts, axis):
        return self.torch.cat(parts, dim=axis)

    def _reduce(self, per, red):
        return per.sum() if red == "sum" else per.mean()

    def mse(self, p, t, red):
        return self._reduce((p - t) ** 2, red)

    def bce(self, z, t, red):
        return self._reduce(self.softplus(z) - z * t, red)

    def ce(self, z, y, red):
        per = -self.torch.log_softmax(z, -1).gather(-1, y[..., None])[..., 0]
        return self._reduce(per, red)

    def ce_probs(self, z, t, red):
        per = -(t * self.torch.log_softmax(z, -1)).sum(-1)
        return self._reduce(per, red)

    def hinge(self, s, y, margin, red):
        sy = s.gather(-1, y[..., None])
        d = s - sy + margin
        mask = self.torch.ones_like(s, dtype=self.torch.bool).scatter(-1, y[..., None], False)
        self._m(d[mask])
        per = (self.torch.clamp(d, min=0) * mask).sum(-1)
        return self._reduce(per, red)

    def l1(self, *ts):
        out = 0
        for t in ts:
            self._m(t)
            out = out + self.t(t).abs().sum()
        return out

    def l2(self, *ts):
        return sum((self.t(t) ** 2).sum() for t in ts)


def twin(model: Model):
    """The PyTorch function of ``model`` and its built-ins object (margins)."""
    K = _K()
    ns = {"K": K}
    exec(compile(model.torch_src, f"<twin of model {model.seed}>", "exec"), ns)
    fn = ns["model"]

    def call(P, inputs):
        ns["P"] = P  # the fns' bodies read params as globals
        return fn(P, inputs)
    return call, K


# ------------------------------------------------------------------------------ data
def draw(model: Model, rng: np.random.Generator) -> tuple[dict, dict]:
    params = {n: np.array(rng.uniform(-1, 1, conc(s)), order='C') for n, s in model.params.items()}
    inputs = {}
    for n, (_, shape, kind) in model.inputs.items():
        s = conc(shape)
        if kind == "data":
            inputs[n] = np.array(rng.uniform(-1.5, 1.5, s), order='C')
        elif kind == "unit":
            inputs[n] = np.array(rng.uniform(0, 1, s), order='C')
        else:
            hi = int(kind.split(":")[1])
            inputs[n] = np.array(rng.integers(0, hi, s), dtype=np.int64, order='C')
    return params, inputs


def rel(got, want, floor=1e-8) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        return np.inf
    if not (np.all(np.isfinite(got)) and np.all(np.isfinite(want))):
        return 0.0 if np.array_equal(got, want, equal_nan=True) else np.inf
    d = float(np.linalg.norm((got - want).ravel()))
    den = max(float(np.linalg.norm(got.ravel())), float(np.linalg.norm(want.ravel())), floor)
    return d / den


def _torch_eval(model: Model, params, inputs, *, want_hvp_vec=None):
    import torch
    fn, K = twin(model)
    P = {n: torch.tensor(v, requires_grad=True) for n, v in params.items()}
    inp = {n: torch.tensor(v, requires_grad=n in model.wrt) for n, v in inputs.items()}
    outs, loss = fn(P, inp)
    loss = K.t(loss)
    leaves = [P[n] for n in model.params] + [inp[n] for n in model.wrt]
    grads = torch.autograd.grad(loss, leaves, allow_unused=True, create_graph=True) \
        if leaves and loss.requires_grad else [None] * len(leaves)
    return P, inp, outs, loss, leaves, grads, K.margins


def check(model: Model, target: str = "numpy", data_seed: int = 0,
          full: bool = True) -> Outcome:
    """Compile ``model`` and compare it with its PyTorch twin and with finite differences;
    ``full=False``: forward and loss_and_grad only (2 kernels: the cpu target's Numba
    compilation is the cost)."""
    import torch

    import gradc
    from gradc.errors import GradcError
    try:
        m = gradc.compile_string(model.text, name=f"fuzz_model_{model.seed}", target=target,
                                 dtype="f64", wrt=list(model.wrt))
    except GradcError as e:
        return Outcome("finding", "model:rejected", str(e).split("\n", 3)[0][:200])
    except Exception as e:  # noqa: BLE001
        return Outcome("finding", f"model:compile-raw:{type(e).__name__}", short(e))
    rng = np.random.default_rng(data_seed)
    for _ in range(6):
        params, inputs = draw(model, rng)
        try:
            _, _, outs, loss, leaves, grads, margins = _torch_eval(model, params, inputs)
        except Exception as e:  # noqa: BLE001 - the generator wrote a bad twin
            return Outcome("finding", "fuzzer-bug:twin", short(e))
        finite = bool(torch.isfinite(loss)) and all(bool(torch.isfinite(o).all())
                                                    for o in outs.values())
        if finite and (not margins or min(margins) > KINK):
            break
    else:
        return Outcome("skip", "model:kink" if finite else "model:nonfinite",
                       f"min margin {min(margins) if margins else None}")
    problems = []
    gkeys = list(model.params) + list(model.wrt)
    tgrads = {k: (g.detach().numpy(force=True) if g is not None else np.zeros(conc(
        model.params[k] if k in model.params else model.inputs[k][1])))
        for k, g in zip(gkeys, grads)}
    try:
        got_out = m.forward(params, **{k: v for k, v in inputs.items()
                                       if k in m.signature["inputs"]}) if model.outputs else {}
        for k, v in outs.items():
            e = rel(got_out[k], v.detach().numpy(force=True))
            if e > TOL:
                problems.append(f"forward {k}: rel err {e:.2e}")
        got_loss, got_grads = m.loss_and_grad(params, **inputs)
        e = rel(got_loss, float(loss.detach()))
        if e > TOL:
            problems.append(f"loss: gradc {got_loss!r}, torch {float(loss.detach())!r}")
        if not full:
            pass
        elif rel(m.loss(params, **inputs), got_loss, 1e-300) > 1e-12:
            problems.append("loss() differs from loss_and_grad()[0]")
        for k in gkeys:
            e = rel(got_grads[k], tgrads[k])
            if e > TOL:
                problems.append(f"grad {k}: rel err {e:.2e}")
        # vjp and jvp against torch's vjp, on random cotangents/tangents
        if full and model.outputs and leaves:
            crng = np.random.default_rng(data_seed + 1)
            cot = {k: np.array(crng.standard_normal(tuple(v.shape)), order="C")
                   for k, v in outs.items()}
            tan = {k: np.array(crng.standard_normal(tgrads[k].shape), order="C") for k in gkeys}
            s = sum((outs[k] * torch.tensor(cot[k])).sum() for k in outs)
            tv = torch.autograd.grad(s, leaves, allow_unused=True, retain_graph=True) \
                if s.requires_grad else [None] * len(leaves)
            tv = {k: (g.detach().numpy(force=True) if g is not None else np.zeros_like(tgrads[k]))
                  for k, g in zip(gkeys, tv)}
            gv = m.vjp(params, cot, **{k: v for k, v in inputs.items()
                                       if k in m.signature["inputs"]})
            for k in gkeys:
                e = rel(gv[k], tv[k])
                if e > TOL:
                    problems.append(f"vjp {k}: rel err {e:.2e}")
            _, jt = m.jvp(params, tan, **{k: v for k, v in inputs.items()
                                          if k in m.signature["inputs"]})
            lhs = sum(float(np.sum(np.asarray(jt[k]) * cot[k])) for k in outs)
            rhs = sum(float(np.sum(tv[k] * tan[k])) for k in gkeys)
            if abs(lhs - rhs) > 1e-8 * max(1.0, abs(lhs), abs(rhs)):
                problems.append(f"jvp: <c, J t> = {lhs!r}, <J^T c, t> (torch) = {rhs!r}")
        # hvp against torch's double backward
        if full and leaves and any(g is not None and g.requires_grad for g in grads):
            vrng = np.random.default_rng(data_seed + 2)
            vec = {k: np.array(vrng.standard_normal(tgrads[k].shape), order="C") for k in gkeys}
            gv = sum((g * torch.tensor(vec[k])).sum() for k, g in zip(gkeys, grads)
                     if g is not None and g.requires_grad)
            th = torch.autograd.grad(gv, leaves, allow_unused=True)
            th = {k: (h.detach().numpy(force=True) if h is not None else np.zeros_like(tgrads[k]))
                  for k, h in zip(gkeys, th)}
            gh = m.hvp(params, vec, **inputs)
            for k in gkeys:
                e = rel(gh[k], th[k], 1e-6)
                if e > TOL:
                    problems.append(f"hvp {k}: rel err {e:.2e}")
        # central differences of gradc's own loss in random directions
        if full and gkeys:
            frng = np.random.default_rng(data_seed + 3)
            h = 1e-5

            def at(d, step):
                p = {k: np.array(v + step * d[k], order="C") if k in d else v
                     for k, v in params.items()}
                i = {k: np.array(v + step * d[k], order="C") if k in model.wrt else v
                     for k, v in inputs.items()}
                return m.loss(p, **i)
            for _ in range(2):
                d = {k: frng.standard_normal(tgrads[k].shape) for k in gkeys}
                fdv = (at(d, h) - at(d, -h)) / (2 * h)
                adv = sum(float(np.sum(np.asarray(got_grads[k]) * d[k])) for k in gkeys)
                if abs(fdv - adv) > FD_TOL * max(1.0, abs(fdv), abs(adv), abs(got_loss)):
                    problems.append(f"finite differences: {fdv!r} vs <grad, d> = {adv!r}")
    except Exception as e:  # noqa: BLE001
        return Outcome("finding", f"model:call-raw:{type(e).__name__}", short(e))
    if problems:
        return Outcome("finding", "model:mismatch", "; ".join(problems[:4]))
    return Outcome("ok", "model:agrees", f"{len(model.features)} features")
