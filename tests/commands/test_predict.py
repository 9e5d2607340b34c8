"""``gradc predict MODEL --params P --data X [--out preds.npz]`` (issue 20).

Every output of ``forward`` on the file's samples, run in chunks of ``--batch-size``, is
written to ``--out``; the loss and the accuracy are printed when the file holds what they
need. The expected values are computed here with the model's own functions on the whole
data at once (one call, no chunks), never read from the command's output. The numpy target
keeps the tests free of Numba compiles; one test runs the default CPU target.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import gradc
from gradc.cli import main

from tests.harness.paths import ROOT

XOR = ROOT / "examples" / "xor.grad"
CHAR_RNN = ROOT / "examples" / "char_rnn.grad"
SEED = 20


@pytest.fixture(scope="module")
def xor():
    """The xor model, params drawn with SEED, 50 labelled samples (seed printed)."""
    print(f"seed {SEED}")
    model = gradc.compile(XOR, target="numpy")
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((50, 2), dtype=np.float32)
    return model, model.init_params(SEED), x, (x[:, 0] * x[:, 1] > 0).astype(np.int64)


def predict(capsys, *args) -> tuple[int, str, str]:
    code = main(["predict", *map(str, args)])
    printed = capsys.readouterr()
    return code, printed.out, printed.err


def files(tmp_path, model, params, **arrays) -> tuple[Path, Path]:
    model.save_params(params, tmp_path / "params.npz")
    np.savez(tmp_path / "data.npz", **arrays)
    return tmp_path / "params.npz", tmp_path / "data.npz"


def test_outputs_loss_and_accuracy_in_chunks(capsys, tmp_path, xor):
    model, params, x, y = xor
    p, d = files(tmp_path, model, params, x=x, y=y)
    out = tmp_path / "preds.npz"
    code, text, err = predict(capsys, XOR, "--params", p, "--data", d, "--out", out,
                              "--batch-size", 7, "--target", "numpy")
    assert code == 0, err
    logits = model.forward(params, x=x)["logits"]
    with np.load(out) as saved:
        assert saved.files == ["logits"]
        assert saved["logits"].dtype == np.float32
        np.testing.assert_allclose(saved["logits"], logits, rtol=1e-6, atol=1e-7)
    loss = model.loss(params, x=x, y=y)
    acc = np.mean(np.argmax(logits, axis=1) == y)
    assert "data " + str(d) + ": 50 samples; 2-class classifier on 'y'" in text
    line = next(s for s in text.splitlines() if s.startswith("loss "))
    found = re.fullmatch(r"loss (\S+), accuracy (\S+)% \(50 samples\)", line)
    assert found, line
    assert float(found[1]) == pytest.approx(loss, rel=1e-3)
    assert found[2] == f"{100 * acc:.1f}"
    assert f"wrote {out}: logits float32 [50, 2]" in text


def test_without_labels_only_the_outputs(capsys, tmp_path, xor):
    model, params, x, _ = xor
    p, d = files(tmp_path, model, params, x=x)
    out = tmp_path / "o.npz"
    code, text, err = predict(capsys, XOR, "--params", p, "--data", d, "--out", out,
                              "--target", "numpy", "--progress")
    assert code == 0, err
    assert "no labels 'y' in the file: outputs only" in text
    assert not any(s.startswith(("loss", "accuracy")) for s in text.splitlines())
    with np.load(out) as saved:
        np.testing.assert_allclose(saved["logits"], model.forward(params, x=x)["logits"],
                                   rtol=1e-6, atol=1e-7)
    assert "samples" in err       # the progress bar


def test_char_rnn_accuracy_is_against_next_and_label_overrides(capsys, tmp_path):
    model = gradc.compile(CHAR_RNN, target="numpy")
    params = model.init_params(1)
    rng = np.random.default_rng(SEED)
    chars = rng.integers(0, 16, (30, 5))
    nxt = np.ascontiguousarray(np.roll(chars, -1, axis=1))
    p, d = files(tmp_path, model, params, chars=chars, next=nxt)
    logits = model.forward(params, chars=chars)["logits"]
    for extra, labels in (((), nxt), (("--label", "chars"), chars)):
        code, text, err = predict(capsys, CHAR_RNN, "--params", p, "--data", d, "--out",
                                  tmp_path / "c.npz", "--batch-size", 8, "--target", "numpy",
                                  *extra)
        assert code == 0, err
        acc = np.mean(np.argmax(logits, axis=-1) == labels)
        assert f"accuracy {100 * acc:.1f}% (30 samples)" in text, text


def test_an_output_that_is_not_per_sample_is_computed_on_all_samples(capsys, tmp_path):
    (tmp_path / "tot.grad").write_text("input x : f64[B, 3]\nparam W : f64[3, 2]\n"
                                       "output z = x @ W\noutput total = sum(x @ W)\n",
                                       encoding="utf-8")
    model = gradc.compile(tmp_path / "tot.grad", target="numpy")
    params = model.init_params(SEED)
    x = np.random.default_rng(SEED).standard_normal((11, 3))
    p, d = files(tmp_path, model, params, x=x)
    code, text, err = predict(capsys, tmp_path / "tot.grad", "--params", p, "--data", d,
                              "--out", tmp_path / "t.npz", "--batch-size", 4, "--target",
                              "numpy")
    assert code == 0, err
    assert "no accuracy (no integer labels in the loss)" in text
    with np.load(tmp_path / "t.npz") as saved:
        assert saved["total"] == pytest.approx(float(np.sum(x @ params["W"])), rel=1e-12)
        np.testing.assert_allclose(saved["z"], x @ params["W"], rtol=1e-12)


def test_regression_target_in_the_file_gives_the_loss(capsys, tmp_path):
    (tmp_path / "reg.grad").write_text("input x : f64[B, 3]\ninput t : f64[B, 2]\n"
                                       "param W : f64[3, 2]\noutput z = x @ W\n"
                                       "loss = mse(z, t)\n", encoding="utf-8")
    model = gradc.compile(tmp_path / "reg.grad", target="numpy")
    params = model.init_params(SEED)
    rng = np.random.default_rng(SEED)
    x, t = rng.standard_normal((9, 3)), rng.standard_normal((9, 2))
    p, d = files(tmp_path, model, params, x=x, t=t)
    code, text, err = predict(capsys, tmp_path / "reg.grad", "--params", p, "--data", d,
                              "--out", tmp_path / "r.npz", "--batch-size", 3, "--target",
                              "numpy")
    assert code == 0, err
    expected = np.mean((x @ params["W"] - t) ** 2)
    line = next(s for s in text.splitlines() if s.startswith("loss "))
    assert line == f"loss {expected:.4g} (9 samples)"


def test_default_target_and_out(capsys, tmp_path, monkeypatch, xor):
    model, params, x, y = xor
    p, d = files(tmp_path, model, params, x=x, y=y)
    monkeypatch.chdir(tmp_path)
    code, text, err = predict(capsys, XOR, "--params", p, "--data", d)
    assert code == 0, err
    with np.load(tmp_path / "preds.npz") as saved:
        np.testing.assert_allclose(saved["logits"], model.forward(params, x=x)["logits"],
                                   rtol=1e-5, atol=1e-6)


def test_mistakes_are_one_line_and_exit_2(capsys, tmp_path, xor):
    model, params, x, y = xor
    p, d = files(tmp_path, model, params, x=x, y=y)
    np.savez(tmp_path / "bad_y.npz", x=x, y=y + 1)
    np.savez(tmp_path / "no_x.npz", y=y)
    np.savez(tmp_path / "other.npz", W1=np.zeros((2, 8), np.float32))
    cases = [
        (("--params", tmp_path / "none.npz", "--data", d), "no such params file (--params)"),
        (("--params", tmp_path / "other.npz", "--data", d), "missing array 'b1'"),
        (("--params", p, "--data", tmp_path / "none.npz"), "no such data file"),
        (("--params", p, "--data", tmp_path / "bad_y.npz"), "labels 'y' must be in 0..1"),
        (("--params", p, "--data", tmp_path / "no_x.npz"), "missing array 'x' for input 'x'"),
        (("--params", p, "--data", d, "--label", "x"), "label 'x': input 'x' is f32"),
        (("--params", p, "--data", d, "--batch-size", 0), "--batch-size must be at least 1"),
        (("--params", p, "--data", d, "--out", tmp_path / "no" / "p.npz"), "cannot write it"),
    ]
    for args, reason in cases:
        code, _, err = predict(capsys, XOR, *args, "--target", "numpy")
        assert code == 2, (args, err)
        assert reason in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "no").exists()


def test_a_model_without_outputs_is_refused(capsys, tmp_path):
    (tmp_path / "l.grad").write_text("input x : f32[B, 3]\nparam W : f32[3, 2]\n"
                                     "loss = sum((x @ W) ^ 2)\n", encoding="utf-8")
    model = gradc.compile(tmp_path / "l.grad", target="numpy")
    p, d = files(tmp_path, model, model.init_params(0), x=np.ones((2, 3), np.float32))
    code, _, err = predict(capsys, tmp_path / "l.grad", "--params", p, "--data", d,
                           "--target", "numpy")
    assert code == 2 and "declares no output: nothing to predict" in err
