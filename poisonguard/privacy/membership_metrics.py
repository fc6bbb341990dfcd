"""Membership-inference metrics: how well an attack's scores separate members from non-members.

The scores come from :mod:`poisonguard.privacy.membership_attacks`, **higher = more likely a
member**. :func:`membership_metrics` turns them into the figures Carlini et al. ("Membership
Inference Attacks From First Principles", IEEE S&P 2022) ask for: AUC, the membership
advantage ``max(TPR - FPR)`` of Yeom et al. (CSF 2018), and above all the TPR at a low FPR
(Carlini et al. argue that an attack that confidently identifies a few records matters more
than one that is slightly better than chance on all of them, which AUC rewards). Each comes
with a bootstrap confidence interval. :func:`per_class_membership` repeats AUC and advantage
per class and says which classes stand out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

__all__ = ["membership_metrics", "per_class_membership"]

#: Coverage of the bootstrap confidence intervals.
CI_LEVEL = 0.95
#: Most points of the ROC curve returned for plotting.
ROC_POINTS = 200
#: Floor of the MAD in :func:`per_class_membership`'s robust z-score (AUC units).
MAD_FLOOR = 0.01


# --- metrics ---------------------------------------------------------------------------------


def membership_metrics(
    scores: np.ndarray,
    is_member: np.ndarray,
    *,
    fprs: Sequence[float] = (0.01, 0.001),
    min_false_positives: int = 5,
    n_bootstrap: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """How well membership scores separate members from non-members (higher score = member).

    * ``auc``: area under the ROC curve (scikit-learn's ``roc_auc_score``; ties count half).
    * ``advantage``: membership advantage (Yeom et al., CSF 2018), ``max_t TPR(t) - FPR(t)`` over
      thresholds ``t`` where ``score >= t`` means "member"; at least 0 (the threshold above every
      score).
    * ``tpr_at_fpr`` (Carlini et al., IEEE S&P 2022), one row per requested FPR ``f0``. Let
      ``n_non`` be the number of non-members. An FPR is *supported* when
      ``n_non * f0 >= min_false_positives``: a rate read off fewer false positives is noise.
      Supported: the allowed false positives are ``k = floor(f0 * n_non)``, the threshold is the
      ``(k + 1)``-th highest non-member score (so at most ``k`` non-members lie strictly above
      it, fewer when scores tie there), and the TPR is the share of members strictly above it;
      ``fpr`` is ``f0``. Unsupported: the same with ``k = min_false_positives``, reported at
      ``fpr = min_false_positives / n_non``, the lowest FPR the data supports, with
      ``supported: False``. (``k >= n_non`` puts the threshold below every score: TPR 1.)
    * ``roc``: the ROC curve's vertices, at most 200, chosen at log-spaced FPRs so that the
      low-FPR end keeps its detail; the first vertex (FPR 0) and the last (1, 1) are always kept.

    Confidence intervals are 95 % percentile bootstraps over ``n_bootstrap`` resamples, members
    and non-members resampled separately (so each resample keeps both counts and the same
    ``k``) with ``np.random.default_rng(seed)``. A percentile interval can, for a skewed
    statistic, leave out the point estimate; none is computed when ``n_bootstrap`` is 0.

    Parameters
    ----------
    scores : ndarray, shape (N,)
        Membership scores, higher = more likely a member.
    is_member : ndarray of bool, shape (N,)
    fprs : sequence of float
        Requested false-positive rates, each in ``(0, 1]``.
    min_false_positives : int
        False positives needed for a TPR at a given FPR to be reported at that FPR.
    n_bootstrap : int
        Bootstrap resamples; 0 for no intervals.
    seed : int

    Returns
    -------
    dict
        ``auc`` (float), ``auc_ci`` (``[low, high]`` or None), ``advantage``, ``advantage_ci``,
        ``tpr_at_fpr`` (list of ``{"fpr", "tpr", "ci", "requested_fpr", "supported"}``),
        ``roc`` (``{"fpr": [...], "tpr": [...]}``), ``n_members``, ``n_nonmembers``.

    Raises
    ------
    ValueError
        Shapes differ, scores are not finite, or there are no members or no non-members.
    """
    scores, is_member = _check_scores(scores, is_member)
    fprs = [float(f) for f in fprs]
    for f in fprs:
        if not 0.0 < f <= 1.0:
            raise ValueError(f"each of fprs must lie in (0, 1], got {f!r}")
    if int(min_false_positives) != min_false_positives or min_false_positives < 1:
        raise ValueError(
            f"min_false_positives must be an integer >= 1, got {min_false_positives!r}"
        )
    _check_n_bootstrap(n_bootstrap)
    members = np.sort(scores[is_member])
    nonmembers = np.sort(scores[~is_member])
    n_non = nonmembers.size
    rows = []
    for f in fprs:
        supported = n_non * f >= min_false_positives - 1e-9
        allowed = math.floor(n_non * f + 1e-9) if supported else int(min_false_positives)
        allowed = min(allowed, n_non)
        rows.append(
            {
                "fpr": f if supported else allowed / n_non,
                "requested_fpr": f,
                "supported": bool(supported),
                "allowed": allowed,
            }
        )
    allowed = [row.pop("allowed") for row in rows]

    def statistics(m: np.ndarray, u: np.ndarray) -> list[float]:
        return [_auc(m, u), _advantage(m, u), *(_tpr_at(m, u, k) for k in allowed)]

    point = statistics(members, nonmembers)
    # The reference implementation for the headline figure; equal to the rank formula above.
    point[0] = float(roc_auc_score(is_member, scores))
    intervals = _bootstrap(
        statistics, members, nonmembers, n_bootstrap, np.random.default_rng(seed)
    )
    for j, row in enumerate(rows):
        row["tpr"] = point[2 + j]
        row["ci"] = intervals[2 + j]
    fpr_curve, tpr_curve = _downsampled_roc(scores, is_member)
    return {
        "auc": point[0],
        "auc_ci": intervals[0],
        "advantage": point[1],
        "advantage_ci": intervals[1],
        "tpr_at_fpr": [
            {k: row[k] for k in ("fpr", "tpr", "ci", "requested_fpr", "supported")} for row in rows
        ],
        "roc": {"fpr": fpr_curve, "tpr": tpr_curve},
        "n_members": int(members.size),
        "n_nonmembers": int(n_non),
    }


def per_class_membership(
    scores: np.ndarray,
    is_member: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    min_per_group: int = 5,
    n_bootstrap: int = 200,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """AUC and membership advantage per class, and which classes leak more than the others.

    Each class's records are scored as in :func:`membership_metrics` (AUC, advantage, their 95 %
    bootstrap intervals, resampled with ``np.random.default_rng([seed, code])``). A class with
    fewer than ``min_per_group`` members or non-members is skipped: ``"skipped"`` says why and
    its figures are None. ``robust_z`` compares a class's AUC with those of the *other* scored
    classes: ``(auc - median) / (1.4826 * max(MAD, 0.01))``, median and MAD (median absolute
    deviation) over the others; the floor keeps classes that all leak alike from producing huge
    z-scores over differences of a few thousandths. None when no other class is scored.

    Parameters
    ----------
    scores : ndarray, shape (N,)
        Membership scores, higher = more likely a member.
    is_member : ndarray of bool, shape (N,)
    labels : ndarray of int, shape (N,)
        Class codes in ``0 .. len(class_names) - 1``.
    class_names : sequence of str
    min_per_group : int
        Members and non-members a class needs to be scored.
    n_bootstrap : int
        Bootstrap resamples per class; 0 for no intervals.
    seed : int

    Returns
    -------
    list of dict, one per class in code order
        ``code`` (int), ``class`` (its name), ``n_members``, ``n_nonmembers``, ``auc``,
        ``auc_ci``, ``advantage``, ``advantage_ci``, ``robust_z`` and ``skipped`` (None, or the
        reason the class was not scored).
    """
    scores, is_member = _check_scores(scores, is_member, need_both=False)
    labels = np.asarray(labels)
    n_classes = len(class_names)
    if labels.shape != scores.shape:
        raise ValueError(f"labels must have shape {scores.shape} like scores, got {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"labels must lie in [0, {n_classes}) for {n_classes} class names, "
            f"got values in [{labels.min()}, {labels.max()}]"
        )
    _check_n_bootstrap(n_bootstrap)

    def statistics(m: np.ndarray, u: np.ndarray) -> list[float]:
        return [_auc(m, u), _advantage(m, u)]

    rows = []
    for code, name in enumerate(class_names):
        in_class = labels == code
        members = np.sort(scores[in_class & is_member])
        nonmembers = np.sort(scores[in_class & ~is_member])
        row: dict[str, Any] = {
            "code": code,
            "class": str(name),
            "n_members": int(members.size),
            "n_nonmembers": int(nonmembers.size),
            "auc": None,
            "auc_ci": None,
            "advantage": None,
            "advantage_ci": None,
            "robust_z": None,
            "skipped": None,
        }
        if min(members.size, nonmembers.size) < min_per_group:
            row["skipped"] = (
                f"{members.size} members and {nonmembers.size} non-members; "
                f"at least {min_per_group} of each are needed"
            )
        else:
            row["auc"] = float(roc_auc_score(is_member[in_class], scores[in_class]))
            row["advantage"] = _advantage(members, nonmembers)
            rng = np.random.default_rng([seed, code])
            row["auc_ci"], row["advantage_ci"] = _bootstrap(
                statistics, members, nonmembers, n_bootstrap, rng
            )
        rows.append(row)

    scored = [row for row in rows if row["skipped"] is None]
    aucs = np.array([row["auc"] for row in scored])
    for j, row in enumerate(scored):
        others = np.delete(aucs, j)
        if others.size == 0:
            continue
        centre = float(np.median(others))
        mad = float(np.median(np.abs(others - centre)))
        row["robust_z"] = (row["auc"] - centre) / (1.4826 * max(mad, MAD_FLOOR))
    return rows


def _auc(members: np.ndarray, nonmembers: np.ndarray) -> float:
    """Mann-Whitney AUC from sorted score arrays: P(member > non-member) + P(tie) / 2."""
    below = np.searchsorted(nonmembers, members, side="left")
    not_above = np.searchsorted(nonmembers, members, side="right")
    return float((below.sum() + not_above.sum()) / (2.0 * members.size * nonmembers.size))


def _advantage(members: np.ndarray, nonmembers: np.ndarray) -> float:
    """``max_t TPR - FPR`` with "member" = ``score >= t``, from sorted arrays. The maximum sits
    at a member score (raising ``t`` to the next one lowers FPR and keeps TPR) or above all."""
    tpr = 1.0 - np.searchsorted(members, members, side="left") / members.size
    fpr = 1.0 - np.searchsorted(nonmembers, members, side="left") / nonmembers.size
    return float(max(0.0, np.max(tpr - fpr)))


def _tpr_at(members: np.ndarray, nonmembers: np.ndarray, allowed: int) -> float:
    """Share of members strictly above the ``(allowed + 1)``-th highest non-member score."""
    if allowed >= nonmembers.size:
        return 1.0
    threshold = nonmembers[nonmembers.size - allowed - 1]
    return float(1.0 - np.searchsorted(members, threshold, side="right") / members.size)


def _bootstrap(
    statistics: Callable[[np.ndarray, np.ndarray], list[float]],
    members: np.ndarray,
    nonmembers: np.ndarray,
    n_bootstrap: int,
    rng: np.random.Generator,
) -> list[list[float] | None]:
    """95 % percentile intervals of each statistic; members and non-members (sorted) resampled
    separately. Sorting the drawn indices keeps each resample sorted."""
    if n_bootstrap == 0:
        return [None] * len(statistics(members, nonmembers))
    values = []
    for _ in range(n_bootstrap):
        m = members[np.sort(rng.integers(0, members.size, members.size))]
        u = nonmembers[np.sort(rng.integers(0, nonmembers.size, nonmembers.size))]
        values.append(statistics(m, u))
    tail = 100.0 * (1.0 - CI_LEVEL) / 2.0
    low, high = np.percentile(np.asarray(values), [tail, 100.0 - tail], axis=0)
    return [[float(lo), float(hi)] for lo, hi in zip(low, high, strict=True)]


def _downsampled_roc(scores: np.ndarray, is_member: np.ndarray) -> tuple[list[float], list[float]]:
    """At most ``ROC_POINTS`` vertices of the ROC curve: for log-spaced FPRs from ``1 / n_non``
    to 1, the last vertex at or below each, plus the last vertex at FPR 0 and the end (1, 1)."""
    fpr, tpr, _ = roc_curve(is_member, scores, drop_intermediate=True)
    if fpr.size > ROC_POINTS:
        grid = np.geomspace(1.0 / np.sum(~is_member), 1.0, ROC_POINTS - 2)
        picked = np.searchsorted(fpr, grid, side="right") - 1
        at_zero = np.searchsorted(fpr, 0.0, side="right") - 1
        keep = np.unique(np.concatenate([[at_zero], picked, [fpr.size - 1]]))
        fpr, tpr = fpr[keep], tpr[keep]
    return fpr.tolist(), tpr.tolist()


# --- validation ------------------------------------------------------------------------------


def _check_scores(
    scores: np.ndarray, is_member: np.ndarray, *, need_both: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    is_member = np.asarray(is_member)
    if scores.ndim != 1:
        raise ValueError(f"scores must have shape (N,), got {scores.shape}")
    if is_member.shape != scores.shape:
        raise ValueError(
            f"is_member must have shape {scores.shape} like scores, got {is_member.shape}"
        )
    if is_member.dtype != bool:
        if is_member.size and not np.isin(is_member, (0, 1)).all():
            raise ValueError("is_member must be boolean (or 0/1)")
        is_member = is_member.astype(bool)
    if not np.isfinite(scores).all():
        raise ValueError(
            f"scores contain {int(np.sum(~np.isfinite(scores)))} NaN or infinite values"
        )
    if need_both:
        n_members = int(is_member.sum())
        if n_members == 0:
            raise ValueError(
                f"no members among the {scores.size} samples: membership metrics need both "
                "members and non-members"
            )
        if n_members == scores.size:
            raise ValueError(
                f"no non-members among the {scores.size} samples: membership metrics need both "
                "members and non-members"
            )
    return scores, is_member


def _check_n_bootstrap(n_bootstrap: int) -> None:
    if int(n_bootstrap) != n_bootstrap or n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be an integer >= 0, got {n_bootstrap!r}")
