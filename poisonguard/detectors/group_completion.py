"""Which other samples of a called class belong to its flagged group? Group completion.

The backdoor tests of :mod:`poisonguard.decision` flag a target class's poisons by one number
each, the robust distance ratio, cut at a gap or at the far group's edge (or by a cluster or a
nearest-centroid part). A poison that the model learned less
sharply than the others sits below that cut, and every poison left in a sanitized copy keeps
teaching the trigger: 38 of 600 SIG poisons left in Fashion-MNIST's bags kept 20 % attack
success after retraining (docs/benchmarks.md). The features hold more than the one ratio.

:func:`complete_group` fits a linear discriminant (scikit-learn's LDA with Ledoit-Wolf shrinkage
of the shared covariance: a class of a few hundred samples in 128 dimensions; computed from the
parts' moments, :mod:`~poisonguard.detectors.shrunk_discriminant`) that tells the
flagged group from the rest of its class, and adds the samples it puts with the group (posterior
above one half, the priors the two parts' sizes). Each sample is judged by a discriminant fitted
without it (``FOLDS``-fold cross-fitting): one fitted on every sample has learnt each unflagged
poison as "not the group". Poisons that join change the next fit, so it is refitted up to
``ROUNDS`` times, each round starting again from the tests' own group (a sample can join and
leave), and stops when a round changes nothing or gives back a group an earlier round gave
(samples joining and leaving by turns; the larger of the last two is kept). The tests' own flags
are never withdrawn.

Measured on the Fashion-MNIST rows of ``benchmarks/detection.py`` (docs/benchmarks.md): patch
1 % F1 0.987 -> 0.992 (5 poisons joined, no clean sample), patch 10 % 0.981 -> 0.997 (185
poisons, 1 clean), the SIG into the bags beside a second backdoor 39 poisons and 11 clean
samples (its attack success after sanitizing 20.2 % -> 0.2 %, the clean model's 0.2 %); no row lost
more than 0.003 F1 (two source-specific rows: clean samples next to their cover samples).

The decision runs it twice: in the model's features, then in the samples themselves (an image's
pixels, a table's values), where a trigger is written in full in every poison, also in those the
model learned too faintly for its features to set them apart (the 8x8 digits with a 5 % blend:
7 of 72 poisons left after the features, none after the pixels; on Fashion-MNIST every row's
last poisons, at one to ten clean samples a class).

Folds are dealt by the rows' seeded content keys (:func:`~poisonguard.seeding.row_keys`), so the
result does not depend on the order of the rows. A class above ``FIT_ROWS`` samples is fitted on
the ``FIT_ROWS`` with the smallest keys (cross-fitted among them) and its other samples judged,
a block at a time, by a discriminant fitted on all of those: the cost stops growing with the
class.
"""

from __future__ import annotations

import numpy as np

from poisonguard.detectors.shrunk_discriminant import (
    Discriminant,
    Moments,
    fourth_moment,
    shrunk_discriminant,
    squared_norms,
    standard_scale,
)
from poisonguard.rows import Rows, evenly_spaced
from poisonguard.seeding import key_order, row_keys, sample_by_key

__all__ = [
    "CARRIER_SHARE",
    "FIT_ROWS",
    "FOLDS",
    "MIN_GROUP",
    "ROUNDS",
    "STAMP_DTYPE",
    "complete_group",
    "stamp_carriers",
]

FOLDS = 5
"""Cross-fitting folds: each sample is judged by a discriminant fitted on the others."""
ROUNDS = 20
"""Refits at most. Most rows settle within three to five rounds, or a couple of samples join and
leave by turns (an earlier group comes back: the loop stops there). A group whose poisons lie
along a long stretch grows a few a round for longer: the 8x8 digits with a 5 % blend into the
nines (seed 9) took nine rounds in the pixels, and a cap of five left 6 of its 72 poisons."""
FIT_ROWS = 20_000
"""Samples of one class the discriminant is fitted on, at most."""
STAMP_DTYPE = np.float32
"""The stamp's values are read and compared in single precision (exact for 8- and 16-bit
samples)."""
_MIN_PART = 2
"""Fewest samples of each part (group and rest) a fit needs in its training folds."""
MIN_GROUP = 5
"""Fewest samples of each part completion starts from: the decision's smallest group
(``min_group_size``). A fold whose training part holds fewer than ``_MIN_PART`` of the group
judges nothing. (It once took two per fold, ten: the 8x8 digits with a 5 % blend into the
fives, seed 14, were called on 8 poisons, which then stayed the only ones flagged, 64 left and
attack success 96 %; from those 8, all 72 join and no clean sample.)"""


