"""How large a dataset may *declare* itself before anything is allocated for it.

A dataset file states the sizes of its arrays before their contents: an NPZ member's ``.npy``
header, an HDF5 dataset's shape, an image's header, a CSV file's header and line count. Those
sizes cost nothing to write, so a few kilobytes can declare terabytes (an NPZ member whose
header says ``(10**7, 10**6)`` float64, a chunked HDF5 dataset with almost every chunk left
unwritten, a PNG header that says 100,000 x 100,000 pixels, a CSV with a very wide header and
many blank lines). Reading such a file as it asks ends in a ``MemoryError``, the kernel's
out-of-memory killer, or a full disk part way through a scan. The loaders check every declared
size against a limit first (:func:`check_declared`) and refuse the file with a message that names
the file, the size and the limit.

The limit, in bytes, is ``--max-bytes`` (:func:`max_bytes_setting`) or, by default
(:func:`byte_limit`):

* for what is held in memory (every array of an in-memory scan, NPZ members, CSV tables, the
  labels and ids of any file): half of this machine's memory (the smaller of the physical memory
  and a cgroup limit). The samples are not all a scan holds: the model, its batches, the
  features, the training records and the detectors' work need the other half, so an array
  larger than that cannot be scanned in memory anyway, and refusing it before reading beats
  failing after;
* for the samples of an out-of-core scan (``--chunk-rows``: HDF5 and image folders, staged to an
  uncompressed file beside the embedding cache): :data:`DEFAULT_STAGED_BYTES` (64 GiB, or half
  the memory if that is more): 1.4 million 3 x 64 x 64 images, 87 million 28 x 28 ones. A
  larger staging file takes a deliberate choice of disk space;
* for one image of an image folder, decoded (width x height x 4 bytes, the widest pixel PIL
  decodes): PIL's own decompression-bomb limit, ``PIL.Image.MAX_IMAGE_PIXELS`` (by default
  :data:`IMAGE_PIXELS` pixels, about 358 MB), unless ``--max-bytes`` is given, which then
  applies to each image too.
"""

from __future__ import annotations

import contextvars
import math
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from poisonguard.errors import DatasetError

__all__ = [
    "DEFAULT_STAGED_BYTES",
    "IMAGE_PIXELS",
    "ByteLimit",
    "byte_limit",
    "check_declared",
    "declared_bytes",
    "format_bytes",
    "image_limit",
    "max_bytes_setting",
    "memory_bytes",
    "npy_header",
    "parse_bytes",
    "pil_pixel_limit",
]

DEFAULT_STAGED_BYTES = 64 << 30
"""Default limit on the staged samples of an out-of-core scan (64 GiB)."""

IMAGE_PIXELS = 89_478_485
"""PIL's default decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``): above it, PIL warns
that an image could be a decompression bomb, and refuses twice as many."""

IMAGE_BYTES_PER_PIXEL = 4
"""Bytes of one decoded pixel in the widest mode PIL decodes (RGBA, 32-bit integer or float)."""

_FALLBACK_MEMORY = 8 << 30
_OPTION = "--max-bytes"

_setting: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "poisonguard_max_bytes", default=None
)


@dataclass(frozen=True)
class ByteLimit:
    """A limit in bytes and where it comes from (said in the error message)."""

    bytes: int
    source: str


def memory_bytes() -> int:
    """This machine's memory in bytes: the physical memory, or a smaller cgroup (container)
    limit; 8 GiB when neither can be read."""
    found: list[int] = []
    try:
        found.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        try:
            import psutil

            found.append(int(psutil.virtual_memory().total))
        except Exception:  # noqa: BLE001 - any failure means: unknown
            pass
    for name in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(name).read_text(encoding="ascii").strip()
        except OSError:
            continue
        if text.isdigit():
            found.append(int(text))
    found = [value for value in found if value > 0]
    return min(found) if found else _FALLBACK_MEMORY


@contextmanager
def max_bytes_setting(value: int | None) -> Iterator[None]:
    """Make ``value`` (``--max-bytes``) the limit of every load in the block that is not given
    one explicitly; ``None`` keeps the defaults. The command line wraps each command in it, so
    that the datasets a command loads on the way (a trusted set, a held-out set, a written copy
    read back) are held to the same limit."""
    token = _setting.set(value)
    try:
        with pil_pixel_limit(value):
            yield
    finally:
        _setting.reset(token)


def _given(max_bytes: int | None) -> int | None:
    value = _setting.get() if max_bytes is None else max_bytes
    if value is not None and value < 1:
        raise ValueError(f"max_bytes must be at least 1, got {value}")
    return value


def byte_limit(max_bytes: int | None = None, *, staged: bool = False) -> ByteLimit:
    """The limit on one declared array: ``max_bytes`` (or the command's ``--max-bytes``), else the
    default for memory or, with ``staged``, for a staging file (see the module docstring)."""
    given = _given(max_bytes)
    if given is not None:
        return ByteLimit(given, f"set with {_OPTION}")
    memory = memory_bytes()
    half = memory // 2
    if staged and half < DEFAULT_STAGED_BYTES:
        return ByteLimit(
            DEFAULT_STAGED_BYTES,
            f"the default for samples staged on disk out of core; raise it with {_OPTION}",
        )
    return ByteLimit(
        half,
        f"the default: half of this machine's {format_bytes(memory, exact=False)} of memory; "
        f"raise it with {_OPTION}",
    )


