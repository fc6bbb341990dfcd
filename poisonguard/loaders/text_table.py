"""Read a text dataset from a CSV or TSV file: one sample a row, a text and a label column.

* **CSV** (``.csv``): comma-separated with a header row, cells quoted as spreadsheets and
  Python's ``csv`` module write them (a quoted cell may hold commas, quotes and line breaks). A
  ``.csv`` file is a text dataset when its header has the text column (``text``, or the column
  named with ``--text-column``: :func:`csv_text_column`); without one it is a numeric table
  (:mod:`poisonguard.loaders.csv_table`), as before text was supported.
* **TSV** (``.tsv``): tab-separated with a header row, as IANA's ``text/tab-separated-values``
  defines it: no quoting, so a quote character is part of the text, and a text cannot hold a tab
  or a line break.

Columns, ids and the checks on each row: :mod:`poisonguard.loaders.text_rows`; an error names
the line (the header's line is line 1, a row quoted over several lines is named by its first).
Blank lines are skipped; every other row must have as many fields as the header. The file must
be UTF-8 (a byte-order mark is allowed); it is read whole, after its size is checked against the
limit on what is held in memory.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from poisonguard.dataset import Dataset
from poisonguard.errors import DatasetError
from poisonguard.limits import byte_limit
from poisonguard.loaders.columns import check_header, find_column
from poisonguard.loaders.text_rows import (
    DEFAULT_TEXT_COLUMN,
    TextRows,
    check_text_bytes,
    decode_utf8,
    resolve_columns,
)

__all__ = ["csv_text_column", "load_text_table", "load_tsv"]

logger = logging.getLogger(__name__)

_HEADER_PEEK_BYTES = 1 << 20


def csv_text_column(path: str | Path, text_column: str | None = None) -> str | None:
    """The text column of the CSV file at ``path``, from its first non-blank line, or ``None``
    when it has none (a numeric table).

    Raises :class:`DatasetError` when ``text_column`` is given and the header lacks it. A header
    that cannot be read here (not UTF-8, longer than 1 MiB, unbalanced quotes) gives ``None``:
    the table loader then says what is wrong.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            first = True
            while raw := handle.readline(_HEADER_PEEK_BYTES):
                if len(raw) == _HEADER_PEEK_BYTES and not raw.endswith(b"\n"):
                    return None
                line = raw.decode("utf-8-sig" if first else "utf-8")
                first = False
                if line.strip():
                    break
            else:
                return None
        header = [cell.strip() for cell in next(csv.reader([line]))]
    except (OSError, UnicodeDecodeError, csv.Error, StopIteration):
        return None
    at = find_column(header, text_column or DEFAULT_TEXT_COLUMN, exact=text_column is not None)
    if at is None and text_column is not None:
        columns = ", ".join(repr(c) for c in header)
        raise DatasetError(path, f"has no text column {text_column!r}; the columns are {columns}")
    return None if at is None else header[at]


@contextmanager
def _field_limit(size: int) -> Iterator[None]:
    """Let the ``csv`` module read fields up to ``size`` characters (its default limit is 128
    KiB, less than a long text); restored afterwards."""
    before = csv.field_size_limit()
    csv.field_size_limit(max(before, size + 1))
    try:
        yield
    finally:
        csv.field_size_limit(before)


def load_text_table(
    path: str | Path,
    *,
    delimiter: str = ",",
    text_column: str | None = None,
    label_column: str | None = None,
    id_column: str | None = None,
    max_bytes: int | None = None,
) -> Dataset:
    """Read a CSV (``delimiter=","``) or TSV (``"\\t"``) text dataset.

    Parameters
    ----------
    path : str or Path
        The file.
    delimiter : {",", "\\t"}
        CSV (quoted cells) or TSV (no quoting).
    text_column, label_column, id_column : str, optional
        Column names (defaults ``text``, ``label``, and ``id`` when present; see
        :mod:`poisonguard.loaders.text_rows`).
    max_bytes : int, optional
        The most bytes the texts may take in memory (see :mod:`poisonguard.limits`).

    Returns
    -------
    Dataset
        ``kind="text"``, ``format`` ``"csv"`` or ``"tsv"``, ``x`` the texts (object array of
        ``str``), ids from the id column or the row numbers counted from 0.

    Raises
    ------
    DatasetError
        Naming the file, and the line where that applies: not UTF-8, empty, a missing text,
        label or named id column (listing the columns), duplicate or empty column names, a row
        with the wrong number of fields, an empty text, label or id, a repeated id, fewer than
        two classes, or a file larger than the limit.
    """
    path = Path(path)
    tsv = delimiter == "\t"
    name = "tsv" if tsv else "csv"
    if path.is_dir():
        raise DatasetError(path, f"is a folder, not a {name.upper()} file")
    try:
        size = path.stat().st_size
        check_text_bytes(path, size, byte_limit(max_bytes), source=f"a {size:,}-byte file")
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(path, f"could not be read ({exc})") from exc
    text = decode_utf8(path, data)
    del data
    quoting = csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    with _field_limit(len(text)):
        try:
            return _read_rows(path, reader, name, text_column, label_column, id_column)
        except csv.Error as exc:
            raise DatasetError(path, f"line {reader.line_num}: {exc}") from exc


def _read_rows(
    path: Path,
    reader,
    name: str,
    text_column: str | None,
    label_column: str | None,
    id_column: str | None,
) -> Dataset:
    header = None
    for row in reader:
        if any(cell.strip() for cell in row):
            header = [cell.strip() for cell in row]
            break
    if header is None:
        raise DatasetError(path, "is empty; expected a header row and one row per sample")
    check_header(path, header)
    columns = resolve_columns(
        path, header, text_column=text_column, label_column=label_column, id_column=id_column
    )
    text_at, label_at = header.index(columns.text), header.index(columns.label)
    id_at = None if columns.id is None else header.index(columns.id)
    rows = TextRows(path, columns)
    n_fields = len(header)
    start = reader.line_num + 1
    for row in reader:
        where = f"line {start}"
        start = reader.line_num + 1
        if not row:
            continue
        if len(row) != n_fields:
            raise DatasetError(path, f"{where} has {len(row)} fields but the header has {n_fields}")
        rows.add(row[text_at], row[label_at], None if id_at is None else row[id_at], where=where)
    dataset = rows.dataset(format=name)
    logger.info("%s: read %d texts in %d classes", path, dataset.n_samples, dataset.n_classes)
    return dataset


def load_tsv(
    path: str | Path,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    id_column: str | None = None,
    max_bytes: int | None = None,
) -> Dataset:
    """Read a TSV text dataset (``.tsv``): :func:`load_text_table` with a tab delimiter."""
    return load_text_table(
        path,
        delimiter="\t",
        text_column=text_column,
        label_column=label_column,
        id_column=id_column,
        max_bytes=max_bytes,
    )
