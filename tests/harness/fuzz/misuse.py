"""The call-time misuse table: every entry of a compiled model, called wrongly.

:func:`cases` lists ``(id, entry, misuse, expected)``: for each public entry (forward, loss,
loss_and_grad, train_step, train_epoch, jvp, vjp, hvp, jacobian) the valid call changed in
one way — params as None, a list, a tuple, a number, missing or extra keys, a param of the
wrong dtype, shape or rank, non-contiguous, read-only (``train_step`` must refuse it: it
updates params in place), a list instead of an array; an input missing, None, a list, of
the wrong dtype (float64, float16, int32, bool, complex, object, big-endian), rank or size,
non-contiguous, an empty batch, a huge batch (a sparse 24 GiB memory map under an
address-space limit), mismatched batch sizes, an unknown input, a positional input; a Python
float, bool, out-of-range int or numpy float as an integer label; lr as a string, None, a
list, a bool, a complex; batch_size 0, negative, a float, a string, None, huge; tangents,
cotangents and vectors as None, lists, with unknown keys, wrong shapes or dtypes; jacobian's
``of``/``wrt`` unknown or None; ``seed``, ``state`` and ``training`` of the wrong type.

``expected`` is ``"ValueError"`` (the contract: a ValueError naming the argument), ``"ok"``
(the call is valid and must work), ``"TypeError|ValueError"`` (Python's own signature errors
are fine) or ``"MemoryError|ValueError"`` (huge batches).

Cases run in worker subprocesses (``python -m tests.harness.fuzz.misuse``), several per worker; a
worker that dies (a segfault) is restarted after the case that killed it, which is recorded
as ``crash:SIGNAL``. The worker first calls every entry validly, so that the generated
fast argument path (active once a workspace exists) is exercised as well as the general one;
each case is then run twice (cold kernel specialisation, then again).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np

from ..paths import ROOT
from .common import Outcome

BATCH = """
model misuse_batch
input  x : f32[B, 3]
input  y : i64[B]
param  W : f32[3, 4]
param  b : f32[4]
output logits = tanh(x @ W + b)
loss   = cross_entropy(logits, y)
"""

LABEL = """
model misuse_label
input  v : f64[3]
input  k : i64
param  W : f64[3, 4]
output s = v @ W
loss   = cross_entropy(s, k)
"""

ENTRIES = ["forward", "loss", "loss_and_grad", "train_step", "train_epoch", "jvp", "vjp",
           "hvp", "jacobian"]
NEEDS_LABELS = {"loss", "loss_and_grad", "train_step", "train_epoch", "hvp"}

VE, OK, TE, ME = "ValueError", "ok", "TypeError|ValueError", "MemoryError|ValueError"


def _valid(model: str = "batch", n: int = 4) -> dict:
    """The valid arguments of a call: params, inputs and the entry's extras."""
    rng = np.random.default_rng(0)
    if model == "batch":
        params = {"W": rng.standard_normal((3, 4)).astype(np.float32),
                  "b": np.zeros(4, np.float32)}
        inputs = {"x": rng.standard_normal((n, 3)).astype(np.float32),
                  "y": rng.integers(0, 4, n).astype(np.int64)}
    else:
        params = {"W": rng.standard_normal((3, 4))}
        inputs = {"v": rng.standard_normal(3), "k": 2}
    return {"params": params, "inputs": inputs}


def call(module, entry: str, params, inputs: dict, extra: dict | None = None):
    """Call ``entry`` of ``module`` with the valid defaults of its other arguments."""
    extra = dict(extra or {})
    fn = getattr(module, entry)
    if entry == "forward":
        return fn(params, **extra, **inputs)
    if entry in ("loss", "loss_and_grad"):
        return fn(params, **extra, **inputs)
    if entry == "train_step":
        return fn(params, extra.pop("lr", 0.1), **extra, **inputs)
    if entry == "train_epoch":
        return fn(params, extra.pop("lr", 0.1), **{"batch_size": 2, **extra}, **inputs)
    if entry == "jvp":
        return fn(params, extra.pop("tangents", {}), **extra, **inputs)
    if entry == "vjp":
        return fn(params, extra.pop("cotangents", {}), **extra, **inputs)
    if entry == "hvp":
        return fn(params, extra.pop("vector", {}), **extra, **inputs)
    if entry == "jacobian":
        return fn(params, of=extra.pop("of", "logits" if "x" in inputs or "y" in inputs
                                         else "s"),
                  wrt=extra.pop("wrt", "W"), **extra, **inputs)
    raise KeyError(entry)


