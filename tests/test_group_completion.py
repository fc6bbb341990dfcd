"""Group completion: the samples of a called class that a cross-fitted discriminant puts with
its flagged group."""

from __future__ import annotations

import numpy as np

from poisonguard.detectors.group_completion import (
    MIN_GROUP,
    complete_group,
    stamp_carriers,
)
from poisonguard.rows import Rows


def planted_class(seed: int = 0, n: int = 1500, group: int = 150, dims: int = 16):
    """A class of ``n`` Gaussian samples, the first ``group`` shifted along one direction (a
    trigger's feature); the tests flagged only the 80 % of the group farthest along it."""
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(n, dims)).astype(np.float32)
    rows[:group, 0] += 6.0
    poisons = np.zeros(n, dtype=bool)
    poisons[:group] = True
    order = np.argsort(-rows[:group, 0])
    flagged = np.zeros(n, dtype=bool)
    flagged[order[: int(0.8 * group)]] = True
    return rows, poisons, flagged


def test_the_poisons_below_the_cut_join_the_group_and_the_rest_of_the_class_does_not():
    rows, poisons, flagged = planted_class()
    members = np.arange(rows.shape[0])
    completed = complete_group(Rows(rows), members, flagged)
    assert np.all(completed[flagged])  # the tests' flags are kept
    assert completed[poisons].mean() >= 0.97
    assert completed[~poisons].sum() <= 3


def test_anchors_from_outside_the_class_teach_the_trigger_the_group_shares_with_a_look():
    """A group flagged from the sources least like the class carries the trigger and their
    look: alone, its discriminant learns the look and takes in none of the poisons from the
    other sources. Probes from outside the class, and the same probes with the trigger (the
    warp search's), teach it the trigger whatever the look: those poisons join, the clean
    samples stay out, and only the class's members are judged."""
    for seed in range(3):
        rng = np.random.default_rng(seed)
        rows = rng.normal(size=(1100, 12)).astype(np.float32)
        rows[1000:, 0] += 6.0  # the trigger, in every poison
        rows[1000:1050, 1] += 8.0  # the look of the sources the group was flagged from
        members = np.arange(rows.shape[0])
        flagged = np.zeros(rows.shape[0], dtype=bool)
        flagged[1000:1050] = True
        probes = rng.normal(size=(300, 12)).astype(np.float32)
        probes[:, 2:6] += rng.normal(scale=3.0, size=(300, 4))  # other classes' looks
        triggered = probes.copy()
        triggered[:, 0] += 6.0
        anchors = (np.vstack([probes, triggered]), np.repeat([False, True], 300))
        alone = complete_group(Rows(rows), members, flagged)
        anchored = complete_group(Rows(rows), members, flagged, anchors=anchors)
        assert alone.shape == anchored.shape == (1100,)
        assert not alone[1050:].any()
        assert anchored[1050:].sum() >= 48 and anchored[:1000].sum() <= 2
        assert np.all(anchored[1000:1050])  # the tests' flags are kept
        # anchors never start a group: fewer than MIN_GROUP flagged leaves the class as it is
        few = np.zeros(rows.shape[0], dtype=bool)
        few[1000 : 1000 + MIN_GROUP - 1] = True
        np.testing.assert_array_equal(
            complete_group(Rows(rows), members, few, anchors=anchors), few
        )


def test_only_the_class_members_are_read_and_the_answer_is_theirs():
    rows, poisons, flagged = planted_class()
    other = np.random.default_rng(5).normal(size=(700, rows.shape[1])).astype(np.float32) + 9.0
    everything = np.concatenate([other[:300], rows, other[300:]])
    members = np.arange(300, 300 + rows.shape[0])
    completed = complete_group(Rows(everything), members, flagged)
    alone = complete_group(Rows(rows), np.arange(len(rows)), flagged)
    np.testing.assert_array_equal(completed, alone)


def test_the_result_does_not_depend_on_the_order_of_the_rows():
    rows, poisons, flagged = planted_class(seed=3)
    order = np.random.default_rng(1).permutation(rows.shape[0])
    completed = complete_group(Rows(rows), np.arange(len(rows)), flagged)
    permuted = complete_group(Rows(rows[order]), np.arange(len(rows)), flagged[order])
    np.testing.assert_array_equal(permuted, completed[order])


def test_a_class_above_the_fit_sample_is_judged_in_blocks(monkeypatch):
    import poisonguard.detectors.group_completion as module

    rows, poisons, flagged = planted_class(seed=2, n=3000, group=300)
    monkeypatch.setattr(module, "FIT_ROWS", 1000)
    completed = module.complete_group(Rows(rows), np.arange(len(rows)), flagged)
    assert np.all(completed[flagged])
    assert completed[poisons].mean() >= 0.95
    assert completed[~poisons].sum() <= 6


def test_a_group_strung_out_along_its_trigger_keeps_growing_until_it_settles(monkeypatch):
    """Poisons spread along a long stretch of one direction, the tests having flagged the ten
    farthest: each round adds the next few, for more than five rounds (the 8x8 digits with a
    5 % blend into the nines took nine in the pixels). Five rounds would stop short."""
    import poisonguard.detectors.group_completion as module

    rng = np.random.default_rng(0)
    rows = rng.normal(size=(1000, 8)).astype(np.float32)
    rows[:200, 0] += np.linspace(15.0, 3.0, 200)  # the poisons, strung out
    poisons = np.arange(1000) < 200
    flagged = np.arange(1000) < 10
    completed = complete_group(Rows(rows), np.arange(1000), flagged)
    assert completed[poisons].sum() >= 150 and completed[~poisons].sum() == 0
    monkeypatch.setattr(module, "ROUNDS", 5)
    capped = module.complete_group(Rows(rows), np.arange(1000), flagged)
    assert capped[poisons].sum() < completed[poisons].sum()


