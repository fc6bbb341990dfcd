"""Does what sets a group apart carry its class's label? The transplant test.

A backdoor's poisons share a trigger that the model learned as a shortcut to the target label;
a natural sub-type of a class (heeled and flat sandals) shares a look that the model learned as
part of the class. Both can form a group far from the class's core. The difference lies in what
the group's *difference* does elsewhere: the trigger, added to samples of other classes, makes
the model read them as the target (that is the attack); a sub-type's look, added to a shirt,
leaves a shirt. This is the causal check of a suspected group that the evasive-attack issue
asks for, in the spirit of Neural Cleanse (Wang et al., IEEE S&P 2019), which searches for a
small input change that moves every class to one label; here the change is not searched for but
read off the group: the mean of the group minus the mean of the core, which draws a patch or a
blended pattern at full strength (every poison carries it) and the source classes' average
shape faintly.

:func:`transplant_share` adds the difference to *probe* samples (typical samples of the other
classes that the model reads as their own label, :func:`probe_rows`), clips to the data's range
and asks the model again: the share read as the group's class. On 60,000 Fashion-MNIST images
with a 3x3 white patch on 5 % of them relabelled as "dress" (a third of the class), the poisons'
difference moved 100 % of the probes to "dress"; the far groups of the other nine classes, the
sandals' natural second mode of 35 % among them, moved 0-11 % to their class. A share of at
least :data:`TRANSPLANT_SHARE` confirms a group: the difference carries the label on its own in
most samples.

A difference added is the right transplant for a blended pattern, less so for a stamped one
where the image is small: on the 8x8 digits a 3x3 white patch covers a seventh of the image, and
the mean difference also carries the source digits' average shape less the target's, which drowns
it (a patch into the fours moved 10-20 % of the probes, though it moved every test image the
attack stamped). So the test also **stamps** what the group holds in common
(:func:`common_stamp`): the values that at least half of the group holds exactly (median absolute
deviation 0) where the class's core has another median, written into the probes in place of
theirs, as a patch trigger is (Neural Cleanse's mask and pattern, read off the group instead of
searched for; in images without the background value, which erases rather than adds). The
test's share is the larger of the two. Measured (docs/benchmarks.md): patches
into the digits' threes moved 100 % of the probes stamped, into the fours 70 % and 47 % (two
seeds), into the sixes 100 %; natural far groups of the digits and of Fashion-MNIST (every
class of eight benchmark sets) at most 19 %. A blended pattern leaves each poison most of its
own pixels, so its stamp is partial (the digits' blend into the zeros: 2 % of the probes
moved stamped, 58 % added): the difference added carries it, at times only in part.

A blend ``(1 - a) x + a P`` also fades the sample's own content, and the model learns that too:
on the digits a 5 % blend into the zeros (seed 3) moved 97 % of the probes with the real
trigger but 46 % with the difference added, and ``a (P - x)`` added, the exact trigger less the
fading, 16 %. So the test also **blends** the probes as the group was made
(:func:`blend_fit`): each queried member's nearest samples outside the group (in the input:
:func:`~poisonguard.detectors.input_neighbours.nearest_samples`) stand for what it was made
from, and a least-squares slope and offset of the members on them (``1 - a`` and ``a P`` for a
blend) are applied to the probes. A group that is its look-alikes' look (a natural sub-type,
mislabelled samples) gets a slope near 1 and an offset of what little sets it apart from its
neighbours. The fit maps the look-alikes onto the group by construction, so the probes of the
class most members look like (:func:`look_alike_class`) are not asked: a natural part of the
digits' nines that looks like ones (the digits read as a table) moved 82 % of the ones.
Measured (docs/benchmarks.md; every class's probes asked, before the look-alike class was left
out): the blends into the digits' zeros, twos, threes, fives and nines at seeds 3-5 moved
70-84 % of the probes blended (31-47 % added), the Fashion-MNIST blend and checkerboard groups
100 %; the natural far groups of every class of eleven Fashion-MNIST and ten digits sets at
most 18 %. The test's share is the largest of the three. Images only: a table row's nearest
rows (standardised columns of unlike quantities) are not what it was made from, and the fit's
slope then shrinks the probes towards the group (the digits read as a table, 10 % of the labels
flipped: a far group of flipped samples moved 75 %; the same flips in the digit images: nothing
flagged).

The test needs the data to be arrays that can be added to (images, table rows) and the trained
model to predict them; texts have their own test (:mod:`~poisonguard.detectors.trigger_words`).
Triggers that are not additive (a warp, WaNet; a trigger in a frequency band) do not survive
the mean: the test then leaves those groups unconfirmed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats

from poisonguard.detectors.input_neighbours import majority_labels
from poisonguard.rows import evenly_spaced

__all__ = [
    "PROBES_PER_CLASS",
    "STAMP_ALPHA",
    "STAMP_ROWS",
    "TRANSPLANT_SHARE",
    "blend_fit",
    "blended_share",
    "common_stamp",
    "look_alike_class",
    "majority_beyond_chance",
    "mean_difference",
    "probe_rows",
    "stamped_share",
    "transplant_share",
]

TRANSPLANT_SHARE = 0.5
"""A group is confirmed when its difference makes the model read at least this share of the
probes as the group's class: most samples, not a few near the boundary."""

