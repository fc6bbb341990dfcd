"""From detector scores to flags, without knowing the poison rate or the target class.

Each detector's scores are calibrated per class against a robust null: within a class, most
samples are clean, so the null's scale is estimated from the median score, which poison cannot
move while it is less than half of the class. Each sample gets a p-value under that null, and the
Benjamini-Hochberg procedure flags samples across the whole dataset with the false discovery rate
held at ``fdr`` (default 1 %). On clean data this flags nothing in most runs; when poison is
present it flags as many samples as the evidence supports — the rule never needs the rate.

The reported ``score`` is ``-log10(p)``: higher = more suspicious.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["class_pvalues", "benjamini_hochberg", "suspicion_from_pvalues", "MAX_SCORE"]

MAX_SCORE = 300.0


def class_pvalues(
    scores: np.ndarray, labels: np.ndarray, *, df: int, min_class_size: int
) -> np.ndarray:
    """p-value of each score under its class's robust null; 1.0 for classes left unscored.

    The null: within a clean class the score is ``sigma^2 * chi2(df)`` (a squared norm of ``df``
    roughly normal coordinates); ``sigma^2`` is estimated as ``median(score) / median(chi2(df))``,
    which poison cannot move while it is less than half of the class.
    """
    pvalues = np.ones(scores.shape[0], dtype=np.float64)
    null_median = float(stats.chi2.median(df))
    for code in np.unique(labels):
        members = np.flatnonzero(labels == code)
        if members.size < max(2, min_class_size):
            continue
        scale = np.median(scores[members]) / null_median
        if not scale > 0:
            continue
        pvalues[members] = stats.chi2.sf(scores[members] / scale, df=df)
    return pvalues


def benjamini_hochberg(pvalues: np.ndarray, *, fdr: float) -> tuple[np.ndarray, float]:
    """Flags with the false discovery rate held at ``fdr``; also the p-value cut-off used.

    The cut-off is the largest ``p_(k)`` with ``p_(k) <= k * fdr / m``; 0.0 when nothing is flagged.
    """
    if not 0 < fdr < 1:
        raise ValueError(f"fdr must be between 0 and 1, got {fdr}")
    m = pvalues.shape[0]
    ordered = np.sort(pvalues)
    below = np.flatnonzero(ordered <= fdr * np.arange(1, m + 1) / m)
    if below.size == 0:
        return np.zeros(m, dtype=bool), 0.0
    cutoff = float(ordered[below[-1]])
    return pvalues <= cutoff, cutoff


def suspicion_from_pvalues(pvalues: np.ndarray) -> np.ndarray:
    """``-log10(p)``, capped at :data:`MAX_SCORE` (p-values can underflow to 0)."""
    with np.errstate(divide="ignore"):
        return np.minimum(-np.log10(pvalues), MAX_SCORE)
