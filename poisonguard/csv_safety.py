"""Spreadsheet-safe CSV cells: the text of a cell never starts a formula when the file is opened.

Every CSV report PoisonGuard writes (``scores.csv``, ``quarantine.csv``, ``ground_truth.csv``)
holds untrusted text: sample ids (CSV id columns, HDF5/NPZ ``ids`` arrays, image file names) and
class names come from the audited data. A spreadsheet runs a cell that starts with ``=``, ``+``,
``-`` or ``@`` (and, after a leading tab or carriage return, whatever follows) as a formula
(OWASP "CSV injection"), so an id such as ``=HYPERLINK("http://x","y")`` would become a live link
on a reviewer's screen.

The rule (OWASP's leading-quote rule, made reversible):

* a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return and is not a
  number gets a single quote ``'`` in front: ``'=HYPERLINK(...)``, ``'@SUM(A1)``, ``'-x``;
* a cell that starts with ``'`` gets one more in front too (``'quoted`` is written ``''quoted``),
  so that reading back is unambiguous;
* everything else, numbers included (``-5``, ``+1``, ``-0.25``, ``1e-08``, ``-inf``), is written
  as it is.

Reading back (:func:`unescape_cell`) removes one leading quote, if there is one: every cell the
writer produces reads back as exactly the text it was given. A number is a plain decimal literal
(sign, digits, optional fraction and exponent) or ``inf``/``infinity``/``nan`` with an optional
sign; a spreadsheet reads these as values, never as formulas.

Use :func:`writer` instead of ``csv.writer`` for every report CSV, and :func:`reader` (or
:func:`unescape_cell`) where such a file is read back. Copies of a CSV *dataset*
(:mod:`poisonguard.writers.csv_table`) are data, not reports: they keep the source's cells as the
source wrote them, so that the copy holds the same ids and labels.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = [
    "FORMULA_STARTS",
    "QUOTE",
    "SafeWriter",
    "escape_cell",
    "escape_row",
    "reader",
    "unescape_cell",
    "unescape_row",
    "writer",
]

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a cell as a formula (OWASP)."""

QUOTE = "'"
"""The prefix that makes a cell inert; also added to a cell that starts with it."""

_RISKY_FIRST = frozenset((*FORMULA_STARTS, QUOTE))
_NUMBER = re.compile(
    r"[+-]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?|nan)", re.IGNORECASE
)


def _needs_quote(text: str) -> bool:
    """Whether ``text``, which starts with a character of ``_RISKY_FIRST``, gets the quote."""
    return text[0] == QUOTE or not _NUMBER.fullmatch(text)


def _text(value: Any) -> str:
    """A cell's text as ``csv.writer`` makes it: ``None`` is empty, anything else ``str``."""
    return "" if value is None else str(value)


def escape_cell(value: Any) -> str:
    """The text written for a cell holding ``value`` (its ``str``, empty for ``None``; see the
    module docstring)."""
    text = value if type(value) is str else _text(value)
    return QUOTE + text if text[:1] in _RISKY_FIRST and _needs_quote(text) else text


def unescape_cell(text: str) -> str:
    """The value :func:`escape_cell` was given for the cell text ``text``."""
    return text[len(QUOTE) :] if text.startswith(QUOTE) else text


def escape_row(row: Iterable[Any]) -> list[str]:
    """:func:`escape_cell` of every cell of ``row`` (inlined: a million-row ``scores.csv`` goes
    through here)."""
    cells = []
    for value in row:
        text = value if type(value) is str else _text(value)
        if text[:1] in _RISKY_FIRST and _needs_quote(text):
            text = QUOTE + text
        cells.append(text)
    return cells


def unescape_row(row: Iterable[str]) -> list[str]:
    """:func:`unescape_cell` of every cell of ``row``."""
    return [unescape_cell(text) for text in row]


class SafeWriter:
    """``csv.writer`` whose rows go through :func:`escape_row`.

    A row with a carriage return in a cell is written with every field quoted when the line
    terminator has none: ``csv.writer`` quotes only the characters of its line terminator, and
    a bare ``\\r`` in an unquoted field ends the record for every CSV reader.
    """

    def __init__(self, handle: Any, **fmtparams: Any) -> None:
        self._writer = csv.writer(handle, **fmtparams)
        terminator = self._writer.dialect.lineterminator
        self._quote_all = None
        if "\r" not in terminator:
            self._quote_all = csv.writer(handle, **{**fmtparams, "quoting": csv.QUOTE_ALL})

    def writerow(self, row: Iterable[Any]) -> Any:
        return self.write_escaped(escape_row(row))

    def write_escaped(self, cells: list[str]) -> Any:
        """Write a row whose cells are already escaped: each the text of :func:`escape_cell`,
        or a number's text (a float's ``format``, an integer's ``str``), which needs no escape.
        For a writer of many rows that escapes its text columns once per value and leaves its
        numbers as they are (``scores.csv``: a million rows)."""
        if self._quote_all is not None and "\r" in "".join(cells):
            return self._quote_all.writerow(cells)
        return self._writer.writerow(cells)

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def writer(handle: Any, **fmtparams: Any) -> SafeWriter:
    """A CSV writer on ``handle`` (as ``csv.writer``) that escapes every cell it writes."""
    return SafeWriter(handle, **fmtparams)


def reader(lines: Iterable[str], **fmtparams: Any) -> Iterator[list[str]]:
    """The rows of CSV text written by :func:`writer`, every cell unescaped."""
    for row in csv.reader(lines, **fmtparams):
        yield unescape_row(row)
