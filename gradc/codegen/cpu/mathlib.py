"""Branch-free, vectorisable scalar math for generated Numba kernels.

Pip Numba has no SVML: ``math.exp`` & co. in an ``njit`` loop are scalar libm calls that also
block loop vectorisation.  These functions use only arithmetic, selects, the ``floor``/``fabs``/
``copysign`` LLVM intrinsics and integer bit casts, so an inlined loop compiles to packed
AVX2/AVX-512 code (checked by the tests).

Contract: plain undecorated Numba nopython code referring only to ``math``, ``np`` (numpy),
literal constants and each other.  The code generator pastes the text (:func:`sources`) into a
module importing ``math``/``np``/``nb`` and decorates each function with
:func:`gradc.codegen.cpu.target.math_jit` (``@nb.njit`` with
``fastmath={'nsz','arcp','contract','afn','reassoc'}``, ``error_model='numpy'``, and
``inline='always'`` for the few in :data:`NUMBA_INLINED`) -- never ``nnan``/``ninf``:
+-0, subnormals, +-inf and NaN are handled (NaN in -> NaN out).  ``fX`` are float64;
``_fX32`` compute in float32/int32 only (every float literal is ``np.float32(...)``).
Error = ``|y - exact| / max(|exact|, tiny)`` (``tiny``: the smallest normal, so subnormal
results count in absolute units of it); the bounds in
:data:`ERROR_BOUNDS` are asserted by ``tests/codegen/cpu/test_mathlib.py`` (float32 ones
also over all 2^32 inputs with ``GRADC_MATHLIB_EXHAUSTIVE=1``).

Bit casts: scalar ``np.float64(x).view(np.int64)`` (and back) lowers to a plain LLVM
``bitcast`` in Numba, so no ``@intrinsic`` or array round trip is needed.  ``reassoc`` would
let LLVM fold Cody-Waite ``(x - k*C1) - k*C2`` into ``x - k*(C1 + C2)``; the second product
therefore uses ``float(int(k))`` (an ``fptosi``/``sitofp`` pair LLVM keeps), and polynomials are
plain Horner chains.  Coefficients: ``mpmath.chebyfit`` fits of the reduced functions named in
the docstrings, except ``ferf``, which uses the rational approximations of Sun fdlibm
``s_erf.c`` (Copyright (C) 1993 by Sun Microsystems, Inc. All rights reserved.  Developed at
SunPro, a Sun Microsystems, Inc. business.  Permission to use, copy, modify, and distribute
this software is freely granted, provided that this notice is preserved.).
"""

from __future__ import annotations

import ast
import inspect
import math
import textwrap
from collections.abc import Callable, Iterable

import numpy as np

__all__ = ["ERROR_BOUNDS", "MATHLIB_FUNCTIONS", "VARIANTS", "sources", "fexp", "flog", "flog1p",
           "ftanh", "fsigmoid", "ferf", "NUMBA_INLINED"]


# --------------------------------------------------------------------------------- float64


def fexp(x):
    """exp(x), float64; max error 1.9e-16 (<1 ulp).  inf above 709.78, 0 below -745.13,
    correctly scaled subnormals in between.  x = k*ln2 + r, |r| <= ln2/2 (Cody-Waite),
    exp(r) = 1 + r + r^2*q(r) (q: degree 9, 1.6e-17), times 2^k via the exponent bits in two
    steps so the overflow/underflow edges round correctly."""
    xc = 710.0 if x > 710.0 else x
    xc = -746.0 if xc < -746.0 else xc
    xc = 0.0 if xc != xc else xc  # keeps the float->int conversion below well defined
    kf = np.floor(xc * 1.4426950408889634 + 0.5)
    k = np.int64(kf)
    r = (xc - kf * 0.6931471803691238) - np.float64(k) * 1.9082149292705877e-10
    p = 2.5100375832561234e-08
    p = p * r + 2.7620075879983367e-07
    p = p * r + 2.7557268480310024e-06
    p = p * r + 2.4801521322368692e-05
    p = p * r + 0.00019841269863040545
    p = p * r + 0.0013888888917196719
    p = p * r + 0.008333333333330065
    p = p * r + 0.041666666666624164
    p = p * r + 0.16666666666666669
    p = p * r + 0.5000000000000001
    p = p * r + 1.0
    p = p * r + 1.0
    k1 = min(max(k, -1021), 1023)
    y = np.int64(np.float64(p).view(np.int64) + (k1 << 52)).view(np.float64)
    y = y * np.int64((k - k1 + 1023) << 52).view(np.float64)
    return x if x != x else y


