"""Membership-inference attacks: scores that tell a model's training records from held-out ones.

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
* :func:`lira_statistic` and :func:`lira_online_statistic`, LiRA's offline and online tests
  from logit-scaled confidences (:func:`logit_confidence`), for shadow models trained elsewhere
  (full models trained like the target, :mod:`poisonguard.privacy.probe`).

The figures an attack's scores give (AUC, membership advantage, TPR at a low FPR) are computed
in :mod:`poisonguard.privacy.membership_metrics`.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

__all__ = [
    "VARIANCES",
    "loss_attack_scores",
    "lira_offline_scores",
    "lira_statistic",
    "lira_online_statistic",
    "logit_confidence",
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


# --- attacks ---------------------------------------------------------------------------------


def loss_attack_scores(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Loss-threshold attack (Yeom et al., CSF 2018); higher = more likely a member.

    The score is minus the cross-entropy loss of the given label, ``log(max(p_y, 1e-12))``: the
    model fits its training records better than records it never saw. Near ``p_y = 1`` it is
    computed as ``log1p(-sum of the other probabilities)``, which float32 probabilities resolve
    where ``p_y`` itself has rounded to exactly 1 (an overfit model's members otherwise tie at
    0). Thresholding it at the mean training loss is the paper's attack;
    :func:`~poisonguard.privacy.membership_metrics.membership_metrics` sweeps every threshold.

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


# --- validation ------------------------------------------------------------------------------


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
