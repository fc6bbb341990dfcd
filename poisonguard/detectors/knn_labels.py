"""Nearest-neighbour label disagreement (Bahri, Jiang & Gupta, "Deep k-NN for Noisy Labels",
ICML 2020).

A network's representation places a sample near others of its true class. When most of a
sample's nearest neighbours carry a different label than it does, its own label is suspect. Deep
k-NN filters training data by this rule before training the final model; here the share of
disagreeing neighbours is the score.

Distance: Euclidean on the standardized features projected on their top principal components.
Standardizing stops a few high-variance units from setting every distance; the projection keeps
~99 % of the variance of 128 CNN features in 32 dimensions and makes the search four times
cheaper. On Fashion-MNIST CNN features with 10 % flipped labels (AUROC of flipped vs clean):
raw 128-d Euclidean 0.986, raw cosine 0.985, standardized PCA-32 Euclidean 0.985 and cosine 0.985,
PCA-16 0.985, PCA-8 0.984; the choice hardly matters, so the cheapest sound one is used.

Search: exact search is quadratic in N: at N = 60,000 its distance matrix alone takes 4 s to
write and 10 s to select from on one core. Neighbours are therefore searched with an inverted
file (Jégou, Douze & Schmid, "Product Quantization for Nearest Neighbor Search", TPAMI 2011,
without the quantization): k-means cells of ~256 samples, and each sample's neighbours sought among
the members of the ``n_probe`` cells whose centres are nearest its own cell's centre. On the
benchmark above 98.5 % of the true 10 neighbours are found and the score's AUROC is unchanged
(0.9845 vs 0.9849 exact). With at most ``256 * n_probe`` samples, or ``n_probe=None``, the search
is exact.

Limits: sees only label disagreement, so it misses attacks that keep poisoned samples among
their label's neighbours (an all-to-one backdoor the network learned clusters the poison with
the target class once its share is large; clean-label attacks); samples near class boundaries
and members of classes the representation mixes score high whatever their labels; a class
smaller than ``k`` disagrees with its neighbours by construction.

This module holds the steps, as functions of arrays: the standardized principal basis from
summed moments (:func:`centred_moments`, :func:`standardized_basis`), the projection of a block
(:func:`project`), the cells (:func:`kmeans` on a sample drawn by content, :func:`nearest_centre`,
:func:`nearest_cells`) and the search within one cell's candidates (:func:`query_cell`).
:func:`poisonguard.detectors.streaming.knn_label_disagreement` walks the rows through them, from
memory or from a file, and keeps the projected points where the features are.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

__all__ = [
    "WEIGHTINGS",
    "candidates",
    "cell_order",
    "centred_moments",
    "check_options",
    "kmeans",
    "kmeans_sample_size",
    "nearest_cells",
    "nearest_centre",
    "project",
    "query_cell",
    "standardized_basis",
]

# Mean number of samples per k-means cell of the inverted file.
CELL_SIZE = 256
# Query rows per distance block: bounds memory at QUERY_CHUNK x (candidates) float32.
QUERY_CHUNK = 512
# Rows per block of point-to-centre distances at most (fewer with many centres, see
# ``_rows_per_block``): the blocks of rows a scan walks (poisonguard.rows.BLOCK_ROWS).
_DISTANCE_ROWS = 4096
_KMEANS_SAMPLES = 20_000
_KMEANS_ITERATIONS = 6


def _uniform(distances: np.ndarray | None, differs: np.ndarray) -> np.ndarray:
    return differs.mean(axis=1)


def _inverse_distance(distances: np.ndarray, differs: np.ndarray) -> np.ndarray:
    # The offset keeps duplicates (distance 0) finite: a neighbour at distance 0 weighs 101 times
    # one at the median k-th-neighbour distance. (Neighbours are not sorted: take the row max.)
    offset = 0.01 * float(np.median(distances.max(axis=1))) + 1e-12
    weights = 1.0 / (distances + offset)
    return (weights * differs).sum(axis=1) / weights.sum(axis=1)


WEIGHTINGS = {"uniform": _uniform, "distance": _inverse_distance}


def check_options(k: int, n_components: int, weights: str, n_probe: int | None) -> None:
    """Raise ``ValueError`` for options the k-NN search cannot use."""
    if weights not in WEIGHTINGS:
        raise ValueError(f"unknown weights {weights!r}; valid: {', '.join(WEIGHTINGS)}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if n_components < 1:
        raise ValueError(f"n_components must be at least 1, got {n_components}")
    if n_probe is not None and n_probe < 1:
        raise ValueError(f"n_probe must be at least 1 or None, got {n_probe}")


def centred_moments(block: np.ndarray, mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A block of rows' contribution to the per-column sums of squares and to the Gram matrix
    about ``mean``, in float64."""
    block = block.astype(np.float64) - mean
    return np.einsum("nd,nd->d", block, block), block.T @ block