def _flog1p_red(f):
    """log1p(f), f in [sqrt(1/2) - 1, sqrt(2) - 1] (helper of flog/flog1p): 2*atanh(s),
    s = f/(2+f) = 2s + s^3*R(s^2) (R: degree 6, 4.6e-18)."""
    s = f / (2.0 + f)
    z = s * s
    q = 0.14616449685043406
    q = q * z + 0.15331721600556042
    q = q * z + 0.18182889125261723
    q = q * z + 0.2222221113479508
    q = q * z + 0.28571428625975487
    q = q * z + 0.39999999999899505
    q = q * z + 0.666666666666667
    return 2.0 * s + s * (z * q)


def flog(x):
    """log(x), float64; max error 4.6e-16 (~2 ulp).  log(+-0) = -inf, log(x < 0) = NaN,
    log(inf) = inf, log(1) = 0, subnormals handled.  x = 2^k*m with m in [sqrt(1/2), sqrt(2))
    taken from the bits; log x = k*ln2 + log1p(m - 1)."""
    ax = abs(x)
    sub = ax < 2.2250738585072014e-308
    ax = ax * 4503599627370496.0 if sub else ax  # 2**52
    bits = np.float64(ax).view(np.int64)
    k = (bits - 0x3FE6A09E667F3BCD) >> 52
    m = np.int64(bits - (k << 52)).view(np.float64)
    kf = np.float64(k) - (52.0 if sub else 0.0)
    y = kf * 0.6931471805599453 + _flog1p_red(m - 1.0)
    y = math.inf if x == math.inf else y
    y = -math.inf if x == 0.0 else y
    return math.nan if (x < 0.0 or x != x) else y


def flog1p(x):
    """log1p(x), float64; max error 4.7e-16 (~2 ulp), relative also for x -> 0.
    log1p(-1) = -inf, log1p(x < -1) = NaN, log1p(inf) = inf.  u = 1 + x = 2^k*m as in flog,
    but f = m - 1 is rebuilt without the rounding of u as x*2^-k + (2^-k - 1) (one rounding,
    exactly x for k = 0); for k > 53 that rounding no longer matters and m - 1 is used."""
    u = 1.0 + x
    bits = np.float64(u).view(np.int64)
    k = (bits - 0x3FE6A09E667F3BCD) >> 52
    m = np.int64(bits - (k << 52)).view(np.float64)
    kc = min(max(k, -60), 60)
    sc = np.int64((1023 - kc) << 52).view(np.float64)
    f = x * sc + (sc - 1.0)
    f = m - 1.0 if k > 53 else f
    y = np.float64(k) * 0.6931471805599453 + _flog1p_red(f)
    y = math.inf if x == math.inf else y
    y = -math.inf if x == -1.0 else y
    return math.nan if (x < -1.0 or x != x) else y