# ----------------------------------------------------------------------------- the table
def _noncontig(a):
    wide = np.repeat(a, 2, axis=-1) if a.ndim else a
    return wide[..., ::2] if a.ndim else a


def _readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def _param_misuses() -> list[tuple[str, Callable, str, set]]:
    """(name, change(args), expected, entries it applies to: empty = all)."""
    def p(fn):
        def change(a):
            a["params"] = fn(a["params"])
        return change

    def one(name, fn):
        def change(a):
            a["params"] = {**a["params"], name: fn(a["params"][name])}
        return change
    return [
        ("params=None", p(lambda ps: None), VE, set()),
        ("params=list", p(lambda ps: list(ps.values())), VE, set()),
        ("params=list-of-names", p(lambda ps: list(ps)), VE, set()),
        ("params=tuple", p(lambda ps: tuple(ps.values())), VE, set()),
        ("params=array", p(lambda ps: ps["W"]), VE, set()),
        ("params=1.0", p(lambda ps: 1.0), VE, set()),
        ("params=str", p(lambda ps: "W"), VE, set()),
        ("params-missing-W", p(lambda ps: {k: v for k, v in ps.items() if k != "W"}), VE,
         set()),
        ("params-extra-key", p(lambda ps: {**ps, "V": ps["W"]}), VE, set()),
        ("params-int-key", p(lambda ps: {**ps, 0: ps["W"]}), VE, set()),
        ("param-None", one("W", lambda w: None), VE, set()),
        ("param-list", one("W", lambda w: w.tolist()), VE, set()),
        ("param-f64", one("W", lambda w: w.astype(np.float64) if w.dtype == np.float32
                          else w.astype(np.float32)), VE, set()),
        ("param-f16", one("W", lambda w: w.astype(np.float16)), VE, set()),
        ("param-int", one("W", lambda w: w.astype(np.int64)), VE, set()),
        ("param-big-endian", one("W", lambda w: w.astype(w.dtype.newbyteorder(">"))), VE,
         set()),
        ("param-shape", one("W", lambda w: np.ascontiguousarray(w.T)), VE, set()),
        ("param-rank", one("W", lambda w: w.reshape(-1)), VE, set()),
        ("param-0d", one("W", lambda w: w[0, 0].copy()), VE, set()),
        ("param-noncontig", one("W", _noncontig), VE, set()),
        ("param-fortran", one("W", lambda w: np.asfortranarray(w)), VE, set()),
        ("param-readonly", one("W", _readonly), OK, {"forward", "loss", "loss_and_grad", "jvp",
                                                     "vjp", "hvp", "jacobian"}),
        ("param-readonly-train", one("W", _readonly), VE, {"train_step", "train_epoch"}),
        ("params-all-readonly-train", p(lambda ps: {k: _readonly(v) for k, v in ps.items()}),
         VE, {"train_step", "train_epoch"}),
    ]


