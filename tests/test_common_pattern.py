"""The common-pattern test: what a group's members hold beyond their look-alikes."""

from __future__ import annotations

import numpy as np

from poisonguard.detectors.common_pattern import (
    AGREEING_Z,
    LOOK_ALIKES,
    agreement,
    beyond_both_ways,
    carrying,
    member_residuals,
    residuals,
    trimmed,
    trimmed_refitted,
)

SIDE = 20
PER_CLASS = 240


def smooth_images(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` smooth random images (SIDE x SIDE): sums of a few wide bumps."""
    grid = np.stack(np.meshgrid(np.arange(SIDE), np.arange(SIDE), indexing="ij"), axis=-1)
    images = np.zeros((count, SIDE, SIDE))
    for _ in range(4):
        centres = rng.uniform(0, SIDE, size=(count, 1, 1, 2))
        weights = rng.uniform(0.2, 1.0, size=(count, 1, 1))
        images += weights * np.exp(-((grid[None] - centres) ** 2).sum(-1) / 18.0)
    return images


def three_classes(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Three classes, each a shape of its own plus smooth variations and a little noise."""
    shapes = smooth_images(rng, 3) * 2.0
    labels = np.repeat(np.arange(3), PER_CLASS)
    x = shapes[labels] + 0.5 * smooth_images(rng, labels.size)
    x += 0.02 * rng.normal(size=x.shape)
    return x, labels


def plant(x, labels, rng, *, pattern: np.ndarray | None, count: int = 40):
    """``count`` samples of classes 1 and 2 (half each) relabelled 0; with ``pattern``, each
    blended with it on a random half of its pixels (a trigger in pieces), as the adaptive
    blend's payload is; without, plain mislabels."""
    group = np.concatenate(
        [rng.choice(np.flatnonzero(labels == c), count // 2, replace=False) for c in (1, 2)]
    )
    sources = labels[group].copy()
    if pattern is not None:
        pieces = rng.random((group.size, SIDE, SIDE)) < 0.5
        blended = 0.8 * x[group] + 0.2 * pattern
        x[group] = np.where(pieces, blended, x[group])
    labels[group] = 0
    return np.sort(group), sources[np.argsort(group)]


def agreeing_share(x, labels, group, sources) -> float:
    queried, looks, left = residuals(
        lambda positions: x[positions], labels, group, sources, 0, seed=0
    )
    assert queried.tolist() == group.tolist() and looks.tolist() == sources.tolist()
    assert left.shape == (group.size, SIDE * SIDE)
    return float(np.mean(agreement(left, looks) > AGREEING_Z))


def test_members_holding_pieces_of_one_pattern_agree():
    rng = np.random.default_rng(0)
    x, labels = three_classes(rng)
    pattern = rng.uniform(0.0, 2.0, size=(SIDE, SIDE))  # noise: nothing like the shapes
    group, sources = plant(x, labels, rng, pattern=pattern)
    assert agreeing_share(x, labels, group, sources) > 0.8


def test_mislabelled_samples_do_not_agree():
    """Plain mislabels are what their look-alikes are: what is left of each is its own."""
    rng = np.random.default_rng(0)
    x, labels = three_classes(rng)
    group, sources = plant(x, labels, rng, pattern=None)
    assert agreeing_share(x, labels, group, sources) < 0.2


def test_agreement_counts_only_members_that_look_like_another_class():
    """Two members that look like the same class may share that class's detail: their
    agreement with each other does not count."""
    shared = np.array([1.0, 0.0, 0.0])
    left = np.array([shared, shared, [0.0, 1.0, 0.0]])
    z = agreement(left, np.array([1, 1, 2]))
    np.testing.assert_array_equal(z, [0.0, 0.0, 0.0])  # only orthogonal partners left
    # looking like different classes, the first two share the pattern: each counts the other
    np.testing.assert_array_equal(agreement(left, np.array([1, 2, 2])), [1.0, 1.0, 0.0])
    assert agreement(np.zeros((0, 3)), np.zeros(0)).size == 0


def test_members_with_too_few_look_alikes_are_left_out():
    rng = np.random.default_rng(1)
    x, labels = three_classes(rng)
    group, sources = plant(x, labels, rng, pattern=None)
    # class 2 keeps fewer samples than a member is fitted on: its members are not fitted
    kept = np.flatnonzero(labels == 2)[: LOOK_ALIKES - 1]
    excluded = np.setdiff1d(np.flatnonzero(labels == 2), kept)
    queried, looks, left = residuals(
        lambda positions: x[positions], labels, group, sources, 0, excluded=excluded
    )
    assert set(looks.tolist()) == {1} and queried.size == (sources == 1).sum()
    assert left.shape == (queried.size, SIDE * SIDE)


def test_the_scan_asks_images_with_values_to_spare_only():
    """The scan's test: images of at least MIN_VALUES values; not the 8x8 digits (their
    look-alikes span them exactly), not tables."""
    from pathlib import Path

    from poisonguard.dataset import Dataset
    from poisonguard.detectors.common_pattern import MIN_VALUES
    from poisonguard.scan import common_pattern_test

    rng = np.random.default_rng(2)
    x, labels = three_classes(rng)
    group, sources = plant(x, labels, rng, pattern=rng.uniform(0.0, 2.0, size=(SIDE, SIDE)))

    def dataset(images, kind="image"):
        images = np.asarray(images, dtype=np.float32)
        return Dataset(
            x=images[:, None] if kind == "image" else images.reshape(labels.size, -1),
            labels=labels,
            class_names=["a", "b", "c"],
            ids=[str(i) for i in range(labels.size)],
            kind=kind,
            path=Path("memory"),
            format="npz",
        )

    assert SIDE * SIDE >= MIN_VALUES
    test = common_pattern_test(dataset(x), seed=0)
    queried, agreements = test(group, sources, 0, np.zeros(0, dtype=np.int64))
    assert queried.tolist() == group.tolist() and np.mean(agreements > AGREEING_Z) > 0.8
    assert common_pattern_test(dataset(x[:, :8, :8]), seed=0) is None
    assert common_pattern_test(dataset(x, kind="table"), seed=0) is None


def test_carrying_joins_the_members_that_hold_the_groups_pattern():
    """Residuals of natural members are their own detail; those of members holding pieces of
    the group's pattern point along it, however few of them the group started with."""
    rng = np.random.default_rng(3)
    pattern = rng.normal(size=300)
    natural = rng.normal(size=(600, 300))
    pieces = rng.random((60, 300)) < 0.5  # each poison holds a random half of the pattern
    poisons = rng.normal(size=(60, 300)) + np.where(pieces, pattern, 0.0)
    rows = np.concatenate([natural, poisons])
    in_group = np.zeros(rows.shape[0], dtype=bool)
    in_group[600:620] = True  # the group holds a third of the poisons
    carried = carrying(rows, in_group)
    assert carried[600:].all()
    assert carried[:600].sum() <= 1
    # the group's own members stay, whatever their residual
    in_group[0] = True
    assert carrying(rows, in_group)[0]
    # nothing to carry: no group
    assert not carrying(rows, np.zeros(rows.shape[0], dtype=bool)).any()


def test_natural_members_carry_nothing_they_do_not_share():
    """A group whose residuals are each their own (plain mislabels) has no pattern: no natural
    member joins it beyond chance."""
    rng = np.random.default_rng(4)
    rows = rng.normal(size=(800, 300))
    in_group = np.zeros(800, dtype=bool)
    in_group[:40] = True
    joined = carrying(rows, in_group) & ~in_group
    assert joined.sum() <= 1


def test_no_member_joins_where_the_class_reaches_as_far_the_other_way():
    """A class's natural detail can lie along the group's direction, both ways: the members
    beyond the bar join only when they outnumber, beyond chance, those as far on the other
    side (every poison already in the group, 10 natural members along it, 30 against it)."""
    rng = np.random.default_rng(6)
    pattern = rng.normal(size=300)
    natural = rng.normal(size=(800, 300))
    natural[:10] += 0.5 * pattern
    natural[10:40] -= 0.5 * pattern
    poisons = rng.normal(size=(40, 300)) + pattern
    rows = np.concatenate([natural, poisons])
    in_group = np.zeros(rows.shape[0], dtype=bool)
    in_group[800:] = True
    assert carrying(rows, in_group).tolist() == in_group.tolist()
    # the same detail one way only is the group's pattern: those members join
    natural[10:40] += 0.5 * pattern
    rows = np.concatenate([natural, poisons])
    assert carrying(rows, in_group)[:10].all()


def test_weaker_carriers_under_the_bar_join_as_far_as_the_other_side_allows():
    """The bar is Bonferroni's, for the first members; past it, members join down to the
    lowest threshold where those as far the other way keep the false share at 5 %: poisons
    holding a faint copy of the pattern join, natural members do not."""
    rng = np.random.default_rng(7)
    pattern = rng.normal(size=300)
    natural = rng.normal(size=(800, 300))
    strong = rng.normal(size=(60, 300)) + 0.5 * pattern
    faint = rng.normal(size=(20, 300)) + 0.2 * pattern
    rows = np.concatenate([natural, strong, faint])
    in_group = np.zeros(rows.shape[0], dtype=bool)
    in_group[800:820] = True
    carried = carrying(rows, in_group)
    assert carried[800:860].all()
    assert carried[860:].sum() >= 5
    assert carried[:800].sum() <= 1


def test_completion_by_pattern_finds_the_poisons_the_images_do_not_set_apart():
    """Poisons of two source classes blended with pieces of one pattern, labelled 0: starting
    from a few of them, what every member of class 0 holds beyond its look-alikes (fitted on
    what its input neighbours say it is) joins the others and leaves the natural members."""
    rng = np.random.default_rng(5)
    x, labels = three_classes(rng)
    pattern = rng.uniform(0.0, 2.0, size=(SIDE, SIDE))
    group, _ = plant(x, labels, rng, pattern=pattern, count=60)
    members = np.flatnonzero(labels == 0)
    start = np.isin(members, group[::4])  # a quarter of the poisons flagged
    judged, left, _ = member_residuals(
        lambda positions: x[positions], labels, members, 0, group=start,
        excluded=members[start], seed=0,
    )  # fmt: skip
    assert judged.tolist() == members.tolist() and left.shape == (members.size, SIDE * SIDE)
    grown = carrying(left, start)
    poisons = np.isin(members, group)
    assert grown[start].all()
    assert grown[poisons].mean() >= 0.9
    assert grown[~poisons].sum() <= 3


def test_a_large_class_is_judged_on_its_group_and_a_sample_of_the_rest(monkeypatch):
    from poisonguard.detectors import common_pattern

    monkeypatch.setattr(common_pattern, "PATTERN_ROWS", 100)
    rng = np.random.default_rng(6)
    x, labels = three_classes(rng)
    members = np.flatnonzero(labels == 0)
    group = np.zeros(members.size, dtype=bool)
    group[:30] = True
    judged, left, _ = member_residuals(
        lambda positions: x[positions], labels, members, 0, group=group,
        excluded=members[group], seed=0,
    )  # fmt: skip
    assert judged.size == left.shape[0] == 100
    assert set(members[group]) <= set(judged.tolist()) and set(judged) <= set(members)
    assert np.all(np.diff(judged) > 0)


def test_beyond_both_ways_counts_past_a_bar_that_grows_with_the_group():
    """The bar is the one-sided normal quantile of 0.05 over the members: 3.0 is beyond it
    for 20 members (2.81), not for 200 (3.48)."""
    few = np.array([3.0, 3.0, -3.0, 2.0, -2.0, *np.zeros(15)])
    assert beyond_both_ways(few) == (2, 1)
    many = np.concatenate([few, np.zeros(180)])
    assert beyond_both_ways(many) == (0, 0)
    many[:3] = [4.0, 4.0, -4.0]
    assert beyond_both_ways(many) == (2, 1)
    assert beyond_both_ways(np.zeros(0)) == (0, 0)


def test_trimmed_leaves_out_the_group_members_that_do_not_carry_its_pattern():
    """A cut at a class's emptiest point takes natural far members with the poisons: those
    whose residual does not point along the group's leave it; the poisons stay."""
    rng = np.random.default_rng(5)
    pattern = rng.normal(size=300)
    natural = rng.normal(size=(600, 300))
    pieces = rng.random((60, 300)) < 0.5
    poisons = rng.normal(size=(60, 300)) + np.where(pieces, pattern, 0.0)
    rows = np.concatenate([natural, poisons])
    in_group = np.zeros(rows.shape[0], dtype=bool)
    in_group[600:] = True
    in_group[:60] = True  # as many natural members taken in with them
    kept = trimmed(rows, in_group)
    assert kept[600:].all()
    assert kept[:60].sum() <= 6  # the mirror keeps the false share near 5 %
    assert not kept[60:600].any()  # nobody joins
    # a group with no pattern (plain mislabels): kept whole, nothing to judge it by
    plain = np.zeros(rows.shape[0], dtype=bool)
    plain[:40] = True
    assert np.array_equal(trimmed(rows, plain), plain)
    assert not trimmed(rows, np.zeros(rows.shape[0], dtype=bool)).any()


def test_refitted_trim_leaves_a_natural_part_that_shares_a_look():
    """A group cut from a class's far side holds a natural part of the class with a look of
    its own beside the poisons: fitted with every flagged sample kept out of the look-alikes,
    the part keeps that look and the trim keeps it; refitted on each other, its members leave,
    and the poisons, which look like other classes, stay."""
    rng = np.random.default_rng(7)
    x, labels = three_classes(rng)
    pattern = rng.uniform(0.0, 2.0, size=(SIDE, SIDE))
    poisons, _ = plant(x, labels, rng, pattern=pattern, count=40)
    members = np.flatnonzero(labels == 0)
    natural = rng.choice(np.setdiff1d(members, poisons), 60, replace=False)
    x[natural] += 0.6 * smooth_images(rng, 1)[0]  # a sub-type: one look the part shares
    in_group = np.isin(members, np.concatenate([poisons, natural]))
    excluded = members[in_group]
    take = lambda positions: x[positions]  # noqa: E731
    judged, left, sources = member_residuals(
        take, labels, members, 0, group=in_group, excluded=excluded, seed=0
    )
    assert judged.tolist() == members.tolist() and sources.shape == judged.shape
    is_poison, is_natural = np.isin(judged, poisons), np.isin(judged, natural)
    first = trimmed(left, in_group)
    kept = trimmed_refitted(
        take, labels, members, 0, in_group=in_group, judged=judged, residuals=left,
        sources=sources, excluded=excluded, seed=0,
    )  # fmt: skip
    assert not (kept & ~in_group).any()
    assert kept[is_poison].mean() >= 0.9
    assert kept[is_natural].sum() <= first[is_natural].sum() // 2


def test_refitted_trim_keeps_a_group_with_no_one_pattern_whole():
    """Plain mislabels hold no pattern in common: nothing to judge the members by, so the
    group is kept whole, refitted or not."""
    rng = np.random.default_rng(8)
    x, labels = three_classes(rng)
    group, _ = plant(x, labels, rng, pattern=None, count=40)
    members = np.flatnonzero(labels == 0)
    in_group = np.isin(members, group)
    take = lambda positions: x[positions]  # noqa: E731
    judged, left, sources = member_residuals(
        take, labels, members, 0, group=in_group, excluded=members[in_group], seed=0
    )
    kept = trimmed_refitted(
        take, labels, members, 0, in_group=in_group, judged=judged, residuals=left,
        sources=sources, excluded=members[in_group], seed=0,
    )  # fmt: skip
    assert np.array_equal(kept, in_group[np.searchsorted(members, judged)])


def test_the_refits_are_member_residuals_round_by_round():
    """The refits of :func:`trimmed_refitted` search the samples outside the group once and
    merge in the group's own members each round; with every sample a possible reference (no
    draw of them), a round fits each member on the same samples as :func:`member_residuals`
    given the round's members set free, and gives the same residuals."""
    from poisonguard.detectors.common_pattern import _GroupRefits

    rng = np.random.default_rng(9)
    x, labels = three_classes(rng)
    pattern = rng.uniform(0.0, 2.0, size=(SIDE, SIDE))
    poisons, _ = plant(x, labels, rng, pattern=pattern, count=40)
    mislabels, _ = plant(x, labels, rng, pattern=None, count=8)  # look like other classes
    members = np.flatnonzero(labels == 0)
    natural = rng.choice(np.setdiff1d(members, np.union1d(poisons, mislabels)), 60, replace=False)
    # a part of the class near another class, with a look of its own: kept out, its members
    # look like class 1; free, like each other (class 0)
    look = 0.5 * smooth_images(rng, 1)[0]
    x[natural] = x[rng.choice(np.flatnonzero(labels == 1), natural.size, replace=False)] + look
    in_group = np.isin(members, np.concatenate([poisons, natural]))
    # flagged: the group but members that joined it (carrying), and a few of other classes
    others = rng.choice(np.flatnonzero(labels != 0), 12, replace=False)
    excluded = np.sort(np.concatenate([np.setdiff1d(members[in_group], poisons[:6]), others]))
    take = lambda positions: x[positions]  # noqa: E731
    judged, _, sources = member_residuals(
        take, labels, members, 0, group=in_group, excluded=excluded, seed=0
    )
    group = in_group[np.searchsorted(members, judged)]
    refitted = judged[group]
    foreign = np.setdiff1d(judged[sources != 0], refitted)
    assert foreign.size  # some members look like another class: they stay out
    refits = _GroupRefits(
        take, labels, members, 0, refitted=refitted, excluded=excluded, foreign=foreign,
        seed=0, block=64,
    )  # fmt: skip
    own = excluded[np.isin(excluded, members)]
    # members left out round after round: freed, the natural part's members name each other's
    # sources, and the members that look like the class then serve as look-alikes
    leaving = np.concatenate([natural, poisons[6:]])
    sources_seen = []
    for count in (0, 10, 30, 60, 94):
        freed = np.sort(leaving[:count])
        want_positions, want, _ = member_residuals(
            take, labels, members, 0, group=np.zeros(members.size, dtype=bool),
            excluded=np.setdiff1d(excluded, freed), look_alikes=own, foreign=foreign,
            judged=refitted, seed=0, block=64,
        )  # fmt: skip
        positions, got = refits.residuals(freed=freed)
        np.testing.assert_array_equal(positions, want_positions)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
        sources_seen.append(int((refits.sources == 0).sum()))
    assert sources_seen[0] < sources_seen[1] < sources_seen[2]  # the rounds differ
