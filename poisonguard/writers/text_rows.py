"""What the text writers share: checking that the source still holds the loaded texts, and the
row whose label value stands for each class.

Each text writer reads the source file again with the loader's own rules and feeds every sample
through :class:`~poisonguard.loaders.text_rows.TextRows`, as the loader did; :func:`check_same`
then compares the result with the loaded :class:`~poisonguard.dataset.Dataset` (texts, labels,
class names, ids), so a file edited since it was loaded stops the copy with a
:class:`~poisonguard.errors.DatasetError` instead of mixing old decisions with new data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from poisonguard.dataset import Dataset
from poisonguard.errors import DatasetError, OutputError

__all__ = ["changed_error", "check_same", "first_rows", "check_text_free_of"]


def changed_error(source: Dataset) -> DatasetError:
    """The error for a source that no longer holds what was loaded from it."""
    return DatasetError(
        source.path, "changed since it was loaded (texts, labels, ids or columns); load it again"
    )


def check_same(source: Dataset, reread: Dataset) -> None:
    """Raise :func:`changed_error` unless ``reread`` holds the texts, labels, class names and ids
    of ``source``."""
    if (
        reread.n_samples != source.n_samples
        or reread.class_names != source.class_names
        or not np.array_equal(reread.labels, source.labels)
        or reread.x.tolist() != source.x.tolist()
        or list(reread.ids) != list(source.ids)
    ):
        raise changed_error(source)


def first_rows(source: Dataset) -> list[int]:
    """Per class code, the first source row of that class: its label value (a cell, a JSON value,
    a Parquet value, a folder name) is the one a relabelled sample of that class gets, so labels
    keep the source's representation (``"3"`` stays text, ``3`` a number)."""
    codes, first = np.unique(source.labels, return_index=True)
    if codes.tolist() != list(range(source.n_classes)):  # every class has a sample when loaded
        raise changed_error(source)
    return first.tolist()


def check_text_free_of(
    source: Dataset, texts: list[tuple[int, str]], forbidden: str, why: str
) -> None:
    """Raise :class:`OutputError` when a new text (``(row, text)``) holds a character of
    ``forbidden``, which the source's format cannot store (``why`` says so)."""
    for row, text in texts:
        found = next((c for c in forbidden if c in text), None)
        if found is not None:
            raise OutputError(
                f"{Path(source.path)}: the new text of sample {source.ids[row]!r} holds "
                f"{_NAMES.get(found, repr(found))}, which {why}; write the copy in another "
                "format (CSV, JSON Lines) or leave that character out"
            )


_NAMES = {"\t": "a tab", "\n": "a line break", "\r": "a carriage return"}
