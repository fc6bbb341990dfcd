"""The row source: rows in memory and in a file read alike, in the same blocks; the row store
keeps results in memory or in a staging folder."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest

from poisonguard.ondisk import BLOCK_ROWS, ArrayFile, staging_area
from poisonguard.rows import Rows, RowStore, as_rows, where

N_ROWS = 2 * BLOCK_ROWS + 77


@pytest.fixture(scope="module")
def both(tmp_path_factory) -> tuple[np.ndarray, ArrayFile]:
    values = np.random.default_rng(0).normal(size=(N_ROWS, 5)).astype(np.float32)
    path = tmp_path_factory.mktemp("rows") / "values.h5"
    with h5py.File(path, "w") as handle:
        handle["values"] = values
    return values, ArrayFile(path, "values", 2 * BLOCK_ROWS)


@pytest.mark.parametrize("in_file", [False, True])
def test_rows_read_the_same_blocks_from_memory_and_file(both, in_file):
    values, on_disk = both
    rows = Rows(on_disk if in_file else values)
    assert rows.shape == values.shape and rows.dtype == np.float32 and len(rows) == N_ROWS
    assert rows.in_memory is not in_file
    blocks = list(rows.blocks())
    assert [b.start for b, _ in blocks] == list(range(0, N_ROWS, BLOCK_ROWS))
    assert np.array_equal(np.concatenate([block for _, block in blocks]), values)
    assert all(block.dtype == np.float64 for _, block in rows.blocks(dtype=np.float64))
    assert [b.stop - b.start for b, _ in rows.blocks(1000)][:2] == [1000, 1000]
    assert np.array_equal(rows[10:20], values[10:20])
    index = np.sort(np.random.default_rng(1).choice(N_ROWS, 500, replace=False))
    assert np.array_equal(rows.take(index), values[index])
    assert np.array_equal(rows.whole(), values)
    assert rows.all_finite()


@pytest.mark.parametrize("in_file", [False, True])
def test_a_subset_is_rows_of_its_own(both, in_file):
    values, on_disk = both
    members = np.arange(3, N_ROWS, 2)
    subset = Rows(on_disk if in_file else values).subset(members)
    assert subset.shape == (members.size, 5) and subset.width == 5
    assert np.array_equal(np.concatenate([b for _, b in subset.blocks()]), values[members])
    assert np.array_equal(subset[5:9], values[members[5:9]])
    assert np.array_equal(subset.take(np.array([0, 7])), values[members[[0, 7]]])
    assert np.array_equal(subset.subset(np.array([1, 2])).whole(), values[members[[1, 2]]])
    travelling = subset.for_task(shares_memory=False)
    assert np.array_equal(travelling.whole(), values[members])
    assert (travelling.index is None) is not in_file  # an array's class is copied, a file's not
    copy = pickle.loads(pickle.dumps(subset))
    assert np.array_equal(copy.whole(), values[members])


@pytest.mark.parametrize("in_file", [False, True])
def test_map_walks_blocks_with_the_rows_alongside(both, in_file, tmp_path):
    values, on_disk = both
    labels = np.arange(N_ROWS) % 3
    rows = Rows(on_disk if in_file else values)

    def shifted_sum(block, block_labels):
        return block.sum(axis=1) + block_labels

    expected = values.sum(axis=1) + labels
    assert np.array_equal(rows.map(shifted_sum, labels), expected)
    assert Rows(values[:0]).map(shifted_sum, labels[:0]).shape == (0,)
    with staging_area(tmp_path, BLOCK_ROWS) as staging:
        stored = rows.map(shifted_sum, labels, store=RowStore(staging))
        assert isinstance(stored, ArrayFile) and stored.path.parent == staging.folder
        assert np.array_equal(Rows(stored).whole(), expected)


def test_the_store_keeps_results_in_memory_or_in_staging(tmp_path):
    memory = RowStore()
    room = memory.empty((4, 2), np.float64)
    room[1:3] = 1.0
    assert memory.finish(room) is room and memory.keep(room) is room
    with staging_area(tmp_path, BLOCK_ROWS) as staging:
        store = RowStore(staging)
        room = store.empty((BLOCK_ROWS + 5, 2), np.float32)
        room[BLOCK_ROWS:] = 2.0
        done = store.finish(room)
        assert isinstance(done, ArrayFile) and done.shape == (BLOCK_ROWS + 5, 2)
        assert np.array_equal(done[BLOCK_ROWS - 1 : BLOCK_ROWS + 1], [[0, 0], [2, 2]])
        kept = store.keep(np.arange(10.0))
        assert np.array_equal(kept[0:10], np.arange(10.0))
        assert store.keep_scores(kept) is kept
        assert where(kept, staged=True).startswith("a staging file")
    assert where(np.zeros(3)) == "in memory"
    assert as_rows(Rows(np.zeros(3))).shape == (3,)


@pytest.mark.parametrize("in_file", [False, True])
def test_grouped_rows_read_whole_groups(both, in_file):
    values, on_disk = both
    rows = Rows(on_disk if in_file else values)
    groups = np.random.default_rng(2).integers(0, 40, N_ROWS)
    order = np.argsort(groups, kind="stable")
    bounds = np.searchsorted(groups[order], np.arange(41))
    members = [order[bounds[g] : bounds[g + 1]] for g in range(40)]
    with rows.scratch() as store:
        grouped = rows.grouped(order, bounds, store)
        for chosen in ([3], [7, 1, 39]):
            wanted = np.concatenate([members[g] for g in chosen])
            assert np.array_equal(grouped.of(chosen, wanted), values[wanted])
