"""Membership inference: can an attacker tell the model's training records from held-out ones?

The population is the union of the **members** (the records the target model was trained on) and
the **non-members** (held out). Each attack scores every record, **higher = more likely a
member**:

* :func:`loss_attack_scores`, the loss-threshold attack (Yeom, Giacomelli, Fredrikson & Jha,
  "Privacy Risk in Machine Learning: Analyzing the Connection to Overfitting", CSF 2018): a model
  fits its training records better than others, so a low loss means "member".
* :func:`lira_offline_scores`, offline LiRA (Carlini, Chien, Nasr, Song, Terzis & Tramèr,
  "Membership Inference Attacks From First Principles", IEEE S&P 2022): the target's confidence in
  a record compared with what models that did *not* train on it give that same record, so that
  records that are hard (or easy) for every model are not mistaken for non-members (or members).

:func:`membership_metrics` turns scores into the figures the paper asks for: AUC, the membership
advantage ``max(TPR - FPR)`` of Yeom et al., and above all the TPR at a low FPR (Carlini et al.
argue that an attack that confidently identifies a few records matters more than one that is
slightly better than chance on all of them, which AUC rewards). Each comes with a bootstrap
confidence interval. :func:`per_class_membership` repeats AUC and advantage per class and says
which classes stand out.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score, roc_curve
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

__all__ = [
    "VARIANCES",
    "loss_attack_scores",
    "lira_offline_scores",
    "lira_statistic",
    "lira_online_statistic",
    "logit_confidence",
    "membership_metrics",
    "per_class_membership",
]

logger = logging.getLogger(__name__)

#: Floor of the probabilities in the loss attack (the loss is at most ``-log(1e-12) = 27.6``).
LOSS_CLIP = 1e-12
#: Floor of ``p_y`` and ``1 - p_y`` in LiRA's logit-scaled confidence: the value of the authors'
#: reference code, so ``phi`` lies in ``[-103.6, 103.6]``.
PHI_CLIP = 1e-45
#: A sample needs at least this many OUT shadow models for its own variance (``"per-sample"``).
MIN_OUT_FOR_OWN_VARIANCE = 8
#: Floor of the Gaussian's standard deviation (logit units): keeps scores finite when every
#: shadow model gives a sample the same confidence.
MIN_STD = 1e-3
#: Inverse L2 strength and iteration cap of the shadow heads (scikit-learn's ``C`` and
#: ``max_iter``); the features are standardized first.
SHADOW_C = 1.0
SHADOW_MAX_ITER = 200
#: Coverage of the bootstrap confidence intervals.
CI_LEVEL = 0.95
#: Most points of the ROC curve returned for plotting.
ROC_POINTS = 200
#: Floor of the MAD in :func:`per_class_membership`'s robust z-score (AUC units).
MAD_FLOOR = 0.01


# --- attacks ---------------------------------------------------------------------------------


def loss_attack_scores(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Loss-threshold attack (Yeom et al., CSF 2018); higher = more likely a member.

    The score is minus the cross-entropy loss of the given label, ``log(max(p_y, 1e-12))``: the
    model fits its training records better than records it never saw. Near ``p_y = 1`` it is
    computed as ``log1p(-sum of the other probabilities)``, which float32 probabilities resolve
    where ``p_y`` itself has rounded to exactly 1 (an overfit model's members otherwise tie at
    0). Thresholding it at the mean training loss is the paper's attack;
    :func:`membership_metrics` sweeps every threshold.

    Parameters
    ----------
    probabilities : ndarray, shape (N, K)
        The target model's class probabilities.
    labels : ndarray of int, shape (N,)
        Given labels in ``0 .. K - 1``.

    Returns
    -------
    ndarray of float64, shape (N,)
        In ``[log(1e-12), 0] = [-27.6, 0]``.
    """
    probabilities, labels = _check_probabilities_labels(probabilities, labels)
    rows = np.arange(labels.shape[0])
    given = probabilities[rows, labels].astype(np.float64)
    others = probabilities.astype(np.float64, copy=True)
    others[rows, labels] = 0.0
    rest = np.minimum(others.sum(axis=1), 1.0 - LOSS_CLIP)
    with np.errstate(divide="ignore"):
        near_one = np.log1p(-rest)
    return np.where(given > 0.5, near_one, np.log(np.maximum(given, LOSS_CLIP)))


