"""SPECTRE: robust covariance, whitening and QUantum Entropy scores.

Hayase, Kong, Somani & Oh, "SPECTRE: Defending Against Backdoor Attacks Using Robust
Statistics", ICML 2021. Per class: project the features on the class's top principal subspace,
estimate the *clean* mean and covariance with an estimator that poison cannot drag (here the
Minimum Covariance Determinant, Rousseeuw 1984, instead of the paper's filter, which needs the
poison rate), whiten with them, and score each sample by its QUantum Entropy (QUE) score

    tau_i = h_i' Q h_i / tr(Q),   Q = exp(alpha (S - I) / (||S||_2 - 1)),

where ``h_i`` is the whitened sample and ``S`` the covariance of the whitened class. After
whitening, the clean samples look isotropic and the poison is what is left in ``S`` beyond the
identity; ``Q`` weights the directions where it lies. ``alpha = 0`` gives the squared robust
Mahalanobis distance (divided by ``k``), ``alpha -> infinity`` spectral signatures in the whitened
space; the paper uses ``alpha = 4``.

Why beside plain spectral signatures: poisons taken from many source classes do not line up on
one direction of the raw features; whitening with a robust covariance makes them stand out in
every direction of the subspace at once.

Limits: the clean part of a class must be more than half of it (MCD's breakdown point); a class
smaller than ``5 * n_components`` is scored in a smaller subspace; heavy-tailed clean classes
produce some large scores of their own, which is why :mod:`poisonguard.decision` compares
classes with one another instead of thresholding scores.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import linalg
from sklearn.covariance import MinCovDet

__all__ = [
    "RobustClassFit",
    "robust_class_fits",
    "spectre_scores",
    "que_scores",
]


@dataclass(frozen=True)
class RobustClassFit:
    """Per-sample results of the robust whitening of every class.

    ``que`` is the QUE score; ``distance`` the squared robust Mahalanobis distance in the class's
    top subspace; ``distance_ratio`` that distance divided by its class median (a scale-free
    measure of how far a sample lies from its class's clean mode: about 1 for a typical sample);
    ``scored`` marks the samples of classes large enough to be fitted.
    """

    que: np.ndarray
    distance: np.ndarray
    distance_ratio: np.ndarray
    scored: np.ndarray


def robust_class_fits(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    min_class_size: int = 10,
    n_components: int = 10,
    alpha: float = 4.0,
    max_fit_samples: int = 1000,
    seed: int = 0,
) -> RobustClassFit:
    """Robustly whiten each class's top subspace once; QUE scores and robust distances.

    Parameters are those of :func:`spectre_scores`.
    """
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    features = np.asarray(features, dtype=np.float64)
    rng = np.random.default_rng(seed)
    n = features.shape[0]
    que, distance, ratio = np.zeros(n), np.zeros(n), np.zeros(n)
    scored = np.zeros(n, dtype=bool)
    for code in np.unique(labels):
        members = np.flatnonzero(labels == code)
        if members.size < max(2, min_class_size):
            continue
        fitted = _robustly_whitened(features[members], n_components, max_fit_samples, rng)
        if fitted is None:
            continue
        whitened, support = fitted
        scored[members] = True
        que[members] = que_scores(whitened, alpha=alpha)
        squared = np.nan_to_num(np.square(whitened).sum(axis=1), nan=0.0, posinf=1e12)
        distance[members] = squared
        # The median over the estimator's clean support, not over the class: when poison is
        # half of a class, the class median falls in the gap between the two groups.
        middle = float(np.median(squared[support]))
        ratio[members] = squared / middle if middle > 0 else 0.0
    return RobustClassFit(que, distance, ratio, scored)


def spectre_scores(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    min_class_size: int = 10,
    n_components: int = 10,
    alpha: float = 4.0,
    max_fit_samples: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """Per-sample QUE score in each class's robustly whitened top subspace; higher = more
    suspicious.

    Parameters
    ----------
    features : ndarray, shape (N, F)
    labels : ndarray of int, shape (N,)
    min_class_size : int
        Smaller classes are not scored (score 0).
    n_components : int
        Dimension ``k`` of the principal subspace of each class.
    alpha : float
        QUE's temperature (``>= 0``); 0 gives the robust Mahalanobis distance.
    max_fit_samples : int
        The robust covariance is fitted on at most this many samples of a class (a seeded random
        subset); every sample is scored.
    seed : int

    Returns
    -------
    ndarray of float64, shape (N,)
        Non-negative; comparable within a class, not across classes.
    """
    return robust_class_fits(
        features,
        labels,
        min_class_size=min_class_size,
        n_components=n_components,
        alpha=alpha,
        max_fit_samples=max_fit_samples,
        seed=seed,
    ).que


def que_scores(whitened: np.ndarray, *, alpha: float = 4.0) -> np.ndarray:
    """QUE score of each row of an already whitened matrix ``(n, k)``."""
    n, k = whitened.shape
    covariance = whitened.T @ whitened / max(n, 1)
    top = float(np.linalg.eigvalsh(covariance)[-1]) if k else 0.0
    if alpha == 0 or top <= 1.0 + 1e-6:
        # Nothing beyond the identity: every direction weighs the same.
        weights = np.eye(k)
    else:
        weights = linalg.expm(alpha * (covariance - np.eye(k)) / (top - 1.0))
    scores = np.einsum("ij,jk,ik->i", whitened, weights, whitened) / np.trace(weights)
    return np.nan_to_num(scores, nan=0.0, posinf=1e12)


_MCD_RESTARTS = 3


def _log_det(estimator: MinCovDet) -> float:
    sign, value = np.linalg.slogdet(estimator.raw_covariance_)
    return float(value) if sign > 0 else -np.inf


def _robustly_whitened(
    rows: np.ndarray, n_components: int, max_fit_samples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray] | None:
    """Project ``rows`` on their top principal subspace and whiten with an MCD fit.

    Returns the whitened rows and the indices of the rows in the estimator's support.
    """
    centred = rows - rows.mean(axis=0)
    eigenvalues, vectors = np.linalg.eigh(centred.T @ centred)
    usable = eigenvalues > 1e-9 * max(eigenvalues[-1], 1e-300)
    k = int(min(n_components, usable.sum(), max(1, rows.shape[0] // 5)))
    if k == 0:
        return None
    projected = centred @ vectors[:, -k:]
    chosen = np.arange(rows.shape[0])
    if rows.shape[0] > max_fit_samples:
        chosen = np.sort(rng.choice(rows.shape[0], max_fit_samples, replace=False))
    fit_rows = projected[chosen]
    estimator = None
    for _ in range(_MCD_RESTARTS):
        with warnings.catch_warnings():
            # MCD warns when the determinant of a subset covariance vanishes; it still converges
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", UserWarning)
            candidate = MinCovDet(random_state=int(rng.integers(2**31 - 1))).fit(fit_rows)
        # FastMCD is a local search from random starts: keep the fit with the smallest
        # determinant, MCD's own objective (one start in six landed on a mixed fit when poison
        # was half of a Fashion-MNIST class).
        if estimator is None or _log_det(candidate) < _log_det(estimator):
            estimator = candidate
    covariance = estimator.covariance_ + 1e-9 * np.trace(estimator.covariance_) / k * np.eye(k)
    values, axes = np.linalg.eigh(covariance)
    values = np.maximum(values, 1e-12 * max(values[-1], 1e-300))
    whitened = (projected - estimator.location_) @ axes / np.sqrt(values)
    return whitened, chosen[estimator.support_]
