"""Finding the named columns of a header: the label, id and text columns of CSV, TSV, JSON
Lines and Parquet files, read by the table and text loaders and by the CSV writer alike."""

from __future__ import annotations

from pathlib import Path

from poisonguard.errors import DatasetError

__all__ = ["DEFAULT_ID_COLUMN", "DEFAULT_LABEL_COLUMN", "check_header", "find_column"]

DEFAULT_LABEL_COLUMN = "label"
DEFAULT_ID_COLUMN = "id"


def find_column(header: list[str], name: str, *, exact: bool) -> int | None:
    """Index of column ``name``; without ``exact``, a unique case-insensitive match also counts."""
    if name in header:
        return header.index(name)
    if not exact:
        matches = [i for i, col in enumerate(header) if col.lower() == name.lower()]
        if len(matches) == 1:
            return matches[0]
    return None


def check_header(path: Path, header: list[str]) -> None:
    """Raise :class:`DatasetError` for an empty or repeated column name in a CSV header."""
    first_at: dict[str, int] = {}
    for index, name in enumerate(header, start=1):
        if name == "":
            raise DatasetError(path, f"column {index} of the header (line 1) has no name")
        if name in first_at:
            raise DatasetError(
                path,
                f"column name {name!r} appears twice in the header (columns {first_at[name]} "
                f"and {index}); column names must be unique",
            )
        first_at[name] = index
