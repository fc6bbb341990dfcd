"""From detector scores to flags, without knowing the poison rate or the target class.

Three steps:

1. **Per-sample evidence.** Each detector's scores are calibrated per class against a robust
   null: within a clean class the score is a scaled ``chi2(df)`` variable, its scale estimated from
   the class median (which poison cannot move while it is less than half of the class). Detectors
   are combined per sample by the Bonferroni rule (``p = min(1, k * min_d p_d)``).
2. **Class verdict.** Real features are heavier-tailed than any Gaussian null, so a sample's
   p-value alone over-flags clean classes. A poisoned class differs from the others in *how much*
   of it lies in the far tail (p below ``tail_p``). Each class's tail share is compared with the
   other classes' shares by a robust z-score (median and MAD across classes); a class whose z
   exceeds ``class_z`` is called suspicious. Under an all-to-one attack only the target class
   stands out; on clean data no class does.
3. **Flags.** Inside a suspicious class, the samples in the far tail are flagged. Nothing is
   flagged in other classes.

With fewer than three scored classes there is nothing to compare a class with, and nothing is
flagged: per-sample p-values alone over-flag (31 % of the clean breast-cancer table was flagged
by a false-discovery-rate rule on them). The scores are still reported.

The reported ``score`` is ``-log10(p)``: higher = more suspicious.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = [
    "Decision",
    "class_pvalues",
    "combine_pvalues",
    "decide",
    "suspicion_from_pvalues",
    "MAX_SCORE",
]

MAX_SCORE = 300.0
_MIN_CLASSES_FOR_COMPARISON = 3
_MAD_FLOOR = 0.01


@dataclass
class Decision:
    """Outcome of :func:`decide`.

    ``class_z`` holds each class's robust z-score of its tail share (NaN where not computed);
    ``rule`` names the rule that produced the flags: ``"class-tail"``, or ``"unavailable"`` when
    fewer than three classes could be compared (nothing is flagged).
    """

    flagged: np.ndarray
    score: np.ndarray
    threshold: float
    tail_share: np.ndarray
    class_z: np.ndarray
    suspicious_classes: list[int]
    rule: str


def class_pvalues(
    scores: np.ndarray, labels: np.ndarray, *, df: int, min_class_size: int
) -> np.ndarray:
    """p-value of each score under its class's robust null; 1.0 for classes left unscored.

    The null: within a clean class the score is ``sigma^2 * chi2(df)`` (a squared norm of ``df``
    roughly normal coordinates); ``sigma^2`` is estimated as ``median(score) / median(chi2(df))``.
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


def combine_pvalues(pvalues: list[np.ndarray]) -> np.ndarray:
    """Bonferroni combination across detectors: ``min(1, k * min_d p_d)`` per sample."""
    return np.minimum(1.0, len(pvalues) * np.min(np.vstack(pvalues), axis=0))


def decide(
    pvalues: np.ndarray,
    labels: np.ndarray,
    scored: np.ndarray,
    *,
    tail_p: float,
    class_z: float,
) -> Decision:
    """Flag samples from their combined p-values (see the module docstring).

    Parameters
    ----------
    pvalues : ndarray, shape (N,)
    labels : ndarray of int, shape (N,)
    scored : ndarray of bool, shape (K,)
        Classes the detectors scored (large enough).
    tail_p : float
        p-value below which a sample is in its class's far tail.
    class_z : float
        Robust z-score of a class's tail share above which the class is suspicious.
    """
    if not 0 < tail_p < 1:
        raise ValueError(f"tail_p must be between 0 and 1, got {tail_p}")
    n_classes = scored.shape[0]
    in_tail = pvalues < tail_p
    counts = np.bincount(labels, minlength=n_classes)
    tail_share = np.bincount(labels[in_tail], minlength=n_classes) / np.maximum(counts, 1)
    z = np.full(n_classes, np.nan)
    score = suspicion_from_pvalues(pvalues)

    if scored.sum() < _MIN_CLASSES_FOR_COMPARISON:
        nothing = np.zeros(pvalues.shape[0], dtype=bool)
        return Decision(nothing, score, float(-np.log10(tail_p)), tail_share, z, [], "unavailable")

    shares = tail_share[scored]
    centre = np.median(shares)
    spread = max(1.4826 * np.median(np.abs(shares - centre)), _MAD_FLOOR)
    z[scored] = (shares - centre) / spread
    suspicious = [int(c) for c in np.flatnonzero(scored & (np.nan_to_num(z) > class_z))]
    flagged = in_tail & np.isin(labels, suspicious)
    threshold = float(-np.log10(tail_p))
    return Decision(flagged, score, threshold, tail_share, z, suspicious, "class-tail")


def suspicion_from_pvalues(pvalues: np.ndarray) -> np.ndarray:
    """``-log10(p)``, capped at :data:`MAX_SCORE` (p-values can underflow to 0)."""
    with np.errstate(divide="ignore"):
        # "+ 0.0" turns the -0.0 of p = 1 into 0.0, so reports never show "-0"
        return np.minimum(-np.log10(pvalues), MAX_SCORE) + 0.0
