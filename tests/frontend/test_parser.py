"""Tests of gradc.frontend.parser: ASTs of every construct, spans, syntax-error goldens, fuzz."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradc.errors import ErrorGroup
from gradc.frontend import ast
from gradc.frontend.parser import grammar_text, parse, split_statements
from gradc.source import Source, Span

GOLDEN = Path(__file__).parent / "golden" / "syntax"
S = Span(0, 0, 0, 0)  # placeholder span of hand-built trees; strip() drops spans


def strip(node):
    """Return ``node`` as nested tuples without any span, for comparing trees."""
    if dataclasses.is_dataclass(node):
        return (type(node).__name__,) + tuple(
            (f.name, strip(getattr(node, f.name))) for f in dataclasses.fields(node)
            if f.name not in ("span", "name_span"))
    if isinstance(node, tuple):
        return tuple(strip(x) for x in node)
    return node


def stmts(text: str) -> tuple[ast.Stmt, ...]:
    return parse(Source(text, "t.grad")).stmts


def expr(text: str) -> ast.Expr:
    (stmt,) = stmts(f"v = {text}\n")
    return stmt.value


def errors(text: str) -> list:
    with pytest.raises(ErrorGroup) as info:
        parse(Source(text, "t.grad"))
    return info.value.errors


# ----------------------------------------------------------------------------- builders

def N(name):
    return ast.Name(S, name)


def Int(v):
    return ast.Num(S, float(v), True)


def Flt(v):
    return ast.Num(S, float(v), False)


def B(op, a, b):
    return ast.BinOp(S, op, a, b)


def U(op, a):
    return ast.UnaryOp(S, op, a)


def C(f, *args, **kw):
    func = N(f) if isinstance(f, str) else f
    return ast.Call(S, func, tuple(args), tuple(ast.Keyword(k, v, S) for k, v in kw.items()))


def T(dtype, *dims):
    shape = tuple(ast.DimRef(d, S) for d in dims) if dims else None
    return ast.TypeExpr(dtype, shape, S)


def same(a, b) -> bool:
    return strip(a) == strip(b)


# ----------------------------------------------------------------------------- statements

def test_every_statement_kind():
    got = stmts(
        "model mlp\n"
        "dim B\n"
        "dim H = 100\n"
        "input x : f32[B, 3072]\n"
        "input t : f64\n"
        "param W : f32[3072, H] ~ he_normal\n"
        "param b : i32[3]\n"
        "layer fc = dense(3072 -> 100)\n"
        "fn sq(a, b) = a * b\n"
        "h = x @ W\n"
        "output h\n"
        "output y = h + 1\n"
        "loss = sum(y)\n")
    want = (
        ast.ModelDecl(S, "mlp", S),
        ast.DimDecl(S, "B", S, None),
        ast.DimDecl(S, "H", S, 100),
        ast.InputDecl(S, "x", S, T("f32", "B", 3072)),
        ast.InputDecl(S, "t", S, T("f64")),
        ast.ParamDecl(S, "W", S, T("f32", 3072, "H"), N("he_normal")),
        ast.ParamDecl(S, "b", S, T("i32", 3), None),
        ast.LayerDecl(S, "fc", S, C("dense", ast.Arrow(S, Int(3072), Int(100)))),
        ast.FnDecl(S, "sq", S, (N("a"), N("b")), B("*", N("a"), N("b"))),
        ast.Assign(S, "h", S, B("@", N("x"), N("W"))),
        ast.OutputDecl(S, "h", S, None),
        ast.OutputDecl(S, "y", S, B("+", N("h"), Int(1))),
        ast.LossDecl(S, C("sum", N("y"))),
    )
    assert same(got, want)


@pytest.mark.parametrize("init, want", [
    ("zeros", N("zeros")),
    ("constant(0.1)", C("constant", Flt(0.1))),
    ("normal(0.01)", C("normal", Flt(0.01))),
    ("uniform(-1, 1)", C("uniform", Int(-1), Int(1))),
    ("uniform(-0.5, +0.5)", C("uniform", Flt(-0.5), U("+", Flt(0.5)))),
])
def test_param_inits(init, want):
    (p,) = stmts(f"param W : f32[3, 4] ~ {init}")
    assert same(p.init, want)


def test_keywords_only_at_statement_start():
    got = stmts("loss = losses + inputs\nlosses = 1\ninputs = model2 * dims\n"
                "model2 = loss\noutput loss\nx = input + param + fn + layer + output + dim\n"
                "fnx = 1\nlayer2 = 1\noutput_1 = 2\n")
    assert isinstance(got[0], ast.LossDecl)
    assert same(got[0].value, B("+", N("losses"), N("inputs")))
    assert [type(s).__name__ for s in got[1:]] == \
        ["Assign", "Assign", "Assign", "OutputDecl", "Assign", "Assign", "Assign", "Assign"]
    assert [s.name for s in got[1:]] == \
        ["losses", "inputs", "model2", "loss", "x", "fnx", "layer2", "output_1"]
    assert same(got[3].value, N("loss"))
    assert same(got[5].value.right, N("dim"))


# ----------------------------------------------------------------------------- expressions

@pytest.mark.parametrize("text, want", [
    ("a + b * c", B("+", N("a"), B("*", N("b"), N("c")))),
    ("a * b + c", B("+", B("*", N("a"), N("b")), N("c"))),
    ("a - b - c", B("-", B("-", N("a"), N("b")), N("c"))),
    ("a / b * c", B("*", B("/", N("a"), N("b")), N("c"))),
    ("a @ b + c", B("+", B("@", N("a"), N("b")), N("c"))),
    ("-x^2", U("-", B("^", N("x"), Int(2)))),
    ("-x ** 2", U("-", B("^", N("x"), Int(2)))),
    ("x^y^z", B("^", N("x"), B("^", N("y"), N("z")))),
    ("x ** -1", B("^", N("x"), Int(-1))),
    ("x^-y", B("^", N("x"), U("-", N("y")))),
    ("-2^2", U("-", B("^", Int(2), Int(2)))),
    ("2 * -x", B("*", Int(2), U("-", N("x")))),
    ("--x", U("-", U("-", N("x")))),
    ("+x", U("+", N("x"))),
    ("(a + b) * c", B("*", B("+", N("a"), N("b")), N("c"))),
    ("f(x)^2", B("^", C("f", N("x")), Int(2))),
    ("-a.T", U("-", ast.Attr(S, N("a"), "T"))),
    ("a < b + c", B("<", N("a"), B("+", N("b"), N("c")))),
    ("a <= b", B("<=", N("a"), N("b"))),
    ("a > b", B(">", N("a"), N("b"))),
    ("a >= b", B(">=", N("a"), N("b"))),
    ("a == b * 2", B("==", N("a"), B("*", N("b"), Int(2)))),
    ("x |> f", ast.Pipe(S, N("x"), N("f"))),
    ("x |> f |> g(1)", ast.Pipe(S, ast.Pipe(S, N("x"), N("f")), C("g", Int(1)))),
    ("x |> f >> g", ast.Pipe(S, N("x"), ast.Compose(S, (N("f"), N("g"))))),
    ("f >> relu >> g >> h", ast.Compose(S, (N("f"), N("relu"), N("g"), N("h")))),
    ("x + 1 |> f", ast.Pipe(S, B("+", N("x"), Int(1)), N("f"))),
    ("a < b >> c", ast.Compose(S, (B("<", N("a"), N("b")), N("c")))),
])
def test_precedence(text, want):
    assert same(expr(text), want)


@pytest.mark.parametrize("text, value, is_int", [
    ("3", 3.0, True), ("3072", 3072.0, True), ("1e-4", 1e-4, False), ("0.5", 0.5, False),
    (".5", 0.5, False), ("2.", 2.0, False), ("1E3", 1000.0, False), ("2.5e+2", 250.0, False),
    ("-1", -1.0, True), ("-0.25", -0.25, False),
])
def test_numbers(text, value, is_int):
    assert same(expr(text), ast.Num(S, value, is_int))


def test_atoms():
    assert same(expr('"sum"'), ast.Str(S, "sum"))
    assert same(expr("true"), ast.Bool(S, True))
    assert same(expr("false"), ast.Bool(S, False))
    assert same(expr("trueish"), N("trueish"))
    assert same(expr("(0, 1)"), ast.TupleLit(S, (Int(0), Int(1))))
    assert same(expr("(0,)"), ast.TupleLit(S, (Int(0),)))
    assert same(expr("(0)"), Int(0))
    assert same(expr("[B, -1]"), ast.ListLit(S, (N("B"), Int(-1))))
    assert same(expr("[]"), ast.ListLit(S, ()))
    assert same(expr("[1, 2,]"), ast.ListLit(S, (Int(1), Int(2))))


def test_calls_keywords_and_arrows():
    assert same(expr("sum(h, axis=1)"), C("sum", N("h"), axis=Int(1)))
    assert same(expr('cross_entropy(z, y, reduction="sum")'),
                C("cross_entropy", N("z"), N("y"), reduction=ast.Str(S, "sum")))
    assert same(expr("sum(h, axis=(0, 1), keepdims=true)"),
                C("sum", N("h"), axis=ast.TupleLit(S, (Int(0), Int(1))),
                  keepdims=ast.Bool(S, True)))
    assert same(expr("conv2d(3 -> 16, 3, stride=1)"),
                C("conv2d", ast.Arrow(S, Int(3), Int(16)), Int(3), stride=Int(1)))
    assert same(expr("dense(3072 -> 100, bias=false)"),
                C("dense", ast.Arrow(S, Int(3072), Int(100)), bias=ast.Bool(S, False)))
    assert same(expr("f()"), C("f"))
    assert same(expr("f(a, b,)"), C("f", N("a"), N("b")))
    assert same(expr("fc1.W"), ast.Attr(S, N("fc1"), "W"))
    assert same(expr("f(x)(y)"), C(C("f", N("x")), N("y")))
    assert same(expr("leaky_relu(z, alpha=0.1)"), C("leaky_relu", N("z"), alpha=Flt(0.1)))


def test_indexing_and_slices():
    def sl(a=None, b=None, c=None):
        return ast.Slice(S, a, b, c)

    got = expr("a[i, 0:3, :, ::2, 1:, :-1, 1:2:3]")
    want = ast.Index(S, N("a"), (N("i"), sl(Int(0), Int(3)), sl(), sl(None, None, Int(2)),
                                 sl(Int(1)), sl(None, Int(-1)), sl(Int(1), Int(2), Int(3))))
    assert same(got, want)
    assert same(expr("x.T[0]"), ast.Index(S, ast.Attr(S, N("x"), "T"), (Int(0),)))
    assert same(expr("a[0][1]"), ast.Index(S, ast.Index(S, N("a"), (Int(0),)), (Int(1),)))


def test_layout_comments_blank_lines_continuations():
    text = ("# header\n\n   \nmodel m   # trailing\n"
            "y = f(a,    # first argument\n"
            "      b,\n"
            "\n"
            "      c)\n"
            "z = [1,\n  2]  # end\n"
            "w = 1")  # no trailing newline
    got = stmts(text)
    assert [type(s).__name__ for s in got] == ["ModelDecl", "Assign", "Assign", "Assign"]
    assert same(got[1].value, C("f", N("a"), N("b"), N("c")))
    assert got[1].span == Span(5, 1, 8, 9)
    assert same(got[3].value, Int(1))
    assert stmts("") == () and stmts("# only a comment") == () and stmts("\n\n") == ()
    assert same(stmts("model m\r\nx = 1\r\n"), stmts("model m\nx = 1\n"))


def test_split_statements():
    assert split_statements("a = 1\nb = f(\n  2)\nc = 3") == [
        (1, "a = 1"), (2, "b = f(\n  2)"), (4, "c = 3")]
    # an unclosed bracket ends where the next statement starts in column 1
    assert split_statements("a = f(\nb = 2\n") == [(1, "a = f("), (2, "b = 2"), (3, "")]
    assert split_statements('s = ")" # (\n') == [(1, 's = ")" # ('), (2, "")]


SPEC_MLP = """\
# examples/mlp.grad — the two-layer CIFAR-10 network from the lecture notes
model mlp

