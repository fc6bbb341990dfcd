"""What the text loaders share: finding the columns, checking each sample, the size limit, and
building the :class:`~poisonguard.dataset.Dataset` (``kind == "text"``).

A text dataset has a text column (``text``, or the one named with ``--text-column``), a label
column (``label``, or ``--label-column``) and optionally an id column (``--id-column``, else a
column named ``id`` if there is one, else the row numbers counted from 0). Columns named by an
option must match exactly; the defaults also match a unique column that differs only in case.

Each sample is checked as it is read (:meth:`TextRows.add`), and an error names the file and the
place (``line 7``, ``row 12``, a file of a text folder): a missing or empty text (only white
space counts as empty), a text that is not a string or holds a lone surrogate (not valid
Unicode, so not writable as UTF-8), a missing, empty or non-scalar label, an empty or repeated
id. Fewer than two classes is an error too (:func:`~poisonguard.dataset.encode_labels`).

The texts are kept exactly as the file holds them; only a byte-order mark at the start of a file
is dropped. Before reading, the bytes the texts can take are checked against the limit on what is
held in memory (:mod:`poisonguard.limits`): a text loaded as a Python string takes at least as
many bytes as its UTF-8 form, and :func:`check_text_bytes` uses that lower bound.
"""

from __future__ import annotations

import codecs
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from poisonguard.dataset import Dataset, RowNumbers, encode_labels
from poisonguard.errors import DatasetError
from poisonguard.limits import ByteLimit, byte_limit, check_declared
from poisonguard.loaders.columns import DEFAULT_ID_COLUMN, DEFAULT_LABEL_COLUMN, find_column

__all__ = [
    "DEFAULT_TEXT_COLUMN",
    "TextColumns",
    "TextRows",
    "check_text_bytes",
    "decode_utf8",
    "resolve_columns",
]

DEFAULT_TEXT_COLUMN = "text"
"""The text column's name when ``--text-column`` is not given."""


@dataclass(frozen=True)
class TextColumns:
    """The names of the text, label and (or ``None``) id columns of one file; iterating gives
    the names of those present."""

    text: str
    label: str
    id: str | None

    def __iter__(self) -> Iterator[str]:
        return iter([name for name in (self.text, self.label, self.id) if name is not None])


def _listing(names: list[str]) -> str:
    return ", ".join(repr(name) for name in names) if names else "none"


def resolve_columns(
    path: Path,
    names: list[str],
    *,
    text_column: str | None,
    label_column: str | None,
    id_column: str | None,
    what: str = "column",
) -> TextColumns:
    """The text, label and id columns among ``names`` (a header, a record's fields).

    Raises :class:`DatasetError` naming the columns found when the text or label column, or a
    named id column, is missing, or when one column is asked to be two of them.
    """
    found = _listing(names)

    def pick(given: str | None, default: str, role: str, option: str) -> str:
        at = find_column(names, given or default, exact=given is not None)
        if at is None:
            raise DatasetError(
                path,
                f"has no {role} {what} {given or default!r}; the {what}s are {found}; "
                f"use {option} to name it",
            )
        return names[at]

    text = pick(text_column, DEFAULT_TEXT_COLUMN, "text", "--text-column")
    label = pick(label_column, DEFAULT_LABEL_COLUMN, "label", "--label-column")
    if text == label:
        raise DatasetError(path, f"{what} {text!r} cannot be both the text and the label")
    if id_column is not None:
        sample_id = pick(id_column, id_column, "id", "--id-column")
        if sample_id in (text, label):
            raise DatasetError(
                path, f"{what} {sample_id!r} cannot be both the id and the text or label"
            )
    else:
        at = find_column(names, DEFAULT_ID_COLUMN, exact=False)
        sample_id = None if at is None or names[at] in (text, label) else names[at]
    return TextColumns(text, label, sample_id)


def check_text_bytes(path: Path, nbytes: int, limit: ByteLimit | None, *, source: str) -> None:
    """Refuse ``nbytes`` of text (``source`` says whose size it is) over the in-memory limit."""
    check_declared(
        path,
        f"holds {source} that would take at least",
        nbytes,
        limit or byte_limit(),
        place=" in memory as text",
    )


