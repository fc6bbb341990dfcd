"""Shift-tolerant neighbour search: the distance near duplicates are measured with, and the
search that finds every pair within a radius of it.

Samples are ``(N, C, H, W)`` float arrays (a table is ``(N, 1, 1, D)``). ``b`` shows ``a`` moved
by ``shift = (dy, dx)`` when ``b[y + dy, x + dx] == a[y, x]``; the distance at a shift is the
Euclidean distance on the overlap, rescaled to the full image (``sqrt(H W / overlap)``), and the
shift-tolerant distance is the smallest over the shifts tried. Used by
:func:`poisonguard.privacy.duplicates.near_duplicates`:

* :func:`_median_nn_distance`: the data's own scale, the median shift-tolerant distance from a
  sample to its nearest other sample (exact search, on a fixed-seed subset of queries);
* :func:`_candidates`: every pair that may lie within a radius, from a radius search on an
  orthonormal projection of the samples (a projection never lengthens a distance, so no pair
  within the radius is missed; the caller re-measures each candidate on the full samples);
* :func:`_shifts` and :func:`_regions`: the shifts tried and the slices compared at each.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.neighbors import NearestNeighbors
from tqdm.auto import tqdm

#: Candidate search dimension: samples are projected onto this many orthonormal directions
#: (principal components, or random ones above ``_PCA_MAX_DIM`` features).
_SEARCH_DIMS = 32
_PCA_MAX_DIM = 4096
#: Query samples (drawn with a fixed seed) whose exact nearest-neighbour distance gives the median.
_REFERENCE_QUERIES = 1000
_SEED = 0
_ROW_CHUNK = 2048


def _shifts(max_shift: int, *, half: bool) -> list[tuple[int, int]]:
    """All ``(dy, dx)`` up to ``max_shift``; with ``half``, (0, 0) and one of each ``s, -s``.

    ``d(a, b, s) == d(b, a, -s)``, so when every sample is a query the half set finds every pair.
    """
    span = range(-max_shift, max_shift + 1)
    shifts = [(dy, dx) for dy in span for dx in span]
    if half:
        shifts = [s for s in shifts if s >= (0, 0)]
    return sorted(shifts, key=lambda s: (abs(s[0]) + abs(s[1]), s))


def _regions(shape: tuple[int, int], shift: tuple[int, int]) -> tuple[tuple, tuple, float]:
    """Slices of ``a`` and ``b`` compared at ``shift`` and the rescaling to the full image.

    ``b`` shows ``a`` moved by ``shift = (dy, dx)`` when ``b[y + dy, x + dx] == a[y, x]``.
    """
    (height, width), (dy, dx) = shape, shift
    a_rows = slice(max(0, -dy), height - max(0, dy))
    a_cols = slice(max(0, -dx), width - max(0, dx))
    b_rows = slice(a_rows.start + dy, a_rows.stop + dy)
    b_cols = slice(a_cols.start + dx, a_cols.stop + dx)
    overlap = (height - abs(dy)) * (width - abs(dx))
    return (a_rows, a_cols), (b_rows, b_cols), math.sqrt(height * width / overlap)


def _query_side(a: np.ndarray, shift: tuple[int, int]) -> np.ndarray:
    """``a``'s overlap moved to where it lands in ``b``, zeros elsewhere, flattened."""
    (a_rows, a_cols), (b_rows, b_cols), _ = _regions(a.shape[2:], shift)
    out = np.zeros_like(a)
    out[:, :, b_rows, b_cols] = a[:, :, a_rows, a_cols]
    return out.reshape(a.shape[0], -1)


def _index_side(b: np.ndarray, shift: tuple[int, int]) -> np.ndarray:
    """``b`` with everything outside the overlap set to zero, flattened.

    ``||_query_side(a) - _index_side(b)||`` is the overlap distance of ``a`` and ``b``.
    """
    _, (b_rows, b_cols), _ = _regions(b.shape[2:], shift)
    if b_rows == slice(0, b.shape[2]) and b_cols == slice(0, b.shape[3]):
        return b.reshape(b.shape[0], -1)
    out = np.zeros_like(b)
    out[:, :, b_rows, b_cols] = b[:, :, b_rows, b_cols]
    return out.reshape(b.shape[0], -1)


