"""Do a group's members hold one pattern that their look-alikes do not? The common-pattern test.

The transplant test (:mod:`~poisonguard.detectors.transplant`) confirms a group by what the
scan's model does with the group's difference: a trigger it learned moves other classes to the
group's label. An attack built so that the model does *not* learn the trigger from the poisoned
training set leaves nothing to move: the adaptive blend (Qi et al., ICLR 2023) gives each poison
only some pieces of its trigger and adds conservatism samples that carry pieces with their true
labels. Its payload still reads, to heads that never saw it, as the source classes' images with
the target's label (mislabel-like; :mod:`poisonguard.decision`), but so does a class's natural
share of ambiguous or mislabelled samples.

What tells them apart is in the input. A poison is a source-class image with part of the
trigger in it: what its nearest samples cannot explain holds the trigger, the same values at the
same places in every poison, whatever its source class. A natural mislabel-like sample (trousers
that look like a dress) is what its look-alikes are; what is left of it is its own detail,
unlike the next member's. :func:`residuals` fits each queried member, by least squares, on its
:data:`LOOK_ALIKES` nearest samples of the class it looks like and as many of the class it is
labelled (the second span takes in what the given class's look adds: a natural member's own
class is what sets it apart from its look-alikes, the same in every member), and keeps what is
left. :func:`agreement` gives each member how far its residual points along the others', only
those that look like *another* class than it does (a natural part's members that look like the
same class share that class's detail): ``sum_j <r_i, r_j> / sqrt(sum_j <r_i, r_j>^2)``, about
standard normal were the residuals independent. A member agrees beyond chance above
:data:`AGREEING_Z`.

Measured on 60,000 Fashion-MNIST images (docs/benchmarks.md): the adaptive blends' mislabel-like
groups (76 and 127 samples, 57 and 93 payload) 78 % and 87 % of members agreeing; the 0.1 %
blend into the sandals 75 %; the same groups of every other class of twelve sets (unpoisoned,
10 % random flips with groups of 414-637, pair flips, SIG, checkerboard, patch) at most 44 %
(16 members), 10-20 % typically.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from poisonguard.detectors.input_neighbours import REFERENCES, nearest_among

__all__ = [
    "AGREEING_Z",
    "FIT_BLOCK",
    "LOOK_ALIKES",
    "MIN_VALUES",
    "QUERIES",
    "RIDGE",
    "agreement",
    "residuals",
]

LOOK_ALIKES = 40
"""Nearest samples of each of the two classes a member is fitted on. Fewer leave more of a
natural member's own look in its residual: the sum of a group's cross-source residual inner
products over the root of their squares (docs/benchmarks.md), for the trousers' natural group
(78 samples), 7.6 with 10 of each and 4.5 with 40; for the adaptive blend's, 29.3 and 28.2.
Chosen among 10, 20 and 40 on those Fashion-MNIST sets."""
MIN_VALUES = 8 * LOOK_ALIKES
"""Values per sample the test needs: a residual must keep most of the sample after a fit on
``2 * LOOK_ALIKES`` look-alikes (Fashion-MNIST's 784 keep 704). The 8x8 digits' 64 values are
spanned by their look-alikes exactly, and leave nothing to compare: not asked."""
AGREEING_Z = 1.645
"""A member agrees with the others beyond chance above this (one-sided 5 % of a standard
normal)."""
QUERIES = 200
"""Members queried at most (a seeded sample)."""
FIT_BLOCK = 32
"""Members fitted at once: their look-alikes in memory together (32 x 80 x 784 float32 on
Fashion-MNIST, 8 MB)."""
RIDGE = 1e-6
"""The fit's ridge, relative to the mean squared norm of the look-alikes: numerical only."""

Take = Callable[[np.ndarray], np.ndarray]


def residuals(
    take: Take,
    labels: np.ndarray,
    group: np.ndarray,
    sources: np.ndarray,
    code: int,
    *,
    excluded: np.ndarray | None = None,
    seed: int = 0,
    block: int = 4096,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the members ``group`` (positions, labelled ``code``) hold beyond their look-alikes.

    ``sources[i]`` is the class member ``group[i]`` looks like. A seeded sample of up to
    :data:`QUERIES` members is fitted, by least squares, on its :data:`LOOK_ALIKES` nearest
    samples (Euclidean, in the input) of its source class and as many of class ``code``, among
    up to ``REFERENCES`` samples of each class outside the group and outside ``excluded``.
    Returns the queried positions (sorted) with their sources, and the residuals
    ``(n_queried, n_values)``, float32. Members whose source or own class has fewer than
    :data:`LOOK_ALIKES` samples to fit on are left out.
    """
    labels = np.asarray(labels)
    group = np.asarray(group, dtype=np.int64)
    sources = np.asarray(sources, dtype=np.int64)
    rng = np.random.default_rng(seed)
    if group.size > QUERIES:
        keep = np.sort(rng.choice(group.size, QUERIES, replace=False))
        group, sources = group[keep], sources[keep]
    order = np.argsort(group, kind="stable")
    group, sources = group[order], sources[order]
    usable = np.ones(labels.shape[0], dtype=bool)
    usable[group] = False
    if excluded is not None and len(excluded):
        usable[np.asarray(excluded, dtype=np.int64)] = False
    # float32: the residuals' agreement does not need more, and the reads cost half
    query = _flat(take(group))
    code = int(code)
    nearest: dict[int, np.ndarray] = {}  # class -> (n_group, LOOK_ALIKES) for its queries
    for cls in np.unique(np.append(sources, code)):
        asking = np.arange(group.size) if cls == code else np.flatnonzero(sources == cls)
        references = np.flatnonzero(usable & (labels == cls))
        if references.size < LOOK_ALIKES:
            continue
        if references.size > REFERENCES:
            references = np.sort(rng.choice(references, REFERENCES, replace=False))
        found = np.full((group.size, LOOK_ALIKES), -1, dtype=np.int64)
        found[asking] = nearest_among(
            take, query[asking], references, LOOK_ALIKES, block=block, dtype=np.float32
        )
        nearest[int(cls)] = found
    fitted = np.asarray(
        [i for i, source in enumerate(sources) if int(source) in nearest and code in nearest],
        dtype=np.int64,
    )
    if fitted.size == 0:
        return group[fitted], sources[fitted], np.zeros((0, query.shape[1]), dtype=np.float32)
    looks = np.stack([nearest[int(sources[i])][i] for i in fitted])
    spans = np.concatenate([looks, nearest[code][fitted]], axis=1)  # (n, 2 * LOOK_ALIKES)
    left = np.empty((fitted.size, query.shape[1]), dtype=np.float32)
    for start in range(0, fitted.size, FIT_BLOCK):
        part = slice(start, start + FIT_BLOCK)
        left[part] = _beyond(take, query[fitted[part]], spans[part])
    return group[fitted], sources[fitted], left


def _beyond(take: Take, members: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """What each of ``members`` (rows) holds beyond a least-squares fit on the samples of its
    row of ``spans`` (positions)."""
    # each look-alike read once, in increasing position (neighbours repeat across members)
    unique, inverse = np.unique(spans, return_inverse=True)
    basis = _flat(take(unique))[inverse.reshape(spans.shape)]  # (n, 2 * LOOK_ALIKES, values)
    # least squares by its normal equations, the block's members at once (a small ridge for
    # look-alikes that repeat): an SVD per member took the ten classes of unpoisoned
    # Fashion-MNIST 26.5 s, normal equations one member at a time 6.7 s
    gram = basis @ basis.transpose(0, 2, 1)
    ridge = RIDGE * np.trace(gram, axis1=1, axis2=2) / gram.shape[1] + 1e-12
    gram[:, np.arange(gram.shape[1]), np.arange(gram.shape[1])] += ridge[:, None]
    coefficients = np.linalg.solve(gram, basis @ members[:, :, None])
    return members - (basis.transpose(0, 2, 1) @ coefficients)[:, :, 0]


def agreement(residuals: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Each member's agreement with the members that look like another class than it does:
    ``sum_j <r_i, r_j> / sqrt(sum_j <r_i, r_j>^2)`` over those ``j`` (about standard normal,
    were the residuals independent and centred); 0 for a member with no such ``j``."""
    residuals = np.asarray(residuals, dtype=np.float64)
    sources = np.asarray(sources)
    if residuals.shape[0] == 0:
        return np.zeros(0)
    inner = residuals @ residuals.T
    other = sources[:, None] != sources[None, :]
    total = (inner * other).sum(axis=1)
    spread = np.sqrt((inner**2 * other).sum(axis=1))
    return np.divide(total, spread, out=np.zeros_like(total), where=spread > 0)


def _flat(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows.reshape(rows.shape[0], -1)
