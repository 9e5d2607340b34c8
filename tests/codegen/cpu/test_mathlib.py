"""Tests for gradc.codegen.cpu.mathlib.

Every function is compiled the way the code generator uses it: its source (``sources``) is
pasted into a module and decorated by ``gradc.codegen.cpu.target.math_jit`` (a function of
its own with the kernels' fastmath flags, which LLVM inlines into the loop that calls it;
Numba's ``inline='always'`` for the few too large for LLVM's inliner), then called from a
driver loop ``out[i] = f(xs[i])``.  The driver is compiled both with the same fastmath flags
(what generated kernels use; where Numba inlines, the caller's flags govern the inlined
body, ``reassoc`` included) and without any.

Error rule (shared with ``mathlib.ERROR_BOUNDS``): ``|y - ref| / max(|ref|, tiny)`` with
``tiny`` the smallest normal number of the dtype under test, i.e. relative error, except that
results in the subnormal range are judged in absolute units of ``tiny``.  A reference that
overflows the dtype must be returned as the matching infinity; NaN must match NaN.  No
function needs an absolute-error exception at its zeros (tanh, erf and log1p at 0, log at 1 are
all relatively accurate there).  References: NumPy in extended precision (``np.longdouble``)
for exp/log/log1p/tanh/sigmoid, mpmath for float64 erf and libm ``math.erf`` for float32 erf.
"""

from __future__ import annotations

import ast
import functools
import inspect
import math
import re

import mpmath
import numba as nb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradc.codegen.cpu import mathlib
from gradc.codegen.cpu.target import math_jit

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
OPS = list(mathlib.VARIANTS)
CASES = [(op, dt) for op in OPS for dt in ("float64", "float32")]
_LD = np.longdouble
_EXTENDED = np.finfo(_LD).eps < 1e-18  # x87 80-bit long double on x86-64 Linux


@functools.cache
def _namespace() -> dict:
    names = [fn.__name__ for fn in mathlib.MATHLIB_FUNCTIONS]
    text = "import math\nimport numpy as np\nimport numba as nb\n\n\n"
    text += mathlib.sources(names, decorator=math_jit)
    ns: dict = {"FASTMATH": FASTMATH}
    exec(compile(text, "<generated>", "exec"), ns)
    return ns


@functools.cache
def _driver(name: str, fastmath: bool):
    scope: dict = {"f": _namespace()[name]}
    exec("def apply(xs, out):\n    for i in range(xs.size):\n        out[i] = f(xs[i])\n", scope)
    opts = {"fastmath": FASTMATH} if fastmath else {}
    return nb.njit(error_model="numpy", **opts)(scope["apply"])


def _fn(op: str, dtype: str):
    return mathlib.VARIANTS[op][dtype == "float32"]


def _call(op: str, dtype: str, x, fastmath: bool = True) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=dtype).reshape(-1)
    out = np.empty_like(x)
    _driver(_fn(op, dtype).__name__, fastmath)(x, out)
    return out


# ------------------------------------------------------------------------------- references


