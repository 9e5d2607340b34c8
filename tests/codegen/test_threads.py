"""The thread budget (gradc/codegen/threads.py, docs/performance.md): its rules, that a
generated module sets the BLAS thread count they give (read back with threadpoolctl, with
and without threadpoolctl in the module's reach), that results do not depend on the count,
and the --threads / GRADC_NUM_THREADS / worker-share plumbing of the command line."""

from __future__ import annotations

import functools
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from threadpoolctl import ThreadpoolController

import gradc
from gradc import cli
from gradc.codegen import threads
from gradc.codegen.threads import (_FASTER, _MACS_PER_THREAD, _PROBE_CALLS, _PROBE_S, _SLOWER,
                                   _cgroup_cores, _thread_budget, _Threads, _usable_cores)
from gradc.dask import cluster

from tests.harness import seeds

M = _MACS_PER_THREAD

# ------------------------------------------------------------------ the rules


def _cgroup(tmp_path, v2=None, v1=None):
    if v2 is not None:
        (tmp_path / "cpu.max").write_text(v2 + "\n")
    if v1 is not None:
        (tmp_path / "cpu").mkdir()
        (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(f"{v1[0]}\n")
        (tmp_path / "cpu" / "cpu.cfs_period_us").write_text(f"{v1[1]}\n")
    return str(tmp_path)


@pytest.mark.parametrize("v2, v1, cores", [
    ("200000 100000", None, 2),     # two cores' worth
    ("150000 100000", None, 2),     # 1.5 cores: rounded up
    ("50000 100000", None, 1),      # half a core: still one thread
    ("max 100000", None, None),     # no quota
    (None, (300000, 100000), 3),    # cgroup v1
    (None, (-1, 100000), None),     # v1 without quota
    (None, None, None),             # no cgroup files at all
])
def test_cgroup_quota(tmp_path, v2, v1, cores):
    assert _cgroup_cores(_cgroup(tmp_path, v2, v1)) == cores


def test_cores_are_the_affinity_capped_by_the_quota(tmp_path):
    quota = _cgroup(tmp_path, v2="200000 100000")
    assert _usable_cores({}, affinity={0, 1, 2, 3}, root=quota) == 2
    assert _usable_cores({}, affinity={5}, root=quota) == 1
    assert _usable_cores({}, affinity={0, 1, 2}, root=str(tmp_path / "none")) == 3


def test_gradc_num_threads_overrides_affinity_and_quota(tmp_path):
    quota = _cgroup(tmp_path, v2="100000 100000")
    assert _usable_cores({"GRADC_NUM_THREADS": "3"}, affinity={0}, root=quota) == 3
    assert _usable_cores({"GRADC_NUM_THREADS": " "}, affinity={0, 1}, root=quota) == 1
    for bad in ("0", "-2", "two", "1.5"):
        with pytest.raises(ValueError, match="GRADC_NUM_THREADS"):
            _usable_cores({"GRADC_NUM_THREADS": bad}, affinity={0}, root=quota)


def test_size_threshold():
    assert _thread_budget(0, 8) == 1
    assert _thread_budget(2 * M - 1, 8) == 1      # below two threads' worth: one thread
    assert _thread_budget(2 * M, 8) == 2
    assert _thread_budget(5 * M + 7, 8) == 5
    assert _thread_budget(100 * M, 8) == 8        # never more than the cores
    assert _thread_budget(100 * M, 1) == 1


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 1 << 40), st.integers(0, 1 << 40), st.integers(1, 256))
def test_budget_is_bounded_and_monotone(a, b, cores):
    lo, hi = sorted((a, b))
    assert 1 <= _thread_budget(lo, cores) <= _thread_budget(hi, cores) <= cores


def _race(threads, seconds_of, now):
    """Run calls until the race of ``threads`` ends; return the counts used and the time."""
    used = []
    while True:
        n = threads.count(now)
        used.append(n)
        now += seconds_of[n]
        threads.record(n, seconds_of[n], now)
        if threads.until > now:
            return used, now


@pytest.fixture
def idle_machine(monkeypatch):
    """A machine whose load leaves every core idle: ``idle_machine(module)`` makes it so
    for a generated module (whatever the real load is)."""
    return lambda module: monkeypatch.setattr(module, "_idle_cores", lambda own: 64)


