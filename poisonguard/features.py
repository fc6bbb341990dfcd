"""Feature matrices that stay on disk: the out-of-core path of a scan.

With ``--chunk-rows N`` a scan leaves the embedding's features ``(N, F)`` in its HDF5 cache file
instead of holding them in memory, and every consumer reads them a block of rows at a time: the
per-class detectors read one class's rows, the whole-dataset detectors (k-NN labels, confident
learning, influence) stream over blocks of ``chunk_rows``. A :class:`FeatureFile` looks enough
like an array for that: ``shape``, ``dtype``, slicing by a contiguous range of rows, and
:meth:`FeatureFile.rows` for a sorted index.

The functions here take either a numpy array or a :class:`FeatureFile`, so a detector has one
code path for both, and gives the same scores from either (``tests/test_out_of_core.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

__all__ = [
    "FeatureFile",
    "FeatureSource",
    "BLOCK_ROWS",
    "DEFAULT_CHUNK_ROWS",
    "row_blocks",
    "take_rows",
    "all_finite",
]

BLOCK_ROWS = 4096
"""Rows per block of every computation that walks all rows (:func:`row_blocks`), whether the
features are an array or a file, so that the scores do not depend on where the features are or on
``chunk_rows``."""

DEFAULT_CHUNK_ROWS = 65_536
"""Rows a :class:`FeatureFile` reads from disk at once (32 MB of 128-d float32); a multiple of
:data:`BLOCK_ROWS`."""


@dataclass(frozen=True)
class FeatureFile:
    """A 2-D float array in an HDF5 file, read ``chunk_rows`` rows at a time.

    Only the file's path travels when a task is sent to a Dask worker; a worker opens the file
    itself, so the cache folder must be reachable at the same path on every worker.
    """

    path: Path
    name: str = "features"
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.chunk_rows < 1 or self.chunk_rows % BLOCK_ROWS:
            raise ValueError(
                f"chunk_rows must be a positive multiple of {BLOCK_ROWS}, got {self.chunk_rows}"
            )

    def __getstate__(self) -> dict:
        # the block read last stays behind: a task sent to a worker carries only the path
        return {"path": self.path, "name": self.name, "chunk_rows": self.chunk_rows}

    def __setstate__(self, state: dict) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, value)
        object.__setattr__(self, "_cache", {})

    @property
    def shape(self) -> tuple[int, int]:
        if "shape" not in self._cache:
            with h5py.File(self.path, "r") as handle:
                self._cache["shape"] = tuple(int(s) for s in handle[self.name].shape)
                self._cache["dtype"] = np.dtype(handle[self.name].dtype)
        return self._cache["shape"]

    @property
    def dtype(self) -> np.dtype:
        self.shape  # noqa: B018 - reads shape and dtype once
        return self._cache["dtype"]

    @property
    def ndim(self) -> int:
        return 2

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: slice) -> np.ndarray:
        """Rows ``start:stop`` (a slice without a step).

        A slice that lies inside one aligned block of ``chunk_rows`` rows is served from that
        block, which is kept until another one is read: detectors that walk the rows in small
        steps read each block once.
        """
        if not isinstance(rows, slice) or rows.step not in (None, 1):
            raise TypeError("a FeatureFile is read by contiguous slices of rows; use rows()")
        start, stop, _ = rows.indices(self.shape[0])
        first = start // self.chunk_rows * self.chunk_rows
        if stop <= start or stop > first + self.chunk_rows:
            with h5py.File(self.path, "r") as handle:
                return handle[self.name][start:stop]
        if self._cache.get("start") != first:
            with h5py.File(self.path, "r") as handle:
                block = handle[self.name][first : first + self.chunk_rows]
            self._cache.update(start=first, block=block)
        return self._cache["block"][start - first : stop - first]

    def rows(self, index: np.ndarray) -> np.ndarray:
        """The rows at the sorted positions ``index``, read block by block (memory: the rows
        asked for plus one block)."""
        index = np.asarray(index, dtype=np.int64)
        if index.size and np.any(np.diff(index) <= 0):
            raise ValueError("rows() needs strictly increasing positions")
        with h5py.File(self.path, "r") as handle:
            data = handle[self.name]
            out = np.empty((index.size, data.shape[1]), dtype=data.dtype)
            if index.size == 0:
                return out
            n, step = data.shape[0], self.chunk_rows
            first = int(index[0]) // step * step
            for start in range(first, min(n, int(index[-1]) + 1), step):
                low, high = np.searchsorted(index, [start, start + step])
                if low < high:
                    block = data[start : min(start + step, n)]
                    out[low:high] = block[index[low:high] - start]
            return out


FeatureSource = np.ndarray | FeatureFile
"""What the detectors accept as features: an array in memory or a :class:`FeatureFile`."""


def row_blocks(features: FeatureSource) -> Iterator[tuple[slice, np.ndarray]]:
    """``(rows, block)`` over consecutive blocks of :data:`BLOCK_ROWS` rows, from an array or
    a file (whose reads of ``chunk_rows`` rows serve several blocks each)."""
    n = features.shape[0]
    for start in range(0, n, BLOCK_ROWS):
        rows = slice(start, min(start + BLOCK_ROWS, n))
        yield rows, np.asarray(features[rows])


def take_rows(features: FeatureSource, index: np.ndarray) -> np.ndarray:
    """The rows at the sorted positions ``index``, from an array or a file."""
    if isinstance(features, FeatureFile):
        return features.rows(index)
    return np.asarray(features)[index]


def all_finite(features: FeatureSource) -> bool:
    """True when no value is NaN or infinite (checked block by block)."""
    return all(np.isfinite(block).all() for _, block in row_blocks(features))
