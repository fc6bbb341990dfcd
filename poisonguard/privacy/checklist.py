"""The privacy review checklist: data checks and the items a reviewer signs off.

Each item is a dict ``{"item": str, "status": "pass" | "warn" | "fail", "evidence": str,
"details": dict}``; ``evidence`` states the measured numbers and the threshold in plain words.
Everything here is a pure function over arrays (no model, no file I/O).

Data checks
-----------
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
* :func:`id_like_columns`: table columns that identify a row.

Thresholds (module constants)
-----------------------------
``NEAR_DUPLICATE_FACTOR = 0.1``
    near duplicate at <= 0.1 x the median nearest-neighbour distance. Measured on sklearn's digits
    (1797 8x8 images, shift-tolerant distance): the closest natural pair lies at 0.33 x the median
    (0.1 % quantile 0.43), a 3.3x margin; planted copies with Gaussian noise of sd 1 % of the
    value range lie at <= 0.09 (all found; at sd 1.5 % half are), copies shifted by one pixel at
    0. On Fashion-MNIST (60,000 images) the 18 pairs under 0.1 are all visibly the same item.
``DUPLICATE_FAIL_SHARE = 0.01``
    duplicates inside training: ``warn`` when under 1 % of the samples are involved, ``fail`` at
    1 % or more; duplicated records are memorised far more than single ones (Carlini et al.,
    "Quantifying Memorization Across Neural Language Models", ICLR 2023 / arXiv 2022).
``ACCURACY_GAP_WARN = 0.02``, ``ACCURACY_GAP_FAIL = 0.10``
    train minus held-out accuracy: the attack "a record is a member when the model classifies it
    correctly" has a membership advantage equal to this gap (Yeom et al., CSF 2018), so a gap of
    10 points is a 10-point attacker advantage for free; 2 points is about three standard errors
    of a held-out accuracy of 90 % measured on 2,000 records (below it, the gap may be noise).
``MEMBERSHIP_AUC_WARN = 0.55``, ``MEMBERSHIP_AUC_FAIL = 0.60``; ``TPR_RATIO_WARN = 3``,
``TPR_RATIO_FAIL = 10``
    the AUC averages over all records; what matters is whether *some* records are identified
    with confidence, i.e. the true-positive rate at a low false-positive rate (Carlini et al.,
    "Membership Inference Attacks From First Principles", S&P 2022). A TPR 10 times the FPR
    means nine in ten of the attacker's confident claims are right.
``INVERSION_RATIO_FAIL = 0.5``, ``INVERSION_RATIO_WARN = 0.8``
    median over classes of (distance from a reconstruction to its nearest training record) /
    (to its nearest held-out record of the class): without record leakage it is about 1 when
    the two sets are of similar size per class (the nearest of a larger set is nearer by chance,
    so a training side much larger than the held-out side pulls the ratio below 1). The
    independent classifier's accuracy on the reconstructions is reported but does not set the
    status: a good model's class inversions look like their class whether or not it memorised
    anyone (class-level, not record-level information; Fredrikson et al., CCS 2015). Only when
    each class *is* a person (``classes_are_people=True``, e.g. face identification) is a
    recognisable reconstruction itself the leak: then accuracy >= ``INVERSION_RECOGNISED_WARN``
    (0.9) is at least a ``warn``.
``OUTLIER_CLASS_Z = 3.0``
    a class whose membership AUC has a robust z-score (median and MAD over classes) of 3 or more
    leaks much more than the others: ``warn``, naming the classes.

Identifier columns (:func:`id_like_columns`) and exact training/held-out copies fail on any
occurrence; near training/held-out copies warn on any.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sklearn.neighbors import NearestNeighbors
from tqdm.auto import tqdm

__all__ = [
    "NEAR_DUPLICATE_FACTOR",
    "DUPLICATE_FAIL_SHARE",
    "ACCURACY_GAP_WARN",
    "ACCURACY_GAP_FAIL",
    "MEMBERSHIP_AUC_WARN",
    "MEMBERSHIP_AUC_FAIL",
    "TPR_RATIO_WARN",
    "TPR_RATIO_FAIL",
    "INVERSION_RATIO_WARN",
    "INVERSION_RATIO_FAIL",
    "INVERSION_RECOGNISED_WARN",
    "OUTLIER_CLASS_Z",
    "ID_DISTINCT_SHARE",
    "NearPair",
    "NearDuplicates",
    "exact_duplicates",
    "near_duplicates",
    "id_like_columns",
    "accuracy_gap",
    "duplicates_item",
    "train_heldout_overlap_item",
    "accuracy_gap_item",
    "id_columns_item",
    "membership_item",
    "inversion_item",
    "outlier_classes_item",
]

logger = logging.getLogger(__name__)

Status = Literal["pass", "warn", "fail"]

NEAR_DUPLICATE_FACTOR = 0.1
DUPLICATE_FAIL_SHARE = 0.01
ACCURACY_GAP_WARN = 0.02
ACCURACY_GAP_FAIL = 0.10
MEMBERSHIP_AUC_WARN = 0.55
MEMBERSHIP_AUC_FAIL = 0.60
TPR_RATIO_WARN = 3.0
TPR_RATIO_FAIL = 10.0
INVERSION_RATIO_WARN = 0.8
INVERSION_RATIO_FAIL = 0.5
INVERSION_RECOGNISED_WARN = 0.9
OUTLIER_CLASS_Z = 3.0
#: An integer column is an identifier when all its values are distinct, or (from
#: ``ID_MIN_ROWS_FOR_SHARE`` rows on) at least this share of them.
ID_DISTINCT_SHARE = 0.99
ID_MIN_ROWS_FOR_SHARE = 1000
#: Fewer rows than this and a column being distinct or sorted is too likely by chance.
ID_MIN_ROWS = 10

#: Rows hashed per chunk in :func:`exact_duplicates`.
_HASH_CHUNK = 4096
#: Candidate search dimension: samples are projected onto this many orthonormal directions
#: (principal components, or random ones above ``_PCA_MAX_DIM`` features).
_SEARCH_DIMS = 32
_PCA_MAX_DIM = 4096
#: Query samples (drawn with a fixed seed) whose exact nearest-neighbour distance gives the median.
_REFERENCE_QUERIES = 1000
_SEED = 0
_ROW_CHUNK = 2048
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


# --- identifier columns -----------------------------------------------------------------------


def id_like_columns(x: np.ndarray, feature_names: Sequence[str]) -> list[dict[str, Any]]:
    """Table columns that identify a row rather than measure something.

    A column is flagged when it is

    * integer-valued and every value distinct (from ``ID_MIN_ROWS_FOR_SHARE`` rows on: at least
      ``ID_DISTINCT_SHARE`` of them), like a customer or patient number; or
    * strictly increasing or decreasing down the rows (a row counter, a timestamp).

    Float measurements that are merely all distinct (continuous features usually are) are not
    flagged. Tables with fewer than ``ID_MIN_ROWS`` rows are not judged.

    Returns
    -------
    list of dict
        ``{"column": name, "index": j, "reason": str}`` per flagged column, in column order.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must be a table of shape (N, D), got {x.shape}")
    if len(feature_names) != x.shape[1]:
        raise ValueError(f"x has {x.shape[1]} columns but {len(feature_names)} feature names")
    n = x.shape[0]
    if n < ID_MIN_ROWS:
        return []
    found = []
    for j, name in enumerate(feature_names):
        column = x[:, j].astype(np.float64)
        if not np.isfinite(column).all():
            continue
        steps = np.diff(column)
        reasons = []
        if (steps > 0).all() or (steps < 0).all():
            direction = "increasing" if steps[0] > 0 else "decreasing"
            reasons.append(f"strictly {direction} down the rows (a row counter or timestamp)")
        if np.array_equal(column, np.round(column)):
            distinct = np.unique(column).size
            enough = distinct == n or (
                n >= ID_MIN_ROWS_FOR_SHARE and distinct >= ID_DISTINCT_SHARE * n
            )
            if enough:
                reasons.append(
                    f"integer-valued with {distinct} distinct values in {n} rows "
                    f"({100 * distinct / n:.1f}%)"
                )
        if reasons:
            found.append({"column": str(name), "index": j, "reason": "; ".join(reasons)})
    return found