@pytest.mark.parametrize("own, load, cpus, idle", [
    (1, 1.0, 2, 2),      # only this process runs: both cores are its
    (1, 2.1, 2, 1),      # another process spins on a core
    (2, 3.0, 2, 1),      # ... while this one runs two threads
    (2, 2.0, 2, 2),      # this one's two threads are the load
    (1, 0.2, 16, 16),    # never more than the CPUs
    (1, 40.0, 16, 1),    # an overloaded machine: at least 1
])
def test_idle_cores_are_the_cpus_less_the_others_load(own, load, cpus, idle):
    assert threads._idle_cores(own, load, cpus) == idle


def test_no_race_while_no_core_is_idle(monkeypatch):
    idle = {"cores": 1}
    monkeypatch.setattr(threads, "_idle_cores", lambda own: idle["cores"])
    plan = _Threads(4, 4)
    assert plan.count(0.0) == 1 and plan.until == _PROBE_S   # one thread, for a while
    assert plan.count(_PROBE_S / 2) == 1
    idle["cores"] = 4                                       # the machine got quiet
    used, _ = _race(plan, {1: 0.010, 4: 0.004}, _PROBE_S)
    assert used == [4, 1] * _PROBE_CALLS and plan.n == 4


@pytest.mark.parametrize("faster, kept", [(1, 1), (4, 4)])
def test_a_race_keeps_the_faster_count_for_a_while(faster, kept, idle_machine):
    idle_machine(threads)
    plan = _Threads(4, 4)
    seconds_of = {1: 0.010, 4: 0.030} if faster == 1 else {1: 0.010, 4: 0.004}
    used, now = _race(plan, seconds_of, 100.0)
    assert used == [4, 1] * _PROBE_CALLS          # alternately, the budget's count first
    assert plan.n == kept and plan.until == pytest.approx(now + _PROBE_S)
    assert plan.count(now + _PROBE_S - 0.001) == kept
    # the load changed meanwhile: the next race, after _PROBE_S, sees it
    seconds_of = {1: seconds_of[4], 4: seconds_of[1]}
    used, _ = _race(plan, seconds_of, now + _PROBE_S)
    assert used == [4, 1] * _PROBE_CALLS and plan.n == (4 if kept == 1 else 1)


def test_a_kept_count_whose_calls_turn_slow_goes_to_one_thread_at_once(idle_machine):
    """Two threads won a race at 4 ms a call; then another process takes a core and the
    calls take 30 ms: after _PROBE_CALLS such calls in a row (not _PROBE_S seconds) the
    plan runs one thread, for _PROBE_S seconds, then races again. Calls within _SLOWER of
    the race's time, or slow calls that are not in a row, keep the count."""
    idle_machine(threads)
    plan = _Threads(2, 2)
    _, now = _race(plan, {1: 0.010, 2: 0.004}, 0.0)
    assert plan.n == 2 and plan.until > now
    for seconds in [0.004 * _SLOWER * 0.99] * 5 + [0.030, 0.030, 0.004] * 3:
        now += seconds
        plan.record(plan.count(now), seconds, now)
        assert plan.n == 2 and plan.until > now          # kept
    for _ in range(_PROBE_CALLS):
        assert plan.count(now) == 2
        now += 0.030
        plan.record(2, 0.030, now)
    assert plan.count(now) == 1 and plan.until == pytest.approx(now + _PROBE_S)
    assert plan.count(now + _PROBE_S - 0.001) == 1
    used, _ = _race(plan, {1: 0.010, 2: 0.004}, now + _PROBE_S)  # quiet again: it fans out
    assert used == [2, 1] * _PROBE_CALLS and plan.n == 2


@pytest.mark.parametrize("ratio, kept", [(_FASTER * 1.01, 1), (_FASTER * 0.99, 4)])
def test_more_threads_must_win_a_race_by_a_margin(ratio, kept, idle_machine):
    idle_machine(threads)
    plan = _Threads(4, 4)
    _race(plan, {1: 0.010, 4: 0.010 * ratio}, 0.0)
    assert plan.n == kept


def test_a_budget_of_one_thread_never_races():
    plan = _Threads(1, 8)
    for now in (0.0, 1e3, 1e6):
        assert plan.count(now) == 1
        plan.record(1, 5.0, now)
    assert plan.until == 0.0 and plan.times == {1: []}


# ------------------------------------------------------------------ generated modules

# Two products per loss_and_grad call: a @ W and a.T @ dz, each N*256*512 multiply-adds.
PRODUCT = """model prod
input  a : {t}[N, 256]
param  W : {t}[256, 512] ~ normal(0.05)
output y = tanh(a @ W)
loss   = sum(y * y)
"""