def _median_nn_distance(a: np.ndarray, shifts: list[tuple[int, int]], *, progress: bool) -> float:
    """Median over query samples of the shift-tolerant distance to the nearest other sample."""
    n = a.shape[0]
    if n < 2:
        return math.nan
    if n > _REFERENCE_QUERIES:
        queries = np.sort(np.random.default_rng(_SEED).choice(n, _REFERENCE_QUERIES, replace=False))
    else:
        queries = np.arange(n)
    best = np.full(queries.size, np.inf)
    for shift in tqdm(
        shifts, desc="nearest-neighbour distances", unit="shift", disable=not progress
    ):
        scale = _regions(a.shape[2:], shift)[2]
        search = NearestNeighbors(n_neighbors=2, algorithm="brute").fit(_index_side(a, shift))
        distance, index = search.kneighbors(_query_side(a[queries], shift))
        # The query itself may be one of the two neighbours; take the first one that is not.
        not_self = index != queries[:, None]
        first = np.argmax(not_self, axis=1)
        nearest = distance[np.arange(queries.size), first]
        best = np.minimum(best, scale * nearest)
    return float(np.median(best))


def _projection(a: np.ndarray) -> tuple[np.ndarray | None, str]:
    """Orthonormal ``(D, k)`` directions for the candidate search, or None to search on ``a``."""
    n, dim = a.shape[0], int(np.prod(a.shape[1:]))
    if dim <= _SEARCH_DIMS or n <= _SEARCH_DIMS:
        return None, f"radius search on all {dim} features"
    flat = a.reshape(n, dim)
    if dim <= _PCA_MAX_DIM:
        mean = np.zeros(dim)
        gram = np.zeros((dim, dim))
        for start in range(0, n, _ROW_CHUNK):
            chunk = flat[start : start + _ROW_CHUNK].astype(np.float64)
            mean += chunk.sum(axis=0)
            gram += chunk.T @ chunk
        mean /= n
        _, vectors = np.linalg.eigh(gram / n - np.outer(mean, mean))
        basis = vectors[:, ::-1][:, :_SEARCH_DIMS]
        how = f"{_SEARCH_DIMS} principal components"
    else:
        gaussian = np.random.default_rng(_SEED).standard_normal((dim, _SEARCH_DIMS))
        basis, _ = np.linalg.qr(gaussian)
        how = f"{_SEARCH_DIMS} random orthonormal directions (seed {_SEED})"
    text = f"radius search on {how} of {dim} features, candidates re-measured on all features"
    return np.ascontiguousarray(basis, dtype=np.float32), text


def _project(side: np.ndarray, shift, basis: np.ndarray | None, which) -> np.ndarray:
    """``which(side, shift)`` projected on ``basis``, in row chunks to bound memory."""
    if basis is None:
        return which(side, shift)
    parts = [
        which(side[start : start + _ROW_CHUNK], shift) @ basis
        for start in range(0, side.shape[0], _ROW_CHUNK)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, basis.shape[1]), np.float32)


def _candidates(
    a: np.ndarray,
    b: np.ndarray,
    threshold: float,
    shifts: list[tuple[int, int]],
    *,
    same: bool,
    progress: bool,
) -> tuple[np.ndarray, str]:
    """``(M, 2)`` index pairs ``(into b, into a)`` whose distance may be within ``threshold``.

    ``b`` rows are the queries, ``a`` the index (``same``: one set, pairs ``i < j``).
    """
    basis, how = _projection(a)
    found: list[np.ndarray] = []
    if a.shape[0] == 0 or b.shape[0] == 0 or (same and a.shape[0] < 2):
        return np.zeros((0, 2), np.int64), how
    for shift in tqdm(shifts, desc="near-duplicate search", unit="shift", disable=not progress):
        scale = _regions(a.shape[2:], shift)[2]
        # Slack for float32 rounding: a few extra candidates, re-measured exactly below.
        radius = threshold / scale * (1 + 1e-3) + 1e-6
        index = _project(a, shift, basis, _index_side)
        queries = _project(b, shift, basis, _query_side)
        search = NearestNeighbors(radius=radius, algorithm="kd_tree").fit(index)
        hits = search.radius_neighbors(queries, return_distance=False)
        counts = np.fromiter((len(h) for h in hits), dtype=np.int64, count=len(hits))
        if counts.sum() == 0:
            continue
        rows = np.repeat(np.arange(len(hits)), counts)
        cols = np.concatenate(hits).astype(np.int64)
        if same:
            distinct = rows != cols
            pair = np.stack([np.minimum(rows, cols), np.maximum(rows, cols)], axis=1)[distinct]
        else:
            pair = np.stack([cols, rows], axis=1)
        found.append(pair)
    if not found:
        return np.zeros((0, 2), np.int64), how
    return np.unique(np.concatenate(found), axis=0), how
