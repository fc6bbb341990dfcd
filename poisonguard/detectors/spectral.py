"""Spectral signatures (Tran, Li & Madry, "Spectral Signatures in Backdoor Attacks", NeurIPS 2018).

Within a class, poisoned samples carry a feature the clean ones lack (the trigger). If they are a
large enough share of the class, the mean shift they cause dominates the top singular direction of
the class's centred representation, and their projections onto it stand out.

Limits: needs a few per cent of a class to be poisoned for the signal to reach the top singular
direction; misses attacks that do not separate in the representation (e.g. clean-label attacks
with small perturbations, random label noise); in a class with a strong natural split the top
direction is that split and the score flags it too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from poisonguard.ondisk import FeatureSource, RowSubset

__all__ = [
    "SPREAD_TOLERANCE",
    "ClassBasis",
    "class_basis",
    "spectral_class_scores",
    "spectral_signature_scores",
]

SPREAD_TOLERANCE = 1e-6
"""A class *has no spread* when no feature's standard deviation over the class exceeds this
share of the feature's magnitude (:attr:`ClassBasis.has_spread`): identical inputs give identical
features, and what is left after centering is rounding (float32 features carry about 7 digits),
which no detector should rank."""


def spectral_signature_scores(
    features: FeatureSource, labels: np.ndarray, *, min_class_size: int = 10
) -> np.ndarray:
    """Per-sample spectral-signature score; higher = more suspicious.

    For each class: centre the features at the class mean, take the top right singular vector
    ``v`` of the centred matrix, project each sample on it, and score it by its squared distance
    from the class's *median* projection. (The paper measures from the mean; the median keeps the
    centre inside the clean mode when an all-to-one attack makes the poison a third or more of the
    target class, which pulls the mean into the gap between the two groups.)

    Parameters
    ----------
    features : ndarray, shape (N, F)
    labels : ndarray of int, shape (N,)
    min_class_size : int
        Classes with fewer samples are not scored (score 0): a singular direction of a handful of
        samples says nothing.

    Returns
    -------
    ndarray of float64, shape (N,)
        Non-negative; comparable within a class, not across classes.
    """
    scores = np.zeros(features.shape[0], dtype=np.float64)
    for code in np.unique(labels):
        members = np.flatnonzero(labels == code)
        if members.size >= max(2, min_class_size):
            scores[members] = spectral_class_scores(RowSubset(features, members))
    return scores


@dataclass(frozen=True)
class ClassBasis:
    """A class's mean and the eigen-decomposition of its centred scatter matrix ``(F, F)``
    (eigenvalues ascending), accumulated block by block: what spectral signatures, SPECTRE's
    projection and activation clustering's column scales need, computed once per class."""

    n: int
    mean: np.ndarray
    scatter_diagonal: np.ndarray
    eigenvalues: np.ndarray
    vectors: np.ndarray

    @property
    def has_spread(self) -> bool:
        """Whether the rows differ at all: some feature's standard deviation above
        :data:`SPREAD_TOLERANCE` times its magnitude (the larger of its mean's and its root
        mean square's). False for a class of identical rows (blank placeholders, copies of one
        image); the per-class detectors then give its samples score 0 and say so."""
        deviation = np.sqrt(np.maximum(self.scatter_diagonal, 0.0) / max(self.n, 1))
        magnitude = np.sqrt(np.square(self.mean) + np.square(deviation))
        return bool(np.any(deviation > SPREAD_TOLERANCE * magnitude))

    def project(self, rows: RowSubset, k: int) -> np.ndarray:
        """The centred rows on the top ``k`` eigenvectors, ``(n, k)``, block by block."""
        return np.concatenate([self.project_block(block, k) for block in rows.blocks()])

    def project_block(self, block: np.ndarray, k: int) -> np.ndarray:
        """One block of rows ``(b, F)`` centred and on the top ``k`` eigenvectors; a row's
        result does not depend on the other rows of the block."""
        return (block - self.mean) @ self.vectors[:, -k:]


def class_basis(rows: RowSubset) -> ClassBasis:
    """Two passes over the rows (mean, then scatter), one block in memory at a time: the
    top right singular vectors of the centred class are the top eigenvectors of the ``F x F``
    scatter matrix, cheaper than an SVD of the ``(n, F)`` matrix when ``n >> F``."""
    n = len(rows)
    total = np.zeros(rows.width)
    for block in rows.blocks():
        total += block.sum(axis=0)
    mean = total / n
    scatter = np.zeros((rows.width, rows.width))
    for block in rows.blocks():
        centred = block - mean
        scatter += centred.T @ centred
    eigenvalues, vectors = np.linalg.eigh(scatter)
    return ClassBasis(n, mean, np.diag(scatter).copy(), eigenvalues, vectors)


def spectral_class_scores(
    rows: RowSubset | np.ndarray, basis: ClassBasis | None = None
) -> np.ndarray:
    """Spectral-signature scores of one class's rows (see above); ``basis`` if already known."""
    rows = rows if isinstance(rows, RowSubset) else RowSubset(rows)
    basis = basis or class_basis(rows)
    if not basis.has_spread:
        return np.zeros(len(rows))  # no direction to project on: rounding is not a signature
    projection = basis.project(rows, 1)[:, 0]
    return np.square(projection - np.median(projection))
