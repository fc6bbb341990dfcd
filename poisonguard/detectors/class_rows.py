"""The per-class detectors (spectral signatures, SPECTRE, activation clustering), walked over one
class's rows, in memory or in a file.

Each of the three looks at one class at a time and needs a few passes over its rows: the class's
mean and scatter, a fit on a sample of its rows, then a score for each block of rows given the
fit. Their modules (:mod:`~poisonguard.detectors.spectral`, :mod:`~poisonguard.detectors.spectre`,
:mod:`~poisonguard.detectors.activation_clustering`) hold those steps as functions of arrays; the
functions here walk a class's :class:`~poisonguard.rows.Rows` through them, 4,096 rows at a
time as float64, so that a large class is never held whole and the scores are the same wherever
the rows are. :mod:`~poisonguard.detectors.per_class` runs them as one task per class; the
whole-dataset functions below loop over the classes here, with the same result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from poisonguard.detectors import activation_clustering as clustering
from poisonguard.detectors import spectral, spectre
from poisonguard.detectors.activation_clustering import ClassSplit
from poisonguard.detectors.spectral import ClassBasis
from poisonguard.detectors.spectre import RobustClassFit
from poisonguard.rows import Rows, RowsLike, as_rows
from poisonguard.seeding import class_rng, row_keys

__all__ = [
    "activation_clustering",
    "activation_clustering_scores",
    "class_basis",
    "class_keys",
    "robust_class_fit",
    "robust_class_fits",
    "spectral_class_scores",
    "spectral_signature_scores",
    "spectre_scores",
    "split_class",
]


def _blocks(rows: Rows) -> Iterator[np.ndarray]:
    """The class's consecutive blocks of rows, float64."""
    for _, block in rows.blocks(dtype=np.float64):
        yield block


def _picked(rows: Rows, chosen: np.ndarray, function: Callable, width: int) -> np.ndarray:
    """``function`` of the rows at the sorted positions ``chosen``, taken from whole blocks, as
    every row's is: a matrix product's rows can differ in the last bits with the number of rows
    multiplied, and blocks are the same everywhere."""
    out = np.empty((chosen.size, width))
    for positions, block in rows.blocks(dtype=np.float64):
        start = positions.start
        low, high = np.searchsorted(chosen, [start, positions.stop])
        if low < high:
            out[low:high] = function(block)[chosen[low:high] - start]
    return out


def class_keys(rows: RowsLike, rng: np.random.Generator) -> np.ndarray:
    """The content keys of a class's rows (:func:`~poisonguard.seeding.row_keys`), seeded by
    the first draw of the class's generator ``rng`` (pass a fresh one): the per-class fits draw
    their subsets by them, so that a class's scores do not depend on the order of its rows."""
    seed = _key_seed(rng)
    return np.asarray(as_rows(rows).map(lambda block: row_keys(block, seed)))


def _key_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**63))


def _keys(rows: Rows, rng: np.random.Generator, keys: np.ndarray | None) -> np.ndarray:
    """``keys``, or the class's keys from ``rng``'s first draw; that draw is taken either way,
    so that the later draws do not depend on whether the keys were given."""
    seed = _key_seed(rng)
    return np.asarray(rows.map(lambda block: row_keys(block, seed))) if keys is None else keys


def class_basis(rows: RowsLike) -> ClassBasis:
    """A class's mean and the eigen-decomposition of its scatter matrix, in two passes over its
    rows (mean, then scatter), one block in memory at a time."""
    rows = as_rows(rows)
    total = np.zeros(rows.width)
    for block in _blocks(rows):
        total += block.sum(axis=0)
    mean = total / len(rows)
    scatter = np.zeros((rows.width, rows.width))
    for block in _blocks(rows):
        scatter += spectral.scatter(block, mean)
    return ClassBasis.from_sums(len(rows), mean, scatter)


def spectral_class_scores(rows: RowsLike, basis: ClassBasis | None = None) -> np.ndarray:
    """Spectral-signature scores of one class's rows; ``basis`` if already known."""
    rows = as_rows(rows)
    basis = basis or class_basis(rows)
    if not basis.has_spread:
        return np.zeros(len(rows))  # no direction to project on: rounding is not a signature
    projection = np.concatenate([basis.project_block(block, 1) for block in _blocks(rows)])
    return spectral.scores(projection[:, 0])