def _input_misuses() -> list[tuple[str, Callable, str, set]]:
    def one(name, fn):
        def change(a):
            a["inputs"] = {**a["inputs"], name: fn(a["inputs"][name])}
        return change

    def drop(name):
        def change(a):
            a["inputs"] = {k: v for k, v in a["inputs"].items() if k != name}
        return change
    lab = NEEDS_LABELS
    return [
        ("x-missing", drop("x"), VE, set()),
        ("x-None", one("x", lambda x: None), VE, set()),
        ("x-list", one("x", lambda x: x.tolist()), VE, set()),
        ("x-tuple", one("x", lambda x: tuple(map(tuple, x.tolist()))), VE, set()),
        ("x-scalar", one("x", lambda x: 1.0), VE, set()),
        ("x-str", one("x", lambda x: "x"), VE, set()),
        ("x-f64", one("x", lambda x: x.astype(np.float64)), VE, set()),
        ("x-f16", one("x", lambda x: x.astype(np.float16)), VE, set()),
        ("x-i32", one("x", lambda x: x.astype(np.int32)), VE, set()),
        ("x-bool", one("x", lambda x: x > 0), VE, set()),
        ("x-complex", one("x", lambda x: x.astype(np.complex64)), VE, set()),
        ("x-object", one("x", lambda x: x.astype(object)), VE, set()),
        ("x-big-endian", one("x", lambda x: x.astype(">f4")), VE, set()),
        ("x-rank1", one("x", lambda x: x.reshape(-1)), VE, set()),
        ("x-rank3", one("x", lambda x: x[None]), VE, set()),
        ("x-width", one("x", lambda x: np.ones((x.shape[0], 5), x.dtype)), VE, set()),
        ("x-noncontig", one("x", _noncontig), VE, set()),
        ("x-transposed-view", one("x", lambda x: np.ascontiguousarray(x.T).T), VE, set()),
        ("x-fortran", one("x", lambda x: np.asfortranarray(x)), VE, set()),
        ("x-readonly", one("x", _readonly), OK, set()),
        ("x-empty-batch", lambda a: a["inputs"].update(x=np.zeros((0, 3), np.float32),
                                                       y=np.zeros(0, np.int64)), VE, set()),
        ("x-subclass-matrix", one("x", lambda x: np.asmatrix(x)), "ok|ValueError", set()),
        ("x-masked", one("x", lambda x: np.ma.masked_array(x)), "ok|ValueError", set()),
        ("x-memmap-readonly", "memmap", OK, set()),
        ("huge-batch", "huge", ME, set()),
        ("y-missing", drop("y"), VE, lab),
        ("y-None", one("y", lambda y: None), VE, lab),
        ("y-f64", one("y", lambda y: y.astype(np.float64)), VE, lab),
        ("y-f32-integral", one("y", lambda y: y.astype(np.float32)), VE, lab),
        ("y-i32", one("y", lambda y: y.astype(np.int32)), VE, lab),
        ("y-uint64", one("y", lambda y: y.astype(np.uint64)), VE, lab),
        ("y-list", one("y", lambda y: y.tolist()), VE, lab),
        ("y-batch-mismatch", one("y", lambda y: np.zeros(y.shape[0] + 1, np.int64)), VE, lab),
        ("y-out-of-range", one("y", lambda y: np.full_like(y, 4)), VE, lab),
        ("y-negative", one("y", lambda y: np.full_like(y, -1)), VE, lab),
        ("y-huge-label", one("y", lambda y: np.full_like(y, 2 ** 62)), VE, lab),
        ("unknown-input", lambda a: a["inputs"].update(X=a["inputs"]["x"]), VE, set()),
        ("input-named-params", lambda a: a["inputs"].update(lr=1.0), TE, set()),
    ]


