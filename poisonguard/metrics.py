"""Detection quality against a ground truth: precision, recall, F1 and AUROC.

Used by ``poisonguard evaluate`` and the benchmarks. ``truth`` marks the poisoned samples,
``flagged`` the scan's decision and ``score`` any suspicion score (higher = more suspicious).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

__all__ = ["detection_metrics"]


def detection_metrics(
    truth: np.ndarray, flagged: np.ndarray, score: np.ndarray | None = None
) -> dict[str, float | int | None]:
    """Precision, recall, F1, share of clean samples flagged, and AUROC of ``score``.

    Precision is 0 when nothing is flagged, recall 0 when nothing is poisoned; AUROC is ``None``
    unless both poisoned and clean samples exist. Values are rounded to 4 digits.
    """
    truth = np.asarray(truth, dtype=bool).reshape(-1)
    flagged = np.asarray(flagged, dtype=bool).reshape(-1)
    if truth.shape != flagged.shape:
        raise ValueError(f"truth has {truth.size} samples, flagged {flagged.size}")
    true_positives = int(np.sum(flagged & truth))
    false_positives = int(np.sum(flagged & ~truth))
    precision = true_positives / max(1, int(flagged.sum()))
    recall = true_positives / max(1, int(truth.sum()))
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    auroc = None
    if score is not None and 0 < truth.sum() < truth.size:
        auroc = round(float(roc_auc_score(truth, np.asarray(score, dtype=np.float64))), 4)
    return {
        "n": int(truth.size),
        "poisoned": int(truth.sum()),
        "flagged": int(flagged.sum()),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "clean_flagged_fraction": round(false_positives / max(1, int((~truth).sum())), 4),
        "auroc": auroc,
    }