def _global_std(phi_out: np.ndarray, means: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """One standard deviation for every sample: the pooled within-sample spread of the OUT
    confidences, ``sqrt(sum_i sum_k (phi_ik - mean_i)^2 / sum_i (count_i - 1))``."""
    spread = _pooled_std(phi_out, means, counts)
    return np.full(phi_out.shape[0], spread)


def _per_sample_std(phi_out: np.ndarray, means: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """A sample's own standard deviation where it has at least ``MIN_OUT_FOR_OWN_VARIANCE`` OUT
    models, the global one elsewhere."""
    std = _global_std(phi_out, means, counts)
    own = counts >= MIN_OUT_FOR_OWN_VARIANCE
    if own.any():
        residual = np.where(np.isnan(phi_out[own]), 0.0, phi_out[own] - means[own, None])
        std[own] = np.sqrt((residual**2).sum(axis=1) / (counts[own] - 1))
    return np.maximum(std, MIN_STD)


#: How the Gaussian of the OUT confidences gets its standard deviation, by name.
VARIANCES: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    "global": _global_std,
    "per-sample": _per_sample_std,
}


def lira_offline_scores(
    features: np.ndarray,
    labels: np.ndarray,
    target_probabilities: np.ndarray,
    *,
    n_shadow: int = 16,
    seed: int = 0,
    fit_fraction: float = 0.5,
    variance: str = "global",
    progress: bool = False,
) -> np.ndarray:
    """Offline LiRA (Carlini et al., IEEE S&P 2022) with shadow heads; higher = more likely a
    member.

    Shadow models: ``n_shadow`` multinomial logistic-regression heads (scikit-learn's
    ``LogisticRegression``, L-BFGS, ``C = 1``, at most 200 iterations) on the standardized
    features. Head ``k`` is trained on ``round(fit_fraction * N)`` records drawn from the whole
    population with ``np.random.default_rng([seed, k])``, members and non-members alike (the
    attacker does not know which is which). For each record the heads that did *not* train on
    it are its OUT models. With ``phi = log(p_y) - log(1 - p_y)`` the logit-scaled confidence of
    the given label (``1 - p_y`` summed from the other classes so that it keeps its precision
    near ``p_y = 1``, both floored at 1e-45), the score is the one-sided statistic

        ``(phi_target - mean_out) / std_out``

    where ``mean_out`` is the mean of the record's OUT ``phi`` and ``std_out`` a standard
    deviation chosen by ``variance``. Ranking by it is the offline test of the paper (the
    likelihood that the target's ``phi`` is *not* drawn from the OUT Gaussian): LiRA's point is
    this per-record calibration. A record that every model finds hard has a low ``mean_out``, so
    a modest target confidence is already suspicious; the loss attack reads it as a non-member.

    ``variance="global"`` (default) uses one ``std_out`` for all records, the pooled
    within-record spread of the OUT confidences: the paper's "global variance", which it finds
    better than per-record variances with few shadow models. With 16 heads and
    ``fit_fraction=0.5`` a record has 8 OUT models on average, and a standard deviation from 8
    values is off by ~25 %; a shared one makes the ranking that of ``phi_target - mean_out``.
    ``variance="per-sample"`` gives records with at least 8 OUT models their own standard
    deviation and the others the global one; worth it only with many more shadows.

    Fallbacks: a record with no OUT model (possible with few shadows or a large
    ``fit_fraction``) takes as ``mean_out`` the mean of all OUT ``phi`` of records of its class,
    or of all records when its class has none. A class absent from a head's training subset gets
    probability 0 from it, so its records' ``phi`` there is the floor (-103.6): such a record is
    very hard for that head, which is what happened.

    Limits: the shadow heads sit on the *target model's* features; the paper trains every shadow
    model from scratch. The features were shaped by training on the members, so a member's
    features may already make it easy for a head that never saw it; the OUT distribution is then
    too confident for members and the attack underestimates the leakage: read its result as a
    lower bound. The target's ``phi`` comes from the full network and the shadows' from a
    regularized head, so their scales differ somewhat; the ranking assumes the difference is
    similar across records.

    Parameters
    ----------
    features : ndarray, shape (N, F)
        The target model's penultimate features for members and non-members together.
    labels : ndarray of int, shape (N,)
        Given labels in ``0 .. K - 1``.
    target_probabilities : ndarray, shape (N, K)
        The target model's class probabilities.
    n_shadow : int
        Number of shadow heads, at least 1.
    seed : int
        Seeds the training subsets; the result is deterministic for a given seed.
    fit_fraction : float
        Share of the population each head trains on, in ``(0, 1)``.
    variance : {"global", "per-sample"}
        How ``std_out`` is estimated (see above).
    progress : bool
        Show a progress bar over the heads.

    Returns
    -------
    ndarray of float64, shape (N,)
        A z-score-like statistic; comparable across records and classes.
    """
    if variance not in VARIANCES:
        raise ValueError(f"unknown variance {variance!r}; valid: {', '.join(VARIANCES)}")
    if int(n_shadow) != n_shadow or n_shadow < 1:
        raise ValueError(f"n_shadow must be an integer >= 1, got {n_shadow!r}")
    if not 0.0 < fit_fraction < 1.0:
        raise ValueError(f"fit_fraction must lie in (0, 1), got {fit_fraction!r}")
    target_probabilities, labels = _check_probabilities_labels(target_probabilities, labels)
    features = np.asarray(features)
    n_samples, n_classes = target_probabilities.shape
    if features.ndim != 2 or features.shape[0] != n_samples:
        raise ValueError(
            f"features must have shape (N, F) = ({n_samples}, F) to match target_probabilities "
            f"of shape {target_probabilities.shape}; got {features.shape}"
        )
    if n_samples < 2:
        raise ValueError(f"LiRA needs at least 2 samples, got {n_samples}")
    features = _standardize(features)
    phi_target = _logit_confidence(target_probabilities, labels)

    start = time.perf_counter()
    n_fit = min(max(int(round(fit_fraction * n_samples)), 1), n_samples - 1)
    phi_out = np.full((n_samples, int(n_shadow)), np.nan)
    not_converged = 0
    # Small matrix products, one BLAS thread (see detectors.confident_learning).
    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        heads = tqdm(range(int(n_shadow)), desc="LiRA shadow heads", disable=not progress)
        for k in heads:
            chosen = np.random.default_rng([seed, k]).permutation(n_samples)[:n_fit]
            out = np.ones(n_samples, dtype=bool)
            out[chosen] = False
            probabilities, converged = _fit_predict_head(
                features[chosen], labels[chosen], features[out], n_classes
            )
            not_converged += not converged
            phi_out[out, k] = _logit_confidence(probabilities, labels[out])
    logger.info(
        "LiRA: %d shadow heads on %d x %d features in %.1f s",
        n_shadow,
        n_samples,
        features.shape[1],
        time.perf_counter() - start,
    )
    if not_converged:
        logger.info("LiRA: %d of %d shadow heads hit the iteration cap", not_converged, n_shadow)

    return lira_statistic(phi_target, phi_out, labels, variance=variance)


def lira_statistic(
    phi_target: np.ndarray, phi_out: np.ndarray, labels: np.ndarray, *, variance: str = "global"
) -> np.ndarray:
    """Offline LiRA's test from the target's and the OUT models' logit-scaled confidences.

    ``phi_out`` is ``(N, K)`` with NaN where shadow model ``k`` trained on sample ``i`` (an IN
    model, unused offline). Returns ``(phi_target - mean_out) / std_out`` per sample (higher =
    more likely a member); see :func:`lira_offline_scores` for the variance variants and the
    fallback for samples with no OUT model. Shadow models may be heads (:func:`lira_offline_scores`)
    or full models trained like the target (:mod:`poisonguard.privacy.probe`).
    """
    if variance not in VARIANCES:
        raise ValueError(f"unknown variance {variance!r}; valid: {', '.join(VARIANCES)}")
    phi_out = np.asarray(phi_out, dtype=np.float64)
    labels = np.asarray(labels)
    n = np.shape(phi_target)[0]
    if phi_out.ndim != 2 or phi_out.shape[0] != n or labels.shape[0] != n:
        raise ValueError(
            f"phi_out must be (N, K) and labels (N,) with N = {n}; got {phi_out.shape} and "
            f"{labels.shape}"
        )
    counts = np.sum(~np.isnan(phi_out), axis=1)
    means = _out_means(phi_out, counts, labels)
    std = VARIANCES[variance](phi_out, means, counts)
    return (np.asarray(phi_target, dtype=np.float64) - means) / std


def lira_online_statistic(
    phi_target: np.ndarray, phi_shadow: np.ndarray, is_in: np.ndarray, labels: np.ndarray
) -> np.ndarray:
    """Online LiRA (Carlini et al. 2022, the paper's main attack): a likelihood ratio.

    ``phi_shadow`` ``(N, K)`` holds every shadow model's logit-scaled confidence on every
    sample and ``is_in`` ``(N, K)`` whether the shadow trained on it. Per sample, Gaussians are
    fitted to its IN and its OUT confidences (each with one global variance, as the paper
    recommends for few shadow models) and the score is
    ``log N(phi_target; mu_in, s_in) - log N(phi_target; mu_out, s_out)`` (higher = more likely a
    member). Samples with no IN (or OUT) model take their class's mean. Needs shadow models that
    trained on random halves of the population, members and non-members alike.
    """
    phi_shadow = np.asarray(phi_shadow, dtype=np.float64)
    is_in = np.asarray(is_in, dtype=bool)
    labels = np.asarray(labels)
    n = np.shape(phi_target)[0]
    if phi_shadow.shape != is_in.shape or phi_shadow.ndim != 2 or phi_shadow.shape[0] != n:
        raise ValueError(
            f"phi_shadow and is_in must both be (N, K) with N = {n}; got {phi_shadow.shape} "
            f"and {is_in.shape}"
        )
    phi_target = np.asarray(phi_target, dtype=np.float64)
    log_ratio = np.zeros(n)
    for sign, mask in ((1.0, is_in), (-1.0, ~is_in)):
        side = np.where(mask, phi_shadow, np.nan)
        counts = mask.sum(axis=1)
        means = _out_means(side, counts, labels)
        std = _pooled_std(side, means, counts)
        log_ratio += sign * (-0.5 * ((phi_target - means) / std) ** 2 - math.log(std))
    return log_ratio


def logit_confidence(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """LiRA's logit-scaled confidence ``log(p_y) - log(1 - p_y)`` of each sample's label."""
    probabilities, labels = _check_probabilities_labels(probabilities, labels)
    return _logit_confidence(probabilities, labels)


def _standardize(features: np.ndarray) -> np.ndarray:
    """Float64 features with zero mean and unit variance per column (constant columns: scale 1),
    over the whole population; membership plays no part."""
    features = np.asarray(features, dtype=np.float64)
    if not np.isfinite(features).all():
        raise ValueError("features contain NaN or infinite values")
    centred = features - features.mean(axis=0)
    scale = centred.std(axis=0)
    scale[scale <= 1e-8 * max(1.0, float(scale.max(initial=0.0)))] = 1.0
    return centred / scale


def _fit_predict_head(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, n_classes: int
) -> tuple[np.ndarray, bool]:
    """Probabilities ``(len(test_x), n_classes)`` of a softmax head fitted on the training rows;
    classes absent from them get 0. Returns them and whether L-BFGS converged."""
    probabilities = np.zeros((test_x.shape[0], n_classes), dtype=np.float64)
    present = np.unique(train_y)
    if present.size == 1:
        probabilities[:, present[0]] = 1.0
        return probabilities, True
    head = LogisticRegression(C=SHADOW_C, max_iter=SHADOW_MAX_ITER)
    head.fit(train_x, train_y)
    probabilities[:, head.classes_] = head.predict_proba(test_x)
    return probabilities, bool(np.all(head.n_iter_ < SHADOW_MAX_ITER))


def _logit_confidence(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``log(p_y) - log(1 - p_y)``, with ``1 - p_y`` summed over the other classes (exact near
    ``p_y = 1``) and both floored at ``PHI_CLIP``."""
    rows = np.arange(labels.shape[0])
    given = probabilities[rows, labels].astype(np.float64)
    others = probabilities.astype(np.float64, copy=True)
    others[rows, labels] = 0.0
    rest = others.sum(axis=1)
    return np.log(np.maximum(given, PHI_CLIP)) - np.log(np.maximum(rest, PHI_CLIP))


def _out_means(phi_out: np.ndarray, counts: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-sample mean of the OUT confidences; samples without OUT models take their class's
    mean over all OUT confidences, or the overall one when the class has none."""
    seen = ~np.isnan(phi_out)
    sums = np.where(seen, phi_out, 0.0).sum(axis=1)
    means = np.full(phi_out.shape[0], np.nan)
    has = counts > 0
    means[has] = sums[has] / counts[has]
    if has.all():
        return means
    overall = sums.sum() / max(1, counts.sum())
    missing = np.flatnonzero(~has)
    logger.info("LiRA: %d samples have no OUT shadow model; using class means", missing.size)
    for code in np.unique(labels[missing]):
        in_class = labels == code
        total = counts[in_class].sum()
        fill = sums[in_class].sum() / total if total else overall
        means[missing[labels[missing] == code]] = fill
    return means


def _pooled_std(phi_out: np.ndarray, means: np.ndarray, counts: np.ndarray) -> float:
    """Pooled within-sample standard deviation of the OUT confidences (samples with >= 2 OUT
    models); the spread of all OUT confidences if no sample has two; floored at ``MIN_STD``."""
    several = counts >= 2
    if several.any():
        residual = phi_out[several] - means[several, None]
        squares = np.where(np.isnan(residual), 0.0, residual**2).sum()
        spread = math.sqrt(squares / (counts[several] - 1).sum())
    else:
        seen = phi_out[~np.isnan(phi_out)]
        spread = float(seen.std()) if seen.size > 1 else 1.0
    return max(spread, MIN_STD)


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


def _check_probabilities_labels(
    probabilities: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    if probabilities.ndim != 2 or probabilities.shape[1] < 1:
        raise ValueError(
            f"probabilities must have shape (N, K) with K >= 1, got {probabilities.shape}"
        )
    n_samples, n_classes = probabilities.shape
    if labels.shape != (n_samples,):
        raise ValueError(
            f"labels must have shape ({n_samples},) to match probabilities of shape "
            f"{probabilities.shape}, got {labels.shape}"
        )
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"labels must lie in [0, K) = [0, {n_classes}), "
            f"got values in [{labels.min()}, {labels.max()}]"
        )
    if not np.isfinite(probabilities).all():
        raise ValueError("probabilities contain NaN or infinite values")
    return probabilities, labels.astype(np.int64)
