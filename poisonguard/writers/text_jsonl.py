"""Write a changed copy of a JSON Lines text dataset, keeping unchanged records byte for byte.

The source is read again with the loader's rules (:mod:`poisonguard.loaders.text_jsonl`) and
must still hold the loaded texts, labels and ids. The copy has the source's byte-order mark if
it had one, then one line per kept row, in ``rows`` order:

* a record whose label and text did not change is the source's line, byte for byte (spacing,
  field order, escapes, line ending);
* a changed record is the source's JSON object with the text field set to the new text and/or
  the label field set to the label value of the first source record of the new class (so a
  number stays a number and a string a string), every other field kept, written with
  ``json.dumps(ensure_ascii=False)`` (``ensure_ascii=True`` when another field holds a lone
  surrogate, which UTF-8 cannot store) and the source line's ending.

A record without a line ending (the source's last) that is not last in the copy gets the ending
of the source's first record. Blank lines carry no sample and are left out. Without an id field,
the ids of the copy are its sample numbers (``"0"`` is the first record).
"""

from __future__ import annotations

import codecs
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from poisonguard.dataset import Dataset
from poisonguard.errors import DatasetError
from poisonguard.loaders.text_jsonl import _field, _record
from poisonguard.loaders.text_rows import TextColumns, TextRows, resolve_columns
from poisonguard.writers.text_rows import changed_error, check_same, first_rows

__all__ = ["write_jsonl"]

logger = logging.getLogger(__name__)


def write_jsonl(
    source: Dataset,
    target: Path,
    *,
    rows: np.ndarray,
    labels: np.ndarray,
    x: np.ndarray | None,
    x_changed: np.ndarray,
    options: dict,
) -> list[str]:
    """Write the copy of JSON Lines text dataset ``source`` to ``target`` (a new path; not
    atomic by itself).

    Arguments are those of :func:`poisonguard.writers.write_like`, already validated;
    ``options`` holds ``text_column``/``label_column``/``id_column``.

    Returns
    -------
    list of str
        The id of each written record as the loader will report it: the id field's, else the
        record's number in the copy.
    """
    path = Path(source.path)
    first = {row: code for code, row in enumerate(first_rows(source))}
    wanted = set(rows.tolist())
    kept: dict[int, bytes] = {}
    label_values: dict[int, Any] = {}
    columns: TextColumns | None = None
    reread: TextRows | None = None
    has_bom = False
    ending = b""  # of the first record that has one
    index = 0
    try:
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if number == 1 and raw.startswith(codecs.BOM_UTF8):
                    has_bom = True
                    raw = raw[len(codecs.BOM_UTF8) :]
                record = _record(path, raw, number)
                if record is None:
                    continue
                if columns is None:
                    columns = resolve_columns(
                        path,
                        list(record),
                        text_column=options.get("text_column"),
                        label_column=options.get("label_column"),
                        id_column=options.get("id_column"),
                        what="field",
                    )
                    reread = TextRows(path, columns)
                if index >= source.n_samples:
                    raise changed_error(source)
                label = _field(path, record, columns.label, number)
                reread.add(
                    _field(path, record, columns.text, number),
                    label,
                    None if columns.id is None else _field(path, record, columns.id, number),
                    where=f"line {number}",
                )
                if index in first:
                    label_values[first[index]] = label
                if index in wanted:
                    kept[index] = raw
                ending = ending or _ending(raw)
                index += 1
    except OSError as exc:
        raise DatasetError(path, f"could not be read ({exc})") from exc
    if reread is None or columns is None:
        raise changed_error(source)
    check_same(source, reread.dataset(format=source.format))

    ending = ending or b"\n"
    last = rows.shape[0] - 1
    with target.open("wb") as out:
        if has_bom:
            out.write(codecs.BOM_UTF8)
        for i, row in enumerate(rows.tolist()):
            line = kept[row]
            new_label = labels[i] != source.labels[row]
            new_text = x is not None and bool(x_changed[i])
            if new_label or new_text:
                record = json.loads(line.decode("utf-8"))
                if new_label:
                    record[columns.label] = label_values[int(labels[i])]
                if new_text:
                    record[columns.text] = x[i]
                line = _dumps(record) + _ending(line)
            if i != last and not _ending(line):
                line += ending
            out.write(line)
    if columns.id is None:
        return [str(i) for i in range(rows.shape[0])]
    return [source.ids[r] for r in rows.tolist()]


def _ending(line: bytes) -> bytes:
    """The line ending ``line`` ends with (``\\r\\n`` or ``\\n``), or ``b""``."""
    if line.endswith(b"\r\n"):
        return b"\r\n"
    return b"\n" if line.endswith(b"\n") else b""


def _dumps(record: dict[str, Any]) -> bytes:
    """``record`` as one line of UTF-8 JSON, without a line ending."""
    try:
        return json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\\ud800") in another field
        return json.dumps(record, ensure_ascii=True).encode("ascii")
