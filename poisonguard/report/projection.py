"""The 2-D map of the embedding shown in the report: which points to draw and where.

UMAP (McInnes, Healy & Melville, 2018, "UMAP: Uniform Manifold Approximation and Projection for
Dimension Reduction", arXiv:1802.03426) on the standardized penultimate-layer features. The map is
drawn on a subsample of at most a few thousand points (every flagged sample when they are not more
than that), so a large dataset stays cheap to project and the page stays small; the layout is for
looking only, no detector reads it.

The neighbour graph is computed exactly with scikit-learn and handed to UMAP, and the layout runs
200 epochs (UMAP's own choice for large data): on 6,000 points this takes about 6 s instead of 15 s.
Most of what is left was numba compiling UMAP's code in every process; it is now cached on disk
(:mod:`poisonguard.umap_loader`): 7.5 s -> 2.8 s from the second scan on.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

__all__ = [
    "APART_FACTOR",
    "MIN_UMAP_POINTS",
    "flags_among_other_labels",
    "map_subsample",
    "umap_coordinates",
]

logger = logging.getLogger(__name__)

MIN_UMAP_POINTS = 5
"""Fewer points than this are laid out by PCA instead of UMAP."""

APART_FACTOR = 2.0
"""A flagged point lies apart from every cloud when its k-th nearest unflagged point is farther
than this many times the 95th percentile of the unflagged points' own k-th neighbour distance."""

_N_NEIGHBORS = 15
_MIN_DIST = 0.1
_N_EPOCHS = 200