# --- accuracy gap --------------------------------------------------------------------------------


def accuracy_gap(train_accuracy: float, heldout_accuracy: float) -> float:
    """Training accuracy minus held-out accuracy (both in [0, 1]); positive = overfitting."""
    for name, value in (("train_accuracy", train_accuracy), ("heldout_accuracy", heldout_accuracy)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return float(train_accuracy) - float(heldout_accuracy)


# --- checklist items ---------------------------------------------------------------------------


def _item(item: str, status: Status, evidence: str, details: dict[str, Any]) -> dict[str, Any]:
    return {"item": item, "status": status, "evidence": evidence, "details": details}


def _percent(value: float) -> str:
    """A share as a percentage: one decimal from 1 % on, two significant digits below."""
    percent = 100 * value
    return f"{percent:.1f}%" if abs(percent) >= 1 else f"{percent:.2g}%"


def _pair_indices(pair: NearPair | Sequence[Any]) -> tuple[int, int, bool]:
    if isinstance(pair, NearPair):
        return pair.i, pair.j, pair.exact
    exact = bool(pair[3]) if len(pair) > 3 else False
    return int(pair[0]), int(pair[1]), exact


def duplicates_item(
    exact_groups: Sequence[Sequence[int]],
    near_pairs: Iterable[NearPair | Sequence[Any]],
    n: int,
) -> dict[str, Any]:
    """Duplicated records inside the training set.

    ``pass`` when there are none; ``warn`` when the samples in an exact-duplicate group or a
    near-duplicate pair are under ``DUPLICATE_FAIL_SHARE`` of ``n``; ``fail`` from there on.
    ``near_pairs`` are :class:`NearPair` or ``(i, j, distance)`` tuples.
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    pairs = [_pair_indices(pair) for pair in near_pairs]
    in_exact = {int(i) for group in exact_groups for i in group}
    in_near = {i for i, _, _ in pairs} | {j for _, j, _ in pairs}
    involved = len(in_exact | in_near)
    share = involved / n
    copies = sum(len(group) - 1 for group in exact_groups)
    if involved == 0:
        status: Status = "pass"
    elif share < DUPLICATE_FAIL_SHARE:
        status = "warn"
    else:
        status = "fail"
    evidence = (
        f"{len(exact_groups)} groups of exact duplicates ({copies} extra copies) and "
        f"{len(pairs)} near-duplicate pairs; {involved} of {n} training samples "
        f"({_percent(share)}) are involved (warn at any, fail at >= "
        f"{_percent(DUPLICATE_FAIL_SHARE)})"
    )
    details = {
        "exact_groups": len(exact_groups),
        "exact_extra_copies": copies,
        "near_pairs": len(pairs),
        "samples_involved": involved,
        "share": share,
        "n": n,
        "fail_share": DUPLICATE_FAIL_SHARE,
    }
    return _item("duplicates in the training data", status, evidence, details)


def train_heldout_overlap_item(
    cross_pairs: Iterable[NearPair | Sequence[Any]], n_heldout: int
) -> dict[str, Any]:
    """Copies of held-out records in the training data.

    ``cross_pairs`` come from ``near_duplicates(train, other=heldout)``. ``fail`` when any
    held-out record has an exact copy in training (it is not held out), ``warn`` when any has a
    near copy, ``pass`` otherwise.
    """
    if n_heldout <= 0:
        raise ValueError(f"n_heldout must be positive, got {n_heldout}")
    pairs = [_pair_indices(pair) for pair in cross_pairs]
    exact = {j for _, j, is_exact in pairs if is_exact}
    near = {j for _, j, is_exact in pairs if not is_exact} - exact
    if exact:
        status: Status = "fail"
    elif near:
        status = "warn"
    else:
        status = "pass"
    evidence = (
        f"{len(exact)} of {n_heldout} held-out records ({_percent(len(exact) / n_heldout)}) have "
        f"an exact copy in training (fail at any); {len(near)} more "
        f"({_percent(len(near) / n_heldout)}) have a near copy (warn at any)"
    )
    details = {
        "heldout_with_exact_copy": len(exact),
        "heldout_with_near_copy": len(near),
        "pairs": len(pairs),
        "n_heldout": n_heldout,
    }
    return _item("overlap between training and held-out data", status, evidence, details)


def accuracy_gap_item(gap: float) -> dict[str, Any]:
    """Train minus held-out accuracy: ``pass`` under ``ACCURACY_GAP_WARN``, ``warn`` under
    ``ACCURACY_GAP_FAIL``, ``fail`` from there on."""
    if not math.isfinite(gap):
        raise ValueError(f"gap must be a finite number, got {gap}")
    if gap >= ACCURACY_GAP_FAIL:
        status: Status = "fail"
    elif gap >= ACCURACY_GAP_WARN:
        status = "warn"
    else:
        status = "pass"
    evidence = (
        f"training accuracy exceeds held-out accuracy by {100 * gap:.1f} points (warn at >= "
        f"{100 * ACCURACY_GAP_WARN:.0f}, fail at >= {100 * ACCURACY_GAP_FAIL:.0f}); the attack "
        "'member if classified correctly' gains this much advantage"
    )
    details = {"gap": gap, "warn_at": ACCURACY_GAP_WARN, "fail_at": ACCURACY_GAP_FAIL}
    return _item("train/held-out accuracy gap", status, evidence, details)


def id_columns_item(columns: Sequence[dict[str, Any]] | None) -> dict[str, Any]:
    """Identifier-like columns used as features: ``fail`` on any, ``pass`` otherwise.

    ``columns`` is the output of :func:`id_like_columns`, or None for images (not applicable:
    ``pass``, evidence "images: no columns").
    """
    name = "identifier columns used as features"
    if columns is None:
        return _item(name, "pass", "images: no columns", {"applicable": False, "columns": []})
    listed = [dict(column) for column in columns]
    if listed:
        named = "; ".join(f"{c['column']!r} ({c['reason']})" for c in listed)
        evidence = (
            f"{len(listed)} feature column(s) identify rows: {named} (fail at any: a model can "
            "memorise an identifier and it points at a person; drop it or pass it as --id-column)"
        )
        status: Status = "fail"
    else:
        evidence = "0 feature columns look like identifiers or row counters (fail at any)"
        status = "pass"
    return _item(name, status, evidence, {"applicable": True, "columns": listed})


def membership_item(
    auc: float, advantage: float, tpr_at_low_fpr: float, low_fpr: float
) -> dict[str, Any]:
    """Membership inference: ``fail`` when AUC >= ``MEMBERSHIP_AUC_FAIL`` or TPR at the low FPR
    >= ``TPR_RATIO_FAIL`` x that FPR; ``warn`` when AUC >= ``MEMBERSHIP_AUC_WARN`` or TPR >=
    ``TPR_RATIO_WARN`` x FPR; else ``pass``."""
    if not 0.0 < low_fpr < 1.0:
        raise ValueError(f"low_fpr must lie in (0, 1), got {low_fpr}")
    tpr_fail, tpr_warn = TPR_RATIO_FAIL * low_fpr, TPR_RATIO_WARN * low_fpr
    if auc >= MEMBERSHIP_AUC_FAIL or tpr_at_low_fpr >= tpr_fail:
        status: Status = "fail"
    elif auc >= MEMBERSHIP_AUC_WARN or tpr_at_low_fpr >= tpr_warn:
        status = "warn"
    else:
        status = "pass"
    evidence = (
        f"membership AUC {auc:.2f} (warn at >= {MEMBERSHIP_AUC_WARN:.2f}, fail at >= "
        f"{MEMBERSHIP_AUC_FAIL:.2f}); TPR {_percent(tpr_at_low_fpr)} at {_percent(low_fpr)} FPR "
        f"(warn at >= {_percent(tpr_warn)}, fail at >= {_percent(tpr_fail)}); "
        f"membership advantage {advantage:.2f}"
    )
    details = {
        "auc": auc,
        "advantage": advantage,
        "tpr_at_low_fpr": tpr_at_low_fpr,
        "low_fpr": low_fpr,
        "auc_warn_at": MEMBERSHIP_AUC_WARN,
        "auc_fail_at": MEMBERSHIP_AUC_FAIL,
        "tpr_warn_at": tpr_warn,
        "tpr_fail_at": tpr_fail,
    }
    return _item("membership inference", status, evidence, details)


def inversion_item(
    median_distance_ratio: float | None,
    evaluation_accuracy: float | None,
    *,
    classes_are_people: bool = False,
) -> dict[str, Any]:
    """Model inversion: does a class reconstruction reveal training records?

    The status follows the median distance ratio (reconstruction to nearest training record
    over to nearest held-out record of its class): ``fail`` under ``INVERSION_RATIO_FAIL``,
    ``warn`` under ``INVERSION_RATIO_WARN``, else ``pass``; ``warn`` when it could not be
    measured (None or NaN). The independent classifier's accuracy on the reconstructions is
    context only, unless ``classes_are_people`` (each class is one person, so a recognisable
    reconstruction shows that person): then accuracy >= ``INVERSION_RECOGNISED_WARN`` is at
    least a ``warn``.
    """
    ratio = math.nan if median_distance_ratio is None else float(median_distance_ratio)
    accuracy = None if evaluation_accuracy is None else float(evaluation_accuracy)
    if math.isnan(ratio):
        status: Status = "warn"
        first = "distance ratio not measured (no held-out records to compare with)"
    else:
        if ratio < INVERSION_RATIO_FAIL:
            status = "fail"
        elif ratio < INVERSION_RATIO_WARN:
            status = "warn"
        else:
            status = "pass"
        if ratio >= 1:
            verdict = "no closer to training records than to held-out records of their class"
        elif status == "pass":
            verdict = "only slightly closer to training records than to held-out ones"
        else:
            verdict = "closer to training records than to held-out records of their class"
        first = (
            f"median distance ratio {ratio:.2f}: reconstructions are {verdict} "
            f"(warn below {INVERSION_RATIO_WARN:.1f}, fail below {INVERSION_RATIO_FAIL:.1f})"
        )
    if accuracy is None:
        second = "no independent classifier judged the reconstructions"
    elif classes_are_people:
        second = (
            f"an independent classifier recognises {_percent(accuracy)} of the reconstructions "
            f"(warn at >= {_percent(INVERSION_RECOGNISED_WARN)}: each class is a person)"
        )
        if accuracy >= INVERSION_RECOGNISED_WARN and status == "pass":
            status = "warn"
    else:
        second = (
            f"an independent classifier recognises {_percent(accuracy)} of the reconstructions "
            "(context only: looking like its class is class-level, not record-level, information)"
        )
    details = {
        "median_distance_ratio": None if math.isnan(ratio) else ratio,
        "evaluation_accuracy": accuracy,
        "classes_are_people": classes_are_people,
        "ratio_warn_below": INVERSION_RATIO_WARN,
        "ratio_fail_below": INVERSION_RATIO_FAIL,
    }
    return _item("model inversion", status, f"{first}; {second}", details)


def outlier_classes_item(per_class: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Classes whose membership leakage stands out: ``warn`` when a class's robust z-score of
    membership AUC is at least ``OUTLIER_CLASS_Z`` (naming them), else ``pass``.

    ``per_class`` holds dicts with ``class`` and ``robust_z`` (and optionally ``auc``); rows whose
    ``robust_z`` is None or NaN are skipped.
    """
    scored = [
        row
        for row in per_class
        if row.get("robust_z") is not None and math.isfinite(float(row["robust_z"]))
    ]
    outliers = sorted(
        (row for row in scored if float(row["robust_z"]) >= OUTLIER_CLASS_Z),
        key=lambda row: -float(row["robust_z"]),
    )
    if outliers:
        named = ", ".join(_describe_class(row) for row in outliers)
        evidence = (
            f"{len(outliers)} of {len(scored)} classes leak much more than the others: {named} "
            f"(warn at robust z >= {OUTLIER_CLASS_Z:.1f})"
        )
        status: Status = "warn"
    else:
        top = max((float(row["robust_z"]) for row in scored), default=math.nan)
        highest = f"highest robust z {top:.1f}" if scored else "no class could be scored"
        evidence = (
            f"no class's membership AUC stands out among {len(scored)} classes ({highest}; "
            f"warn at >= {OUTLIER_CLASS_Z:.1f})"
        )
        status = "pass"
    details = {
        "classes": [str(row["class"]) for row in outliers],
        "robust_z": {str(row["class"]): float(row["robust_z"]) for row in scored},
        "warn_at": OUTLIER_CLASS_Z,
    }
    return _item("classes with outlying leakage", status, evidence, details)


def _describe_class(row: dict[str, Any]) -> str:
    auc = row.get("auc")
    auc_text = f"AUC {float(auc):.2f}, " if auc is not None else ""
    return f"class {row['class']!r} ({auc_text}robust z {float(row['robust_z']):.1f})"
