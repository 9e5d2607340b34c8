"""The tables the code generators are built from are complete and agree with each other.

What used to be kept in step by hand is derived now (the shared runtime a module gets,
the numpy printer's templates, the cache digest's file list); what is still written out is
checked here: every kernel class is printed by every target, every function of the
language is spelt by every scalar printer (and each spelling computes the function),
every name the pasted runtime calls is defined in every target's module, and a background
compile can call every public entry.

The generated modules are made by :func:`gradc.pipeline.compile_sources` (text only:
nothing is imported or compiled), so this file runs in seconds.
"""

from __future__ import annotations

import builtins
import functools
import importlib
import inspect
import math
import symtable
import warnings

import numpy as np
import pytest
import sympy

from gradc.codegen import scalar
from gradc.codegen.cpu import mathlib
from gradc.codegen.cpu.printer import CpuPrinter
from gradc.codegen.numpy import helpers as numpy_helpers
from gradc.codegen.numpy import printer as numpy_printer
from gradc.codegen.target import TARGETS
from gradc.entries import ENTRIES
from gradc.ir import sym
from gradc.kinds import KINDS
from gradc.options import Options
from gradc.passes import kernels
from gradc.pipeline import compile_sources
from gradc.runtime import warm
from gradc.source import Source

#: a model with every kind of program: batchnorm and dropout (a train-mode twin of each
#: eval program, running statistics as state), a recurrence (a Recur kernel), labels
MODEL = """\
model tables
input  x : f64[B, 5, 3]
input  y : i64[B, 5]
layer  cell = rnn(3 -> 4)
layer  bn = batchnorm(5)
layer  drop = dropout(0.5)
layer  out = dense(4 -> 2)
output logits = x |> cell >> bn >> relu >> drop >> out
loss   = cross_entropy(logits, y)
"""


def kernel_classes() -> set[type]:
    """Every concrete kernel class of :mod:`gradc.passes.kernels`, and every one a node
    kind lowers to (a kind may define its own beside it: ``Kind.kernels``)."""
    return {v for v in vars(kernels).values()
            if inspect.isclass(v) and issubclass(v, kernels.Kernel) and v is not kernels.Kernel
            } | {k for kind in KINDS.values() for k in kind.kernels}


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_kernel_class_is_printed_by_every_target(target):
    package = TARGETS[target].module.rsplit(".", 1)[0]
    emit = importlib.import_module(package + ".emit")
    assert kernel_classes() <= set(emit.PRINTERS)
    # beyond them, only kernel classes of the target's own making (the cpu's outlined runs)
    assert all(k.__module__.startswith(package + ".") for k in set(emit.PRINTERS)
               - kernel_classes())
    assert all(callable(f) for f in emit.PRINTERS.values())


def language_functions() -> dict[str, type]:
    """Every function of :mod:`gradc.ir.sym` a kernel may contain, by name."""
    return {v.__name__: v for v in vars(sym).values()
            if inspect.isclass(v) and issubclass(v, sym._Fn) and v.__name__[0] != "_"}


def test_every_language_function_has_a_template_and_an_implementation():
    names = set(language_functions())
    # log1p, expm1 and erf are SymPy's own functions, spelt by the same tables
    assert names <= set(scalar.TEMPLATES)
    assert set(scalar.TEMPLATES) == set(sym.NUMPY_IMPLS)
    assert set(numpy_printer.TEMPLATES) == set(scalar.TEMPLATES)
    comparisons = {n for n, f in language_functions().items() if issubclass(f, sym._Compare)}
    assert set(scalar.CONDITIONS) == comparisons


def _scalar_namespace() -> dict:
    return {"math": math, "np": np, "max": max, "min": min, "abs": abs,
            **{f.__name__: f for pair in mathlib.VARIANTS.values() for f in pair}}


def _array_namespace() -> dict:
    return {"np": np, **{n: getattr(numpy_helpers, n) for n in numpy_printer.HELPERS}}


PRINTERS = {"scalar": (scalar.ScalarPrinter, _scalar_namespace),
            "cpu": (CpuPrinter, _scalar_namespace),
            "numpy": (numpy_printer.ArrayPrinter, _array_namespace)}
#: points each argument takes (ties included: the comparisons and Select test them)
POINTS = (-0.9, -0.25, 0.0, 0.5, 3.0)


def _function_cases():
    """(name, expression, its arguments): each function over plain symbols, and Select of
    each comparison (printed without a 0/1 value in between)."""
    args = sympy.symbols("a0 a1 a2")
    cases = []
    for name in sorted(sym.NUMPY_IMPLS):
        fn = language_functions().get(name) or getattr(sym, name, None) or getattr(sympy, name)
        n = min(fn.nargs)
        cases.append((name, fn(*args[:n]), args[:n]))
    for name in sorted(scalar.CONDITIONS):
        test = language_functions()[name](args[0], args[1])
        cases.append((f"Select-{name}", sym.Select(test, args[1], args[2]), args))
    return cases


def _expected(name: str, values: list[np.ndarray]) -> np.ndarray:
    if name.startswith("Select-"):
        test = sym.NUMPY_IMPLS[name.split("-")[1]](values[0], values[1])
        return np.where(test != 0, values[1], values[2])
    return sym.NUMPY_IMPLS[name](*values)


