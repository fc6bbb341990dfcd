"""How random generators are derived from the user's seed.

Work done class by class draws from a generator of its own, seeded by the scan's seed *and* the
class code, so that a class's result does not depend on which other classes ran before it, in
which order, or on which machine: the per-class detectors give the same scores whether they run
in one loop, on a thread pool or as tasks on a Dask cluster.
"""

from __future__ import annotations

import numpy as np

__all__ = ["class_rng", "key_order", "row_keys", "sample_by_key"]


def class_rng(seed: int, code: int) -> np.random.Generator:
    """The random generator of class ``code``'s work under ``seed``."""
    return np.random.default_rng([int(seed), int(code)])


# Random subsets drawn by content, not by position. A detector that fits on "a seeded sample of
# 500 rows" or deals rows to folds in a shuffled order must give the same scores, permuted, when
# the dataset's rows come in another order (a shuffled CSV, another file listing): the registry's
# contract (tests/detector_contract.py). So each row gets a seeded 64-bit key computed from its
# bytes alone; a "random" subset is the rows with the smallest keys, and a fit that depends on
# the order of its rows (FastMCD's starts, k-means++) sees them sorted by key. Identical rows get
# identical keys; they are interchangeable, so the stable tie-break by position changes nothing.

_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio, odd: a bijective mix


def row_keys(rows: np.ndarray, seed: int) -> np.ndarray:
    """A seeded 64-bit key of each row's bytes (uint64, shape ``(n,)``): the same for the same
    row and seed wherever the row sits, and unrelated between different rows."""
    data = np.ascontiguousarray(rows)
    n = data.shape[0]
    raw = data.reshape(n, -1).view(np.uint8) if n else np.zeros((0, 8), np.uint8)
    pad = (-raw.shape[1]) % 8
    if pad:
        raw = np.concatenate([raw, np.zeros((n, pad), np.uint8)], axis=1)
    words = np.ascontiguousarray(raw).view("<u8")
    start = np.random.default_rng([int(seed), 0x6B6579]).integers(2**63, dtype=np.uint64)
    keys = np.full(n, start, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for column in words.T:
            keys ^= column
            keys *= _MULTIPLIER
            keys ^= keys >> np.uint64(29)
    return keys


def sample_by_key(keys: np.ndarray, size: int) -> np.ndarray:
    """Sorted positions of the ``size`` rows with the smallest keys (all rows if fewer): a
    seeded random subset that does not depend on where the rows sit."""
    if size >= keys.size:
        return np.arange(keys.size)
    return np.sort(np.argsort(keys, kind="stable")[:size])


def key_order(keys: np.ndarray) -> np.ndarray:
    """Positions sorted by key: the order in which an order-sensitive fit sees the rows."""
    return np.argsort(keys, kind="stable")