def ftanh(x):
    """tanh(x), float64; max error 2.7e-16 (~1 ulp), relative down to 0; +-1 beyond
    19.06, NaN -> NaN, odd bit for bit.  tanh|x| = h/(1 + h), h = expm1(2|x|)/2 without
    cancellation: 2|x| = k*ln2 + r with r in [0, ln2) (floor), so h = 2^(k-1)*(r + r^2*q(r)) +
    (2^(k-1) - 1/2) adds non-negative terms (q: degree 10, 3.8e-18); h - h^2/(1+h) for small h.
    One division, no libm call."""
    a = abs(x)
    a = a if a < 19.5 else 19.5  # NaN -> 19.5, fixed up below
    t = a + a
    kf = np.floor(t * 1.4426950408889634)
    k = np.int64(kf)
    r = (t - kf * 0.6931471803691238) - np.float64(k) * 1.9082149292705877e-10
    q = 2.8058517696157453e-09
    q = q * r + 2.3809768604395034e-08
    q = q * r + 2.7675594668859915e-07
    q = q * r + 2.7550406259534666e-06
    q = q * r + 2.4801845078168788e-05
    q = q * r + 0.00019841263703271154
    q = q * r + 0.0013888888979418793
    q = q * r + 0.008333333332561976
    q = q * r + 0.04166666666669971
    q = q * r + 0.16666666666666616
    q = q * r + 0.5
    sc = np.int64((k + 1022) << 52).view(np.float64)  # 2^k / 2
    h = sc * (r + r * r * q) + (sc - 0.5)  # h = m/2, tanh = h/(1 + h) = h - h^2/(1 + h)
    small = h < 0.375
    d = (h * h if small else h) / (1.0 + h)
    y = math.copysign(h - d if small else d, x)
    return x if x != x else y


def fsigmoid(x):
    """1/(1 + exp(-x)), float64; max error 2.7e-16 (~1 ulp).  With e = exp(-|x|):
    1/(1+e) for x >= 0, e/(1+e) = e - e^2/(1+e) for x < 0 (the division's rounding is damped
    by e) -- no overflow, relative accuracy in both tails."""
    e = fexp(-abs(x))
    d = (1.0 if x >= 0.0 else e * e) / (1.0 + e)
    return d if x >= 0.0 else e - d


def ferf(x):
    """erf(x), float64 (exact GELU); max error 2.2e-16 (1 ulp).  +-1 beyond 5.93, NaN -> NaN,
    odd bit for bit.  fdlibm s_erf.c ranges, branch-free (per-range coefficients by select,
    one shared division): |x| < 0.84375: x + x*P/Q(x^2); < 1.25: erx + P/Q(|x| - 1);
    <= 6: 1 - exp(-x^2 - 0.5625 + R/S(1/x^2))/|x| (two coefficient sets split at 1/0.35)."""
    ax = abs(x)
    a = 6.0 if ax > 6.0 else ax
    r1 = a < 0.84375
    r2 = a < 1.25
    r3 = a < 2.857142857142857
    w = 1.0 / a
    t = a * a if r1 else a - 1.0
    pa = 0.0 if r1 else -2.16637559486879084300e-03
    pa = pa * t + (0.0 if r1 else 3.54783043256182359371e-02)
    pa = pa * t + (-2.37630166566501626084e-05 if r1 else -1.10894694282396677476e-01)
    pa = pa * t + (-5.77027029648944159157e-03 if r1 else 3.18346619901161753674e-01)
    pa = pa * t + (-2.84817495755985104766e-02 if r1 else -3.72207876035701323847e-01)
    pa = pa * t + (-3.25042107247001499370e-01 if r1 else 4.14856118683748331666e-01)
    pa = pa * t + (1.28379167095512558561e-01 if r1 else -2.36211856075265944077e-03)
    qa = 0.0 if r1 else 1.19844998467991074170e-02
    qa = qa * t + (-3.96022827877536812320e-06 if r1 else 1.36370839120290507362e-02)
    qa = qa * t + (1.32494738004321644526e-04 if r1 else 1.26171219808761642112e-01)
    qa = qa * t + (5.08130628187576562776e-03 if r1 else 7.18286544141962662868e-02)
    qa = qa * t + (6.50222499887672944485e-02 if r1 else 5.40397917702171048937e-01)
    qa = qa * t + (3.97917223959155352819e-01 if r1 else 1.06420880400844228286e-01)
    qa = qa * t + 1.0
    s = w * w
    rb = -9.81432934416914548592e+00 if r3 else 0.0
    rb = rb * s + (-8.12874355063065934246e+01 if r3 else -4.83519191608651397019e+02)
    rb = rb * s + (-1.84605092906711035994e+02 if r3 else -1.02509513161107724954e+03)
    rb = rb * s + (-1.62396669462573470355e+02 if r3 else -6.37566443368389627722e+02)
    rb = rb * s + (-6.23753324503260060396e+01 if r3 else -1.60636384855821916062e+02)
    rb = rb * s + (-1.05586262253232909814e+01 if r3 else -1.77579549177547519889e+01)
    rb = rb * s + (-6.93858572707181764372e-01 if r3 else -7.99283237680523006574e-01)
    rb = rb * s + (-9.86494403484714822705e-03 if r3 else -9.86494292470009928597e-03)
    sb = -6.04244152148580987438e-02 if r3 else 0.0
    sb = sb * s + (6.57024977031928170135e+00 if r3 else -2.24409524465858183362e+01)
    sb = sb * s + (1.08635005541779435134e+02 if r3 else 4.74528541206955367215e+02)
    sb = sb * s + (4.29008140027567833386e+02 if r3 else 2.55305040643316442583e+03)
    sb = sb * s + (6.45387271733267880336e+02 if r3 else 3.19985821950859553908e+03)
    sb = sb * s + (4.34565877475229228821e+02 if r3 else 1.53672958608443695994e+03)
    sb = sb * s + (1.37657754143519042600e+02 if r3 else 3.25792512996573918826e+02)
    sb = sb * s + (1.96512716674392571292e+01 if r3 else 3.03380607434824582924e+01)
    sb = sb * s + 1.0
    q = (pa if r2 else rb) / (qa if r2 else sb)
    big = 1.0 - fexp(q - a * a - 0.5625) * w
    y = a + a * q if r1 else (8.45062911510467529297e-01 + q if r2 else big)
    return math.copysign(y, x)


