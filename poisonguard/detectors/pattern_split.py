"""Part of a class carrying one fixed pattern: the pattern-split test for clean-label triggers.

A clean-label backdoor (SIG, Barni, Kallas & Tondi, ICIP 2019; the label-consistent attack of
Turner, Tsipras & Madry, 2019) adds a pattern to images of the target class and keeps their
labels. Its poisons are of the class: the tests that look for samples of foreign origin, or far
from the class's core, do not see them (on Fashion-MNIST with SIG on half of the T-shirts every
ranking the scan had put them below chance, AUROC 0.39). What sets them apart is in the input:
they are a random part of the class plus one fixed pattern. Two properties follow:

1. **A direction only this class varies along** (:func:`class_splits`). The pattern adds
   variance to its class along itself and to no other class, so the top generalized
   eigenvector of the class's scatter against the other classes' pooled scatter finds it, and
   the class's projections on it fall into two groups with an empty stretch between them.
   :func:`middle_gap` models the sorted projections' spacings as exponentials with a locally
   constant mean, as the tail test does (:mod:`poisonguard.tail_gap`): a spacing ``t`` times
   the mean of its ``2w`` neighbours has ``P = (1 + t / 2w) ** -2w``, Bonferroni over the split
   points.
2. **The two sides differ by that pattern alone** (:func:`separation_left`). Shift one side by
   the sides' mean difference: a part that is the rest plus a fixed pattern is then like the
   rest, and nearest neighbours (Schilling, JASA 1986) no longer tell the sides apart; a natural
   sub-type differs in shape, and shifted it still keeps to itself. The statistic is the share
   of the sides' nearest-neighbour separation that the shift leaves (0 when it removes it all,
   1 when it removes nothing), measured against the unshifted sides, so it does not depend on
   how visible the pattern is.

Measured on the pixels (``benchmarks/class_direction_probe.py``, docs/benchmarks.md): SIG on
half of the T-shirts and, held out, of the shirts: gap p 1.5e-37 and 5.1e-86, the split exact;
separation left 0.10-0.20 and 0.07-0.12 (three seeds of :func:`separation_left`). Every natural
class of ten Fashion-MNIST sets: gap p at least 0.0023; the digits' ones (a natural second mode
of 27 of 182, gap p 2.2e-5): separation left 0.75-0.77; a 1 % patch's group 0.87-0.89 (not a
pattern added: a patch replaces pixels).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.linalg import eigh
from sklearn.neighbors import NearestNeighbors

__all__ = [
    "MAX_WIDTH",
    "NEIGHBOURS",
    "SCATTER_ROWS",
    "PatternSplit",
    "class_splits",
    "middle_gap",
    "separation_left",
]

MAX_WIDTH = 1024
"""The test runs on samples of up to this many values (a 28x28 or 32x32 grey image): the
eigenproblem's cost grows with the cube of the width."""
SCATTER_ROWS = 2000
"""Rows of each class the scatter matrices are estimated from (all of a smaller class)."""
NEIGHBOURS = 5
"""Nearest neighbours per sample in :func:`separation_left`."""
MIXING_ROWS = 200
"""Samples of each side :func:`separation_left` draws (all of a smaller side)."""
MIXING_DRAWS = 5
"""Draws :func:`separation_left` averages (single draws of 200 a side spread by about 0.1)."""
_WINDOW_MIN, _WINDOW_MAX = 20, 200
_RIDGE = 1e-3  # of the mean variance: a direction no other class varies along stays finite


@dataclass(frozen=True)
class PatternSplit:
    """One class's projections on its own direction and their strongest gap: ``low`` and
    ``high`` are the class's samples (positions in the dataset) on either side of it."""

    code: int
    low: np.ndarray
    high: np.ndarray
    p_value: float
    statistic: float


def middle_gap(values: np.ndarray, *, min_group_size: int) -> tuple[float, int, float]:
    """The strongest empty stretch in ``values``: ``(p_value, size, statistic)``, ``size`` the
    number of values below it, at least ``min_group_size`` on either side.

    The spacings of sorted values from a smooth density are, locally, exponentials of one mean;
    a spacing ``t`` times the mean of the ``2w`` spacings around it (``w`` the smaller side's
    count, 20 to 200) has ``P(t' > t) = (1 + t / 2w) ** -2w``; the smallest over the ``m`` split
    points gets ``1 - (1 - P) ** m``.
    """
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    n = ordered.size
    first, last = min_group_size - 1, n - min_group_size - 1
    if n < 2 * min_group_size or last < first:
        return 1.0, 0, 0.0
    spacings = np.diff(ordered)
    cumulative = np.concatenate([[0.0], np.cumsum(spacings)])
    positions = np.arange(first, last + 1)
    width = np.clip(np.minimum(positions + 1, n - positions - 1), _WINDOW_MIN, _WINDOW_MAX)
    below = np.maximum(positions - width, 0)
    above = np.minimum(positions + 1 + width, n - 1)
    count = np.maximum((positions - below) + (above - positions - 1), 1)
    local = (cumulative[positions] - cumulative[below]) + (
        cumulative[above] - cumulative[positions + 1]
    )
    local = np.maximum(local / count, np.finfo(np.float64).tiny)
    statistic = spacings[positions] / local
    log_p = -count * np.log1p(statistic / count)
    best = int(np.argmin(log_p))
    p = float(np.exp(log_p[best]))
    p_value = float(-np.expm1(positions.size * np.log1p(-p))) if p < 1.0 else 1.0
    return min(1.0, p_value), int(positions[best] + 1), float(statistic[best])


