"""The row source: rows that may be in memory or in a file, walked in blocks.

Every per-sample array of a scan (the samples, the embedding's features, probabilities and
training records, what the detectors compute) is an array in memory or, on an out-of-core scan
(``--chunk-rows``), an :class:`~poisonguard.ondisk.ArrayFile`. :class:`Rows` is the one view of
either that the rest of PoisonGuard walks, so that no algorithm asks where its rows are:

- ``shape``, ``dtype`` and ``len``;
- :meth:`Rows.blocks`: consecutive blocks of :data:`BLOCK_ROWS` rows (or another size);
- :meth:`Rows.take`: the rows at sorted positions (a sample to fit on, one class's members);
- :meth:`Rows.subset`: the rows at sorted positions as rows of their own (one class);
- :meth:`Rows.map`: a per-row function applied block by block, its results joined;
- :meth:`Rows.whole`: all rows in memory, for a column whose whole is needed (a median).

:class:`RowStore` is where per-sample results go as they are computed: memory, or, on an
out-of-core scan, files in the scan's staging folder (:class:`~poisonguard.ondisk.Staging`). A
caller asks the store for room (:meth:`RowStore.empty`), fills it by row slices and gets back
what it then reads (:meth:`RowStore.finish`), without asking which it is.

Every computation that walks all rows does so in blocks of :data:`BLOCK_ROWS`, from an array or
a file alike, so the scores do not depend on where the rows are or on ``chunk_rows``
(``tests/test_out_of_core.py``). The detectors themselves (:mod:`poisonguard.detectors`) are
functions of arrays; the registry and its adapters walk a :class:`Rows` for them.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import h5py
import numpy as np

from poisonguard.ondisk import BLOCK_ROWS, ArrayFile, Staging

__all__ = [
    "BLOCK_ROWS",
    "RowStore",
    "Rows",
    "RowsLike",
    "Stored",
    "as_rows",
    "evenly_spaced",
    "where",
]


class Rows:
    """Rows of an array in memory or in an :class:`~poisonguard.ondisk.ArrayFile`, or only
    those at the strictly increasing positions ``index`` (one class's rows).

    Reading never holds more than the rows asked for plus one block of the file. A
    :class:`Rows` travels to a Dask worker as its source (an array, or a file's path) and
    its index.
    """

    __slots__ = ("source", "index")

    def __init__(
        self, source: np.ndarray | ArrayFile | Rows, index: np.ndarray | None = None
    ) -> None:
        if isinstance(source, Rows):
            if index is not None and source.index is not None:
                index = source.index[index]
            elif index is None:
                index = source.index
            source = source.source
        if not isinstance(source, ArrayFile):
            source = np.asarray(source)
        self.source = source
        self.index = None if index is None else np.asarray(index, dtype=np.int64)

    def __getstate__(self) -> tuple:
        return self.source, self.index

    def __setstate__(self, state: tuple) -> None:
        self.source, self.index = state

    @property
    def shape(self) -> tuple[int, ...]:
        n = self.source.shape[0] if self.index is None else int(self.index.size)
        return (n, *self.source.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.source.dtype

    @property
    def ndim(self) -> int:
        return len(self.source.shape)

    @property
    def width(self) -> int:
        """Values per row (columns of a 2-D array)."""
        return int(np.prod(self.source.shape[1:], dtype=np.int64))

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def in_memory(self) -> bool:
        return not isinstance(self.source, ArrayFile)

    def location(self, *, staged: bool = False) -> str:
        """Where the rows are, in words: "in memory", or the file and its rows per read
        (``staged``: a staging file removed after the scan)."""
        if self.in_memory:
            return "in memory"
        where = "a staging file removed after the scan" if staged else f"file {self.source.path}"
        return f"{where}, read {self.source.chunk_rows} rows at a time"

    def __getitem__(self, key: slice) -> np.ndarray:
        """Rows ``start:stop`` (a slice without a step), in memory."""
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("index Rows by a slice of rows; use take() for scattered rows")
        start, stop, _ = key.indices(len(self))
        if self.index is None:
            return np.asarray(self.source[start:stop])
        return self.take(np.arange(start, max(start, stop)))

    def take(self, positions: np.ndarray, dtype: Any = None) -> np.ndarray:
        """The rows at the strictly increasing ``positions`` (within these rows), read block by
        block from a file; as ``dtype`` if given."""
        positions = np.asarray(positions, dtype=np.int64)
        index = positions if self.index is None else self.index[positions]
        if isinstance(self.source, ArrayFile):
            rows = self.source.rows(index)
        else:
            rows = self.source[index]
        return rows if dtype is None else np.asarray(rows, dtype=dtype)

    def subset(self, index: np.ndarray) -> Rows:
        """The rows at the strictly increasing positions ``index`` as rows of their own."""
        return Rows(self, np.asarray(index, dtype=np.int64))

    def blocks(
        self, size: int = BLOCK_ROWS, dtype: Any = None
    ) -> Iterator[tuple[slice, np.ndarray]]:
        """``(positions, block)`` over consecutive blocks of ``size`` rows (as ``dtype`` if
        given; a block of rows in memory may be a view: do not write to it). A file's reads of
        ``chunk_rows`` rows serve several blocks each."""
        n = len(self)
        for start in range(0, n, size):
            rows = slice(start, min(start + size, n))
            if self.index is None:
                block = np.asarray(self.source[rows])
                yield rows, block if dtype is None else np.asarray(block, dtype=dtype)
            else:
                yield rows, self.take(np.arange(rows.start, rows.stop), dtype)

    def map(
        self,
        function: Callable[..., np.ndarray],
        *alongside: np.ndarray,
        store: RowStore | None = None,
    ) -> Stored:
        """``function`` applied to consecutive blocks of :data:`BLOCK_ROWS` rows, its per-row
        results joined (in ``store`` if given, else in memory): for functions whose result for
        a row depends on that row only (a mean over epochs, a product with a fixed vector). The
        same rows of each ``alongside`` array (the labels) are passed after the block. Memory:
        one block and the result, not a float64 copy of the rows."""
        out = None
        for rows, block in self.blocks():
            part = np.asarray(function(block, *(extra[rows] for extra in alongside)))
            if out is None:
                shape = (len(self), *part.shape[1:])
                out = (
                    np.empty(shape, part.dtype) if store is None else store.empty(shape, part.dtype)
                )
            out[rows] = part
        if out is None:  # no rows: the function still checks the (empty) input's shape
            empty = self.take(np.zeros(0, dtype=np.int64))
            out = np.asarray(function(empty, *(extra[0:0] for extra in alongside)))
            return out if store is None else store.keep(out)
        return out if store is None else store.finish(out)

    def whole(self) -> np.ndarray:
        """All the rows in memory (a file is read): for a per-sample column whose whole is
        needed at once, such as a median."""
        if self.index is not None:
            return self.take(np.arange(len(self)))
        if self.in_memory:
            return self.source
        return np.asarray(self.source[0 : len(self)])

    def all_finite(self) -> bool:
        """True when no value is NaN or infinite (checked block by block)."""
        return all(np.isfinite(block).all() for _, block in self.blocks())

    def for_task(self, shares_memory: bool) -> Rows:
        """These rows as a task should carry them: as they are for a task that shares this
        process's memory or reads a file itself (only the path travels), else a compact copy of
        the rows of a subset of an array in memory (a class, not the whole array)."""
        if shares_memory or not self.in_memory or self.index is None:
            return self
        return Rows(np.ascontiguousarray(self.source[self.index]))

    @contextmanager
    def scratch(self) -> Iterator[RowStore]:
        """A :class:`RowStore` for intermediate per-row results of a computation over these
        rows: memory for rows in memory; for rows in a file, a temporary folder next to it
        (removed when the block ends), read ``chunk_rows`` rows at a time like the file."""
        if self.in_memory:
            yield RowStore()
            return
        source = self.source
        with tempfile.TemporaryDirectory(prefix="scratch-", dir=source.path.parent) as folder:
            staging = Staging(folder, source.chunk_rows)
            try:
                yield RowStore(staging)
            finally:
                staging.close()

    def grouped(self, order: np.ndarray, bounds: np.ndarray, store: RowStore) -> GroupedRows:
        """These rows put in ``order``, where group ``g`` is ``order[bounds[g]:bounds[g + 1]]``,
        read a few groups at a time (see :class:`GroupedRows`); ``store`` holds the sorted copy
        a file needs."""
        return GroupedRows(self, order, bounds, store)


class GroupedRows:
    """The rows of given groups (k-means cells), in group order: gathered from memory, or, for
    rows in a file, read as contiguous ranges of a copy sorted by group.

    The sorted copy is written in two passes of bounded memory, linear in N: the rows go, a
    block at a time, to the region of their run of ``read_rows`` sorted positions (in their
    original order there), then each region is read, put in group order and written back.
    """

    def __init__(self, rows: Rows, order: np.ndarray, bounds: np.ndarray, store: RowStore) -> None:
        self.rows, self.bounds = rows, bounds
        self.sorted = None
        if rows.in_memory:
            return
        n, width = rows.shape
        group = rows.source.read_rows
        self.sorted = store.empty((n, width), rows.dtype)
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)
        filled = np.zeros(-(-n // group), dtype=np.int64)
        for positions, block in rows.blocks():
            groups = rank[positions] // group
            by_group = np.argsort(groups, kind="stable")  # keeps the original order in a group
            present, starts, counts = np.unique(
                groups[by_group], return_index=True, return_counts=True
            )
            for g, first, count in zip(present, starts, counts, strict=True):
                at = g * group + filled[g]
                self.sorted[at : at + count] = block[by_group[first : first + count]]
                filled[g] += count
        del rank
        for start in range(0, n, group):
            index = order[start : start + group]
            region = self.sorted[start : start + index.size]  # its rows in original order
            out = np.empty_like(region)
            out[np.argsort(index)] = region
            self.sorted[start : start + index.size] = out

    def of(self, groups: list[int], members: np.ndarray) -> np.ndarray:
        """The rows of ``groups``, whose members (in group order) are ``members``."""
        if self.sorted is None:
            index = self.rows.index
            return self.rows.source[members if index is None else index[members]]
        ranges = [(int(self.bounds[c]), int(self.bounds[c + 1])) for c in groups]
        return np.concatenate([self.sorted[a:b] for a, b in ranges if b > a])


RowsLike = np.ndarray | ArrayFile | Rows
"""What takes rows: an array in memory, an :class:`~poisonguard.ondisk.ArrayFile`, or
:class:`Rows`."""


Stored = np.ndarray | ArrayFile
"""What a :class:`RowStore` gives back: an array in memory, or its staging file."""


def as_rows(array: RowsLike) -> Rows:
    """``array`` as :class:`Rows` (itself if it already is)."""
    return array if isinstance(array, Rows) else Rows(array)


def evenly_spaced(positions: np.ndarray, most: int) -> np.ndarray:
    """At most ``most`` of the sorted ``positions``, evenly spaced (all of them if fewer): a
    sample of rows to read at once, the same for the same rows."""
    positions = np.asarray(positions, dtype=np.int64)
    if positions.size <= most:
        return positions
    return positions[np.linspace(0, positions.size - 1, most).astype(np.int64)]


def where(array: RowsLike, *, staged: bool = False) -> str:
    """Where ``array``'s rows are, in words (:meth:`Rows.location`)."""
    return as_rows(array).location(staged=staged)


class RowStore:
    """Where per-sample results go as they are computed: memory, or, with ``staging`` (an
    out-of-core scan), one uncompressed file per array in the staging folder, read back as an
    :class:`~poisonguard.ondisk.ArrayFile` a block of rows at a time."""

    def __init__(self, staging: Staging | None = None) -> None:
        self.staging = staging

    @property
    def in_memory(self) -> bool:
        return self.staging is None

    def empty(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray | h5py.Dataset:
        """Room for a per-sample array, filled by row slices: zeros (a staging file is filled
        with zeros too). :meth:`finish` makes it readable."""
        if self.staging is None:
            return np.zeros(shape, dtype=dtype)
        return self.staging.allocate(shape, np.dtype(dtype))

    def finish(self, data: np.ndarray | h5py.Dataset) -> Stored:
        """What :meth:`empty` gave, filled: the array itself, or the staging file as an
        :class:`~poisonguard.ondisk.ArrayFile`."""
        return data if self.staging is None else self.staging.finish(data)

    def keep(self, array: np.ndarray) -> Stored:
        """``array`` itself in memory; with staging, a copy in a staging file, read back as an
        :class:`~poisonguard.ondisk.ArrayFile` (the caller drops the array, and with it the
        memory)."""
        if self.staging is None:
            return array
        data = self.staging.allocate(array.shape, array.dtype)
        step = self.staging.chunk_rows
        for start in range(0, array.shape[0], step):
            data[start : start + step] = array[start : start + step]
        return self.staging.finish(data)

    def keep_scores(self, values: Stored) -> Stored:
        """A detector's per-sample scores as the store holds them: a file (already written
        where it belongs) as it is, else as float64, kept by :meth:`keep`."""
        if isinstance(values, ArrayFile):
            return values
        return self.keep(np.asarray(values, dtype=np.float64))
