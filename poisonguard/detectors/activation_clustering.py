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

This module holds the steps, as functions of arrays: the rows the reduction and the 2-means are
fitted on (:func:`fit_rows`), the columns and dimensions kept (:func:`reduction_plan`), the
reduction (:func:`fit_reduction`, applied to each block of rows), and the 2-means split
(:class:`TwoMeans`: fitted on the reduced fit rows, then assigning each block of reduced rows).
:mod:`poisonguard.detectors.class_rows` walks each class's rows, in memory or in a file, through
them (:func:`~poisonguard.detectors.class_rows.split_class`,
:func:`~poisonguard.detectors.class_rows.activation_clustering`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA, FastICA
from sklearn.exceptions import ConvergenceWarning

from poisonguard.detectors.spectral import ClassBasis
from poisonguard.seeding import key_order, sample_by_key

__all__ = [
    "ClassSplit",
    "REDUCERS",
    "TwoMeans",
    "check_reduce",
    "fit_reduction",
    "fit_rows",
    "quiet",
    "reduction_plan",
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


def check_reduce(reduce: str) -> None:
    if reduce not in REDUCERS:
        raise ValueError(f"unknown reduction {reduce!r}; valid: {', '.join(REDUCERS)}")


def fit_rows(
    keys: np.ndarray, max_fit_samples: int, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """The rows that a class's reduction and 2-means are fitted on (at most
    ``max_fit_samples``: those with the smallest content ``keys``, a seeded sample that does not
    depend on the order of the rows), as positions in the order of their keys (the order the
    fits see them in: k-means++ and UMAP depend on it), and the seed of those fits."""
    fit = sample_by_key(keys, max_fit_samples)
    return fit[key_order(keys[fit])], int(rng.integers(2**31 - 1))


def reduction_plan(
    basis: ClassBasis, n_fit: int, n_components: int
) -> tuple[np.ndarray, int] | None:
    """The columns a class's reduction keeps (those with a spread) and its dimension ``k``, for
    a fit on ``n_fit`` rows; None when nothing is left to reduce."""
    spread = np.sqrt(basis.scatter_diagonal / basis.n)  # the columns' standard deviations
    keep = spread > 1e-9 * max(float(spread.max(initial=0.0)), 1e-300)
    if not keep.any():
        return None
    k = int(min(n_components, int(keep.sum()), n_fit - 1))
    if k < 1:
        return None
    return keep, k


@contextmanager
def quiet() -> Iterator[None]:
    """Silence the convergence and numerical warnings of the reductions (FastICA on a class
    without independent sources, UMAP on few rows); what they produce is still usable."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        yield


def fit_reduction(rows: np.ndarray, method: str, k: int, seed: int) -> Any:
    """The reduction to ``k`` dimensions fitted on ``rows`` (the kept columns of the fit rows):
    a scikit-learn PCA or FastICA, whose ``transform`` is applied to each block of rows, or a
    UMAP model, whose transform of new points depends on the batch (call within
    :func:`quiet`)."""
    if method == "pca":
        return PCA(n_components=k, random_state=seed).fit(rows)
    if method == "ica":
        model = FastICA(n_components=k, whiten="unit-variance", max_iter=400, random_state=seed)
        return model.fit(rows)
    from poisonguard.umap_loader import load_umap  # loading umap (numba) costs seconds

    model = load_umap().UMAP(
        n_components=k, n_neighbors=15, min_dist=0.0, random_state=seed, n_jobs=1
    )
    return model.fit(rows)


class TwoMeans:
    """The 2-means split of a class's reduced rows: fitted on the reduced fit rows, then
    :meth:`assign` takes a block of reduced rows at a time and :meth:`split` turns what it gave
    for every row into scores, the minority and the separation.

    Each row is assigned and its position on the line between the centres measured both ways
    (which cluster is the smaller is known only at the end), so that only per-row numbers are
    held, not the ``(n, k)`` reduction.
    """

    def __init__(self, fitted: np.ndarray, seed: int) -> None:
        self.model = KMeans(n_clusters=2, n_init=4, random_state=seed).fit(np.nan_to_num(fitted))
        self.centres = self.model.cluster_centers_
        self.length = float(np.linalg.norm(self.centres[1] - self.centres[0]))

    def assign(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """A block of reduced rows' clusters and, for c = 0 and 1, their positions from centre
        c towards the other ``(2, b)`` (None when the centres coincide)."""
        block = np.nan_to_num(block)
        assigned = self.model.predict(block)
        if self.length <= 0:
            return assigned, None
        towards = np.empty((2, block.shape[0]))
        for c in (0, 1):
            axis = self.centres[1 - c] - self.centres[c]
            towards[c] = (block - self.centres[c]) @ (axis / self.length)
        return assigned, towards

    def split(
        self, assigned: np.ndarray, towards: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """Scores (position towards the smaller cluster in units of the larger one's spread),
        positions of the smaller cluster's rows, and the separation ``d'``."""
        n = assigned.shape[0]
        counts = np.bincount(assigned, minlength=2)
        small = int(np.argmin(counts)) if counts[0] != counts[1] else 1
        large = 1 - small
        if self.length == 0 or counts[small] == 0:
            return np.zeros(n), np.zeros(0, dtype=np.int64), 0.0
        position = towards[large]
        spreads = [position[assigned == c].std() for c in (large, small)]
        pooled = float(np.sqrt((spreads[0] ** 2 + spreads[1] ** 2) / 2))
        separation = self.length / pooled if pooled > 0 else 0.0
        unit = spreads[0] if spreads[0] > 0 else max(pooled, 1.0)
        return position / unit, np.flatnonzero(assigned == small), float(separation)
