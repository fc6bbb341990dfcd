"""Model inversion (MI-Face): what the trained model thinks each class looks like.

Fredrikson, Jha & Ristenpart, "Model Inversion Attacks that Exploit Confidence Information and
Basic Countermeasures", CCS 2015. Starting from a featureless input, gradient descent on the
input lowers ``1 - p_c(x)``, the target model's lack of confidence in class ``c``. When the model
has memorised its training records, the reconstruction drifts towards one of them; the measures
in :mod:`poisonguard.privacy.inversion_leakage` compare it with the training and held-out data.

Known limits: MI-Face recovers recognisable faces from shallow models with few records per class;
on deep or well-regularised models it mostly yields class prototypes or adversarial noise. A
reconstruction that looks like nothing proves little; one that matches a training record is
evidence of leakage.

This is the only torch code of the privacy probe; the model is rebuilt from
``Embedding.weights`` exactly as :func:`poisonguard.embed.inference.embed_with` does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from poisonguard.embed.inference import trained_model
from poisonguard.machine import available_cores
from poisonguard.results import Embedding

logger = logging.getLogger(__name__)

__all__ = ["Inversion", "invert_classes", "DEFAULT_TV_WEIGHT", "DEFAULT_L2_WEIGHT"]

DEFAULT_TV_WEIGHT = 0.05
"""Weight of the total variation of the image scaled to [0, 1] (mean absolute neighbour
difference, between 0 and 1). Real images have a TV of about 0.07 (Fashion-MNIST, median) to 0.24
(scikit-learn's 8x8 digits), so the smoothness term costs about 0.004-0.012 against the
confidence term's range of 1: it trims isolated noisy pixels without holding the confidence back.
Measured on a SmallCNN trained on 6,000 Fashion-MNIST images: every class reached a confidence of
at least 0.997 at 0.05; at 0.2 or more, classes whose confidence at the flat start is near 0 (where
``1 - p_c`` has almost no gradient) stayed pinned there until early stopping."""

DEFAULT_L2_WEIGHT = 0.01
"""Weight of the mean squared value of the image scaled to [0, 1] (or, for tables, of the
standardised row): a light pull towards dark images (the mean row) that breaks ties between
inputs the model scores alike."""

TABLE_BOUND_STDS = 4.0
"""Without ``bounds``, a table reconstruction stays within this many standard deviations of each
column's training mean."""


@dataclass
class Inversion:
    """Reconstructions of classes by MI-Face, one per requested class.

    Attributes
    ----------
    classes : ndarray of int64, shape (K,)
        The class codes inverted, in the order asked for.
    images : ndarray of float64, shape (K, C, H, W) or (K, D)
        The best iterate of each class, in the data's own units (``0 .. value_max`` for images);
        table rows for a table model.
    confidence : ndarray of float64, shape (K,)
        The target model's probability of the class at the best iterate.
    cost : ndarray of float64, shape (K,)
        The MI-Face cost at the best iterate: the lowest of the run.
    steps_run : ndarray of int64, shape (K,)
        Gradient steps taken before the class stopped (``<= steps``).
    history : ndarray of float64, shape (T, K)
        The cost of every evaluated iterate (row 0 is the starting point); NaN once a class
        has stopped. ``cost == nanmin(history, axis=0)``.
    value_max : float
        The top of the image value range used (1.0 for tables, where it plays no part).
    """

    classes: np.ndarray
    images: np.ndarray
    confidence: np.ndarray
    cost: np.ndarray
    steps_run: np.ndarray
    history: np.ndarray
    value_max: float


def invert_classes(
    embedding: Embedding,
    classes: Sequence[int] | np.ndarray,
    *,
    steps: int = 300,
    learning_rate: float = 0.05,
    tv_weight: float = DEFAULT_TV_WEIGHT,
    l2_weight: float = DEFAULT_L2_WEIGHT,
    patience: int = 30,
    min_improvement: float = 1e-4,
    seed: int = 0,
    value_max: float | None = None,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
) -> Inversion:
    """Reconstruct an input for each class in ``classes`` from the model ``embedding`` trained.

    MI-Face (Fredrikson, Jha & Ristenpart, CCS 2015). For each class ``c`` it minimises

        ``cost(x) = 1 - p_c(x) + tv_weight * TV(x / value_max)
        + l2_weight * ||x / value_max||^2 / numel``

    where ``TV`` is the anisotropic total variation, the mean absolute difference between
    horizontally and vertically neighbouring pixels. Both regularisers act on the image scaled to
    [0, 1], so the same weights suit 0..255 and 0..1 data, 8x8 and 28x28 images.

    Every class starts from the same constant image, the per-channel training mean (the input the
    model sees as zeros after its standardisation, so no class is favoured by the start). The
    optimiser is Adam (not the plain gradient descent of the paper) on the image scaled to
    [0, 1]: its steps are about ``learning_rate`` of the value range whatever the scale of the
    gradient, so one learning rate fits every dataset. After each step the image is clamped to
    ``[0, value_max]``. All classes are optimised together in one batch (the model runs in
    evaluation mode, so the classes do not interact).

    Unlike the MIFace of the Adversarial Robustness Toolbox, which returns the last iterate, the
    **best** iterate (lowest cost) is returned. A class stops when its best cost has not improved
    by ``min_improvement`` for ``patience`` steps, or after ``steps`` steps (a stopped class
    still rides along in the batch until all have stopped, but is no longer tracked). A class
    whose confidence at the start is near 0 gets almost no gradient from ``1 - p_c``; a large
    ``tv_weight`` can then hold it at the start until it stops: its low ``confidence`` shows it.

    Table models (input shape ``(D,)``) are inverted the same way with the TV term left out (a
    row has no neighbours); the row is optimised in standardised units, the L2 term is the mean
    squared standardised value (a pull towards the mean row), and each column is clamped to
    ``bounds`` (per-column ``(low, high)`` arrays in data units, e.g. the training minimum and
    maximum; by default the mean +/- 4 standard deviations).

    Parameters
    ----------
    embedding : Embedding
        An embedding whose model PoisonGuard trained (not a TorchScript extractor), with its
        weights.
    classes : sequence of int
        Class codes to invert (``0 .. n_classes - 1``).
    steps : int
        Most gradient steps per class.
    learning_rate : float
        Adam's learning rate, in units of the value range (or of standard deviations for tables).
    tv_weight, l2_weight : float
        Weights of the regularisers (see above); 0 turns one off.
    patience : int
        Steps without an improvement of at least ``min_improvement`` before a class stops.
    min_improvement : float
    seed : int
        Passed to ``torch.manual_seed``. The algorithm itself draws no random numbers (constant
        start, Adam), so results are identical for any seed; it is set for reproducibility should
        a random start be added.
    value_max : float or None
        Top of the image value range: 255 for ``uint8`` images, 1.0 for images in [0, 1].
        ``None`` guesses from the training mean stored with the model, with a logged warning:
        255 when any channel's mean exceeds 1, else 1.0. The guess is wrong for other ranges
        (scikit-learn's digits run 0..16) and for a 0..255 dataset so dark that every channel's
        mean is below 1: pass it. Ignored for tables.
    bounds : tuple of ndarray or None
        Tables only: per-column ``(low, high)`` in data units.

    Returns
    -------
    Inversion

    Raises
    ------
    ValueError
        For an embedding from a TorchScript extractor or without weights, an input shape other
        than ``(C, H, W)`` or ``(D,)``, class codes out of range, or invalid settings.
    """
    model, mean, std = _trained_model(embedding)
    n_classes = int(embedding.probabilities.shape[1])
    targets = np.asarray(classes, dtype=np.int64).reshape(-1)
    if targets.size == 0:
        raise ValueError("no classes to invert")
    if targets.min() < 0 or targets.max() >= n_classes:
        raise ValueError(f"class codes must lie in 0..{n_classes - 1}, got {targets.tolist()}")
    if steps < 0 or patience < 1:
        raise ValueError(f"steps must be >= 0 and patience >= 1, got {steps} and {patience}")
    if not learning_rate > 0 or tv_weight < 0 or l2_weight < 0 or min_improvement < 0:
        raise ValueError(
            "learning_rate must be > 0 and tv_weight, l2_weight, min_improvement >= 0, got "
            f"{learning_rate}, {tv_weight}, {l2_weight}, {min_improvement}"
        )
    torch.set_num_threads(available_cores())
    torch.manual_seed(seed)
    is_image = len(embedding.input_shape) == 3
    k = targets.size
    mean_t = torch.as_tensor(mean, dtype=torch.float32)
    std_t = torch.as_tensor(std, dtype=torch.float32)

    # ``variable`` is what Adam moves: the image scaled to [0, 1], or the standardised row.
    if is_image:
        if value_max is None:
            top = _guess_value_max(mean)
            logger.warning("model inversion: value_max not given, guessed %g", top)
        else:
            top = float(value_max)
        if not top > 0:
            raise ValueError(f"value_max must be > 0, got {value_max}")
        low = torch.zeros(1)
        high = torch.ones(1)
        start = (mean_t / top).clamp(0.0, 1.0).expand(k, *embedding.input_shape)

        def to_model_input(variable: torch.Tensor) -> torch.Tensor:
            return (variable * top - mean_t) / std_t

        def to_data(variable: torch.Tensor) -> torch.Tensor:
            return variable * top

    else:
        top = 1.0
        if bounds is None:
            low = torch.full(mean_t.shape, -TABLE_BOUND_STDS)
            high = torch.full(mean_t.shape, TABLE_BOUND_STDS)
        else:
            low_data, high_data = (np.asarray(b, dtype=np.float64).reshape(-1) for b in bounds)
            if low_data.shape != mean.shape or high_data.shape != mean.shape:
                raise ValueError(f"bounds must be two arrays of shape {mean.shape}")
            if np.any(low_data > high_data):
                raise ValueError("bounds: low must not exceed high")
            low = torch.as_tensor((low_data - mean) / std, dtype=torch.float32)
            high = torch.as_tensor((high_data - mean) / std, dtype=torch.float32)
        start = torch.zeros(mean_t.shape).clamp(low, high).expand(k, -1)

        def to_model_input(variable: torch.Tensor) -> torch.Tensor:
            return variable

        def to_data(variable: torch.Tensor) -> torch.Tensor:
            return variable * std_t + mean_t

    target_t = torch.as_tensor(targets)

    def objective(variable: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probabilities = torch.softmax(model(to_model_input(variable)), dim=1)
        confidence = probabilities.gather(1, target_t[:, None])[:, 0]
        flat = variable.reshape(k, -1)
        cost = 1.0 - confidence + l2_weight * flat.square().mean(dim=1)
        if is_image and tv_weight > 0:
            cost = cost + tv_weight * _total_variation(variable)
        return cost, confidence

    variable = start.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([variable], lr=learning_rate)
    best_cost = np.full(k, np.inf)
    best_confidence = np.zeros(k)
    best_variable = start.clone()
    reference = np.full(k, np.inf)  # best cost at the last significant improvement
    stale = np.zeros(k, dtype=np.int64)
    active = np.ones(k, dtype=bool)
    steps_run = np.zeros(k, dtype=np.int64)
    history: list[np.ndarray] = []

    for step in range(steps + 1):
        cost, confidence = objective(variable)
        cost_np = cost.detach().double().numpy()
        history.append(np.where(active, cost_np, np.nan))
        better = active & (cost_np < best_cost)
        if better.any():
            rows = torch.as_tensor(np.flatnonzero(better))
            best_cost[better] = cost_np[better]
            best_confidence[better] = confidence.detach().double().numpy()[better]
            best_variable[rows] = variable.detach()[rows]
        significant = active & (cost_np < reference - min_improvement)
        reference[significant] = cost_np[significant]
        stale[significant] = 0
        stale[active & ~significant] += 1
        active &= stale < patience
        if step == steps or not active.any():
            break
        optimiser.zero_grad()
        cost.sum().backward()  # rows are independent: each row gets its own gradient
        optimiser.step()
        with torch.no_grad():
            variable.copy_(torch.maximum(torch.minimum(variable, high), low))
        steps_run[active] += 1

    with torch.no_grad():
        images = to_data(best_variable).double().numpy()
    if is_image:
        images = np.clip(images, 0.0, top)
    return Inversion(
        classes=targets,
        images=images,
        confidence=best_confidence,
        cost=best_cost,
        steps_run=steps_run,
        history=np.stack(history),
        value_max=top,
    )


def _total_variation(images: torch.Tensor) -> torch.Tensor:
    """Anisotropic TV per image: mean absolute difference of vertical and horizontal neighbours,
    averaged over both directions (0 for a constant image, at most 1 for images in [0, 1])."""
    vertical = (images[:, :, 1:, :] - images[:, :, :-1, :]).abs().flatten(1).mean(dim=1)
    horizontal = (images[:, :, :, 1:] - images[:, :, :, :-1]).abs().flatten(1).mean(dim=1)
    parts = [d for d, n in ((vertical, images.shape[2]), (horizontal, images.shape[3])) if n > 1]
    if not parts:
        return torch.zeros(images.shape[0])
    return sum(parts) / len(parts)


def _guess_value_max(mean: np.ndarray) -> float:
    return 255.0 if float(np.max(mean)) > 1.0 else 1.0


def _trained_model(embedding: Embedding) -> tuple[nn.Module, np.ndarray, np.ndarray]:
    """The model ``embedding`` trained (frozen, evaluation mode) and its input mean and std."""
    try:
        model, scaler = trained_model(embedding)
    except ValueError as exc:
        raise ValueError(f"model inversion: {exc}") from exc
    mean = np.asarray(scaler.mean, dtype=np.float64)
    std = np.asarray(scaler.std, dtype=np.float64)
    return model, mean, std