def image_limit(max_bytes: int | None = None) -> ByteLimit:
    """The limit on one decoded image: ``max_bytes`` (or ``--max-bytes``), else PIL's
    decompression-bomb limit as it is set now (``PIL.Image.MAX_IMAGE_PIXELS``, by default
    :data:`IMAGE_PIXELS`) at :data:`IMAGE_BYTES_PER_PIXEL` bytes a pixel; the limit on what is
    held in memory if that is turned off (``None``)."""
    given = _given(max_bytes)
    if given is not None:
        return ByteLimit(given, f"set with {_OPTION}")
    pixels = Image.MAX_IMAGE_PIXELS
    if pixels is None:
        return byte_limit()
    return ByteLimit(
        int(pixels) * IMAGE_BYTES_PER_PIXEL,
        f"PIL's decompression-bomb limit of {int(pixels):,} pixels at "
        f"{IMAGE_BYTES_PER_PIXEL} bytes each; raise it with {_OPTION}",
    )


@contextmanager
def pil_pixel_limit(max_bytes: int | None) -> Iterator[None]:
    """With ``max_bytes`` given, let PIL open images up to that many decoded bytes in the block
    (``PIL.Image.MAX_IMAGE_PIXELS``; restored afterwards), so that code that opens an image the
    loader accepted (the writers of ``poison`` and ``sanitize``) does not refuse it again. Without
    it, PIL's own limit stays."""
    if max_bytes is None:
        yield
        return
    before = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max(int(max_bytes) // IMAGE_BYTES_PER_PIXEL, 1)
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = before


def declared_bytes(shape: Sequence[int], itemsize: int) -> int:
    """Bytes of an array of ``shape`` with ``itemsize`` bytes per item, as a Python integer (no
    overflow however large the declared shape)."""
    return math.prod(int(s) for s in shape) * int(itemsize)


def check_declared(
    path: str | Path | None,
    subject: str,
    nbytes: int,
    limit: ByteLimit,
    *,
    place: str = "",
    hint: str = "",
) -> None:
    """Raise :class:`DatasetError` when ``nbytes`` exceeds ``limit``: ``"<path>: <subject> <size>
    <place>, more than the limit of <limit> (<where the limit comes from>); refused before
    reading ...<hint>"``."""
    if nbytes <= limit.bytes:
        return
    raise DatasetError(
        path,
        f"{subject} {format_bytes(nbytes)}{place}, more than the limit of "
        f"{format_bytes(limit.bytes)} ({limit.source}); refused before reading it, as a file "
        f"can declare sizes it does not hold{hint}",
    )


_UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def format_bytes(nbytes: int, *, exact: bool = True) -> str:
    """``"80,000,000,000,000 bytes (72.8 TiB)"``; without ``exact`` only ``"72.8 TiB"``."""
    nbytes = int(nbytes)
    value, unit = float(nbytes), 0
    while value >= 1024 and unit < len(_UNITS) - 1:
        value /= 1024
        unit += 1
    short = f"{nbytes} bytes" if unit == 0 else f"{value:.1f} {_UNITS[unit]}"
    if not exact:
        return short
    return f"{nbytes:,} bytes" + ("" if unit == 0 else f" ({short})")


_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kmgtpe]?)(i?)(b?)\s*$", re.I)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6}


def parse_bytes(text: str) -> int:
    """A number of bytes from ``"68719476736"``, ``"64G"``, ``"64GiB"``, ``"1.5T"``, ``"500MB"``
    or ``"1e12"``.

    ``K``, ``M``, ``G``, ``T``, ``P`` alone or with ``iB`` are powers of 1,024; with ``B`` alone
    (``GB``) powers of 1,000. Raises ``ValueError`` for anything else, or below 1 byte.
    """
    match = _SIZE.match(str(text))
    if match is None:
        raise ValueError(
            f"{text!r} is not a size in bytes (examples: 68719476736, 64G, 64GiB, 500MB, 1e12)"
        )
    number, prefix, binary, suffix_b = match.groups()
    power = _POWERS[prefix.lower()]
    if binary and not prefix:
        raise ValueError(f"{text!r} is not a size in bytes")
    base = 1000 if (suffix_b and not binary and prefix) else 1024
    value = float(number) * base**power
    if not math.isfinite(value) or value < 1:
        raise ValueError(f"{text!r} is not a size of at least 1 byte")
    return int(value)


def npy_header(member) -> tuple[tuple[int, ...], np.dtype] | None:
    """Shape and dtype from the ``.npy`` header at the start of the open file ``member``, or
    ``None`` when it does not start with one (the caller's reader then says what is wrong)."""
    from numpy.lib import format as npy

    try:
        version = npy.read_magic(member)
        if version == (1, 0):
            shape, _, dtype = npy.read_array_header_1_0(member)
        else:
            shape, _, dtype = npy.read_array_header_2_0(member)
    except (ValueError, OSError, EOFError, SyntaxError, TypeError):
        return None
    return tuple(int(s) for s in shape), np.dtype(dtype)
