"""The input-neighbour test (poisonguard.detectors.input_neighbours) and the foreign-cluster
rule it feeds: with fewer than four classes, the smaller cluster of a class that looks like
another class in the input, and whose difference the transplant test confirms, calls the
class."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from poisonguard.decision import DecisionSettings, decide
from poisonguard.detectors.activation_clustering import ClassSplit
from poisonguard.detectors.input_neighbours import (
    FOREIGN_SHARE,
    NEIGHBOURS,
    QUERIES,
    foreign_share,
    nearest_means,
    neighbour_votes,
)

pytestmark = pytest.mark.filterwarnings("error")


def share_of(take, labels, code, group, **kwargs) -> float:
    """What the foreign-cluster rule reads: the share of the group voted another class."""
    return foreign_share(neighbour_votes(take, labels, group, **kwargs)[1], code)


def two_blobs(seed: int = 0, per_class: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Two classes of 4x4 "images": class 0 dark, class 1 bright, with noise."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], per_class)
    x = np.where(labels[:, None, None] == 0, 50.0, 200.0) + 20 * rng.normal(
        size=(labels.size, 4, 4)
    )
    return x, labels


def test_a_group_drawn_from_another_class_is_foreign_and_a_sub_type_is_not():
    x, labels = two_blobs()
    # 40 samples of class 1 (bright) relabelled 0 with a corner trigger: a dirty-label poison
    poisons = np.arange(300, 340)
    labels[poisons] = 0
    x[poisons, 0, 0] = 255.0
    take = x.__getitem__
    assert share_of(take, labels, 0, poisons, standardise=False) == 1.0
    # the darkest 40 of class 0: a sub-type of its own class
    darkest = np.argsort(x[:300].mean(axis=(1, 2)))[:40]
    assert share_of(take, labels, 0, darkest, standardise=False) == 0.0
    assert share_of(take, labels, 0, np.zeros(0, dtype=np.int64), standardise=False) == 0.0


def test_the_neighbours_are_the_same_whatever_the_block_and_sample_sizes():
    x, labels = two_blobs(seed=1)
    group = np.concatenate([np.arange(0, 10), np.arange(300, 330)])  # 10 own, 30 foreign
    take = x.__getitem__
    shares = {
        share_of(take, labels, 0, group, standardise=False, block=block) for block in (7, 64, 4096)
    }
    assert shares == {0.75}


def test_table_columns_are_standardised_before_the_distances():
    rng = np.random.default_rng(2)
    labels = np.repeat([0, 1], 200)
    informative = np.where(labels == 0, -3.0, 3.0) + rng.normal(size=labels.size)
    loud = 1000.0 * rng.normal(size=labels.size)  # a column in other units, pure noise
    x = np.stack([informative, loud], axis=1)
    group = np.arange(200, 240)  # class 1 rows relabelled 0
    labels[group] = 0
    take = x.__getitem__
    assert share_of(take, labels, 0, group, standardise=True) >= 0.9
    # unscaled, the noise column decides the neighbours: about half say class 1 at best
    assert share_of(take, labels, 0, group, standardise=False) < FOREIGN_SHARE


def test_too_few_samples_outside_the_group_give_no_evidence():
    x = np.zeros((NEIGHBOURS + 3, 2))
    labels = np.zeros(NEIGHBOURS + 3, dtype=np.int64)
    assert share_of(x.__getitem__, labels, 0, np.arange(5), standardise=False) == 0.0


def decide_all(labels, n_classes, **kwargs):
    """:func:`decide` with every class scored and no detector scores."""
    return decide(labels, n_classes, np.ones(n_classes, dtype=bool), {}, **kwargs)


def two_class_inputs(seed: int = 0):
    """Decision inputs for two classes of 400: class 0 holds 40 far samples (a cluster)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], 400)
    n = labels.size
    ratio = rng.uniform(0.2, 2.5, size=n)
    cluster = np.arange(360, 400)
    probabilities = np.where(np.arange(2)[None, :] == labels[:, None], 0.9, 0.1)
    splits = [
        ClassSplit(code=0, size=400, minority=cluster, separation=9.0),
        ClassSplit(code=1, size=400, minority=np.arange(400, 560), separation=2.0),
    ]
    kwargs = dict(
        distance_ratio=ratio,
        margin=2.0 + 0.3 * rng.normal(size=(n, 4)),
        probabilities=probabilities,
        oos_probabilities=probabilities,
        splits=splits,
        settings=DecisionSettings(),
    )
    return labels, cluster, kwargs


