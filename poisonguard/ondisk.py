"""Arrays that stay on disk: the out-of-core path of a scan.

With ``--chunk-rows N`` a scan holds no per-sample array with a width in memory:

- the loader copies the samples, block by block and already in the model's layout, into an
  uncompressed staging file (:class:`Staging`), and training and inference read batches from it;
- inference writes the features into the embedding cache file chunk by chunk; the probabilities
  and the training records are read from that file too, a block of rows or one class at a time;
- what the detectors compute for every sample (out-of-sample probabilities, each detector's
  scores, the per-class results) goes to staging files as it is computed (:func:`new_rows`,
  :func:`kept_rows`), and the decision and the report read it back the same way.

What remains in memory per sample is a few numbers (the labels, the final score and flag, which
detectors fired) and, while a class is scored, a few numbers per row of that class.

An :class:`ArrayFile` looks enough like an array for that: ``shape``, ``dtype``, slicing by a
contiguous range of rows, an integer row, or a sorted index array (a training batch), and
:meth:`ArrayFile.rows` for the many rows of one class.

Every computation that walks all rows does so in blocks of :data:`BLOCK_ROWS` (:func:`row_blocks`),
from an array or a file alike, so the scores do not depend on where the arrays are or on
``chunk_rows`` (``tests/test_out_of_core.py``).
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
    "FeatureSource",
    "Staging",
    "RowSubset",
    "staging_area",
    "BLOCK_ROWS",
    "DEFAULT_CHUNK_ROWS",
    "row_blocks",
    "take_rows",
    "all_finite",
    "map_rows",
    "new_rows",
    "finished_rows",
    "kept_rows",
    "whole",
]

BLOCK_ROWS = 4096
"""Rows per block of every computation that walks all rows (:func:`row_blocks`), whether the
array is in memory or in a file, so that the scores do not depend on where it is or on
``chunk_rows``."""

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


FeatureSource = np.ndarray | ArrayFile
"""What the detectors accept as features: an array in memory or an :class:`ArrayFile`."""


class Staging:
    """Where an out-of-core scan keeps its large arrays: one uncompressed, contiguous HDF5 file
    per array in ``folder`` (the caller removes the folder). The loader puts the samples there,
    so that a training batch reads its rows directly; the detectors and the decision put the
    per-sample results they compute there (:func:`new_rows`, :func:`kept_rows`), which the
    report reads back.

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


@dataclass(frozen=True)
class RowSubset:
    """Rows ``index`` (sorted; None: all rows) of an array or an :class:`ArrayFile`: one class's
    rows, walked in blocks of :data:`BLOCK_ROWS` as float64, so that work on a large class holds
    a block at a time, not the class."""

    source: FeatureSource
    index: np.ndarray | None = None

    def __len__(self) -> int:
        return self.source.shape[0] if self.index is None else int(self.index.size)

    @property
    def width(self) -> int:
        return int(self.source.shape[1])

    def blocks(self) -> Iterator[np.ndarray]:
        """Consecutive blocks of :data:`BLOCK_ROWS` rows, float64."""
        for start in range(0, len(self), BLOCK_ROWS):
            yield self.take(np.arange(start, min(start + BLOCK_ROWS, len(self))))

    def take(self, positions: np.ndarray) -> np.ndarray:
        """The rows at the sorted ``positions`` within the subset, float64."""
        index = positions if self.index is None else self.index[positions]
        return np.asarray(take_rows(self.source, index), dtype=np.float64)


def row_blocks(features: FeatureSource) -> Iterator[tuple[slice, np.ndarray]]:
    """``(rows, block)`` over consecutive blocks of :data:`BLOCK_ROWS` rows, from an array or
    a file (whose reads of ``chunk_rows`` rows serve several blocks each)."""
    n = features.shape[0]
    for start in range(0, n, BLOCK_ROWS):
        rows = slice(start, min(start + BLOCK_ROWS, n))
        yield rows, np.asarray(features[rows])


def take_rows(features: FeatureSource, index: np.ndarray) -> np.ndarray:
    """The rows at the sorted positions ``index``, from an array or a file."""
    if isinstance(features, ArrayFile):
        return features.rows(index)
    return np.asarray(features)[index]


def all_finite(features: FeatureSource) -> bool:
    """True when no value is NaN or infinite (checked block by block)."""
    return all(np.isfinite(block).all() for _, block in row_blocks(features))


def map_rows(function, array: FeatureSource, *alongside: np.ndarray) -> np.ndarray:
    """``function`` applied to consecutive blocks of :data:`BLOCK_ROWS` rows of ``array`` (an
    array or a file), its per-row results joined: for functions whose result for a row depends
    on that row only (a mean over epochs, a product with a fixed vector). The same rows of each
    ``alongside`` array (the labels) are passed after the block. Memory: one block and the
    result, not a float64 copy of the input."""
    out = None
    for rows, block in row_blocks(array):
        part = np.asarray(function(block, *(extra[rows] for extra in alongside)))
        if out is None:
            out = np.empty((array.shape[0], *part.shape[1:]), dtype=part.dtype)
        out[rows] = part
    if out is None:  # no rows: the function still checks the (empty) input's shape
        empty = np.asarray(array[0:0])
        out = np.asarray(function(empty, *(extra[0:0] for extra in alongside)))
    return out


def new_rows(staging: Staging | None, shape: tuple[int, ...], dtype) -> np.ndarray | h5py.Dataset:
    """Room for a computed per-sample array, filled by row slices: zeros in memory, or, with
    ``staging`` (an out-of-core scan), a dataset in a staging file (HDF5 fills it with zeros
    too). :func:`finished_rows` makes it readable."""
    if staging is None:
        return np.zeros(shape, dtype=dtype)
    return staging.allocate(shape, np.dtype(dtype))


def finished_rows(staging: Staging | None, data: np.ndarray | h5py.Dataset) -> FeatureSource:
    """What :func:`new_rows` gave, filled: the array itself, or an :class:`ArrayFile` of the
    staging file."""
    return data if staging is None else staging.finish(data)


def kept_rows(staging: Staging | None, array: np.ndarray) -> FeatureSource:
    """``array`` itself without ``staging``; with it, a copy in a staging file, read back as an
    :class:`ArrayFile` (the caller drops the array, and with it the memory)."""
    if staging is None:
        return array
    data = staging.allocate(array.shape, array.dtype)
    for start in range(0, array.shape[0], staging.chunk_rows):
        data[start : start + staging.chunk_rows] = array[start : start + staging.chunk_rows]
    return staging.finish(data)


def whole(array: FeatureSource) -> np.ndarray:
    """All of ``array`` in memory (an :class:`ArrayFile` is read): for a per-sample column whose
    whole is needed at once, such as a median."""
    return np.asarray(array[0 : array.shape[0]]) if isinstance(array, ArrayFile) else array
