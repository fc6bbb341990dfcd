"""Adaptive-Blend: a blend trigger cut into pieces, each training sample carrying only some.

Qi, Xie, Li, Mahloujifar & Mittal, "Revisiting the Assumption of Latent Separability for
Backdoor Defenses", ICLR 2023. Defences such as spectral signatures, activation clustering or
SPECTRE assume that poisoned samples form a separate cluster in the model's latent space. The
adaptive attacks weaken that separation two ways:

* the blend trigger is cut into a grid of pieces (4 x 4 in the paper) and each poisoned training
  sample gets only a random subset of them (half), so no single trigger pattern is learned as a
  shortcut, while the test-time trigger is the whole pattern (blended with a slightly higher
  alpha: 0.2 against 0.15 in training);
* conservatism samples (:mod:`.cover`) carry a partial trigger with their true label.

The pattern here is :func:`~poisonguard.poison.triggers.blend_trigger`'s random-noise image, drawn
from the same seed stream as ``blend``; the grid cuts the image into ``grid`` bands of rows and
``grid`` bands of columns as even as the size allows (``H * i // grid``), so every pixel lies in
exactly one piece (the paper's code leaves the pixels past ``grid * (H // grid)`` always
triggered).
"""

from __future__ import annotations

import numpy as np

from poisonguard.poison.triggers import blend_trigger

__all__ = ["adaptive_blend_trigger", "choose_pieces", "piece_masks"]


def choose_pieces(
    n_samples: int, *, grid: int, pieces: int, rng: np.random.Generator
) -> np.ndarray:
    """For each sample, which ``pieces`` of the ``grid x grid`` pieces carry the trigger.

    Returns a boolean array of shape ``(n_samples, grid * grid)``, piece ``r * grid + c`` being
    the piece in row band ``r`` and column band ``c``. Each row has exactly ``pieces`` true
    entries, chosen uniformly from ``rng`` (one ``random`` call of ``n_samples * grid**2``
    uniforms).
    """
    total = grid * grid
    if not 1 <= pieces <= total:
        raise ValueError(f"pieces must be in 1..{total} for a {grid}x{grid} grid; got {pieces}")
    order = np.argsort(rng.random((n_samples, total)), axis=1)
    chosen = np.zeros((n_samples, total), dtype=bool)
    np.put_along_axis(chosen, order[:, :pieces], True, axis=1)
    return chosen


def piece_masks(chosen: np.ndarray, *, height: int, width: int, grid: int) -> np.ndarray:
    """Pixel masks ``(n, height, width)`` of the pieces ``chosen`` (``(n, grid * grid)``)."""
    if grid > min(height, width):
        raise ValueError(
            f"a {grid}x{grid} grid of trigger pieces does not fit {height}x{width} images"
        )
    row_band = np.arange(height) * grid // height  # the band of each pixel row
    col_band = np.arange(width) * grid // width
    piece = row_band[:, None] * grid + col_band[None, :]  # (H, W): piece of each pixel
    return np.asarray(chosen, dtype=bool)[:, piece]


def adaptive_blend_trigger(
    images: np.ndarray,
    *,
    alpha: float,
    grid: int,
    pieces: int,
    pattern_rng: np.random.Generator,
    pieces_rng: np.random.Generator,
    value_max: float | None = None,
) -> np.ndarray:
    """Blend each image with the noise pattern on a random subset of the grid's pieces only.

    Inside the chosen pieces a sample equals ``blend_trigger(images, alpha=alpha,
    rng=pattern_rng)``; outside them it is unchanged. The noise image is the ``blend`` one for
    the same ``pattern_rng`` state; ``pieces_rng`` draws each sample's pieces in order (see
    :func:`choose_pieces`).

    Parameters
    ----------
    images : ndarray, shape (N, C, H, W), uint8 or float
    alpha : float
        Blend ratio in ``(0, 1]`` (0.15 in the paper's training samples).
    grid : int
        The pattern is cut into ``grid x grid`` pieces.
    pieces : int
        Pieces per sample (half of ``grid ** 2`` in the paper).
    pattern_rng, pieces_rng : numpy.random.Generator
    value_max : float, optional
        See :mod:`poisonguard.poison.triggers`.

    Returns
    -------
    ndarray, same shape and dtype as ``images``
    """
    full = blend_trigger(images, alpha=alpha, rng=pattern_rng, value_max=value_max)
    n, _, height, width = full.shape
    masks = piece_masks(
        choose_pieces(n, grid=grid, pieces=pieces, rng=pieces_rng),
        height=height,
        width=width,
        grid=grid,
    )
    return np.where(masks[:, None, :, :], full, images)
