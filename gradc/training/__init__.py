"""Training support for ``gradc train``: data loading and checks, the loop, the history
and the pictures. The command itself is :mod:`gradc.commands.train`.

* :mod:`gradc.training.data`: read an ``.npz``, check it against the model's inputs, split;
* :mod:`gradc.training.loop`: epochs of ``train_step`` with progress bars, evaluation;
* :mod:`gradc.training.history`: ``history.csv``;
* :mod:`gradc.training.checkpoint`: params and optimizer state for ``--resume``;
* :mod:`gradc.training.plots`: ``loss.png`` and ``boundary.png``;
* :mod:`gradc.training.interrupt`: Ctrl-C deferred to the loop's safe points;
* :mod:`gradc.training.files`: outputs written through a temporary file and a rename.
"""

from gradc.training.data import (
    Task,
    analyse,
    check_arrays,
    check_labels,
    load_data,
    read_npz,
    split,
)
from gradc.training.history import History, Row
from gradc.training.loop import Config, evaluate, fit

__all__ = ["Task", "analyse", "check_arrays", "check_labels", "load_data", "read_npz", "split",
           "History", "Row", "Config", "evaluate", "fit"]
