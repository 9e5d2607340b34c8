"""Model texts for the front-end fuzzer: grammar-aware generation and example mutation.

Every generator is ``gen(rng) -> text`` with ``rng`` a :class:`random.Random`; an input is
named by ``(generator, seed)`` and rebuilt by :func:`make` (``python -m tests.harness.fuzz --repro
text:NAME:SEED`` prints it and its outcome).

* ``grammar``: statements drawn from the grammar (``grammar/gradc.lark``) with names taken
  mostly from what is in scope, so that most texts get past the parser and reach lowering:
  declarations of every kind, layers, fns, expressions with every operator, calls of every
  built-in with keyword arguments, slices, tuples, lists, strings, pipes and compositions;
  a few random tokens make some of them invalid.
* ``mutate``: an example of ``examples/*.grad`` with 1-4 token mutations (deletion,
  duplication, swap of neighbours, numbers replaced by huge, zero, negative, tiny values,
  names replaced by other names of the file, built-ins, layer kinds, keywords, dtypes) and
  line mutations (deleted, duplicated, swapped).
* ``shapes``: the constructs of the issues: argument lists of 60-130 tensors (``l2``,
  ``l1``, ``concat``), fn names that are built-ins or layer kinds, fns defined twice,
  constant expressions as the loss, rebinding (valid and invalid), deep nesting of calls,
  parentheses, unary minus, power chains, fn chains and layer chains, exponential fn
  expansion, huge sizes in shapes, slices, reshape, layers and dims.
"""

from __future__ import annotations

import random
import re
from functools import lru_cache

from ..paths import EXAMPLES

UNARY = ["exp", "log", "log1p", "sqrt", "abs", "sin", "cos", "tan", "tanh", "sigmoid",
         "relu", "softplus", "silu", "gelu", "step", "sign", "leaky_relu", "elu"]
BINARY = ["max", "min"]
REDUCE = ["sum", "mean", "max", "min", "logsumexp"]
SOFT = ["softmax", "log_softmax"]
LOSSES = ["mse", "binary_cross_entropy", "cross_entropy", "hinge", "l1", "l2"]
SHAPE_FNS = ["transpose", "reshape", "concat", "take", "where"]
BUILTINS = sorted(set(UNARY + BINARY + REDUCE + SOFT + LOSSES + SHAPE_FNS))
LAYERS = ["dense", "conv2d", "maxpool2d", "avgpool2d", "layernorm", "embedding", "attention",
          "batchnorm", "dropout", "rnn"]
KEYWORDS = ["model", "dim", "input", "param", "layer", "fn", "output", "loss", "true", "false"]
DTYPES = ["f32", "f64", "i32", "i64"]
INITS = ["zeros", "ones", "glorot_uniform", "he_normal", "constant(0.5)", "normal(0.1)",
         "uniform(-1, 1)", "constant(-30)", "normal(0)", "uniform(1, -1)", "he_normall",
         "constant()", "normal(1, 2, 3)"]
RESERVED = ["params", "lr", "state", "seed", "batch_size", "tangents", "cotangents", "training"]
KWARGS = ["axis", "keepdims", "alpha", "reduction", "margin", "bias", "stride", "pad",
          "kernel", "kernel_size", "padding", "num_heads", "p", "alpa"]
HUGE = ["0", "-0", "0.0", "-1", "1e308", "1e309", "1.8e308", "2147483647", "2147483648",
        "4294967296", "9223372036854775807", "9223372036854775808", "18446744073709551616",
        "1" + "0" * 40, "1" + "0" * 400, "1e-320", "5e-324", "1e-400", ".5", "00", "007",
        "1e", "1.2.3", "-2147483649", "65", "64", "3", "1.5", "0x10", "1_000", "inf", "nan"]
PUNCT = ["(", ")", "[", "]", ",", ":", "=", "~", "->", ">>", "|>", "+", "-", "*", "/", "@",
         "^", "**", "<", "<=", ">", ">=", "==", ".", ".T", "\n", "#", '"', "'", ";", "$",
         "{", "}", "\\", "\t", "\r", "\x00", "é", "=>", "!="]

_TOKEN = re.compile(r"#[^\n]*|\"[^\"\n]*\"|\d+\.\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?"
                    r"|\d+(?:[eE][-+]?\d+)?|[A-Za-z_][A-Za-z0-9_]*|->|>>|\|>|\*\*|<=|>=|=="
                    r"|\n|[ \t]+|.")


