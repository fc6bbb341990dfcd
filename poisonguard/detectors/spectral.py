"""Spectral signatures (Tran, Li & Madry, "Spectral Signatures in Backdoor Attacks", NeurIPS 2018).

Within a class, poisoned samples carry a feature the clean ones lack (the trigger). If they are a
large enough share of the class, the mean shift they cause dominates the top singular direction of
the class's centred representation, and their projections onto it stand out.

Limits: needs a few per cent of a class to be poisoned for the signal to reach the top singular
direction; misses attacks that do not separate in the representation (e.g. clean-label attacks
with small perturbations, random label noise); in a class with a strong natural split the top
direction is that split and the score flags it too.

This module holds the steps, as functions of arrays: a class's mean and scatter summed over
blocks of its rows (:func:`scatter`, :meth:`ClassBasis.from_sums`), the projection of a block
(:meth:`ClassBasis.project_block`) and the score of the projections (:func:`scores`).
:mod:`poisonguard.detectors.class_rows` walks each class's rows, in memory or in a file, through
them (:func:`~poisonguard.detectors.class_rows.spectral_signature_scores`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SPREAD_TOLERANCE", "ClassBasis", "scatter", "scores"]

SPREAD_TOLERANCE = 1e-6
"""A class *has no spread* when no feature's standard deviation over the class exceeds this
share of the feature's magnitude (:attr:`ClassBasis.has_spread`): identical inputs give identical
features, and what is left after centering is rounding (float32 features carry about 7 digits),
which no detector should rank."""


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

    @staticmethod
    def from_sums(n: int, mean: np.ndarray, scatter: np.ndarray) -> ClassBasis:
        """The basis of ``n`` rows from their mean and their summed :func:`scatter` ``(F, F)``:
        the top right singular vectors of the centred class are the top eigenvectors of the
        scatter matrix, cheaper than an SVD of the ``(n, F)`` matrix when ``n >> F``."""
        eigenvalues, vectors = np.linalg.eigh(scatter)
        return ClassBasis(n, mean, np.diag(scatter).copy(), eigenvalues, vectors)

    def project_block(self, block: np.ndarray, k: int) -> np.ndarray:
        """One block of rows ``(b, F)`` centred and on the top ``k`` eigenvectors; a row's
        result does not depend on the other rows of the block."""
        return (block - self.mean) @ self.vectors[:, -k:]


def scatter(block: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """A block of a class's rows' contribution ``(F, F)`` to its scatter matrix about ``mean``
    (summed over the blocks after a first pass for the mean)."""
    centred = block - mean
    return centred.T @ centred


def scores(projection: np.ndarray) -> np.ndarray:
    """Spectral-signature scores of one class from its rows' projections on the top direction
    (:meth:`ClassBasis.project_block` with ``k = 1``): the squared distance from the class's
    *median* projection."""
    return np.square(projection - np.median(projection))
