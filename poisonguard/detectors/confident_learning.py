"""Confident learning (Northcutt, Jiang & Chuang, "Confident Learning: Estimating Uncertainty in
Dataset Labels", JAIR 2021).

A sample whose given label disagrees with what a model that never saw it predicts, *confidently*
by that class's own standard, is likely mislabelled. Three steps:

1. :func:`~poisonguard.detectors.streaming.out_of_sample_probabilities`: cross-validated class
   probabilities. The paper trains the model K times; here a cheap linear head is refitted per
   fold on the penultimate features of the network PoisonGuard already trained, which keeps the
   audit to seconds. The network itself saw every sample, so the features of a flipped sample
   may already lean towards its given label; the head's out-of-sample view removes only the
   head's own memorisation. Its steps are here, as functions of arrays (:func:`stratified_folds`,
   :class:`FoldSums` summed a block of rows at a time, :func:`lda_head` and
   :meth:`Head.calibrated`, :func:`predict` for a block); the walk over the rows, in memory or
   in a file, is in :mod:`poisonguard.detectors.streaming`.
2. :func:`confident_joint_issues`: the off-diagonal of the confident joint. Per class ``j`` the
   threshold ``t_j`` is the mean predicted ``p_j`` over the samples labelled ``j``; a sample is
   counted in class ``j*`` = the most probable class among those with ``p_j >= t_j``, and is an
   issue when ``j*`` differs from its given label (the paper's basic rule, before pruning by
   estimated noise rates).
3. :func:`confident_learning_scores`: a continuous ranking, the self-confidence ``1 - p_y``.

Limits: the head is linear, so classes that the features do not separate linearly produce
confident mistakes that read as label issues; a class with a single sample is never in the
training part of its own fold and gets probability 0 for its own label (suspicious by
construction: score such classes with care); all-to-one backdoors whose trigger the network
learned make the poisoned samples' features predict the target class, so confident learning can
see them as correctly labelled: it targets label noise and dirty-label attacks whose inputs still
look like their source class. On clean labels it flags the samples the head gets confidently
wrong (3 % of Fashion-MNIST with CNN features).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy import optimize, sparse, stats

from poisonguard.detectors.validation import check_finite, check_labels
from poisonguard.seeding import key_order, sample_by_key

__all__ = [
    "FlippedPair",
    "FloorTest",
    "FoldSums",
    "Head",
    "calibration_rows",
    "centred",
    "confident_classes",
    "confident_joint_issues",
    "confident_learning_scores",
    "disagreement_above_floor",
    "estimated_noise_rate",
    "lda_head",
    "likely_mislabelled",
    "one_sided_pairs",
    "one_hot",
    "predict",
    "stratified_folds",
]

# Absolute slack on ``p_j >= t_j``: a mean of equal probabilities can round one ulp above them.
_THRESHOLD_SLACK = 1e-9
# Calibration of each head (see ``_fit_sharpness``): bounds on its inverse temperature and on the
# label-noise rate fitted with it, and the training rows it is fitted on.
_BETA_BOUNDS = (1e-3, 1e3)
_MAX_NOISE_RATE = 0.5
_CALIBRATION_SAMPLES = 20_000


def confident_joint_issues(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Samples on the off-diagonal of the confident joint (Northcutt et al., 2021).

    Per class ``j``, ``t_j`` is the mean of ``p_j`` over the samples labelled ``j`` (its
    self-confidence on average). A sample is confidently in class ``j*``, the most probable class
    among those with ``p_j >= t_j``; it is an issue when ``j*`` exists and differs from its given
    label (a tie with the given label counts for the given label). A class nobody is labelled
    with has no threshold and is never confidently chosen.

    Parameters
    ----------
    probabilities : ndarray, shape (N, K)
        Out-of-sample class probabilities (see
        :func:`~poisonguard.detectors.streaming.out_of_sample_probabilities`); in-sample
        probabilities of a model that memorised its labels flag almost nothing.
    labels : ndarray of int, shape (N,)

    Returns
    -------
    ndarray of bool, shape (N,)
        True = likely mislabelled.
    """
    probabilities, labels = _check_probabilities_labels(probabilities, labels)
    n_samples = labels.shape[0]
    if n_samples == 0:
        return np.zeros(0, dtype=bool)
    rows = np.arange(n_samples)
    above = probabilities >= _class_thresholds(probabilities, labels)[None, :] - _THRESHOLD_SLACK
    best = np.where(above, probabilities, -1.0).max(axis=1)
    given_wins = above[rows, labels] & (probabilities[rows, labels] >= best)
    return above.any(axis=1) & ~given_wins


