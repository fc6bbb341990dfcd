"""Duplicate search: byte-identical and nearly identical samples, in one set or across two.

* :func:`exact_duplicates`: groups of byte-identical samples (blake2b of each row, confirmed by
  comparing the bytes).
* :func:`near_duplicates`: pairs of samples that are nearly identical but not byte-identical,
  inside one set or between two (training vs held-out). The distance is Euclidean on samples scaled
  to [0, 1] (``uint8 / 255``; floats as given), and for images the smallest over shifts of up to
  ``max_shift`` pixels (compared on the overlap, rescaled to the full image:
  ``sqrt(H W / overlap) * ||a[overlap] - b[shifted overlap]||``). Without the shift tolerance a
  copy shifted by one pixel is *not* near its original: on the 8x8 digits it lies a median 2.6
  (vertical) to 3.1 (horizontal) median nearest-neighbour distances away, never under 1.0, farther
  than the natural neighbours. A pair is a near
  duplicate when its distance is at most ``NEAR_DUPLICATE_FACTOR`` times the median
  nearest-neighbour distance of the (deduplicated) set, so the threshold follows the data's own
  scale.

The shift-tolerant distance and the radius search that finds candidate pairs are in
:mod:`poisonguard.privacy.neighbour_search`; the checklist items that judge what is found
(:func:`~poisonguard.privacy.checklist.duplicates_item`,
:func:`~poisonguard.privacy.checklist.train_heldout_overlap_item`) are in
:mod:`poisonguard.privacy.checklist`. Everything here is a pure function over arrays (no model,
no file I/O).

Threshold (module constant)
---------------------------
``NEAR_DUPLICATE_FACTOR = 0.1``
    near duplicate at <= 0.1 x the median nearest-neighbour distance. Measured on sklearn's digits
    (1797 8x8 images, shift-tolerant distance): the closest natural pair lies at 0.33 x the median
    (0.1 % quantile 0.43), a 3.3x margin; planted copies with Gaussian noise of sd 1 % of the
    value range lie at <= 0.09 (all found; at sd 1.5 % half are), copies shifted by one pixel at
    0. On Fashion-MNIST (60,000 images) the 18 pairs under 0.1 are all visibly the same item.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from poisonguard.privacy.neighbour_search import (
    _candidates,
    _median_nn_distance,
    _regions,
    _shifts,
)

__all__ = [
    "NEAR_DUPLICATE_FACTOR",
    "NearPair",
    "NearDuplicates",
    "exact_duplicates",
    "near_duplicates",
]

logger = logging.getLogger(__name__)

NEAR_DUPLICATE_FACTOR = 0.1

#: Rows hashed per chunk in :func:`exact_duplicates`.
_HASH_CHUNK = 4096
_PAIR_CHUNK = 4096


# --- exact duplicates --------------------------------------------------------------------------


def exact_duplicates(x: np.ndarray, ids: Sequence[str] | None = None) -> list[list[int]]:
    """Groups of row indices whose samples are byte-identical.

    Parameters
    ----------
    x : ndarray, shape (N, ...)
        Samples (images ``(N, C, H, W)`` or table rows ``(N, D)``).
    ids : sequence of str, optional
        The samples' ids; only checked to have ``N`` entries (the groups index both).

    Returns
    -------
    list of list of int
        Each group (at least two indices, ascending) holds samples with identical bytes; groups
        are ordered by their first index. Rows are hashed with blake2b and rows with the same
        digest are compared byte by byte, so a hash collision cannot merge different samples.
    """
    rows = _byte_rows(x)
    if ids is not None and len(ids) != rows.shape[0]:
        raise ValueError(f"x has {rows.shape[0]} samples but ids has {len(ids)}")
    by_digest: dict[bytes, list[int]] = {}
    for start in range(0, rows.shape[0], _HASH_CHUNK):
        chunk = np.ascontiguousarray(rows[start : start + _HASH_CHUNK])
        for offset, row in enumerate(chunk):
            digest = hashlib.blake2b(row.data, digest_size=16).digest()
            by_digest.setdefault(digest, []).append(start + offset)
    groups: list[list[int]] = []
    for members in by_digest.values():
        if len(members) > 1:
            groups.extend(_split_identical(rows, members))
    return sorted(groups, key=lambda group: group[0])


def _byte_rows(x: np.ndarray) -> np.ndarray:
    """``x`` as an ``(N, bytes)`` uint8 array (a view when ``x`` is contiguous)."""
    x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"x must have shape (N, D) or (N, C, H, W), got {x.shape}")
    if x.dtype.kind not in "biuf":
        raise ValueError(f"x must hold numbers, got dtype {x.dtype}")
    flat = np.ascontiguousarray(x.reshape(x.shape[0], -1))
    return flat.view(np.uint8).reshape(x.shape[0], -1)


def _split_identical(rows: np.ndarray, members: list[int]) -> list[list[int]]:
    """Split rows sharing a digest into groups of truly identical rows (of size >= 2)."""
    groups: list[list[int]] = []
    remaining = list(members)
    while len(remaining) > 1:
        first = rows[remaining[0]]
        same = [i for i in remaining if np.array_equal(rows[i], first)]
        if len(same) > 1:
            groups.append(same)
        taken = set(same)
        remaining = [i for i in remaining if i not in taken]
    return groups


# --- near duplicates ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NearPair:
    """Two nearly identical samples.

    ``i`` indexes ``x``; ``j`` indexes ``x`` too (``i < j``) or, in the cross-set case, ``other``.
    ``distance`` is the shift-tolerant Euclidean distance on [0, 1]-scaled samples; ``shift`` the
    ``(dy, dx)`` that attains it (``other[j]`` or ``x[j]`` shows ``x[i]`` moved by ``shift``);
    ``exact`` marks byte-identical cross-set copies (distance 0).
    """

    i: int
    j: int
    distance: float
    exact: bool = False
    shift: tuple[int, int] = (0, 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "i": self.i,
            "j": self.j,
            "distance": self.distance,
            "exact": self.exact,
            "shift": list(self.shift),
        }


@dataclass(frozen=True)
class NearDuplicates:
    """The result of :func:`near_duplicates`.

    Attributes
    ----------
    pairs : list of NearPair
        Sorted by distance, at most ``max_pairs`` of them.
    n_pairs : int
        How many pairs were found before truncating to ``max_pairs``.
    threshold : float
        The distance at or below which a pair counts (``factor * median_nn_distance`` unless
        given).
    median_nn_distance : float
        Median over (a fixed-seed sample of) the deduplicated samples of ``x`` of the distance to
        their nearest other sample; NaN when not computed (threshold given) or fewer than 2
        distinct samples.
    factor : float or None
        The factor applied to the median, None when the threshold was given.
    max_shift : int
        Largest shift in pixels tried per axis (0 for tables).
    cross : bool
        Pairs are between ``x`` and ``other``.
    search : str
        How candidates were searched, for the report.
    """

    pairs: list[NearPair]
    n_pairs: int
    threshold: float
    median_nn_distance: float
    factor: float | None
    max_shift: int
    cross: bool
    search: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "pairs": [pair.as_dict() for pair in self.pairs],
            "n_pairs": self.n_pairs,
            "threshold": self.threshold,
            "median_nn_distance": self.median_nn_distance,
            "factor": self.factor,
            "max_shift": self.max_shift,
            "cross": self.cross,
            "search": self.search,
        }


def near_duplicates(
    x: np.ndarray,
    *,
    other: np.ndarray | None = None,
    threshold: float | None = None,
    factor: float = NEAR_DUPLICATE_FACTOR,
    max_shift: int | None = None,
    max_pairs: int = 1000,
    progress: bool = False,
) -> NearDuplicates:
    """Pairs of nearly identical, not byte-identical, samples.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W) or (N, D)
        Samples; ``uint8`` is scaled by 1/255, other dtypes are used as given. (Tables are compared
        on their raw columns, so a column with a large range dominates; standardise first if
        the columns have different units.)
    other : ndarray, optional
        A second set with the same sample shape (e.g. held-out data): pairs are then between
        ``x[i]`` and ``other[j]``, and byte-identical copies are included with distance 0 and
        ``exact=True``. Without it, pairs are within ``x`` and byte-identical samples (see
        :func:`exact_duplicates`) are left out; a near duplicate of a group of identical
        samples is reported against the group's first index.
    threshold : float, optional
        Fixed distance threshold. Default: ``factor`` times the median nearest-neighbour distance
        of ``x`` (pass the threshold of a within-set call to a cross-set call to skip measuring
        the median twice).
    factor : float
        See ``threshold``.
    max_shift : int, optional
        Images are compared at every shift of up to this many pixels per axis; default 1 for
        images, 0 (and only 0) for tables.
    max_pairs : int
        Keep at most this many pairs (the closest).
    progress : bool
        Show a progress bar over the shifts.

    Returns
    -------
    NearDuplicates

    Notes
    -----
    The median is measured with an exact ``NearestNeighbors(n_neighbors=2)`` search on the full
    samples, for ``_REFERENCE_QUERIES`` query samples drawn with a fixed seed (all samples when
    there are fewer). Pairs are then found by a radius search (radius = threshold) on the
    samples projected onto ``_SEARCH_DIMS`` orthonormal directions: an orthogonal projection
    never lengthens a distance, so every pair within the threshold is among the candidates
    (none is missed), and each candidate is re-measured on the full samples. 60,000 28x28
    images (Fashion-MNIST) take 20-33 s on 2 busy cores; a cross-set call with the threshold
    given, 60,000 against 10,000, 5 s.

    If most samples had a near copy, the median would shrink towards the copies' distances and
    the threshold with it; the median is taken after removing exact duplicates only.
    """
    started = time.perf_counter()
    a = _as_images(x, name="x")
    if max_shift is None:
        max_shift = 1 if np.asarray(x).ndim == 4 else 0
    _check_shift(a, max_shift, table=np.asarray(x).ndim == 2)
    cross = other is not None
    if max_pairs < 0:
        raise ValueError(f"max_pairs must be >= 0, got {max_pairs}")

    groups = exact_duplicates(x)
    redundant = {i for group in groups for i in group[1:]}
    keep = np.array([i for i in range(a.shape[0]) if i not in redundant], dtype=np.int64)
    shifts_all = _shifts(max_shift, half=False)

    median = math.nan
    used_factor: float | None = None
    if threshold is None:
        median = _median_nn_distance(a[keep], shifts_all, progress=progress)
        threshold = factor * median if math.isfinite(median) else 0.0
        used_factor = factor
    elif not threshold >= 0:
        raise ValueError(f"threshold must be a non-negative number, got {threshold}")

    if cross:
        b = _as_images(other, name="other")
        if b.shape[1:] != a.shape[1:]:
            raise ValueError(
                f"other has samples of shape {b.shape[1:]} but x has {a.shape[1:]}; they must match"
            )
        index_rows = np.arange(a.shape[0])
        candidates, search = _candidates(a, b, threshold, shifts_all, same=False, progress=progress)
        exact_cross = _cross_identical(np.asarray(x), np.asarray(other), a, b)
        candidates = np.unique(np.concatenate([candidates, exact_cross]), axis=0)
        pairs = _measure(a, b, candidates, threshold, max_shift, exact=set(map(tuple, exact_cross)))
    else:
        index_rows = keep
        sub = a[keep]
        candidates, search = _candidates(
            sub, sub, threshold, _shifts(max_shift, half=True), same=True, progress=progress
        )
        pairs = _measure(sub, sub, candidates, threshold, max_shift, exact=set())
        pairs = [
            NearPair(int(index_rows[p.i]), int(index_rows[p.j]), p.distance, p.exact, p.shift)
            for p in pairs
        ]
    pairs.sort(key=lambda p: (p.distance, p.i, p.j))
    logger.info(
        "near duplicates: %d pairs at distance <= %.4g (median NN distance %.4g), %.1f s",
        len(pairs),
        threshold,
        median,
        time.perf_counter() - started,
    )
    return NearDuplicates(
        pairs=pairs[:max_pairs],
        n_pairs=len(pairs),
        threshold=float(threshold),
        median_nn_distance=float(median),
        factor=used_factor,
        max_shift=max_shift,
        cross=cross,
        search=search,
    )


def _as_images(x: np.ndarray, *, name: str) -> np.ndarray:
    """Samples as float32 ``(N, C, H, W)`` in [0, 1] for uint8 (a table is ``(N, 1, 1, D)``)."""
    x = np.asarray(x)
    if x.ndim not in (2, 4):
        raise ValueError(f"{name} must have shape (N, D) or (N, C, H, W), got {x.shape}")
    if x.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold numbers, got dtype {x.dtype}")
    out = x.astype(np.float32)
    if x.dtype == np.uint8:
        out /= 255.0
    if not np.isfinite(out).all():
        raise ValueError(f"{name} holds NaN or infinity")
    return out.reshape(x.shape[0], 1, 1, -1) if x.ndim == 2 else out


def _check_shift(a: np.ndarray, max_shift: int, *, table: bool) -> None:
    if max_shift < 0 or int(max_shift) != max_shift:
        raise ValueError(f"max_shift must be a whole number >= 0, got {max_shift}")
    if table and max_shift:
        raise ValueError("max_shift must be 0 for tables (columns cannot be shifted)")
    if max_shift >= min(a.shape[2], a.shape[3]):
        raise ValueError(f"max_shift {max_shift} is too large for {a.shape[2]}x{a.shape[3]} images")


def _measure(
    a: np.ndarray,
    b: np.ndarray,
    candidates: np.ndarray,
    threshold: float,
    max_shift: int,
    *,
    exact: set[tuple[int, int]],
) -> list[NearPair]:
    """Shift-tolerant distance of each candidate ``(i into a, j into b)``; keep those in range."""
    pairs: list[NearPair] = []
    shifts = _shifts(max_shift, half=False)
    for start in range(0, candidates.shape[0], _PAIR_CHUNK):
        chunk = candidates[start : start + _PAIR_CHUNK]
        left, right = a[chunk[:, 0]], b[chunk[:, 1]]
        best = np.full(chunk.shape[0], np.inf)
        best_shift = np.zeros((chunk.shape[0], 2), dtype=np.int64)
        for shift in shifts:
            (a_rows, a_cols), (b_rows, b_cols), scale = _regions(a.shape[2:], shift)
            diff = left[:, :, a_rows, a_cols].astype(np.float64) - right[:, :, b_rows, b_cols]
            distance = scale * np.sqrt(np.einsum("nchw,nchw->n", diff, diff))
            better = distance < best
            best[better] = distance[better]
            best_shift[better] = shift
        for (i, j), distance, shift in zip(chunk.tolist(), best, best_shift.tolist(), strict=True):
            is_exact = (i, j) in exact
            if is_exact or distance <= threshold:
                d = 0.0 if is_exact else float(distance)
                pairs.append(NearPair(i, j, d, is_exact, (0, 0) if is_exact else tuple(shift)))
    return pairs


def _cross_identical(x: np.ndarray, other: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(M, 2)`` pairs ``(i, j)`` with ``x[i]`` identical to ``other[j]`` (bytes, or values when
    the dtypes differ)."""
    if x.dtype != other.dtype:
        x, other = a, b
    left, right = _byte_rows(x), _byte_rows(other)
    by_digest: dict[bytes, list[int]] = {}
    for start in range(0, left.shape[0], _HASH_CHUNK):
        chunk = np.ascontiguousarray(left[start : start + _HASH_CHUNK])
        for offset, row in enumerate(chunk):
            digest = hashlib.blake2b(row.data, digest_size=16).digest()
            by_digest.setdefault(digest, []).append(start + offset)
    pairs: list[tuple[int, int]] = []
    for start in range(0, right.shape[0], _HASH_CHUNK):
        chunk = np.ascontiguousarray(right[start : start + _HASH_CHUNK])
        for offset, row in enumerate(chunk):
            digest = hashlib.blake2b(row.data, digest_size=16).digest()
            for i in by_digest.get(digest, ()):
                if np.array_equal(left[i], row):
                    pairs.append((i, start + offset))
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)