def robust_class_fit(
    rows: RowsLike,
    rng: np.random.Generator,
    *,
    n_components: int = 10,
    alpha: float = 4.0,
    max_fit_samples: int = 500,
    basis: ClassBasis | None = None,
    notes: list[str] | None = None,
    keys: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """QUE score, squared robust distance and distance ratio of one class's rows ``(n, F)``
    (``basis`` if already known).

    None when the class has no usable direction or its robust core has no spread (see
    :mod:`poisonguard.detectors.spectre`); ``notes``, if given, gets a sentence saying why, or
    that the fit was made on the distinct rows only. The fitted subset is drawn, and fitted,
    by the rows' content ``keys`` (:func:`class_keys`, computed if not given). See
    :class:`~poisonguard.detectors.spectre.RobustClassFit`.
    """
    spectre.check_alpha(alpha)
    rows = as_rows(rows)
    notes = [] if notes is None else notes
    keys = _keys(rows, rng, keys)
    basis = basis or class_basis(rows)
    plan = spectre.whitening_plan(basis, n_components, max_fit_samples, keys, notes)
    if plan is None:
        return None
    k, chosen = plan
    fitted = _picked(rows, chosen, lambda block: basis.project_block(block, k), k)
    whitening = spectre.fit_whitening(basis, fitted, chosen, rng, notes, keys[chosen])
    if whitening is None:
        return None
    # Two passes over the class's blocks, holding per-row numbers only, never the (n, k)
    # whitened rows: squared distances and the whitened covariance, then the QUE scores.
    squared = np.empty(len(rows))
    covariance = np.zeros((whitening.k, whitening.k))
    for positions, block in rows.blocks(dtype=np.float64):
        whitened = whitening.apply(block)
        squared[positions] = spectre.squared_norms(whitened)
        covariance += whitened.T @ whitened
    weights = spectre.que_weights(covariance / max(len(rows), 1), alpha=alpha)
    que = np.empty(len(rows))
    for positions, block in rows.blocks(dtype=np.float64):
        que[positions] = spectre.que(whitening.apply(block), weights)
    return que, squared, spectre.distance_ratio(squared, whitening.support)


def split_class(
    rows: RowsLike,
    rng: np.random.Generator,
    *,
    reduce: str = "pca",
    n_components: int = 10,
    max_fit_samples: int = 10000,
    basis: ClassBasis | None = None,
    keys: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Split one class's rows ``(n, F)`` in two: per-row scores, the positions (within ``rows``)
    of the smaller cluster, and the separation. None when the rows have no usable direction.

    The rows are read block by block (``basis``, if already known, gives the column scales);
    only the fitted subset and per-row numbers are held, except with UMAP, whose transform of
    new points depends on the batch, which takes the class whole. The fitted subset is drawn,
    and fitted, by the rows' content ``keys`` (:func:`class_keys`, computed if not given).
    """
    clustering.check_reduce(reduce)
    rows = as_rows(rows)
    keys = _keys(rows, rng, keys)
    fit, seed = clustering.fit_rows(keys, max_fit_samples, rng)  # in the order of the keys
    stored = np.sort(fit)  # the order the rows are read in
    in_fit_order = np.searchsorted(stored, fit)
    basis = basis or class_basis(rows)
    if not basis.has_spread:
        return None  # identical rows: no split to find (2-means would split rounding)
    plan = clustering.reduction_plan(basis, fit.size, n_components)
    if plan is None:
        return None
    keep, k = plan
    with clustering.quiet():
        picked = rows.take(stored, np.float64)[in_fit_order][:, keep]
        model = clustering.fit_reduction(picked, reduce, k, seed)
        whole = None
        if reduce == "umap":
            if fit.size == len(rows):
                whole = np.empty_like(model.embedding_)
                whole[fit] = model.embedding_
            else:
                whole = model.transform(rows.take(np.arange(len(rows)), np.float64)[:, keep])
            fitted = whole[fit]
        else:
            transform = lambda block: model.transform(block[:, keep])  # noqa: E731
            fitted = _picked(rows, stored, transform, k)[in_fit_order]
    two = clustering.TwoMeans(fitted, seed)
    assigned = np.empty(len(rows), dtype=np.int64)
    towards = np.empty((2, len(rows)))
    if whole is None:
        reduced = ((at, model.transform(b[:, keep])) for at, b in rows.blocks(dtype=np.float64))
    else:
        reduced = Rows(whole).blocks()
    for positions, block in reduced:
        assigned[positions], position = two.assign(block)
        if position is not None:
            towards[:, positions] = position
    return two.split(assigned, towards)


def spectral_signature_scores(
    features: RowsLike, labels: np.ndarray, *, min_class_size: int = 10
) -> np.ndarray:
    """Per-sample spectral-signature score; higher = more suspicious.

    For each class: centre the features at the class mean, take the top right singular vector
    ``v`` of the centred matrix, project each sample on it, and score it by its squared distance
    from the class's *median* projection. (The paper measures from the mean; the median keeps the
    centre inside the clean mode when an all-to-one attack makes the poison a third or more of the
    target class, which pulls the mean into the gap between the two groups.)

    Parameters
    ----------
    features : ndarray, ArrayFile or Rows, shape (N, F)
    labels : ndarray of int, shape (N,)
    min_class_size : int
        Classes with fewer samples are not scored (score 0): a singular direction of a handful of
        samples says nothing.

    Returns
    -------
    ndarray of float64, shape (N,)
        Non-negative; comparable within a class, not across classes.
    """
    features = as_rows(features)
    scores = np.zeros(features.shape[0], dtype=np.float64)
    for code in np.unique(labels):
        members = np.flatnonzero(labels == code)
        if members.size >= max(2, min_class_size):
            scores[members] = spectral_class_scores(features.subset(members))
    return scores


def robust_class_fits(
    features: RowsLike,
    labels: np.ndarray,
    *,
    min_class_size: int = 10,
    n_components: int = 10,
    alpha: float = 4.0,
    max_fit_samples: int = 500,
    seed: int = 0,
) -> RobustClassFit:
    """Robustly whiten each class's top subspace once; QUE scores and robust distances.

    Parameters are those of :func:`spectre_scores`; each class is fitted by
    :func:`robust_class_fit` with its own generator (:func:`~poisonguard.seeding.class_rng`).
    """
    spectre.check_alpha(alpha)
    features = as_rows(features)
    n = features.shape[0]
    que, distance, ratio = np.zeros(n), np.zeros(n), np.zeros(n)
    scored = np.zeros(n, dtype=bool)
    for code in np.unique(labels):
        members = np.flatnonzero(labels == code)
        if members.size < max(2, min_class_size):
            continue
        fitted = robust_class_fit(
            features.subset(members),
            class_rng(seed, code),
            n_components=n_components,
            alpha=alpha,
            max_fit_samples=max_fit_samples,
        )
        if fitted is not None:
            scored[members] = True
            que[members], distance[members], ratio[members] = fitted
    return RobustClassFit(que, distance, ratio, scored)


def spectre_scores(features: RowsLike, labels: np.ndarray, **options) -> np.ndarray:
    """Per-sample QUE score in each class's robustly whitened top subspace; higher = more
    suspicious (see :mod:`poisonguard.detectors.spectre`).

    Parameters
    ----------
    features : ndarray, ArrayFile or Rows, shape (N, F)
    labels : ndarray of int, shape (N,)
    **options
        Those of :func:`robust_class_fits`: ``min_class_size`` (smaller classes score 0),
        ``n_components`` (dimension ``k`` of each class's principal subspace, default 10),
        ``alpha`` (QUE's temperature, ``>= 0``, default 4; 0 gives the robust Mahalanobis
        distance), ``max_fit_samples`` (the robust covariance is fitted on at most this many
        samples of a class, a seeded random subset, default 500; every sample is scored) and
        ``seed``.

    Returns
    -------
    ndarray of float64, shape (N,)
        Non-negative; comparable within a class, not across classes.
    """
    return robust_class_fits(features, labels, **options).que


def activation_clustering(
    features: RowsLike,
    labels: np.ndarray,
    *,
    reduce: str = "pca",
    n_components: int = 10,
    min_class_size: int = 10,
    max_fit_samples: int = 10000,
    seed: int = 0,
) -> tuple[np.ndarray, list[ClassSplit]]:
    """Per-sample scores and per-class splits (see
    :mod:`poisonguard.detectors.activation_clustering`).

    Parameters
    ----------
    features : ndarray, ArrayFile or Rows, shape (N, F)
    labels : ndarray of int, shape (N,)
    reduce : {"pca", "ica", "umap"}
    n_components : int
        Dimensions kept by the reduction.
    min_class_size : int
        Smaller classes are not scored (score 0, no split).
    max_fit_samples : int
        The reduction and k-means are fitted on at most this many samples of a class (a seeded
        random subset); every sample is assigned and scored.
    seed : int

    Returns
    -------
    scores : ndarray of float64, shape (N,)
        Higher = closer to the class's smaller cluster.
    splits : list of ClassSplit
        One per scored class.
    """
    clustering.check_reduce(reduce)
    features = as_rows(features)
    scores = np.zeros(features.shape[0], dtype=np.float64)
    splits = []
    for code in np.unique(labels):
        members = np.flatnonzero(labels == code)
        if members.size < max(4, min_class_size):
            continue
        fitted = split_class(
            features.subset(members),
            class_rng(seed, code),
            reduce=reduce,
            n_components=n_components,
            max_fit_samples=max_fit_samples,
        )
        if fitted is None:
            continue
        scores[members], minority, separation = fitted
        splits.append(ClassSplit(int(code), int(members.size), members[minority], separation))
    return scores, splits


def activation_clustering_scores(features: RowsLike, labels: np.ndarray, **options) -> np.ndarray:
    """Only the per-sample scores of :func:`activation_clustering`."""
    return activation_clustering(features, labels, **options)[0]
