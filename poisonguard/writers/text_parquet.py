"""Write a changed copy of a Parquet text dataset, with pyarrow.

The source is read again whole (every column, not only those the loader reads; the pandas
metadata is not used and nothing is unpickled) and must still hold the loaded texts, labels and
ids. The copy keeps the source's schema (column order and types, field and file metadata) and
every column; it holds the kept rows in ``rows`` order (``Table.take``), with their values as
stored, except:

* the text of a row whose text changed is the new text (UTF-8 bytes in a binary column; a
  dictionary-encoded column stays dictionary-encoded);
* the label of a relabelled row is the label value of the first source row of the new class, of
  the column's own type (a number stays a number, a string a string).

The file is written with ``pyarrow.parquet.write_table`` in row groups of pyarrow's default size,
with the source's compression codec when all its columns used the same one. Without an id
column, the ids of the copy are its row numbers.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from poisonguard.dataset import Dataset
from poisonguard.errors import DatasetError
from poisonguard.loaders.text_parquet import _column_values, _is_bytes_like, _pyarrow
from poisonguard.loaders.text_rows import TextRows, resolve_columns
from poisonguard.writers.text_rows import check_same, first_rows

__all__ = ["write_parquet"]

logger = logging.getLogger(__name__)

_CODECS = {"UNCOMPRESSED": "none", "SNAPPY": "snappy", "GZIP": "gzip", "BROTLI": "brotli",
           "ZSTD": "zstd", "LZ4": "lz4", "LZ4_RAW": "lz4"}  # fmt: skip


def write_parquet(
    source: Dataset,
    target: Path,
    *,
    rows: np.ndarray,
    labels: np.ndarray,
    x: np.ndarray | None,
    x_changed: np.ndarray,
    options: dict,
) -> list[str]:
    """Write the copy of Parquet text dataset ``source`` to ``target`` (a new path; not atomic
    by itself).

    Arguments are those of :func:`poisonguard.writers.write_like`, already validated;
    ``options`` holds ``text_column``/``label_column``/``id_column``.

    Returns
    -------
    list of str
        The id of each written row as the loader will report it: the id column's, else the
        row number in the copy.
    """
    pa, pc, pq = _pyarrow()
    path = Path(source.path)
    try:
        file = pq.ParquetFile(path)
        codec = _codec(file.metadata)
        table = file.read(use_pandas_metadata=False)
        columns = resolve_columns(
            path,
            list(table.schema.names),
            text_column=options.get("text_column"),
            label_column=options.get("label_column"),
            id_column=options.get("id_column"),
        )
        values = {c: _column_values(pa, pc, path, table.column(c), c) for c in columns}
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(path, f"could not be read as Parquet ({exc})") from exc
    reread = TextRows(path, columns)
    ids = values[columns.id] if columns.id is not None else [None] * table.num_rows
    for row, (text, label, sample_id) in enumerate(
        zip(values[columns.text], values[columns.label], ids, strict=True)
    ):
        reread.add(text, label, sample_id, where=f"row {row}")
    check_same(source, reread.dataset(format=source.format))
    del values, reread

    label_column = table.column(columns.label)
    label_values = [label_column[r].as_py() for r in first_rows(source)]
    copy = table.take(pa.array(rows, type=pa.int64()))
    del table
    relabelled = np.flatnonzero(labels != source.labels[rows])
    if relabelled.size:
        new = {int(i): label_values[int(labels[i])] for i in relabelled}
        copy = _replace(pa, copy, columns.label, new)
    if x is not None and np.any(x_changed):
        new = {int(i): x[i] for i in np.flatnonzero(x_changed)}
        copy = _replace(pa, copy, columns.text, new)
    try:
        pq.write_table(copy, target, compression=codec)
    except pa.ArrowException as exc:
        raise DatasetError(path, f"the copy could not be written as Parquet ({exc})") from exc
    if columns.id is None:
        return [str(i) for i in range(rows.shape[0])]
    return [source.ids[r] for r in rows.tolist()]


def _replace(pa, table, name: str, new: dict[int, object]):
    """``table`` with the values of column ``name`` at the positions of ``new`` replaced, in the
    column's own type (text encoded as UTF-8 for a binary column)."""
    at = table.schema.get_field_index(name)
    field = table.schema.field(at)
    value_type = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
    as_bytes = _is_bytes_like(pa, value_type) and not (
        pa.types.is_string(value_type) or pa.types.is_large_string(value_type)
    )
    values = table.column(at).to_pylist()
    for i, value in new.items():
        if as_bytes and isinstance(value, str):
            value = value.encode("utf-8")
        values[i] = value
    array = pa.array(values, type=value_type)
    if array.type != field.type:
        array = array.cast(field.type)
    return table.set_column(at, field, array)


def _codec(metadata) -> str:
    """The compression codec of every column of the source file, else pyarrow's default."""
    found = {
        metadata.row_group(g).column(c).compression
        for g in range(metadata.num_row_groups)
        for c in range(metadata.num_columns)
    }
    if len(found) == 1:
        return _CODECS.get(found.pop(), "snappy")
    return "snappy"