def test_a_foreign_cluster_confirmed_by_the_transplant_calls_its_class():
    labels, cluster, kwargs = two_class_inputs()
    asked = []

    def input_votes(group, excluded):
        code = int(labels[group[0]])
        asked.append((code, group.size))
        # 98 % of class 0's cluster look like class 1; class 1's cluster looks like itself
        votes = np.full(group.size, code)
        if code == 0:
            votes[: round(0.98 * group.size)] = 1
        return group, votes

    decision = decide_all(
        labels, 2, transplant=lambda *a, **k: 1.0, input_votes=input_votes, **kwargs
    )
    assert asked == [(0, 40), (1, 160)]
    assert decision.target_classes == [0]
    np.testing.assert_array_equal(np.flatnonzero(decision.flagged), cluster)
    evidence = decision.evidence[0]
    assert evidence.rule == "foreign-cluster" and evidence.cluster_size == 40
    assert evidence.foreign_share == pytest.approx(0.975) and evidence.transplant_share == 1.0
    assert set(decision.kind[cluster]) == {"backdoor"}


@pytest.mark.parametrize(
    "foreign, transplant",
    [(0.3, 1.0), (0.98, 0.2)],
    ids=["own-class-look", "difference-does-not-carry-the-label"],
)
def test_a_cluster_needs_both_a_foreign_look_and_a_confirmed_difference(foreign, transplant):
    labels, _, kwargs = two_class_inputs()
    decision = decide_all(
        labels,
        2,
        transplant=lambda *a, **k: transplant,
        input_votes=lambda group, excluded: (
            group,
            np.where(
                np.arange(group.size) < foreign * group.size, 1 - labels[group], labels[group]
            ),
        ),
        **kwargs,
    )
    assert not decision.target_classes and not decision.flagged.any()


def test_the_foreign_cluster_rule_is_off_with_four_classes_or_without_the_tests():
    labels, _, kwargs = two_class_inputs()
    # without the input (texts) or without a model to ask, nothing is called this way
    foreign = lambda group, excluded: (group, np.ones(group.size, dtype=np.int64))  # noqa: E731
    for transplant, votes in [(None, foreign), (lambda *a, **k: 1.0, None)]:
        decision = decide_all(labels, 2, transplant=transplant, input_votes=votes, **kwargs)
        assert not decision.target_classes
    # four classes: runner-up variety speaks there, and this rule stays off
    four = np.concatenate([labels, np.repeat([2, 3], 400)])
    n = four.size
    probabilities = np.full((n, 4), 0.1 / 3)
    probabilities[np.arange(n), four] = 0.9
    rng = np.random.default_rng(3)
    decision = decide(
        four,
        4,
        np.ones(4, dtype=bool),
        {},
        distance_ratio=rng.uniform(0.2, 2.5, size=n),
        margin=2.0 + 0.3 * rng.normal(size=(n, 4)),
        probabilities=probabilities,
        oos_probabilities=probabilities,
        splits=kwargs["splits"],
        transplant=lambda *a, **k: 1.0,
        input_votes=foreign,
    )
    assert all(item.rule != "foreign-cluster" for item in decision.evidence)


def test_the_votes_are_for_a_seeded_sample_of_the_group():
    x, labels = two_blobs(seed=4, per_class=400)
    group = np.arange(0, 400)
    queried, votes = neighbour_votes(x.__getitem__, labels, group, standardise=False, seed=5)
    assert queried.size == QUERIES and votes.size == QUERIES
    assert np.all(np.diff(queried) > 0) and np.isin(queried, group).all()
    # with the group's whole class outside the references, only the other class is left
    assert np.all(votes == 1)
    again = neighbour_votes(x.__getitem__, labels, group, standardise=False, seed=5)
    np.testing.assert_array_equal(again[0], queried)