def _extra_misuses() -> list[tuple[str, dict, str, set]]:
    return [
        ("lr-str", {"lr": "0.1"}, VE, {"train_step", "train_epoch"}),
        ("lr-None", {"lr": None}, VE, {"train_step", "train_epoch"}),
        ("lr-list", {"lr": [0.1]}, VE, {"train_step", "train_epoch"}),
        ("lr-bool", {"lr": True}, VE, {"train_step", "train_epoch"}),
        ("lr-complex", {"lr": 0.1j}, VE, {"train_step", "train_epoch"}),
        ("lr-array", {"lr": np.array([0.1])}, VE, {"train_step", "train_epoch"}),
        ("lr-np-float32", {"lr": np.float32(0.1)}, OK, {"train_step", "train_epoch"}),
        ("lr-int", {"lr": 1}, OK, {"train_step", "train_epoch"}),
        ("lr-0d-array", {"lr": np.array(0.1)}, "ok|ValueError", {"train_step", "train_epoch"}),
        ("batch_size-0", {"batch_size": 0}, VE, {"train_epoch"}),
        ("batch_size-neg", {"batch_size": -3}, VE, {"train_epoch"}),
        ("batch_size-float", {"batch_size": 2.5}, VE, {"train_epoch"}),
        ("batch_size-str", {"batch_size": "2"}, VE, {"train_epoch"}),
        ("batch_size-None", {"batch_size": None}, VE, {"train_epoch"}),
        ("batch_size-bool", {"batch_size": True}, VE, {"train_epoch"}),
        ("batch_size-huge", {"batch_size": 10 ** 18}, OK, {"train_epoch"}),
        ("batch_size-np-int", {"batch_size": np.int64(2)}, "ok|ValueError", {"train_epoch"}),
        ("tangents-None", {"tangents": None}, VE, {"jvp"}),
        ("tangents-list", {"tangents": [np.ones((3, 4), np.float32)]}, VE, {"jvp"}),
        ("tangents-unknown", {"tangents": {"V": np.ones((3, 4), np.float32)}}, VE, {"jvp"}),
        ("tangents-shape", {"tangents": {"W": np.ones((4, 3), np.float32)}}, VE, {"jvp"}),
        ("tangents-dtype", {"tangents": {"W": np.ones((3, 4))}}, VE, {"jvp"}),
        ("tangents-input", {"tangents": {"x": np.ones((4, 3), np.float32)}}, VE, {"jvp"}),
        ("cotangents-None", {"cotangents": None}, VE, {"vjp"}),
        ("cotangents-list", {"cotangents": [np.ones((4, 4), np.float32)]}, VE, {"vjp"}),
        ("cotangents-unknown", {"cotangents": {"out": np.ones((4, 4), np.float32)}}, VE,
         {"vjp"}),
        ("cotangents-shape", {"cotangents": {"logits": np.ones((5, 4), np.float32)}}, VE,
         {"vjp"}),
        ("cotangents-noncontig", {"cotangents": {"logits": np.ones((4, 8), np.float32)[:, ::2]}},
         VE, {"vjp"}),
        ("vector-None", {"vector": None}, VE, {"hvp"}),
        ("vector-list", {"vector": [1.0]}, VE, {"hvp"}),
        ("vector-unknown", {"vector": {"Q": np.ones(4, np.float32)}}, VE, {"hvp"}),
        ("vector-shape", {"vector": {"b": np.ones(5, np.float32)}}, VE, {"hvp"}),
        ("of-unknown", {"of": "nope"}, VE, {"jacobian"}),
        ("of-None", {"of": None}, VE, {"jacobian"}),
        ("wrt-unknown", {"wrt": "nope"}, VE, {"jacobian"}),
        ("wrt-input", {"wrt": "x"}, VE, {"jacobian"}),
        ("wrt-None", {"wrt": None}, VE, {"jacobian"}),
        ("seed-str", {"seed": "abc"}, VE, {"loss", "loss_and_grad", "train_step", "hvp"}),
        ("seed-float", {"seed": 1.5}, "ok|ValueError", {"loss", "loss_and_grad", "train_step"}),
        ("state-list", {"state": []}, VE, {"loss_and_grad", "train_step", "forward"}),
        ("state-str", {"state": "s"}, VE, {"train_step", "train_epoch"}),
        ("state-bad-step", {"state": {"step": "x", "rng": 0}}, VE, {"train_step"}),
        ("training-str", {"training": "yes"}, "ok|ValueError", {"forward"}),
    ]


