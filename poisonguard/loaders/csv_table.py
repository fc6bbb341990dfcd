"""Read a table of numeric features and labels from a CSV file.

A CSV file whose header has a text column (``text``, or the one named with ``--text-column``) is
a text dataset instead: :func:`load_csv` hands it to :mod:`poisonguard.loaders.text_table`.

One row per sample, a header row with the column names, comma-separated, UTF-8 (a byte-order
mark is allowed). The label column is ``label`` (or the one named with ``label_column``); an id
column (``id_column``, else a column named ``id`` if there is one) gives the sample ids and is
not a feature; every other column is a numeric feature, read as ``float32``. Blank lines are
skipped. Errors name the file, the line (the header is line 1) and the column.

The table is read whole into one array allocated up front, of (lines in the file) x (feature
columns in the header) ``float32`` values; that size is checked against the limit on what is
held in memory first (:mod:`poisonguard.limits`): a wide header over many blank lines declares
far more than the file holds.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from poisonguard.dataset import Dataset, RowNumbers, encode_labels
from poisonguard.errors import DatasetError
from poisonguard.limits import ByteLimit, byte_limit, check_declared, declared_bytes
from poisonguard.loaders.columns import (
    DEFAULT_ID_COLUMN,
    DEFAULT_LABEL_COLUMN,
    check_header,
    find_column,
)

__all__ = ["load_csv"]

logger = logging.getLogger(__name__)


def _count_lines(path: Path) -> int:
    """An upper bound on the number of rows: newlines plus one."""
    count = 1
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            count += block.count(b"\n")
    return count


def _bad_cell(path: Path, line: int, column: str, cell: str) -> DatasetError:
    """The error for a feature cell that is not a finite number."""
    text = cell.strip()
    where = f"line {line}, column {column!r}"
    if text == "":
        return DatasetError(path, f"{where}: empty cell (missing value); every feature needs one")
    try:
        value = float(text)
    except ValueError:
        return DatasetError(path, f"{where}: {cell!r} is not a number")
    if not math.isfinite(value):
        return DatasetError(path, f"{where}: {cell!r} is not allowed (NaN and inf are refused)")
    return DatasetError(path, f"{where}: {cell!r} could not be read")


def load_csv(
    path: str | Path,
    *,
    label_column: str | None = None,
    id_column: str | None = None,
    text_column: str | None = None,
    max_bytes: int | None = None,
) -> Dataset:
    """Read a CSV table of numeric features with a label column, or a CSV text dataset.

    Parameters
    ----------
    path : str or Path
        The CSV file.
    label_column : str, optional
        Name of the label column; default ``label`` (matched case-insensitively if there is no
        exact match). Labels may be integers or text.
    id_column : str, optional
        Name of the column of sample ids; default ``id`` when present. Without one, the ids are
        the 0-based indices of the data rows (``"0"`` is the first row after the header).
    text_column : str, optional
        The text column of a text dataset (default ``text``, matched case-insensitively). A
        header with that column makes the file a text dataset, read by
        :func:`~poisonguard.loaders.text_table.load_text_table`; when ``text_column`` is given,
        a header without it is an error.
    max_bytes : int, optional
        The most bytes the table may take in memory (see :mod:`poisonguard.limits`; by default
        ``--max-bytes``, else half the memory).

    Returns
    -------
    Dataset
        ``kind="table"``, ``format="csv"``, ``x`` of shape ``(N, D)`` and dtype ``float32``,
        ``feature_names`` the ``D`` feature columns in file order; for a text dataset,
        ``kind="text"`` (see :func:`~poisonguard.loaders.text_table.load_text_table`).

    Raises
    ------
    DatasetError
        Naming the file, and the line and column where that applies: an empty file, a missing
        label or id column (listing the columns), duplicate or empty column names, no feature
        columns, a row with the wrong number of fields, an empty, non-numeric, NaN or infinite
        feature value, an empty or duplicate id, fewer than two classes, or a table whose lines
        and header columns would take more than the limit.
    """
    path = Path(path)
    if path.is_dir():
        raise DatasetError(path, "is a folder, not a CSV file")
    from poisonguard.loaders.text_table import csv_text_column, load_text_table

    if csv_text_column(path, text_column) is not None:
        return load_text_table(
            path,
            text_column=text_column,
            label_column=label_column,
            id_column=id_column,
            max_bytes=max_bytes,
        )
    try:
        capacity = _count_lines(path)
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            try:
                return _read_table(
                    path,
                    reader,
                    capacity,
                    label_column=label_column,
                    id_column=id_column,
                    limit=byte_limit(max_bytes),
                )
            except csv.Error as exc:
                raise DatasetError(path, f"line {reader.line_num}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise DatasetError(path, f"is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise DatasetError(path, f"could not be read ({exc})") from exc


def _read_table(
    path: Path,
    reader: Any,
    capacity: int,
    *,
    label_column: str | None,
    id_column: str | None,
    limit: ByteLimit | None = None,
) -> Dataset:
    """Parse the rows of ``reader`` (a ``csv.reader``, for its ``line_num``) into a Dataset."""
    header = None
    for row in reader:
        if any(cell.strip() for cell in row):
            header = [cell.strip() for cell in row]
            break
    if header is None:
        raise DatasetError(path, "is empty; expected a header row and one row per sample")
    header_line = reader.line_num
    check_header(path, header)
    columns = ", ".join(repr(c) for c in header)

    label_name = label_column or DEFAULT_LABEL_COLUMN
    label_at = find_column(header, label_name, exact=label_column is not None)
    if label_at is None:
        raise DatasetError(
            path,
            f"has no label column {label_name!r}; the columns are {columns}; "
            "use --label-column to name it",
        )
    if id_column is not None:
        id_at = find_column(header, id_column, exact=True)
        if id_at is None:
            raise DatasetError(path, f"has no id column {id_column!r}; the columns are {columns}")
        if id_at == label_at:
            raise DatasetError(path, f"column {id_column!r} cannot be both the label and the id")
    else:
        id_at = find_column(header, DEFAULT_ID_COLUMN, exact=False)
        if id_at == label_at:
            id_at = None
    feature_at = [i for i in range(len(header)) if i not in (label_at, id_at)]
    if not feature_at:
        raise DatasetError(
            path,
            f"has no feature columns (the columns are {columns}); every column other than the "
            "label and id columns must be a numeric feature",
        )
    feature_names = [header[i] for i in feature_at]
    n_fields = len(header)

    check_declared(
        path,
        f"has up to {capacity:,} rows (lines) of {len(feature_at):,} feature columns (in its "
        "header), which would take up to",
        declared_bytes((capacity, len(feature_at)), np.dtype(np.float32).itemsize),
        limit or byte_limit(),
        place=" in memory as float32",
    )
    x = np.empty((capacity, len(feature_at)), dtype=np.float32)
    raw_labels: list[str] = []
    ids: list[str] = []
    id_lines: dict[str, int] = {}
    row_lines: list[int] = []
    n = 0
    for row in reader:
        line = reader.line_num
        if not row:
            continue
        if len(row) != n_fields:
            raise DatasetError(
                path, f"line {line} has {len(row)} fields but the header has {n_fields}"
            )
        cells = [row[i] for i in feature_at]
        try:
            values = [float(cell) for cell in cells]
        except ValueError:
            bad = next(j for j, cell in enumerate(cells) if not _is_float(cell))
            raise _bad_cell(path, line, feature_names[bad], cells[bad]) from None
        if not math.isfinite(sum(values)):
            bad = next((j for j, v in enumerate(values) if not math.isfinite(v)), None)
            if bad is not None:
                raise _bad_cell(path, line, feature_names[bad], cells[bad])
        label = row[label_at].strip()
        if label == "":
            raise DatasetError(path, f"line {line}, column {header[label_at]!r}: empty label")
        if id_at is not None:
            sample_id = row[id_at].strip()
            if sample_id == "":
                raise DatasetError(path, f"line {line}, column {header[id_at]!r}: empty id")
            if sample_id in id_lines:
                raise DatasetError(
                    path,
                    f"line {line}, column {header[id_at]!r}: id {sample_id!r} already used on "
                    f"line {id_lines[sample_id]}; ids must be unique",
                )
            id_lines[sample_id] = line
            ids.append(sample_id)
        if n == capacity:  # cannot happen with the line count as the bound, but stay safe
            x = np.concatenate([x, np.empty_like(x)])
            capacity = x.shape[0]
        with np.errstate(over="ignore"):
            x[n] = values
        raw_labels.append(label)
        row_lines.append(line)
        n += 1

    if n == 0:
        raise DatasetError(path, f"has a header (line {header_line}) but no data rows")
    x = x[:n]
    finite = np.isfinite(x)
    if not finite.all():
        row, col = (int(i) for i in np.argwhere(~finite)[0])
        raise DatasetError(
            path,
            f"line {row_lines[row]}, column {feature_names[col]!r}: value too large for float32",
        )
    labels, class_names = encode_labels(raw_labels, path=path)
    if id_at is None:
        ids = RowNumbers(n)
    logger.info(
        "%s: read %d rows, %d features, %d classes", path, n, len(feature_names), len(class_names)
    )
    return Dataset(
        x=x,
        labels=labels,
        class_names=class_names,
        ids=ids,
        kind="table",
        path=path,
        format="csv",
        feature_names=feature_names,
    )


def _is_float(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
