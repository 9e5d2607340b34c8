"""The per-epoch training history and its ``history.csv`` file.

Columns: ``epoch, train_loss, val_loss, train_acc, val_acc, seconds``. Epochs count from 1
and continue across ``--resume``; a value that does not exist (no validation set, not a
classifier) is an empty cell. ``seconds`` is the wall time of that epoch's training steps.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, fields
from pathlib import Path

from gradc.errors import GradcError
from gradc.training.files import replacing

#: the history's file in a run's ``--out`` folder, beside the params (``--resume`` reads it)
HISTORY_FILE = "history.csv"

COLUMNS = ("epoch", "train_loss", "val_loss", "train_acc", "val_acc", "seconds")


@dataclass
class Row:
    """One epoch: losses and accuracies of the params at the end of the epoch."""

    epoch: int
    train_loss: float
    val_loss: float | None = None
    train_acc: float | None = None
    val_acc: float | None = None
    seconds: float = 0.0


class History:
    """The rows of all epochs so far (including those of a resumed run)."""

    def __init__(self, rows: list[Row] | None = None):
        self.rows: list[Row] = list(rows or [])

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def last_epoch(self) -> int:
        """The number of the last epoch recorded (0 when empty)."""
        return self.rows[-1].epoch if self.rows else 0

    def append(self, row: Row) -> None:
        """Add one epoch."""
        self.rows.append(row)

    def column(self, name: str) -> list:
        """The values of one column, None where missing."""
        return [getattr(r, name) for r in self.rows]

    def has(self, name: str) -> bool:
        """True when some row has a value in column ``name``."""
        return any(v is not None for v in self.column(name))

    def write(self, path) -> None:
        """Write ``history.csv`` (through a temporary file renamed over it, so that the file
        is always complete)."""
        with replacing(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(COLUMNS)
            for r in self.rows:
                w.writerow([csv_cell(getattr(r, c)) for c in COLUMNS])

    @classmethod
    def read(cls, path) -> History:
        """Read a ``history.csv`` written by :meth:`write`.

        Raises:
            GradcError: the file is unreadable or has other columns.
        """
        try:
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.reader(f)
                header = next(reader, None)
                if header is None or tuple(header) != COLUMNS:
                    raise GradcError(f"{path}: error: not a gradc history file (columns "
                                     f"{', '.join(COLUMNS)} expected)")
                rows = [_row(path, line) for line in reader if line]
        except (OSError, UnicodeDecodeError) as e:
            raise GradcError(f"{path}: error: cannot read the history: {e}") from None
        return cls(rows)


def csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    return str(value)


def _row(path, line: list[str]) -> Row:
    try:
        values = [None if v == "" else float(v) for v in line]
        kinds = [f.name for f in fields(Row)]
        row = dict(zip(kinds, values))
        row["epoch"] = int(row["epoch"])
        row["seconds"] = row["seconds"] or 0.0
        return Row(**row)
    except (ValueError, TypeError, KeyError) as e:
        raise GradcError(f"{path}: error: bad history row {line}: {e}") from None


def find_history(params_path) -> Path | None:
    """The ``history.csv`` beside a params file (for ``--resume``), if there is one."""
    path = Path(params_path).with_name(HISTORY_FILE)
    return path if path.is_file() else None
