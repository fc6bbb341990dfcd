"""Arrays that stay on disk: the HDF5 files of an out-of-core scan.

With ``--chunk-rows N`` a scan holds no per-sample array with a width in memory:

- the loader copies the samples, block by block and already in the model's layout, into an
  uncompressed staging file (:class:`Staging`, in a folder :func:`staging_area` removes at the
  end), and training and inference read batches from it;
- inference writes the features into the embedding cache file chunk by chunk; the probabilities
  and the training records are read from that file too;
- what the detectors compute for every sample (out-of-sample probabilities, each detector's
  scores, the per-class results) goes to staging files as it is computed, through a
  :class:`~poisonguard.rows.RowStore`, and the decision and the report read it back.

What remains in memory per sample is a few numbers (the labels, the final score and flag, which
detectors fired) and, while a class is scored, a few numbers per row of that class.

An :class:`ArrayFile` is one such array: ``shape``, ``dtype``, slicing by a contiguous range of
rows, an integer row, or a sorted index array (a training batch), and :meth:`ArrayFile.rows` for
the many rows of one class, read ``chunk_rows`` rows at a time. Nothing else reads it directly:
:class:`~poisonguard.rows.Rows` is the one view of rows in memory or in such a file that the
detectors' adapters, the decision and the report walk, in blocks of :data:`BLOCK_ROWS`.
"""

from __future__ import annotations

import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from poisonguard.atomic import describe_os_error
from poisonguard.errors import OutputError

__all__ = [
    "ArrayFile",
    "Staging",
    "staging_area",
    "BLOCK_ROWS",
    "DEFAULT_CHUNK_ROWS",
]

BLOCK_ROWS = 4096
"""Rows per block of every computation that walks all rows
(:meth:`poisonguard.rows.Rows.blocks`), whether the array is in memory or in a file, so that the
scores do not depend on where it is or on ``chunk_rows``."""

DEFAULT_CHUNK_ROWS = 65_536
"""Rows an :class:`ArrayFile` reads from disk at once (32 MB of 128-d float32); a multiple of
:data:`BLOCK_ROWS`."""

MAX_READ_BYTES = 64 << 20
"""A read is also capped at this many bytes (4,096 rows of 64 x 64 RGB images are 48 MB)."""