def _blas_counts():
    return {lib.filepath: lib.num_threads
            for lib in ThreadpoolController().select(user_api="blas").lib_controllers}


def _module(target, dtype="f64"):
    model = gradc.compile_string(PRODUCT.format(t=dtype), "prod", target=target, wait=True)
    model.module._BLAS_THREADS.update(threads=None, setters=None)  # counts are changed behind it
    model.module._LOCAL = type(model.module._LOCAL)()       # no plan (and race) of before
    return model, model.module


@pytest.fixture
def two_threads_at_most():
    """Every BLAS library at 2 threads for the test (or fewer where it cannot have 2);
    yields that count, then restores what was set before."""
    controller = ThreadpoolController()
    with controller.limit(limits=2, user_api="blas"):
        yield min(_blas_counts().values())


@pytest.mark.parametrize("target", ["numpy", "cpu"])
@pytest.mark.parametrize("threadpoolctl_importable", [True, False])
def test_module_sets_the_blas_threads_of_the_budget(target, threadpoolctl_importable,
                                                    two_threads_at_most, monkeypatch,
                                                    idle_machine):
    monkeypatch.setenv("GRADC_NUM_THREADS", "2")
    if not threadpoolctl_importable:  # the standalone module's ctypes path
        monkeypatch.setitem(sys.modules, "threadpoolctl", None)
    model, mod = _module(target)
    idle_machine(mod)
    params = model.init_params(0)
    small = np.full(((2 * M - 1) // (256 * 512), 256), 0.01)  # just below two threads' worth
    model.loss_and_grad(params, a=small)
    assert set(_blas_counts().values()) == {1}
    rows = -(-2 * M // (256 * 512))               # a product of just two threads' worth
    model.loss_and_grad(params, a=np.full((rows, 256), 0.01))
    assert set(_blas_counts().values()) == {two_threads_at_most}
    model.loss_and_grad(params, a=small)          # and back
    assert set(_blas_counts().values()) == {1}
    assert mod._PROGRAMS["loss_and_grad"]["macs"](rows) == rows * 256 * 512


@pytest.mark.parametrize("target", ["numpy", "cpu"])
def test_results_on_one_and_two_threads_differ_by_rounding_at_most(target, two_threads_at_most,
                                                                   monkeypatch, idle_machine):
    """A thread count gives the same bits on every call; one and two threads agree to
    float32 rounding. (Not always to the bit: OpenBLAS's AVX2 kernels (Haswell, Zen) sum a
    product's terms in another order on one thread than on two: on an AMD EPYC a median
    of 2-4 ulp of the result where results differ. Its Sandybridge kernels give the same
    bits on both, and so did the machines this test ran on before.)"""
    rng = np.random.default_rng(seeds.seed(240))
    model, mod = _module(target, "f32")
    idle_machine(mod)
    params = {"W": (0.05 * rng.standard_normal((256, 512))).astype(np.float32)}
    a = rng.standard_normal((-(-2 * M // (256 * 512)), 256)).astype(np.float32)
    results = {}
    for n in ("1", "2", "2"):
        monkeypatch.setenv("GRADC_NUM_THREADS", n)
        mod._LOCAL = type(mod._LOCAL)()  # plans made afresh
        loss, grads = model.loss_and_grad(params, a=a)
        assert set(_blas_counts().values()) == {min(int(n), two_threads_at_most)}
        if n in results:  # the same thread count again: the same bits
            assert results[n][0] == loss
            np.testing.assert_array_equal(results[n][1], grads["W"])
        results[n] = (loss, grads["W"])
    eps = np.finfo(np.float32).eps
    (loss1, g1), (loss2, g2) = results["1"], results["2"]
    assert abs(loss1 - loss2) <= 64 * eps * abs(loss1)
    np.testing.assert_allclose(g1, g2, rtol=0, atol=64 * eps * np.abs(g1).max())
    assert np.abs(g1).max() > 1  # the tolerance is not vacuous


def test_a_parallel_module_runs_its_loops_on_the_usable_cores(monkeypatch):
    import numba

    monkeypatch.setenv("GRADC_NUM_THREADS", "1")
    model = gradc.compile_string(PRODUCT.format(t="f64"), "prod", parallel=True, wait=True)
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    model.module._LOCAL = type(model.module._LOCAL)()
    loss, _ = model.loss_and_grad(model.init_params(0), a=np.full((4, 256), 0.01))
    assert numba.get_num_threads() == 1 and np.isfinite(loss)


def test_a_bad_gradc_num_threads_is_a_value_error_at_the_call(monkeypatch):
    model, mod = _module("numpy")
    monkeypatch.setenv("GRADC_NUM_THREADS", "lots")
    with pytest.raises(ValueError, match="GRADC_NUM_THREADS: expected a whole number"):
        model.loss_and_grad(model.init_params(0), a=np.zeros((2, 256)))


# ------------------------------------------------------------------ command line, workers


def test_threads_option_sets_the_budget_of_the_process(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GRADC_NUM_THREADS", "")  # unset, and restored after the test
    model = tmp_path / "prod.grad"
    model.write_text(PRODUCT.format(t="f32"))
    argv = ["bench", str(model), "--target", "numpy", "--batch", "4", "--repeats", "1",
            "--dim", "N=4"]
    assert cli.main(argv + ["--threads", "1"]) == 0
    assert threads.os.environ["GRADC_NUM_THREADS"] == "1"
    assert cli.main(argv + ["--threads", "0"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == \
        "--threads must be at least 1, got 0"
    monkeypatch.setenv("GRADC_NUM_THREADS", "many")
    assert cli.main(argv) == 2
    assert capsys.readouterr().err.strip() == \
        "error: GRADC_NUM_THREADS: expected a whole number of threads >= 1, got 'many'"


def test_local_workers_get_their_share_of_the_cores(monkeypatch):
    monkeypatch.setattr(cluster, "_usable_cores", lambda environ: 8)
    assert cluster.worker_env(3, environ={}) == {"GRADC_NUM_THREADS": "2"}
    assert cluster.worker_env(16, environ={}) == {"GRADC_NUM_THREADS": "1"}
    # --threads (or the user's GRADC_NUM_THREADS) is inherited as it is
    assert cluster.worker_env(3, environ={"GRADC_NUM_THREADS": "4"}) == {}


def test_a_scan_counts_its_step_products_per_step():
    """A ``scan``'s BLAS products are its body's, once per time step: here ``xt @ Wx``
    (B*3*4 multiply-adds) and ``h @ Wh`` (B*4*4) at each of T steps; the budget reads
    their mean weighted by their work, (12B)^2 + (16B)^2 over 12B + 16B per step."""
    text = ("input x : f64[B, T, 3]\nparam Wx : f64[3, 4]\nparam Wh : f64[4, 4]\n"
            "fn cell(h, xt) = tanh(xt @ Wx + h @ Wh)\noutput o = scan(cell, x, 4)\n")
    mod = gradc.compile_string(text, "scanmacs", target="numpy").module
    info = mod._PROGRAMS["forward"]
    dims = {"B": 5, "T": 7}
    sizes = [12 * 5] * 7 + [16 * 5] * 7
    assert info["macs"](*(dims[d] for d in info["dims"])) == \
        sum(s * s for s in sizes) // sum(sizes)


# A wide layer and a 2-class head: the head's products are tiny, the wide layer's large.
WIDE = """model wide
input  x : f32[B, 512]
input  y : i64[B]
param  W1 : f32[512, 1024] ~ normal(0.05)
param  W2 : f32[1024, 2] ~ normal(0.05)
output z = relu(x @ W1) @ W2
loss   = cross_entropy(z, y)
"""


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4096))
def test_the_budget_reads_the_products_weighted_by_their_work(batch):
    """``loss_and_grad`` of WIDE makes three products of B*512*1024 multiply-adds (the layer,
    its weight gradient, no input gradient: x is an input) and three of B*1024*2 (the head,
    its weight gradient, the layer's output gradient): the size the budget reads is close
    to the large one's (where the plain mean, about half of it, would keep a product of
    two threads' worth on one), and lies between the smallest and the largest product."""
    info = _wide().module._PROGRAMS["loss_and_grad"]
    big, small = batch * 512 * 1024, batch * 1024 * 2
    sizes = [big] * 2 + [small] * 3
    got = info["macs"](batch)
    assert got == sum(s * s for s in sizes) // sum(sizes)
    assert small <= got <= big and got >= 0.99 * big
    assert got > 2 * (sum(sizes) // len(sizes))  # more than twice the plain mean


@functools.cache
def _wide():
    return gradc.compile_string(WIDE, "wide", target="numpy")
