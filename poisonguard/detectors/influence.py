"""Influence of each training sample, restricted to the model's last linear layer.

Two estimates of how much a sample shapes the trained model:

* **TracIn self-influence** (Pruthi, Liu, Kale & Sundararajan, "Estimating Training Data Influence
  by Tracing Gradient Descent", NeurIPS 2020): the sum over training steps of the learning rate
  times the squared norm of the sample's loss gradient, here from the per-epoch squared norms of
  the last layer's gradient recorded during training.
* **Influence functions** (Koh & Liang, "Understanding Black-box Predictions via Influence
  Functions", ICML 2017): ``g_i^T (H + lambda I)^-1 g_j`` with ``g`` the cross-entropy gradient
  and ``H`` the Hessian of the mean training loss, both with respect to the last layer's weights
  and bias. Exact within the layer: the full ``K (F + 1)``-square Hessian is built from the
  penultimate features and the softmax probabilities (no K-FAC, no diagonal approximation), so the
  weights themselves are not needed. Self-influence scores a sample against itself; trusted
  influence scores it by how much up-weighting it raises the loss of a small clean trusted set.

Mislabelled and poisoned samples are the ones the model has to bend to fit: large, unusual
gradients, hence a large self-influence, and gradients that pull against the clean data, hence a
positive (harmful) trusted influence.

Limits: only the last layer is treated; the features are taken as fixed, so poison that works by
shaping the representation (most backdoors once the model fits the trigger) shows up only through
what is left of it in the head. Influence functions assume the model sits at a minimum of a convex
loss; a network trained by a few epochs of Adam is not, and the damping stands in for the
difference. Samples the model fits well, poisoned or not, have near-zero gradients and score low,
so a backdoor that is learned perfectly is invisible here. The Hessian needs
``(K (F + 1))^2`` floats of memory and ``O(N K^2 F^2 + K^3 F^3)`` time: fine for ``F`` in the
hundreds and ``K`` in the tens, not for ``F = 2048`` with ``K = 1000``. TracIn assumes plain SGD;
with Adam the recorded learning rates weight the raw (not preconditioned) gradients, the usual
approximation.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
from scipy import linalg

from poisonguard.ondisk import ArrayFile, all_finite, row_blocks

__all__ = ["influence_self_scores", "tracin_self_influence", "trusted_influence_scores"]

#: Most rows per block in a pass over the samples.
CHUNK_ROWS = 4096

#: Most float64 values in a block's largest temporary (32 MiB); blocks have fewer rows when the
#: per-row width (``(K - 1)(F + 1)`` for the gradients, ``K (K - 1) / 2 * (F + 1)`` for the
#: Hessian) needs it, so memory stays bounded whatever ``N`` is.
BLOCK_VALUES = 2**22

#: Probabilities whose rows sum further than this from 1 are rejected (logits passed by mistake).
_SUM_TOLERANCE = 1e-2

#: Floor of the damping scale, relative to the features' mean second moment: keeps ``lambda``
#: positive when the Hessian vanishes (every probability exactly one-hot).
_SCALE_FLOOR = 1e-12


def tracin_self_influence(
    gradient_sq: np.ndarray, learning_rates: np.ndarray | None = None
) -> np.ndarray:
    """TracIn self-influence of each sample over the last layer; higher = more suspicious.

    ``sum_e learning_rates[e] * gradient_sq[:, e]``: TracIn's ideal self-influence when each sample
    is seen once per epoch (a constant batch-size factor aside). Mislabelled and poisoned samples
    keep a large loss gradient for longer than clean ones, so their sum is large.

    Parameters
    ----------
    gradient_sq : ndarray, shape (N, E)
        Squared norm of each sample's loss gradient with respect to the last layer's weights and
        bias at each of ``E`` epochs (``||p - onehot(y)||^2 (||h||^2 + 1)``); finite, >= 0.
    learning_rates : ndarray, shape (E,), optional
        Learning rate in effect at each epoch; finite, >= 0. Defaults to ones.

    Returns
    -------
    ndarray of float64, shape (N,)
        Non-negative.

    Raises
    ------
    ValueError
        If ``gradient_sq`` is not 2-D, ``learning_rates`` is not of shape ``(E,)``, or either holds
        negative or non-finite values.
    """
    gradient_sq = np.asarray(gradient_sq, dtype=np.float64)
    if gradient_sq.ndim != 2:
        raise ValueError(
            f"gradient_sq must have shape (N, E); got an array of shape {gradient_sq.shape}"
        )
    n_epochs = gradient_sq.shape[1]
    if learning_rates is None:
        learning_rates = np.ones(n_epochs, dtype=np.float64)
    learning_rates = np.asarray(learning_rates, dtype=np.float64)
    if learning_rates.shape != (n_epochs,):
        raise ValueError(
            f"learning_rates must have shape (E,) = ({n_epochs},) to match gradient_sq of shape "
            f"{gradient_sq.shape}; got shape {learning_rates.shape}"
        )
    for name, values in (("gradient_sq", gradient_sq), ("learning_rates", learning_rates)):
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{name} holds non-finite values")
        if np.any(values < 0):
            raise ValueError(f"{name} holds negative values")
    return gradient_sq @ learning_rates


def influence_self_scores(
    features: np.ndarray,
    probabilities: np.ndarray,
    labels: np.ndarray,
    *,
    damping: float = 0.01,
) -> np.ndarray:
    """Exact last-layer influence-function self-influence; higher = more suspicious.

    ``score_i = g_i^T (H + lambda I)^-1 g_i`` where ``g_i = (p_i - e_{y_i}) (x) [h_i, 1]`` is the
    gradient of sample ``i``'s cross-entropy loss with respect to the last layer's weights and bias,
    and ``H = (1/N) sum_i (diag(p_i) - p_i p_i^T) (x) [h_i, 1][h_i, 1]^T`` the exact Hessian of the
    mean training loss over those ``K (F + 1)`` parameters. This is Koh & Liang's
    ``-I_up,loss(z_i, z_i)``: how much the sample's own loss drops when it is up-weighted, i.e. how
    much the model had to bend to fit it.

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
    features : ndarray, shape (N, F)
        Penultimate features ``h_i`` (the input of the last linear layer); finite.
    probabilities : ndarray, shape (N, K)
        Softmax outputs of the trained model; rows must sum to 1 (within 1e-2; they are
        renormalised in float64).
    labels : ndarray of int, shape (N,)
        Given labels, in ``[0, K)``.
    damping : float
        Relative damping, > 0.

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
    blocks of samples (see ``CHUNK_ROWS`` and ``BLOCK_VALUES``). For ``N = 60000``, ``F = 128``,
    ``K = 10``: about 3.6 s of CPU time on one core, under 100 MB of working memory.
    """
    features, probabilities, labels = _check_inputs(features, probabilities, labels)
    _check_damping(damping)
    scores = np.zeros(features.shape[0], dtype=np.float64)
    basis = _class_basis(probabilities.shape[1])
    if scores.size == 0 or basis.shape[1] == 0:
        return scores
    factor = _damped_hessian_factor(features, probabilities, basis, damping)
    # With H + lambda I = U^T U the score is ||U^-T g||^2. Multiplying by the explicit inverse
    # (a triangular product, dtrmm) is faster than a triangular solve per block, and the
    # inverse of a triangular factor is computed stably (dtrtri).
    inverse, info = linalg.lapack.dtrtri(factor, lower=0)
    if info != 0:
        raise linalg.LinAlgError("the Cholesky factor of the damped Hessian is singular")
    width = basis.shape[1] * (features.shape[1] + 1)
    for rows, augmented, residual in _blocks(features, probabilities, labels, basis, width):
        gradients = (residual[:, :, None] * augmented[:, None, :]).reshape(
            rows.stop - rows.start, width
        )
        # G^T is Fortran-ordered, so dtrmm overwrites it in place: W = U^-T G^T.
        whitened = linalg.blas.dtrmm(1.0, inverse, gradients.T, trans_a=1, overwrite_b=1)
        scores[rows] = np.einsum("ij,ij->j", whitened, whitened)
    return scores


def trusted_influence_scores(
    features: np.ndarray,
    probabilities: np.ndarray,
    labels: np.ndarray,
    trusted_features: np.ndarray,
    trusted_probabilities: np.ndarray,
    trusted_labels: np.ndarray,
    *,
    damping: float = 0.01,
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
    features, probabilities, labels = _check_inputs(features, probabilities, labels)
    trusted_features, trusted_probabilities, trusted_labels = _check_inputs(
        trusted_features, trusted_probabilities, trusted_labels, prefix="trusted_"
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
    _check_damping(damping)
    scores = np.zeros(features.shape[0], dtype=np.float64)
    basis = _class_basis(probabilities.shape[1])
    if scores.size == 0 or basis.shape[1] == 0 or trusted_features.shape[0] == 0:
        return scores
    factor = _damped_hessian_factor(features, probabilities, basis, damping)
    trusted_gradient = np.zeros((basis.shape[1], features.shape[1] + 1), dtype=np.float64)
    for _, augmented, residual in _blocks(
        trusted_features, trusted_probabilities, trusted_labels, basis, features.shape[1] + 1
    ):
        trusted_gradient += residual.T @ augmented
    direction = linalg.cho_solve((factor, False), trusted_gradient.ravel(), check_finite=False)
    direction = direction.reshape(trusted_gradient.shape)
    for rows, augmented, residual in _blocks(
        features, probabilities, labels, basis, features.shape[1] + 1
    ):
        # g_i . v = sum_a r_ia ([h_i, 1] . v_a) for g_i = r_i (x) [h_i, 1]
        scores[rows] = -np.einsum("ia,ia->i", residual, augmented @ direction.T)
    return scores


def _check_damping(damping: float) -> None:
    if not (np.isfinite(damping) and damping > 0):
        raise ValueError(f"damping must be a finite number > 0; got {damping!r}")


def _check_inputs(
    features: np.ndarray, probabilities: np.ndarray, labels: np.ndarray, *, prefix: str = ""
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate shapes and values; return the arrays (features and probabilities unconverted;
    an :class:`~poisonguard.ondisk.ArrayFile` stays on disk; both are checked block by
    block)."""
    if not isinstance(features, ArrayFile):
        features = np.asarray(features)
    if not isinstance(probabilities, ArrayFile):
        probabilities = np.asarray(probabilities)
    labels = np.asarray(labels)
    if features.ndim != 2:
        raise ValueError(f"{prefix}features must have shape (N, F); got {features.shape}")
    n = features.shape[0]
    if probabilities.ndim != 2 or probabilities.shape[0] != n or probabilities.shape[1] < 1:
        raise ValueError(
            f"{prefix}probabilities must have shape (N, K) = ({n}, K >= 1) to match "
            f"{prefix}features of shape {features.shape}; got {probabilities.shape}"
        )
    if labels.shape != (n,):
        raise ValueError(f"{prefix}labels must have shape (N,) = ({n},); got {labels.shape}")
    if n and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{prefix}labels must be integers; got dtype {labels.dtype}")
    n_classes = probabilities.shape[1]
    if n and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"{prefix}labels must lie in [0, K) = [0, {n_classes}); "
            f"got values in [{labels.min()}, {labels.max()}]"
        )
    if not all_finite(features):
        raise ValueError(f"{prefix}features hold non-finite values")
    for _, block in row_blocks(probabilities):
        if not np.all(np.isfinite(block)) or np.any(block < 0):
            raise ValueError(f"{prefix}probabilities must be finite and non-negative")
        sums = block.sum(axis=1, dtype=np.float64)
        if np.any(np.abs(sums - 1.0) > _SUM_TOLERANCE):
            worst = float(sums[np.argmax(np.abs(sums - 1.0))])
            raise ValueError(
                f"{prefix}probabilities must be softmax outputs whose rows sum to 1; a row sums "
                f"to {worst:.6g} (logits passed instead?)"
            )
    return features, probabilities, labels.astype(np.intp, copy=False)


