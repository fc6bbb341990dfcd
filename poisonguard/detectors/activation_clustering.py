"""Activation clustering (Chen et al., "Detecting Backdoor Attacks on Deep Neural Networks by
Activation Clustering", AAAI SafeAI workshop, 2019; arXiv:1811.03728).

Per class: reduce the features to a few dimensions (PCA, FastICA as in the paper, or UMAP), split
them into two clusters with k-means, and measure how far apart the two clusters lie. Under a
backdoor, the poisoned samples of the target class form a cluster of their own (the trigger is a
feature the clean samples lack); a clean class splits too, but its halves are adjacent.

The paper decides which cluster is poisoned from its relative size or silhouette against fixed
constants, which needs to know roughly how much poison to expect. Here the detector only
*measures*: each sample's score is its position on the line joining the two cluster centres,
oriented towards the smaller cluster and in units of the larger cluster's spread, and each class
gets a :class:`ClassSplit` (sizes and separation). :mod:`poisonguard.decision` judges each class's
split against the other classes' splits.

Limits: two clusters per class (a class poisoned with two triggers shows the stronger one);
poison must be a distinct group in the representation, so random label noise is not caught;
``reduce="umap"`` is much slower than PCA or ICA (minutes on 60,000 samples) and, being seeded,
single-threaded.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA, FastICA
from sklearn.exceptions import ConvergenceWarning

from poisonguard.detectors.spectral import ClassBasis, class_basis
from poisonguard.ondisk import BLOCK_ROWS, RowSubset
from poisonguard.seeding import class_rng

__all__ = [
    "ClassSplit",
    "REDUCERS",
    "activation_clustering",
    "activation_clustering_scores",
    "split_class",
]

REDUCERS = ("pca", "ica", "umap")


@dataclass(frozen=True)
class ClassSplit:
    """The two-cluster split of one class.

    ``minority`` holds the dataset indices of the smaller cluster; ``separation`` is the distance
    between the two cluster centres along the line joining them, in units of the clusters'
    pooled standard deviation along that line (a Fisher discriminant ratio, ``d'``).
    """

    code: int
    size: int
    minority: np.ndarray
    separation: float

    @property
    def minority_share(self) -> float:
        return self.minority.size / max(self.size, 1)


def activation_clustering(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    reduce: str = "pca",
    n_components: int = 10,
    min_class_size: int = 10,
    max_fit_samples: int = 10000,
    seed: int = 0,
) -> tuple[np.ndarray, list[ClassSplit]]:
    """Per-sample scores and per-class splits (see the module docstring).

    Parameters
    ----------
    features : ndarray, shape (N, F)
    labels : ndarray of int, shape (N,)
    reduce : {"pca", "ica", "umap"}
    n_components : int
        Dimensions kept by the reduction.
    min_class_size : int
        Smaller classes are not scored (score 0, no split).
    max_fit_samples : int
        The reduction and k-means are fitted on at most this many samples of a class (a seeded
        random subset); every sample is assigned and scored.
    seed : int

    Returns
    -------
    scores : ndarray of float64, shape (N,)
        Higher = closer to the class's smaller cluster.
    splits : list of ClassSplit
        One per scored class.
    """
    if reduce not in REDUCERS:
        raise ValueError(f"unknown reduction {reduce!r}; valid: {', '.join(REDUCERS)}")
    scores = np.zeros(features.shape[0], dtype=np.float64)
    splits = []
    for code in np.unique(labels):
        members = np.flatnonzero(labels == code)
        if members.size < max(4, min_class_size):
            continue
        fitted = split_class(
            RowSubset(features, members),
            class_rng(seed, code),
            reduce=reduce,
            n_components=n_components,
            max_fit_samples=max_fit_samples,
        )
        if fitted is None:
            continue
        scores[members], minority, separation = fitted
        splits.append(ClassSplit(int(code), int(members.size), members[minority], separation))
    return scores, splits


def split_class(
    rows: RowSubset | np.ndarray,
    rng: np.random.Generator,
    *,
    reduce: str = "pca",
    n_components: int = 10,
    max_fit_samples: int = 10000,
    basis: ClassBasis | None = None,
) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Split one class's rows ``(n, F)`` in two: per-row scores, the positions (within ``rows``)
    of the smaller cluster, and the separation. None when the rows have no usable direction.

    The rows are read block by block (``basis``, if already known, gives the column scales);
    only the fitted subset and per-row numbers are held, except with UMAP, whose transform of
    new points depends on the batch, which takes the class whole.
    """
    if reduce not in REDUCERS:
        raise ValueError(f"unknown reduction {reduce!r}; valid: {', '.join(REDUCERS)}")
    rows = rows if isinstance(rows, RowSubset) else RowSubset(rows)
    n = len(rows)
    fit = np.arange(n)
    if n > max_fit_samples:
        fit = np.sort(rng.choice(n, max_fit_samples, replace=False))
    class_seed = int(rng.integers(2**31 - 1))
    basis = basis or class_basis(rows)
    if not basis.has_spread:
        return None  # identical rows: no split to find (2-means would split rounding)
    reduced = _reduce(rows, basis, fit, reduce, n_components, class_seed)
    if reduced is None:
        return None
    return _split(reduced, fit, class_seed)


def activation_clustering_scores(features: np.ndarray, labels: np.ndarray, **options) -> np.ndarray:
    """Only the per-sample scores of :func:`activation_clustering`."""
    return activation_clustering(features, labels, **options)[0]


@dataclass(frozen=True)
class _Reduced:
    """A class's reduction: the reduced rows the 2-means is fitted on, and every row's reduced
    block by block (:meth:`blocks`; a linear map is applied to one block of rows at a time,
    UMAP's embedding is held whole)."""

    fitted: np.ndarray
    transform: Callable[[np.ndarray], np.ndarray] | None
    rows: RowSubset
    keep: np.ndarray
    whole: np.ndarray | None = None

    def blocks(self) -> Iterator[np.ndarray]:
        if self.whole is not None:
            for start in range(0, self.whole.shape[0], BLOCK_ROWS):
                yield self.whole[start : start + BLOCK_ROWS]
            return
        for block in self.rows.blocks():
            yield self.transform(block[:, self.keep])


def _reduce(
    rows: RowSubset,
    basis: ClassBasis,
    fit: np.ndarray,
    method: str,
    n_components: int,
    seed: int,
) -> _Reduced | None:
    spread = np.sqrt(basis.scatter_diagonal / basis.n)  # the columns' standard deviations
    keep = spread > 1e-9 * max(float(spread.max(initial=0.0)), 1e-300)
    if not keep.any():
        return None
    k = int(min(n_components, int(keep.sum()), fit.size - 1))
    if k < 1:
        return None
    fitted_rows = rows.take(fit)[:, keep]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        if method in ("pca", "ica"):
            if method == "pca":
                model = PCA(n_components=k, random_state=seed)
            else:
                model = FastICA(
                    n_components=k, whiten="unit-variance", max_iter=400, random_state=seed
                )
            model.fit(fitted_rows)
            reduced = _Reduced(np.empty((fit.size, k)), model.transform, rows, keep)
            # the fitted rows' reductions taken from whole blocks, as every row's is: a matrix
            # product's rows can differ in the last bits with the number of rows multiplied
            start = 0
            for block in reduced.blocks():
                low, high = np.searchsorted(fit, [start, start + block.shape[0]])
                reduced.fitted[low:high] = block[fit[low:high] - start]
                start += block.shape[0]
            return reduced
        import umap  # imported here: loading umap (numba) costs seconds

        model = umap.UMAP(
            n_components=k, n_neighbors=15, min_dist=0.0, random_state=seed, n_jobs=1
        ).fit(fitted_rows)
        if fit.size == len(rows):
            whole = model.embedding_
        else:
            whole = model.transform(rows.take(np.arange(len(rows)))[:, keep])
        return _Reduced(whole[fit], None, rows, keep, whole)


def _split(reduced: _Reduced, fit: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """2-means on the fitted rows; scores and the minority of every row.

    One pass over the reduced blocks assigns each row and measures its position on the line
    between the centres both ways (which cluster is the smaller is known only at the end), so
    that only per-row numbers are held, not the ``(n, k)`` reduction.
    """
    model = KMeans(n_clusters=2, n_init=4, random_state=seed).fit(np.nan_to_num(reduced.fitted))
    centres = model.cluster_centers_
    length = float(np.linalg.norm(centres[1] - centres[0]))
    n = len(reduced.rows)
    assigned = np.empty(n, dtype=np.int64)
    # towards: position from centre c towards the other centre, for c = 0 and c = 1
    towards = np.empty((2, n))
    start = 0
    for block in reduced.blocks():
        block = np.nan_to_num(block)
        stop = start + block.shape[0]
        assigned[start:stop] = model.predict(block)
        if length > 0:
            for c in (0, 1):
                axis = centres[1 - c] - centres[c]
                towards[c, start:stop] = (block - centres[c]) @ (axis / length)
        start = stop
    counts = np.bincount(assigned, minlength=2)
    small = int(np.argmin(counts)) if counts[0] != counts[1] else 1
    large = 1 - small
    if length == 0 or counts[small] == 0:
        return np.zeros(n), np.zeros(0, dtype=np.int64), 0.0
    position = towards[large]
    spreads = [position[assigned == c].std() for c in (large, small)]
    pooled = float(np.sqrt((spreads[0] ** 2 + spreads[1] ** 2) / 2))
    separation = length / pooled if pooled > 0 else 0.0
    unit = spreads[0] if spreads[0] > 0 else max(pooled, 1.0)
    return position / unit, np.flatnonzero(assigned == small), float(separation)
