"""Does a small smooth warp carry other classes to a class? The warp search.

The transplant test (:mod:`~poisonguard.detectors.transplant`) asks whether what sets a group
apart carries its label: it adds the group's difference, stamps what the group holds in common
or blends the probes as the group was made. A trigger that is not a pattern survives none of
these. WaNet (Nguyen & Tran, ICLR 2021) resamples every poison through one smooth random warp
(a ``4 x 4`` field of random displacements, upsampled bicubically; at the paper's strength no
pixel moves by more than about half a pixel): the poisons' mean difference from the class is
their source classes' average shape, nothing is held in common, and no slope and offset makes
one image from another. On 60,000 Fashion-MNIST images with 1 % warped into the dresses, the
groups asked moved 8-9 % of the probes, though the scan's model had learned the warp: the real
warp, applied to the probes, moved 77 % of them to "dress".

So the warp is searched for instead of read off the group, as Neural Cleanse (Wang et al., IEEE
S&P 2019) searches for a small patch that moves every class to one label, with the search space
WaNet's own: a ``WARP_GRID x WARP_GRID`` field of displacements, upsampled bicubically to the
image, each at most :data:`WARP_BOUND` pixels (``tanh``-bounded), fitted by gradient descent on
the model's cross-entropy towards the class over a sixth of the probes. The share of the *other*
probes that the fitted warp moves to the class is the test's share. A model that learned a warp
as a shortcut to its target reads most warped samples as the target; a model that learned
classes by their shape does not turn a shirt into a dress for a sub-pixel shift of its edges,
whatever the shift. Measured on the scan's models (docs/benchmarks.md): the dresses' WaNet moved
98 % of the held-out probes (the real warp 77 %); every other class of the 40 Fashion-MNIST
benchmark sets at most 18 %, searched wider than here (1 pixel, 100 steps); on the 8x8 digits
the WaNet targets 95-100 %, the other classes of 63 sets (unpoisoned, patch, blend, WaNet) at
most 24 %. A blend's target is reached too (the digits' blends 96-100 %): the model learned its
fading as a shortcut, which a warp's resampling also does. So the decision asks the warp last,
only for classes the pattern transplants leave uncalled. A source-specific warp (one class
warped and relabelled, the same warp on other classes' samples with their labels kept) moves
its source alone: asked with every class's probes it moves a ninth of them, so the decision also
asks the probes of the one class a far group looks like, and counts a probe there only when the
model is sure of it (:data:`SURE`, ``confidence``).

The share is a property of the class in the model, not of the group asked: it confirms any
group of a class the model reaches by a warp. The groups' own tests still choose which samples
are flagged. The field found (:func:`search_warp`) also serves group completion: the probes'
features once warped (:func:`warped_features`) and unwarped show the features' discriminant
what the warp changes whatever a sample's source class (WaNet with an 8 x 8 field into the
Fashion-MNIST pullovers: 327 -> 545 of 600 poisons flagged, 13 -> 7 clean samples).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = [
    "WARP_BOUND",
    "WARP_FIT_EVERY",
    "WARP_GRID",
    "WARP_LEARNING_RATE",
    "WARP_STEPS",
    "SURE",
    "measured_share",
    "search_warp",
    "smooth_warp",
    "warped_features",
]

WARP_GRID = 4
"""Side of the control field searched (WaNet's ``k``, the paper's default): 2 x 4 x 4
displacements, upsampled to the image, so the warp is smooth by construction and cannot draw a
pattern of its own."""

WARP_BOUND = 0.5
"""Largest displacement searched, in pixels, at each control point: an imperceptible warp,
the size of WaNet's at its paper's strength (0.5), which moves no pixel by more than about half
a pixel (the Fashion-MNIST row: 0.42 at most, 0.24 on average). A pixel is a large share of a
small image: at 1 pixel nine of the ten unpoisoned 8x8 digits' classes reached 27-83 % (at
half a pixel at most 23 %)."""

WARP_STEPS = 20
"""Gradient steps of the search (Adam)."""

WARP_FIT_EVERY = 6
"""The search fits its field on every sixth probe and measures it on the others: 32
displacements need few samples, and the search's cost (a scan asks every class it leaves
uncalled) stays a few seconds on 60,000 images."""

WARP_LEARNING_RATE = 0.1
"""Adam's step size on the unbounded field (``tanh`` maps it to the bound)."""

SURE = 0.9
"""The probability of the class at which a warped probe counts as moved where the search asks
one source class's probes (``confidence``): a trigger makes the model sure, a nudge across a
near boundary does not. T-shirts warped into the Fashion-MNIST bags (WaNet, one source): 100 %
of the T-shirt probes read as bags, all of them at 0.9 or more (mean 0.999); the shirts that
a searched warp pushed over to the pullovers of a model without any warp (80 % by the most
probable class): 12 % at 0.9 or more (mean 0.69). The bar the scan uses wherever it trusts a
model's reading (relabelling, the labels' ambiguity)."""


Logits = Callable[["torch.Tensor"], "torch.Tensor"]  # noqa: F821 (torch is imported lazily)