def map_subsample(flagged: np.ndarray, *, max_points: int, seed: int) -> np.ndarray:
    """Choose the samples drawn on the map.

    Parameters
    ----------
    flagged : ndarray of bool, shape (N,)
        The scan's decision per sample.
    max_points : int
        How many flagged samples to draw at most: all of them when there are no more, else a
        random choice of ``max_points``. The unflagged samples fill the rest of ``max_points``
        places, and at least a third of them, so that the map always shows what the flagged
        ones stand out from (at most ``max_points + max_points // 3`` points, whatever N).
    seed : int
        Seed of the random choices; the same seed gives the same subsample.

    Returns
    -------
    ndarray of int64
        Sorted indices into the dataset.
    """
    if max_points < 0:
        raise ValueError(f"max_points must be >= 0, got {max_points}")
    flagged = np.asarray(flagged, dtype=bool).reshape(-1)
    rng = np.random.default_rng(seed)
    keep = _some(np.flatnonzero(flagged), max_points, rng)
    room = max(max_points - keep.size, max_points // 3)
    chosen = _some(np.flatnonzero(~flagged), room, rng)
    return np.sort(np.concatenate([keep, chosen])).astype(np.int64)


def flags_among_other_labels(
    coords: np.ndarray, labels: np.ndarray, flagged: np.ndarray, *, k: int = 10
) -> dict | None:
    """How many flagged points of the map sit among unflagged points of another label, and how
    many lie apart from every class's cloud.

    A flagged point *lies apart* when its ``k``-th nearest unflagged point on the map (fewer
    when fewer are drawn) is farther than :data:`APART_FACTOR` times the distance within which
    95 % of the unflagged points find their ``k``-th unflagged neighbour: it sits in no cloud,
    as a backdoor's poisons, grouped by their trigger, often do. Otherwise it *sits among*
    label ``c`` when more than half of its ``k`` nearest unflagged points carry label ``c``.
    A label flip looks like that: a sample that sits with its true class but carries another
    label; so does a backdoor's poison that lies inside its source class. Distances are the
    map's, which is for looking only: these counts describe the picture, no detector reads them.

    Parameters
    ----------
    coords : ndarray, shape (n, 2)
        Map coordinates of the drawn samples.
    labels : ndarray of int, shape (n,)
        Their given class codes.
    flagged : ndarray of bool, shape (n,)
    k : int
        Neighbours consulted per flagged point.

    Returns
    -------
    dict or None
        ``None`` when no point is flagged or none is unflagged; else ``flagged`` (flagged points
        drawn), ``apart`` (those lying apart), ``among_other`` (those sitting among another
        label), ``k`` (the neighbours consulted) and ``pairs``: the most common ``(given,
        among)`` code pairs of those, as ``{"given", "among", "count"}``, largest first (ties
        by codes), at most 3, and ``top_share``: the first pair's share of ``among_other``
        (``None`` when that is 0).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    flagged = np.asarray(flagged, dtype=bool).reshape(-1)
    if not (coords.shape[0] == labels.size == flagged.size):
        raise ValueError(
            f"{coords.shape[0]} coordinates, {labels.size} labels and {flagged.size} flags"
        )
    others = np.flatnonzero(~flagged)
    marked = np.flatnonzero(flagged)
    if not marked.size or not others.size:
        return None
    from sklearn.neighbors import NearestNeighbors

    k = min(k, others.size)
    index = NearestNeighbors(n_neighbors=k).fit(coords[others])
    distances, near = index.kneighbors(coords[marked])
    apart = np.zeros(marked.size, dtype=bool)
    if others.size > k:  # the unflagged points' own k-th neighbour (each is its own first)
        own = NearestNeighbors(n_neighbors=k + 1).fit(coords[others]).kneighbors()[0][:, -1]
        apart = distances[:, -1] > APART_FACTOR * np.quantile(own, 0.95)
    near_labels = labels[others][near]  # (flagged, k)
    pairs: dict[tuple[int, int], int] = {}
    for given, row in zip(labels[marked][~apart], near_labels[~apart], strict=True):
        values, counts = np.unique(row, return_counts=True)
        best = int(np.argmax(counts))
        if 2 * counts[best] > k and values[best] != given:
            key = (int(given), int(values[best]))
            pairs[key] = pairs.get(key, 0) + 1
    ranked = sorted(pairs.items(), key=lambda item: (-item[1], item[0]))[:3]
    among_other = int(sum(pairs.values()))
    return {
        "flagged": int(marked.size),
        "apart": int(apart.sum()),
        "among_other": among_other,
        "top_share": ranked[0][1] / among_other if among_other else None,
        "k": int(k),
        "pairs": [{"given": g, "among": a, "count": n} for (g, a), n in ranked],
    }


def _some(indices: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """All of ``indices`` when there are at most ``count``, else a random choice of ``count``."""
    if indices.size <= count:
        return indices
    return rng.choice(indices, size=count, replace=False)


def umap_coordinates(features: np.ndarray, *, seed: int) -> np.ndarray:
    """Lay out samples in 2-D with UMAP on standardized features.

    Parameters
    ----------
    features : ndarray, shape (n, F)
        One feature vector per sample (the embedding's penultimate-layer activations).
    seed : int
        UMAP's ``random_state``; the same seed and features give the same coordinates (it also
        makes UMAP single-threaded).

    Returns
    -------
    ndarray of float64, shape (n, 2)
        Map coordinates. Fewer than :data:`MIN_UMAP_POINTS` points are laid out by PCA (zeros
        for a single point), and ``n_neighbors`` is lowered to ``n - 1`` for small ``n``.
    """
    x = _standardize(features)
    n = x.shape[0]
    if n < MIN_UMAP_POINTS:
        return _pca_2d(x)

    from sklearn.neighbors import NearestNeighbors

    from poisonguard.umap_loader import load_umap  # slow to import (numba); the page needs it

    n_neighbors = min(_N_NEIGHBORS, n - 1)
    # UMAP's graph includes each point as its own nearest neighbour, as kneighbors(x) does.
    distances, neighbours = NearestNeighbors(n_neighbors=n_neighbors).fit(x).kneighbors(x)
    reducer = load_umap().UMAP(
        n_components=2,
        random_state=seed,
        n_neighbors=n_neighbors,
        min_dist=_MIN_DIST,
        metric="euclidean",
        n_epochs=_N_EPOCHS,
        precomputed_knn=(neighbours, distances, None),
    )
    with warnings.catch_warnings():
        # A fixed random_state makes UMAP single-threaded and it says so each time; without a
        # search index UMAP cannot transform new points, which the report never asks of it.
        warnings.filterwarnings("ignore", message=r".*overridden to 1 by setting random_state.*")
        warnings.filterwarnings("ignore", message=r".*knn_search_index.*")
        coords = reducer.fit_transform(x)
    logger.debug("UMAP laid out %d points", n)
    return np.asarray(coords, dtype=np.float64)


def _standardize(features: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per feature (constant features left at zero); NaN -> 0."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    x = x.reshape(x.shape[0], int(np.prod(x.shape[1:])))
    x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    if x.shape[0] == 0:
        return x
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)


def _pca_2d(x: np.ndarray) -> np.ndarray:
    """First two principal components of (already centered) ``x``, zero-padded to 2 columns."""
    out = np.zeros((x.shape[0], 2), dtype=np.float64)
    if x.shape[0] < 2 or x.shape[1] == 0:
        return out
    centered = x - x.mean(axis=0)
    u, s, _ = np.linalg.svd(centered, full_matrices=False)
    k = min(2, s.size)
    out[:, :k] = u[:, :k] * s[:k]
    return out