def cases() -> list[dict]:
    """Every case of the table: id, model, entry, misuse, expected."""
    out = []
    for name, _, exp, only in _param_misuses() + _input_misuses():
        for entry in ENTRIES:
            if only and entry not in only:
                continue
            if name.startswith("y-") and entry not in NEEDS_LABELS:
                continue
            out.append({"id": f"{entry}/{name}", "model": "batch", "entry": entry,
                        "misuse": name, "expected": exp})
    for name, _, exp, only in _extra_misuses():
        for entry in sorted(only):
            out.append({"id": f"{entry}/{name}", "model": "batch", "entry": entry,
                        "misuse": name, "expected": exp})
    for entry in ENTRIES:  # positional arguments after params
        out.append({"id": f"{entry}/positional-input", "model": "batch", "entry": entry,
                    "misuse": "positional-input", "expected": TE})
    for name, exp in [("k-float", VE), ("k-float-integral", VE), ("k-bool", VE),
                      ("k-2**70", VE), ("k-negative", VE), ("k-out-of-range", VE),
                      ("k-np-float64", VE), ("k-np-int32", "ok|ValueError"), ("k-str", VE),
                      ("k-None", VE), ("k-0d-int64", OK), ("k-1d", VE), ("k-np-int64", OK)]:
        for entry in ["loss", "loss_and_grad", "train_step", "hvp"]:
            out.append({"id": f"label:{entry}/{name}", "model": "label", "entry": entry,
                        "misuse": name, "expected": exp})
    return out


K_VALUES = {"k-float": 1.7, "k-float-integral": 1.0, "k-bool": True, "k-2**70": 2 ** 70,
            "k-negative": -1, "k-out-of-range": 4, "k-np-float64": np.float64(1.0),
            "k-np-int32": np.int32(1), "k-str": "1", "k-None": None,
            "k-0d-int64": np.array(1, np.int64), "k-1d": np.array([1], np.int64),
            "k-np-int64": np.int64(1)}


def _apply(case: dict, args: dict, tmp: str) -> tuple[dict, dict]:
    """The arguments of ``case``: (args with params and inputs, extra keywords)."""
    name = case["misuse"]
    if case["model"] == "label":
        args["inputs"]["k"] = K_VALUES[name]
        return args, {}
    for n, change, _, _ in _param_misuses() + _input_misuses():
        if n == name:
            if change == "memmap":
                path = os.path.join(tmp, "x.f32")
                args["inputs"]["x"].tofile(path)
                args["inputs"]["x"] = np.memmap(path, np.float32, "r", shape=(4, 3))
            elif change == "huge":
                rows = 2 ** 31
                path = os.path.join(tmp, "huge.f32")
                with open(path, "wb") as f:
                    f.truncate(rows * 3 * 4)  # sparse: no disk used
                args["inputs"]["x"] = np.memmap(path, np.float32, "r+", shape=(rows, 3))
                args["inputs"]["y"] = np.memmap(path, np.int64, "r+", shape=(rows,))
            else:
                change(args)
            return args, {}
    for n, extra, _, _ in _extra_misuses():
        if n == name:
            return args, dict(extra)
    return args, {}


# -------------------------------------------------------------------------- the worker
def _compile(which: str, target: str):
    import gradc
    return gradc.compile_string(BATCH if which == "batch" else LABEL,
                                name=f"fuzz_misuse_{which}", target=target)


def _warm(models: dict) -> None:
    for which, m in models.items():
        a = _valid(which)
        for entry in ENTRIES:
            if which == "label" and entry in ("train_epoch",):
                continue
            if m.supports(entry):
                call(m, entry, a["params"], a["inputs"])


def _limit_memory(extra_bytes: int):
    """Lower the address-space limit to what is mapped now plus ``extra_bytes``; returns
    the old limits."""
    import resource
    old = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        vm = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (vm + extra_bytes, old[1]))
    return old


def run_case(models: dict, case: dict, tmp: str) -> str:
    """Run one case; return ``ok`` or the exception's type name (and its message)."""
    import resource
    m = models[case["model"]]
    args = _valid(case["model"])
    args, extra = _apply(case, args, tmp)
    entry = case["entry"]
    old = _limit_memory(2 << 30) if case["misuse"] == "huge-batch" else None
    try:
        if case["misuse"] == "positional-input":
            fn = getattr(m, entry)
            lead = {"train_step": (0.1,), "train_epoch": (0.1,), "jvp": ({},), "vjp": ({},),
                    "hvp": ({},)}.get(entry, ())  # jacobian's of and wrt: keyword-only
            fn(args["params"], *lead, args["inputs"]["x"])
        else:
            call(m, entry, args["params"], args["inputs"], extra)
        return "ok"
    except Exception as e:  # noqa: BLE001 - the type is the result
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        return f"{type(e).__name__}: {first}"
    finally:
        if old is not None:
            resource.setrlimit(resource.RLIMIT_AS, old)


