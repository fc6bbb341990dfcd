"""The detectors that pass over all samples, walked over rows in memory or in a file.

Influence functions, confident learning's out-of-sample probabilities and the k-NN label
disagreement each need a few passes over every sample: a sum over blocks (a Hessian, sufficient
statistics, a Gram matrix), a fit on the sums or on a sample, then a score for each block given
the fit. Their modules (``influence``, ``confident_learning``, ``knn_labels``) hold those steps
as functions of arrays; the functions here walk the rows through them, from an array or a file
alike (:class:`~poisonguard.rows.Rows`), in the same blocks, so the scores are the same
wherever the rows are. What a walk computes for every sample goes to a
:class:`~poisonguard.rows.RowStore` (memory, or the staging folder of an out-of-core scan).
Shapes and labels are checked here, the values (finite, softmax) too unless
``check_finite=False`` says the caller did (a scan checks the embedding once).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from threadpoolctl import threadpool_limits

from poisonguard.detectors import confident_learning, influence, knn_labels, validation
from poisonguard.rows import Rows, RowsLike, RowStore, Stored, as_rows
from poisonguard.seeding import key_order, row_keys, sample_by_key
from poisonguard.tasks import threaded_in_order

__all__ = [
    "influence_self_scores",
    "knn_label_disagreement",
    "out_of_sample_probabilities",
    "trusted_influence_scores",
]


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


def out_of_sample_probabilities(
    features: RowsLike,
    labels: np.ndarray,
    *,
    n_classes: int | None = None,
    n_folds: int = 5,
    seed: int = 0,
    store: RowStore | None = None,
    check_finite: bool = True,
) -> Stored:
    """Cross-validated class probabilities from a linear head on fixed features.

    Folds are stratified: each class's samples are shuffled (``seed``; by a key of each row's
    content, so that the result does not depend on the order of the rows) and dealt round-robin to
    the folds, so every fold holds ``n_c / n_folds`` of class ``c`` (give or take one) and a class
    with fewer samples than folds is spread over as many folds as it has samples. For each fold,
    on the other folds only:

    * the features are standardized (constant columns get scale 1);
    * a linear discriminant analysis is fitted: class means, the pooled within-class covariance
      shrunk towards a scaled identity with the OAS coefficient (Chen, Wiesel, Eldar & Hero,
      2010), class priors from the label counts;
    * one inverse temperature ``beta`` is fitted to its logits, jointly with a symmetric
      label-noise rate that explains the given labels that disagree with them (see
      :meth:`~poisonguard.detectors.confident_learning.Head.calibrated`). Plain LDA
      probabilities are overconfident when the classes are not Gaussian; a plain temperature
      fitted to noisy labels flattens every probability to leave room for the flipped ones,
      which puts many flipped samples below their true class's confident-learning threshold.

    The held-out fold gets ``softmax(beta * logits)``, an estimate of the posterior of the
    *true* label. On Fashion-MNIST CNN features (60,000 x 128) with 10 % uniformly flipped
    labels: accuracy against the true labels 0.903, log-loss against them 0.28;
    :func:`~poisonguard.detectors.confident_learning.confident_joint_issues` precision 0.72 and
    recall 0.86 for the flips (plain LDA 0.58 and 0.95, plain temperature 0.78 and 0.77); with
    the true labels it flags 3 % of the data, the samples the head gets confidently wrong (plain
    LDA 8 %, plain temperature 2.6 %).

    Why LDA and not logistic regression: it is closed-form (no iteration count or tolerance to
    tune) and takes ~0.1 s per fold at 48,000 x 128, where a softmax regression needs ~15 L-BFGS
    iterations for the same out-of-sample accuracy (0.90-0.91 against the true labels on the
    benchmark above, and the same ranking of the flips).

    Parameters
    ----------
    features : ndarray, ArrayFile or Rows, shape (N, F)
        Penultimate-layer features (or a table's raw columns).
    labels : ndarray of int, shape (N,)
        Given labels in ``0 .. n_classes - 1``.
    n_classes : int, optional
        Number of classes ``K``; default ``labels.max() + 1``.
    n_folds : int
        Number of folds, at least 2; fewer are used when there are fewer samples.
    seed : int
        Seeds the fold assignment and the subsample of at most 20,000 training rows that each
        calibration is fitted on (both drawn by the rows' content keys,
        :func:`~poisonguard.seeding.row_keys`); the result is deterministic for a given seed.
    store : RowStore or None
        Where the result goes, a block of rows at a time: memory (default) or, on an
        out-of-core scan, a staging file (returned as an :class:`~poisonguard.ondisk.ArrayFile`).
    check_finite : bool
        Check that the features are finite (a pass over them); False when the caller has.

    Returns
    -------
    ndarray or ArrayFile of float64, shape (N, K)
        Rows sum to 1. A class absent from a sample's training folds gets probability 0 in that
        sample's row. If the training folds hold a single class (or the data does), that class
        gets probability 1.
    """
    features = _float_rows(features, check_finite)
    labels = validation.check_labels(labels, features.shape[0], n_classes)
    if n_classes is None:
        n_classes = int(labels.max()) + 1 if labels.size else 0
    if n_folds < 2:
        raise ValueError(f"n_folds must be at least 2, got {n_folds}")
    store = store or RowStore()
    n_samples = labels.shape[0]
    probabilities = store.empty((n_samples, n_classes), np.float64)
    if n_samples <= 1 or np.unique(labels).size == 1:
        for rows, given in Rows(labels).blocks():
            probabilities[rows] = confident_learning.one_hot(given, n_classes)
        return store.finish(probabilities)
    # Rows are centred in float64 one block at a time: memory is a block, not a float64 copy of
    # the features. The same pass keys every row by its content, for the folds and samples.
    total = np.zeros(features.shape[1])
    keys = np.empty(n_samples, dtype=np.uint64)
    for rows, block in features.blocks():
        total += block.sum(axis=0, dtype=np.float64)
        keys[rows] = row_keys(block, seed)
    mean = total / n_samples
    folds = confident_learning.stratified_folds(labels, min(n_folds, n_samples), keys)
    # Small GEMMs, one BLAS thread: a two-thread OpenBLAS that shares a core with another process
    # spins (measured 0.03 s -> 1 s for one 48,000 x 128 Gram matrix with one core busy), and
    # this whole function takes well under a second single-threaded at 60,000 x 128.
    with threadpool_limits(limits=1, user_api="blas"):
        sums = confident_learning.FoldSums(int(folds.max()) + 1, n_classes)
        for rows, block in features.blocks():
            sums.add(confident_learning.centred(block, mean), folds[rows], labels[rows])
        everything = sums.total
        heads = []
        for f, held_out in enumerate(sums.parts):
            head = confident_learning.lda_head(everything.minus(held_out))
            if head.weights is not None:
                train = confident_learning.calibration_rows(folds, f, keys)
                head = head.calibrated(features.take(train, np.float64) - mean, labels[train])
            heads.append(head)
        for rows, block in features.blocks():
            centred = confident_learning.centred(block, mean)
            probabilities[rows] = confident_learning.predict(heads, centred, folds[rows], n_classes)
    return store.finish(probabilities)


def knn_label_disagreement(
    features: RowsLike,
    labels: np.ndarray,
    *,
    k: int = 10,
    n_components: int = 32,
    weights: str = "uniform",
    n_probe: int | None = 16,
    seed: int = 0,
    check_finite: bool = True,
    workers: int = 1,
) -> np.ndarray:
    """Share of a sample's ``k`` nearest neighbours whose label differs from its own; higher =
    more suspicious (see :mod:`poisonguard.detectors.knn_labels` for the search).

    Parameters
    ----------
    features : ndarray, ArrayFile or Rows, shape (N, F)
        The projected points go where the features are: memory, or a scratch folder next to
        their file (removed afterwards).
    labels : ndarray of int, shape (N,)
    k : int
        Neighbours per sample, not counting the sample itself (an exact duplicate of it is a
        neighbour). With ``N <= k`` every other sample is a neighbour.
    n_components : int
        Principal components of the standardized features kept for the search.
    weights : {"uniform", "distance"}
        ``"uniform"``: the plain share. ``"distance"``: each neighbour weighted by
        ``1 / (distance + c)``, with ``c`` 1 % of the median k-th-neighbour distance.
    n_probe : int or None
        Cells of the inverted file searched per sample; ``None`` searches all (exact, quadratic).
    seed : int
        Seeds the k-means cells; the result is deterministic for a given seed.
    check_finite : bool
        Check that the features are finite (a pass over them); False when the caller has.
    workers : int
        Threads searching the cells at once (each with one BLAS thread): the same result for
        any count.

    Returns
    -------
    ndarray of float64, shape (N,)
        In ``[0, 1]``; 0 for every sample when there is one class or one sample. Comparable
        across classes, but a class's level depends on how much the representation mixes it with
        others.
    """
    knn_labels.check_options(k, n_components, weights, n_probe)
    features = _float_rows(features, check_finite)
    labels = validation.check_labels(labels, features.shape[0])
    n_samples = features.shape[0]
    if n_samples < 2 or np.unique(labels).size < 2:
        return np.zeros(n_samples, dtype=np.float64)
    k = min(k, n_samples - 1)
    rng = np.random.default_rng(seed)
    weighting = knn_labels.WEIGHTINGS[weights]
    # Small matrix products, one BLAS thread: two spin when another process holds a core (see
    # out_of_sample_probabilities); single-threaded this takes ~2 s at 60,000 x 128.
    with threadpool_limits(limits=1, user_api="blas"), features.scratch() as store:
        points, norms, keys = _principal_projection(features, n_components, seed, store)
        if weights == "uniform":  # the share needs no distances and no (N, k) arrays
            scores = np.empty(n_samples, dtype=np.float64)
            neighbours = _neighbours(
                points, norms, keys, labels, k, n_probe, rng, store, workers=workers
            )
            for queries, differs, _ in neighbours:
                scores[queries] = weighting(None, differs)
            return scores
        differs_all = np.empty((n_samples, k), dtype=bool)
        distances_all = np.empty((n_samples, k), dtype=np.float64)
        for queries, differs, distances in _neighbours(
            points, norms, keys, labels, k, n_probe, rng, store, with_distances=True,
            workers=workers,
        ):  # fmt: skip
            differs_all[queries], distances_all[queries] = differs, distances
        return weighting(distances_all, differs_all).astype(np.float64)


def _principal_projection(
    features: Rows, n_components: int, seed: int, store: RowStore
) -> tuple[Rows, np.ndarray, np.ndarray]:
    """The search points (standardized features on their top principal components, float32,
    kept in ``store``), their squared norms and the rows' content keys (``seed``). Mean, scale
    and the Gram matrix are summed in float64 over blocks of rows, so the memory beyond the
    output is a block, not a float64 copy of the input (1 GB at a million 128-d rows)."""
    n, width = features.shape
    total = np.zeros(width)
    keys = np.empty(n, dtype=np.uint64)
    for rows, block in features.blocks():
        total += block.sum(axis=0, dtype=np.float64)
        keys[rows] = row_keys(block, seed)
    mean = total / n
    gram = np.zeros((width, width))
    squares = np.zeros(width)
    for _, block in features.blocks():
        block_squares, block_gram = knn_labels.centred_moments(block, mean)
        squares += block_squares
        gram += block_gram
    basis = knn_labels.standardized_basis(squares, gram, n, n_components)
    points = store.empty((n, basis.shape[1]), np.float32)
    norms = np.empty(n, dtype=np.float32)
    for rows, block in features.blocks():
        points[rows], norms[rows] = knn_labels.project(block, mean, basis)
    return Rows(store.finish(points)), norms, keys


def _neighbours(
    points: Rows,
    norms: np.ndarray,
    keys: np.ndarray,
    labels: np.ndarray,
    k: int,
    n_probe: int | None,
    rng: np.random.Generator,
    store: RowStore,
    *,
    with_distances: bool = False,
    workers: int = 1,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """Each point's approximate k nearest other points, by an inverted file over k-means cells,
    a block of query points at a time (see :func:`~poisonguard.detectors.knn_labels.query_cell`).

    Points in a file are copied once more in cell order (:meth:`~poisonguard.rows.Rows.grouped`,
    in ``store``), so that a cell's candidates are a few contiguous ranges, read per cell. The
    neighbours' indices are used a query block at a time and never stored (80 MB a million
    samples). The cells are searched on ``workers`` threads (their candidates read here, in
    order, a few cells ahead: :func:`~poisonguard.tasks.threaded_in_order`); each cell's
    search is the same whichever thread runs it.
    """
    n_samples = points.shape[0]
    n_cells = max(1, round(n_samples / knn_labels.CELL_SIZE))
    if n_probe is None or n_probe >= n_cells:
        cells = np.zeros(n_samples, dtype=np.int64)
        probes = np.zeros((1, 1), dtype=np.int64)
    else:
        # the k-means sample drawn by the rows' content keys and fitted in key order, so that
        # the cells do not depend on the order of the rows
        chosen = sample_by_key(keys, knn_labels.kmeans_sample_size(n_samples, n_cells))
        sample = points.take(chosen)[key_order(keys[chosen])]
        centres = knn_labels.kmeans(sample, n_cells, rng)
        del sample
        cells = np.empty(n_samples, dtype=np.int64)
        for rows, block in points.blocks():
            cells[rows] = knn_labels.nearest_centre(block, centres)
        probes = knn_labels.nearest_cells(centres, n_probe)
    order, bounds = knn_labels.cell_order(cells, probes.shape[0])
    del cells
    members = [order[bounds[c] : bounds[c + 1]] for c in range(probes.shape[0])]
    by_cell = points.grouped(order, bounds, store)

    def searches() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        for cell, own in enumerate(members):
            if own.size:
                near, found = knn_labels.candidates(cell, probes, members, k)
                yield own, found, by_cell.of(near, found)

    def search(cell: tuple[np.ndarray, np.ndarray, np.ndarray]) -> list:
        own, found, found_points = cell
        return list(
            knn_labels.query_cell(
                own, found, found_points, norms, labels, k, with_distances=with_distances
            )
        )

    for blocks in threaded_in_order(search, searches(), workers):
        yield from blocks


def _float_rows(features: RowsLike, values: bool) -> Rows:
    """``features`` as rows of floats (an array of integers in memory is converted to float64),
    after checking that they form a matrix and, with ``values``, that they are finite."""
    features = as_rows(features)
    if features.dtype.kind != "f":
        features = Rows(features.whole().astype(np.float64))
    validation.check_matrix(features.shape)
    if values:
        for _, block in features.blocks():
            validation.check_finite(block)
    return features


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
            validation.check_finite(block, f"{prefix}features")
        for _, block in probabilities.blocks():
            validation.check_probabilities(block, f"{prefix}probabilities")
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