def test_samples_joining_and_leaving_by_turns_end_the_rounds(monkeypatch):
    """A discriminant that puts one sample with the group in every other round never settles:
    the rounds stop as soon as an earlier group comes back, the larger of the two kept, long
    before ``ROUNDS``."""
    import poisonguard.detectors.group_completion as module

    rows, poisons, flagged = planted_class()
    extra = np.flatnonzero(~flagged)[0]
    rounds = []

    def judged(self, in_group):
        # the discriminants put one clean sample with the group in every other round
        rounds.append(1)
        joins = np.zeros(in_group.size, dtype=bool)
        joins[np.flatnonzero(np.all(self.values[: self.fitted] == rows[extra], axis=1))] = (
            len(rounds) % 2 == 1
        )
        return joins

    monkeypatch.setattr(module._CrossFit, "judged", judged)
    completed = module.complete_group(Rows(rows), np.arange(len(rows)), flagged)
    expected = flagged.copy()
    expected[extra] = True
    np.testing.assert_array_equal(completed, expected)
    assert len(rounds) == 2 < module.ROUNDS


def test_a_group_too_small_to_fit_is_left_as_it_is():
    rows, poisons, flagged = planted_class()
    few = np.zeros_like(flagged)
    few[np.flatnonzero(flagged)[: MIN_GROUP - 1]] = True
    np.testing.assert_array_equal(complete_group(Rows(rows), np.arange(len(rows)), few), few)


def test_a_group_of_the_decisions_smallest_size_grows():
    """A test can call a class on a handful of its poisons (the 8x8 digits' fives: 8 of 72);
    completion starts from as few as the decision's smallest group."""
    rows, poisons, flagged = planted_class()
    few = np.zeros_like(flagged)
    few[np.flatnonzero(flagged)[:MIN_GROUP]] = True
    completed = complete_group(Rows(rows), np.arange(len(rows)), few)
    assert completed[poisons].mean() >= 0.9 and completed[~poisons].sum() <= 3


def test_constant_and_duplicated_features_give_an_answer():
    rows, poisons, flagged = planted_class()
    rows[:, 5] = 1.0  # a dead unit
    rows[200:400] = rows[200]  # copies of one clean sample
    completed = complete_group(Rows(rows), np.arange(len(rows)), flagged)
    assert np.all(completed[flagged])
    assert completed[poisons].mean() >= 0.95


def test_images_are_read_as_rows_of_their_values():
    """Group completion in the samples themselves: an image is one row of its pixels."""
    rows, poisons, flagged = planted_class(dims=16)
    images = rows.reshape(-1, 4, 4)
    as_images = complete_group(Rows(images), np.arange(len(rows)), flagged)
    np.testing.assert_array_equal(
        as_images, complete_group(Rows(rows), np.arange(len(rows)), flagged)
    )
    assert as_images[poisons].mean() >= 0.97


def test_the_samples_that_carry_the_groups_stamp_join_however_few_were_flagged():
    """A patch on 100 of 600 images, 30 of them flagged: every carrier of the patch's exact
    values joins, no clean image does; a group with no value in common is left as it is."""
    rng = np.random.default_rng(4)
    images = rng.integers(0, 200, size=(600, 6, 6)).astype(np.uint8)
    poisons = np.zeros(600, dtype=bool)
    poisons[rng.choice(600, 100, replace=False)] = True
    images[poisons, -2:, -2:] = 255
    flagged = np.zeros(600, dtype=bool)
    flagged[np.flatnonzero(poisons)[:30]] = True
    carried = stamp_carriers(Rows(images), np.arange(600), flagged)
    np.testing.assert_array_equal(carried, poisons)
    natural = np.zeros(600, dtype=bool)
    natural[np.flatnonzero(~poisons)[:30]] = True
    np.testing.assert_array_equal(stamp_carriers(Rows(images), np.arange(600), natural), natural)


def test_a_value_the_other_classes_hold_is_no_part_of_the_stamp():
    """The flagged part came from sources blank at one place (0, like most images of the other
    classes) where the class's own images are not: that blank is the sources', not the trigger's,
    and the poisons from other sources carry the patch without it."""
    rng = np.random.default_rng(5)
    images = rng.integers(1, 200, size=(1200, 6, 6)).astype(np.uint8)
    images[600:, 0, 0] = 0  # the other classes: blank there
    members = np.arange(600)
    poisons = np.zeros(1200, dtype=bool)
    poisons[rng.choice(600, 100, replace=False)] = True
    images[poisons, -2:, -2:] = 255
    flagged = np.zeros(1200, dtype=bool)
    flagged[np.flatnonzero(poisons)[:30]] = True
    images[flagged, 0, 0] = 0  # the flagged part's sources
    carried = stamp_carriers(Rows(images), members, flagged[members])
    np.testing.assert_array_equal(carried, poisons[members])
