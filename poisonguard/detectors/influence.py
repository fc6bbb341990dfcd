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

This module holds the steps, each a function of arrays (a block of samples at a time where a
pass over the samples is needed): :class:`HessianSum` sums the Hessian block by block,
:func:`self_influence` and :func:`trusted_influence` score a block given its factor.
:func:`poisonguard.detectors.streaming.influence_self_scores` and
:func:`~poisonguard.detectors.streaming.trusted_influence_scores` walk the samples, in memory or
in a file, through them.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg

from poisonguard.detectors.validation import check_labels

__all__ = [
    "HessianSum",
    "block_rows",
    "check_damping",
    "check_shapes",
    "gradient_parts",
    "inverse_factor",
    "residual_basis",
    "self_influence",
    "tracin_self_influence",
    "trusted_direction",
    "trusted_influence",
]

#: Most rows per block in a pass over the samples.
CHUNK_ROWS = 4096

#: Most float64 values in a block's largest temporary (32 MiB); blocks have fewer rows when the
#: per-row width (``(K - 1)(F + 1)`` for the gradients, ``K (K - 1) / 2 * (F + 1)`` for the
#: Hessian) needs it, so memory stays bounded whatever ``N`` is.
BLOCK_VALUES = 2**22

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


def check_damping(damping: float) -> None:
    if not (np.isfinite(damping) and damping > 0):
        raise ValueError(f"damping must be a finite number > 0; got {damping!r}")


def check_shapes(
    features_shape: tuple[int, ...],
    probabilities_shape: tuple[int, ...],
    labels: np.ndarray,
    *,
    prefix: str = "",
) -> np.ndarray:
    """Check that features ``(N, F)``, probabilities ``(N, K)`` and labels ``(N,)`` in
    ``[0, K)`` belong together; return the labels as integers."""
    if len(features_shape) != 2:
        raise ValueError(f"{prefix}features must have shape (N, F); got {tuple(features_shape)}")
    n = features_shape[0]
    shape = tuple(probabilities_shape)
    if len(shape) != 2 or shape[0] != n or shape[1] < 1:
        raise ValueError(
            f"{prefix}probabilities must have shape (N, K) = ({n}, K >= 1) to match "
            f"{prefix}features of shape {tuple(features_shape)}; got {shape}"
        )
    return check_labels(labels, n, shape[1], name=f"{prefix}labels").astype(np.intp, copy=False)


def residual_basis(n_classes: int) -> np.ndarray:
    """Orthonormal basis, shape (K, K - 1), of the vectors of R^K whose entries sum to 0."""
    if n_classes < 2:
        return np.zeros((n_classes, 0), dtype=np.float64)
    centring = np.eye(n_classes) - 1.0 / n_classes
    vectors, _, _ = np.linalg.svd(centring)
    return vectors[:, : n_classes - 1]