# --------------------------------------------------------------------------------- float32


def _fexp32(x):
    """exp(x), float32 arithmetic; max error 1.05e-7 (<1 ulp, all inputs).  inf above 88.72,
    0 below -103.97.  As fexp with q of degree 4 (1e-8)."""
    xc = np.float32(89.0) if x > np.float32(89.0) else x
    xc = np.float32(-104.0) if xc < np.float32(-104.0) else xc
    xc = np.float32(0.0) if xc != xc else xc
    kf = np.floor(xc * np.float32(1.442695) + np.float32(0.5))
    k = np.int32(kf)
    r = (xc - kf * np.float32(0.69314575)) - np.float32(k) * np.float32(1.4286068e-06)
    p = np.float32(0.0013926176)
    p = p * r + np.float32(0.008363173)
    p = p * r + np.float32(0.041666556)
    p = p * r + np.float32(0.16666578)
    p = p * r + np.float32(0.5)
    p = p * r + np.float32(1.0)
    p = p * r + np.float32(1.0)
    k1 = np.int32(min(max(k, -125), 127))
    y = np.int32(np.float32(p).view(np.int32) + (k1 << 23)).view(np.float32)
    y = y * np.int32((k - k1 + 127) << 23).view(np.float32)
    return x if x != x else y


def _flog1p_red32(f):
    """log1p(f), f in [sqrt(1/2) - 1, sqrt(2) - 1], float32: f + f^2*P(f) (P: degree 8,
    1.4e-8), no division."""
    p = np.float32(-0.07673641)
    p = p * f + np.float32(0.12722673)
    p = p * f + np.float32(-0.13127555)
    p = p * f + np.float32(0.14204855)
    p = p * f + np.float32(-0.16626646)
    p = p * f + np.float32(0.20001234)
    p = p * f + np.float32(-0.2500078)
    p = p * f + np.float32(0.3333333)
    p = p * f + np.float32(-0.49999997)
    return f + f * (f * p)