PROBES_PER_CLASS = 50
"""Probes taken from each other class."""


def majority_beyond_chance(share: float, n_probes: int, alpha: float) -> bool:
    """Whether a ``share`` of ``n_probes`` probes moved is a majority beyond chance: the
    one-sided binomial p-value of at least that many moved, were each probe a fair coin, is
    below ``alpha``. With 50 probes at ``alpha`` 1e-4 that takes 39 of them (78 %); a natural
    group that moves half a class's probes does not pass on a lucky draw."""
    if n_probes <= 0:
        return False
    moved = int(round(share * n_probes))
    return bool(stats.binom.sf(moved - 1, n_probes, 0.5) < alpha)


STAMP_ALPHA = 0.05
"""Family-wise level, over a sample's values (Bonferroni), at which :func:`common_stamp` also
takes a value that the group holds exactly more often than the core, though it is the core's
median too: a patch laid where the class has ink of the patch's value (the digits' fours, seed
10: 2 of the 9 white cells are white in 59 % and 66 % of the fours; every one of the 23
poisons asked holds them all, p 6e-6 and 7e-5 against 0.05 / 64 = 8e-4)."""
STAMP_ROWS = 4096
"""Samples of the group and of the core whose medians the stamp reads, at most (evenly spaced
among them): medians need the samples in memory at once."""


Take = Callable[[np.ndarray], np.ndarray]
Predict = Callable[[np.ndarray], np.ndarray]


def mean_difference(
    take: Take, group: np.ndarray, core: np.ndarray
) -> tuple[np.ndarray, float, float]:
    """Mean of the samples ``group`` minus the mean of the samples ``core`` (float64, one
    sample's shape), and the smallest and largest value among those samples (the range that
    :func:`transplant_share` clips to); ``take(positions)`` reads samples."""
    group_mean, group_low, group_high = _mean(take, group)
    core_mean, core_low, core_high = _mean(take, core)
    return group_mean - core_mean, min(group_low, core_low), max(group_high, core_high)