def _flat(block: np.ndarray) -> np.ndarray:
    return np.asarray(block, dtype=np.float64).reshape(block.shape[0], -1)


def class_splits(
    take: Callable[[np.ndarray], np.ndarray],
    labels: np.ndarray,
    codes: np.ndarray,
    *,
    min_group_size: int,
    seed: int = 0,
) -> list[PatternSplit]:
    """For each class in ``codes``: its top generalized eigenvector against the pooled scatter
    of every other class of ``labels`` (each class's scatter from up to :data:`SCATTER_ROWS` of
    its rows, drawn with ``seed``), its samples' projections on it and their strongest gap.
    ``take(rows)`` reads samples of at most :data:`MAX_WIDTH` values (flattened here)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    scatter, means, sizes = {}, {}, {}
    for code in np.unique(labels):
        members = np.flatnonzero(labels == code)
        if members.size > SCATTER_ROWS:
            members = np.sort(rng.choice(members, size=SCATTER_ROWS, replace=False))
        rows = _flat(take(members))
        means[int(code)] = rows.mean(axis=0)
        centred = rows - means[int(code)]
        scatter[int(code)] = centred.T @ centred / rows.shape[0]
        sizes[int(code)] = int(np.sum(labels == code))
    splits = []
    for code in codes:
        code = int(code)
        members = np.flatnonzero(labels == code)
        others = [c for c in scatter if c != code]
        if members.size < 2 * min_group_size or not others:
            continue
        weight = np.array([sizes[c] for c in others], dtype=np.float64)
        rest = sum(w * scatter[c] for w, c in zip(weight / weight.sum(), others, strict=True))
        width = rest.shape[0]
        rest = rest + _RIDGE * max(np.trace(rest) / width, 1e-12) * np.eye(width)
        _, vectors = eigh(scatter[code], rest)
        projection = (_flat(take(members)) - means[code]) @ vectors[:, -1]
        p_value, size, statistic = middle_gap(projection, min_group_size=min_group_size)
        if size == 0:
            continue
        order = np.argsort(projection, kind="stable")
        low, high = np.sort(members[order[:size]]), np.sort(members[order[size:]])
        splits.append(PatternSplit(code, low, high, p_value, statistic))
    return splits


def _same_side_share(rows: np.ndarray, side: np.ndarray) -> float:
    """The larger of the two sides' shares of nearest neighbours from their own side: a tight
    side keeps to itself even where a spread one's neighbours are all across (a sub-type of
    another texture), and the mean of the two would call that mixed."""
    k = min(NEIGHBOURS, rows.shape[0] - 1)
    _, neighbours = NearestNeighbors(n_neighbors=k + 1).fit(rows).kneighbors(rows)
    same = side[neighbours[:, 1:]] == side[:, None]
    return float(max(same[side].mean(), same[~side].mean()))


def separation_left(
    first: np.ndarray, second: np.ndarray, *, low: float, high: float, seed: int = 0
) -> float:
    """The share of the nearest-neighbour separation of the samples ``first`` and ``second``
    (flattened rows) that shifting ``second`` by their mean difference leaves: 0 when the
    shifted ``second`` is like ``first``, 1 when the shift changes nothing, the mean over
    :data:`MIXING_DRAWS` draws of up to :data:`MIXING_ROWS` of each.

    Separation is the share of a pooled sample's :data:`NEIGHBOURS` nearest neighbours from its
    own side, above one half, on the side where it is larger. The shifted values are clipped to
    ``[low, high]``, the data's range, as a pattern added to an image is.
    """
    rng = np.random.default_rng(seed)
    first, second = _flat(first), _flat(second)
    size = min(len(first), len(second), MIXING_ROWS)
    side = np.repeat([True, False], size)
    left = []
    for _ in range(MIXING_DRAWS):
        a = first[rng.choice(len(first), size=size, replace=False)]
        b = second[rng.choice(len(second), size=size, replace=False)]
        shifted = np.clip(b + (a.mean(axis=0) - b.mean(axis=0)), low, high)
        apart = _same_side_share(np.vstack([a, b]), side) - 0.5
        after = _same_side_share(np.vstack([a, shifted]), side) - 0.5
        left.append(after / apart if apart > 0 else 1.0)
    return float(np.mean(left))