def _erf_ref(x: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "float32":
        return np.vectorize(math.erf, otypes=[float])(x).astype(_LD)
    with mpmath.workdps(30):
        return np.array([mpmath.erf(mpmath.mpf(float(v))) for v in x], dtype=_LD)


def _ref(op: str, x: np.ndarray, dtype: str) -> np.ndarray:
    with np.errstate(all="ignore"):
        xl = x.astype(_LD)
        if op == "exp":
            return np.exp(xl)
        if op == "log":
            return np.log(xl)
        if op == "log1p":
            return np.log1p(xl)
        if op == "tanh":
            return np.tanh(xl)
        if op == "sigmoid":
            e = np.exp(-np.abs(xl))
            return np.where(xl >= 0, 1 / (1 + e), e / (1 + e))
    return _erf_ref(x, dtype)


def _errors(y: np.ndarray, ref: np.ndarray, dtype: str) -> np.ndarray:
    info = np.finfo(dtype)
    with np.errstate(all="ignore"):
        ref = ref.astype(_LD)
        ref = np.where(np.abs(ref) > info.max, ref.astype(dtype), ref).astype(_LD)  # -> +-inf
        yl = y.astype(_LD)
        err = np.abs(yl - ref) / np.maximum(np.abs(ref), _LD(info.tiny))
    exact = (yl == ref) | (np.isnan(yl) & np.isnan(ref))
    err[exact] = 0
    err[np.isnan(err)] = np.inf
    return err.astype(np.float64)


# ---------------------------------------------------------------------------------- samples

CORE = {"exp": (-30, 30), "log": (0, 10), "log1p": (-1, 10), "tanh": (-10, 10),
        "sigmoid": (-40, 40), "erf": (-6.5, 6.5)}
EDGES = {  # branch points, overflow/underflow thresholds
    "exp": [709.782712893384, 709.7827128933841, -708.3964185322641, -745.1332191019411,
            -745.1332191019412, 88.72283, 88.72284, -87.33655, -103.27893, -103.97208, 0.34657,
            -0.34657],
    "log": [1.0, 0.7071067811865476, 1.4142135623730951, 2.0, 0.5],
    "log1p": [-0.29289321881345254, 0.41421356237309515, -1.0, 1e-8, -1e-8, 2.0**53, 2.0**24],
    "tanh": [0.625, 0.9, 19.06, 9.01],
    "sigmoid": [0.0, 36.7, -36.7, 16.6, -16.6, -87.3, -103.3, -708.4, -745.1],
    "erf": [0.84375, 1.25, 2.857142857142857, 6.0, 5.9215871957945, 1.0, 3.9375, 3.9192],
}


def _samples(op: str, dtype: str, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    info = np.finfo(dtype)
    lo, hi = CORE[op]
    ubits = np.uint64 if dtype == "float64" else np.uint32
    width = 64 if dtype == "float64" else 32
    bits = rng.integers(0, 2**width - 1, n, dtype=np.uint64, endpoint=True).astype(ubits)
    top = np.log10(float(info.max)) - 0.01
    mags = 10.0 ** rng.uniform(np.log10(float(info.smallest_subnormal)), top, n)
    edges = np.array(EDGES[op], dtype=np.float64)
    near = (edges[:, None] * (1 + np.linspace(-1e-6, 1e-6, 201))).reshape(-1)
    parts = [
        bits.view(dtype),
        mags * rng.choice([-1.0, 1.0], n),
        rng.uniform(lo, hi, n),
        np.linspace(lo, hi, n),
        rng.uniform(-1, 1, n) * 10.0 ** rng.uniform(-12, 0, n),
        np.concatenate([near, -near]),
        [0.0, -0.0, np.inf, -np.inf, np.nan, info.tiny, -info.tiny, info.smallest_subnormal,
         info.max, -info.max, 1.0, -1.0, 0.5, 2.0],
    ]
    if op in ("log", "log1p"):  # dense around 1 (log) / 0 (log1p) and over the positive range
        parts += [1 + rng.uniform(-0.5, 0.5, n), 10.0 ** rng.uniform(-320, 308, n),
                  rng.uniform(-1, 1, n)]
    with np.errstate(all="ignore"):
        return np.concatenate([np.asarray(p, dtype=np.float64).astype(dtype) for p in parts])


# -------------------------------------------------------------------------------- accuracy


@pytest.mark.slow
@pytest.mark.parametrize("op,dtype", CASES)
def test_error_bound(op, dtype):
    """Max relative error over grids, random samples, random bit patterns, edges."""
    if dtype == "float64" and op != "erf" and not _EXTENDED:
        pytest.skip("needs an extended-precision np.longdouble for float64 references")
    n = 3000 if (op == "erf" and dtype == "float64") else 40_000
    x = _samples(op, dtype, n)
    y = _call(op, dtype, x)
    assert y.dtype == np.dtype(dtype)
    err = _errors(y, _ref(op, x, dtype), dtype)
    bound = mathlib.ERROR_BOUNDS[_fn(op, dtype).__name__]
    i = int(np.argmax(err))
    assert err[i] <= bound, f"{op}/{dtype}: err {err[i]:.3g} > {bound:.3g} at x={x[i]!r}"


@pytest.mark.slow
@pytest.mark.parametrize("op,dtype", CASES)
def test_error_bound_plain_driver(op, dtype):
    """Same bound when the calling kernel is compiled without fastmath (no FMA contraction)."""
    if dtype == "float64" and op != "erf" and not _EXTENDED:
        pytest.skip("needs an extended-precision np.longdouble for float64 references")
    n = 300 if (op == "erf" and dtype == "float64") else 5_000
    x = _samples(op, dtype, n, seed=1)
    y = _call(op, dtype, x, fastmath=False)
    err = _errors(y, _ref(op, x, dtype), dtype)
    assert err.max() <= mathlib.ERROR_BOUNDS[_fn(op, dtype).__name__]


def test_error_bounds_contract():
    names = {fn.__name__ for pair in mathlib.VARIANTS.values() for fn in pair}
    assert set(mathlib.ERROR_BOUNDS) == names
    for name, bound in mathlib.ERROR_BOUNDS.items():
        assert bound <= (2e-7 if name.endswith("32") else 4e-15), name


SPECIAL = {  # op: [(x, expected)] exact results, both dtypes
    "exp": [(0.0, 1.0), (-0.0, 1.0), (np.inf, np.inf), (-np.inf, 0.0), (np.nan, np.nan),
            (1e4, np.inf), (-1e4, 0.0)],
    "log": [(1.0, 0.0), (0.0, -np.inf), (-0.0, -np.inf), (np.inf, np.inf), (-1.0, np.nan),
            (-np.inf, np.nan), (np.nan, np.nan)],
    "log1p": [(0.0, 0.0), (-1.0, -np.inf), (-2.0, np.nan), (np.inf, np.inf),
              (-np.inf, np.nan), (np.nan, np.nan), (1e-30, 1e-30)],
    "tanh": [(0.0, 0.0), (np.inf, 1.0), (-np.inf, -1.0), (50.0, 1.0), (-50.0, -1.0),
             (np.nan, np.nan), (1e-30, 1e-30)],
    "sigmoid": [(0.0, 0.5), (np.inf, 1.0), (-np.inf, 0.0), (np.nan, np.nan), (1e4, 1.0),
                (-1e4, 0.0)],
    "erf": [(0.0, 0.0), (np.inf, 1.0), (-np.inf, -1.0), (10.0, 1.0), (-10.0, -1.0),
            (np.nan, np.nan)],
}


@pytest.mark.parametrize("op,dtype", CASES)
def test_special_values(op, dtype):
    x, expected = (np.array(v, dtype=np.float64) for v in zip(*SPECIAL[op]))
    for fastmath in (True, False):
        y = _call(op, dtype, x, fastmath)
        np.testing.assert_array_equal(y, expected.astype(dtype), err_msg=f"{op} {dtype}")


@pytest.mark.parametrize("op,dtype", [("tanh", "float64"), ("tanh", "float32"),
                                      ("erf", "float64"), ("erf", "float32")])
def test_sign_of_zero(op, dtype):
    """Odd functions keep the sign of zero (tanh(-0) = erf(-0) = -0)."""
    y = _call(op, dtype, np.array([-0.0, 0.0]))
    assert np.signbit(y[0]) and not np.signbit(y[1])


# ------------------------------------------------------------------------------- properties

_F64 = st.floats(allow_nan=False, width=64)
_F32 = st.floats(allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(st.lists(_F64, min_size=2, max_size=64), st.lists(_F32, min_size=2, max_size=64))
def test_monotone(xs64, xs32):
    """tanh, sigmoid, erf (and exp, log) never decrease by more than their error bound."""
    for xs, dtype in ((xs64, "float64"), (xs32, "float32")):
        x = np.sort(np.array(xs, dtype=dtype))
        for op in ("tanh", "sigmoid", "erf", "exp", "log"):
            xx = np.abs(x) if op == "log" else x
            xx = np.sort(xx)
            y = _call(op, dtype, xx).astype(np.float64)
            with np.errstate(invalid="ignore"):
                drop = np.where(y[:-1] == y[1:], 0.0, y[:-1] - y[1:])
            tol = 2 * mathlib.ERROR_BOUNDS[_fn(op, dtype).__name__] * np.abs(y[:-1])
            assert np.all(drop <= tol), (op, dtype, xx, y)


@settings(max_examples=60, deadline=None)
@given(st.lists(_F64, min_size=1, max_size=64), st.lists(_F32, min_size=1, max_size=64))
def test_symmetries(xs64, xs32):
    """tanh and erf are odd bit for bit; sigmoid(-x) = 1 - sigmoid(x); log(exp(x)) = x."""
    for xs, dtype in ((xs64, "float64"), (xs32, "float32")):
        x = np.array(xs, dtype=dtype)
        for op in ("tanh", "erf"):
            np.testing.assert_array_equal(_call(op, dtype, -x), -_call(op, dtype, x))
        s = _call("sigmoid", dtype, x).astype(np.float64)
        sm = _call("sigmoid", dtype, -x).astype(np.float64)
        assert np.all(np.abs(s + sm - 1) <= 4 * np.finfo(dtype).eps)
        xe = x[np.abs(x) < (700 if dtype == "float64" else 80)]
        back = _call("log", dtype, _call("exp", dtype, xe)).astype(np.float64)
        tol = 4 * np.finfo(dtype).eps * np.maximum(np.abs(xe.astype(np.float64)), 1.0)
        assert np.all(np.abs(back - xe) <= tol)


# -------------------------------------------------------------------- code-shape contracts


def _loaded_globals(fn) -> set[str]:
    tree = ast.parse(inspect.getsource(fn))
    func = tree.body[0]
    assigned = {a.arg for a in func.args.args}
    assigned |= {n.id for n in ast.walk(func) if isinstance(n, ast.Name)
                 and isinstance(n.ctx, ast.Store)}
    return {n.id for n in ast.walk(func) if isinstance(n, ast.Name)
            and isinstance(n.ctx, ast.Load)} - assigned


def test_functions_are_self_contained():
    allowed = {"math", "np", "min", "max", "abs"} | {f.__name__ for f in
                                                     mathlib.MATHLIB_FUNCTIONS}
    for fn in mathlib.MATHLIB_FUNCTIONS:
        assert not fn.__code__.co_freevars
        assert _loaded_globals(fn) <= allowed, fn.__name__
        assert not ast.parse(inspect.getsource(fn)).body[0].decorator_list


def test_float32_functions_have_only_float32_literals():
    for fn in mathlib.MATHLIB_FUNCTIONS:
        if not fn.__name__.endswith("32"):
            continue
        tree = ast.parse(inspect.getsource(fn))
        wrapped = {id(n) for c in ast.walk(tree) if isinstance(c, ast.Call)
                   and ast.unparse(c.func) == "np.float32" for n in ast.walk(c)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, float):
                assert id(node) in wrapped, f"{fn.__name__}: bare float literal {node.value}"


def test_sources_dependency_order():
    text = mathlib.sources(["fsigmoid"])
    assert text.index("def fexp(") < text.index("def fsigmoid(")
    assert "def flog(" not in text and "@" not in text
    text = mathlib.sources([mathlib.flog1p, "_ferf32"])
    order = [m.group(1) for m in re.finditer(r"^def (\w+)\(", text, re.M)]
    assert order == ["_flog1p_red", "flog1p", "_fexp32", "_ferf32"]
    ns: dict = {"np": np, "math": math}
    exec(text, ns)  # the pasted text is a valid module on its own
    with pytest.raises(KeyError):
        mathlib.sources(["nope"])
    decorated = mathlib.sources(["_fexp32"], decorator="@nb.njit")
    assert decorated.startswith("@nb.njit\ndef _fexp32(")
    positions = {fn.__name__: i for i, fn in enumerate(mathlib.MATHLIB_FUNCTIONS)}
    for fn in mathlib.MATHLIB_FUNCTIONS:
        for dep in _loaded_globals(fn) & set(positions):
            assert positions[dep] < positions[fn.__name__]


def _ir_body(dispatcher) -> str:
    ir = dispatcher.inspect_llvm(dispatcher.signatures[0])
    start = ir.index("define")
    return ir[start:ir.index("\n}\n", start)]


@pytest.mark.skipif(not nb.config.LOOP_VECTORIZE, reason="Numba loop vectorisation disabled")
@pytest.mark.parametrize("op,dtype", CASES)
def test_vectorises_without_calls(op, dtype):
    _call(op, dtype, np.ones(4))
    body = _ir_body(_driver(_fn(op, dtype).__name__, True))
    ftype = "double" if dtype == "float64" else "float"
    assert re.search(rf"<\d+ x {ftype}>", body), "loop was not vectorised"
    callees = set(re.findall(r"call [^@\n]*@([\w.$]+)", body))
    assert all(c.startswith("llvm.") for c in callees), callees
    if dtype == "float32":
        assert "double" not in body, "float64 arithmetic in a float32 kernel"


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_a_generated_module_compiles_each_function_once_and_llvm_inlines_it(dtype):
    """examples/char_rnn.grad (tanh in the recurrence, exp and log in the cross-entropy):
    each mathlib function its kernels call is one Numba function of the module, compiled
    for one signature however many kernels and loops call it, and no call of it is left
    in the kernels' code (LLVM inlined it, so their loops can vectorise); the numbers are
    the numpy target's."""
    import gradc
    from tests.harness.paths import EXAMPLES

    model = gradc.compile(EXAMPLES / "char_rnn.grad", dtype=dtype, wait=True)
    rng = np.random.default_rng(3)
    inputs = {"chars": rng.integers(0, 16, (4, 5)), "next": rng.integers(0, 16, (4, 5))}
    params = model.init_params(0)
    loss, grads = model.loss_and_grad(params, **inputs)
    model.forward(params, chars=inputs["chars"])
    module = model.module
    used = [mathlib.VARIANTS[op][dtype == "f32"].__name__ for op in ("tanh", "exp", "log")]
    for name in used:
        assert name not in mathlib.NUMBA_INLINED
        assert len(getattr(module, name).signatures) == 1, name
    kernels = [v for k, v in vars(module).items()
               if k.startswith(("_forward_", "_loss_and_grad_")) and hasattr(v, "signatures")]
    assert len(kernels) == 2
    for kernel in kernels:
        ir = kernel.inspect_llvm(kernel.signatures[0])
        called = set(re.findall(r"call [^@\n]*@([\w.$]+)", ir))
        left = [c for c in called for name in used if name in c]
        assert not left, f"{kernel.__name__} still calls {left}"
    ref = gradc.compile(EXAMPLES / "char_rnn.grad", dtype=dtype, target="numpy")
    ref_loss, ref_grads = ref.loss_and_grad(params, **inputs)
    tol = 1e-5 if dtype == "f32" else 1e-12
    assert loss == pytest.approx(ref_loss, rel=tol)
    for k, g in ref_grads.items():
        np.testing.assert_allclose(grads[k], g, rtol=tol * 10, atol=tol)


# ------------------------------------------------------------ opt-in exhaustive float32 check

_REF64 = {"exp": "math.exp(v)", "log": "math.log(v)", "log1p": "math.log1p(v)",
          "tanh": "math.tanh(v)", "erf": "math.erf(v)",
          "sigmoid": "1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))"}


@functools.cache
def _exhaustive_scanner(op: str, fastmath: bool):
    scope: dict = {"f": _namespace()[_fn(op, "float32").__name__], "math": math, "np": np,
                   "nb": nb}
    exec(f"""def scan(nchunks):
    best = np.zeros(nchunks)
    where = np.zeros(nchunks, np.uint32)
    size = (1 << 32) // nchunks
    for c in nb.prange(nchunks):
        for j in range(size):
            u = np.uint32(c * size + j)
            x = u.view(np.float32)
            y = f(x)
            v = np.float64(x)
            r = {_REF64[op]}
            r32 = np.float32(r)
            if r != r or abs(r32) == math.inf:
                e = 0.0 if (y == r32 or (y != y and r != r)) else math.inf
            else:
                e = abs(np.float64(y) - r) / max(abs(r), 1.1754943508222875e-38)
                e = math.inf if y != y else e
            if e > best[c]:
                best[c] = e
                where[c] = u
    i = np.argmax(best)
    return best[i], where[i]
""", scope)
    opts = {"fastmath": FASTMATH} if fastmath else {}
    return nb.njit(parallel=True, error_model="numpy", **opts)(scope["scan"])
