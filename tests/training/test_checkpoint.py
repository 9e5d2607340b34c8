"""``--resume`` and ``--params`` name a params file or the ``--out`` folder of a run
(gradc.training.checkpoint.params_file), in-process on the numpy target (no Numba
compile: what is tested is which files are read)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gradc.cli import main
from gradc.training.checkpoint import PARAMS_FILE, params_file
from tests.harness.cli import SPIRAL


def test_params_file_resolves_a_folder_to_its_params(tmp_path):
    (tmp_path / "run").mkdir()
    assert params_file(str(tmp_path / "run")) == tmp_path / "run" / PARAMS_FILE
    assert params_file(str(tmp_path / "p.npz")) == tmp_path / "p.npz"   # a file, or none
    (tmp_path / "q.npz").write_bytes(b"")
    assert params_file(str(tmp_path / "q.npz")) == tmp_path / "q.npz"


def _run(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def _data(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((60, 2)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=(x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0))
    return tmp_path / "d.npz"


def test_resume_and_predict_read_a_run_folder_as_its_files(capsys, tmp_path):
    """``--resume DIR`` continues from DIR/params.npz with the optimizer state and history
    beside it, exactly as ``--resume DIR/params.npz`` does (the same params after the
    resumed epoch); ``predict --params DIR`` reads DIR/params.npz; a folder without one is
    a user error naming it."""
    data = _data(tmp_path)
    common = ("train", SPIRAL, "--data", data, "--target", "numpy", "--batch-size", 16,
              "--quiet", "--no-progress")
    assert _run(capsys, *common, "--epochs", 2, "--out", tmp_path / "first")[0] == 0
    for name, resume in (("by_file", tmp_path / "first" / PARAMS_FILE),
                         ("by_folder", tmp_path / "first")):
        code, err = _run(capsys, *common, "--epochs", 3, "--resume", resume,
                         "--out", tmp_path / name)
        assert code == 0, err
        assert f"resuming from {tmp_path / 'first' / PARAMS_FILE} after epoch 2" in err, err
        assert "resumed adam state" in err, err
    with np.load(tmp_path / "by_file" / PARAMS_FILE) as a, \
            np.load(tmp_path / "by_folder" / PARAMS_FILE) as b:
        assert a.files == b.files
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k])
    rows = (tmp_path / "by_folder" / "history.csv").read_text().strip().splitlines()[1:]
    # the history continued from the folder's history.csv: 2 epochs there, 3 more here
    assert [int(r.split(",")[0]) for r in rows] == [1, 2, 3, 4, 5]

    preds = {}
    for name, params in (("file", tmp_path / "first" / PARAMS_FILE),
                         ("folder", tmp_path / "first")):
        out = tmp_path / f"preds_{name}.npz"
        code, err = _run(capsys, "predict", SPIRAL, "--params", params, "--data", data,
                         "--target", "numpy", "--no-progress", "--out", out)
        assert code == 0, err
        with np.load(out) as f:
            preds[name] = f["scores"]
    np.testing.assert_array_equal(preds["file"], preds["folder"])

    (tmp_path / "empty").mkdir()
    code, err = _run(capsys, *common, "--epochs", 1, "--resume", tmp_path / "empty",
                     "--out", tmp_path / "none")
    assert code == 2
    assert err.strip() == (f"{tmp_path / 'empty' / PARAMS_FILE}: error: no {PARAMS_FILE} "
                           f"in the folder {tmp_path / 'empty'} (--resume)")
