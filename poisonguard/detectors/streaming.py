"""The detectors that pass over all samples, walked over rows in memory or in a file.

Influence functions, confident learning's out-of-sample probabilities and the k-NN label
disagreement each need a few passes over every sample: a sum over blocks (a Hessian, sufficient
statistics, a Gram matrix), a fit on the sums or on a sample, then a score for each block given
the fit. Their modules (:mod:`~poisonguard.detectors.influence`,
:mod:`~poisonguard.detectors.confident_learning`, :mod:`~poisonguard.detectors.knn_labels`)
hold those steps as functions of arrays; the functions here walk the rows through them, from
an array or an :class:`~poisonguard.ondisk.ArrayFile` alike (:class:`~poisonguard.rows.Rows`),
in the same blocks, so the scores are the same wherever the rows are. What a walk computes for
every sample goes to a :class:`~poisonguard.rows.RowStore` (memory, or the staging folder of an
out-of-core scan).

Each function takes arrays, files or :class:`~poisonguard.rows.Rows`, checks shapes and labels,
and checks the values (finite, softmax probabilities) in one pass unless ``check_finite=False``
says the caller did (a scan checks the embedding once, as it enters the detectors).
"""

from __future__ import annotations

import numpy as np

from poisonguard.detectors import influence
from poisonguard.detectors.validation import check_finite, check_probabilities
from poisonguard.ondisk import ArrayFile
from poisonguard.rows import Rows, as_rows

__all__ = ["influence_self_scores", "trusted_influence_scores"]

RowsLike = np.ndarray | ArrayFile | Rows
"""What the functions here accept for per-sample arrays."""


def influence_self_scores(
    features: RowsLike,
    probabilities: RowsLike,
    labels: np.ndarray,
    *,
    damping: float = 0.01,
    check_finite: bool = True,
) -> np.ndarray:
    """Exact last-layer influence-function self-influence; higher = more suspicious.

    ``score_i = g_i^T (H + lambda I)^-1 g_i`` where ``g_i = (p_i - e_{y_i}) (x) [h_i, 1]`` is the
    gradient of sample ``i``'s cross-entropy loss with respect to the last layer's weights and bias,
    and ``H = (1/N) sum_i (diag(p_i) - p_i p_i^T) (x) [h_i, 1][h_i, 1]^T`` the exact Hessian of the
    mean training loss over those ``K (F + 1)`` parameters. This is Koh & Liang's
    ``-I_up,loss(z_i, z_i)``: how much the sample's own loss drops when it is up-weighted, i.e. how
    much the model had to bend to fit it (see :mod:`poisonguard.detectors.influence`).

    Damping: ``lambda = damping * trace(H) / (K (F + 1))``, i.e. ``damping`` times the mean
    diagonal entry of ``H``, so ``damping`` is relative to the Hessian's own scale. (If ``H``
    is zero -- one class, or every probability exactly one-hot -- the scale falls back to
    ``1e-12`` times the mean diagonal of ``(1/N) sum_i [h_i, 1][h_i, 1]^T``.) It stands in for
    the regulariser and for the network not being at a convex minimum, and makes the solve
    well-posed: ``H`` is singular along ``1_K (x) v`` for every ``v`` (probabilities sum to 1).
    Larger damping moves the score towards ``||g_i||^2 / lambda``, i.e. towards TracIn's squared
    gradient norm.

    Parameters
    ----------
    features : ndarray, ArrayFile or Rows, shape (N, F)
        Penultimate features ``h_i`` (the input of the last linear layer); finite.
    probabilities : ndarray, ArrayFile or Rows, shape (N, K)
        Softmax outputs of the trained model; rows must sum to 1 (within 1e-2; they are
        renormalised in float64).
    labels : ndarray of int, shape (N,)
        Given labels, in ``[0, K)``.
    damping : float
        Relative damping, > 0.
    check_finite : bool
        Check the features and probabilities values (a pass over each); False when the caller
        has.

    Returns
    -------
    ndarray of float64, shape (N,)
        Non-negative. Comparable across classes (one Hessian for the whole model).

    Raises
    ------
    ValueError
        On mismatched shapes, labels outside ``[0, K)``, non-finite values, probabilities that
        are negative or whose rows do not sum to 1, or ``damping <= 0``.

    Notes
    -----
    The computation runs in the ``(K - 1)(F + 1)``-dimensional complement of the null space
    ``1_K (x) R^{F+1}`` of ``H``: every gradient lies in that complement and ``H`` maps it to
    itself, so the result equals the one in all ``K (F + 1)`` parameters, at a lower cost. ``H`` is
    factorised once by Cholesky; the quadratic forms are products with the inverse factor over
    blocks of samples (see ``CHUNK_ROWS`` and ``BLOCK_VALUES`` there). For ``N = 60000``,
    ``F = 128``, ``K = 10``: about 3.6 s of CPU time on one core, under 100 MB of working memory.
    """
    features, probabilities, labels = _influence_inputs(
        features, probabilities, labels, check_finite
    )
    influence.check_damping(damping)
    scores = np.zeros(features.shape[0], dtype=np.float64)
    basis = influence.residual_basis(probabilities.shape[1])
    if scores.size == 0 or basis.shape[1] == 0:
        return scores
    inverse = influence.inverse_factor(_hessian_factor(features, probabilities, basis, damping))
    width = basis.shape[1] * (features.shape[1] + 1)
    for rows, block, probs in _paired_blocks(features, probabilities, influence.block_rows(width)):
        augmented, residual = influence.gradient_parts(block, probs, labels[rows], basis)
        scores[rows] = influence.self_influence(augmented, residual, inverse)
    return scores


