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

import numpy as np

__all__ = ["spectral_class_scores", "spectral_signature_scores"]


def spectral_signature_scores(
    features: np.ndarray, labels: np.ndarray, *, min_class_size: int = 10
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
            scores[members] = spectral_class_scores(features[members])
    return scores


def spectral_class_scores(rows: np.ndarray) -> np.ndarray:
    """Spectral-signature scores of one class's rows ``(n, F)`` (see above)."""
    rows = np.asarray(rows, dtype=np.float64)
    centred = rows - rows.mean(axis=0)
    # Top right singular vector = top eigenvector of the F x F scatter matrix: cheaper than an SVD
    # of the (n x F) matrix when n >> F.
    scatter = centred.T @ centred
    _, vectors = np.linalg.eigh(scatter)
    projection = centred @ vectors[:, -1]
    return np.square(projection - np.median(projection))