def single_source_inputs(seed: int = 0):
    """Four classes of 300 for :func:`decide`; class 2 has a far group of 60 samples, 40 of
    them (its poisons) close together in the features, the other 20 spread out."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), 300)
    n = labels.size
    ratio = rng.uniform(0.2, 2.5, size=n)
    far = np.arange(600, 660)
    poisons = far[:40]
    # a tail that thins out smoothly from the core to the far group: no gap for the
    # separated-group test to find (these tests are about the single-source test alone)
    bridge = np.arange(660, 700)
    ratio[bridge] = np.exp(rng.uniform(np.log(2.5), np.log(10.5), size=bridge.size))
    ratio[far] = np.exp(rng.uniform(np.log(10.5), np.log(200.0), size=far.size))
    features = rng.normal(size=(n, 6))
    features[poisons] = 8.0 + 0.1 * rng.normal(size=(poisons.size, 6))
    probabilities = np.full((n, 4), 0.1 / 3)
    probabilities[np.arange(n), labels] = 0.9
    kwargs = dict(
        distance_ratio=ratio,
        margin=2.0 + 0.3 * rng.normal(size=(n, 4)),
        probabilities=probabilities,
        oos_probabilities=probabilities,
        features=features,
    )
    return labels, poisons, kwargs


def looking_like(labels, members, source):
    """An ``input_votes`` stand-in: every sample asked is queried, and the input neighbours of
    ``members`` say ``source``, the others' their own label."""

    def input_votes(group, excluded):
        votes = labels[group].copy()
        votes[np.isin(group, members)] = source
        return group, votes

    return input_votes


def test_a_far_group_that_looks_like_one_class_and_moves_it_is_a_single_source_backdoor():
    labels, poisons, kwargs = single_source_inputs()
    asked = []
    # half the far samples queried look like class 0 (the poisons' source): 30 of the 40
    # poisons, none of the others
    input_votes = looking_like(labels, poisons[:30], 0)

    def transplant(code, group, core, probes, added=True):
        asked.append((code, sorted(set(labels[probes].tolist()))))
        # the trigger moves the source's samples (and only them: asked with every class's
        # probes, most do not move) when the group is mostly poisons
        if np.isin(group, poisons).mean() <= 0.9:
            return 0.0
        return 1.0 if set(labels[probes].tolist()) == {0} else 1 / 3

    decision = decide_all(labels, 4, transplant=transplant, input_votes=input_votes, **kwargs)
    assert decision.target_classes == [2]
    # every poison, found from the 30 the input named, by nearest centroid in the features
    np.testing.assert_array_equal(np.flatnonzero(decision.flagged), poisons)
    evidence = decision.evidence[2]
    assert evidence.rule == "single-source-group" and evidence.source_class == 0
    # 30 of the group's 40 look like the source
    assert evidence.foreign_share == pytest.approx(0.75) and evidence.cluster_size == 40
    # asked with the source class's samples alone
    assert (2, [0]) in asked


def test_a_single_source_group_whose_difference_does_not_move_the_source_is_natural():
    labels, poisons, kwargs = single_source_inputs()

    def input_votes(group, excluded):
        votes = labels[group].copy()
        votes[np.isin(group, poisons)] = 0
        return group, votes

    decision = decide_all(
        labels, 4, transplant=lambda *a, **k: 0.3, input_votes=input_votes, **kwargs
    )
    assert not decision.target_classes and not decision.flagged.any()
    assert decision.evidence[2].source_class == 0  # measured, reported, not called

    # a group that moves the source but mostly looks like its own class: 15 of its 40 look
    # like class 0 (a natural mode near another class), not of foreign origin
    def few_look_foreign(group, excluded):
        votes = labels[group].copy()
        votes[np.isin(group, poisons[:15])] = 0
        return group, votes

    # (what the farthest few share, stamped or blended, does not move it: added=False)
    decision = decide_all(
        labels,
        4,
        transplant=lambda *a, added=True: 1.0 if added else 0.0,
        input_votes=few_look_foreign,
        **kwargs,
    )
    assert not decision.target_classes
    assert decision.evidence[2].foreign_share == pytest.approx(15 / 40)
    # without the features the test does not run
    kwargs["features"] = None
    decision = decide_all(
        labels, 4, transplant=lambda *a, **k: 1.0, input_votes=input_votes, **kwargs
    )
    assert decision.evidence[2].source_class == -1