def trusted_influence_scores(
    features: RowsLike,
    probabilities: RowsLike,
    labels: np.ndarray,
    trusted_features: RowsLike,
    trusted_probabilities: RowsLike,
    trusted_labels: np.ndarray,
    *,
    damping: float = 0.01,
    check_finite: bool = True,
) -> np.ndarray:
    """Influence of up-weighting each training sample on the loss of a trusted clean set;
    higher = more suspicious (more harmful).

    Koh & Liang's ``I_up,loss`` summed over the trusted set:
    ``score_i = -g_T^T (H + lambda I)^-1 g_i`` with ``g_T = sum_{j in trusted} grad l_j`` the
    gradient of the trusted set's total loss, ``g_i`` sample ``i``'s gradient and ``H`` the exact
    last-layer Hessian of the mean *training* loss, all as in :func:`influence_self_scores`
    (same ``lambda``).

    Sign: the score is the first-order change of the trusted set's total loss per unit of extra
    weight ``epsilon`` given to sample ``i`` in the objective ``(1/N) sum_j l_j + epsilon l_i``.
    **Positive: up-weighting the sample raises the trusted loss (harmful, suspicious); negative:
    it helps.** Removing the sample is ``epsilon = -1/N``, so the trusted loss would change by
    about ``-score_i / N``.

    Parameters
    ----------
    features, probabilities, labels
        The training samples, as in :func:`influence_self_scores`.
    trusted_features : ndarray, shape (M, F)
        Features of the trusted samples, from the same model.
    trusted_probabilities : ndarray, shape (M, K)
    trusted_labels : ndarray of int, shape (M,)
    damping : float
        Relative damping, > 0 (see :func:`influence_self_scores`).
    check_finite : bool
        As in :func:`influence_self_scores`, for both sets.

    Returns
    -------
    ndarray of float64, shape (N,)
        Signed; comparable across classes. All zero when the trusted set is empty.

    Raises
    ------
    ValueError
        As :func:`influence_self_scores`, and when the trusted arrays' ``F`` or ``K`` differ from
        the training ones.
    """
    features, probabilities, labels = _influence_inputs(
        features, probabilities, labels, check_finite
    )
    trusted_features, trusted_probabilities, trusted_labels = _influence_inputs(
        trusted_features, trusted_probabilities, trusted_labels, check_finite, prefix="trusted_"
    )
    if trusted_features.shape[1] != features.shape[1]:
        raise ValueError(
            f"trusted_features has F = {trusted_features.shape[1]} columns but features has "
            f"F = {features.shape[1]}"
        )
    if trusted_probabilities.shape[1] != probabilities.shape[1]:
        raise ValueError(
            f"trusted_probabilities has K = {trusted_probabilities.shape[1]} columns but "
            f"probabilities has K = {probabilities.shape[1]}"
        )
    influence.check_damping(damping)
    scores = np.zeros(features.shape[0], dtype=np.float64)
    basis = influence.residual_basis(probabilities.shape[1])
    if scores.size == 0 or basis.shape[1] == 0 or trusted_features.shape[0] == 0:
        return scores
    factor = _hessian_factor(features, probabilities, basis, damping)
    step = influence.block_rows(features.shape[1] + 1)
    gradient = np.zeros((basis.shape[1], features.shape[1] + 1), dtype=np.float64)
    for rows, block, probs in _paired_blocks(trusted_features, trusted_probabilities, step):
        augmented, residual = influence.gradient_parts(block, probs, trusted_labels[rows], basis)
        gradient += residual.T @ augmented
    direction = influence.trusted_direction(factor, gradient)
    for rows, block, probs in _paired_blocks(features, probabilities, step):
        augmented, residual = influence.gradient_parts(block, probs, labels[rows], basis)
        scores[rows] = influence.trusted_influence(augmented, residual, direction)
    return scores


def _influence_inputs(
    features: RowsLike,
    probabilities: RowsLike,
    labels: np.ndarray,
    values: bool,
    *,
    prefix: str = "",
) -> tuple[Rows, Rows, np.ndarray]:
    features, probabilities = as_rows(features), as_rows(probabilities)
    labels = influence.check_shapes(features.shape, probabilities.shape, labels, prefix=prefix)
    if values:
        for _, block in features.blocks():
            check_finite(block, f"{prefix}features")
        for _, block in probabilities.blocks():
            check_probabilities(block, f"{prefix}probabilities")
    return features, probabilities, labels


def _paired_blocks(first: Rows, second: Rows, size: int):
    """``(positions, block of first, block of second)`` over the same blocks of ``size`` rows."""
    for (rows, block), (_, other) in zip(first.blocks(size), second.blocks(size), strict=True):
        yield rows, block, other


def _hessian_factor(
    features: Rows, probabilities: Rows, basis: np.ndarray, damping: float
) -> np.ndarray:
    hessian = influence.HessianSum(basis, features.shape[1])
    for _, block, probs in _paired_blocks(
        features, probabilities, influence.block_rows(hessian.row_width)
    ):
        hessian.add(block, probs)
    return hessian.factor(damping)
