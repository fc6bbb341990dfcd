"""Write a changed copy of a CSV table, keeping the source's text wherever nothing changed.

The source is read with the loader's rules (UTF-8 with an optional byte-order mark, comma
delimiter, ``"`` quotes, the same label and id columns). The copy has:

* the source's lines before and including the header, and its byte-order mark if it had one,
  exactly as they were;
* one record per kept row, in ``rows`` order. A record whose label and features did not change is
  the source's text for that record, byte for byte (quoting, spacing and number formatting
  included). In a changed record only the changed cells are new: the label cell becomes the
  source's label cell of the first row of the new class (so text stays text and ``3`` stays
  ``3``), and a feature cell whose value changed is written as an integer when the value is
  whole and the source cell was an integer, else in the shortest form that reads back as the same
  ``float32`` (``0.1``, ``1e-08``). A changed record is re-quoted with ``csv.writer``: every field
  quoted if the source record was, else only where needed; it keeps the source's line ending;
* no blank lines between records (they carry no sample), no removed rows, no added columns.

A CSV without an id column gets no id column: the ids of the copy are its row numbers
(``"0"`` is the first record), so the caller maps them to source rows through ``rows``.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from poisonguard.dataset import Dataset
from poisonguard.errors import DatasetError
from poisonguard.loaders.columns import DEFAULT_ID_COLUMN, DEFAULT_LABEL_COLUMN, find_column

__all__ = ["write_csv", "write_records"]

logger = logging.getLogger(__name__)

_INTEGER = re.compile(r"\s*[+-]?\d+\s*")
_LINE_ENDINGS = ("\r\n", "\n", "\r")


class _Recorder:
    """Iterates the lines of a text file for ``csv.reader`` and keeps the text of each record."""

    def __init__(self, handle: io.TextIOBase) -> None:
        self._lines: Iterator[str] = iter(handle)
        self._taken: list[str] = []

    def __iter__(self) -> _Recorder:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self._taken.append(line)
        return line

    def take(self) -> str:
        """The text read since the last call (the lines of the record just parsed)."""
        text = "".join(self._taken)
        self._taken.clear()
        return text


@dataclass
class _Source:
    """What the writer needs from the source file."""

    head: str  # the text up to and including the header record
    records: dict[int, tuple[str, list[str]]]  # kept row -> (record text, cells)
    label_cells: list[str]  # per class code: the label cell of the first row of that class
    feature_at: list[int]
    label_at: int
    id_at: int | None


def write_csv(
    source: Dataset,
    target: Path,
    *,
    rows: np.ndarray,
    labels: np.ndarray,
    x: np.ndarray | None,
    x_changed: np.ndarray,
    options: dict,
) -> list[str]:
    """Write the copy of CSV ``source`` to ``target`` (a new path; not atomic by itself).

    Arguments are those of :func:`poisonguard.writers.write_like`, already validated;
    ``options`` holds ``label_column``/``id_column``.

    Returns
    -------
    list of str
        The id of each written row as the loader will report it: the id cell with an id column,
        else the row number in the copy.
    """
    path = Path(source.path)
    try:
        with path.open("rb") as raw:
            has_bom = raw.read(len(codecs.BOM_UTF8)) == codecs.BOM_UTF8
        with path.open(newline="", encoding="utf-8-sig") as handle:
            lines = _Recorder(handle)
            reader = csv.reader(lines)
            try:
                table = _read(source, reader, lines, rows, options)
            except csv.Error as exc:
                raise DatasetError(path, f"line {reader.line_num}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise DatasetError(path, f"is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc

    def records() -> Iterator[str]:
        for i, row in enumerate(rows.tolist()):
            text, cells = table.records[row]
            new_cells = list(cells)
            if labels[i] != source.labels[row]:
                new_cells[table.label_at] = table.label_cells[int(labels[i])]
            if x is not None and x_changed[i]:
                for j, column in enumerate(table.feature_at):
                    new_cells[column] = _feature_text(x[i, j], cells[column])
            yield text if new_cells == cells else _render(new_cells, cells, text)

    write_records(target, table.head, records(), bom=has_bom)
    if table.id_at is None:
        return [str(i) for i in range(rows.shape[0])]
    return [source.ids[r] for r in rows.tolist()]


def write_records(target: Path, head: str, records: Iterable[str], *, bom: bool) -> None:
    """Write a CSV-like file: ``head`` (the source's text up to its header), then each record's
    text, those of unchanged rows as the source held them. A record without a line ending gets
    the head's (or ``"\n"``) unless it is the last; a byte-order mark when ``bom``. Shared by
    the table and the text CSV/TSV writers."""
    ending = _ending(head) or "\n"
    with target.open("w", newline="", encoding="utf-8-sig" if bom else "utf-8") as out:
        out.write(head)
        previous = None
        for record in records:
            if previous is not None:
                out.write(previous if _ending(previous) else previous + ending)
            previous = record
        if previous is not None:
            out.write(previous)


def _ending(text: str) -> str:
    """The line ending ``text`` ends with, or ``""``."""
    return next((e for e in _LINE_ENDINGS if text.endswith(e)), "")


def _read(
    source: Dataset,
    reader: Iterator[list[str]],
    lines: _Recorder,
    rows: np.ndarray,
    options: dict,
) -> _Source:
    """Read the text up to the header, the kept records and one label cell per class.

    Raises :class:`DatasetError` if the file no longer holds the loaded table (other columns,
    rows, labels or ids).
    """
    path = Path(source.path)
    changed = DatasetError(path, "changed since it was loaded (columns, rows, labels or ids)")
    head_parts: list[str] = []
    header = None
    for row in reader:
        head_parts.append(lines.take())
        if any(cell.strip() for cell in row):
            header = [cell.strip() for cell in row]
            break
    if header is None:
        raise changed

    label_column = options.get("label_column")
    label_name = label_column or DEFAULT_LABEL_COLUMN
    label_at = find_column(header, label_name, exact=label_column is not None)
    if label_at is None:
        raise DatasetError(path, f"has no label column {label_name!r}")
    id_column = options.get("id_column")
    if id_column is not None:
        id_at = find_column(header, id_column, exact=True)
        if id_at is None:
            raise DatasetError(path, f"has no id column {id_column!r}")
    else:
        id_at = find_column(header, DEFAULT_ID_COLUMN, exact=False)
        if id_at == label_at:
            id_at = None
    feature_at = [i for i in range(len(header)) if i not in (label_at, id_at)]
    if [header[i] for i in feature_at] != source.feature_names:
        raise changed

    wanted = set(rows.tolist())
    records: dict[int, tuple[str, list[str]]] = {}
    label_cells: dict[int, str] = {}
    index = 0
    for row in reader:
        text = lines.take()
        if not row:
            continue
        if index >= source.n_samples or len(row) != len(header):
            raise changed
        code = int(source.labels[index])
        if row[label_at].strip() != source.class_names[code]:
            raise changed
        if id_at is not None and row[id_at].strip() != source.ids[index]:
            raise changed
        label_cells.setdefault(code, row[label_at])
        if index in wanted:
            records[index] = (text, row)
        index += 1
    if index != source.n_samples or len(label_cells) != source.n_classes:
        raise changed
    return _Source(
        head="".join(head_parts),
        records=records,
        label_cells=[label_cells[c] for c in range(source.n_classes)],
        feature_at=feature_at,
        label_at=label_at,
        id_at=id_at,
    )


def _feature_text(value: float, cell: str) -> str:
    """The text of a feature cell that now holds ``value``.

    The source cell if it reads as the same ``float32``; else an integer for a whole value in a
    cell that held an integer; else the shortest decimal that reads back as the same ``float32``
    (positional, or scientific below 1e-4 and from 1e16).
    """
    value = np.float32(value)
    if np.float32(float(cell)) == value:
        return cell
    if _INTEGER.fullmatch(cell) and float(value).is_integer():
        return str(int(value))
    magnitude = abs(float(value))
    if magnitude == 0 or 1e-4 <= magnitude < 1e16:
        return np.format_float_positional(value, unique=True, trim="0")
    return np.format_float_scientific(value, unique=True, trim="0")


def _render(cells: list[str], old_cells: list[str], old_text: str) -> str:
    """``cells`` as one record with the line ending of ``old_text``, every field quoted if the
    source record was written that way, else quoted only where needed."""
    ending = _ending(old_text)
    quote_all = _format(old_cells, csv.QUOTE_ALL) == old_text[: len(old_text) - len(ending)]
    return _format(cells, csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL) + ending


def _format(cells: list[str], quoting: int) -> str:
    """One record without its line ending (written with ``\\r\\n`` so that cells holding a line
    break are quoted)."""
    buffer = io.StringIO()
    csv.writer(buffer, quoting=quoting, lineterminator="\r\n").writerow(cells)
    return buffer.getvalue()[:-2]