def confident_classes(probabilities: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Per row the class it is confidently in: the most probable class ``j`` among those with
    ``p_j >= t_j`` (``thresholds``, the mean ``p_j`` over the samples labelled ``j``), ``-1``
    when no class reaches its threshold. Rows are independent: applied to blocks of rows."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    above = probabilities >= np.asarray(thresholds)[None, :] - _THRESHOLD_SLACK
    best = np.where(above, probabilities, -1.0).argmax(axis=1)
    return np.where(above.any(axis=1), best, -1)


def estimated_noise_rate(labels: np.ndarray, confident: np.ndarray, n_classes: int) -> float:
    """The share of labels that the calibrated confident joint puts off its diagonal.

    The confident joint counts the samples given label ``i`` that are confidently in class ``j``
    (:func:`confident_classes`); each of its rows is rescaled to the number of samples given
    ``i`` (the paper's calibration, Northcutt et al. 2021, eq. 2), so that samples confidently
    in no class count like the others of their label. Natural confusion between classes counts
    too: on clean Fashion-MNIST labels about 2 %.
    """
    labels = np.asarray(labels, dtype=np.int64)
    confident = np.asarray(confident, dtype=np.int64)
    if labels.size == 0:
        return 0.0
    joint = np.zeros((n_classes, n_classes))
    counted = confident >= 0
    np.add.at(joint, (labels[counted], confident[counted]), 1.0)
    given = np.bincount(labels, minlength=n_classes).astype(np.float64)
    row_sums = joint.sum(axis=1)
    scale = np.divide(given, row_sums, out=np.zeros(n_classes), where=row_sums > 0)
    calibrated = joint * scale[:, None]
    total = calibrated.sum()
    return float(1.0 - np.trace(calibrated) / total) if total > 0 else 0.0


@dataclass(frozen=True)
class FloorTest:
    """The audited samples' confident disagreement with their labels against a trusted clean
    sample's, read by the same heads: ``disagreeing`` of ``samples`` against
    ``trusted_disagreeing`` of ``trusted_samples``; ``z`` the two-proportion statistic (pooled),
    ``p_value`` one-sided (the audited share larger)."""

    disagreeing: int
    samples: int
    trusted_disagreeing: int
    trusted_samples: int
    z: float
    p_value: float


def disagreement_above_floor(disagree: np.ndarray, trusted_disagree: np.ndarray) -> FloorTest:
    """Whether the audited samples disagree with their labels (``disagree``, bool per sample)
    more often than a trusted clean sample does (``trusted_disagree``): a one-sided
    two-proportion z-test with the pooled share.

    A corpus's own disagreement (short reviews whose star label their words do not carry, a
    sarcastic tweet) is in the trusted sample too; injected flips are not. Measured in the
    scan (heads on the words, 500 trusted texts of the same source, 182-185 for the BBC
    pairs; ``benchmarks/text_flip_trusted.py``): clean labels z -0.81 to 1.23 on eight
    corpora; 10 % random flips 4.8-6.6 on SMS spam and two tweet corpora, 2.7-3.8 on the BBC
    pairs, 1.7-2.7 on reviews and Rotten Tomatoes, whose own disagreement is large and grows
    in the trusted texts too (heads trained on flipped labels are less sure of every text).
    """
    disagree = np.asarray(disagree, dtype=bool)
    trusted_disagree = np.asarray(trusted_disagree, dtype=bool)
    n1, n0 = disagree.size, trusted_disagree.size
    k1, k0 = int(disagree.sum()), int(trusted_disagree.sum())
    pooled = (k1 + k0) / max(n1 + n0, 1)
    spread = np.sqrt(pooled * (1.0 - pooled) * (1.0 / max(n1, 1) + 1.0 / max(n0, 1)))
    z = 0.0 if spread == 0 or not n1 or not n0 else (k1 / n1 - k0 / n0) / spread
    return FloorTest(k1, n1, k0, n0, float(z), float(stats.norm.sf(z)))


def likely_mislabelled(
    probabilities: np.ndarray, labels: np.ndarray, noise_rate: float, n_classes: int
) -> np.ndarray:
    """Samples more likely mislabelled than not, under uniform label noise at ``noise_rate``.

    The out-of-sample probabilities estimate the posterior of the true label ``p``. If each
    label was replaced by one of the ``K - 1`` others with probability ``noise_rate`` (spread
    evenly), the given label ``y`` is wrong with posterior probability
    ``(1 - p_y) r / (K - 1) / ((1 - p_y) r / (K - 1) + p_y (1 - r))``; a sample is flagged when
    that exceeds 1/2 and another class is the most probable. The bar on ``p_y`` follows the
    noise: with 10 classes at 10 % noise ``p_y < 0.012``, with 2 classes ``p_y < 0.1``.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    rows = np.arange(labels.shape[0])
    given = probabilities[rows, labels]
    rate = float(np.clip(noise_rate, 0.0, 1.0))
    wrong = (1.0 - given) * rate / max(n_classes - 1, 1)
    return (wrong > given * (1.0 - rate)) & (probabilities.argmax(axis=1) != labels)


@dataclass(frozen=True)
class FlippedPair:
    """One ordered class pair that holds far more confident disagreements one way than the
    other: ``count`` samples given ``given`` are confidently in ``predicted``, against
    ``reverse`` the other way; ``z`` is the imbalance in binomial standard deviations divided by
    the square root of the dataset's dispersion, ``p_value`` its two-sided p-value before the
    correction for the number of pairs."""

    given: int
    predicted: int
    count: int
    reverse: int
    z: float
    p_value: float


PAIR_MIN_COUNT = 10
"""A pair enters the dispersion estimate with at least this many confident disagreements (both
ways together): below it the normal approximation to the binomial says little."""
PAIR_MIN_PAIRS = 5
"""The dispersion is a median over pairs; with fewer than this many it is not estimated and the
test does not run (a two-class task has one pair)."""


def one_sided_pairs(
    labels: np.ndarray, confident: np.ndarray, classes: np.ndarray, alpha: float
) -> list[FlippedPair] | None:
    """Class pairs whose confident disagreements run one way: a targeted flip.

    Natural confusion between two classes runs both ways, roughly as often (pullovers read as
    coats and coats as pullovers); relabelling a share of one class as another adds to one
    direction only. For each unordered pair of ``classes`` with ``n`` samples given one label
    and confidently in the other (:func:`confident_classes`; either way), the count one way is
    compared with ``n / 2`` in binomial standard deviations. Natural confusion is not exactly
    symmetric (on clean Fashion-MNIST 47 trousers read as dresses against 1 dress as trousers),
    so the deviations are overdispersed; the dispersion ``phi`` is estimated from the dataset's
    own pairs, robustly (the median squared deviation over the pairs with at least
    ``PAIR_MIN_COUNT`` disagreements, over its chi-square(1) expectation, at least 1), and each
    deviation is divided by ``sqrt(phi)`` (a quasi-binomial test). A pair is returned when its
    two-sided p-value is below ``alpha`` divided by the number of pairs (Bonferroni), oriented
    from the label given more often to the class it is confidently in.

    Measured on 60,000 Fashion-MNIST images (docs/benchmarks.md): 30 % of the pullovers
    relabelled as coats, 1,150 coats confidently pullovers against 117 the other way, ``z``
    8.3 (p x 45 = 5e-15); on the clean labels and fourteen other poisoned sets the smallest
    corrected p-value was 0.016 (5 % random flips).

    Returns ``None`` when fewer than ``PAIR_MIN_PAIRS`` pairs can estimate the dispersion.
    """
    labels = np.asarray(labels, dtype=np.int64)
    confident = np.asarray(confident, dtype=np.int64)
    classes = np.asarray(classes, dtype=np.int64)
    size = int(max(labels.max(initial=-1), confident.max(initial=-1), classes.max(initial=-1))) + 1
    joint = np.zeros((size, size), dtype=np.int64)
    counted = confident >= 0
    np.add.at(joint, (labels[counted], confident[counted]), 1)
    first, second = np.triu_indices(classes.size, 1)
    first, second = classes[first], classes[second]
    one_way, other_way = joint[first, second], joint[second, first]
    total = one_way + other_way
    deviation = (one_way - total / 2.0) / np.sqrt(np.maximum(total, 1) / 4.0)
    estimating = total >= PAIR_MIN_COUNT
    if int(estimating.sum()) < PAIR_MIN_PAIRS:
        return None
    median_of_chi2_1 = 0.454936  # chi-square(1) median: the median of z^2 under no dispersion
    phi = max(1.0, float(np.median(deviation[estimating] ** 2)) / median_of_chi2_1)
    z = deviation / np.sqrt(phi)
    p_values = 2.0 * stats.norm.sf(np.abs(z))
    found = []
    for k in np.flatnonzero(p_values < alpha / max(first.size, 1)):
        given, predicted = (first[k], second[k]) if z[k] > 0 else (second[k], first[k])
        found.append(
            FlippedPair(
                given=int(given),
                predicted=int(predicted),
                count=int(joint[given, predicted]),
                reverse=int(joint[predicted, given]),
                z=float(abs(z[k])),
                p_value=float(p_values[k]),
            )
        )
    return found


def confident_learning_scores(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Self-confidence ranking ``1 - p_y``; higher = more suspicious.

    How little probability the held-out model gives the given label: the ranking of the paper's
    prune-by-class method and cleanlab's default ``get_label_quality_scores`` method (its
    prune-by-noise-rate method ranks by the normalized margin instead). Self-confidence beat the
    alternatives on Fashion-MNIST CNN features with 10 % uniformly flipped labels (AUROC
    of flipped vs clean, from :func:`~poisonguard.detectors.streaming.out_of_sample_probabilities`):
    ``1 - p_y`` 0.994, the normalized margin ``max_{j != y} p_j - p_y`` 0.990, threshold-adjusted
    margins 0.988-0.990, ``t_y - p_y`` 0.985. Use :func:`confident_joint_issues` for the
    per-class-threshold decision; this score orders samples within and across classes.

    A sample's score depends on its own row only, so the registry applies this function to
    blocks of rows of probabilities kept in a file.

    Parameters
    ----------
    probabilities : ndarray, shape (N, K)
    labels : ndarray of int, shape (N,)

    Returns
    -------
    ndarray of float64, shape (N,)
        In ``[0, 1]`` for probabilities that sum to 1; 0 everywhere with a single class. Not
        calibrated: the ordering is what carries information.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = check_labels(labels, probabilities.shape[0], _width(probabilities))
    check_finite(probabilities, "probabilities")
    return 1.0 - probabilities[np.arange(labels.shape[0]), labels]


def _width(probabilities: np.ndarray) -> int:
    shape = probabilities.shape
    if len(shape) != 2 or (shape[0] and shape[1] == 0):
        raise ValueError(f"probabilities must have shape (N, K) with K >= 1, got {shape}")
    return int(shape[1])


@dataclass(frozen=True)
class _Stats:
    """Sufficient statistics of a set of rows: count, sum, Gram matrix, per-class counts/sums."""

    count: int
    total: np.ndarray
    gram: np.ndarray
    class_counts: np.ndarray
    class_sums: np.ndarray

    @staticmethod
    def sum(parts: list[_Stats]) -> _Stats:
        return _Stats(*(sum(getattr(p, f.name) for p in parts) for f in fields(_Stats)))

    def minus(self, other: _Stats) -> _Stats:
        return _Stats(*(getattr(self, f.name) - getattr(other, f.name) for f in fields(_Stats)))


def _sufficient_statistics(rows: np.ndarray, labels: np.ndarray, n_classes: int) -> _Stats:
    one_hot = sparse.csr_matrix(
        (np.ones(labels.shape[0]), (labels, np.arange(labels.shape[0]))),
        shape=(n_classes, labels.shape[0]),
    )
    return _Stats(
        rows.shape[0],
        rows.sum(axis=0),
        rows.T @ rows,
        np.bincount(labels, minlength=n_classes).astype(np.float64),
        np.asarray(one_hot @ rows),
    )


class FoldSums:
    """The sufficient statistics (count, sum, Gram matrix, per-class counts and sums) of the
    rows of each fold, summed a block of rows at a time (:meth:`add`, as scikit-learn's
    ``partial_fit``); what the linear heads of the other folds are fitted on."""

    def __init__(self, fold_count: int, n_classes: int) -> None:
        self.n_classes = n_classes
        self.parts: list[_Stats | None] = [None] * fold_count

    def add(self, centred: np.ndarray, folds: np.ndarray, labels: np.ndarray) -> None:
        """Add a block of globally centred float64 rows (:func:`centred`), their folds and
        labels."""
        for f in range(len(self.parts)):
            inside = folds == f
            part = _sufficient_statistics(centred[inside], labels[inside], self.n_classes)
            self.parts[f] = part if self.parts[f] is None else _Stats.sum([self.parts[f], part])

    @property
    def total(self) -> _Stats:
        return _Stats.sum(self.parts)


@dataclass(frozen=True)
class Head:
    """A fold's linear head: LDA weights and bias acting on globally centred rows, the classes
    present in its training folds, and its inverse temperature ``beta``. Without weights (one
    class present) it gives that class probability 1."""

    weights: np.ndarray | None
    bias: np.ndarray | None
    present: np.ndarray
    beta: float = 1.0

    def calibrated(self, centred_rows: np.ndarray, labels: np.ndarray) -> Head:
        """This head with ``beta`` fitted on some of its training rows (centred, float64) and
        their labels (see ``_fit_sharpness``)."""
        logits = centred_rows @ self.weights + self.bias
        beta = _fit_sharpness(logits, np.searchsorted(self.present, labels))
        return Head(self.weights, self.bias, self.present, beta)


def lda_head(stats: _Stats) -> Head:
    """The LDA head fitted on sufficient statistics (``FoldSums.total.minus(held_out)``);
    uncalibrated (``beta = 1``)."""
    weights, bias, present = _fit_lda(stats)
    if present.size == 1:
        return Head(None, None, present)
    return Head(weights, bias, present)


def calibration_rows(folds: np.ndarray, fold: int, keys: np.ndarray) -> np.ndarray:
    """The sorted training rows of ``fold``'s head that its calibration is fitted on: all rows
    of the other folds, or the 20,000 of them with the smallest keys (a seeded sample drawn by
    content, :func:`~poisonguard.seeding.sample_by_key`)."""
    train = np.flatnonzero(folds != fold)
    return train[sample_by_key(keys[train], _CALIBRATION_SAMPLES)]


def centred(block: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """A block of rows minus the global mean, in float64 (so that the Gram matrices lose no
    precision to a large mean)."""
    out = block.astype(np.float64)
    out -= mean
    return out


def predict(
    heads: list[Head], centred_block: np.ndarray, folds: np.ndarray, n_classes: int
) -> np.ndarray:
    """Out-of-sample probabilities ``(b, K)`` of a block of centred rows: each row from the
    head of its own fold, ``softmax(beta * logits)``; 0 for the classes the head never saw."""
    out = np.zeros((centred_block.shape[0], n_classes))
    for f, head in enumerate(heads):
        inside = np.flatnonzero(folds == f)
        if head.weights is None:
            out[inside, head.present[0]] = 1.0
        else:
            logits = head.beta * (centred_block[inside] @ head.weights + head.bias)
            out[np.ix_(inside, head.present)] = _softmax(logits)
    return out


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Probability 1 for each given label: the out-of-sample probabilities when the data holds
    a single class (or a single sample)."""
    block = np.zeros((labels.size, n_classes))
    block[np.arange(labels.size), labels] = 1.0
    return block


def _fit_lda(stats: _Stats) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LDA on standardized features, from sufficient statistics; returns weights and bias that
    act on the (globally centred) raw features, and the classes present."""
    n = stats.count
    mean = stats.total / n
    variance = np.maximum(np.diag(stats.gram) / n - mean**2, 0.0)
    scale = np.sqrt(variance)
    scale[scale <= 1e-8 * max(1.0, float(scale.max(initial=0.0)))] = 1.0
    present = np.flatnonzero(stats.class_counts > 0)
    counts = stats.class_counts[present]
    class_means = stats.class_sums[present] / counts[:, None]
    # Pooled within-class scatter: sum x x^T minus sum_c n_c m_c m_c^T.
    within = stats.gram - (class_means.T * counts) @ class_means
    covariance = within / n / np.outer(scale, scale)
    covariance = (covariance + covariance.T) / 2
    precision = _oas_precision(covariance, n)
    standardized_means = (class_means - mean) / scale
    weights = precision @ standardized_means.T
    bias = -0.5 * np.einsum("kf,fk->k", standardized_means, weights) + np.log(counts / n)
    raw_weights = weights / scale[:, None]
    return raw_weights, bias - mean @ raw_weights, present


def _oas_precision(covariance: np.ndarray, n_samples: int) -> np.ndarray:
    """Inverse of the OAS-shrunk covariance (the formula of ``sklearn.covariance.oas``)."""
    n_features = covariance.shape[0]
    mu = np.trace(covariance) / n_features
    if mu <= 1e-12:  # every sample sits on its class mean: any isotropic metric will do
        return np.eye(n_features)
    alpha = np.mean(covariance**2)
    denominator = (n_samples + 1) * (alpha - mu**2 / n_features)
    shrinkage = 1.0 if denominator <= 0 else min((alpha + mu**2) / denominator, 1.0)
    shrunk = (1.0 - shrinkage) * covariance
    shrunk.flat[:: n_features + 1] += shrinkage * mu
    eigenvalues, vectors = np.linalg.eigh(shrunk)
    eigenvalues = np.maximum(eigenvalues, 1e-10 * eigenvalues[-1])
    return (vectors / eigenvalues) @ vectors.T


def _fit_sharpness(logits: np.ndarray, labels: np.ndarray) -> float:
    """Inverse temperature ``beta`` of the clean-label posterior ``softmax(beta * logits)``,
    fitted jointly with a symmetric label-noise rate ``rho``.

    The given labels are modelled as the true ones passed through a symmetric noise channel
    (Natarajan et al., NeurIPS 2013; the forward correction of Patrini et al., CVPR 2017): the
    probability of the given label ``y`` is ``(1 - rho) p_y + rho (1 - p_y) / (K - 1)``.
    ``(log beta, rho)`` minimise the mean log-loss of that over the rows given (L-BFGS-B,
    analytic gradient). Only ``beta`` is kept: the noise rate absorbs
    the flipped labels, so ``beta`` sharpens the posterior for the samples whose labels are
    right instead of flattening it for all of them.
    """
    n_classes = logits.shape[1]
    logits = logits - logits.max(axis=1, keepdims=True)
    given = logits[np.arange(labels.shape[0]), labels]

    def loss_and_gradient(theta: np.ndarray) -> tuple[float, np.ndarray]:
        beta, rho = np.exp(theta[0]), theta[1]
        # Row maxima of ``logits`` are 0, so those of ``beta * logits`` are too (beta > 0).
        weights = np.exp(beta * logits)
        normaliser = weights.sum(axis=1)
        p_given = np.exp(beta * given) / normaliser
        expected = (weights * logits).sum(axis=1) / normaliser
        slope = 1.0 - rho * n_classes / (n_classes - 1)
        observed = np.maximum(slope * p_given + rho / (n_classes - 1), 1e-12)
        d_beta = -np.mean(slope * p_given * (given - expected) / observed) * beta
        d_rho = -np.mean((1.0 - n_classes * p_given) / ((n_classes - 1) * observed))
        return float(-np.mean(np.log(observed))), np.array([d_beta, d_rho])

    rho_max = min(_MAX_NOISE_RATE, 0.99 * (n_classes - 1) / n_classes)
    result = optimize.minimize(
        loss_and_gradient,
        np.array([0.0, min(0.05, rho_max)]),
        jac=True,
        method="L-BFGS-B",
        bounds=[tuple(np.log(_BETA_BOUNDS)), (0.0, rho_max)],
    )
    return float(np.exp(result.x[0]))


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    weights = np.exp(shifted)
    return weights / weights.sum(axis=1, keepdims=True)


def stratified_folds(labels: np.ndarray, n_folds: int, keys: np.ndarray) -> np.ndarray:
    """Fold of each sample: each class's samples in the order of their keys (a seeded shuffle
    by content, :func:`~poisonguard.seeding.row_keys`, so that a sample's fold does not depend on
    where it sits) dealt round-robin, continuing the deal across classes so that fold sizes
    differ by at most one."""
    order = np.concatenate(
        [members[key_order(keys[members])] for members in _class_members(labels)]
    )
    folds = np.empty(labels.shape[0], dtype=np.int64)
    folds[order] = np.arange(labels.shape[0]) % n_folds
    return folds


def _class_members(labels: np.ndarray) -> list[np.ndarray]:
    return [np.flatnonzero(labels == code) for code in np.unique(labels)]


def _class_thresholds(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    n_classes = probabilities.shape[1]
    counts = np.bincount(labels, minlength=n_classes)
    sums = np.zeros(n_classes, dtype=np.float64)
    np.add.at(sums, labels, probabilities[np.arange(labels.shape[0]), labels])
    thresholds = np.full(n_classes, np.inf)
    thresholds[counts > 0] = sums[counts > 0] / counts[counts > 0]
    return thresholds


def _check_probabilities_labels(
    probabilities: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    n_classes = _width(probabilities)
    check_finite(probabilities, "probabilities")
    labels = check_labels(labels, probabilities.shape[0], n_classes)
    return probabilities, labels
