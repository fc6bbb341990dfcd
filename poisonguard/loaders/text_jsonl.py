"""Read a text dataset from a JSON Lines file (``.jsonl``): one JSON object a line.

Each non-blank line is one sample, a JSON object with a text field (``text``, or the one named
with ``--text-column``) holding a string, a label field (``label``, or ``--label-column``)
holding a string or a number, and optionally an id field (``--id-column``, else ``id`` when the
first object has one) holding a string or an integer. The fields are found in the first object;
every object must have them; other fields are ignored. Errors name the line (the first line is
line 1): not UTF-8, not JSON, not an object, a missing field (listing the line's fields), and the
checks of :mod:`poisonguard.loaders.text_rows`.

The file is read a line at a time, after its size is checked against the limit on what is held
in memory; JSON nested deeper than Python's recursion limit is refused, not followed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from poisonguard.dataset import Dataset
from poisonguard.errors import DatasetError
from poisonguard.limits import byte_limit
from poisonguard.loaders.text_rows import (
    TextColumns,
    TextRows,
    check_text_bytes,
    decode_utf8,
    resolve_columns,
)

__all__ = ["load_jsonl"]

logger = logging.getLogger(__name__)


def _record(path: Path, raw: bytes, number: int) -> dict[str, Any] | None:
    """The object on line ``number``, or ``None`` for a blank line."""
    line = decode_utf8(path, raw, line=number)
    if not line.strip():
        return None
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DatasetError(
            path, f"line {number} is not valid JSON ({exc.msg} at column {exc.colno})"
        ) from None
    except RecursionError:
        raise DatasetError(path, f"line {number}: JSON nested too deeply") from None
    if not isinstance(value, dict):
        kind = "list" if isinstance(value, list) else type(value).__name__
        raise DatasetError(path, f"line {number} holds a JSON {kind}, not an object")
    return value


def _field(path: Path, record: dict[str, Any], name: str, number: int) -> Any:
    if name not in record:
        fields = ", ".join(repr(k) for k in record) or "none"
        raise DatasetError(path, f"line {number} has no field {name!r}; its fields are {fields}")
    return record[name]


def load_jsonl(
    path: str | Path,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    id_column: str | None = None,
    max_bytes: int | None = None,
) -> Dataset:
    """Read a JSON Lines text dataset.

    Parameters
    ----------
    path : str or Path
        The ``.jsonl`` file.
    text_column, label_column, id_column : str, optional
        Field names (defaults ``text``, ``label``, and ``id`` when present; see
        :mod:`poisonguard.loaders.text_rows`).
    max_bytes : int, optional
        The most bytes the texts may take in memory (see :mod:`poisonguard.limits`).

    Returns
    -------
    Dataset
        ``kind="text"``, ``format="jsonl"``, ids from the id field or the sample numbers
        counted from 0 (blank lines are not samples).

    Raises
    ------
    DatasetError
        Naming the file and the line: see the module docstring.
    """
    path = Path(path)
    if path.is_dir():
        raise DatasetError(path, "is a folder, not a JSON Lines file")
    rows: TextRows | None = None
    columns: TextColumns | None = None
    try:
        size = path.stat().st_size
        check_text_bytes(path, size, byte_limit(max_bytes), source=f"a {size:,}-byte file")
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                record = _record(path, raw, number)
                if record is None:
                    continue
                if columns is None:
                    columns = resolve_columns(
                        path,
                        list(record),
                        text_column=text_column,
                        label_column=label_column,
                        id_column=id_column,
                        what="field",
                    )
                    rows = TextRows(path, columns)
                rows.add(
                    _field(path, record, columns.text, number),
                    _field(path, record, columns.label, number),
                    None if columns.id is None else _field(path, record, columns.id, number),
                    where=f"line {number}",
                )
    except OSError as exc:
        raise DatasetError(path, f"could not be read ({exc})") from exc
    if rows is None:
        raise DatasetError(path, "is empty; expected one JSON object per line")
    dataset = rows.dataset(format="jsonl")
    logger.info("%s: read %d texts in %d classes", path, dataset.n_samples, dataset.n_classes)
    return dataset