@pytest.mark.parametrize(
    ("source_reach", "sure_reach"),
    [(1.0, 1.0), (0.3, 0.3), (0.8, 0.12)],
    ids=["warp-trigger", "no-warp", "nudged-over-a-near-boundary"],
)
def test_a_single_source_group_a_warp_carries_from_its_source_is_called_on_the_warp(
    source_reach, sure_reach
):
    """A source-specific WaNet (its warp on other classes' samples too, labels kept) moves its
    source alone: asked with every class's probes the warp moves few, and what the group holds
    as a pattern moves half of those (a large difference added) but few of the source's. The
    warp, asked with the source's probes too, calls the class where it moves them beyond
    chance and the model is sure of them (``sure``), and the call's own ask says what carried
    it. A warp that pushes most of the source over a near boundary without making the model
    sure of them (the shirts to the pullovers) calls nothing."""
    from poisonguard.dataset import Dataset
    from poisonguard.decision import carried_by_warp
    from poisonguard.findings import class_findings

    labels, poisons, kwargs = single_source_inputs()
    warped = []
    input_votes = looking_like(labels, poisons[:30], 0)

    def transplant(code, group, core, probes, added=True):
        return 0.22 if set(labels[probes].tolist()) == {0} else 0.5

    def warp(code, probes, sure=False):
        warped.append((code, sorted(set(labels[probes].tolist()))))
        if code == 2 and set(labels[probes].tolist()) == {0}:
            return sure_reach if sure else source_reach
        return 0.1

    decision = decide_all(
        labels, 4, transplant=transplant, input_votes=input_votes, warp=warp, **kwargs
    )
    assert (2, [0]) in warped and (2, [0, 1, 3]) in warped
    evidence = decision.evidence[2]
    assert evidence.source_class == 0
    if sure_reach < 0.5:
        assert not decision.target_classes and not decision.flagged.any()
        return
    assert decision.target_classes == [2]
    np.testing.assert_array_equal(np.flatnonzero(decision.flagged), poisons)
    assert evidence.rule == "single-source-group" and evidence.transplant_share == 1.0
    # the source's ask: 22 % by the pattern, 100 % by the warp (not the 50 % of every class)
    assert (evidence.pattern_share, evidence.warp_share) == (0.22, 1.0)
    assert carried_by_warp(evidence)
    # the reason says so, and names the source's samples as the ones asked
    dataset = Dataset(
        x=np.zeros((labels.size, 1, 2, 2), dtype=np.float32),
        labels=labels,
        class_names=["c0", "c1", "c2", "c3"],
        ids=[str(i) for i in range(labels.size)],
        kind="image",
        path=Path("memory"),
        format="npz",
    )
    reason = class_findings(dataset, decision, np.bincount(labels), np.ones(4, dtype=bool))[
        2
    ].reason
    assert "searched for on typical samples of 'c0'" in reason and "(warp search)" in reason
    assert "at most 22%" in reason and "model's features only" in reason
    assert "stamped or blended" not in reason