# ------------------------------------------------------------------------ grammar-aware
class Scope:
    def __init__(self):
        self.values: list[str] = []
        self.fns: list[tuple[str, int]] = []
        self.layers: list[str] = []
        self.dims: list[str] = ["B", "N", "T"]


def _name(rng: random.Random, scope: Scope | None = None) -> str:
    r = rng.random()
    if scope and scope.values and r < 0.55:
        return rng.choice(scope.values)
    if r < 0.65:
        return rng.choice(BUILTINS + LAYERS + RESERVED + KEYWORDS[:8])
    if r < 0.7:
        return rng.choice(["x", "X", "ReLU", "Relu", "sigmoud", "h1", "_", "__", "lambda",
                           "class", "np", "exec", "d_B", "p_x", "a0", "t_x", "ws", "None"])
    return rng.choice("abcdefghxyzwWHB") + rng.choice(["", "", "1", "2", "_a", "x"])


def _number(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.1:
        return rng.choice(HUGE)
    if r < 0.5:
        return str(rng.randint(0, 5))
    if r < 0.8:
        return f"{rng.uniform(-3, 3):.3g}"
    return rng.choice(["1e-4", "0.5", ".5", "2", "-1", "10", "3.0", "1e3"])


def _shape(rng: random.Random, scope: Scope) -> str:
    if rng.random() < 0.15:
        return ""
    n = rng.choice([0, 1, 1, 2, 2, 2, 3, 4])
    ents = []
    for _ in range(n):
        r = rng.random()
        ents.append(rng.choice(scope.dims) if r < 0.3 else
                    rng.choice(HUGE) if r < 0.35 else str(rng.randint(1, 6)))
    return "[" + ", ".join(ents) + ("," if rng.random() < 0.05 else "") + "]"


def _type(rng: random.Random, scope: Scope) -> str:
    dt = rng.choice(DTYPES + ["f64", "f32", "f33", "float", "F32"] if rng.random() < 0.1
                    else ["f32", "f64", "f64", "i64"])
    return dt + _shape(rng, scope)


def _expr(rng: random.Random, scope: Scope, depth: int = 0) -> str:
    r = rng.random()
    if depth > 4 or r < 0.25:
        r2 = rng.random()
        if r2 < 0.6:
            return _name(rng, scope)
        if r2 < 0.9:
            return _number(rng)
        return rng.choice(['"sum"', '"mean"', "true", "false", "(1, 0)", "[B, -1]", "()"])
    if r < 0.45:
        op = rng.choice(["+", "-", "*", "/", "@", "^", "**", "<", ">", "<=", ">=", "==",
                         "|>", ">>", "+", "*", "@"])
        return f"{_expr(rng, scope, depth + 1)} {op} {_expr(rng, scope, depth + 1)}"
    if r < 0.5:
        return rng.choice(["-", "+", "- -", "-"]) + _expr(rng, scope, depth + 1)
    if r < 0.55:
        return f"({_expr(rng, scope, depth + 1)})"
    if r < 0.62:
        base = _expr(rng, scope, depth + 1)
        subs = []
        for _ in range(rng.choice([1, 1, 2, 3])):
            s = rng.random()
            subs.append(":" if s < 0.3 else str(rng.randint(-3, 4)) if s < 0.6 else
                        f"{rng.randint(0, 3)}:{rng.randint(0, 5)}" if s < 0.85 else
                        rng.choice(["::2", "1:", ":-1", "::-1", "::0", "0:0", "B", "x"]))
        return f"{base}[{', '.join(subs)}]"
    if r < 0.66:
        return f"{_expr(rng, scope, depth + 1)}{rng.choice(['.T', '.W', '.b', '.x'])}"
    # a call
    fn_r = rng.random()
    if fn_r < 0.15 and scope.fns:
        fname, arity = rng.choice(scope.fns)
        n = arity if rng.random() < 0.85 else rng.randint(0, 3)
    elif fn_r < 0.22 and scope.layers:
        fname, n = rng.choice(scope.layers), 1
    else:
        fname = rng.choice(BUILTINS + ["sigmoud", "Relu", "dense", "foo"])
        n = {"where": 3, "concat": rng.randint(1, 4), "l2": rng.randint(1, 3),
             "l1": rng.randint(1, 3), "take": rng.choice([2, 3]), "reshape": 2,
             "transpose": rng.choice([1, 2])}.get(fname, 2 if fname in BINARY + LOSSES else 1)
        if rng.random() < 0.1:
            n = rng.randint(0, 4)
    args = [_expr(rng, scope, depth + 1) for _ in range(n)]
    if fname == "reshape" and len(args) == 2 and rng.random() < 0.7:
        args[1] = "[" + ", ".join(rng.choice(["B", "-1", "2", "3", "4", "6"])
                                  for _ in range(rng.randint(1, 3))) + "]"
    if rng.random() < 0.3:
        k = rng.choice(KWARGS)
        v = {"axis": rng.choice(["0", "1", "-1", "2", "(0, 1)", "(1, -1)", "5", "1.5"]),
             "keepdims": rng.choice(["true", "false", "1"]),
             "reduction": rng.choice(['"sum"', '"mean"', '"avg"', "sum"])}.get(k, _number(rng))
        args.append(f"{k}={v}")
    return f"{fname}({', '.join(args)})"


def _layer_call(rng: random.Random, scope: Scope) -> str:
    kind = rng.choice(LAYERS + ["dense", "dense", "Dense", "linear"])
    a, b = rng.choice(["2", "3", "4", "8"]), rng.choice(["2", "3", "4"])
    if rng.random() < 0.05:
        a = rng.choice(HUGE)
    body = {"dense": f"{a} -> {b}", "conv2d": f"{a} -> {b}, 3" + rng.choice(["", ", pad=1",
                                                                               ", kernel=3",
                                                                               ", stride=0"]),
            "maxpool2d": rng.choice(["2", "kernel_size=2", "2, stride=1", "0"]),
            "avgpool2d": rng.choice(["2", "3"]), "layernorm": a, "embedding": f"{a} -> {b}",
            "attention": rng.choice([f"{a}, 2", f"{a}, num_heads=2", "4, 3"]),
            "batchnorm": a, "dropout": rng.choice(["0", "0.5", "1", "1.5", "-0.1"]),
            "rnn": f"{a} -> {b}"}.get(kind, f"{a} -> {b}")
    return f"{kind}({body})"


def _statement(rng: random.Random, scope: Scope) -> str:
    r = rng.random()
    if r < 0.04:
        return f"model {_name(rng)}"
    if r < 0.08:
        d = rng.choice(["K", "n", "M", "B"])
        scope.dims.append(d)
        return f"dim {d}" + (f" = {_number(rng)}" if rng.random() < 0.5 else "")
    if r < 0.25:
        n = _name(rng) if rng.random() < 0.3 else rng.choice("xyzuvk") + str(rng.randint(0, 2))
        scope.values.append(n)
        return f"input {n} : {_type(rng, scope)}"
    if r < 0.4:
        n = _name(rng) if rng.random() < 0.3 else rng.choice("WbVc") + str(rng.randint(0, 2))
        scope.values.append(n)
        init = f" ~ {rng.choice(INITS)}" if rng.random() < 0.5 else ""
        return f"param {n} : {_type(rng, scope)}{init}"
    if r < 0.48:
        n = rng.choice(["fc", "l1", "conv", "net", "ln", "emb", "dense", "relu"]) + \
            rng.choice(["", "1", "2"])
        if rng.random() < 0.3 and scope.layers:
            body = " >> ".join(rng.choice(scope.layers + ["relu", "tanh", "sigmoid"])
                               for _ in range(rng.randint(2, 3)))
        else:
            body = _layer_call(rng, scope)
        scope.layers.append(n)
        return f"layer {n} = {body}"
    if r < 0.56:
        n = rng.choice(["f", "g", "swish", "block"] + BUILTINS[:3] + LAYERS[:1]) if \
            rng.random() < 0.3 else rng.choice(["f", "g", "h", "swish"]) + str(rng.randint(0, 3))
        params = rng.sample(["z", "a", "b", "x"], rng.randint(0, 3))
        inner = Scope()
        inner.values, inner.fns, inner.layers = params + scope.values[:2], scope.fns, scope.layers
        scope.fns.append((n, len(params)))
        return f"fn {n}({', '.join(params)}) = {_expr(rng, inner)}"
    if r < 0.75:
        n = rng.choice(scope.values) if scope.values and rng.random() < 0.25 else \
            rng.choice(["h", "z", "a", "q", "s"]) + rng.choice(["", "1", "2"])
        stmt = f"{n} = {_expr(rng, scope)}"
        scope.values.append(n)
        return stmt
    if r < 0.87:
        n = rng.choice(["out", "o", "logits", "y_hat"]) + rng.choice(["", "2"])
        if rng.random() < 0.2 and scope.values:
            return f"output {rng.choice(scope.values)}"
        return f"output {n} = {_expr(rng, scope)}"
    return f"loss = {_expr(rng, scope)}"


def _noise(rng: random.Random, text: str) -> str:
    """A random token inserted or a character deleted somewhere."""
    if not text:
        return rng.choice(PUNCT)
    i = rng.randrange(len(text) + 1)
    if rng.random() < 0.5:
        return text[:i] + rng.choice(PUNCT + [" ", "x", "0"]) + text[i:]
    return text[:i] + text[i + 1:]


def gen_grammar(rng: random.Random) -> str:
    scope = Scope()
    lines = []
    if rng.random() < 0.7:  # a typical head, so that most bodies have names to use
        b = rng.choice(["B", "N", "3"])
        lines += [f"input x : f64[{b}, 4]", "input y : i64[" + b + "]",
                  "param W : f64[4, 3]", "param b : f64[3]"]
        scope.values += ["x", "y", "W", "b"]
    for _ in range(rng.randint(1, 9)):
        lines.append(_statement(rng, scope))
    if rng.random() < 0.5:
        lines.append("loss = " + _expr(rng, scope))
    text = "\n".join(lines) + rng.choice(["\n", "", "\n\n", "  # end\n"])
    for _ in range(rng.choice([0, 0, 0, 1, 2])):
        text = _noise(rng, text)
    return text


# ------------------------------------------------------------------------------- mutation
@lru_cache(maxsize=None)
def examples() -> tuple[tuple[str, str], ...]:
    return tuple((p.name, p.read_text()) for p in sorted(EXAMPLES.glob("*.grad")))


def _mutate_tokens(rng: random.Random, toks: list[str], names: list[str]) -> None:
    real = [i for i, t in enumerate(toks) if not t.isspace() or t == "\n"]
    if not real:
        return
    i = rng.choice(real)
    r = rng.random()
    if r < 0.18:
        del toks[i]
    elif r < 0.3:
        toks.insert(i, toks[i])
    elif r < 0.42:
        j = real[min(real.index(i) + 1, len(real) - 1)]
        toks[i], toks[j] = toks[j], toks[i]
    elif r < 0.62:
        nums = [k for k in real if toks[k][:1].isdigit() or toks[k][:1] == "."]
        k = rng.choice(nums) if nums else i
        toks[k] = rng.choice(HUGE)
    elif r < 0.82:
        ids = [k for k in real if re.match(r"[A-Za-z_]", toks[k])]
        k = rng.choice(ids) if ids else i
        pool = rng.choice([names, BUILTINS, LAYERS, KEYWORDS, DTYPES, RESERVED])
        toks[k] = rng.choice(pool)
    elif r < 0.9:
        toks.insert(i, rng.choice(PUNCT))
    else:  # an operand wrapped in a call or brackets
        if re.match(r"[A-Za-z_0-9]", toks[i]):
            toks[i] = rng.choice([f"{rng.choice(UNARY)}({toks[i]})", f"({toks[i]})",
                                  f"-{toks[i]}", f"{toks[i]}[0]", f"{toks[i]}.T",
                                  f"sum({toks[i]}, axis=1)", f"{toks[i]} ^ 2"])


def gen_mutate(rng: random.Random) -> str:
    _, text = rng.choice(examples())
    if rng.random() < 0.3:  # line mutations
        lines = text.split("\n")
        for _ in range(rng.randint(1, 3)):
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            r = rng.random()
            if r < 0.4:
                del lines[i]
            elif r < 0.7:
                lines.insert(j, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            if not lines:
                lines = [""]
        text = "\n".join(lines)
    toks = _TOKEN.findall(text)
    names = sorted({t for t in toks if re.match(r"[A-Za-z_]\w*$", t)})
    for _ in range(rng.randint(1, 4)):
        _mutate_tokens(rng, toks, names)
    return "".join(toks)


# ---------------------------------------------------------------------- the issues' shapes
HEAD = "input x : f64[B, 3]\ninput y : i64[B]\nparam W : f64[3, 3]\nparam b : f64[3]\n"


def gen_shapes(rng: random.Random, deep: int = 300) -> str:
    """One of the constructs the issues found broken, with random sizes and names."""
    kind = rng.randrange(16)
    if kind == 0:  # long argument lists
        n = rng.randint(60, 130)
        fn = rng.choice(["l2", "l1", "concat", "concat", "mse", "max", "sum", "where"])
        arg = rng.choice(["x", "W", "b", "x * 2", "W.T"])
        kw = rng.choice(["", "", ", axis=0", ", axis=-1", ", axis=5"]) if fn == "concat" else ""
        stmt = f"{fn}({', '.join([arg] * n)}{kw})"
        return HEAD + (f"loss = {stmt}\n" if fn.startswith("l") or rng.random() < 0.5 else
                       f"output o = {stmt}\nloss = sum(o)\n")
    if kind == 1:  # a fn named like a built-in or a layer kind
        name = rng.choice(BUILTINS + LAYERS + KEYWORDS[:8] + RESERVED)
        params = rng.choice(["", "z", "z, w", "a, b, c"])
        body = rng.choice(["z", "max(z, 0)", "x", "1", "z * sigmoid(z)", "relu(z)"])
        use = rng.choice(["", f"output o = {name}(x)\n", "loss = sum(x)\n"])
        return HEAD + f"fn {name}({params}) = {body}\n" + use
    if kind == 2:  # a fn defined twice (or a fn clashing with another name)
        name = rng.choice(["f", "F", "g", "swish", "W", "x", "h"])
        p1, p2 = rng.choice(["", "z"]), rng.choice(["", "z", "a, b"])
        b1, b2 = rng.choice(["1", "z", "x", "R"]), rng.choice(["2", "z * 2", "y", "R"])
        extra = rng.choice(["", "h = x\n", "output o = f(x)\n", f"loss = sum({name}(x))\n"])
        return HEAD + extra + f"fn {name}({p1}) = {b1}\nfn {name}({p2}) = {b2}\n"
    if kind == 3:  # constant expressions as the loss
        const = rng.choice(["1", "0", "-1", "1e308", "1e309", "2 * 3", "sum(1)", "B",
                            "exp(1000)", "1 / 0", "log(0)", "0 * sum(W)", "sum(W) - sum(W)",
                            "mean(2)", "max(1, 2)", "step(1)", "(1, 2)", "[1, 2]", '"sum"',
                            "true", "l2(1)", "sqrt(-1)", "B / B"])
        head = rng.choice(["", "param w : f64[2]\n", HEAD])
        tail = rng.choice(["", "output o = 1\n", f"output o = {const}\n"])
        return head + f"loss = {const}\n" + tail
    if kind == 4:  # rebinding
        lines = [HEAD, "h = x @ W + b\n"]
        for _ in range(rng.randint(1, 5)):
            target = rng.choice(["h", "h", "h", "x", "W", "y", "o", "loss", "relu", "sum", "B"])
            lines.append(f"{target} = {rng.choice(['relu(h @ W)', 'h + 1', 'h', 'y', 'x'])}\n")
        lines.append(rng.choice(["output o = h\n", "output h\n", "loss = sum(h)\n",
                                 "output o = h\noutput o = h\n", "loss = mean(h)\nh = h\n"]))
        return "".join(lines)
    if kind == 5:  # deeply nested calls
        n = rng.randint(50, deep)
        fn = rng.choice(["tanh", "sigmoid", "relu", "-", "(", "sum", "exp", "f"])
        if fn == "(":
            body = "(" * n + "x" + ")" * n
        elif fn == "-":
            body = "-" * n + "x"
        elif fn == "f":
            return HEAD + "fn f(z) = tanh(z)\noutput o = " + "f(" * n + "x" + ")" * n + "\n"
        else:
            body = f"{fn}(" * n + "x" + ")" * n
        return HEAD + f"output o = {body}\n"
    if kind == 6:  # long chains of statements
        n = rng.randint(50, deep)
        lines = [HEAD, "h0 = x\n"]
        op = rng.choice(["h{i} @ W", "tanh(h{i}) + b", "h{i} * 2", "relu(h{i} @ W + b)"])
        for i in range(n):
            lines.append(f"h{i + 1} = {op.format(i=i)}\n")
        lines.append(f"loss = sum(h{n})\n")
        return "".join(lines)
    if kind == 7:  # fn chains
        n = rng.randint(20, deep)
        lines = [HEAD, "fn f0(z) = tanh(z)\n"]
        lines += [f"fn f{i}(z) = f{i - 1}(z) * 2\n" for i in range(1, n)]
        return "".join(lines) + f"loss = sum(f{n - 1}(x))\n"
    if kind == 8:  # exponential fn expansion
        n = rng.randint(8, 26)
        k = rng.choice([2, 2, 3])
        lines = [HEAD, "fn f0(z) = tanh(z)\n"]
        lines += [f"fn f{i}(z) = " + " + ".join([f"f{i - 1}(z)"] * k) + "\n" for i in range(1, n)]
        return "".join(lines) + f"loss = sum(f{n - 1}(x))\n"
    if kind == 9:  # huge or zero sizes
        v = rng.choice(HUGE + ["0", "-1", "0"])
        templates = [f"input x : f64[B, {v}]\nloss = sum(x)\n",
                     f"param W : f64[{v}, {v}]\nloss = sum(W)\n",
                     f"dim K = {v}\ninput x : f64[K]\noutput o = x\n",
                     f"input x : f64[B, 4]\noutput o = x[:, 0:{v}]\n",
                     f"input x : f64[B, 4]\noutput o = x[:, {v}]\n",
                     f"input x : f64[B, 4]\noutput o = x[:, ::{v}]\n",
                     f"input x : f64[B, 4]\noutput o = reshape(x, [B, {v}])\n",
                     f"input x : f64[B, 4]\nlayer d = dense(4 -> {v})\noutput o = d(x)\n",
                     f"input x : f64[B, 1, 8, 8]\nlayer c = conv2d(1 -> 2, {v})\noutput o = c(x)\n",
                     f"input x : f64[B, 1, 8, 8]\nlayer c = maxpool2d({v})\noutput o = c(x)\n",
                     f"input x : f64[B, 4]\nlayer d = dropout({v})\noutput o = d(x)\n",
                     f"input x : i64[B, 4]\nlayer e = embedding({v} -> 3)\noutput o = e(x)\n",
                     f"input x : f64[B, 4]\noutput o = sum(x, axis={v})\n",
                     f"input x : f64[B, 4]\noutput o = leaky_relu(x, alpha={v})\n",
                     f"param w : f64[2] ~ constant({v})\nloss = sum(w)\n",
                     f"input x : f64[B, 4]\noutput o = x ^ {v}\n",
                     f"input x : f64[{v}, {v}, {v}]\noutput o = x\n",
                     f"input x : f64[B, 4, 4]\noutput o = transpose(x, (0, {v}, 1))\n",
                     f"input x : f64[B, 4]\ninput i : i64[B]\noutput o = take(x, i, {v})\n"]
        return rng.choice(templates)
    if kind == 10:  # matmul shapes
        a = rng.choice(["[3]", "[B, 3]", "[2, 3]", "[B, 2, 3]", "[2, 1, 2, 3]", "[B, 1, 2, 3]",
                        "", "[3, 0]"])
        c = rng.choice(["[3]", "[3, 4]", "[B, 3, 4]", "[5, 3, 4]", "[B, 5, 3, 4]", "[4, 4]", ""])
        return f"input a : f64{a}\ninput c : f64{c}\noutput o = a @ c\nloss = sum(o)\n"
    if kind == 11:  # keyword spellings of layer arguments
        call = rng.choice(["conv2d(1 -> 2, kernel=3, pad=1)", "conv2d(1 -> 2, kernel_size=3, "
                           "padding=1)", "conv2d(1 -> 2, 3, kernel=3)", "conv2d(1 -> 2, kernel=3, "
                           "kernel_size=3)", "maxpool2d(kernel_size=2)", "maxpool2d(2, k=2)",
                           "dense(3 -> 2, bias=false)", "dense(in=3, out=2)", "dense(3, 2)",
                           "attention(3, num_heads=1)", "attention(3, heads=3, num_heads=3)",
                           "layernorm(n=3)", "dropout(p=0.5)", "rnn(3 -> 2, bias=true)"])
        inp = "f64[B, 1, 8, 8]" if "pool" in call or "conv" in call else \
            "f64[B, 4, 3]" if "attention" in call or "rnn" in call else "f64[B, 3]"
        return f"input x : {inp}\nlayer l = {call}\noutput o = l(x)\nloss = sum(o)\n"
    if kind == 12:  # reserved and odd names
        n = rng.choice(RESERVED + ["lambda", "class", "np", "None", "d_B", "p_x", "t_x", "ws",
                                   "inputs", "losses", "_", "nan", "inf", "a0"])
        where = rng.choice(["input {n} : f64[B, 3]\noutput o = {n}\n",
                            "param {n} : f64[3]\nloss = sum({n})\n",
                            "input x : f64[B, 3]\n{n} = x\noutput o = {n}\n",
                            "model {n}\ninput x : f64[3]\noutput o = x\n",
                            "input x : f64[3]\nfn {n}(z) = z\noutput o = {n}(x)\n",
                            "input x : f64[3]\nlayer {n} = dense(3 -> 2)\noutput o = {n}(x)\n",
                            "dim {n}\ninput x : f64[{n}]\noutput o = x\n"])
        return where.format(n=n)
    if kind == 13:  # pipes and compositions
        parts = rng.sample(["relu", "tanh", "fc", "f", "sum", "softmax", "x", "3", "fc.W",
                            "f(2)", "dense(3 -> 3)"], rng.randint(1, 4))
        op = rng.choice([">>", "|>"])
        return ("input x : f64[B, 3]\nlayer fc = dense(3 -> 3)\nfn f(z) = z * 2\n"
                f"output o = x |> {f' {op} '.join(parts)}\nloss = sum(o)\n")
    if kind == 14:  # power chains and unary minus
        n = rng.randint(2, 40)
        return HEAD + "output o = " + rng.choice(["-", "- ", "+", ""]) + \
            " ^ ".join(["x"] + [rng.choice(["2", "0.5", "-1", "x", "0", "b", "-0.7"])
                                for _ in range(n)]) + "\nloss = sum(o)\n"
    # a statement split across lines, unbalanced brackets, odd whitespace
    body = rng.choice(["relu(x @ W\n  + b)", "relu(x @ W\n+ b", "[x,\nx]", "(x\n)\nloss = 1",
                       "x @ W +\n b", "x\r\n", "x\t@\tW", "sum(x,\n axis=1,\n)", "(((x)))\n)))",
                       "x # comment ( \n"])
    return HEAD + f"output o = {body}\n"


def gen_model_mutate(rng: random.Random) -> str:
    """A random well-typed model of :mod:`tests.harness.fuzz.models` with 1-3 token mutations: texts
    that reach deep into lowering (every built-in, shapes, fns) before they break."""
    from .models import generate
    text = generate(rng.randrange(10 ** 9)).text
    toks = _TOKEN.findall(text)
    names = sorted({t for t in toks if re.match(r"[A-Za-z_]\w*$", t)})
    for _ in range(rng.randint(0, 3)):
        _mutate_tokens(rng, toks, names)
    return "".join(toks)


GENERATORS = {"grammar": gen_grammar, "mutate": gen_mutate, "shapes": gen_shapes,
              "model-mutate": gen_model_mutate}
#: the mix of a campaign: generator -> weight
WEIGHTS = {"grammar": 0.35, "mutate": 0.35, "shapes": 0.15, "model-mutate": 0.15}


def make(generator: str, seed: int, deep: int = 300) -> str:
    rng = random.Random(f"{generator}:{seed}")
    if generator == "shapes":
        return gen_shapes(rng, deep)
    return GENERATORS[generator](rng)


def schedule(n: int, seed0: int = 0) -> list[tuple[str, int]]:
    """``n`` inputs (generator, seed) in the campaign's mix, deterministic in ``seed0``."""
    rng = random.Random(seed0)
    names, weights = list(WEIGHTS), list(WEIGHTS.values())
    return [(rng.choices(names, weights)[0], seed0 * 1_000_003 + i) for i in range(n)]
