"""Robust spectral score: robust covariance and whitening of each class's top subspace.

The first two steps of SPECTRE (Hayase, Kong, Somani & Oh, "SPECTRE: Defending Against Backdoor
Attacks Using Robust Statistics", ICML 2021): estimate each class's clean mean and covariance with
an estimator that poison cannot drag (here the Minimum Covariance Determinant, Rousseeuw 1984, in
the class's top principal subspace), whiten, and score each sample by its squared whitened norm
(the robust Mahalanobis distance). SPECTRE's final step, QUantum Entropy scoring, is the
``alpha > 0`` generalisation of this score; ``alpha = 0`` keeps a chi-square null, which the
flagging rule needs.

Why beside plain spectral signatures: poisons taken from many source classes do not line up on
one direction; whitening with a robust covariance measures how far each sample is from the clean
mode in every direction of the subspace at once.

Limits: the clean part of a class must be more than half of it (MCD's breakdown point); a class
with fewer than ``5 * n_components`` samples is scored in a smaller subspace; heavy-tailed clean
classes produce some large distances of their own.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats
from sklearn.covariance import MinCovDet

__all__ = ["robust_spectral_scores"]


def robust_spectral_scores(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    min_class_size: int = 10,
    n_components: int = 10,
    max_fit_samples: int = 2000,
    seed: int = 0,
) -> np.ndarray:
    """Per-sample squared robust Mahalanobis distance in the class's top subspace; higher = more
    suspicious.

    Parameters
    ----------
    features : ndarray, shape (N, F)
    labels : ndarray of int, shape (N,)
    min_class_size : int
        Smaller classes are not scored (score 0).
    n_components : int
        Dimension ``k`` of the principal subspace of each class.
    max_fit_samples : int
        The robust covariance is fitted on at most this many samples of a class (a seeded random
        subset); every sample is scored.
    seed : int

    Returns
    -------
    ndarray of float64, shape (N,)
        Within a clean, roughly Gaussian class the scores follow ``chi2(k)``; classes scored in a
        smaller subspace are mapped to the ``chi2(k)`` quantile with the same tail probability,
        so one null serves every class.
    """
    features = np.asarray(features, dtype=np.float64)
    rng = np.random.default_rng(seed)
    scores = np.zeros(features.shape[0], dtype=np.float64)
    for code in np.unique(labels):
        members = np.flatnonzero(labels == code)
        if members.size < max(2, min_class_size):
            continue
        rows = features[members]
        centred = rows - rows.mean(axis=0)
        eigenvalues, vectors = np.linalg.eigh(centred.T @ centred)
        usable = eigenvalues > 1e-9 * max(eigenvalues[-1], 1e-300)
        k = int(min(n_components, usable.sum(), max(1, members.size // 5)))
        if k == 0:
            continue
        projected = centred @ vectors[:, -k:]
        fit_rows = projected
        if members.size > max_fit_samples:
            fit_rows = projected[np.sort(rng.choice(members.size, max_fit_samples, replace=False))]
        with warnings.catch_warnings():
            # MCD warns when the determinant of a subset covariance vanishes; it still converges
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", UserWarning)
            estimator = MinCovDet(random_state=int(rng.integers(2**31 - 1))).fit(fit_rows)
        distance = estimator.mahalanobis(projected)
        if k < n_components:
            distance = stats.chi2.isf(stats.chi2.sf(distance, k), n_components)
        scores[members] = np.nan_to_num(distance, nan=0.0, posinf=1e12)
    return scores
