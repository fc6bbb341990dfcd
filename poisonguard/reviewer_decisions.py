"""A reviewer's decisions about flagged samples, read from a CSV file (``sanitize --decisions``).

A person who reviewed a scan's flags writes what they decided in a CSV file with the header
``id,decision,note`` (other columns are ignored) and one row per sample they decided about:

* ``id``: the sample's id, as ``scores.csv`` writes it (a leading ``'`` that makes a cell
  spreadsheet-safe is removed, :mod:`poisonguard.csv_safety`);
* ``decision``: ``keep`` (the sample stays in the cleaned copy with its own label, even if the
  scan flagged it) or ``remove`` (it is left out, even if the scan did not flag it); case and
  surrounding blanks do not matter;
* ``note``: free text, may be empty; it is copied into ``quarantine.csv``.

Samples the file does not name follow the scan. The file comes from outside (a browser export, a
spreadsheet), so it is held to the same rules as ``scores.csv``: it must be UTF-8 (a byte-order
mark is allowed) and at most :data:`MAX_BYTES` long, every id must be a sample of the dataset
and appear once, and every error names the file and the line.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from poisonguard import csv_safety
from poisonguard.dataset import Dataset
from poisonguard.errors import DatasetError
from poisonguard.limits import format_bytes

__all__ = ["COLUMNS", "DECISIONS", "MAX_BYTES", "ReviewerDecisions", "read_reviewer_decisions"]

COLUMNS = ("id", "decision", "note")
DECISIONS = ("keep", "remove")
MAX_BYTES = 64 << 20
"""Largest decisions file read (64 MiB: a million decisions with notes of 40 characters)."""


@dataclass(frozen=True)
class ReviewerDecisions:
    """What a reviewer decided, per sample of the dataset.

    ``keep`` and ``remove`` are boolean masks over the dataset's samples (never both true);
    ``note`` holds the reviewer's note of each decided sample (empty elsewhere).
    """

    path: Path
    keep: np.ndarray
    remove: np.ndarray
    note: np.ndarray

    @property
    def decided(self) -> np.ndarray:
        return self.keep | self.remove


def read_reviewer_decisions(path: str | Path, dataset: Dataset) -> ReviewerDecisions:
    """Read a decisions CSV file and check every row against ``dataset``.

    Raises
    ------
    DatasetError
        Naming the file: missing, too large, unreadable, a column missing, and, with the line, a
        row of the wrong length, an id that is not a sample of the dataset or is repeated, or a
        decision other than keep or remove.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(
            path, "no decisions file here (a CSV file with columns id,decision,note)"
        )
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise DatasetError(path, f"cannot read the decisions ({exc})") from exc
    if len(data) > MAX_BYTES:
        raise DatasetError(
            path,
            f"is larger than {format_bytes(MAX_BYTES)}; a decisions file is one short row "
            "per decided sample",
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(path, f"is not UTF-8 text ({exc})") from exc
    rows = csv_safety.reader(io.StringIO(text, newline=""))
    n = dataset.n_samples
    keep = np.zeros(n, dtype=bool)
    remove = np.zeros(n, dtype=bool)
    note = np.full(n, "", dtype=object)
    try:
        header = next(rows, None)
        if not header:
            raise DatasetError(path, "is empty; expected the header id,decision,note")
        header = [name.strip().lower() for name in header]
        missing = [name for name in COLUMNS if name not in header]
        if missing:
            raise DatasetError(
                path,
                f"lacks the column(s) {', '.join(missing)}; the header must name "
                f"{','.join(COLUMNS)}",
            )
        column = {name: header.index(name) for name in COLUMNS}
        index = {sample_id: i for i, sample_id in enumerate(dataset.ids)}
        first_line: dict[int, int] = {}
        for line, row in enumerate(rows, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise DatasetError(
                    path, f"line {line} has {len(row)} fields, the header {len(header)}"
                )
            sample_id = row[column["id"]]
            i = index.get(sample_id)
            if i is None:
                raise DatasetError(
                    path,
                    f"line {line}: id {_shown(sample_id)} is not a sample of {dataset.path}; "
                    "these decisions belong to another dataset",
                )
            if i in first_line:
                raise DatasetError(
                    path,
                    f"line {line}: id {_shown(sample_id)} is repeated (first on line "
                    f"{first_line[i]}); decide each sample once",
                )
            first_line[i] = line
            decision = row[column["decision"]].strip().lower()
            if decision not in DECISIONS:
                raise DatasetError(
                    path,
                    f"line {line}: decision {_shown(row[column['decision']])} is not keep or "
                    "remove",
                )
            (keep if decision == "keep" else remove)[i] = True
            note[i] = row[column["note"]]
    except csv.Error as exc:
        raise DatasetError(path, f"is not a readable CSV file ({exc})") from exc
    return ReviewerDecisions(path, keep, remove, note)


def _shown(text: str, limit: int = 80) -> str:
    """``text`` quoted for an error message, cut to ``limit`` characters (the file is untrusted:
    an id of a megabyte should not become a message of a megabyte)."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."