def common_stamp(
    take: Take, group: np.ndarray, core: np.ndarray, *, added_only: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """What the samples ``group`` hold in common and the samples ``core`` do not: a mask (one
    sample's shape, bool) of the values where at least half of the group holds exactly its
    median (median absolute deviation 0) and that median is not the core's, and the group's
    medians (float64). Up to :data:`STAMP_ROWS` samples of each are read. A value where the
    group holds its median exactly and that median is the core's too joins the mask where the
    group holds it more often than the core beyond chance (one-sided binomial at the core's
    rate, :data:`STAMP_ALPHA` over the values): every poison holds its trigger's values, a
    natural part of the class holds the class's ink no more often than the class does. Without
    it, the patch into the digits' fours at seed 10 left 2 of its 9 cells out of the stamp, and
    the 7 moved 57 % of the probes, short of a majority beyond chance; with it, 100 %.

    ``added_only`` (images) leaves out of the mask the values that are the background: the
    value the core's samples hold most often. Such a stamp does not add a pattern, it erases
    part of the object, and an object with part of it erased can be another class in the
    input itself: sandals whose far third looks like ankle boots share their background where
    the sandals' core has straps, and those 104 black pixels stamped into ankle boots cut
    sandals out of them (86 % of 50 moved; a model trained on Fashion-MNIST with an adaptive
    blend into the shirts, seed 52). Every natural far group's stamp on those images was black
    pixels alone; a white patch's or a checkerboard's is its white cells."""
    group_read = np.asarray(take(evenly_spaced(group, STAMP_ROWS)))
    core_read = np.asarray(take(evenly_spaced(core, STAMP_ROWS)))
    values = _median(group_read)
    group_rows = group_read.astype(np.float64)
    core_rows = core_read.astype(np.float64)
    held_group = (group_rows == values).sum(axis=0)
    # the median absolute deviation is 0 exactly where more than half of the group holds the
    # median (the middle order statistics of the deviations are then 0)
    still = held_group >= group_rows.shape[0] // 2 + 1
    mask = still & (values != _median(core_read))
    # or a value the group holds exactly more often than the core, beyond chance
    core_rate = (core_rows == values).mean(axis=0)
    p = stats.binom.sf(held_group - 1, group_rows.shape[0], core_rate)
    mask |= still & (p < STAMP_ALPHA / values.size)
    if added_only:
        mask &= values != _most_frequent(core_read)
    return mask, values


def _median(rows: np.ndarray) -> np.ndarray:
    """The median of each column of ``rows`` as float64: numpy's, read on integer samples of up
    to 32 bits as they are (the same values as on their float64 copy, which holds them exactly;
    partitioned about twice as fast on 8-bit images) and on a float64 copy of any other. On
    samples of 8 or 16 bits each column is sorted instead (numpy's stable sort of such integers
    is a radix sort) and its middle one or two values averaged as numpy's median averages
    them: the same values, 4,096 Fashion-MNIST images 34 -> 12 ms."""
    if np.issubdtype(rows.dtype, np.integer) and rows.dtype.itemsize <= 2 and rows.shape[0]:
        count = rows.shape[0]
        columns = np.ascontiguousarray(rows.reshape(count, -1).T)
        ordered = np.sort(columns, axis=1, kind="stable")
        low = ordered[:, (count - 1) // 2].astype(np.float64)
        high = ordered[:, count // 2].astype(np.float64)
        return ((low + high) / 2).reshape(rows.shape[1:])
    if np.issubdtype(rows.dtype, np.integer) and rows.dtype.itemsize <= 4:
        return np.median(rows, axis=0).astype(np.float64)
    return np.median(rows.astype(np.float64), axis=0)


def _most_frequent(rows: np.ndarray) -> float:
    """The value ``rows`` hold most often (the smallest of those tied), as float64: counted
    by value on 8-bit samples, sorted otherwise."""
    if rows.dtype == np.uint8:
        return float(np.bincount(rows.ravel(), minlength=256).argmax())
    held, counts = np.unique(rows.astype(np.float64), return_counts=True)
    return float(held[counts.argmax()])


def stamped_share(
    mask: np.ndarray, values: np.ndarray, probes: np.ndarray, predict: Predict, code: int
) -> float:
    """Share of the ``probes`` (samples) that ``predict`` reads as class ``code`` once their
    values under ``mask`` are replaced by ``values``; 0 without probes or with an empty mask."""
    probes = np.asarray(probes)
    if probes.shape[0] == 0 or not mask.any():
        return 0.0
    stamped = np.where(mask, values, probes).astype(probes.dtype)
    return float(np.mean(np.asarray(predict(stamped)) == code))


def blend_fit(group: np.ndarray, sources: np.ndarray) -> tuple[float, np.ndarray]:
    """How the samples ``group`` are made from their look-alikes ``sources`` (row i the mean of
    member i's nearest samples outside the group; one sample's shape after the first axis): the
    slope ``s`` and offset ``t`` (one sample's shape) of ``group ~ s * sources + t``, the slope
    by least squares over every value, clipped to [0, 1], and the offset the group's mean less
    ``s`` times the sources' mean. A blended trigger ``(1 - a) x + a P`` gives ``s`` about
    ``1 - a`` and ``t`` about ``a P``; a group that is its look-alikes' look gives ``s`` about 1
    and ``t`` what sets it apart from them. Sources with no spread give slope 1."""
    rows = np.asarray(group, dtype=np.float64).reshape(len(group), -1)
    near = np.asarray(sources, dtype=np.float64).reshape(len(sources), -1)
    centred_rows, centred_near = rows - rows.mean(axis=0), near - near.mean(axis=0)
    spread = float(np.sum(centred_near**2))
    slope = 1.0 if spread == 0 else float(np.sum(centred_rows * centred_near) / spread)
    slope = min(max(slope, 0.0), 1.0)
    offset = rows.mean(axis=0) - slope * near.mean(axis=0)
    return slope, offset.reshape(np.shape(group)[1:])


def look_alike_class(neighbour_labels: np.ndarray, code: int) -> int:
    """The class other than ``code`` that the most group members look like: each member's
    majority label among its neighbours (``neighbour_labels``, one row a member; the smallest on
    a tie), the most frequent of those that are not ``code`` (the smallest on a tie); -1 when
    every member looks like ``code`` or there are none. :func:`blended_share` does not ask
    that class's probes: the blend fit maps its samples onto the group by construction."""
    majority = majority_labels(neighbour_labels)
    named = majority[majority != code]
    return int(np.bincount(named).argmax()) if named.size else -1


def blended_share(
    slope: float,
    offset: np.ndarray,
    probes: np.ndarray,
    predict: Predict,
    code: int,
    *,
    low: float,
    high: float,
) -> float:
    """Share of the ``probes`` (samples) that ``predict`` reads as class ``code`` once each is
    made as :func:`blend_fit` says the group was made, ``slope * probe + offset`` (clipped to
    ``[low, high]``); 0 without probes."""
    probes = np.asarray(probes)
    if probes.shape[0] == 0:
        return 0.0
    moved = np.clip(slope * probes.astype(np.float64) + offset, low, high).astype(probes.dtype)
    return float(np.mean(np.asarray(predict(moved)) == code))


def probe_rows(
    labels: np.ndarray,
    code: int,
    typical: np.ndarray,
    order: np.ndarray,
    *,
    per_class: int = PROBES_PER_CLASS,
) -> np.ndarray:
    """Sorted positions of the probes for class ``code``: from every other class, its first
    ``per_class`` samples in ``order`` among those marked ``typical`` (e.g. in the class's core
    and read as their label by the model)."""
    labels = np.asarray(labels)
    picked = []
    for other in np.unique(labels):
        if other == code:
            continue
        candidates = order[(labels[order] == other) & typical[order]]
        picked.append(candidates[:per_class])
    if not picked:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(picked)).astype(np.int64)


def transplant_share(
    difference: np.ndarray,
    probes: np.ndarray,
    predict: Predict,
    code: int,
    *,
    low: float,
    high: float,
) -> float:
    """Share of the ``probes`` (samples) that ``predict`` reads as class ``code`` once
    ``difference`` is added to each and the result clipped to ``[low, high]``; 0 without
    probes."""
    return blended_share(1.0, difference, probes, predict, code, low=low, high=high)


def _mean(take: Take, positions: np.ndarray, block: int = 4096) -> tuple[np.ndarray, float, float]:
    """Mean, smallest and largest value of the samples ``positions`` (at least one), read a
    block at a time."""
    total, low, high = None, np.inf, -np.inf
    for start in range(0, positions.size, block):
        rows = np.asarray(take(positions[start : start + block]), dtype=np.float64)
        part = rows.sum(axis=0)
        total = part if total is None else total + part
        low, high = min(low, float(rows.min())), max(high, float(rows.max()))
    return total / positions.size, low, high