def smooth_warp(images, field):
    """``images`` (torch, ``(N, C, H, W)``) resampled through the displacement ``field``
    (torch, ``(2, k, k)`` in pixels: channel 0 moves columns, channel 1 rows), upsampled
    bicubically to ``(H, W)``; bilinear sampling, borders clamped. Differentiable in both."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    height, width = images.shape[2], images.shape[3]
    upsampled = F.interpolate(
        field[None], size=(height, width), mode="bicubic", align_corners=True
    )[0].permute(1, 2, 0)  # (H, W, 2) in pixels
    rows = torch.linspace(-1.0, 1.0, height, dtype=images.dtype)
    cols = torch.linspace(-1.0, 1.0, width, dtype=images.dtype)
    grid_rows, grid_cols = torch.meshgrid(rows, cols, indexing="ij")
    identity = torch.stack((grid_cols, grid_rows), dim=2)  # grid_sample wants (x, y)
    per_pixel = torch.tensor(
        [2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)], dtype=images.dtype
    )
    grid = torch.clamp(identity + upsampled * per_pixel, -1.0, 1.0)
    grid = grid[None].expand(images.shape[0], -1, -1, -1)
    return F.grid_sample(images, grid, mode="bilinear", align_corners=True)


def search_warp(
    logits: Logits,
    probes: np.ndarray,
    code: int,
    *,
    seed: int = 0,
    grid: int = WARP_GRID,
    bound: float = WARP_BOUND,
    steps: int = WARP_STEPS,
    confidence: float = 0.0,
) -> tuple[float, np.ndarray | None]:
    """The warp search: the share of held-out ``probes`` (images ``(N, C, H, W)``, samples of
    other classes) that ``logits`` (torch in, torch out: the model with its input scaling)
    reads as class ``code`` once warped by the field searched on the other probes (with
    ``confidence``, only those it gives the class at least that probability: :data:`SURE`),
    and that field (``(2, grid, grid)`` float32 displacements in pixels, for
    :func:`smooth_warp`).

    Every :data:`WARP_FIT_EVERY`-th probe (from the first) fits the field (cross-entropy
    towards ``code``, ``steps`` Adam steps from a small random field drawn from ``seed``), the
    other probes measure it. ``(0, None)`` with fewer than two probes or images smaller than
    2 x 2."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    probes = np.asarray(probes)
    if probes.ndim != 4 or probes.shape[0] < 2 or min(probes.shape[2:]) < 2:
        return 0.0, None
    fits = np.arange(probes.shape[0]) % WARP_FIT_EVERY == 0
    fitting = torch.from_numpy(np.ascontiguousarray(probes[fits], dtype=np.float32))
    start = np.random.default_rng(seed).normal(0.0, 0.1, size=(2, grid, grid))
    raw = torch.tensor(start, dtype=torch.float32, requires_grad=True)
    optimizer = torch.optim.Adam([raw], lr=WARP_LEARNING_RATE)
    wanted = torch.full((fitting.shape[0],), int(code), dtype=torch.long)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(logits(smooth_warp(fitting, bound * torch.tanh(raw))), wanted)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        field = (bound * torch.tanh(raw)).numpy()
    return measured_share(logits, probes, code, field, confidence=confidence), field


def measured_share(
    logits: Logits, probes: np.ndarray, code: int, field: np.ndarray, *, confidence: float = 0.0
) -> float:
    """The share of :func:`search_warp`'s measuring probes (all but every
    :data:`WARP_FIT_EVERY`-th of ``probes``) that ``logits`` reads as class ``code`` once
    warped by ``field`` (with ``confidence``, only those it gives the class at least that
    probability): the search's own measurement, for a field it found, without fitting again."""
    import torch

    probes = np.asarray(probes)
    fits = np.arange(probes.shape[0]) % WARP_FIT_EVERY == 0
    measuring = torch.from_numpy(np.ascontiguousarray(probes[~fits], dtype=np.float32))
    with torch.no_grad():
        read = logits(smooth_warp(measuring, torch.from_numpy(np.asarray(field, np.float32))))
        moved = read.argmax(dim=1) == int(code)
        if confidence > 0.0:
            moved &= torch.softmax(read, dim=1)[:, int(code)] >= confidence
    return float(moved.float().mean())


def warped_features(
    features: Logits,  # the penultimate layer here, same signature
    probes: np.ndarray,
    field: np.ndarray,
    batch: int = 1024,
) -> np.ndarray:
    """``features`` (torch in, torch out: the model's penultimate layer with its input
    scaling) of ``probes`` (images ``(N, C, H, W)``) warped by ``field``, float32 ``(N, F)``.

    Where only a warp carries a class, the warped probes and the probes themselves tell the
    group's discriminant what the warp changes in the features whatever a sample's source class
    (see :func:`~poisonguard.detectors.group_completion.complete_group`'s ``anchors``)."""
    import torch

    probes = np.asarray(probes)
    field_tensor = torch.from_numpy(np.asarray(field, dtype=np.float32))
    parts = []
    with torch.no_grad():
        for start in range(0, probes.shape[0], batch):
            images = torch.from_numpy(
                np.ascontiguousarray(probes[start : start + batch], dtype=np.float32)
            )
            parts.append(features(smooth_warp(images, field_tensor)).numpy())
    if not parts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(parts).astype(np.float32)
