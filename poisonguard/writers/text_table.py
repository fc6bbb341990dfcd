"""Write a changed copy of a CSV or TSV text dataset, keeping the source's text wherever nothing
changed.

The source is read again with the loader's rules (:mod:`poisonguard.loaders.text_table`: UTF-8
with an optional byte-order mark, the same text, label and id columns; CSV quoted, TSV not) and
must still hold the loaded texts, labels and ids. The copy has:

* the source's lines before and including the header, and its byte-order mark if it had one,
  exactly as they were;
* one record per kept row, in ``rows`` order. A record whose label and text did not change is
  the source's text for that record, byte for byte (quoting, spacing, line ending). In a changed
  record only the changed cells are new: the label cell becomes the source's label cell of the
  first row of the new class (so ``" pos"`` stays ``" pos"`` and ``3`` stays ``3``), the text
  cell the new text. A changed CSV record is re-quoted with ``csv.writer``: every field quoted
  if the source record was, else only where needed (a text with commas, quotes or line breaks);
  a changed TSV record is its fields joined by tabs. Both keep the source record's line ending;
* no blank lines between records (they carry no sample), no removed rows, no added columns.

TSV has no quoting: a new text holding a tab or a line break cannot be written, and is refused
with an :class:`~poisonguard.errors.OutputError` before anything is written.

Without an id column, the ids of the copy are its row numbers (``"0"`` is the first record), so
the caller maps them to source rows through ``rows``.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from poisonguard.dataset import Dataset
from poisonguard.errors import DatasetError
from poisonguard.loaders.columns import check_header
from poisonguard.loaders.text_rows import TextRows, decode_utf8, resolve_columns
from poisonguard.loaders.text_table import _field_limit
from poisonguard.writers.csv_table import _ending, _Recorder, _render, write_records
from poisonguard.writers.text_rows import (
    changed_error,
    check_same,
    check_text_free_of,
    first_rows,
)

__all__ = ["write_text_csv", "write_tsv"]

logger = logging.getLogger(__name__)

_TSV_FORBIDDEN = "\t\r\n"


@dataclass
class _Source:
    """What the writer needs from the source file."""

    head: str  # the text up to and including the header record
    records: dict[int, tuple[str, list[str]]]  # kept row -> (record text, cells)
    label_cells: list[str]  # per class code: the label cell of the first row of that class
    text_at: int
    label_at: int
    has_ids: bool


def write_text_csv(
    source: Dataset,
    target: Path,
    *,
    rows: np.ndarray,
    labels: np.ndarray,
    x: np.ndarray | None,
    x_changed: np.ndarray,
    options: dict,
) -> list[str]:
    """Write the copy of CSV text dataset ``source`` to ``target`` (a new path; not atomic by
    itself).

    Arguments are those of :func:`poisonguard.writers.write_like`, already validated;
    ``options`` holds ``text_column``/``label_column``/``id_column``.

    Returns
    -------
    list of str
        The id of each written row as the loader will report it: the id cell with an id column,
        else the row number in the copy.
    """
    return _write(source, target, ",", rows, labels, x, x_changed, options)


def write_tsv(
    source: Dataset,
    target: Path,
    *,
    rows: np.ndarray,
    labels: np.ndarray,
    x: np.ndarray | None,
    x_changed: np.ndarray,
    options: dict,
) -> list[str]:
    """:func:`write_text_csv` for a TSV text dataset (tab-separated, no quoting). A new text
    holding a tab or a line break is an :class:`~poisonguard.errors.OutputError`."""
    return _write(source, target, "\t", rows, labels, x, x_changed, options)


def _write(
    source: Dataset,
    target: Path,
    delimiter: str,
    rows: np.ndarray,
    labels: np.ndarray,
    x: np.ndarray | None,
    x_changed: np.ndarray,
    options: dict,
) -> list[str]:
    tsv = delimiter == "\t"
    if tsv and x is not None:
        new_texts = [(r, x[i]) for i, r in enumerate(rows.tolist()) if x_changed[i]]
        check_text_free_of(
            source,
            new_texts,
            _TSV_FORBIDDEN,
            "a TSV file cannot hold in a text (it has no quoting)",
        )
    path = Path(source.path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(path, f"could not be read ({exc})") from exc
    has_bom = data.startswith(codecs.BOM_UTF8)
    text = decode_utf8(path, data)
    del data
    lines = _Recorder(io.StringIO(text, newline=""))
    quoting = csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL
    reader = csv.reader(lines, delimiter=delimiter, quoting=quoting)
    with _field_limit(len(text)):
        try:
            table = _read(source, reader, lines, rows, options)
        except csv.Error as exc:
            raise DatasetError(path, f"line {reader.line_num}: {exc}") from exc
    del text

    def records() -> Iterator[str]:
        for i, row in enumerate(rows.tolist()):
            record, cells = table.records[row]
            new_cells = list(cells)
            if labels[i] != source.labels[row]:
                new_cells[table.label_at] = table.label_cells[int(labels[i])]
            if x is not None and x_changed[i]:
                new_cells[table.text_at] = x[i]
            if new_cells == cells:
                yield record
            elif tsv:
                yield "\t".join(new_cells) + _ending(record)
            else:
                yield _render(new_cells, cells, record)

    write_records(target, table.head, records(), bom=has_bom)
    if not table.has_ids:
        return [str(i) for i in range(rows.shape[0])]
    return [source.ids[r] for r in rows.tolist()]


def _read(
    source: Dataset,
    reader,
    lines: _Recorder,
    rows: np.ndarray,
    options: dict,
) -> _Source:
    """Read the text up to the header, the kept records and one label cell per class, checking
    every sample as the loader does; raise :class:`DatasetError` if the file no longer holds the
    loaded dataset."""
    path = Path(source.path)
    head_parts: list[str] = []
    header = None
    for row in reader:
        head_parts.append(lines.take())
        if any(cell.strip() for cell in row):
            header = [cell.strip() for cell in row]
            break
    if header is None:
        raise changed_error(source)
    check_header(path, header)
    columns = resolve_columns(
        path,
        header,
        text_column=options.get("text_column"),
        label_column=options.get("label_column"),
        id_column=options.get("id_column"),
    )
    text_at, label_at = header.index(columns.text), header.index(columns.label)
    id_at = None if columns.id is None else header.index(columns.id)
    n_fields = len(header)
    first = {row: code for code, row in enumerate(first_rows(source))}
    wanted = set(rows.tolist())
    records: dict[int, tuple[str, list[str]]] = {}
    label_cells: dict[int, str] = {}
    reread = TextRows(path, columns)
    index = 0
    start = reader.line_num + 1
    for row in reader:
        where = f"line {start}"
        start = reader.line_num + 1
        record = lines.take()
        if not row:
            continue
        if len(row) != n_fields or index >= source.n_samples:
            raise changed_error(source)
        reread.add(row[text_at], row[label_at], None if id_at is None else row[id_at], where=where)
        if index in first:
            label_cells[first[index]] = row[label_at]
        if index in wanted:
            records[index] = (record, row)
        index += 1
    check_same(source, reread.dataset(format=source.format))
    return _Source(
        head="".join(head_parts),
        records=records,
        label_cells=[label_cells[c] for c in range(source.n_classes)],
        text_at=text_at,
        label_at=label_at,
        has_ids=id_at is not None,
    )
