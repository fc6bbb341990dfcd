"""Does a group look, in the input itself, like another class? The input-neighbour test.

A dirty-label backdoor's poisons are samples of a source class with a trigger added and the
target's label: the model learns them as the target (the trigger is a shortcut), but in the
input they still are the source class's pixels or column values, the trigger a small part of
them. Their nearest neighbours in the input, among the samples outside the group, carry the
source's label. A natural sub-type of a class (slim and wide trousers) has neighbours of its own
class. :func:`neighbour_votes` gives what the neighbours say of (a sample of) a group, and
:func:`foreign_share` the share of it for which they say another class.

It is the evidence of *foreign origin* where runner-up variety (the mixed-origin tests of
:mod:`poisonguard.decision`) cannot speak: with two or three classes every sample's runner-up
is one of one or two classes. Measured on two-class subsets of Fashion-MNIST (the smaller
cluster of each class's two-means split, 10 neighbours among the samples outside it): a 5 %
patch's poisons 99 %, the clean clusters of four classes 0-1 %; on the breast-cancer table
(standardised columns) the clean clusters 1-2 %.

Raw inputs, not features: the features come from a model trained on the audited labels, which
pulls the poisons towards their given class. Distances are Euclidean over the flattened sample
(table columns standardised first: their units differ). The query is a seeded sample of up to
:data:`QUERIES` of the group and the reference a seeded sample of up to :data:`REFERENCES` of the
rest, read a block at a time, so the cost does not grow with the dataset beyond that.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = [
    "FOREIGN_SHARE",
    "KeptNorms",
    "NEIGHBOURS",
    "QUERIES",
    "REFERENCES",
    "foreign_share",
    "majority_labels",
    "merged_nearest",
    "nearest_among",
    "nearest_means",
    "nearest_with_distances",
    "nearest_samples",
    "neighbour_votes",
    "squared_distances",
    "squared_norms",
]

FOREIGN_SHARE = 0.5
"""A group is of foreign origin when the neighbours of at least this share of it say another
class: most of it, not a few members near the boundary."""
NEIGHBOURS = 10
"""Neighbours per queried sample; their majority label is what the input says."""
QUERIES = 200
"""Members of the group queried at most."""
REFERENCES = 20_000
"""Samples outside the group that the neighbours are drawn from, at most."""

Take = Callable[[np.ndarray], np.ndarray]


def neighbour_votes(
    take: Take,
    labels: np.ndarray,
    group: np.ndarray,
    *,
    standardise: bool,
    excluded: np.ndarray | None = None,
    seed: int = 0,
    block: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """What the input says of the samples ``group`` (positions): a seeded sample of up to
    ``QUERIES`` of them (sorted positions) and, for each, the majority label (the smallest on a
    tie) of its ``NEIGHBOURS`` nearest samples among up to ``REFERENCES`` outside the group and
    outside ``excluded`` (positions whose labels are not to be trusted: samples already
    flagged, whose poisons carry another class's label and look like their source).
    ``take(positions)`` reads samples; ``standardise`` scales each input column by the
    reference's mean and standard deviation (tables). Empty arrays for an empty group or when
    fewer than ``NEIGHBOURS`` samples are left to compare with.
    """
    labels = np.asarray(labels)
    queries, nearest = nearest_samples(
        take,
        labels.shape[0],
        group,
        standardise=standardise,
        excluded=excluded,
        seed=seed,
        block=block,
    )
    if queries.size == 0:
        return queries, np.zeros(0, dtype=labels.dtype)
    return queries, majority_labels(labels[nearest]).astype(labels.dtype)


def majority_labels(neighbour_labels: np.ndarray) -> np.ndarray:
    """Each row's most frequent label (the smallest on a tie), for rows of neighbours' labels
    (non-negative integers); empty for no rows."""
    rows = np.asarray(neighbour_labels, dtype=np.int64)
    if rows.size == 0:
        return np.zeros(0, dtype=np.int64)
    width = int(rows.max()) + 1
    return np.array([np.bincount(row, minlength=width).argmax() for row in rows], dtype=np.int64)


def nearest_samples(
    take: Take,
    n_samples: int,
    group: np.ndarray,
    *,
    standardise: bool,
    excluded: np.ndarray | None = None,
    seed: int = 0,
    block: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded sample of up to ``QUERIES`` of the samples ``group`` (sorted positions) and,
    for each, the positions of its ``NEIGHBOURS`` nearest samples (nearest first) among up to
    ``REFERENCES`` of the ``n_samples`` outside the group and outside ``excluded``; see
    :func:`neighbour_votes`. Empty arrays (the second with ``NEIGHBOURS`` columns) for an empty
    group or when fewer than ``NEIGHBOURS`` samples are left to compare with."""
    group = np.asarray(group, dtype=np.int64)
    rng = np.random.default_rng(seed)
    outside = np.setdiff1d(np.arange(n_samples), group)
    if excluded is not None and len(excluded):
        outside = np.setdiff1d(outside, np.asarray(excluded, dtype=np.int64))
    if group.size == 0 or outside.size < NEIGHBOURS:
        return np.zeros(0, dtype=np.int64), np.zeros((0, NEIGHBOURS), dtype=np.int64)
    queries = _sample(rng, group, QUERIES)
    references = _sample(rng, outside, REFERENCES)
    query = _flat(take(queries))
    kept = None
    if standardise:
        # the column statistics need every reference first; read them once and keep them,
        # scaled as the query is
        kept = [
            _flat(take(references[start : start + block]))
            for start in range(0, references.size, block)
        ]
        stacked = np.concatenate(kept)
        shift = stacked.mean(axis=0)
        spread = stacked.std(axis=0)
        scale = np.where(spread > 0, spread, 1.0)
        query = (query - shift) / scale
        kept = [(rows - shift) / scale for rows in kept]
    nearest = nearest_among(take, query, references, NEIGHBOURS, block=block, kept=kept)
    return queries, nearest


def nearest_among(
    take: Take,
    query: np.ndarray,
    references: np.ndarray,
    count: int,
    *,
    block: int = 4096,
    kept: list[np.ndarray] | None = None,
    dtype: type = np.float64,
) -> np.ndarray:
    """The positions of the ``count`` nearest of the samples ``references`` (positions, at least
    ``count``) to each row of ``query`` (flattened), nearest first; the references are read
    ``block`` at a time, or taken from ``kept`` (those blocks, read and scaled as the query
    is); distances in ``dtype``."""
    return nearest_with_distances(
        take, query, references, count, block=block, kept=kept, dtype=dtype
    )[0]


def nearest_with_distances(
    take: Take,
    query: np.ndarray,
    references: np.ndarray,
    count: int,
    *,
    block: int = 4096,
    kept: list[np.ndarray] | None = None,
    dtype: type = np.float64,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`nearest_among`'s positions and their squared distances (``dtype``), for a caller
    that merges them with the distances to other samples (:func:`merged_nearest`).

    In float64, each block's distances are screened in float32 first (:class:`_Screen`) and
    computed in float64 only for the references the screen cannot rule out."""
    query = np.asarray(query, dtype=dtype)
    best_distance = np.full((query.shape[0], 0), np.inf, dtype=dtype)
    best_position = np.zeros((query.shape[0], 0), dtype=np.int64)
    query_norms = squared_norms(query)[:, None]
    screen = _Screen.of(query, query_norms) if query.dtype == np.float64 else None
    # the samples' own norms, kept across searches where the caller keeps them (not those of
    # ``kept``: rows scaled for this search alone)
    norms = take if isinstance(take, KeptNorms) and not kept else None
    for number, start in enumerate(range(0, references.size, block)):
        positions = references[start : start + block]
        samples = kept[number] if kept else take(positions)
        samples = np.asarray(samples).reshape(positions.size, -1)
        full = best_distance.shape[1] == count
        pairs = None
        if screen is not None and positions.size > count:
            pairs = screen.pairs(
                samples, best_distance[:, -1] if full else None, count, positions, norms
            )
        if pairs is None:
            rows = np.asarray(samples, dtype=dtype)
            row_norms = None if norms is None else norms.squared_norms(positions, rows)
            distance = squared_distances(query, query_norms, rows, row_norms)
            if full:
                # once every row holds ``count`` nearest, only a reference nearer than a row's
                # farthest so far can enter (one as near ties with an earlier position and
                # stays out): a comparison, where choosing each block's nearest took as long
                # as its distances; flat indices, as np.nonzero of a 2-D mask took eight times
                # as long
                rows_asking, columns = np.divmod(
                    np.flatnonzero(distance < best_distance[:, -1:]), distance.shape[1]
                )
                near, near_position = _side_by_side(
                    rows_asking, columns, distance[rows_asking, columns], positions, query.shape[0]
                )
            else:
                # the block's own nearest first, then those against the nearest so far: the
                # same result as choosing among them all at once (the earlier blocks' first
                # where distances tie, then the block's in column order), without a (Q, block)
                # copy of every position
                keep = _smallest(distance, count)
                near = np.take_along_axis(distance, keep, axis=1)
                near_position = positions[keep]
        else:
            rows_asking, columns, exact = pairs
            if full:
                entering = exact < best_distance[rows_asking, -1]
                rows_asking, columns = rows_asking[entering], columns[entering]
                exact = exact[entering]
            near, near_position = _side_by_side(
                rows_asking, columns, exact, positions, query.shape[0]
            )
            if not full:
                # every row has at least ``count`` candidates, in column order: the block's
                # nearest, ties in column order, as choosing among the whole block gives
                keep = _smallest(near, count)
                near = np.take_along_axis(near, keep, axis=1)
                near_position = np.take_along_axis(near_position, keep, axis=1)
        if near.shape[1] == 0:
            continue
        best_distance = np.concatenate([best_distance, near], axis=1)
        best_position = np.concatenate([best_position, near_position], axis=1)
        keep = _smallest(best_distance, count)
        best_distance = np.take_along_axis(best_distance, keep, axis=1)
        best_position = np.take_along_axis(best_position, keep, axis=1)
    return best_position, best_distance


def _side_by_side(
    rows: np.ndarray, columns: np.ndarray, values: np.ndarray, positions: np.ndarray, n_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``values`` at ``(rows, columns)`` of a block (ordered by row, then column) and the
    ``positions`` of their columns, each row's side by side in column order and padded by
    infinity: ``(n_rows, most per row)`` arrays."""
    per_row = np.bincount(rows, minlength=n_rows)
    slot = np.arange(columns.size) - (np.cumsum(per_row) - per_row)[rows]
    width = int(per_row.max()) if per_row.size else 0
    near = np.full((n_rows, width), np.inf, dtype=values.dtype)
    near[rows, slot] = values
    near_position = np.zeros((n_rows, width), dtype=np.int64)
    near_position[rows, slot] = positions[columns]
    return near, near_position


class _Screen:
    """Float64 nearest-sample distances, screened in float32.

    A float32 product of the query and a block of references costs half the float64 one (200
    queries against 20,000 Fashion-MNIST images: 0.08 against 0.17 s), but rounds. Its error
    has a bound: for vectors of ``K`` values, the float32 squared distance of ``q`` and ``r``
    is within ``(2 K + 8) u (|q|^2 + |r|^2)`` of the exact one (``u = 2^-24``; the product's
    and the norms' sums ``K u`` of their terms each, Higham's ``gamma_K``, ``|q_i r_i|`` at
    most ``(q_i^2 + r_i^2) / 2``; the two additions, the float32 rounding of the inputs),
    here widened to ``(2 K + 32) u``. A reference the bound rules out cannot be among the
    nearest, nor tie with them; the others get their float64 distance, computed as
    :func:`squared_distances` computes it (the same operations on the same values). So the
    neighbours are those of the float64 search, and on integer-valued samples (images of
    8-bit pixels), where every float64 sum is exact, the distances are bit for bit the same.
    """

    def __init__(self, query: np.ndarray, query_norms: np.ndarray) -> None:
        self.query = query
        self.query_norms = query_norms  # (Q, 1), float64
        self.query32 = query.astype(np.float32)
        self.query_norms32 = _dot_self(self.query32)[:, None]
        self.slack = (2 * query.shape[1] + 32) * 2.0**-24

    @classmethod
    def of(cls, query: np.ndarray, query_norms: np.ndarray) -> _Screen | None:
        """A screen for ``query`` (float64), or ``None`` where float32 cannot hold its squared
        norms (or they are not finite): the block is then computed in float64 whole."""
        if query.size == 0 or not np.all(query_norms < _FLOAT32_NORMS):
            return None
        return cls(query, query_norms)

    def pairs(
        self,
        samples: np.ndarray,
        bar: np.ndarray | None,
        count: int,
        positions: np.ndarray,
        norms: KeptNorms | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The block's (row, column) pairs that may hold a nearest reference, ordered by row,
        then column, with their float64 squared distances: with ``bar`` (each row's farthest
        nearest so far, exact), those that may be nearer than it; without, those that may be
        among each row's ``count`` nearest of the block (at least ``count`` a row). ``None``
        where the block's norms are too large for float32, or where the bound cannot tell
        most of the block apart. ``positions`` are the block's; ``norms`` keeps their float64
        norms."""
        rows32 = np.asarray(samples, dtype=np.float32)
        norms32 = _dot_self(rows32)
        largest = float(norms32.max())
        if not largest < _FLOAT32_NORMS:
            return None
        # the float32 norms are within a factor (1 + slack) of the exact ones
        margin = self.slack * (self.query_norms[:, 0] + largest) * (1.0 + self.slack)
        distance = squared_distances(self.query32, self.query_norms32, rows32, norms32)
        if bar is None:
            edge = np.partition(distance, count - 1, axis=1)[:, count - 1].astype(np.float64)
            limit = edge + 2.0 * margin  # the count at the edge are at most edge + margin
        else:
            limit = bar + margin
        # rounded to float32 and a step up: never below the limit
        limit32 = np.nextafter(limit.astype(np.float32), np.float32(np.inf))
        candidates = np.flatnonzero(distance <= limit32[:, None])
        if candidates.size > distance.size // _MOST_SCREENED:
            # samples alike within the bound (duplicates of one image): the float64 product
            # of the block is cheaper than its pairs one by one
            return None
        rows_asking, columns = np.divmod(candidates, distance.shape[1])
        used, column_of = np.unique(columns, return_inverse=True)
        references = np.asarray(samples[used], dtype=np.float64)
        exact = np.empty(rows_asking.size, dtype=np.float64)
        step = max(1, _PAIR_VALUES // max(1, self.query.shape[1]))
        for start in range(0, rows_asking.size, step):  # a bounded copy of the pairs' rows
            pairs = slice(start, start + step)
            exact[pairs] = np.einsum(
                "ij,ij->i", self.query[rows_asking[pairs]], references[column_of[pairs]]
            )
        exact *= -2.0
        exact += self.query_norms[rows_asking, 0]
        exact += (
            squared_norms(references)
            if norms is None
            else norms.squared_norms(positions[used], references)
        )[column_of]
        return rows_asking, columns, exact


def _dot_self(rows: np.ndarray) -> np.ndarray:
    """Each row's squared norm without a squared copy of the rows (the screen's, whose bound
    allows any order of summation)."""
    return np.einsum("ij,ij->i", rows, rows)


_FLOAT32_NORMS = 1e30
"""Squared norms past this are not screened in float32 (whose largest value is about 3e38)."""

_MOST_SCREENED = 8
"""A block whose screen leaves more than one pair in this many is computed in float64 whole."""

_PAIR_VALUES = 1 << 21
"""Values of the query's and the references' rows gathered at once for the pairs' float64
products (16 MiB each)."""


def squared_norms(rows: np.ndarray) -> np.ndarray:
    """Each (flattened) row's squared Euclidean norm, as :func:`squared_distances` takes it."""
    return (rows**2).sum(axis=1)


class KeptNorms:
    """Samples read by position, as a ``take`` (``kept(positions)``), that keep each sample's
    squared norm once computed, per precision, for the nearest-sample searches given it.

    One scan's decision searches the same samples hundreds of times (1,421 norm computations,
    2.2 s of the 31 s decision on 60,000 images with an adaptive blend). A row's norm
    (:func:`squared_norms`) depends on that row's values only, whatever rows are beside it, so
    a kept norm is the one computed again, bit for bit."""

    def __init__(self, take: Take, n_samples: int) -> None:
        self._take = take
        self._n = int(n_samples)
        self._kept: dict[np.dtype, tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        return self._take(positions)

    def squared_norms(self, positions: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The squared norms of ``rows``, the samples at ``positions`` flattened (as the
        search converted them), computed for those not kept yet."""
        values, known = self._kept.setdefault(
            rows.dtype, (np.zeros(self._n, dtype=rows.dtype), np.zeros(self._n, dtype=bool))
        )
        missing = ~known[positions]
        if missing.all():
            values[positions] = squared_norms(rows)
        elif missing.any():
            values[positions[missing]] = squared_norms(rows[missing])
        known[positions] = True
        return values[positions]


def squared_distances(
    query: np.ndarray,
    query_norms: np.ndarray,
    rows: np.ndarray,
    row_norms: np.ndarray | None = None,
) -> np.ndarray:
    """Squared Euclidean distances ``(len(query), len(rows))`` of flattened rows, given the
    query's :func:`squared_norms` as a column (and the rows', where the caller has them); in
    the rows' precision."""
    # in place, the same arithmetic as query_norms - (2 query) @ rows.T + row norms (a factor
    # of two is exact, and subtracting is adding the negation): no (Q, block) copies
    distance = query @ rows.T
    distance *= -2.0
    distance += query_norms
    distance += (squared_norms(rows) if row_norms is None else row_norms)[None, :]
    return distance


def merged_nearest(
    positions: np.ndarray, distances: np.ndarray, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the ``count`` nearest of candidate ``positions`` with their ``distances``
    (both ``(Q, m)``, columns in any order), nearest first and the smaller position first where
    distances tie, as :func:`nearest_among` orders sorted references."""
    positions, distances = np.asarray(positions), np.asarray(distances)
    if distances.shape[1] <= count:
        order = np.lexsort((positions, distances), axis=1)
    else:
        # the candidates up to the count-th smallest distance first (as _smallest does), then
        # ordered among themselves: 600 members against 5,440 candidates, 0.35 s sorting
        # every candidate, 0.16 s this way
        edge = np.partition(distances, count - 1, axis=1)[:, count - 1 : count]
        within = distances <= edge
        exact = within.sum(axis=1) == count
        order = np.empty((distances.shape[0], count), dtype=np.int64)
        if exact.any():
            columns = np.nonzero(within[exact])[1].reshape(-1, count)
            among = np.lexsort(
                (
                    np.take_along_axis(positions[exact], columns, axis=1),
                    np.take_along_axis(distances[exact], columns, axis=1),
                ),
                axis=1,
            )
            order[exact] = np.take_along_axis(columns, among, axis=1)
        if not exact.all():  # ties at the edge: ordered whole
            order[~exact] = np.lexsort((positions[~exact], distances[~exact]), axis=1)[:, :count]
    return np.take_along_axis(positions, order, axis=1), np.take_along_axis(
        distances, order, axis=1
    )


def _smallest(distance: np.ndarray, count: int) -> np.ndarray:
    """Per row, the columns of the ``count`` smallest values, smallest first, ties in column
    order: ``np.argsort(distance, axis=1, kind="stable")[:, :count]``, without sorting every
    column (a full sort of each block took most of the time of the common-pattern completion:
    12 of 30 s on 6,600 members). The rows where more than ``count`` values reach the
    ``count``-th smallest are sorted whole."""
    if distance.shape[1] <= count:
        return np.argsort(distance, axis=1, kind="stable")
    edge = np.partition(distance, count - 1, axis=1)[:, count - 1 : count]
    within = distance <= edge
    exact = within.sum(axis=1) == count
    keep = np.empty((distance.shape[0], count), dtype=np.int64)
    if exact.any():
        # the candidates in column order, then a stable sort among them: ties keep that order
        columns = np.nonzero(within[exact])[1].reshape(-1, count)
        order = np.argsort(
            np.take_along_axis(distance[exact], columns, axis=1), axis=1, kind="stable"
        )
        keep[exact] = np.take_along_axis(columns, order, axis=1)
    if not exact.all():
        keep[~exact] = np.argsort(distance[~exact], axis=1, kind="stable")[:, :count]
    return keep


def nearest_means(take: Take, nearest: np.ndarray) -> np.ndarray:
    """Per row of ``nearest`` (neighbour positions, :func:`nearest_samples`), the mean of those
    samples (float64, one sample's shape). Each sample is read once, in increasing position,
    as files read rows (neighbours repeat across rows)."""
    nearest = np.asarray(nearest, dtype=np.int64)
    unique, inverse = np.unique(nearest.ravel(), return_inverse=True)
    rows = np.asarray(take(unique), dtype=np.float64)[inverse.ravel()]
    return rows.reshape(nearest.shape + rows.shape[1:]).mean(axis=1)


def foreign_share(votes: np.ndarray, code: int) -> float:
    """Share of the ``votes`` (:func:`neighbour_votes`) for a label other than ``code``; 0
    without votes."""
    votes = np.asarray(votes)
    return float(np.mean(votes != code)) if votes.size else 0.0


def _sample(rng: np.random.Generator, positions: np.ndarray, limit: int) -> np.ndarray:
    if positions.size <= limit:
        return positions
    return np.sort(rng.choice(positions, limit, replace=False))


def _flat(rows: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    rows = np.asarray(rows, dtype=dtype)
    return rows.reshape(rows.shape[0], -1)