def decode_utf8(path: Path, data: bytes, *, line: int | None = None) -> str:
    """``data`` decoded as UTF-8, or a :class:`DatasetError` naming the line: ``line`` when
    ``data`` is that one line of a file, else counted within ``data`` (a whole file). A
    byte-order mark is dropped at the start of a file (``line`` ``None`` or 1)."""
    skip = len(codecs.BOM_UTF8) if line in (None, 1) and data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = exc.start + skip
        start = data.rfind(b"\n", 0, bad) + 1
        at = line if line is not None else data.count(b"\n", 0, bad) + 1
        raise DatasetError(
            path,
            f"line {at} is not UTF-8 text ({exc.reason}: byte 0x{data[bad]:02x} at byte "
            f"{bad - start + 1} of the line)",
        ) from exc


def _type_name(value: Any) -> str:
    if value is None:
        return "missing (null)"
    names = {
        dict: "an object",
        list: "a list",
        bytes: "bytes",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }
    return names.get(type(value), f"a {type(value).__name__}")


class TextRows:
    """Texts, labels and ids gathered one sample at a time and checked as they come."""

    def __init__(self, path: Path, columns: TextColumns) -> None:
        self.path = path
        self.columns = columns
        self.texts: list[str] = []
        self.labels: list[Any] = []
        self.ids: list[str] = []
        self._id_places: dict[str, str] = {}

    def add(self, text: Any, label: Any, sample_id: Any = None, *, where: str) -> None:
        """Check one sample (``where`` names it: ``"line 7"``) and keep it."""
        path, columns = self.path, self.columns
        if not isinstance(text, str):
            raise DatasetError(
                path, f"{where}: the text ({columns.text!r}) is {_type_name(text)}, not a string"
            )
        if not text.strip():
            raise DatasetError(path, f"{where}: empty text in {columns.text!r}")
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise DatasetError(
                    path,
                    f"{where}: the text holds a lone surrogate at character {exc.start} "
                    "(not valid Unicode)",
                ) from None
        self.texts.append(text)
        self.labels.append(self._label(label, where))
        if columns.id is not None:
            self.ids.append(self._id(sample_id, where))

    def _label(self, label: Any, where: str) -> Any:
        name = self.columns.label
        if isinstance(label, str):
            label = label.strip()
            if label == "":
                raise DatasetError(self.path, f"{where}: empty label in {name!r}")
            return label
        if isinstance(label, float) and not math.isfinite(label):
            raise DatasetError(self.path, f"{where}: the label ({name!r}) is {label}")
        if isinstance(label, int | float) and not isinstance(label, bool):
            return label
        raise DatasetError(
            self.path,
            f"{where}: the label ({name!r}) is {_type_name(label)}, not a string or number",
        )

    def _id(self, sample_id: Any, where: str) -> str:
        name = self.columns.id
        if isinstance(sample_id, bool) or not isinstance(sample_id, str | int):
            raise DatasetError(self.path, f"{where}: the id ({name!r}) is {_type_name(sample_id)}")
        text = str(sample_id).strip()
        if text == "":
            raise DatasetError(self.path, f"{where}: empty id in {name!r}")
        if text in self._id_places:
            raise DatasetError(
                self.path,
                f"{where}: id {text!r} already used on {self._id_places[text]}; ids must be unique",
            )
        self._id_places[text] = where
        return text

    def dataset(self, *, format: str, notes: list[str] | None = None) -> Dataset:
        """The :class:`Dataset` of the samples added (none: a :class:`DatasetError`)."""
        if not self.texts:
            raise DatasetError(self.path, "has no samples (no rows after the header)")
        x = np.empty(len(self.texts), dtype=object)
        x[:] = self.texts
        labels, class_names = encode_labels(_uniform(self.labels), path=self.path)
        ids = self.ids if self.columns.id is not None else RowNumbers(len(self.texts))
        return Dataset(
            x=x,
            labels=labels,
            class_names=class_names,
            ids=ids,
            kind="text",
            path=self.path,
            format=format,
            notes=list(notes or []),
        )


def _uniform(labels: list[Any]) -> np.ndarray:
    """Labels as one array: numbers stay numbers; any string makes them all strings."""
    if any(isinstance(label, str) for label in labels):
        return np.array([str(label) for label in labels], dtype=object)
    return np.asarray(labels)