def test_a_far_group_that_looks_like_several_classes_and_moves_all_is_a_foreign_group():
    labels, poisons, kwargs = single_source_inputs()
    asked = []

    def input_votes(group, excluded):
        # the poisons came from classes 0, 1 and 3 (an all-to-one backdoor hidden in the far
        # tail): 30 of them look like one of those, none of the other far samples do
        votes = labels[group].copy()
        chosen = np.isin(group, poisons[:30])
        votes[chosen] = np.resize([0, 1, 3], int(chosen.sum()))
        return group, votes

    def transplant(code, group, core, probes, added=True):
        asked.append(sorted(set(labels[probes].tolist())))
        return 1.0 if np.isin(group, poisons).mean() > 0.9 else 0.0

    decision = decide_all(labels, 4, transplant=transplant, input_votes=input_votes, **kwargs)
    assert decision.target_classes == [2]
    np.testing.assert_array_equal(np.flatnonzero(decision.flagged), poisons)
    evidence = decision.evidence[2]
    assert evidence.rule == "foreign-group" and evidence.source_class == -1
    assert evidence.foreign_share == pytest.approx(0.75)
    assert asked == [[0, 1, 3]]  # every other class's probes, once: called there


def test_nearest_means_read_each_sample_once_in_increasing_order():
    # neighbours repeat across rows and come nearest first; a file reads strictly increasing
    # positions (poisonguard.ondisk.ArrayFile.rows)
    x = np.arange(12, dtype=np.uint8).reshape(6, 2)
    read = []

    def take(positions):
        assert np.all(np.diff(positions) > 0)
        read.append(positions.tolist())
        return x[positions]

    nearest = np.array([[4, 1, 2], [2, 4, 5]])
    means = nearest_means(take, nearest)
    np.testing.assert_allclose(means, [x[[4, 1, 2]].mean(0), x[[2, 4, 5]].mean(0)])
    assert read == [[1, 2, 4, 5]]


def test_the_nearest_are_those_a_full_stable_sort_gives_ties_included():
    """Neighbours are picked without sorting every distance; ties (duplicate samples, a
    blank image repeated) still come out in the order a full stable sort gives."""
    from poisonguard.detectors.input_neighbours import nearest_among

    rng = np.random.default_rng(0)
    # few distinct values: many ties at every rank, across the blocks of references
    samples = rng.integers(0, 3, size=(500, 6)).astype(np.float64)
    query = samples[:40] + rng.integers(0, 2, size=(40, 6))
    references = np.arange(40, 500)
    distance = ((query[:, None, :] - samples[references][None]) ** 2).sum(-1)
    # blocks larger and smaller than the count: each block's nearest are chosen, then merged
    for count, block in itertools.product((1, 10, 25), (64, 7)):
        got = nearest_among(lambda p: samples[p], query, references, count, block=block)
        want = references[np.argsort(distance, axis=1, kind="stable")[:, :count]]
        np.testing.assert_array_equal(got, want)


def test_merging_two_searches_gives_the_nearest_of_their_union_ties_included():
    """The nearest of one set of references merged with the distances to a second set are the
    nearest among both, ties to the smaller position (what one search over them sorted gives);
    a candidate at infinite distance is never taken before a finite one."""
    from poisonguard.detectors.input_neighbours import (
        merged_nearest,
        nearest_among,
        nearest_with_distances,
        squared_distances,
        squared_norms,
    )

    rng = np.random.default_rng(1)
    samples = rng.integers(0, 3, size=(300, 5)).astype(np.float64)
    query = samples[:30] + rng.integers(0, 2, size=(30, 5))
    first, second = np.arange(30, 300, 2), np.arange(31, 300, 2)  # interleaved positions
    take = lambda p: samples[p]  # noqa: E731
    for count in (1, 8):
        found, distances = nearest_with_distances(take, query, first, count, block=16)
        assert np.array_equal(found, nearest_among(take, query, first, count, block=16))
        near = squared_distances(query, squared_norms(query)[:, None], samples[second])
        near[:, ::3] = np.inf  # not to take
        got, got_distances = merged_nearest(
            np.concatenate([found, np.broadcast_to(second, near.shape)], axis=1),
            np.concatenate([distances, near], axis=1),
            count,
        )
        usable = np.union1d(first, np.delete(second, np.s_[::3]))
        np.testing.assert_array_equal(got, nearest_among(take, query, usable, count))
        assert np.isfinite(got_distances).all()