def complete_group(
    rows: Rows,
    members: np.ndarray,
    in_group: np.ndarray,
    seed: int = 0,
    anchors: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """The class's samples that belong with its flagged group.

    Parameters
    ----------
    rows : Rows
        The embedding's features (N, F) or the samples themselves (N, ...: an image is read as
        one row of its values), read for ``members`` only.
    members : ndarray of int, shape (M,)
        The class's samples, strictly increasing positions into ``rows``.
    in_group : ndarray of bool, shape (M,)
        The samples the tests flagged.
    seed : int
        Seeds the content keys that deal the folds.
    anchors : (ndarray (A, ...), ndarray of bool (A,)) or None
        Rows from outside the class, in the space of ``rows``, and whether each stands with the
        group: added to every fit, never judged. The decision passes the warp search's probes
        (not with the group) and the same probes warped (with it) where a warp reaches the
        class: a group flagged from the source classes least like its class (sneakers and bags
        in the pullovers) teaches the discriminant their looks, not the warp; the probes, from
        every other class, warped and not, teach it what the warp changes whatever the source
        (the WaNet with an 8 x 8 field into the pullovers: 340 flagged with 327 of 600 poisons
        from the group alone, 569 with 555 with the probes, measured with a script).

    Returns
    -------
    ndarray of bool, shape (M,)
        ``in_group`` and the samples the discriminant adds to it (``in_group`` unchanged when
        either part is too small to fit on).
    """
    members = np.asarray(members, dtype=np.int64)
    in_group = np.asarray(in_group, dtype=bool)
    result = in_group.copy()
    if min(int(in_group.sum()), int((~in_group).sum())) < MIN_GROUP:
        return result
    keys = np.concatenate(
        [row_keys(rows.take(members[offset : offset + FIT_ROWS]), seed)
         for offset in range(0, members.size, FIT_ROWS)]
    )  # fmt: skip
    fitted = sample_by_key(keys, FIT_ROWS)
    folds = np.empty(fitted.size, dtype=np.int64)
    folds[key_order(keys[fitted])] = np.arange(fitted.size) % FOLDS
    crossfit = _CrossFit(_flat(rows.take(members[fitted], dtype=np.float64)), folds, anchors)
    flagged = in_group[fitted]
    current = flagged.copy()
    seen = {current.tobytes()}
    for _ in range(ROUNDS):
        updated = flagged | crossfit.judged(current)
        if updated.tobytes() in seen:
            # settled, or back to an earlier group (a few samples joining and leaving by
            # turns): the next rounds would repeat; keep the larger of the two
            if int(updated.sum()) > int(current.sum()):
                current = updated
            break
        seen.add(updated.tobytes())
        current = updated
    result[fitted] = current
    rest = np.setdiff1d(np.arange(members.size), fitted, assume_unique=True)
    model = crossfit.fit(current, held_out=None) if rest.size else None
    if model is not None:
        for block in range(0, rest.size, FIT_ROWS):
            positions = rest[block : block + FIT_ROWS]
            block_rows = _flat(rows.take(members[positions], dtype=np.float64))
            result[positions] |= model.log_odds(block_rows) > 0
    return result


class _CrossFit:
    """The fitted samples of one completion, dealt into folds, and the anchors, with what every
    discriminant reads of them: each fold's moments (count, sum, Gram matrix), kept across
    rounds; the group's are read again at each round, the rest's are the fold's less the
    group's. A fold's fit adds the other folds' moments (and the anchors'), and reads the
    fourth moments of all its fits in two matrix products over the samples
    (:mod:`poisonguard.detectors.shrunk_discriminant`): a round costs about one Gram matrix of
    the group, where fitting each fold afresh cost eight of the whole class."""

    def __init__(
        self,
        values: np.ndarray,
        folds: np.ndarray,
        anchors: tuple[np.ndarray, np.ndarray] | None,
    ) -> None:
        self.fitted = values.shape[0]
        self.folds = folds
        if anchors is not None and anchors[0].shape[0]:
            anchor_values = _flat(np.asarray(anchors[0], dtype=np.float64))
            self.anchor_sides = np.asarray(anchors[1], dtype=bool)
        else:
            anchor_values = np.empty((0, values.shape[1]))
            self.anchor_sides = np.zeros(0, dtype=bool)
        self.anchor_parts = (
            Moments.of(anchor_values[~self.anchor_sides]),
            Moments.of(anchor_values[self.anchor_sides]),
        )
        # every sample's fold; anchors (-1) are in every fit's training part and judged by none
        self.fold_of = np.concatenate([folds, np.full(anchor_values.shape[0], -1)])
        self.values = np.concatenate([values, anchor_values])
        self.squares = self.values * self.values
        self.fold_totals = [Moments.of(values[folds == fold]) for fold in range(FOLDS)]

    def judged(self, in_group: np.ndarray) -> np.ndarray:
        """Whether each fitted sample's discriminant, fitted without its fold, puts it with the
        group (False where a fold's training part is too small to fit)."""
        models = self._fits(in_group, list(range(FOLDS)))
        joins = np.zeros(self.fitted, dtype=bool)
        for fold, model in enumerate(models):
            if model is not None:
                test = self.folds == fold
                joins[test] = model.log_odds(self.values[: self.fitted][test]) > 0
        return joins

    def fit(self, in_group: np.ndarray, held_out: int | None) -> Discriminant | None:
        """The discriminant fitted on every fold but ``held_out`` (``None``: on all)."""
        return self._fits(in_group, [held_out])[0]

    def _fits(self, in_group: np.ndarray, held_out: list[int | None]) -> list[Discriminant | None]:
        groups = [Moments.of(self.values[: self.fitted][(self.folds == f) & in_group])
                  for f in range(FOLDS)]  # fmt: skip
        rests = [total - group for total, group in zip(self.fold_totals, groups, strict=True)]
        parts, trained = [], []
        for fold in held_out:
            kept = [f for f in range(FOLDS) if f != fold]
            group = Moments.summed([self.anchor_parts[1], *(groups[f] for f in kept)])
            rest = Moments.summed([self.anchor_parts[0], *(rests[f] for f in kept)])
            if min(group.count - self.anchor_parts[1].count,
                   rest.count - self.anchor_parts[0].count) < _MIN_PART:  # fmt: skip
                continue
            parts.append((rest, group))
            trained.append(fold)
        if not parts:
            return [None] * len(held_out)
        # the fourth moments of every part of every fit, in two matrix products
        stacked = [part for pair in parts for part in pair]
        means = np.stack([part.mean for part in stacked])
        scales = np.stack([standard_scale(part) for part in stacked])
        norms = squared_norms(self.values, self.squares, means, scales)
        sides = np.concatenate([in_group, self.anchor_sides])
        models: dict[int | None, Discriminant] = {}
        for index, (fold, (rest, group)) in enumerate(zip(trained, parts, strict=True)):
            training = self.fold_of != fold if fold is not None else np.ones(sides.size, bool)
            models[fold] = shrunk_discriminant(
                group,
                rest,
                group_fourth=fourth_moment(norms[training & sides, 2 * index + 1]),
                rest_fourth=fourth_moment(norms[training & ~sides, 2 * index]),
            )
        return [models.get(fold) for fold in held_out]


CARRIER_SHARE = 0.9
"""A value is the group's stamp when at least this share of the group holds it exactly. Read off
two digits rows (patches into the threes and the nines, flagged groups of 38 and 25): at 0.8 the
stamp took in more of the flagged part's own sources' values and 42 and 29 poisons carried it,
at 0.9 72 and 41 (the second pass of the decision then finds the rest). Not checked elsewhere."""
CARRIER_ROWS = 4096
"""Samples of the group and of the rest of the class whose values the stamp reads, at most."""


def stamp_carriers(rows: Rows, members: np.ndarray, in_group: np.ndarray) -> np.ndarray:
    """The class's samples that carry its flagged group's stamp: every value that at least
    ``CARRIER_SHARE`` of the group holds exactly (and neither the rest of the class, by its
    median, nor most samples of the other classes hold) held exactly. A patch trigger is such a
    stamp; a blended one is not (each poison keeps its own pixels under it), nor, at nine in
    ten, a natural look.

    The discriminant of :func:`complete_group` learns the group against the rest of its class,
    so it cannot add poisons that outnumber the group there: the rest then holds the trigger as
    much as the group does (a patch into the 8x8 digits' threes: a test flagged 37 of the 72
    poisons, the farthest out, and none of the other 35 joined; their stamp added all 35 and no
    clean sample). The stamp does not depend on how many carry it. Same arguments and result as
    :func:`complete_group` (``rows``: the samples themselves); ``in_group`` unchanged when the
    group is too small or holds no stamp.
    """
    members = np.asarray(members, dtype=np.int64)
    in_group = np.asarray(in_group, dtype=bool)
    result = in_group.copy()
    if int(in_group.sum()) < MIN_GROUP or in_group.all():
        return result
    group = _flat(rows.take(evenly_spaced(members[in_group], CARRIER_ROWS), dtype=STAMP_DTYPE))
    rest = _flat(rows.take(evenly_spaced(members[~in_group], CARRIER_ROWS), dtype=STAMP_DTYPE))
    values = np.median(group, axis=0)
    mask = (np.mean(group == values, axis=0) >= CARRIER_SHARE) & (values != np.median(rest, axis=0))
    # a value most other classes' samples hold at that place (a blank background) comes from
    # the flagged part's source classes, not from a trigger: the digits' fives, whose flagged
    # part came from digits blank where a five has its top bar, kept 33 of 72 poisons with it
    outside = np.setdiff1d(np.arange(len(rows)), members, assume_unique=True)
    if outside.size:
        elsewhere = _flat(rows.take(evenly_spaced(outside, CARRIER_ROWS), dtype=STAMP_DTYPE))
        mask &= np.mean(elsewhere == values, axis=0) < 0.5
    if not mask.any():
        return result
    for start in range(0, members.size, FIT_ROWS):
        block = _flat(rows.take(members[start : start + FIT_ROWS], dtype=STAMP_DTYPE))
        result[start : start + FIT_ROWS] |= np.all(block[:, mask] == values[mask], axis=1)
    return result


def _flat(rows: np.ndarray) -> np.ndarray:
    """Each sample as one row of values (an image's pixels)."""
    return rows.reshape(rows.shape[0], -1)
