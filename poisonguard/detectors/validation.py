"""Input checks of the detectors, in one place; the messages name the shapes.

Shapes and labels are checked by every public detector function (cheap). Values (NaN or
infinite features, probabilities that are not a softmax) take a pass over the rows, so they are
checked once, where the data enters: a public function checks the arrays it is given unless
``check_finite=False`` says the caller already did (as :func:`scipy.linalg.solve` does), and a
scan checks the embedding once, as it enters the detectors
(:meth:`poisonguard.detectors.DetectorInputs.checked`), not in each detector.

These functions take arrays, or blocks of rows one at a time: the walk over a file is the
caller's.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "PROBABILITY_SUM_TOLERANCE",
    "check_finite",
    "check_labels",
    "check_matrix",
    "check_probabilities",
]

PROBABILITY_SUM_TOLERANCE = 1e-2
"""Probabilities whose rows sum further than this from 1 are rejected (logits passed by
mistake)."""


def check_matrix(shape: tuple[int, ...], name: str = "features", columns: str = "F") -> None:
    """Raise ``ValueError`` unless ``shape`` is that of a matrix ``(N, columns)``."""
    if len(shape) != 2:
        raise ValueError(f"{name} must have shape (N, {columns}), got {tuple(shape)}")


def check_labels(
    labels: np.ndarray, n_samples: int, n_classes: int | None = None, *, name: str = "labels"
) -> np.ndarray:
    """``labels`` as int64 after checking that they are ``n_samples`` integers in
    ``[0, n_classes)`` (``>= 0`` when ``n_classes`` is None)."""
    labels = np.asarray(labels)
    if labels.shape != (n_samples,):
        raise ValueError(f"{name} must have shape ({n_samples},), got {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name} must be integers, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if not labels.size:
        return labels
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or (n_classes is not None and high >= n_classes):
        bound = "be >= 0" if n_classes is None else f"lie in [0, K) = [0, {n_classes})"
        raise ValueError(
            f"{name} must {bound} (n_classes={n_classes}); got values in [{low}, {high}]"
        )
    return labels


def check_finite(block: np.ndarray, name: str = "features") -> None:
    """Raise ``ValueError`` if ``block`` (an array, or one block of its rows) holds NaN or
    infinite values."""
    if not np.isfinite(block).all():
        raise ValueError(f"{name} contain non-finite values (NaN or infinite)")


def check_probabilities(block: np.ndarray, name: str = "probabilities") -> None:
    """Raise ``ValueError`` unless the rows of ``block`` are softmax outputs: finite,
    non-negative, summing to 1 within :data:`PROBABILITY_SUM_TOLERANCE`."""
    if not np.all(np.isfinite(block)) or np.any(block < 0):
        raise ValueError(f"{name} must be finite and non-negative")
    sums = block.sum(axis=1, dtype=np.float64)
    if np.any(np.abs(sums - 1.0) > PROBABILITY_SUM_TOLERANCE):
        worst = float(sums[np.argmax(np.abs(sums - 1.0))])
        raise ValueError(
            f"{name} must be softmax outputs whose rows sum to 1; a row sums to {worst:.6g} "
            "(logits passed instead?)"
        )
