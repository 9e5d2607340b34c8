"""gradc.dask on a LocalCluster of 2 worker processes (1 thread each): data-parallel
training equals single-process training (float64, 1e-10), from dask arrays and from
.npz shards, also when a worker process is killed mid-run; sweeps; bad input gives a
clear error (exit 2 from the CLI) and nothing hangs.

The module compiles one tiny f64 model once; the workers and the CLI subprocesses load
its kernels from the session's cache (conftest's GRADC_CACHE_DIR).
"""

from __future__ import annotations

import csv
import logging
import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # (every test here takes more than a few seconds)

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")

import gradc  # noqa: E402
from gradc.dask import fit, open_cluster  # noqa: E402
from gradc.errors import GradcError  # noqa: E402
from gradc.training.data import analyse, split, take  # noqa: E402
from gradc.training.history import History  # noqa: E402
from gradc.training.loop import Config  # noqa: E402
from gradc.training.loop import fit as single_fit  # noqa: E402

from tests.harness.paths import ROOT  # noqa: E402

TINY = """model tiny

input  x : f64[B, 3]
input  y : i64[B]

param  W1 : f64[3, 8] ~ he_normal
param  b1 : f64[8]    ~ zeros
param  W2 : f64[8, 3] ~ he_normal
param  b2 : f64[3]    ~ zeros

h      = tanh(x @ W1 + b1)
output scores = h @ W2 + b2
loss   = cross_entropy(scores, y) + 1e-3 * sum(W1 ^ 2)
"""
N, VAL, EPOCHS, BATCH, LR, SEED = 120, 0.25, 3, 16, 0.05, 3