def standardized_basis(
    squares: np.ndarray, gram: np.ndarray, n: int, n_components: int
) -> np.ndarray:
    """The map ``(F, d)`` from centred features to their standardized top ``d`` principal
    components, from the summed :func:`centred_moments` of ``n`` rows (the Gram matrix is
    scaled in place)."""
    scale = np.sqrt(squares / n)
    scale[scale <= 1e-8 * max(1.0, float(scale.max(initial=0.0)))] = 1.0
    gram /= np.outer(scale, scale)
    n_components = min(n_components, gram.shape[0])
    _, vectors = np.linalg.eigh(gram)
    return vectors[:, -n_components:] / scale[:, None]


def project(
    block: np.ndarray, mean: np.ndarray, basis: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A block of rows as search points (float32) and their squared norms (float32)."""
    projected = ((block.astype(np.float64) - mean) @ basis).astype(np.float32)
    return projected, np.einsum("nd,nd->n", projected, projected)


def kmeans_sample_size(n: int, n_cells: int) -> int:
    """How many of ``n`` points the k-means cells are fitted on."""
    return min(n, max(_KMEANS_SAMPLES, 8 * n_cells))


def kmeans(sample: np.ndarray, n_cells: int, rng: np.random.Generator) -> np.ndarray:
    """A few Lloyd iterations on the sampled points (:func:`kmeans_sample_size` of them, in
    the order of their content keys); centres of empty cells stay where they are."""
    centres = sample[np.sort(rng.choice(sample.shape[0], n_cells, replace=False))].copy()
    for _ in range(_KMEANS_ITERATIONS):
        assignment = nearest_centre(sample, centres)
        order = np.argsort(assignment, kind="stable")
        filled, starts, counts = np.unique(assignment[order], return_index=True, return_counts=True)
        sums = np.add.reduceat(sample[order].astype(np.float64), starts, axis=0)
        centres[filled] = (sums / counts[:, None]).astype(centres.dtype)
    return centres


def cell_order(cells: np.ndarray, n_cells: int) -> tuple[np.ndarray, np.ndarray]:
    """The points sorted by cell (stable) and where each cell starts in that order: cell ``c``
    is ``order[bounds[c]:bounds[c + 1]]``."""
    order = np.argsort(cells, kind="stable")
    return order, np.searchsorted(cells[order], np.arange(n_cells + 1))


def candidates(
    cell: int, probes: np.ndarray, members: list[np.ndarray], k: int
) -> tuple[list[int], np.ndarray]:
    """The cells whose members are searched for the neighbours of ``cell``'s points (its own
    first, so a query's own column is its position within its cell), and those members."""
    near = [cell] + [int(c) for c in probes[cell] if c != cell]
    found = np.concatenate([members[c] for c in near])
    if found.size <= k:  # too few to choose from: search everyone (exact)
        near = [cell] + [c for c in range(probes.shape[0]) if c != cell]
        found = np.concatenate([members[c] for c in near])
    return near, found


def query_cell(
    own: np.ndarray,
    found: np.ndarray,
    found_points: np.ndarray,
    norms: np.ndarray,
    labels: np.ndarray,
    k: int,
    *,
    with_distances: bool = False,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """The k nearest candidates of each of a cell's points (``own``, the first rows of
    ``found``), :data:`QUERY_CHUNK` queries at a time: ``(queries, differs, distances)`` with
    the queries' indices, whether each neighbour's label differs from the query's ``(q, k)``
    bool, and, with ``with_distances``, the Euclidean distances ``(q, k)`` (else None)."""
    found_norms = norms[found]
    for start in range(0, own.size, QUERY_CHUNK):
        queries = own[start : start + QUERY_CHUNK]
        query_points = found_points[start : start + queries.size]
        block = query_points @ found_points.T
        block *= -2.0
        block += found_norms
        rows = np.arange(queries.size)
        block[rows, start + rows] = np.inf
        nearest = np.argpartition(block, k - 1, axis=1)[:, :k]
        differs = labels[found[nearest]] != labels[queries, None]
        distances = None
        if with_distances:
            squared = np.take_along_axis(block, nearest, axis=1) + norms[queries, None]
            distances = np.sqrt(np.maximum(squared, 0.0))
        yield queries, differs, distances


def nearest_cells(centres: np.ndarray, n_probe: int) -> np.ndarray:
    """For each cell, the ``n_probe`` cells with the nearest centres, itself first; ties go to
    the lower cell index (a stable sort's order).

    Computed for a few hundred cells at a time: the full cell-to-cell matrix grows with the
    square of the number of cells (a million samples: 3,906 cells, 15 M distances and their
    sort order; computing it whole raised the peak by 176 MB there).
    """
    n_cells = centres.shape[0]
    probes = np.empty((n_cells, n_probe), dtype=np.int64)
    step = min(_PROBE_ROWS, _rows_per_block(n_cells))
    for start in range(0, n_cells, step):
        rows = np.arange(start, min(start + step, n_cells))
        between = _squared_distances(centres[rows], centres)
        between[np.arange(rows.size), rows] = -np.inf  # a cell probes itself first
        # every value up to the n_probe-th smallest, then a stable sort of those few
        kth = np.partition(between, n_probe - 1, axis=1)[:, n_probe - 1]
        for i, row in enumerate(between):
            near = np.flatnonzero(row <= kth[i])
            probes[start + i] = near[np.argsort(row[near], kind="stable")][:n_probe]
    return probes


_PROBE_ROWS = 256


def nearest_centre(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Each point's nearest centre, for a few rows at a time: a distance matrix holds at most
    :data:`DISTANCE_VALUES` values (a million samples have 3,906 cells: 4,096 rows at once
    would be 128 MB, 256 MB at two million). A row's result does not depend on the other rows
    passed with it."""
    nearest = np.empty(points.shape[0], dtype=np.int64)
    step = _rows_per_block(centres.shape[0])
    # steps within blocks of _DISTANCE_ROWS rows, so that a caller's blocks of that many rows
    # are cut as the whole array is
    for first in range(0, points.shape[0], _DISTANCE_ROWS):
        block = points[first : first + _DISTANCE_ROWS]
        for start in range(0, block.shape[0], step):
            chunk = block[start : start + step]
            at = first + start
            nearest[at : at + chunk.shape[0]] = _squared_distances(chunk, centres).argmin(axis=1)
    return nearest


DISTANCE_VALUES = 1 << 21
"""Most values in one block of point-to-centre or centre-to-centre distances (8 MB of float32;
the expression's temporaries take a few times that)."""


def _rows_per_block(n_columns: int) -> int:
    return max(1, min(_DISTANCE_ROWS, DISTANCE_VALUES // max(n_columns, 1)))


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (
        np.einsum("nd,nd->n", a, a)[:, None]
        - 2.0 * (a @ b.T)
        + np.einsum("nd,nd->n", b, b)[None, :]
    )