def test_the_float32_screen_keeps_the_float64_neighbours_and_distances():
    """The float64 search screens each block in float32 and computes float64 distances only
    where the screen's error bound cannot rule a reference out. On integer samples whose
    float32 distances round (values up to 4,000: squared norms past 2^24), with references
    a distance of 1 apart and exact duplicates, the neighbours and distances are the exact
    ones, ties to the smaller position; where the norms are too large for float32 the block is
    computed in float64 whole, with the same result."""
    from poisonguard.detectors.input_neighbours import nearest_with_distances

    rng = np.random.default_rng(3)
    base = rng.integers(0, 4000, size=(1, 40))
    # references one unit step apart: the float32 distances round over these differences
    steps = rng.integers(-3, 4, size=(600, 40))
    samples = np.concatenate([base + steps, base + steps[:50]])  # 50 exact duplicates
    query = (base + rng.integers(-3, 4, size=(30, 40))).astype(np.float64)
    exact = ((query[:, None, :].astype(np.int64) - samples[None]) ** 2).sum(-1)
    assert len(np.unique(exact)) < exact.size // 10  # ties everywhere
    # 2^40: squared norms past what float32 holds (no screen), float64 still exact
    for scale in (1, 2**40):
        scaled = samples * scale
        references = np.arange(scaled.shape[0])
        for count, block in ((10, 4096), (10, 64), (1, 37), (25, 100)):
            found, distances = nearest_with_distances(
                lambda p, s=scaled: s[p], query * scale, references, count, block=block
            )
            want = np.argsort(exact, axis=1, kind="stable")[:, :count]
            np.testing.assert_array_equal(found, want)
            np.testing.assert_array_equal(
                distances, np.take_along_axis(exact, want, 1) * float(scale) ** 2
            )


def test_the_screen_gives_way_where_every_sample_is_alike():
    """Where the screen cannot tell a block's samples apart (one image repeated, a blank
    image), the block is computed in float64 whole: the same neighbours (ties to the smaller
    position), without every pair of the block computed one by one."""
    from poisonguard.detectors import input_neighbours
    from poisonguard.detectors.input_neighbours import nearest_with_distances

    samples = np.full((3000, 784), 7, dtype=np.uint8)
    samples[::97] += 1  # a few a unit step away on every value
    query = np.full((20, 784), 7.0)
    screened = []
    original = input_neighbours._Screen.pairs

    def pairs(self, *args):
        found = original(self, *args)
        screened.append(found is not None)
        return found

    input_neighbours._Screen.pairs = pairs
    try:
        found, distances = nearest_with_distances(
            lambda p: samples[p], query, np.arange(3000), 10, block=1000
        )
    finally:
        input_neighbours._Screen.pairs = original
    exact = ((samples.astype(np.int64) - 7) ** 2).sum(1)
    want = np.argsort(exact, kind="stable")[:10]
    np.testing.assert_array_equal(found, np.broadcast_to(want, (20, 10)))
    np.testing.assert_array_equal(distances, np.broadcast_to(exact[want], (20, 10)))
    assert screened == [False, False, False]


def test_kept_norms_give_the_same_neighbours_search_after_search():
    """A reader that keeps the samples' squared norms across searches (the decision's many
    searches of one dataset) gives the neighbours and distances of a plain reader, bit for
    bit, in float32 and float64, over overlapping references in blocks of other sizes."""
    from poisonguard.detectors.input_neighbours import KeptNorms, nearest_with_distances

    rng = np.random.default_rng(5)
    samples = rng.integers(0, 256, size=(900, 1, 12, 12), dtype=np.uint8)
    samples[::7] = samples[0]  # duplicates: ties
    plain = lambda p: samples[p]  # noqa: E731
    kept = KeptNorms(plain, samples.shape[0])
    for search in range(6):
        dtype = (np.float32, np.float64)[search % 2]
        query = samples[rng.choice(900, 25, replace=False)].reshape(25, -1).astype(np.float64)
        references = np.sort(rng.choice(900, 500 + 50 * search, replace=False))
        block = (64, 100, 4096)[search % 3]
        want = nearest_with_distances(plain, query, references, 7, block=block, dtype=dtype)
        got = nearest_with_distances(kept, query, references, 7, block=block, dtype=dtype)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        assert got[1].dtype == dtype