def _flog32(x):
    """log(x), float32 arithmetic, as flog; max error 1.25e-7 (~1 ulp, all inputs)."""
    ax = abs(x)
    sub = ax < np.float32(1.1754944e-38)
    ax = ax * np.float32(8388608.0) if sub else ax  # 2**23
    bits = np.float32(ax).view(np.int32)
    k = np.int32(np.int32(bits - np.int32(0x3F3504F3)) >> 23)
    m = np.int32(bits - (k << 23)).view(np.float32)
    k = np.int32(k - 23) if sub else k
    y = np.float32(k) * np.float32(0.6933594) + (
        np.float32(k) * np.float32(-0.00021219444) + _flog1p_red32(m - np.float32(1.0))
    )
    y = np.float32(math.inf) if x == np.float32(math.inf) else y
    y = np.float32(-math.inf) if x == np.float32(0.0) else y
    return np.float32(math.nan) if (x < np.float32(0.0) or x != x) else y


def _flog1p32(x):
    """log1p(x), float32 arithmetic, as flog1p; max error 1.36e-7 (~1 ulp, all inputs)."""
    u = np.float32(1.0) + x
    bits = np.float32(u).view(np.int32)
    k = np.int32(np.int32(bits - np.int32(0x3F3504F3)) >> 23)
    m = np.int32(bits - (k << 23)).view(np.float32)
    kc = np.int32(min(max(k, -30), 30))
    sc = np.int32((127 - kc) << 23).view(np.float32)
    f = x * sc + (sc - np.float32(1.0))
    f = m - np.float32(1.0) if k > 24 else f
    y = np.float32(k) * np.float32(0.6933594) + (
        np.float32(k) * np.float32(-0.00021219444) + _flog1p_red32(f)
    )
    y = np.float32(math.inf) if x == np.float32(math.inf) else y
    y = np.float32(-math.inf) if x == np.float32(-1.0) else y
    return np.float32(math.nan) if (x < np.float32(-1.0) or x != x) else y


def _ftanh32(x):
    """tanh(x), float32 arithmetic, as ftanh (q: degree 5, 1.6e-9) but always h/(1+h); +-1
    beyond 9.01.  Max error 1.76e-7 (~1.5 ulp, all inputs, at small |x|); ftanh's small-h form
    would give 1.5e-7 for ~10% more time."""
    a = abs(x)
    a = a if a < np.float32(9.5) else np.float32(9.5)
    t = a + a
    kf = np.floor(t * np.float32(1.442695))
    k = np.int32(kf)
    r = (t - kf * np.float32(0.69314575)) - np.float32(k) * np.float32(1.4286068e-06)
    q = np.float32(0.00025829198)
    q = q * r + np.float32(0.0013400548)
    q = q * r + np.float32(0.0083512)
    q = q * r + np.float32(0.04166376)
    q = q * r + np.float32(0.16666684)
    q = q * r + np.float32(0.5)
    sc = np.int32((k + 126) << 23).view(np.float32)  # 2^k / 2
    h = sc * (r + r * r * q) + (sc - np.float32(0.5))
    y = math.copysign(h / (np.float32(1.0) + h), x)
    return x if x != x else y


def _fsigmoid32(x):
    """Logistic sigmoid, float32 arithmetic, as fsigmoid; max error 1.72e-7 (all inputs)."""
    e = _fexp32(-abs(x))
    d = (np.float32(1.0) if x >= np.float32(0.0) else e * e) / (np.float32(1.0) + e)
    return d if x >= np.float32(0.0) else e - d


def _ferf32(x):
    """erf(x), float32 arithmetic; max error 9.5e-8 (<1 ulp, all inputs); +-1 beyond 3.92.
    |x| < 1: x + x*E(x^2) (E: degree 6, 6e-9); else 1 - exp(L(|x| - 2.5) - x^2) with L a
    degree-8 fit of log(erfc(x)*exp(x^2)) on [1, 3.9375] (2e-9)."""
    ax = abs(x)
    a = np.float32(3.9375) if ax > np.float32(3.9375) else ax
    w = a * a
    p = np.float32(7.875875e-05)
    p = p * w + np.float32(-0.00080168643)
    p = p * w + np.float32(0.0051890872)
    p = p * w + np.float32(-0.026854211)
    p = p * w + np.float32(0.11283594)
    p = p * w + np.float32(-0.37612626)
    p = p * w + np.float32(0.12837917)
    t = a - np.float32(2.5)
    q = np.float32(1.6634241e-06)
    q = q * t + np.float32(-1.3287648e-05)
    q = q * t + np.float32(7.719505e-05)
    q = q * t + np.float32(-0.00042021196)
    q = q * t + np.float32(0.0021654107)
    q = q * t + np.float32(-0.01085846)
    q = q * t + np.float32(0.05610626)
    q = q * t + np.float32(-0.35268068)
    q = q * t + np.float32(-1.5568153)
    big = np.float32(1.0) - _fexp32(q - w)
    return math.copysign(a + a * p if a < np.float32(1.0) else big, x)