def arrays() -> dict:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((N, 3))
    return {"x": x, "y": ((x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5))}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The model file, the data as one .npz and as a folder of 3 shards."""
    d = tmp_path_factory.mktemp("dask")
    (d / "tiny.grad").write_text(TINY, encoding="utf-8")
    data = arrays()
    np.savez(d / "data.npz", **data)
    (d / "shards").mkdir()
    for i, (lo, hi) in enumerate(((0, 50), (50, 100), (100, N))):
        np.savez(d / "shards" / f"part{i}.npz", **{k: a[lo:hi] for k, a in data.items()})
    return d


@pytest.fixture(scope="module")
def model(files):
    return gradc.compile(files / "tiny.grad", optimizer="adam")


@pytest.fixture(scope="module")
def oracle(model):
    """Single-process training (the loop of gradc train, one train_step per minibatch)
    with the same split, seed and batch order: the params and the history."""
    train, val = split(arrays(), VAL, SEED)
    params = model.init_params(SEED)
    model.reset_optimizer()
    history = single_fit(model, params, train, val, analyse(model.signature),
                         Config(EPOCHS, BATCH, LR, SEED, progress=False, quiet=True,
                                fused=False), History())
    state = dict(model.state)
    model.reset_optimizer()
    return params, history, state


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=logging.ERROR) as lc, \
            distributed.Client(lc) as client:
        yield client


@pytest.fixture
def client(cluster):
    """The module's client with both workers up (a killed worker is restarted by its
    nanny)."""
    cluster.wait_for_workers(2, timeout=120)
    return cluster


def run_fit(model, client, data, **kw):
    model.reset_optimizer()
    kw = {"epochs": EPOCHS, "batch_size": BATCH, "lr": LR, "seed": SEED, "val_split": VAL,
          **kw}
    return fit(model, client, data, model.init_params(SEED), **kw)


def max_diff(a: dict, b: dict) -> float:
    return max(float(np.abs(np.asarray(a[k]) - np.asarray(b[k])).max()) for k in a)


def dask_data(chunks=50) -> dict:
    return {k: da.from_array(a, chunks=(chunks,) + a.shape[1:]) for k, a in arrays().items()}


def test_dask_arrays_train_as_single_process_f64(model, client, oracle):
    params, history, state = oracle
    result = run_fit(model, client, dask_data())
    assert max_diff(result.params, params) < 1e-10
    assert model.state["step"] == state["step"]
    assert max_diff({k: v for k, v in model.state.items() if ":" in k},
                    {k: v for k, v in state.items() if ":" in k}) < 1e-10
    assert (result.n_train, result.n_val) == (N - round(VAL * N), round(VAL * N))
    for mine, theirs in zip(result.history.rows, history.rows, strict=True):
        assert mine.epoch == theirs.epoch
        for col in ("train_loss", "val_loss", "train_acc", "val_acc"):
            assert getattr(mine, col) == pytest.approx(getattr(theirs, col), abs=1e-10)
    assert len(result.workers) == 2 and all(s.rows > 0 for s in result.workers.values())
    assert not result.events
    assert not any(compiler_loaded(client).values())    # the model arrived compiled


def test_npz_shards_train_as_single_process(model, client, oracle, files):
    result = run_fit(model, client, files / "shards")
    assert max_diff(result.params, oracle[0]) < 1e-10


def test_one_step_equals_train_step_on_the_global_batch(model, client, files):
    """batch_size = all samples: one step, whose gradient is combined from both workers'
    slices of one .npz file; model.train_step on the whole minibatch gives the same."""
    result = run_fit(model, client, files / "data.npz", epochs=1, batch_size=N, val_split=0)
    assert result.history.rows[-1].epoch == 1
    order = np.random.default_rng([SEED, 1]).permutation(N)
    params = model.init_params(SEED)
    model.reset_optimizer()
    model.train_step(params, LR, **take(arrays(), order))
    assert max_diff(result.params, params) < 1e-10


def test_killed_worker_partitions_reload_and_training_continues(model, client, oracle):
    pids = client.run(os.getpid)
    victim = sorted(pids)[1]

    def kill(step):
        if step == 4:
            os.kill(pids[victim], signal.SIGKILL)

    result = run_fit(model, client, dask_data(), on_step=kill)
    assert max_diff(result.params, oracle[0]) < 1e-10
    assert len(result.events) == 1 and victim in result.events[0]
    assert "reloaded" in result.events[0]
    survivor = next(a for a in pids if a != victim)
    assert result.workers[survivor].rows > result.workers[victim].rows


def compiler_loaded(client) -> dict:
    """Worker -> whether it imported the compiler proper (gradc.pipeline)."""
    return client.run(lambda: "gradc.pipeline" in sys.modules)


def test_sweep_of_four_settings_ships_the_compiled_model(model, client, files, tmp_path):
    """gradc sweep over lr x batch_size: 4 trials, the table, the plot and the best
    params, which are those of gradc train's loop (fused epochs) with the best setting;
    no worker ran the compiler."""
    grid = [(lr, bs) for lr in (0.05, 0.01) for bs in (16, 64)]
    train, val = split(arrays(), VAL, SEED)
    expected = {}
    for lr, bs in grid:         # single-process runs (they also warm the kernels here)
        expected[lr, bs] = params = model.init_params(SEED)
        model.reset_optimizer()
        single_fit(model, params, train, val, analyse(model.signature),
                   Config(2, bs, lr, SEED, progress=False, quiet=True), History())
    model.reset_optimizer()
    out = tmp_path / "sweep"
    r = gradc_cli("sweep", files / "tiny.grad", "--data", files / "data.npz", "--grid",
                  "lr=0.05,0.01", "batch_size=16,64", "--epochs", 2, "--val-split", VAL,
                  "--seed", SEED, "--cluster", client.scheduler.address, "--out", out)
    assert r.returncode == 0, r.stdout + r.stderr
    with open(out / "results.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert {(float(t["lr"]), int(t["batch_size"])) for t in rows} == set(grid)
    assert all(not t["error"] for t in rows)
    best = [t for t in rows if t["best"] == "yes"]
    assert len(best) == 1
    assert float(best[0]["val_loss"]) == min(float(t["val_loss"]) for t in rows)
    assert (out / "sweep.png").stat().st_size > 0
    setting = (float(best[0]["lr"]), int(best[0]["batch_size"]))
    assert max_diff(model.load_params(out / "best_params.npz"), expected[setting]) < 1e-10
    assert not any(compiler_loaded(client).values())


def test_partition_with_wrong_dtype_or_shape_is_named(model, client, files, tmp_path):
    bad = tmp_path / "shards"
    bad.mkdir()
    data = arrays()
    np.savez(bad / "a.npz", **{k: a[:60] for k, a in data.items()})
    np.savez(bad / "b.npz", x=data["x"][60:].astype(np.float32), y=data["y"][60:])
    with pytest.raises(GradcError, match=r"b\.npz: error: array 'x' has dtype float32"):
        run_fit(model, client, bad)
    np.savez(bad / "b.npz", x=np.ones((60, 4)), y=data["y"][60:])
    with pytest.raises(GradcError, match=r"b\.npz: error: array 'x' has shape \[60, 4\]"):
        run_fit(model, client, bad)


def test_bad_dask_arrays_are_named(model, client):
    good = dask_data()
    with pytest.raises(ValueError, match="missing array 'y'"):
        run_fit(model, client, {"x": good["x"]})
    with pytest.raises(ValueError, match=r"data\['x'\]: dtype float32"):
        run_fit(model, client, {**good, "x": good["x"].astype(np.float32)})
    with pytest.raises(ValueError, match=r"data\['x'\]: shape \[120, 4\]"):
        run_fit(model, client, {**good, "x": da.ones((N, 4), chunks=50)})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cluster_address_that_does_not_answer():
    address = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(GradcError, match="no Dask scheduler answers"):
        with open_cluster(address, timeout=1):
            pass
    with pytest.raises(GradcError, match="expected local:N"):
        with open_cluster("somewhere", timeout=1):
            pass


def test_bad_sweep_grid_is_named():
    from gradc.dask.sweep import parse_grid
    assert parse_grid(["lr=0.1,0.01", "batch_size=32"]) == {"lr": [0.1, 0.01],
                                                            "batch_size": [32]}
    for item, reason in (("lr=fast", "must be a number"), ("depth=3", "NAME one of"),
                         ("batch_size=0", "must be positive"),
                         ("optimizer=rmsprop", "one of sgd")):
        with pytest.raises(GradcError, match=f"--grid '{item}'.*{reason}"):
            parse_grid([item])


def test_batchnorm_model_is_refused(client):
    bn = gradc.compile_string(TINY.replace("h      = tanh(x @ W1 + b1)",
                                           "layer  bn = batchnorm(8)\n"
                                           "h      = tanh(bn(x @ W1 + b1))"), name="bn")
    with pytest.raises(GradcError, match="batchnorm"):
        fit(bn, client, dask_data())


def gradc_cli(*args, timeout=300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "gradc", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout)


def documented_order(model) -> dict:
    """The params after EPOCHS epochs as the docs define them: a train_step per minibatch
    of default_rng([SEED, epoch]).permutation(n_train) cut into BATCH rows."""
    train, _ = split(arrays(), VAL, SEED)
    params, state = model.init_params(SEED), {}
    for epoch in range(1, EPOCHS + 1):
        order = np.random.default_rng([SEED, epoch]).permutation(len(train["y"]))
        for start in range(0, len(order), BATCH):
            model.train_step(params, LR, state=state,
                             **take(train, order[start:start + BATCH]))
    return params


def test_cli_train_on_a_local_cluster(model, oracle, files, tmp_path):
    """gradc train in one process (its fused train_epoch) = the documented order =
    gradc train --cluster local:2, each to 1e-10 in float64."""
    runs = {}
    for name, extra in (("single", ()), ("cluster", ("--cluster", "local:2"))):
        out = runs[name] = tmp_path / name
        r = gradc_cli("train", files / "tiny.grad", "--data", files / "data.npz", *extra,
                      "--epochs", EPOCHS, "--batch-size", BATCH, "--lr", LR, "--seed", SEED,
                      "--val-split", VAL, "--optimizer", "adam", "--out", out)
        assert r.returncode == 0, r.stdout + r.stderr
    out = runs["cluster"]
    want = documented_order(model)
    assert max_diff(model.load_params(runs["single"] / "params.npz"), want) < 1e-10
    assert max_diff(model.load_params(out / "params.npz"), want) < 1e-10
    assert max_diff(model.load_params(out / "params.npz"), oracle[0]) < 1e-10
    with open(out / "history.csv", newline="", encoding="utf-8") as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [1, 2, 3]
    with open(out / "workers.csv", newline="", encoding="utf-8") as f:
        assert len(list(csv.DictReader(f))) == 2
    assert (out / "loss.png").stat().st_size > 0 and (out / "optimizer.npz").exists()
    assert "samples/s" in r.stdout


def test_cli_bad_input_exits_2_with_the_reason(files, client, tmp_path):
    bad = tmp_path / "shards"
    bad.mkdir()
    np.savez(bad / "only.npz", x=arrays()["x"])
    r = gradc_cli("train", files / "tiny.grad", "--data", bad, "--cluster",
                  client.scheduler.address, "--out", tmp_path / "o")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "only.npz: error: missing array 'y'" in r.stderr
    assert "Traceback" not in r.stderr
    r = gradc_cli("train", files / "tiny.grad", "--data", files / "data.npz", "--cluster",
                  f"tcp://127.0.0.1:{free_port()}", "--out", tmp_path / "o")
    assert r.returncode == 2 and "no Dask scheduler answers" in r.stderr, r.stderr


def test_sweep_saves_the_best_trials_running_statistics(client, tmp_path):
    """best_params.npz of a batchnorm model holds the best trial's running statistics
    (those of its worker's model, not the driver's untouched inits): a single-process
    fit with the same setting gives the same params and statistics."""
    from gradc.dask.sweep import sweep

    bn = gradc.compile_string(TINY.replace("h      = tanh(x @ W1 + b1)",
                                           "layer  bn = batchnorm(8)\n"
                                           "h      = tanh(bn(x @ W1 + b1))"),
                              name="bn_sweep", target="numpy", optimizer="adam")
    train, val = split(arrays(), VAL, SEED)
    params = bn.init_params(SEED)
    single_fit(bn, params, train, val, analyse(bn.signature),
               Config(2, BATCH, LR, SEED, progress=False, quiet=True), History())
    want = dict(bn.state)
    bn.reset_optimizer()
    result = sweep(bn, client, arrays(), {"lr": [LR]}, epochs=2, batch_size=BATCH,
                   seed=SEED, val_split=VAL, out=tmp_path)
    assert result.best == 0 and not bn.state
    fresh = gradc.compile_string(bn.model_source.text, name="bn_sweep", target="numpy",
                                 optimizer="adam")
    assert max_diff(fresh.load_params(tmp_path / "best_params.npz"), params) < 1e-10
    for key in ("buffer:bn.running_mean", "buffer:bn.running_var"):
        assert np.abs(fresh.state[key] - want[key]).max() < 1e-10
        assert not np.array_equal(fresh.state[key], bn.init_state()[key])


def test_cli_label_option_reaches_the_holders(files, client, tmp_path):
    """--label z on a cluster: the holders measure accuracy against z (the loss takes y);
    the accuracy in history.csv is the one of forward on the saved params against z."""
    (tmp_path / "two.grad").write_text(TINY.replace("input  y : i64[B]\n",
                                                    "input  y : i64[B]\ninput  z : i64[B]\n"),
                                       encoding="utf-8")
    data = arrays()
    z = np.ascontiguousarray((data["x"][:, 2] > 0).astype(np.int64) * 2)
    np.savez(tmp_path / "two.npz", **data, z=z)
    out = tmp_path / "out"
    r = gradc_cli("train", tmp_path / "two.grad", "--data", tmp_path / "two.npz", "--cluster",
                  client.scheduler.address, "--epochs", 1, "--val-split", 0, "--label", "z",
                  "--out", out)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3-class classifier on 'z'" in r.stdout
    two = gradc.compile(tmp_path / "two.grad", target="numpy")
    scores = two.forward(two.load_params(out / "params.npz"), x=data["x"])["scores"]
    with open(out / "history.csv", newline="", encoding="utf-8") as f:
        row = list(csv.DictReader(f))[-1]
    assert float(row["train_acc"]) == pytest.approx(np.mean(scores.argmax(1) == z), abs=5e-7)
    r = gradc_cli("sweep", tmp_path / "two.grad", "--data", tmp_path / "two.npz", "--grid",
                  "lr=0.1", "--cluster", client.scheduler.address, "--label", "x")
    assert r.returncode == 2 and "label 'x': input 'x' is f64" in r.stderr, r.stderr
