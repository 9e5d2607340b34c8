"""Tests of the command line (gradc.cli, gradc.commands.*) and of gradc.gradcheck.

Most tests call ``main([...])`` in-process (cheap); a few run ``python -m gradc`` in a
subprocess to test what a user's shell sees. All share one GRADC_CACHE_DIR per session, and
only tiny models are compiled with Numba. ``tests/conftest.py`` points GRADC_CACHE_DIR at one
temporary folder per session (subprocesses inherit it).
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gradc.api
from gradc import cli
from gradc.cli import main
from gradc.commands import check as check_cmd
from gradc.gradcheck import CheckResult, check_model, format_results

from tests.harness.paths import ROOT

SCALAR = ROOT / "examples" / "scalar.grad"
MLP = ROOT / "examples" / "mlp.grad"
SEMANTIC = ROOT / "tests" / "ir" / "golden" / "semantic"

# A tiny classifier: integer labels, a float input, a user fn, elementwise built-ins.
TINY = """\
model tiny
input x : f32[B, 3]
input y : i64[B]
param W : f32[3, 4] ~ normal(0.5)
param b : f32[4] ~ zeros
fn swish(z) = z * sigmoid(z)
output logits = swish(x @ W + b) |> tanh
loss = cross_entropy(logits, y) + 0.01 * sum(relu(b))
"""


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny.grad"
    path.write_text(TINY, encoding="utf-8")
    return path


# dropout between two dense layers, then batchnorm in train mode (batch statistics)
DROPOUT_BN = """\
model dropbn
input x : f32[B, 3]
input y : i64[B]
layer fc1 = dense(3 -> 5)
layer dr = dropout(0.3)
layer bn = batchnorm(5)
layer fc2 = dense(5 -> 4)
output logits = x |> fc1 >> dr >> bn >> tanh >> fc2
loss = cross_entropy(logits, y)
"""


@pytest.fixture(scope="session")
def dropout_bn(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "dropbn.grad"
    path.write_text(DROPOUT_BN, encoding="utf-8")
    return path


def gradc_process(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gradc", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def golden_for_path(name: str) -> str:
    """The golden semantic error text as reported for the file named by its full path."""
    text = (SEMANTIC / f"{name}.err").read_text(encoding="utf-8")
    return text.replace(f"{name}.grad:", f"{SEMANTIC / name}.grad:")


def run_main(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------------------- the tool

def test_help_in_a_real_process():
    r = gradc_process("--help")
    assert r.returncode == 0, r.stderr
    for name in ("compile", "check", "show", "graph"):
        assert name in r.stdout
    assert "Exit codes" in r.stdout
    assert "unavailable" not in r.stdout  # every module listed loads and is a command


def test_every_command_module_is_a_command():
    """A module of gradc.commands that the CLI lists defines register and run (helpers
    the commands share are private modules, which the CLI skips): before, the shared
    options and cluster helpers were listed as two broken commands."""
    names = cli.command_modules()
    assert {"compile", "train", "sweep", "bench"} <= set(names)
    for name in names:
        module = importlib.import_module(f"gradc.commands.{name}")
        assert callable(getattr(module, "register", None)), name
        assert callable(getattr(module, "run", None)), name


@pytest.mark.parametrize("name", cli.command_modules())
def test_help_of_each_command(capsys, name):
    code, out, _ = run_main(capsys, name, "--help")
    assert code == 0
    assert out.startswith(f"usage: gradc {name}")


def test_version(capsys):
    code, out, _ = run_main(capsys, "--version")
    assert code == 0 and out.strip() == f"gradc {gradc.__version__}"


def test_no_command_is_a_usage_error(capsys):
    code, _, err = run_main(capsys)
    assert code == 2 and "usage: gradc" in err


def test_bad_arguments_are_usage_errors(capsys):
    assert run_main(capsys, "compile")[0] == 2                       # missing MODEL
    assert run_main(capsys, "compile", SCALAR, "--dtype", "f16")[0] == 2
    assert run_main(capsys, "frobnicate")[0] == 2


def test_internal_error_is_one_line_and_exit_3(capsys, monkeypatch):
    def boom(args):
        raise RuntimeError("boom\nsecond line")
    monkeypatch.setattr("gradc.commands.show.run", boom)
    monkeypatch.delenv("GRADC_DEBUG", raising=False)
    code, _, err = run_main(capsys, "show", SCALAR)
    assert code == 3
    assert err.splitlines()[0] == "gradc: internal error: RuntimeError: boom"
    assert "please report" in err and "Traceback" not in err
    monkeypatch.setenv("GRADC_DEBUG", "1")
    code, _, err = run_main(capsys, "show", SCALAR)
    assert code == 3 and "Traceback" in err


def test_a_broken_command_module_does_not_break_the_others(capsys, monkeypatch):
    monkeypatch.setattr(cli, "command_modules", lambda: ["show", "no_such_command"])
    assert run_main(capsys, "show", SCALAR)[0] == 0
    code, _, err = run_main(capsys, "no_such_command", "x")
    assert code == 3 and "failed to load" in err


@pytest.mark.parametrize("command", ["compile", "check", "show", "graph"])
def test_missing_file_is_a_user_error(capsys, tmp_path, command):
    missing = tmp_path / "nope.grad"
    code, _, err = run_main(capsys, command, missing)
    assert code == 2
    assert err.strip() == f"{missing}: error: cannot read {missing}: No such file or directory"


def test_directory_and_binary_files_are_user_errors(capsys, tmp_path):
    code, _, err = run_main(capsys, "show", tmp_path)
    assert code == 2 and "cannot read" in err
    binary = tmp_path / "b.grad"
    binary.write_bytes(b"\xff\xfe\x00")
    code, _, err = run_main(capsys, "show", binary)
    assert code == 2 and "not UTF-8" in err


def test_model_errors_in_a_real_process(tmp_path):
    bad = tmp_path / "two_errors.grad"
    bad.write_text((SEMANTIC / "two_errors.grad").read_text())
    r = gradc_process("compile", bad.name, cwd=tmp_path)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr == (SEMANTIC / "two_errors.err").read_text()
    assert not (tmp_path / "two_errors_gen.py").exists()


# ----------------------------------------------------------------------------- compile

def test_compile_writes_a_standalone_module_that_runs(capsys, tmp_path):
    out = tmp_path / "scalar_mod.py"
    code, stdout, _ = run_main(capsys, "compile", SCALAR, "-o", out)
    assert code == 0 and stdout.strip() == f"wrote {out}"
    text = out.read_text()
    assert "import gradc" not in text and "from gradc" not in text
    script = ("import sys; sys.modules['gradc'] = None\n"
              "import scalar_mod as m\n"
              "p = m.init_params(0)\n"
              "loss, g = m.loss_and_grad(p)\n"
              "print(loss, float(g['x']), float(g['y']), float(g['z']))\n")
    r = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert [float(v) for v in r.stdout.split()] == [28.0, 4.0, 4.0, 7.0]


def test_compile_default_output_and_stdout(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_main(capsys, "compile", SCALAR, "--optimizer", "adam")
    assert code == 0 and out.strip() == "wrote scalar_gen.py"
    written = (tmp_path / "scalar_gen.py").read_text()
    assert "'adam'" in written
    code, out, _ = run_main(capsys, "compile", SCALAR, "--optimizer", "adam", "-o", "-")
    assert code == 0 and out == written
    code, out, _ = run_main(capsys, "compile", SCALAR, "--no-cache", "-o", "-")
    assert "_JIT = dict(cache=False," in out


def test_compile_prints_warnings_to_stderr(capsys, tmp_path):
    code, out, err = run_main(capsys, "compile", SEMANTIC / "unused_input.grad",
                              "-o", tmp_path / "u.py")
    assert code == 0 and out.startswith("wrote")
    assert "warning: input 'mask' is never used" in err
    assert "^^^^" in err


def test_compile_options_errors(capsys, tiny, tmp_path):
    code, _, err = run_main(capsys, "compile", tiny, "--wrt", "y", "-o", tmp_path / "t.py")
    assert code == 2 and "wrt: input 'y' is i64: no gradient through an integer value" in err
    code, _, err = run_main(capsys, "compile", tiny, "--wrt", "xx", "-o", tmp_path / "t.py")
    assert code == 2 and "did you mean 'x'?" in err
    code, out, _ = run_main(capsys, "compile", tiny, "--target", "cuda", "-o", "-")
    assert code == 0 and "from numba import cuda" in out and "@cuda.jit" in out
    code, _, err = run_main(capsys, "compile", tiny, "--target", "tpu", "-o", "-")
    assert code == 2 and "tpu" in err
    code, _, err = run_main(capsys, "compile", tiny, "-o", tiny)
    assert code == 2 and "refusing to overwrite" in err


def test_compile_error_output_is_the_golden_text(capsys, tmp_path):
    code, out, err = run_main(capsys, "compile", SEMANTIC / "matmul_shapes.grad",
                              "-o", tmp_path / "m.py")
    assert code == 2 and out == ""
    assert err == golden_for_path("matmul_shapes")


# ----------------------------------------------------------------------------- check

@pytest.mark.slow
def test_check_passes_on_correct_models(capsys, tiny):
    code, out, _ = run_main(capsys, "check", SCALAR)
    assert code == 0, out
    assert "ok: all 9 checks" in out
    code, out, _ = run_main(capsys, "check", tiny, "--batch", "3", "--directions", "2")
    assert code == 0, out
    for entry in ("loss_and_grad", "vjp", "jvp"):
        for name in ("W", "b", "x"):
            assert any(line.split()[:2] == [entry, name] for line in out.splitlines())
    assert "B=3" in out and "FAIL" not in out


@pytest.mark.slow
def test_check_on_the_sigmoid_neuron_example(capsys):
    # KNOWN CORE BUG (reported to the lead): fails until gradc/codegen/scalar.py prints
    # Sigmoid(a + b) as exp(-(a + b)); its template "math.exp(-{0})" gives exp(-a + b), so
    # the forward value of every fused sigmoid of a sum is wrong (f = 0.00091, not 0.731,
    # for the lecture notes' w = (2, -3), b = -3, x = (-1, -2)).
    code, out, _ = run_main(capsys, "check", ROOT / "examples" / "sigmoid_neuron.grad")
    assert code == 0, out


@pytest.mark.slow
@pytest.mark.parametrize("model, wrong_name, checks", [
    ("scalar", "y", 9), ("dropout_bn", "bn.beta", 21)])
def test_check_fails_on_wrong_gradients(capsys, monkeypatch, request, model, wrong_name,
                                        checks):
    # a gradient 1% off fails its one row, with dropout and batchnorm too
    path = SCALAR if model == "scalar" else request.getfixturevalue(model)
    real = gradc.api.Model.loss_and_grad

    def wrong(self, params, **inputs):
        loss, grads = real(self, params, **inputs)
        return loss, {k: (v * 1.01 if k == wrong_name else v) for k, v in grads.items()}

    monkeypatch.setattr(gradc.api.Model, "loss_and_grad", wrong)
    code, out, _ = run_main(capsys, "check", path)
    assert code == 1
    failed = [line for line in out.splitlines() if line.endswith("FAIL")]
    assert [line.split()[:2] for line in failed] == [["loss_and_grad", wrong_name]]
    assert f"FAILED: 1 of {checks} checks" in out


@pytest.mark.slow
def test_check_passes_on_a_dropout_batchnorm_model(capsys, dropout_bn):
    # every loss_and_grad of the check draws the same mask (issue 20, item 6: each call
    # drew the next one, and every loss_and_grad row failed with error 1.00e+00)
    code, out, _ = run_main(capsys, "check", dropout_bn)
    assert code == 0, out
    assert "ok: all 21 checks" in out and "FAIL" not in out


def test_check_model_uses_one_mask_per_check():
    # check_model itself, on the numpy target (no Numba), at random points and seeds
    model = gradc.compile_string(DROPOUT_BN, dtype="f64", wrt=["x"], target="numpy")
    seeds = np.random.default_rng(20).integers(0, 2**31, size=3)
    print("seeds", seeds)
    for seed in map(int, seeds):
        rng = np.random.default_rng(seed)
        inputs = {"x": rng.standard_normal((6, 3)), "y": rng.integers(0, 4, 6)}
        params = {k: v + 0.1 * rng.standard_normal(v.shape)
                  for k, v in model.init_params(seed).items()}
        results = check_model(model, inputs, params, directions=2, seed=seed)
        assert len(results) == 21 and all(r.ok for r in results), (seed, results)


def test_check_label_ranges_come_from_the_scores(tiny):
    from gradc.commands import front_graph
    graph, _ = front_graph(MLP, dtype="f64")
    assert check_cmd.class_counts(graph, {}, 4) == {"y": 10}
    inputs = check_cmd.make_inputs(graph, {"B": 7}, 4, seed=0)
    assert inputs["x"].shape == (7, 3072) and inputs["x"].dtype == np.float64
    assert inputs["y"].dtype == np.int64 and inputs["y"].shape == (7,)
    assert 0 <= inputs["y"].min() and inputs["y"].max() < 10


class _Quadratic:
    """A hand-written 'model': loss = sum(tanh(x @ W)^2), output o = tanh(x @ W)."""

    signature = {"loss": True, "outputs": {"o": ("f64", ("B", 2))},
                 "tangents": {"W": ("f64", (3, 2)), "x": ("f64", ("B", 3))}}

    def __init__(self, bug: float = 1.0):
        self.bug = bug

    def forward(self, params, x):
        return {"o": np.tanh(x @ params["W"])}

    def loss_and_grad(self, params, x):
        o = np.tanh(x @ params["W"])
        g = 2 * o * (1 - o ** 2)
        return float(np.sum(o ** 2)), {"W": x.T @ g * self.bug, "x": g @ params["W"].T}

    def vjp(self, params, cots, x):
        o = np.tanh(x @ params["W"])
        g = cots["o"] * (1 - o ** 2)
        return {"W": x.T @ g, "x": g @ params["W"].T}

    def jvp(self, params, tangents, x):
        o = np.tanh(x @ params["W"])
        t = (tangents["x"] @ params["W"] + x @ tangents["W"]) * (1 - o ** 2)
        return {"o": o}, {"o": t}


def test_check_model_on_a_hand_written_model():
    rng = np.random.default_rng(0)
    params, inputs = {"W": rng.standard_normal((3, 2))}, {"x": rng.standard_normal((5, 3))}
    results = check_model(_Quadratic(), inputs, params)
    assert [(r.entry, r.name) for r in results] == [
        ("loss_and_grad", "W"), ("loss_and_grad", "x"), ("vjp", "W"), ("vjp", "x"),
        ("jvp", "W"), ("jvp", "x")]
    assert all(r.ok and r.max_error < 1e-7 for r in results), results
    assert results[0].shape == (3, 2)
    bad = check_model(_Quadratic(bug=1.001), inputs, params)
    assert [r.name for r in bad if not r.ok] == ["W"]


def test_format_results_table():
    results = [CheckResult("loss_and_grad", "W", (3, 2), 1e-9, True),
               CheckResult("vjp", "W", (3, 2), float("inf"), False)]
    text = format_results(results, 1e-5)
    assert text.splitlines()[0].split() == ["entry", "name", "shape", "max", "rel", "error",
                                           "status"]
    assert "[3, 2]" in text and text.splitlines()[2].endswith("FAIL")
    assert text.splitlines()[-1] == "FAILED: 1 of 2 checks above tolerance 1e-05"


# ----------------------------------------------------------------------------- show

def test_show_prints_interface_graph_and_rules(capsys, tiny):
    code, out, _ = run_main(capsys, "show", tiny)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("model tiny")
    assert any(line.split() == ["W", "f32[3,", "4]", "~", "normal(0.5)"] for line in lines)
    assert any(line.split() == ["b", "f32[4]", "~", "zeros"] for line in lines)
    assert any(line.split() == ["y", "i64[B]"] for line in lines)
    assert "  %2 = param W : f32[3, 4]   # tiny.grad:4" in lines
    assert any("= ewise tanh(a0) (" in line and "# logits, tiny.grad:7" in line
               for line in lines)
    assert "    swish(z) = z*sigmoid(z)" in lines
    assert "    d/dz swish(z) = z*(1 - sigmoid(z))*sigmoid(z) + sigmoid(z)" in lines
    assert "    d/dx relu(x) = step(x)" in lines
    assert "    d/dx tanh(x) = 1 - tanh(x)**2   [kernel: 1 - out**2]" in lines


def test_show_backward_and_rules_of_keyword_builtins(capsys, tmp_path):
    model = tmp_path / "lr.grad"
    model.write_text("input x : f32[B, 2]\nparam w : f32[2]\nfn lin(v) = v @ w\n"
                     "output o = leaky_relu(lin(x), alpha=0.2) |> max(0.5)\n"
                     "loss = mean(o)\n")
    code, out, _ = run_main(capsys, "show", model, "--backward")
    assert code == 0
    assert "loss_and_grad graph" in out and "(d loss/d w)" in out
    assert "lin(v): not elementwise" in out
    assert "leaky_relu(x, alpha=0.2) = where(x > 0, x, 0.2*x)" in out
    assert "d/dx leaky_relu(x, alpha=0.2) = where(x > 0, 1, 0.2)" in out
    assert "d/da max(a, b) = (a == b)/2 + (a > b)" in out


def test_show_reports_model_errors(capsys):
    code, out, err = run_main(capsys, "show", SEMANTIC / "unknown_name.grad")
    assert code == 2 and out == ""
    assert err == golden_for_path("unknown_name")


# ----------------------------------------------------------------------------- graph

def test_graph_writes_dot(capsys, tmp_path):
    import graphviz

    from gradc.commands import front_graph
    out = tmp_path / "mlp.dot"
    code, stdout, _ = run_main(capsys, "graph", MLP, "-o", out)
    assert code == 0 and stdout.strip() == f"wrote {out}"
    text = out.read_text()
    assert text.splitlines()[:2] == ["// gradc graph of model mlp", "digraph mlp {"]
    graph, _ = front_graph(MLP)
    nodes = graph.topo(list(graph.outputs.values()) + [graph.loss])
    assert text.count(" -> ") == sum(len(n.inputs) for n in nodes)
    assert '[label="[B, 3072]"]' in text and 'label="a0: [B, 100]"' in text
    assert "relu(a0)" in text and "peripheries=2" in text
    assert graphviz.Source(text).source == text
    code, backward, _ = run_main(capsys, "graph", MLP, "--backward")
    assert code == 0 and backward.count(" -> ") > text.count(" -> ")
    assert "d loss/d W1" in backward


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_graph_renders_or_explains(capsys, tmp_path, suffix):
    out = tmp_path / f"scalar{suffix}"
    code, _, err = run_main(capsys, "graph", SCALAR, "-o", out)
    if shutil.which("dot"):
        assert code == 0
        data = out.read_bytes()
        assert data.startswith(b"\x89PNG") if suffix == ".png" else b"<svg" in data
    else:
        assert code == 2
        assert err.strip() == (f"gradc graph: rendering {out} needs Graphviz's 'dot' program "
                               "(apt-get install graphviz); write a .dot file instead")


def test_graph_without_dot_program(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    out = tmp_path / "s.png"
    code, _, err = run_main(capsys, "graph", SCALAR, "-o", out)
    assert code == 2 and "needs Graphviz's 'dot' program" in err and not out.exists()


def test_graph_user_errors(capsys, tmp_path):
    code, _, err = run_main(capsys, "graph", SCALAR, "-o", tmp_path / "g.jpg")
    assert code == 2 and "suffix" in err
    nol = tmp_path / "noloss.grad"
    nol.write_text("input x : f32[B, 2]\noutput o = tanh(x)\n")
    code, _, err = run_main(capsys, "graph", nol, "--backward")
    assert code == 2 and "declares no loss" in err
