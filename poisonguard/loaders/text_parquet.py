"""Read a text dataset from an Apache Parquet file (``.parquet``), with pyarrow.

One sample a row: a text column (``text``, or ``--text-column``) of strings (Parquet ``STRING``,
or ``BYTE_ARRAY`` holding UTF-8), a label column (``label``, or ``--label-column``) of strings or
numbers, and optionally an id column (``--id-column``, else ``id`` when present) of strings or
integers; other columns are not read. Rows are counted from 0, as the ids are when there is no
id column; an error names the row: a missing (null) or empty text, invalid UTF-8, and the checks
of :mod:`poisonguard.loaders.text_rows`.

Sizes are checked twice before anything large is allocated (:mod:`poisonguard.limits`): the
file's metadata declares the uncompressed size of each column and the number of rows, checked
before reading (a small, well-compressed file can declare gigabytes); the columns of text are
then read dictionary-encoded (a value repeated on many rows is held once), and the bytes they
take once expanded to one string a row are checked before they are turned into Python strings.

Reading never unpickles: pyarrow (14.0.1 or newer) does not load the pickled
``arrow.py_extension_type`` columns of untrusted files, and the pandas metadata of a file is
not used.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from poisonguard.dataset import Dataset
from poisonguard.errors import DatasetError
from poisonguard.limits import byte_limit
from poisonguard.loaders.text_rows import TextRows, check_text_bytes, resolve_columns

__all__ = ["load_parquet"]

logger = logging.getLogger(__name__)

PYTHON_STR_BYTES = 64
"""Bytes one text takes in memory besides its characters: a Python ``str`` object (49 bytes and
more) and its slot in the array (8)."""


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError as exc:  # a core dependency: only a broken install lacks it
        raise DatasetError(
            None, f"reading Parquet needs pyarrow ({exc}); install it with: pip install pyarrow"
        ) from exc
    return pa, pc, pq


def _is_bytes_like(pa, data_type) -> bool:
    return (
        pa.types.is_string(data_type)
        or pa.types.is_large_string(data_type)
        or pa.types.is_binary(data_type)
        or pa.types.is_large_binary(data_type)
    )


def _python(pa, path: Path, array, name: str, first_row: int, rows_of=None) -> list[Any]:
    """The values of one arrow array as Python objects; text as ``str``, decoded here so that
    invalid UTF-8 is named by its row (``rows_of(i)``: the first row holding value ``i``)."""
    if not _is_bytes_like(pa, array.type):
        return array.to_pylist()
    wide = pa.types.is_large_string(array.type) or pa.types.is_large_binary(array.type)
    values = array.cast(pa.large_binary() if wide else pa.binary()).to_pylist()
    out: list[Any] = []
    for i, value in enumerate(values):
        if value is None:
            out.append(None)
            continue
        try:
            out.append(value.decode("utf-8"))
        except UnicodeDecodeError as exc:
            row = first_row + (i if rows_of is None else rows_of(i))
            raise DatasetError(
                path,
                f"row {row}: {name!r} is not UTF-8 text ({exc.reason}: byte 0x"
                f"{value[exc.start]:02x} at byte {exc.start + 1})",
            ) from None
    return out


def _column_values(pa, pc, path: Path, column, name: str) -> list[Any]:
    """One column, chunk by chunk; a dictionary-encoded chunk decodes each distinct value once
    and shares it between its rows."""
    out: list[Any] = []
    for chunk in column.chunks:
        start = len(out)
        if pa.types.is_dictionary(chunk.type):
            indices = chunk.indices

            def first_row(value_index: int, indices=indices) -> int:
                return pc.index(indices, value_index).as_py()

            distinct = _python(pa, path, chunk.dictionary, name, start, first_row)
            out.extend(None if i is None else distinct[i] for i in indices.to_pylist())
        else:
            out.extend(_python(pa, path, chunk, name, start))
    return out


def _expanded_bytes(pa, pc, column) -> int:
    """Bytes of the text in ``column`` once each row holds its own string."""
    total = 0
    for chunk in column.chunks:
        if pa.types.is_dictionary(chunk.type):
            if _is_bytes_like(pa, chunk.dictionary.type):
                lengths = pc.take(pc.binary_length(chunk.dictionary), chunk.indices)
                total += pc.sum(lengths).as_py() or 0
        elif _is_bytes_like(pa, chunk.type):
            total += pc.sum(pc.binary_length(chunk)).as_py() or 0
    return total


def load_parquet(
    path: str | Path,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    id_column: str | None = None,
    max_bytes: int | None = None,
) -> Dataset:
    """Read a Parquet text dataset.

    Parameters
    ----------
    path : str or Path
        The ``.parquet`` file.
    text_column, label_column, id_column : str, optional
        Column names (defaults ``text``, ``label``, and ``id`` when present; see
        :mod:`poisonguard.loaders.text_rows`).
    max_bytes : int, optional
        The most bytes the columns read may take in memory (see :mod:`poisonguard.limits`).

    Returns
    -------
    Dataset
        ``kind="text"``, ``format="parquet"``.

    Raises
    ------
    DatasetError
        Naming the file, and the row where that applies: not a Parquet file, a missing column
        (listing the columns), a text column that does not hold text, sizes over the limit, and
        the checks of :mod:`poisonguard.loaders.text_rows`.
    """
    pa, pc, pq = _pyarrow()
    path = Path(path)
    if path.is_dir():
        raise DatasetError(path, "is a folder, not a Parquet file")
    limit = byte_limit(max_bytes)
    try:
        source = pq.ParquetFile(path)
        schema = source.schema_arrow
        columns = resolve_columns(
            path,
            list(schema.names),
            text_column=text_column,
            label_column=label_column,
            id_column=id_column,
        )
        text_type = schema.field(columns.text).type
        if pa.types.is_dictionary(text_type):
            text_type = text_type.value_type
        if not _is_bytes_like(pa, text_type):
            raise DatasetError(path, f"column {columns.text!r} holds {text_type}, not text")
        meta = source.metadata
        chosen = set(columns)
        declared = meta.num_rows * PYTHON_STR_BYTES + sum(
            group.column(j).total_uncompressed_size
            for group in (meta.row_group(i) for i in range(meta.num_row_groups))
            for j in range(group.num_columns)
            if group.column(j).path_in_schema.split(".")[0] in chosen
        )
        check_text_bytes(path, declared, limit, source=f"{meta.num_rows:,} rows")
        as_dictionary = [c for c in columns if _is_bytes_like(pa, schema.field(c).type)]
        table = pq.ParquetFile(path, read_dictionary=as_dictionary).read(
            columns=list(columns), use_pandas_metadata=False
        )
        expanded = table.num_rows * PYTHON_STR_BYTES + sum(
            _expanded_bytes(pa, pc, table.column(c)) for c in columns
        )
        check_text_bytes(path, expanded, limit, source=f"{table.num_rows:,} rows of text")
        values = {c: _column_values(pa, pc, path, table.column(c), c) for c in columns}
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(path, f"could not be read as Parquet ({exc})") from exc
    del table
    rows = TextRows(path, columns)
    ids = values[columns.id] if columns.id is not None else [None] * len(values[columns.text])
    for row, (text, label, sample_id) in enumerate(
        zip(values[columns.text], values[columns.label], ids, strict=True)
    ):
        rows.add(text, label, sample_id, where=f"row {row}")
    dataset = rows.dataset(format="parquet")
    logger.info("%s: read %d texts in %d classes", path, dataset.n_samples, dataset.n_classes)
    return dataset
