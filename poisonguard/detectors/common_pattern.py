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
:data:`AGREEING_Z`; :func:`beyond_both_ways` counts the members beyond a bar corrected for the
group's size, each way (natural groups lean the agreeing way a little, not that far).

Measured on 60,000 Fashion-MNIST images (docs/benchmarks.md): the adaptive blends' mislabel-like
groups (76 and 127 samples, 57 and 93 payload) 78 % and 87 % of members agreeing; the 0.1 %
blend into the sandals 75 %; the same groups of every other class of twelve sets (unpoisoned,
10 % random flips with groups of 414-637, pair flips, SIG, checkerboard, patch) at most 44 %
(16 members), 10-20 % typically.

The same residuals complete a called group (:func:`member_residuals`, :func:`carrying`): a
poison the group missed is read by the model as its label (it learnt it) or looks like a
source class the group's members did not come from, so neither the heads nor a discriminant in
the images put it with the group; beyond its look-alikes it holds the same pieces of the same
trigger. Every member of the class is fitted, each on the class it looks like in the input and
its own class's members that look like it (a member that looks like another class may be a
missed poison, whose trigger would be fitted away), and a member joins when its residual points
along the group's beyond chance, corrected for the class's size. The members that do not
carry the group's pattern then leave it (:func:`trimmed`), judged again as the group's members
are refitted with each other as look-alikes (:func:`trimmed_refitted`): a natural far part of
the class cut with the poisons shares a look that a fit without its members keeps.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats

from poisonguard.detectors.input_neighbours import (
    NEIGHBOURS,
    REFERENCES,
    majority_labels,
    merged_nearest,
    nearest_among,
    nearest_with_distances,
    squared_distances,
    squared_norms,
)

