"""The shrunk linear discriminant of two parts, from the parts' moments.

Group completion (:mod:`poisonguard.detectors.group_completion`) fits, round after round, one
linear discriminant per fold of a class: its flagged group against the rest, each fold's fit on
the other folds. It used scikit-learn's ``LinearDiscriminantAnalysis(solver="lsqr",
shrinkage="auto")``, which reads every training sample at every fit: two Gram matrices of the
whole training part (the covariance and Ledoit-Wolf's shrinkage) and a least-squares solve, 0.5 to
1 s for 16,000 images of 784 pixels, and 295 such fits took 165 of the 190 s a WaNet scan's
decision took (docs/benchmarks.md). Every fit of a round is the same samples dealt differently,
and the next round moves a few samples between the parts. This module computes the same
discriminant from each part's count, sum and Gram matrix (:class:`Moments`), which add and
subtract: a fold's training part is the whole part minus the fold, and only the group's Gram
matrix is read again when the group changes.

The estimate is scikit-learn's (Ledoit & Wolf 2004, as ``sklearn.covariance.ledoit_wolf`` and
``discriminant_analysis._cov`` compute it): each part's samples standardized (a constant column
keeps the scale 1), their empirical covariance shrunk toward its mean variance by the
Ledoit-Wolf coefficient, scaled back, and the two weighted by the parts' shares (the priors).
The coefficient needs one quantity that no second moment holds, the sum over the part's samples
of the fourth power of each standardized sample's norm; it is read from the samples by two
matrix products (:func:`squared_norms`, :func:`fourth_moment`). The arithmetic is in double
precision: the log odds agree with scikit-learn's fitted on the same samples in double precision
to 1e-8 (tests/test_shrunk_discriminant.py). Group completion's fits were scikit-learn's in
single precision, so a sample within rounding of one half may fall the other way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg

__all__ = [
    "Discriminant",
    "Moments",
    "fourth_moment",
    "shrunk_discriminant",
    "squared_norms",
    "standard_scale",
]


@dataclass(frozen=True)
class Moments:
    """Count, sum and Gram matrix (sum of outer products) of a set of samples, in double
    precision; moments of two disjoint sets add, of a subset subtract."""

    count: int
    total: np.ndarray
    gram: np.ndarray

    @classmethod
    def of(cls, rows: np.ndarray) -> Moments:
        rows = np.asarray(rows, dtype=np.float64)
        return cls(int(rows.shape[0]), rows.sum(axis=0), rows.T @ rows)

    @classmethod
    def summed(cls, parts: list[Moments]) -> Moments:
        """The moments of the union of disjoint sets: the parts' added in the given order (the
        rounding of ``parts[0] + parts[1] + ...``), into one new Gram matrix instead of a new
        one per addition (group completion adds five per fit, hundreds of fits a scan)."""
        first, *others = parts
        gram, total = first.gram.copy(), first.total.copy()
        for part in others:
            gram += part.gram
            total += part.total
        return cls(first.count + sum(part.count for part in others), total, gram)

    def __add__(self, other: Moments) -> Moments:
        return Moments.summed([self, other])

    def __sub__(self, other: Moments) -> Moments:
        return Moments(self.count - other.count, self.total - other.total, self.gram - other.gram)

    @property
    def mean(self) -> np.ndarray:
        return self.total / self.count

    @property
    def variance(self) -> np.ndarray:
        """Each column's variance (population, as scikit-learn's standardization reads it)."""
        mean = self.mean
        return np.maximum(np.diagonal(self.gram) / self.count - mean * mean, 0.0)


def standard_scale(moments: Moments) -> np.ndarray:
    """Each column's standard deviation, 1 for a constant column (scikit-learn's
    ``StandardScaler``: a variance within rounding of zero counts as zero)."""
    variance = moments.variance
    mean = moments.mean
    eps = np.finfo(np.float64).eps
    constant = variance <= moments.count * eps * variance + (moments.count * mean * eps) ** 2
    return np.where(constant, 1.0, np.sqrt(variance))


def squared_norms(
    values: np.ndarray, squares: np.ndarray, means: np.ndarray, scales: np.ndarray
) -> np.ndarray:
    """Squared norm of each row of ``values`` (double-precision samples; ``squares`` the same
    squared) standardized by each of ``k`` means and scales (arrays (k, F)): an (N, k) array.
    sum_j (x_j - m_j)^2 / s_j^2 is read as x^2 . w - 2 x . (m w) + m^2 . w with w = 1 / s^2,
    two matrix products for all ``k`` at once instead of ``k`` standardized copies."""
    weights = 1.0 / (scales * scales)
    constant = np.sum(means * means * weights, axis=1)
    return squares @ weights.T - 2.0 * (values @ (means * weights).T) + constant


def fourth_moment(squared_norms: np.ndarray) -> float:
    """The Ledoit-Wolf coefficient's one quantity beyond the second moments: the sum over a
    part's samples of the fourth power of each standardized sample's norm."""
    return float(np.sum(squared_norms * squared_norms))


def shrunk_covariance(moments: Moments, fourth: float, weight: float = 1.0) -> np.ndarray:
    """The part's covariance as ``_cov(X, shrinkage="auto")`` of scikit-learn computes it:
    standardized, Ledoit-Wolf shrunk, scaled back; ``fourth`` is :func:`fourth_moment` of the
    part's samples at its own mean and scale. Times ``weight`` (the part's prior)."""
    count, features = moments.count, moments.total.size
    mean = moments.mean
    scale = standard_scale(moments)
    scales = np.outer(scale, scale)
    # in place, in the order the out-of-place arithmetic ran (the same rounding): hundreds of
    # fits a scan, each a few passes over an (F, F) matrix, where every copy costs as much
    covariance = moments.gram / count
    covariance -= np.outer(mean, mean)
    covariance /= scales
    trace = float(np.trace(covariance))
    mu = trace / features
    if features == 1:
        shrinkage = 0.0  # one feature: the same whatever the shrinkage
    else:
        squared = float(np.sum(covariance * covariance))
        beta = (fourth / count - squared) / (features * count)
        delta = (squared - 2.0 * mu * trace + features * mu**2) / features
        beta = min(beta, delta)
        shrinkage = 0.0 if beta == 0 else beta / delta
    covariance *= 1.0 - shrinkage
    covariance.flat[:: features + 1] += shrinkage * mu
    covariance *= scales
    covariance *= weight
    return covariance


@dataclass(frozen=True)
class Discriminant:
    """A two-part linear discriminant: a sample's log odds of the group are
    ``rows @ coef + intercept`` (its posterior above one half where positive)."""

    coef: np.ndarray
    intercept: float

    def log_odds(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(rows, dtype=np.float64) @ self.coef + self.intercept


def shrunk_discriminant(
    group: Moments, rest: Moments, group_fourth: float, rest_fourth: float
) -> Discriminant:
    """scikit-learn's ``LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")`` fitted on
    the group (class 1) and the rest (class 0), from their moments and fourth moments (each at
    the part's own mean and :func:`standard_scale`), with the priors the parts' shares."""
    total = group.count + rest.count
    priors = np.array([rest.count, group.count], dtype=np.float64) / total
    covariance = shrunk_covariance(rest, rest_fourth, weight=priors[0])
    covariance += shrunk_covariance(group, group_fourth, weight=priors[1])
    means = np.stack([rest.mean, group.mean], axis=1)
    try:
        # the shrunk covariance is positive definite unless the shrinkage is 0 and a column is
        # constant; a Cholesky solve then fails and the least-squares one (scikit-learn's)
        # answers. cho_factor/cho_solve run the LAPACK routines linalg.solve(assume_a="pos")
        # runs, bit for bit, without its condition estimate (a third of the solve's time)
        factor = linalg.cho_factor(covariance, lower=False, check_finite=False)
        solved = linalg.cho_solve(factor, means, check_finite=False)
    except linalg.LinAlgError:
        solved = linalg.lstsq(covariance, means, check_finite=False)[0]
    coef = solved[:, 1] - solved[:, 0]
    intercept = -0.5 * (means[:, 1] @ solved[:, 1] - means[:, 0] @ solved[:, 0]) + float(
        np.log(priors[1]) - np.log(priors[0])
    )
    return Discriminant(coef=coef, intercept=float(intercept))