def block_rows(row_width: int) -> int:
    """Rows per block of a pass over the samples whose largest temporary has ``row_width``
    values per row: at most ``CHUNK_ROWS`` rows and ``BLOCK_VALUES`` values (at least one
    row), so memory stays bounded whatever ``N`` is. The blocks of a pass fix the order of its
    sums: the same blocks give the same bits."""
    return max(1, min(CHUNK_ROWS, BLOCK_VALUES // max(row_width, 1)))


def _augmented(features: np.ndarray) -> np.ndarray:
    """``[h_i, 1]`` for a block of rows, float64."""
    block = np.ones((features.shape[0], features.shape[1] + 1), dtype=np.float64)
    block[:, :-1] = features
    return block


def _normalised(probabilities: np.ndarray) -> np.ndarray:
    block = np.array(probabilities, dtype=np.float64)
    block /= block.sum(axis=1, keepdims=True)
    return block


def gradient_parts(
    features: np.ndarray, probabilities: np.ndarray, labels: np.ndarray, basis: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For a block of samples, in float64: ``[h, 1]`` and the residual ``(p - e_y) Q`` whose
    outer product is each sample's gradient ``g_i = r_i (x) [h_i, 1]``.

    The probabilities are renormalised so that each residual row sums to 0 to float64 precision
    (float32 softmax outputs miss by ~1e-7), which keeps it in the span of ``basis``.
    """
    residual = _normalised(probabilities)
    residual[np.arange(labels.shape[0]), labels] -= 1.0
    return _augmented(features), residual @ basis


class HessianSum:
    """The exact Hessian of the mean cross-entropy over the last layer's ``K (F + 1)``
    parameters, in the ``(K - 1)(F + 1)``-dimensional complement of its null space, summed a
    block of samples at a time (:meth:`add`, as scikit-learn's ``partial_fit``); :meth:`factor`
    then gives the upper Cholesky factor ``U`` of ``Q'^T H Q' + lambda I = U^T U``,
    ``Q' = basis (x) I``.

    Parameters are ordered class-major (``W[0], b[0], W[1], b[1], ...``). In the basis, block
    ``(a, b)`` is ``(1/N) sum_i w_iab [h_i, 1][h_i, 1]^T`` with
    ``w_iab = sum_k Q_ka Q_kb p_ik - (Q^T p_i)_a (Q^T p_i)_b``; each block is symmetric and
    ``(b, a)`` equals ``(a, b)``, so only ``a <= b`` is computed, all in one matrix product per
    block of samples (:attr:`row_width` values per sample: pass blocks of
    ``block_rows(row_width)`` rows). ``lambda`` is ``damping`` times the mean diagonal of the
    full ``H`` (its trace, which the basis keeps, over ``K (F + 1)``).
    """

    def __init__(self, basis: np.ndarray, n_features: int) -> None:
        self.basis = basis
        self.width = n_features + 1
        self.upper_a, self.upper_b = np.triu_indices(basis.shape[1])
        self.pair_weights = basis[:, self.upper_a] * basis[:, self.upper_b]  # Q_ka Q_kb
        # Block row 0 of the accumulator is the block (a, b) for each pair a <= b, side by side,
        # so that a single matrix product per block of samples covers every pair.
        self.blocks = np.zeros((self.width, self.upper_a.size * self.width), dtype=np.float64)
        self.trace = 0.0
        self.second_moment = 0.0
        self.n = 0

    @property
    def row_width(self) -> int:
        return int(self.upper_a.size * self.width)

    def add(self, features: np.ndarray, probabilities: np.ndarray) -> None:
        """Add a block of samples: features ``(b, F)`` and probabilities ``(b, K)``."""
        augmented = _augmented(features)
        probs = _normalised(probabilities)
        projected = probs @ self.basis
        upper_a, upper_b = self.upper_a, self.upper_b
        weights = probs @ self.pair_weights - projected[:, upper_a] * projected[:, upper_b]
        stacked = (weights[:, :, None] * augmented[:, None, :]).reshape(features.shape[0], -1)
        self.blocks += augmented.T @ stacked
        squared_norms = np.einsum("ij,ij->i", augmented, augmented)
        self.trace += float(np.einsum("ik,ik,i->", probs, 1.0 - probs, squared_norms))
        self.second_moment += float(squared_norms.sum())
        self.n += features.shape[0]

    def factor(self, damping: float) -> np.ndarray:
        """Upper Cholesky factor of the damped Hessian of the samples added (see the class)."""
        n, width = self.n, self.width
        n_classes, n_reduced = self.basis.shape
        blocks = self.blocks / n
        hessian = np.empty((n_reduced * width, n_reduced * width), dtype=np.float64)
        for pair, (a, b) in enumerate(zip(self.upper_a, self.upper_b, strict=True)):
            block = blocks[:, pair * width : (pair + 1) * width]
            hessian[a * width : (a + 1) * width, b * width : (b + 1) * width] = block
            # every block is symmetric, so block (b, a) = (a, b)^T = (a, b)
            hessian[b * width : (b + 1) * width, a * width : (a + 1) * width] = block
        scale = self.trace / (n * n_classes * width)
        scale = max(scale, _SCALE_FLOOR * self.second_moment / (n * width))
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
                    stacklevel=4,
                )
            return np.triu(factor)
        raise linalg.LinAlgError("the damped Hessian is not positive definite")


def inverse_factor(factor: np.ndarray) -> np.ndarray:
    """``U^-1`` of the upper Cholesky factor: with ``H + lambda I = U^T U`` a self-influence is
    ``||U^-T g||^2``. Multiplying by the explicit inverse (a triangular product, dtrmm) is
    faster than a triangular solve per block, and the inverse of a triangular factor is
    computed stably (dtrtri)."""
    inverse, info = linalg.lapack.dtrtri(factor, lower=0)
    if info != 0:
        raise linalg.LinAlgError("the Cholesky factor of the damped Hessian is singular")
    return inverse


def self_influence(augmented: np.ndarray, residual: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    """``g_i^T (H + lambda I)^-1 g_i`` for a block of samples (:func:`gradient_parts`), given
    the :func:`inverse_factor`; ``block_rows(residual width * (F + 1))`` rows at a time."""
    gradients = (residual[:, :, None] * augmented[:, None, :]).reshape(augmented.shape[0], -1)
    # G^T is Fortran-ordered, so dtrmm overwrites it in place: W = U^-T G^T.
    whitened = linalg.blas.dtrmm(1.0, inverse, gradients.T, trans_a=1, overwrite_b=1)
    return np.einsum("ij,ij->j", whitened, whitened)


def trusted_direction(factor: np.ndarray, trusted_gradient: np.ndarray) -> np.ndarray:
    """``(H + lambda I)^-1 g_T`` for the trusted set's summed gradient ``g_T`` (``sum`` of
    ``residual.T @ augmented`` over its blocks, shape ``(K - 1, F + 1)``), in that shape."""
    direction = linalg.cho_solve((factor, False), trusted_gradient.ravel(), check_finite=False)
    return direction.reshape(trusted_gradient.shape)


def trusted_influence(
    augmented: np.ndarray, residual: np.ndarray, direction: np.ndarray
) -> np.ndarray:
    """``-g_T^T (H + lambda I)^-1 g_i`` for a block of samples, given the
    :func:`trusted_direction`: ``g_i . v = sum_a r_ia ([h_i, 1] . v_a)`` for
    ``g_i = r_i (x) [h_i, 1]``."""
    return -np.einsum("ia,ia->i", residual, augmented @ direction.T)