__all__ = [
    "AGREEING_Z",
    "CARRYING_ALPHA",
    "CARRYING_ROUNDS",
    "FIT_BLOCK",
    "LOOK_ALIKES",
    "MIN_VALUES",
    "PARTS",
    "PATTERN_ROWS",
    "QUERIES",
    "RIDGE",
    "agreement",
    "beyond_both_ways",
    "carrying",
    "member_residuals",
    "one_way_p",
    "residuals",
    "trimmed",
    "trimmed_refitted",
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

PARTS = 10
"""For completion a class's members are fitted a tenth at a time, each tenth on look-alikes
among the other nine: no member is its own look-alike, and most of its class is left to fit it
on."""
PATTERN_ROWS = 20_000
"""Members of one class judged for completion at most (the flagged group and a seeded sample of
the rest): their residuals are in memory at once."""
CARRYING_ALPHA = 0.05
"""Family-wise level of :func:`carrying` over a class's members (Bonferroni): one clean sample
joined in twenty classes completed, at most, were the projections of natural members normal."""
CARRYING_ROUNDS = 10
"""Rounds of :func:`carrying` at most: the members that join sharpen the pattern for the next."""

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
    queries: int | None = QUERIES,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the members ``group`` (positions, labelled ``code``) hold beyond their look-alikes.

    ``sources[i]`` is the class member ``group[i]`` looks like. A seeded sample of up to
    ``queries`` members (``None``: every one) is fitted, by least squares, on its
    :data:`LOOK_ALIKES` nearest samples (Euclidean, in the input) of its source class and as
    many of class ``code``, among up to ``REFERENCES`` samples of each class outside the group
    and outside ``excluded``. Returns the queried positions (sorted) with their sources, and
    the residuals ``(n_queried, n_values)``, float32. Members whose source or own class has
    fewer than :data:`LOOK_ALIKES` samples to fit on are left out.
    """
    labels = np.asarray(labels)
    group = np.asarray(group, dtype=np.int64)
    sources = np.asarray(sources, dtype=np.int64)
    rng = np.random.default_rng(seed)
    if queries is not None and group.size > queries:
        keep = np.sort(rng.choice(group.size, queries, replace=False))
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


def member_residuals(
    take: Take,
    labels: np.ndarray,
    members: np.ndarray,
    code: int,
    *,
    group: np.ndarray,
    excluded: np.ndarray | None = None,
    look_alikes: np.ndarray | None = None,
    foreign: np.ndarray | None = None,
    judged: np.ndarray | None = None,
    seed: int = 0,
    block: int = 4096,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every member's residual, for completion: what each of the class's ``members`` (sorted
    positions, labelled ``code``) holds beyond its look-alikes, as :func:`residuals` fits it.

    A member's source is the majority label of its ``NEIGHBOURS`` nearest samples in the input
    (among up to ``REFERENCES`` outside ``excluded`` and outside its part), what it looks like
    rather than what a model reads it as: a poison the scan's model learnt is read as its label,
    and fitted on that class only, its residual keeps its source's look (the adaptive blend into
    the ankle boots, seed 53, explored before the foreign-looking members below were left out:
    48 of 250 missed poisons joined with the heads' reading, 72 with the input's, no clean
    sample either way; 233 and 1 clean sample with them left out). The members are fitted
    :data:`PARTS` at a time, each part on look-alikes among the others. The samples already
    flagged (``excluded``, the group among them) and the members whose neighbours say another
    class (the poisons the group missed among them) are no look-alikes: a fit on them would take
    in their trigger. ``look_alikes`` (positions among ``excluded``) may serve as look-alikes
    all the same, not as the neighbours that name a member's source, and only where they look
    like the class; ``foreign`` (positions found to look like another class before) are no
    look-alikes but may name sources (:func:`trimmed_refitted`). Up to :data:`PATTERN_ROWS`
    members are judged: ``group`` (a bool mask over ``members``) and a seeded sample of the
    rest, or ``judged`` (sorted positions among ``members``) where given. Returns the fitted
    positions (sorted), their residuals ``(n_fitted, n_values)``, float32, and their sources
    (the class each looks like).
    """
    labels = np.asarray(labels)
    members = np.asarray(members, dtype=np.int64)
    group = np.asarray(group, dtype=bool)
    rng = np.random.default_rng(seed)
    if judged is not None:
        judged = np.asarray(judged, dtype=np.int64)
    elif members.size <= PATTERN_ROWS:
        judged = members
    else:
        rest = members[~group]
        room = max(PATTERN_ROWS - int(group.sum()), 0)
        sampled = rng.choice(rest, min(room, rest.size), replace=False)
        judged = np.sort(np.concatenate([members[group], sampled]))
    unusable = np.zeros(labels.shape[0], dtype=bool)
    if excluded is not None and len(excluded):
        unusable[np.asarray(excluded, dtype=np.int64)] = True
    parts = np.arange(judged.size) % PARTS
    sources = np.full(judged.size, -1, dtype=np.int64)
    for part in range(PARTS):
        asked = np.flatnonzero(parts == part)
        outside = unusable.copy()
        outside[judged[asked]] = True
        references = np.flatnonzero(~outside)
        if asked.size == 0 or references.size < NEIGHBOURS:
            continue
        if references.size > REFERENCES:
            references = np.sort(rng.choice(references, REFERENCES, replace=False))
        nearest = nearest_among(
            take, _flat(take(judged[asked])), references, NEIGHBOURS, block=block,
            dtype=np.float32,
        )  # fmt: skip
        sources[asked] = majority_labels(labels[nearest])
    if look_alikes is not None and len(look_alikes):
        unusable[np.asarray(look_alikes, dtype=np.int64)] = False
    if foreign is not None and len(foreign):
        unusable[np.asarray(foreign, dtype=np.int64)] = True
    # a member that looks like another class is no look-alike of its class: it may be a
    # poison the group missed, whose trigger a fit on it would take in
    unusable[judged[(sources >= 0) & (sources != code)]] = True
    positions, left, looks = [], [], []
    for part in range(PARTS):
        asked = np.flatnonzero((parts == part) & (sources >= 0))
        if asked.size == 0:
            continue
        fitted, fitted_sources, beyond = residuals(
            take, labels, judged[asked], sources[asked], code,
            excluded=np.flatnonzero(unusable), seed=seed, block=block, queries=None,
        )  # fmt: skip
        positions.append(fitted)
        left.append(beyond)
        looks.append(fitted_sources)
    if not positions:
        empty = np.zeros(0, dtype=np.int64)
        return empty, np.zeros((0, 0), dtype=np.float32), empty
    positions_all, left_all = np.concatenate(positions), np.concatenate(left)
    order = np.argsort(positions_all, kind="stable")
    return positions_all[order], left_all[order], np.concatenate(looks)[order]


def carrying(
    residuals: np.ndarray, in_group: np.ndarray, alpha: float = CARRYING_ALPHA
) -> np.ndarray:
    """The members that carry the group's pattern: ``in_group`` and every member whose residual
    points along the sum of the group's residuals (its own left out) beyond chance.

    A member's projection is its unit residual's inner product with that sum; robust z-scores
    (median and scaled median absolute deviation over every member: the natural members, the
    many, set the scale) above the one-sided normal quantile of ``alpha`` over the members
    (Bonferroni) join. The members that join add to the sum for the next round, up to
    :data:`CARRYING_ROUNDS`; the group's own members never leave. A poison's residual holds the
    trigger, or the pieces of it it was given, at the same places as the group's; a natural
    member's is its own detail (the adaptive blend into the dresses, seed 51, explored with the
    heads' reading as each member's source: natural dresses reached z 3.5 of 5,994, the
    poisons the group had missed up to 14).

    Nobody joins unless the members beyond the bar outnumber, beyond chance (one-sided binomial
    at ``alpha``), those as far on the other side: a class's natural detail along the group's
    direction can be heavy-tailed both ways, poisons load one tail only (a 0.3 % checkerboard
    into the coats, every poison already flagged: 22 natural coats beyond the bar, 60 below its
    mirror; a 1 % adaptive blend into the pullovers: 321 beyond, 314 of them poisons, 1 below).
    Where they do, members then join down to the lowest threshold at which those as far on the
    other side (plus one) are at most ``alpha`` of those beyond it: the mirror stands for what
    chance puts there.
    """
    rows = np.asarray(residuals, dtype=np.float64)
    start = np.asarray(in_group, dtype=bool)
    current = start.copy()
    if rows.shape[0] == 0 or not start.any():
        return current
    units, own = _units(rows)
    bar = stats.norm.isf(alpha / rows.shape[0])

    def standardised(group: np.ndarray) -> np.ndarray | None:
        return _projection_z(rows, units, own, group)

    for _ in range(CARRYING_ROUNDS):
        z = standardised(current)
        if z is None:
            break
        updated = start | (z > bar)
        if np.array_equal(updated, current):
            break
        current = updated
    joined = int((current & ~start).sum())
    z = standardised(current) if joined else None
    if z is None:
        return current
    if one_way_p(joined, int(((z < -bar) & ~start).sum())) >= alpha:
        return start.copy()
    # past the bar as far as the other side allows: the members as far below the median are
    # what chance puts beyond any threshold, so members join down to the lowest threshold at
    # which that count (plus one), over the count beyond, keeps the false share at ``alpha``
    # (the mirror as decoys: Barber & Candes 2015; Xing et al. 2021). The bar is Bonferroni's,
    # for the first members; a trigger's weaker carriers lie just under it (the 1 % adaptive
    # blend into the ankle boots: 17 poisons left, 14 of them at z 3.0-4.3, with 4 natural
    # boots, and 5 members below -3.0)
    threshold = _mirrored_threshold(z[~start], alpha, ceiling=bar)
    if threshold is not None:
        current = current | (~start & (z >= threshold))
    return current


def trimmed(
    residuals: np.ndarray, in_group: np.ndarray, alpha: float = CARRYING_ALPHA
) -> np.ndarray:
    """The members of the group ``in_group`` that carry its pattern, the others left out.

    The same projections as :func:`carrying` (each member's unit residual on the sum of the
    group's residuals, its own left out; robust z over every member). Only when the group's
    members beyond the bar outnumber, beyond chance (one-sided binomial at ``alpha``), those as
    far on the other side does the group hold one pattern to judge its members by; then a member
    stays when its z reaches the lowest threshold at which the group's members as far below the
    median (plus one) are at most ``alpha`` of those at or above it (the mirror as decoys, as
    :func:`carrying` continues past its bar). The tests and completions take a class's natural
    members in with the poisons (the adaptive blend into the bags: 29 clean samples flagged, 21
    after this, every poison kept). Where the natural members share the group's look (a cut at
    the emptiest point takes the class's far part: the fresh blend into the trousers, 201
    natural trousers flagged), residuals fitted with the flagged samples left out of the
    look-alikes keep that look, and few leave (191 stay; fitted with them as look-alikes, 32
    would, docs/benchmarks.md). Where the guard fails the group is kept whole: a group of one
    source class, whose poisons' residuals against their own source's look-alikes leave little
    (TaCT's blend: 1 member beyond the bar, 0 below), is not judged by its pattern.
    """
    start = np.asarray(in_group, dtype=bool)
    kept = _judged_by_pattern(residuals, start, alpha)
    return start.copy() if kept is None else kept


def _judged_by_pattern(residuals: np.ndarray, start: np.ndarray, alpha: float) -> np.ndarray | None:
    """:func:`trimmed`'s members kept, or ``None`` where the group holds no one pattern to
    judge them by (or the guard's threshold is not met)."""
    rows = np.asarray(residuals, dtype=np.float64)
    if rows.shape[0] == 0 or not start.any():
        return None
    units, own = _units(rows)
    z = _projection_z(rows, units, own, start)
    if z is None:
        return None
    bar = stats.norm.isf(alpha / rows.shape[0])
    inside = z[start]
    if one_way_p(int((inside > bar).sum()), int((inside < -bar).sum())) >= alpha:
        return None
    threshold = _mirrored_threshold(inside, alpha)
    if threshold is None:
        return None
    return start & (z >= threshold)


def trimmed_refitted(
    take: Take,
    labels: np.ndarray,
    members: np.ndarray,
    code: int,
    *,
    in_group: np.ndarray,
    judged: np.ndarray,
    residuals: np.ndarray,
    sources: np.ndarray,
    excluded: np.ndarray,
    seed: int = 0,
    block: int = 4096,
) -> np.ndarray:
    """:func:`trimmed`, with the group's members refitted round by round: which of the
    ``judged`` members (``in_group``, a bool mask over them; ``residuals`` and ``sources`` as
    :func:`member_residuals` gave them, ``excluded`` as it was given) carry the group's pattern.

    The first fit keeps every flagged sample out of the look-alikes, so that no poison's trigger
    is fitted away. But where the group holds a natural part of its class that shares a look (a
    mixed-origin group cut at the emptiest point, with no gap: the fresh adaptive blend into the
    trousers, 201 natural far trousers with the 180 poisons), each of those members is fitted on
    the class's other samples only, keeps the part's look, and the group's sum points along it:
    the trim leaves few of them (10). So the group's members are refitted, up to
    :data:`CARRYING_ROUNDS` rounds: the class's flagged members may serve as each other's
    look-alikes wherever they look like the class (a member that looks like another class, a
    poison made from one, still does not; nor do the members outside the group the first fit
    found to), and the members the trim has left out, which do not carry the pattern, may also
    name a member's source (the far trousers' nearest samples are each other: with all of them
    kept out, 145 of the 201 looked like another class). A member left out stays out; the rounds
    end when nobody more leaves, or when the group no longer holds one pattern. Members outside
    the group keep their first fit: they set the scale. Freeing every flagged member of the
    class at once to name sources too (explored, docs/benchmarks.md) gave blend poisons that
    stand near each other in the input the class's look: 22 of the 600 poisons of a blend into
    the trousers (two backdoors at 1 %) left with it. The samples outside the group are searched
    once for every round (:class:`_GroupRefits`).
    """
    judged = np.asarray(judged, dtype=np.int64)
    group = np.asarray(in_group, dtype=bool)
    rows = np.asarray(residuals, dtype=np.float32).copy()
    kept = _judged_by_pattern(rows, group, CARRYING_ALPHA)
    if kept is None:  # no one pattern: nothing to judge the members by, refitted or not
        return group.copy()
    excluded = np.asarray(excluded, dtype=np.int64)
    refitted = judged[group]
    refits = _GroupRefits(
        take, labels, members, code, refitted=refitted, excluded=excluded,
        # the members the first fit found to look like another class stay out of every refit
        foreign=np.setdiff1d(judged[np.asarray(sources) != int(code)], refitted),
        seed=seed, block=block,
    )  # fmt: skip
    for _ in range(CARRYING_ROUNDS):
        positions, fitted = refits.residuals(freed=judged[group & ~kept])
        if positions.size:
            rows[np.searchsorted(judged, positions)] = fitted
        updated = _judged_by_pattern(rows, group, CARRYING_ALPHA)
        if updated is None:
            break
        updated &= kept  # a member left out stays out: it serves as a look-alike now
        if np.array_equal(updated, kept):
            break
        kept = updated
    return kept


class _GroupRefits:
    """The group's members (``refitted``, sorted positions of class ``code``) fitted as
    :func:`member_residuals` fits ``judged`` members, round after round of
    :func:`trimmed_refitted`. Only two things change between rounds: the members the trim has
    left out are freed from ``excluded`` to name sources, and the group's members whose
    neighbours say another class are no look-alikes.

    So a round is not a new search (ten rounds of searches over up to 20,000 samples per part
    took 15 of the 47 s of a cached scan of an adaptive blend, profiled): the nearest samples
    outside the group are found once, the distances to the group's own members each round,
    and the two merged. A round's neighbours are those one search over them all would find
    (ties to the smaller position), with one difference: where more than ``REFERENCES``
    samples may name a member's source (or be a class's look-alikes), the sample of them is
    drawn once, outside the group (per round, the freed members were drawn with them), and
    the group's members come in beside it. A member fitted on the same look-alikes as the
    round before keeps its residual."""

    def __init__(
        self,
        take: Take,
        labels: np.ndarray,
        members: np.ndarray,
        code: int,
        *,
        refitted: np.ndarray,
        excluded: np.ndarray,
        foreign: np.ndarray,
        seed: int,
        block: int,
    ) -> None:
        self.take, self.labels, self.code = take, np.asarray(labels), int(code)
        self.refitted, self.seed, self.block = refitted, seed, block
        n = self.labels.shape[0]
        is_excluded = _mask(n, excluded)
        is_refitted = _mask(n, refitted)
        # what may be a look-alike whatever the round: the class's flagged members may (those
        # of other classes may not), the members found to look like another class may not,
        # and the group's own members are judged round by round
        unusable = (is_excluded & ~_mask(n, members)) | _mask(n, foreign)
        self.stable_look_alikes = ~unusable & ~is_refitted
        # the group's members that name sources only once freed
        self.freeable = is_refitted & is_excluded
        self.parts = np.arange(refitted.size) % PARTS
        self.query = _flat(take(refitted))
        self.query_norms = squared_norms(self.query)
        rng = np.random.default_rng(seed)
        # per part: the pool that may name sources, drawn once, and its nearest to the part
        self.naming: dict[int, tuple[int, np.ndarray, np.ndarray]] = {}
        for part in range(PARTS):
            asked = np.flatnonzero(self.parts == part)
            if asked.size == 0:
                continue
            outside = is_excluded.copy()
            outside[refitted[asked]] = True
            pool = np.flatnonzero(~outside)
            if pool.size > REFERENCES:
                pool = np.sort(rng.choice(pool, REFERENCES, replace=False))
            found, distances = nearest_with_distances(
                take, self.query[asked], pool, NEIGHBOURS, block=block, dtype=np.float32
            )
            self.naming[part] = (pool.size, found, distances)
        # per class: its look-alikes outside the group, for the members asked so far
        self.looks: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.last: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        # the class each member looked like in the last round (-1: not asked)
        self.sources = np.full(refitted.size, -1, dtype=np.int64)

    def residuals(self, freed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The fitted members' positions (sorted) and residuals this round, with the group's
        members ``freed`` (positions) free to name sources."""
        refitted, code = self.refitted, self.code
        is_freed = np.isin(refitted, freed) & self.freeable[refitted]
        sources = np.full(refitted.size, -1, dtype=np.int64)
        for part, (pool_size, found, distances) in self.naming.items():
            asked = np.flatnonzero(self.parts == part)
            beside = np.flatnonzero(is_freed & (self.parts != part))
            if pool_size + beside.size < NEIGHBOURS:
                continue
            nearest, _ = self._merged(asked, found, distances, beside, NEIGHBOURS)
            sources[asked] = majority_labels(self.labels[nearest])
        self.sources = sources
        # a member that looks like another class is no look-alike of its class: it may be a
        # poison the group missed, whose trigger a fit on it would take in
        looks_own = (sources < 0) | (sources == code)
        positions, rows = [], []
        for part in range(PARTS):
            asked = np.flatnonzero((self.parts == part) & (sources >= 0))
            if asked.size == 0:
                continue
            beside = np.flatnonzero(looks_own & (self.parts != part))
            looks: dict[int, dict[int, np.ndarray]] = {}  # class -> member -> its look-alikes
            for cls in np.unique(np.append(sources[asked], code)):
                cls = int(cls)
                asking = asked if cls == code else asked[sources[asked] == cls]
                found, distances, stable = self._look_alikes(cls, asking)
                extra = beside if cls == code else beside[:0]
                if stable + extra.size < LOOK_ALIKES:
                    continue
                nearest = self._merged(asking, found, distances, extra, LOOK_ALIKES)[0]
                looks[cls] = dict(zip(asking.tolist(), nearest, strict=True))
            if code not in looks:
                continue
            fitted = [m for m in asked.tolist() if int(sources[m]) in looks]
            spans = [np.concatenate([looks[int(sources[m])][m], looks[code][m]]) for m in fitted]
            fitted_members = np.asarray(fitted, dtype=np.int64)
            positions.append(refitted[fitted_members])
            rows.append(self._fits(fitted_members, np.asarray(spans)))
        if not positions:
            return np.zeros(0, dtype=np.int64), np.zeros((0, self.query.shape[1]), np.float32)
        positions_all, rows_all = np.concatenate(positions), np.concatenate(rows)
        order = np.argsort(positions_all, kind="stable")
        return positions_all[order], rows_all[order]

    def _merged(
        self,
        asked: np.ndarray,
        found: np.ndarray,
        distances: np.ndarray,
        beside: np.ndarray,
        count: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``count`` nearest of the members ``asked`` (indices into the group) among their
        nearest samples outside the group (``found``, ``distances``) and the group's members
        ``beside`` (indices)."""
        if beside.size == 0:
            return found[:, :count], distances[:, :count]
        nearest = np.empty((asked.size, count), dtype=np.int64)
        nearest_distances = np.empty((asked.size, count), dtype=distances.dtype)
        # a few queries at a time: a group of thousands would otherwise hold a distance and a
        # position for every pair of its members at once
        step = max(1, _MERGED_VALUES // (found.shape[1] + beside.size))
        for start in range(0, asked.size, step):
            rows = slice(start, start + step)
            near_members = squared_distances(
                self.query[asked[rows]],
                self.query_norms[asked[rows]][:, None],
                self.query[beside],
                self.query_norms[beside],
            )
            candidates = np.concatenate(
                [found[rows], np.broadcast_to(self.refitted[beside], near_members.shape)], axis=1
            )
            nearest[rows], nearest_distances[rows] = merged_nearest(
                candidates, np.concatenate([distances[rows], near_members], axis=1), count
            )
        return nearest, nearest_distances

    def _look_alikes(self, cls: int, asking: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """The :data:`LOOK_ALIKES` nearest samples of class ``cls`` outside the group to each
        of the members ``asking`` (indices into the group), with their distances, and how many
        samples they were chosen among; searched once per member and class."""
        if cls not in self.looks:
            references = np.flatnonzero(self.stable_look_alikes & (self.labels == cls))
            if references.size > REFERENCES:
                rng = np.random.default_rng((self.seed, cls))
                references = np.sort(rng.choice(references, REFERENCES, replace=False))
            width = min(LOOK_ALIKES, references.size)
            self.looks[cls] = (
                references,
                np.full((self.refitted.size, width), -1, dtype=np.int64),
                np.full((self.refitted.size, width), np.inf, dtype=np.float32),
            )
        references, found, distances = self.looks[cls]
        missing = asking[found[asking, 0] < 0] if found.shape[1] else asking[:0]
        if missing.size:
            found[missing], distances[missing] = nearest_with_distances(
                self.take, self.query[missing], references, LOOK_ALIKES, block=self.block,
                dtype=np.float32,
            )  # fmt: skip
        return found[asking], distances[asking], references.size

    def _fits(self, fitted: np.ndarray, spans: np.ndarray) -> np.ndarray:
        """The residuals of the members ``fitted`` (indices into the group) on their ``spans``;
        a member fitted on the same look-alikes as the round before keeps its residual (a
        member's fit depends on its own row and look-alikes only)."""
        rows = np.empty((fitted.size, self.query.shape[1]), dtype=np.float32)
        changed = []
        for i, member in enumerate(fitted.tolist()):
            before = self.last.get(member)
            if before is not None and np.array_equal(before[0], spans[i]):
                rows[i] = before[1]
            else:
                changed.append(i)
        changed_at = np.asarray(changed, dtype=np.int64)
        for start in range(0, changed_at.size, FIT_BLOCK):
            part = changed_at[start : start + FIT_BLOCK]
            rows[part] = _beyond(self.take, self.query[fitted[part]], spans[part])
        for i in changed_at.tolist():
            self.last[int(fitted[i])] = (spans[i].copy(), rows[i].copy())
        return rows


_MERGED_VALUES = 1 << 22
"""Candidates (a distance and a position each) merged at once by :class:`_GroupRefits`: 48 MB."""


def _mask(size: int, positions: np.ndarray) -> np.ndarray:
    mask = np.zeros(size, dtype=bool)
    if len(positions):
        mask[np.asarray(positions, dtype=np.int64)] = True
    return mask


def one_way_p(beyond: int, as_far: int) -> float:
    """The one-sided binomial p-value of ``beyond`` of ``beyond + as_far`` members lying one
    way, each a fair coin (1 where there are none): the two-tailed guard of
    :func:`carrying`, :func:`trimmed` and the decision's use of :func:`beyond_both_ways`."""
    if beyond + as_far == 0:
        return 1.0
    return float(stats.binom.sf(beyond - 1, beyond + as_far, 0.5))


def _mirrored_threshold(values: np.ndarray, alpha: float, ceiling: float = np.inf) -> float | None:
    """The lowest positive threshold (at most ``ceiling``) at which the ``values`` as far below
    zero (plus one) are at most ``alpha`` of those at or above it (the mirror as decoys:
    knockoff+); ``None`` where none is."""
    above = np.sort(values)
    below = np.sort(-values)
    thresholds = above[(above > 0) & (above <= ceiling)]
    at_or_above = above.size - np.searchsorted(above, thresholds, side="left")
    mirrored = below.size - np.searchsorted(below, thresholds, side="left")
    passing = thresholds[(mirrored + 1) / at_or_above <= alpha]
    return float(passing.min()) if passing.size else None


def _units(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each residual scaled to unit length, and each one's inner product with its own unit
    residual (its share of a sum it is in)."""
    norms = np.linalg.norm(rows, axis=1)
    units = rows / np.where(norms > 0, norms, 1.0)[:, None]
    return units, (units * rows).sum(axis=1)


def _projection_z(
    rows: np.ndarray, units: np.ndarray, own: np.ndarray, group: np.ndarray
) -> np.ndarray | None:
    """Each member's projection on the sum of the residuals of ``group`` (its own left out), as
    robust z-scores over every member; ``None`` when they do not spread."""
    projection = units @ rows[group].sum(axis=0) - np.where(group, own, 0.0)
    centre = np.median(projection)
    spread = 1.4826 * np.median(np.abs(projection - centre))
    return None if spread <= 0 else (projection - centre) / spread


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


def beyond_both_ways(agreement: np.ndarray, alpha: float = CARRYING_ALPHA) -> tuple[int, int]:
    """How many members' ``agreement`` lies beyond the bar, the one-sided normal quantile of
    ``alpha`` over the members (Bonferroni), and how many as far the other way.

    Were the residuals independent, both counts would be a fair coin's and rarely above one. A
    class's natural mislabel-like samples share some detail (their agreement leans the
    agreeing way: the Fashion-MNIST bags, unpoisoned, 16 members above :data:`AGREEING_Z` and
    1 below its mirror), but not up to the bar (164 natural groups of 20 Fashion-MNIST scans:
    at most one member beyond it either way); a trigger's pieces put its carriers far beyond it
    (the adaptive blend into the shirts: 22, and 2 the other way).
    """
    agreement = np.asarray(agreement, dtype=np.float64)
    if agreement.size == 0:
        return 0, 0
    bar = stats.norm.isf(alpha / agreement.size)
    return int(np.count_nonzero(agreement > bar)), int(np.count_nonzero(agreement < -bar))


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