input  x : f32[B, 3072]         # B is a symbolic dimension, bound at call time
input  y : i64[B]               # integer inputs are labels: never differentiated

param  W1 : f32[3072, 100] ~ he_normal
param  b1 : f32[100]       ~ zeros
param  W2 : f32[100, 10]   ~ he_normal
param  b2 : f32[10]        ~ zeros

h      = relu(x @ W1 + b1)
output logits = h @ W2 + b2
loss   = cross_entropy(logits, y) + 1e-4 * (sum(W1 ^ 2) + sum(W2 ^ 2))
"""

SPEC_LAYERS = """\
model mlp
input x : f32[B, 3072]
input y : i64[B]

layer fc1 = dense(3072 -> 100)        # creates params fc1.W : f32[3072, 100], fc1.b : f32[100]
layer fc2 = dense(100 -> 10)
layer net = fc1 >> relu >> fc2        # composition, applied left to right

output logits = x |> net              # same as net(x), same as fc2(relu(fc1(x)))
loss = cross_entropy(logits, y)
"""


def test_spec_example_mlp():
    got = stmts(SPEC_MLP)
    want = (
        ast.ModelDecl(S, "mlp", S),
        ast.InputDecl(S, "x", S, T("f32", "B", 3072)),
        ast.InputDecl(S, "y", S, T("i64", "B")),
        ast.ParamDecl(S, "W1", S, T("f32", 3072, 100), N("he_normal")),
        ast.ParamDecl(S, "b1", S, T("f32", 100), N("zeros")),
        ast.ParamDecl(S, "W2", S, T("f32", 100, 10), N("he_normal")),
        ast.ParamDecl(S, "b2", S, T("f32", 10), N("zeros")),
        ast.Assign(S, "h", S, C("relu", B("+", B("@", N("x"), N("W1")), N("b1")))),
        ast.OutputDecl(S, "logits", S, B("+", B("@", N("h"), N("W2")), N("b2"))),
        ast.LossDecl(S, B("+", C("cross_entropy", N("logits"), N("y")),
                          B("*", Flt(1e-4), B("+", C("sum", B("^", N("W1"), Int(2))),
                                                 C("sum", B("^", N("W2"), Int(2))))))),
    )
    assert same(got, want)


def test_spec_example_layers():
    got = stmts(SPEC_LAYERS)
    want = (
        ast.ModelDecl(S, "mlp", S),
        ast.InputDecl(S, "x", S, T("f32", "B", 3072)),
        ast.InputDecl(S, "y", S, T("i64", "B")),
        ast.LayerDecl(S, "fc1", S, C("dense", ast.Arrow(S, Int(3072), Int(100)))),
        ast.LayerDecl(S, "fc2", S, C("dense", ast.Arrow(S, Int(100), Int(10)))),
        ast.LayerDecl(S, "net", S, ast.Compose(S, (N("fc1"), N("relu"), N("fc2")))),
        ast.OutputDecl(S, "logits", S, ast.Pipe(S, N("x"), N("net"))),
        ast.LossDecl(S, C("cross_entropy", N("logits"), N("y"))),
    )
    assert same(got, want)


def test_spec_user_functions():
    got = stmts("fn swish(z) = z * sigmoid(z)\n"
                "fn gelu_tanh(z) = 0.5 * z * (1 + tanh(0.7978845608 * (z + 0.044715 * z ^ 3)))\n"
                "fn none() = 1\n")
    assert same(got[0].body, B("*", N("z"), C("sigmoid", N("z"))))
    inner = B("*", Flt(0.7978845608), B("+", N("z"), B("*", Flt(0.044715), B("^", N("z"), Int(3)))))
    assert same(got[1].body, B("*", B("*", Flt(0.5), N("z")), B("+", Int(1), C("tanh", inner))))
    assert got[2].params == ()


# ----------------------------------------------------------------------------- spans

def test_spans():
    model, inp, param, h, out = stmts(
        "model mlp\n"
        "input  x : f32[B, 3072]\n"
        "param W : f32[3, 4] ~ normal(0.01)\n"
        "h = relu(x @ W1 + b1)\n"
        "output logits = h |> f(1, k=2)\n")
    assert model.span == Span(1, 1, 1, 10) and model.name_span == Span(1, 7, 1, 10)
    assert inp.name_span == Span(2, 8, 2, 9)
    assert inp.type.span == Span(2, 12, 2, 24)
    assert inp.type.shape[1].span == Span(2, 19, 2, 23)
    assert param.init.span == Span(3, 23, 3, 35)
    assert h.span == Span(4, 1, 4, 22) and h.name_span == Span(4, 1, 4, 2)
    call = h.value
    assert call.span == Span(4, 5, 4, 22)
    assert call.func.span == Span(4, 5, 4, 9)
    add = call.args[0]
    assert add.span == Span(4, 10, 4, 21)
    assert add.left.span == Span(4, 10, 4, 16)
    assert out.name_span == Span(5, 8, 5, 14)
    pipe = out.value
    assert pipe.span == Span(5, 17, 5, 31)
    assert pipe.func.kwargs[0].span == Span(5, 27, 5, 30)
    (fn,) = stmts("\n\nfn f(a, bb) = -1")
    assert fn.span == Span(3, 1, 3, 17)
    assert [p.span for p in fn.params] == [Span(3, 6, 3, 7), Span(3, 9, 3, 11)]
    assert fn.body.span == Span(3, 15, 3, 17)


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("name", sorted(p.stem for p in GOLDEN.glob("*.grad")))
def test_golden_syntax_errors(name):
    path = GOLDEN / f"{name}.grad"
    with pytest.raises(ErrorGroup) as info:
        parse(Source(path.read_text(encoding="utf-8"), path.name))
    assert str(info.value) + "\n" == (GOLDEN / f"{name}.err").read_text(encoding="utf-8")


def test_golden_files_exist():
    names = {p.stem for p in GOLDEN.glob("*.grad")}
    assert {"bad_char", "unclosed_paren", "missing_expr", "two_errors", "bad_type",
            "positional_after_keyword"} <= names
    assert names == {p.stem for p in GOLDEN.glob("*.err")}


@pytest.mark.parametrize("text, message, col", [
    ("x = f(a]", "unexpected ']' — expected ')' to close '(' at line 1", 8),
    ("x = [a, b", "expected ']' to close '[' at line 1", 10),
    ("x = f(a,\n  b", "expected ')' to close '(' at line 1", 4),
    ("x = a b", "unexpected 'b' — expected an operator or end of line", 7),
    ("x = (a b)", "unexpected 'b' — expected an operator, ')' or ','", 8),
    ("x = a +", "expected an expression after '+'", 8),
    ("x = f(,)", "unexpected ',' — expected an expression or ')'", 7),
    ("x = a = b", "unexpected '=' — expected an operator or end of line", 7),
    ("x = a < b < c", "unexpected '<' — expected an operator or end of line", 11),
    ("model", "expected a name after 'model'", 6),
    ("input x", "expected ':' after 'x'", 8),
    ("input x :", "expected a type such as f32[B, 10] after ':'", 10),
    ("param W : f32 ~", "expected an initialiser such as zeros or normal(0.01) after '~'", 16),
    ("param W : f32 ~ 1", "an initialiser is a name or a call", 17),
    ("dim N = x", "unexpected 'x' — expected an integer", 9),
    ("x = \"abc", "unterminated string", 5),
    ("x = a ! b", "unexpected character '!'", 7),
    ("x = a\x00", "unexpected character U+0000", 6),
    ("true = 1", "'true' is a reserved word and cannot be a name", 1),
    ("fn f(x, x) = x", "parameter 'x' appears twice", 9),
    ("y = sum(h, axis=1, axis=2)", "keyword argument 'axis' given twice", 20),
    ("y = f(x, k=1, 2, 3)", "positional argument after a keyword argument", 15),
    (f"dim N = {'9' * 5000}", "this integer is too long", 9),
])
def test_error_messages(text, message, col):
    errs = errors(text)
    assert errs[0].message == message
    assert errs[0].span.col == col
    assert "__ANON" not in str(ErrorGroup(errs)) and "RPAR" not in str(ErrorGroup(errs))


def test_errors_in_several_statements_are_all_reported_in_order():
    errs = errors("x = $\ny = (1 +\nmodel m\nz = a b\nw = ok\nparam W : f64[3] ~ 1\n")
    assert [e.span.line for e in errs] == [1, 2, 4, 6]


def test_unclosed_bracket_does_not_swallow_following_statements():
    errs = errors("h = relu(x @ W\noutput y = h\nloss = (y\n")
    assert [(e.span.line, e.message) for e in errs] == [
        (1, "expected ')' to close '(' at line 1"), (3, "expected ')' to close '(' at line 3")]


def test_deep_nesting_parses_without_recursion():
    """Deep models are legitimate: the tree is turned into the AST without recursion."""
    depth = 3000
    (x, y) = parse(Source("x = " + "f(" * depth + "1" + ")" * depth + "\ny = "
                          + "[" * depth + "]" * depth, "t.grad")).stmts
    node, n = x.value, 0
    while isinstance(node, ast.Call):
        node, n = node.args[0], n + 1
    assert n == depth and isinstance(node, ast.Num)
    node, n = y.value, 0
    while isinstance(node, ast.ListLit) and node.items:
        node, n = node.items[0], n + 1
    assert n == depth - 1
    depth = 3000
    assert expr("(" * depth + "1" + ")" * depth).value == 1  # parentheses add no depth


def test_grammar_text_is_found():
    assert "module:" in grammar_text()


# ----------------------------------------------------------------------------- fuzz

TOKENS = ["model", "dim", "input", "param", "layer", "fn", "output", "loss", "x", "W", "B",
          "f32", "i64", "=", ":", "~", "(", ")", "[", "]", ",", "->", "|>", ">>", "+", "-",
          "*", "/", "@", "^", "**", "<", "==", ".", "T", "1", "2.5", "1e-4", '"s"', "true",
          "\n", "#c\n", " ", ";", "$", "'", "k=", "::", "\t", "\r\n", '"']


def _parse_or_error_group(text: str) -> None:
    try:
        parse(Source(text, "fuzz.grad"))
    except ErrorGroup as exc:
        assert exc.errors and all(e.span is not None and e.span.line >= 1 for e in exc.errors)
        str(exc)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=80))
def test_fuzz_random_text(text):
    _parse_or_error_group(text)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=30))
def test_fuzz_token_soup(tokens):
    _parse_or_error_group(" ".join(tokens))
    _parse_or_error_group("".join(tokens))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=60))
def test_fuzz_random_bytes(data):
    _parse_or_error_group(data.decode("utf-8", errors="replace"))
    _parse_or_error_group(data.decode("latin-1"))
