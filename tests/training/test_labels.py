"""A classifier's labels come from its loss (issue 20, item 1).

``gradc train examples/char_rnn.grad`` measured accuracy against the integer input shaped
like the first output (``chars``, the model's own input) instead of ``next``, the labels
its ``cross_entropy`` takes: the reported accuracy fell while the loss fell. The compiler
now records the loss's labels and scores in ``SIGNATURE["labels"]`` (comparing graph
nodes, not names), :func:`gradc.training.data.analyse` builds the task from it and
``--label NAME`` overrides it. The expected accuracies here are computed from
``forward`` on the same params, never read from the command's output.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

import gradc
from gradc.cli import main
from gradc.errors import GradcError
from gradc.training.data import analyse, check_labels

from tests.harness.paths import ROOT

CHAR_RNN = ROOT / "examples" / "char_rnn.grad"
HEAD = "input x : f32[B, 3]\ninput y : i64[B]\nparam W : f32[3, 4]\n"


def labels_of(text: str, name: str = "m"):
    return gradc.compile_string(text, name, target="numpy").signature["labels"]


@pytest.mark.parametrize("text, expected", [
    # the output's node is the loss's scores, whatever the names
    (HEAD + "output z = x @ W\nloss = cross_entropy(z, y)\n",
     {"input": "y", "output": "z", "classes": 4}),
    (HEAD + "s = x @ W\noutput o = s\nloss = hinge(s, y) + 1e-3 * sum(W ^ 2)\n",
     {"input": "y", "output": "o", "classes": 4}),
    # the same expression written twice is one node (hash-consing)
    (HEAD + "output z = x @ W\nloss = cross_entropy(x @ W, y)\n",
     {"input": "y", "output": "z", "classes": 4}),
    # scores that are no output: the labels, but no scores to take the argmax of
    (HEAD + "z = x @ W\noutput p = softmax(z)\nloss = cross_entropy(z, y)\n",
     {"input": "y", "output": None, "classes": 4}),
    # two label-taking terms: the first the loss reaches
    (HEAD + "input c : i64[B]\nparam V : f32[3, 5]\noutput a = x @ W\noutput b = x @ V\n"
            "loss = hinge(b, c) + cross_entropy(a, y)\n",
     {"input": "c", "output": "b", "classes": 5}),
    # a cross_entropy outside the loss does not count
    (HEAD + "output z = x @ W\noutput ce = cross_entropy(z, y)\nloss = sum(z ^ 2)\n", None),
    # soft targets and regression: no integer labels
    ("input x : f32[B, 3]\ninput t : f32[B, 4]\nparam W : f32[3, 4]\noutput z = x @ W\n"
     "loss = cross_entropy(z, t)\n", None),
    ("input x : f32[B, 3]\ninput t : f32[B, 4]\nparam W : f32[3, 4]\noutput z = x @ W\n"
     "loss = mse(z, t)\n", None),
    ("input x : f32[B, 3]\nparam W : f32[3, 4]\noutput z = x @ W\n", None),   # no loss
])
def test_signature_records_the_labels_and_scores_of_the_loss(text, expected):
    assert labels_of(text) == expected


def test_char_rnn_labels_are_next_not_chars():
    sig = gradc.compile(CHAR_RNN, target="numpy").signature
    assert sig["labels"] == {"input": "next", "output": "logits", "classes": 16}
    task = analyse(sig)
    assert (task.labels, task.output, task.classes) == ("next", "logits", 16)
    assert task.describe() == "16-class classifier on 'next'"
    chars = analyse(sig, label="chars")
    assert (chars.labels, chars.output, chars.classes) == ("chars", "logits", 16)


def test_label_override_must_be_an_integer_input_with_a_fitting_output():
    sig = gradc.compile_string(HEAD + "input c : i64[B, 2]\noutput z = x @ W\n"
                               "loss = cross_entropy(z, y) + 0 * sum(take(W, c, 0))\n",
                               "m", target="numpy").signature
    with pytest.raises(GradcError, match=r"m\.grad: error: label 'x': input 'x' is f32; the "
                                         r"labels must be an integer input \(the model's "
                                         r"integer inputs: y, c\)"):
        analyse(sig, "m.grad", "x")
    with pytest.raises(GradcError, match="label 'why': model 'm' has no input 'why'"):
        analyse(sig, label="why")
    with pytest.raises(GradcError, match=r"label 'c': no output has the shape of 'c' \[B, 2\] "
                                         r"plus a class axis.*outputs: z \[B, 4\]"):
        analyse(sig, label="c")


def test_regression_and_hidden_scores_get_no_accuracy():
    # an integer input shaped like the first output without its last axis is no label
    # unless the loss takes it as one (main called this a 3-class classifier on 'ids')
    reg = gradc.compile_string("input ids : i64[B]\ninput t : f32[B, 3]\n"
                               "layer e = embedding(5 -> 3)\noutput z = ids |> e\n"
                               "loss = mse(z, t)\n", "reg", target="numpy").signature
    task = analyse(reg)
    assert not task.classifier and task.labels is None
    assert task.describe() == "no accuracy (no integer labels in the loss)"
    hidden = analyse(gradc.compile_string(
        HEAD + "z = x @ W\noutput p = softmax(z)\nloss = cross_entropy(z, y)\n", "h",
        target="numpy").signature)
    assert not hidden.classifier and hidden.labels == "y"
    assert "accuracy needs the scores as an output" in hidden.describe()
    # the labels are still range-checked against the scores' class count
    with pytest.raises(GradcError, match=r"labels 'y' must be in 0\.\.3 \(the scores have 4"):
        check_labels("d.npz", {"y": np.array([0, 4])}, hidden)


def test_symbolic_class_count_checks_the_lower_bound_only():
    from gradc.training.data import label_task

    task = label_task({"model": "m", "inputs": {}, "outputs": {},
                       "labels": {"input": "y", "output": "z", "classes": "K"}})
    assert task.classifier and task.classes is None
    assert task.describe() == "classifier on 'y'"
    check_labels("d.npz", {"y": np.array([0, 99])}, task)
    with pytest.raises(GradcError, match="labels 'y' must be at least 0; found -1..0"):
        check_labels("d.npz", {"y": np.array([-1, 0])}, task)


def markov_chars(n: int, seq: int, seed: int) -> dict:
    """Sequences of a 16-symbol Markov chain: ``next[b, t]`` follows ``chars[b, t]``."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(16, 0.3), size=16)
    s = np.zeros((n, seq + 1), np.int64)
    s[:, 0] = rng.integers(0, 16, n)
    for t in range(seq):
        cdf = np.cumsum(p[s[:, t]], axis=1)
        s[:, t + 1] = np.minimum((rng.random(n)[:, None] > cdf).sum(1), 15)
    return {"chars": np.ascontiguousarray(s[:, :-1]), "next": np.ascontiguousarray(s[:, 1:])}


def accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(scores, axis=-1) == labels))


def train(capsys, tmp_path, model: Path, data: dict, *extra) -> tuple[str, list[dict], Path]:
    np.savez(tmp_path / "data.npz", **data)
    out = tmp_path / "out"
    code = main(["train", str(model), "--data", str(tmp_path / "data.npz"), "--out", str(out),
                 "--target", "numpy", "--no-progress", "--val-split", "0", *map(str, extra)])
    printed = capsys.readouterr()
    assert code == 0, printed.out + printed.err
    with open(out / "history.csv", newline="", encoding="utf-8") as f:
        return printed.out, list(csv.DictReader(f)), out


def test_char_rnn_trains_with_accuracy_against_next(capsys, tmp_path):
    data = markov_chars(96, 6, seed=3)
    print("markov_chars seed 3")
    out_text, rows, out = train(capsys, tmp_path, CHAR_RNN, data, "--epochs", 2,
                                "--batch-size", 16)
    assert "16-class classifier on 'next'" in out_text
    model = gradc.compile(CHAR_RNN, target="numpy")
    logits = model.forward(model.load_params(out / "params.npz"), chars=data["chars"])["logits"]
    expected = accuracy(logits, data["next"])
    assert float(rows[-1]["train_acc"]) == pytest.approx(expected, abs=5e-7)
    assert f"accuracy {100 * expected:.1f}%" in out_text
    # the figure of the issue: against the input characters the score is another one
    assert abs(accuracy(logits, data["chars"]) - expected) > 0.05


def test_label_option_measures_against_the_named_input(capsys, tmp_path):
    data = markov_chars(48, 5, seed=4)
    out_text, rows, out = train(capsys, tmp_path, CHAR_RNN, data, "--epochs", 1,
                                "--label", "chars")
    assert "16-class classifier on 'chars'" in out_text
    assert "batch 32, 1 epoch\n" in out_text and "trained 1 epoch in" in out_text
    model = gradc.compile(CHAR_RNN, target="numpy")
    logits = model.forward(model.load_params(out / "params.npz"), chars=data["chars"])["logits"]
    assert float(rows[-1]["train_acc"]) == pytest.approx(accuracy(logits, data["chars"]),
                                                          abs=5e-7)


def test_bad_label_option_is_one_line_and_exit_2(capsys, tmp_path):
    np.savez(tmp_path / "d.npz", **markov_chars(8, 3, seed=0))
    code = main(["train", str(CHAR_RNN), "--data", str(tmp_path / "d.npz"), "--target",
                 "numpy", "--label", "logits", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == (f"{CHAR_RNN}: error: label 'logits': model 'char_rnn' has no "
                           "input 'logits'; the labels must be an integer input (the "
                           "model's integer inputs: chars, next)")


def test_regression_with_an_integer_input_trains_with_losses_only(capsys, tmp_path):
    (tmp_path / "reg.grad").write_text("input ids : i64[B]\ninput t : f32[B, 3]\n"
                                       "layer e = embedding(5 -> 3)\noutput z = ids |> e\n"
                                       "loss = mse(z, t)\n", encoding="utf-8")
    rng = np.random.default_rng(0)
    data = {"ids": rng.integers(0, 5, 40), "t": rng.standard_normal((40, 3), np.float32)}
    out_text, rows, _ = train(capsys, tmp_path, tmp_path / "reg.grad", data, "--epochs", 2)
    assert "no accuracy (no integer labels in the loss)" in out_text
    assert [r["train_acc"] for r in rows] == ["", ""]
    assert "accuracy" not in out_text.split("no accuracy", 1)[1]


def test_scores_that_are_no_output_say_why_there_is_no_accuracy(capsys, tmp_path):
    (tmp_path / "hid.grad").write_text(HEAD + "z = x @ W\noutput p = softmax(z)\n"
                                       "loss = cross_entropy(z, y)\n", encoding="utf-8")
    rng = np.random.default_rng(1)
    data = {"x": rng.standard_normal((24, 3), np.float32), "y": rng.integers(0, 4, 24)}
    out_text, rows, _ = train(capsys, tmp_path, tmp_path / "hid.grad", data, "--epochs", 1)
    assert ("no accuracy: the labels are 'y', but accuracy needs the scores as an output"
            in out_text)
    assert rows[-1]["train_acc"] == ""