@dataclass(frozen=True)
class ArrayFile:
    """An array in an HDF5 file, read ``chunk_rows`` rows at a time (see :attr:`read_rows`).

    ``length`` limits it to its first rows (a loader that skipped unreadable images fills fewer
    rows than it allocated). Only the path travels when a task is sent to a Dask worker; a
    worker opens the file itself, so the folder must be reachable at the same path on every
    worker.
    """

    path: Path
    name: str = "features"
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    length: int | None = None
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.chunk_rows < 1 or self.chunk_rows % BLOCK_ROWS:
            raise ValueError(
                f"chunk_rows must be a positive multiple of {BLOCK_ROWS}, got {self.chunk_rows}"
            )

    def __getstate__(self) -> dict:
        # the block read last stays behind: a task sent to a worker carries only the path
        return {
            "path": self.path,
            "name": self.name,
            "chunk_rows": self.chunk_rows,
            "length": self.length,
        }

    def __setstate__(self, state: dict) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, value)
        object.__setattr__(self, "_cache", {})

    def _data(self) -> h5py.Dataset:
        """The dataset, in a file opened once per process (h5py serialises threads' reads)."""
        if "data" not in self._cache:
            self._cache["data"] = h5py.File(self.path, "r")[self.name]
        return self._cache["data"]

    @property
    def shape(self) -> tuple[int, ...]:
        if "shape" not in self._cache:
            data = self._data()
            shape = tuple(int(s) for s in data.shape)
            if self.length is not None:
                shape = (min(self.length, shape[0]), *shape[1:])
            self._cache["dtype"] = np.dtype(data.dtype)
            self._cache["shape"] = shape
        return self._cache["shape"]

    @property
    def read_rows(self) -> int:
        """Rows per read: ``chunk_rows``, fewer when a row is so wide that they would exceed
        :data:`MAX_READ_BYTES` (then a multiple of :data:`BLOCK_ROWS` if one fits)."""
        row_bytes = max(1, int(np.prod(self.shape[1:])) * self.dtype.itemsize)
        fit = max(1, MAX_READ_BYTES // row_bytes)
        if fit >= self.chunk_rows:
            return self.chunk_rows
        return fit // BLOCK_ROWS * BLOCK_ROWS if fit >= BLOCK_ROWS else fit

    @property
    def dtype(self) -> np.dtype:
        self.shape  # noqa: B018 - reads shape and dtype once
        return self._cache["dtype"]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: slice | int | np.ndarray) -> np.ndarray:
        """Rows ``start:stop`` (a slice without a step), one row, or the rows at a strictly
        increasing index array (read row by row: for a batch, not for a class).

        A slice inside one aligned block of :attr:`read_rows` rows is served from that block,
        which is kept (one per thread) until another one is read: detectors that walk the rows
        in small steps, or one class's rows, read each block once.
        """
        n = self.shape[0]
        if isinstance(key, (int, np.integer)):
            row = int(key) + n if key < 0 else int(key)
            if not 0 <= row < n:
                raise IndexError(f"row {key} is out of range for {n} rows")
            return self[row : row + 1][0]
        if isinstance(key, np.ndarray):
            index = _increasing(key, n)
            return self._data()[index] if index.size else self._empty(0)
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("read an ArrayFile by row slices, rows or sorted index arrays")
        start, stop, _ = key.indices(n)
        step = self.read_rows
        first = start // step * step
        if stop <= start:
            return self._empty(0)
        if stop > first + step:
            return self._data()[start:stop]
        # one block kept per thread: threads walking different classes do not evict each other
        kept = self._cache.setdefault("blocks", threading.local())
        if getattr(kept, "start", None) != first:
            kept.block = None  # free the old block before reading the next
            kept.block = self._data()[first : min(first + step, n)]
            kept.start = first
        return kept.block[start - first : stop - first]

    def rows(self, index: np.ndarray) -> np.ndarray:
        """The rows at the strictly increasing positions ``index``, read block by block through
        the kept block (memory: the rows asked for plus one block)."""
        index = _increasing(index, self.shape[0])
        out = self._empty(index.size)
        if index.size == 0:
            return out
        step, n = self.read_rows, self.shape[0]
        for start in range(int(index[0]) // step * step, int(index[-1]) + 1, step):
            low, high = np.searchsorted(index, [start, start + step])
            if low < high:
                block = self[start : min(start + step, n)]
                out[low:high] = block[index[low:high] - start]
        return out

    def _empty(self, n: int) -> np.ndarray:
        return np.empty((n, *self.shape[1:]), dtype=self.dtype)


def _increasing(index: np.ndarray, n: int) -> np.ndarray:
    index = np.asarray(index, dtype=np.int64)
    if index.size and (np.any(np.diff(index) <= 0) or index[0] < 0 or index[-1] >= n):
        raise ValueError(f"an ArrayFile reads strictly increasing row positions in [0, {n})")
    return index


class Staging:
    """Where an out-of-core scan keeps its large arrays: one uncompressed, contiguous HDF5 file
    per array in ``folder`` (the caller removes the folder). The loader puts the samples there,
    so that a training batch reads its rows directly; the detectors and the decision put the
    per-sample results they compute there (through a :class:`~poisonguard.rows.RowStore`),
    which the report reads back.

    A loader calls :meth:`allocate` instead of ``np.empty``, writes blocks or rows into what it
    gets, and calls :meth:`finish` to get the :class:`ArrayFile` a :class:`Dataset` holds.
    """

    def __init__(self, folder: str | Path, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> None:
        self.folder = Path(folder)
        self.chunk_rows = chunk_rows
        self._handles: dict[int, h5py.File] = {}

    def allocate(self, shape: tuple[int, ...], dtype: np.dtype) -> h5py.Dataset:
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = h5py.File(self.folder / f"array-{uuid.uuid4().hex}.h5", "w")
        data = handle.create_dataset("x", shape=shape, dtype=dtype)  # contiguous, uncompressed
        self._handles[id(data)] = handle
        return data

    def finish(self, data: h5py.Dataset, length: int | None = None) -> ArrayFile:
        handle = self._handles.pop(id(data))
        path = Path(handle.filename)
        handle.close()
        return ArrayFile(path, "x", self.chunk_rows, length)

    def close(self) -> None:
        """Close the files allocated and never finished (scratch arrays)."""
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()


@contextmanager
def staging_area(parent: str | Path, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[Staging]:
    """A :class:`Staging` in a new folder under ``parent`` (the embedding cache folder), removed
    with everything in it when the block ends, however it ends.

    Raises
    ------
    OutputError
        If the folder cannot be created (read-only, not writable, disk full). A write that fails
        later raises :class:`OSError`, which the command line reports in one line.
    """
    parent = Path(parent)
    try:
        parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        area = tempfile.TemporaryDirectory(prefix="staging-", dir=parent)
    except OSError as exc:
        raise OutputError(
            f"{parent}: cannot create the staging area ({describe_os_error(exc)})"
        ) from exc
    with area as folder:
        yield Staging(folder, chunk_rows)