def worker(target: str) -> None:
    """Read case ids on stdin, one per line; print ``START id`` and ``END id result``."""
    import tempfile
    by_id = {c["id"]: c for c in cases()}
    models = {w: _compile(w, target) for w in ("batch", "label")}
    _warm(models)
    print("READY", flush=True)
    with tempfile.TemporaryDirectory(prefix="gradc_misuse_") as tmp:
        for line in sys.stdin:
            cid = line.strip()
            if not cid:
                continue
            print("START " + cid, flush=True)
            first = run_case(models, by_id[cid], tmp)
            second = run_case(models, by_id[cid], tmp)  # again: fast path, warm kernels
            print("END " + json.dumps([cid, first, second]), flush=True)


def judge(case: dict, results: list[str]) -> Outcome:
    """The outcome of a case from its results (both runs)."""
    allowed = case["expected"].split("|")
    for r in results:
        kind = r.split(":", 1)[0]
        if kind in allowed:
            continue
        if kind == "ok":
            return Outcome("finding", "misuse:accepted", f"{case['id']}: no error "
                           f"(expected {case['expected']})")
        if case["expected"] == OK:
            return Outcome("finding", "misuse:valid-call-refused", f"{case['id']}: {r}")
        return Outcome("finding", f"misuse:raw:{kind}", f"{case['id']}: {r}")
    return Outcome("ok", "misuse:" + results[0].split(":", 1)[0], case["id"])


def run(ids: list[str] | None = None, target: str = "cpu", timeout: float = 120.0,
        log=None) -> dict[str, Outcome]:
    """Run the cases ``ids`` (default: all) in worker subprocesses; id -> Outcome."""
    table = {c["id"]: c for c in cases()}
    todo = list(ids or table)
    out: dict[str, Outcome] = {}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    while todo:
        proc = subprocess.Popen([sys.executable, "-m", "tests.harness.fuzz.misuse", "--worker",
                                 target],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=str(ROOT), env=env)
        try:
            stdout, stderr = proc.communicate("\n".join(todo) + "\n", timeout=timeout +
                                              10 * len(todo))
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        started = None
        for line in stdout.splitlines():
            if line.startswith("START "):
                started = line[6:]
            elif line.startswith("END "):
                cid, first, second = json.loads(line[4:])
                out[cid] = judge(table[cid], [first, second])
                todo.remove(cid)
                started = None
        if "READY" not in stdout:
            raise RuntimeError(f"the misuse worker did not start:\n{stderr[-3000:]}")
        if started is not None:  # it died in this case
            rc = proc.returncode
            what = (f"crash:{signal.Signals(-rc).name}" if rc is not None and rc < 0
                    else f"crash:exit {rc}")
            out[started] = Outcome("finding", "misuse:" + what.split(" ")[0],
                                   f"{started}: the process died ({what}); "
                                   f"{stderr.strip().splitlines()[-1] if stderr.strip() else ''}")
            todo.remove(started)
        elif todo and proc.returncode not in (0, None):
            raise RuntimeError(f"the misuse worker failed:\n{stderr[-3000:]}")
        if log:
            log(f"misuse worker done: {len(out)} cases, {len(todo)} left")
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2] if len(sys.argv) > 2 else "cpu")
    else:
        t = time.time()
        results = run(target=sys.argv[1] if len(sys.argv) > 1 else "cpu")
        for o in sorted(results.values(), key=lambda o: o.detail):
            if o.kind != "ok":
                print(o.category, o.detail)
        print(f"{len(results)} cases in {time.time() - t:.0f} s")