def _class_basis(n_classes: int) -> np.ndarray:
    """Orthonormal basis, shape (K, K - 1), of the vectors of R^K whose entries sum to 0."""
    if n_classes < 2:
        return np.zeros((n_classes, 0), dtype=np.float64)
    centring = np.eye(n_classes) - 1.0 / n_classes
    vectors, _, _ = np.linalg.svd(centring)
    return vectors[:, : n_classes - 1]


def _block_slices(n: int, row_width: int) -> Iterator[slice]:
    """Consecutive row ranges covering ``range(n)``, each of at most ``CHUNK_ROWS`` rows and at
    most ``BLOCK_VALUES`` values of width ``row_width`` (at least one row)."""
    step = max(1, min(CHUNK_ROWS, BLOCK_VALUES // max(row_width, 1)))
    for start in range(0, n, step):
        yield slice(start, min(start + step, n))


def _augmented(features: np.ndarray, rows: slice) -> np.ndarray:
    """``[h_i, 1]`` for the rows, float64."""
    block = np.ones((rows.stop - rows.start, features.shape[1] + 1), dtype=np.float64)
    block[:, :-1] = features[rows]
    return block


def _blocks(
    features: np.ndarray,
    probabilities: np.ndarray,
    labels: np.ndarray,
    basis: np.ndarray,
    row_width: int,
) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
    """Blocks of samples (see :func:`_block_slices`), in float64: ``(rows, [h, 1], (p - e_y) Q)``.

    The probabilities are renormalised so that each residual row sums to 0 to float64 precision
    (float32 softmax outputs miss by ~1e-7), which keeps it in the span of ``basis``.
    """
    for rows in _block_slices(features.shape[0], row_width):
        residual = _normalised(probabilities[rows])
        residual[np.arange(rows.stop - rows.start), labels[rows]] -= 1.0
        yield rows, _augmented(features, rows), residual @ basis


def _normalised(probabilities: np.ndarray) -> np.ndarray:
    block = np.array(probabilities, dtype=np.float64)
    block /= block.sum(axis=1, keepdims=True)
    return block


def _damped_hessian_factor(
    features: np.ndarray, probabilities: np.ndarray, basis: np.ndarray, damping: float
) -> np.ndarray:
    """Upper Cholesky factor ``U`` of ``Q'^T H Q' + lambda I = U^T U``, ``Q' = basis (x) I``.

    ``H`` is the exact Hessian of the mean cross-entropy over the last layer's ``K (F + 1)``
    parameters, ordered class-major (``W[0], b[0], W[1], b[1], ...``). In the basis, block
    ``(a, b)`` is ``(1/N) sum_i w_iab [h_i, 1][h_i, 1]^T`` with
    ``w_iab = sum_k Q_ka Q_kb p_ik - (Q^T p_i)_a (Q^T p_i)_b``; each block is symmetric and
    ``(b, a)`` equals ``(a, b)``, so only ``a <= b`` is computed, all in one matrix product per
    block of samples.
    ``lambda`` is ``damping`` times the mean diagonal of the full ``H`` (its trace, which the basis
    keeps, over ``K (F + 1)``).
    """
    n, n_features = features.shape
    n_classes, n_reduced = basis.shape
    width = n_features + 1
    upper_a, upper_b = np.triu_indices(n_reduced)
    pair_weights = basis[:, upper_a] * basis[:, upper_b]  # (K, pairs): Q_ka Q_kb
    # Block row 0 of the accumulator is the block (a, b) for each pair a <= b, side by side, so
    # that a single matrix product per block of samples covers every pair.
    blocks = np.zeros((width, upper_a.size * width), dtype=np.float64)
    trace = 0.0
    second_moment = 0.0
    for rows in _block_slices(n, upper_a.size * width):
        augmented = _augmented(features, rows)
        probs = _normalised(probabilities[rows])
        projected = probs @ basis
        weights = probs @ pair_weights - projected[:, upper_a] * projected[:, upper_b]
        stacked = (weights[:, :, None] * augmented[:, None, :]).reshape(rows.stop - rows.start, -1)
        blocks += augmented.T @ stacked
        squared_norms = np.einsum("ij,ij->i", augmented, augmented)
        trace += float(np.einsum("ik,ik,i->", probs, 1.0 - probs, squared_norms))
        second_moment += float(squared_norms.sum())
    blocks /= n
    hessian = np.empty((n_reduced * width, n_reduced * width), dtype=np.float64)
    for pair, (a, b) in enumerate(zip(upper_a, upper_b, strict=True)):
        block = blocks[:, pair * width : (pair + 1) * width]
        hessian[a * width : (a + 1) * width, b * width : (b + 1) * width] = block
        # every block is symmetric, so block (b, a) = (a, b)^T = (a, b)
        hessian[b * width : (b + 1) * width, a * width : (a + 1) * width] = block
    scale = trace / (n * n_classes * width)
    scale = max(scale, _SCALE_FLOOR * second_moment / (n * width))
    diagonal = np.diag_indices_from(hessian)
    undamped_diagonal = hessian[diagonal].copy()
    requested = damping * scale
    # Rounding can leave H with eigenvalues a little below 0, which a tiny damping does not
    # cover: then retry with a relative damping of 1e-10, 1e-9, ... (and warn).
    fallbacks = [max(requested, 1e-10 * scale) * 10.0**k for k in range(9)]
    for regulariser in [requested, *fallbacks]:
        hessian[diagonal] = undamped_diagonal + regulariser
        try:
            factor, _ = linalg.cho_factor(hessian, lower=False, check_finite=False)
        except linalg.LinAlgError:
            continue
        if regulariser != requested:
            warnings.warn(
                f"the damped Hessian was not positive definite at damping={damping:g}; "
                f"used damping={regulariser / scale:g} instead",
                RuntimeWarning,
                stacklevel=3,
            )
        return np.triu(factor)
    raise linalg.LinAlgError("the damped Hessian is not positive definite")
