"""Read a data set out of an installed R package's lazy-load database, without R.

An R package built with ``LazyData: true`` (most CRAN packages that ship data, and so their Debian
``r-cran-*`` packages) keeps its data sets in two files under ``<package>/data/``, not in
``.rda`` files:

* ``Rdata.rdx``: the index, one gzip-compressed serialized R list with ``variables`` (for each
  data set's name, its ``(offset, length)`` in the ``.rdb`` file) and ``compressed`` (the
  compression of the entries: 1 zlib, 2 bzip2, 3 xz);
* ``Rdata.rdb``: the entries, each one serialized R object, compressed: a 4-byte big-endian
  length of the serialized bytes, then (compressions 2 and 3) one type byte (``Z`` xz, ``2``
  bzip2, ``1`` zlib, ``0`` stored) and the compressed bytes (xz as a raw LZMA2 stream).

The serialized objects are R's XDR format (``X\\n``, versions 2 and 3; R Internals, section 1.8
"Serialization formats"). :func:`unserialize` reads the part of it that data sets use: vectors
(logical, integer, double, character, list) with their attributes, pairlists and symbols. An
object of any other type (closures, environments, bytecode, ALTREP) is refused with its type
code: reading data never runs R code. Checked against ``pyreadr`` (librdata) on modeldata's
``small_fine_foods``: the same texts, products and labels.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RVector", "data_frame", "read_lazyload", "unserialize"]

_NIL, _SYM, _LIST, _CHAR, _LGL, _INT, _REAL, _STR, _VEC = 254, 1, 2, 9, 10, 13, 14, 16, 19
_REF = 255
_IGNORED = {242, 251, 252, 253}  # empty environment, base environment, unbound, missing arg
_NA_INT = -(2**31)


@dataclass
class RVector:
    """An R vector: its ``type`` code (R's SEXPTYPE), ``values`` (``None`` for NA) and
    ``attributes`` (``names``, ``levels``, ``class``, ``row.names``, ...)."""

    type: int
    values: list[Any]
    attributes: dict[str, Any] = field(default_factory=dict)

    def strings(self, name: str) -> list[str]:
        """The character vector held in attribute ``name`` (empty if absent)."""
        found = self.attributes.get(name)
        return list(found.values) if isinstance(found, RVector) else []


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0
        self.refs: list[Any] = []

    def take(self, n: int) -> bytes:
        if n < 0 or self.at + n > len(self.data):
            raise ValueError(f"serialized R object ends early (byte {self.at}, wanted {n} more)")
        chunk = self.data[self.at : self.at + n]
        self.at += n
        return chunk

    def integer(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def header(self) -> None:
        if self.take(2) != b"X\n":
            raise ValueError("not an R serialization in XDR format (expected 'X\\n')")
        version = self.integer()
        self.integer()  # the R version that wrote it
        self.integer()  # the oldest R version that can read it
        if version == 3:
            self.take(self.integer())  # the native encoding's name
        elif version != 2:
            raise ValueError(f"R serialization version {version} is not supported")

    def item(self) -> Any:
        flags = self.integer()
        kind = flags & 0xFF
        has_attributes, has_tag = bool(flags & (1 << 9)), bool(flags & (1 << 10))
        if kind == _NIL or kind in _IGNORED:
            return None
        if kind == _REF:
            index = flags >> 8 or self.integer()  # 0: the index follows as an integer
            return self.refs[index - 1]
        if kind == _SYM:
            symbol = ("symbol", self.item())
            self.refs.append(symbol)
            return symbol
        if kind == _CHAR:
            n = self.integer()
            return None if n == -1 else self.take(n).decode("utf-8")
        if kind == _LIST:  # a pairlist: attributes, tag, value, then the rest of the list
            if has_attributes:
                self.item()
            tag = self.item() if has_tag else None
            value = self.item()
            rest = self.item()
            return [(tag[1] if tag else None, value)] + (rest or [])
        if kind in (_LGL, _INT):
            n = self.integer()
            values = list(struct.unpack(f">{n}i", self.take(4 * n)))
            values = [None if v == _NA_INT else v for v in values]
        elif kind == _REAL:
            n = self.integer()
            values = list(struct.unpack(f">{n}d", self.take(8 * n)))
        elif kind in (_STR, _VEC):
            values = [self.item() for _ in range(self.integer())]
        else:
            raise ValueError(f"R object of type {kind} is not data; refused")
        attributes = dict(self.item()) if has_attributes else {}
        return RVector(kind, values, attributes)


def unserialize(data: bytes) -> Any:
    """The R object serialized (XDR format, uncompressed) in ``data``."""
    reader = _Reader(data)
    reader.header()
    return reader.item()


def _decompress(entry: bytes, compression: int) -> bytes:
    length = struct.unpack(">I", entry[:4])[0]
    body = entry[4:]
    if compression == 1:
        raw = zlib.decompress(body)
    else:
        kind, body = body[:1], body[1:]
        if kind == b"Z":
            filters = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]
            raw = lzma.decompress(body, format=lzma.FORMAT_RAW, filters=filters)
        elif kind == b"2":
            raw = bz2.decompress(body)
        elif kind == b"1":
            raw = zlib.decompress(body)
        elif kind == b"0":
            raw = body
        else:
            raise ValueError(f"unknown compression type {kind!r} in the lazy-load database")
    if len(raw) != length:
        raise ValueError(f"entry decompressed to {len(raw)} bytes, its header says {length}")
    return raw


def read_lazyload(data_dir: str | Path, name: str, *, database: str = "Rdata") -> Any:
    """The R object ``name`` from ``<data_dir>/<database>.rdx`` and ``.rdb``.

    Raises ``KeyError`` listing the names the database holds when ``name`` is not one of them.
    """
    data_dir = Path(data_dir)
    index = unserialize(gzip.decompress((data_dir / f"{database}.rdx").read_bytes()))
    parts = dict(zip(index.strings("names"), index.values, strict=True))
    variables = parts["variables"]
    names = variables.strings("names")
    if name not in names:
        raise KeyError(f"{name!r} is not in {data_dir}; it holds {', '.join(names)}")
    offset, length = variables.values[names.index(name)].values
    compression = parts["compressed"].values[0] if parts.get("compressed") else 1
    with (data_dir / f"{database}.rdb").open("rb") as handle:
        handle.seek(offset)
        entry = handle.read(length)
    return unserialize(_decompress(entry, int(compression)))


def data_frame(frame: RVector) -> dict[str, list[Any]]:
    """The columns of an R data frame (or tibble) by name; factors become their level names."""
    if "data.frame" not in frame.strings("class"):
        raise ValueError(f"not a data frame (class {frame.strings('class')})")
    columns: dict[str, list[Any]] = {}
    for name, column in zip(frame.strings("names"), frame.values, strict=True):
        levels = column.strings("levels")
        if levels:
            columns[name] = [None if code is None else levels[code - 1] for code in column.values]
        else:
            columns[name] = list(column.values)
    return columns
