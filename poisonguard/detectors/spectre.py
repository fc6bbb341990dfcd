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

Degenerate classes (identical samples, duplicates, features of a tiny scale) are fitted where a
fit means something and left unscored, with a note that says why, where it does not:

* a class whose features have no spread at all (:attr:`ClassBasis.has_spread`: identical
  samples) has no direction to whiten: not fitted;
* when more than half of the rows the fit uses coincide, the MCD's core is those copies, with no
  spread to scale distances by (scikit-learn refuses such a support outright: "The covariance
  matrix of the support data is equal to 0"). The fit is then made on the distinct rows, one
  copy each, and says so; if even those leave no spread, the class is not fitted;
* scikit-learn's test for a zero covariance has an absolute tolerance, which features of a
  small scale fail although they spread: such a start is retried at unit scale.

This module holds the steps, as functions of arrays: which rows the fit uses
(:func:`whitening_plan`), the robust fit on their projections (:func:`fit_whitening`), and, for
each block of rows, the whitened rows (:meth:`Whitening.apply`), their distances
(:func:`squared_norms`) and QUE scores (:func:`que`, weighted by :func:`que_weights` of the
whitened covariance). :mod:`poisonguard.detectors.class_rows` walks each class's rows, in memory
or in a file, through them (:func:`~poisonguard.detectors.class_rows.robust_class_fit`,
:func:`~poisonguard.detectors.class_rows.spectre_scores`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import linalg
from scipy.stats import chi2
from sklearn.cluster import KMeans
from sklearn.covariance import MinCovDet

from poisonguard.detectors.spectral import ClassBasis
from poisonguard.seeding import key_order, sample_by_key

__all__ = [
    "RobustClassFit",
    "Whitening",
    "check_alpha",
    "distance_ratio",
    "fit_whitening",
    "minimum_covariance_determinant",
    "que",
    "que_scores",
    "que_weights",
    "squared_norms",
    "whitening_plan",
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


def check_alpha(alpha: float) -> None:
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")


def squared_norms(whitened: np.ndarray) -> np.ndarray:
    """Squared robust distances of whitened rows (:meth:`Whitening.apply`)."""
    return np.nan_to_num(np.square(whitened).sum(axis=1), nan=0.0, posinf=1e12)


def distance_ratio(squared: np.ndarray, support: np.ndarray) -> np.ndarray:
    """Squared robust distances divided by their median over the estimator's clean support,
    not over the class: when poison is half of a class, the class median falls in the gap
    between the two groups."""
    middle = float(np.median(squared[support]))
    return squared / middle if middle > 0 else np.zeros_like(squared)


def que_scores(whitened: np.ndarray, *, alpha: float = 4.0) -> np.ndarray:
    """QUE score of each row of an already whitened matrix ``(n, k)``."""
    n, k = whitened.shape
    covariance = whitened.T @ whitened / max(n, 1)
    return que(whitened, que_weights(covariance, alpha=alpha))


def que_weights(covariance: np.ndarray, *, alpha: float = 4.0) -> np.ndarray:
    """QUE's weighting ``exp(alpha (C - I) / (||C|| - 1))`` of the whitened rows' covariance
    ``C`` (``k x k``); the identity when nothing stands out (``||C|| <= 1``) or ``alpha == 0``."""
    k = covariance.shape[0]
    top = float(np.linalg.eigvalsh(covariance)[-1]) if k else 0.0
    if alpha == 0 or top <= 1.0 + 1e-6:
        # Nothing beyond the identity: every direction weighs the same.
        return np.eye(k)
    return linalg.expm(alpha * (covariance - np.eye(k)) / (top - 1.0))


def que(whitened: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-row QUE score ``w^T W w / tr W``; a row's score depends on that row only."""
    scores = np.einsum("ij,jk,ik->i", whitened, weights, whitened) / np.trace(weights)
    return np.nan_to_num(scores, nan=0.0, posinf=1e12)


_MCD_RESTARTS = 3
_CLUSTER_STARTS = 2


@dataclass(frozen=True)
class Whitening:
    """A class's robust whitening of its top ``k`` principal subspace, and the positions of the
    rows in the MCD estimator's support."""

    basis: ClassBasis
    k: int
    location: np.ndarray
    axes: np.ndarray
    scale: np.ndarray
    support: np.ndarray

    def apply(self, block: np.ndarray) -> np.ndarray:
        """Whitened rows of one block ``(b, F)`` -> ``(b, k)``."""
        return (self.basis.project_block(block, self.k) - self.location) @ self.axes / self.scale


CORE_SPREAD_TOLERANCE = 1e-6
"""The robust core *has no spread* when its variance along every axis of the subspace is below
this share of the class's (the MCD picked a half of coinciding rows)."""


def whitening_plan(
    basis: ClassBasis,
    n_components: int,
    max_fit_samples: int,
    keys: np.ndarray,
    notes: list[str] | None = None,
) -> tuple[int, np.ndarray] | None:
    """The dimension ``k`` of a class's robust whitening and the sorted positions of the rows
    it is fitted on (at most ``max_fit_samples``: those with the smallest content ``keys``, a
    seeded sample that does not depend on the order of the rows); None when the class has no
    usable direction (``notes`` gets the reason)."""
    notes = [] if notes is None else notes
    n = basis.n
    if not basis.has_spread:
        notes.append(
            f"its {n} samples have the same features in the model (identical or all but "
            "identical inputs), so there is no direction to whiten"
        )
        return None
    eigenvalues = basis.eigenvalues
    usable = eigenvalues > 1e-9 * max(eigenvalues[-1], 1e-300)
    k = int(min(n_components, usable.sum(), max(1, n // 5)))
    if k == 0:
        notes.append(f"its {n} samples leave no usable direction in the model's features")
        return None
    return k, sample_by_key(keys, max_fit_samples)


def fit_whitening(
    basis: ClassBasis,
    fitted: np.ndarray,
    chosen: np.ndarray,
    rng: np.random.Generator,
    notes: list[str] | None = None,
    keys: np.ndarray | None = None,
) -> Whitening | None:
    """Fit an MCD whitening of the class's top ``k`` principal subspace on the projections
    ``fitted`` ``(m, k)`` (:meth:`ClassBasis.project_block`) of its rows ``chosen`` (see
    :func:`whitening_plan`; take them from the blocks every row is projected in: a matrix
    product's rows can differ in the last bits with the number of rows multiplied); None when
    the class has no robust core with a spread (``notes`` gets the reason). FastMCD's random
    starts and the 2-means split depend on the order of their rows: they see the rows in the
    order of their content ``keys`` (those of the rows ``chosen``; default: as given)."""
    notes = [] if notes is None else notes
    n, k = basis.n, fitted.shape[1]
    eigenvalues = basis.eigenvalues
    # the class's own variance along each axis of the subspace (the axes are its eigenvectors)
    class_variance = np.maximum(eigenvalues[-k:], 1e-300) / n
    keys = np.arange(fitted.shape[0], dtype=np.uint64) if keys is None else keys
    half = _best_half_by_key(fitted, keys, rng)
    if _no_spread(fitted[half], class_variance):
        # more than half of the fitted rows coincide: fit on the distinct rows, one copy each
        distinct = np.sort(np.unique(fitted, axis=0, return_index=True)[1])
        repeated = chosen.size - distinct.size
        smaller = int(min(k, max(1, distinct.size // 5)))  # as for a class of that size
        if smaller < k:
            fitted, class_variance, k = fitted[:, -smaller:], class_variance[-smaller:], smaller
        if distinct.size < max(2 * (k + 1), 5):
            notes.append(
                f"{repeated} of the {chosen.size} samples of its robust fit are copies of "
                f"others in the model's features, which leaves {distinct.size} distinct ones: "
                "too few for a robust core"
            )
            return None
        unique_rows = fitted[distinct]
        half = _best_half_by_key(unique_rows, keys[distinct], rng)
        if _no_spread(unique_rows[half], class_variance):
            notes.append(
                "more than half of the samples of its robust fit coincide in the model's "
                f"features, even among its {distinct.size} distinct ones, so its robust core "
                "has no spread to measure distances by"
            )
            return None
        notes.append(
            f"{repeated} of the {chosen.size} samples of its robust fit are copies of others "
            "in the model's features (more than the half a robust fit may leave out); its core "
            f"was fitted on the {distinct.size} distinct ones, one copy each"
        )
        location, covariance, support = _reweighted(unique_rows, half)
        support = distinct[support]
    else:
        location, covariance, support = _reweighted(fitted, half)
    covariance = covariance + 1e-9 * np.trace(covariance) / k * np.eye(k)
    values, axes = np.linalg.eigh(covariance)
    values = np.maximum(values, 1e-12 * max(values[-1], 1e-300))
    return Whitening(basis, k, location, axes, np.sqrt(values), chosen[support])


def _no_spread(rows: np.ndarray, class_variance: np.ndarray) -> bool:
    """Whether ``rows`` (a robust core) have (all but) no spread along every axis, relative to
    the class's variance along it (:data:`CORE_SPREAD_TOLERANCE`)."""
    return bool(np.all(np.var(rows, axis=0) <= CORE_SPREAD_TOLERANCE * class_variance))


def _fast_mcd_support(x: np.ndarray, random_state: int) -> np.ndarray | None:
    """Positions of the raw support of scikit-learn's FastMCD from ``random_state``, or None when
    it finds no support with a spread.

    scikit-learn refuses a support whose covariance is all but 0 ("The covariance matrix of the
    support data is equal to 0"), with an absolute tolerance: rows of a small scale fail it too
    although they spread, so such a start is retried once at unit scale (a power of two, which
    changes no digit); a support of coinciding rows fails both.
    """
    with warnings.catch_warnings():
        # MCD warns when the determinant of a subset covariance vanishes; it still converges
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        try:
            return np.flatnonzero(MinCovDet(random_state=random_state).fit(x).raw_support_)
        except ValueError:
            spread = float(np.sqrt(np.mean(np.var(x, axis=0))))
            if not (np.isfinite(spread) and spread > 0):
                return None
            scaled = x * 2.0 ** -np.round(np.log2(spread))
            try:
                fitted = MinCovDet(random_state=random_state).fit(scaled)
            except ValueError:
                return None
            return np.flatnonzero(fitted.raw_support_)


def minimum_covariance_determinant(
    x: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reweighted MCD location and covariance of ``x`` (n, k), and the indices of its support.

    The MCD looks for the half of the rows whose covariance has the smallest determinant.
    FastMCD (Rousseeuw & Van Driessen, 1999) as scikit-learn's ``MinCovDet`` runs it searches
    from random subsets, each of which holds about the class's share of poison: with a third to
    a half of a class poisoned every start ended on a mixed half (Fashion-MNIST blend at 10 %,
    where half of the target class is poison; a 30 % far group in the tests). So the search
    also starts from each cluster of a 2-means split and runs the same concentration steps
    (C-steps: refit on the ``h`` rows nearest the current fit; each step lowers the determinant);
    the half with the smallest determinant of all starts wins. It is then reweighted as in
    Rousseeuw & Van Driessen: scaled to be consistent at the normal, refitted on the rows within
    the 97.5 % chi-square quantile, and scaled again for that truncation (Croux & Haesbroeck).

    ``x`` needs more than ``k`` rows; ``rng`` seeds the random starts and the 2-means split.
    """
    return _reweighted(x, _best_half(x, rng))


def _best_half_by_key(x: np.ndarray, keys: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """:func:`_best_half` of the rows taken in the order of their ``keys``, as sorted positions
    in ``x``."""
    order = key_order(keys)
    return np.sort(order[_best_half(x[order], rng)])


def _best_half(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The raw MCD half of :func:`minimum_covariance_determinant`: positions of the ``h`` rows
    with the smallest covariance determinant found from every start. A start that finds no
    support with a spread (more than half of the rows coincide) is left out; if every one is,
    the half nearest the coordinate-wise median is taken (the caller sees that it has no
    spread)."""
    n, k = x.shape
    h = min(n, (n + k + 1) // 2)
    halves = []
    for _ in range(_MCD_RESTARTS):
        support = _fast_mcd_support(x, int(rng.integers(2**31 - 1)))
        if support is not None:
            halves.append(support)
    if n >= 2 * (k + 1):
        clusters = KMeans(
            n_clusters=_CLUSTER_STARTS, n_init=3, random_state=int(rng.integers(2**31 - 1))
        ).fit_predict(x)
        for cluster in range(_CLUSTER_STARTS):
            members = np.flatnonzero(clusters == cluster)
            if members.size > k:
                halves.append(_concentrate(x, members, h))
    if not halves:
        nearest = np.square(x - np.median(x, axis=0)).sum(axis=1)
        halves.append(np.sort(np.argsort(nearest, kind="stable")[:h]))
    return min(halves, key=lambda half: _log_det(x[half]))


def _log_det(rows: np.ndarray) -> float:
    sign, value = np.linalg.slogdet(np.atleast_2d(np.cov(rows, rowvar=False, bias=True)))
    return float(value) if sign > 0 else -np.inf


def _squared_distances(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distance of every row of ``x`` to the mean and covariance of ``rows``."""
    centred = x - rows.mean(axis=0)
    precision = linalg.pinvh(np.atleast_2d(np.cov(rows, rowvar=False, bias=True)))
    return np.einsum("ij,jk,ik->i", centred, precision, centred)


def _concentrate(x: np.ndarray, start: np.ndarray, h: int, max_steps: int = 100) -> np.ndarray:
    """C-steps from the rows ``start`` until the ``h``-subset stops changing."""
    half = start
    for _ in range(max_steps):
        nearest = np.sort(np.argpartition(_squared_distances(x, x[half]), h - 1)[:h])
        if nearest.shape == half.shape and np.array_equal(nearest, half):
            break
        half = nearest
    return half


def _reweighted(x: np.ndarray, half: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    k = x.shape[1]
    distances = _squared_distances(x, x[half])
    median = float(np.median(distances))
    if median > 0:
        distances = distances * chi2.ppf(0.5, k) / median  # consistent at the normal
    support = np.flatnonzero(distances < chi2.isf(0.025, k))
    if support.size <= k:
        support = half
    rows = x[support]
    # The rows within the quantile spread less than the normal they came from (Croux &
    # Haesbroeck, 1999): scale the covariance back up.
    quantile = chi2.isf(0.025, k)
    scale = 0.975 / chi2.cdf(quantile, k + 2)
    covariance = np.atleast_2d(np.cov(rows, rowvar=False, bias=True)) * scale
    return rows.mean(axis=0), covariance, support