# ------------------------------------------------------------------------------ registry

MATHLIB_FUNCTIONS: list[Callable] = [
    fexp, _flog1p_red, flog, flog1p, ftanh, fsigmoid, ferf,
    _fexp32, _flog1p_red32, _flog32, _flog1p32, _ftanh32, _fsigmoid32, _ferf32,
]
"""All functions, each after everything it calls (paste sources in this order)."""

VARIANTS: dict[str, tuple[Callable, Callable]] = {
    "exp": (fexp, _fexp32),
    "log": (flog, _flog32),
    "log1p": (flog1p, _flog1p32),
    "tanh": (ftanh, _ftanh32),
    "sigmoid": (fsigmoid, _fsigmoid32),
    "erf": (ferf, _ferf32),
}
"""Operation name -> (float64 function, float32 function)."""

NUMBA_INLINED: frozenset[str] = frozenset({"ferf", "_ferf32"})
"""The functions too large for LLVM's inliner (a loop calling them as functions keeps the
call and does not vectorise, checked by the tests): the code generator has Numba inline
them at every call site (``inline='always'``). Every other function is compiled once, as a
function of its own, and LLVM inlines it into each loop that calls it: Numba no longer
types and lowers its body again at every call site (a stacked LSTM-GRU's ``loss_and_grad``,
whose loop bodies call tanh and sigmoid, compiles in two thirds of the time)."""

ERROR_BOUNDS: dict[str, float] = {
    "fexp": 3e-16,
    "flog": 6e-16,
    "flog1p": 6e-16,
    "ftanh": 4e-16,
    "fsigmoid": 4e-16,
    "ferf": 3e-16,
    "_fexp32": 1.1e-7,
    "_flog32": 1.3e-7,
    "_flog1p32": 1.4e-7,
    "_ftanh32": 1.8e-7,
    "_fsigmoid32": 1.8e-7,
    "_ferf32": 1e-7,
}
"""Max error ``|y - exact| / max(|exact|, tiny)``, asserted by the tests.  float32: exhaustive
maximum over all inputs (kernel compiled with and without fastmath) rounded up; float64: max
over ~5M random and edge samples, rounded up with headroom."""

_BY_NAME = {fn.__name__: fn for fn in MATHLIB_FUNCTIONS}


def _callees(fn: Callable) -> set[str]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id in _BY_NAME}


def sources(names: Iterable[str | Callable],
            decorator: str | Callable[[str], str] = "") -> str:
    """Source text of the requested functions (names or function objects) and of everything
    they call, in dependency order, separated by two blank lines.  ``decorator`` (e.g.
    ``"@nb.njit(...)"``, or a function of the name giving it) is put on the line above each
    ``def``."""
    todo = [n if isinstance(n, str) else n.__name__ for n in names]
    needed: set[str] = set()
    while todo:
        name = todo.pop()
        if name not in _BY_NAME:
            raise KeyError(f"unknown mathlib function {name!r}")
        if name not in needed:
            needed.add(name)
            todo.extend(_callees(_BY_NAME[name]) - {name})
    def prefix(name: str) -> str:
        text = decorator(name) if callable(decorator) else decorator
        return text.rstrip() + "\n" if text.strip() else ""
    return "\n\n".join(
        prefix(fn.__name__) + textwrap.dedent(inspect.getsource(fn)).rstrip() + "\n"
        for fn in MATHLIB_FUNCTIONS
        if fn.__name__ in needed
    )