@pytest.mark.parametrize("printer", sorted(PRINTERS))
@pytest.mark.parametrize("case", _function_cases(), ids=lambda c: c[0])
def test_every_printer_spells_every_function_as_the_function(printer, case):
    """Each spelling, evaluated at a grid of points (ties included), gives the NumPy
    implementation's value (1e-14 relative: the CPU's mathlib functions are within
    a few ulps)."""
    name, expr, args = case
    cls, namespace = PRINTERS[printer]
    text = cls("f64", read=None).doprint(expr)
    code = eval(f"lambda {', '.join(map(str, args))}: {text}", namespace())
    grid = np.array(np.meshgrid(*[POINTS] * len(args))).reshape(len(args), -1)
    want = _expected(name, list(grid))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow or 1/0 on the way either
        if printer == "numpy":
            got = np.asarray(code(*grid), dtype=float) + np.zeros(grid.shape[1])
        else:
            got = np.array([code(*map(float, column)) for column in grid.T])
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-300, err_msg=f"{text}")


POWERS = [sympy.Rational(k, 2) for k in range(-9, 10, 2)] + [
    sympy.Integer(k) for k in (-4, -1, 2, 3, 4, 5)] + [sympy.Rational(1, 3)]


@pytest.mark.parametrize("printer", sorted(PRINTERS))
@pytest.mark.parametrize("exp", POWERS, ids=str)
def test_every_printer_spells_a_power_as_the_power(printer, exp):
    """``x ** exp`` at positive points is the power (1e-14 relative); integer exponents
    up to 4 and half-integer ones up to 9/2 print without ``**`` (a ``pow`` call per
    element, which keeps a loop from vectorising): products and one square root."""
    x = sympy.Symbol("a0", positive=True)
    cls, namespace = PRINTERS[printer]
    text = cls("f64", read=None).doprint(x ** exp)
    spelled_out = (exp.q == 1 and abs(exp) <= 4) or (exp.q == 2 and abs(exp) <= 9 / 2)
    assert ("**" in text) != spelled_out, text
    code = eval(f"lambda a0: {text}", namespace())
    points = np.array([1e-3, 0.37, 1.0, 2.5, 1e3])
    got = (np.asarray(code(points), dtype=float) if printer == "numpy" else
           np.array([code(float(p)) for p in points]))
    np.testing.assert_allclose(got, points ** float(exp), rtol=1e-14, err_msg=text)


@functools.cache
def generated() -> dict[str, str]:
    """The generated module of :data:`MODEL` for every target, by target name."""
    variants = [(Options.make(target=t, optimizer="adam"), "k" * 64) for t in TARGETS]
    texts, _, _ = compile_sources(Source(MODEL, "tables.grad"), variants)
    return dict(zip(TARGETS, texts))


def undefined_names(text: str) -> set[str]:
    """The global names the module's functions read that it neither defines nor imports
    and that are no builtins (what would raise NameError when the function runs)."""
    top = symtable.symtable(text, "<module>", "exec")
    defined = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
    missing, todo = set(), list(top.get_children())
    while todo:
        table = todo.pop()
        todo += table.get_children()
        for s in table.get_symbols():
            if s.is_global() and s.is_referenced() and s.get_name() not in defined:
                missing.add(s.get_name())
    module_attributes = {"__file__", "__name__", "__doc__", "__spec__", "__loader__"}
    return missing - set(dir(builtins)) - module_attributes


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_name_the_runtime_calls_is_defined_in_every_module(target):
    """The shared runtime calls the target's hooks (``_check``, ``_fresh``, ``_epoch``,
    ...) and the module's tables: a hook a target forgot would be a NameError at a call."""
    text = generated()[target]
    assert "_epoch" in text and "_check" in text
    assert undefined_names(text) == set()


def test_undefined_names_finds_a_missing_hook():
    """The check above can fail: a module without its ``_fresh`` hook is caught."""
    text = generated()["numpy"]
    start = text.index("\ndef _fresh(")
    end = text.index("\ndef ", start + 1)
    assert "_fresh" in undefined_names(text[:start] + text[end:])


def test_a_background_compile_has_a_value_for_every_required_argument():
    """Each public function a background compile calls (jacobian's forward, jvp and vjp
    in its place) has a dummy value for every argument it requires."""
    assert set(warm.CALLS) <= set(ENTRIES)
    called = {fn for entry in ENTRIES for fn in warm.calls(entry)}
    assert called <= set(ENTRIES) and "jacobian" not in called
    required = {p for fn in called for p, needed in ENTRIES[fn].arguments() if needed}
    assert required <= set(warm.ARGUMENTS), required - set(warm.ARGUMENTS)


def test_a_background_compile_calls_every_entry(tmp_path, monkeypatch):
    """What the warm process runs for each entry (:func:`gradc.runtime.warm.main`'s loop),
    on the numpy module (no Numba): every call it makes accepts the dummy arguments."""
    import sys

    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "gradc_tables_numpy.py").write_text(generated()["numpy"])
    module = importlib.import_module("gradc_tables_numpy")
    try:
        names = [n for n in ENTRIES if hasattr(module, n)]
        assert {"train_step", "train_epoch", "hvp", "jacobian"} <= set(names)
        for name in names:
            for fn in warm.calls(name):
                warm.compile_entry(module, fn)
    finally:
        sys.modules.pop("gradc_tables_numpy", None)
