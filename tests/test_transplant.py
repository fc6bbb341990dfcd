"""The transplant test (poisonguard.detectors.transplant) and its place in the decision: a group
beyond a class's farthest quarter is called only when its difference from the core carries the
class's label; a learned-easily group without a gap is confirmed the same way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_detectors import CLASS_SIZE, TARGET_CLASS, Synthetic

from poisonguard.detectors.activation_clustering import ClassSplit
from poisonguard.detectors.transplant import (
    TRANSPLANT_SHARE,
    blend_fit,
    blended_share,
    common_stamp,
    look_alike_class,
    mean_difference,
    probe_rows,
    stamped_share,
    transplant_share,
)

SAMPLE_DATA = Path(__file__).resolve().parent.parent / "sample_data"


def test_mean_difference_is_the_group_mean_less_the_core_mean_with_their_range():
    x = np.arange(24, dtype=np.float32).reshape(6, 2, 2)
    difference, low, high = mean_difference(
        lambda positions: x[positions], np.array([4, 5]), np.array([0, 1, 2])
    )
    np.testing.assert_allclose(difference, x[[4, 5]].mean(0) - x[[0, 1, 2]].mean(0))
    assert (low, high) == (0.0, 23.0)  # over the group and the core only


def test_probes_are_the_first_typical_samples_of_every_other_class():
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    typical = np.array([True, True, False, True, True, True, False, True])
    order = np.array([7, 6, 5, 4, 3, 2, 1, 0])
    np.testing.assert_array_equal(probe_rows(labels, 1, typical, order, per_class=1), [1, 7])
    np.testing.assert_array_equal(probe_rows(labels, 2, typical, order, per_class=2), [0, 1, 4, 5])


def test_a_difference_that_carries_the_label_moves_the_probes():
    # a "model" that reads a bright corner as class 3 and anything else as class 0
    def predict(x):
        return np.where(x[:, -1, -1] > 200, 3, 0)

    probes = np.zeros((10, 4, 4), dtype=np.uint8)
    trigger = np.zeros((4, 4))
    trigger[-1, -1] = 400.0  # clipped to the data's range: 255
    assert transplant_share(trigger, probes, predict, 3, low=0.0, high=255.0) == 1.0
    assert transplant_share(trigger / 4, probes, predict, 3, low=0.0, high=255.0) == 0.0
    assert transplant_share(trigger, probes[:0], predict, 3, low=0.0, high=255.0) == 0.0


def test_the_stamp_is_what_most_of_the_group_holds_exactly_and_the_core_does_not():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 200, size=(60, 4, 4)).astype(np.uint8)
    x[:, 0, 0] = 7  # every sample: in common with the core too, so not stamped
    group, core = np.arange(20), np.arange(20, 60)
    x[group[:12], -1, -1] = 255  # 12 of the 20 hold the patch value: more than half
    x[group[:8], 1, 1] = 99  # 8 of 20: not half
    mask, values = common_stamp(lambda positions: x[positions], group, core)
    assert np.flatnonzero(mask).tolist() == [15]
    assert values[-1, -1] == 255.0


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int64, np.float32])
def test_the_stamp_is_the_zero_median_absolute_deviation_of_its_definition(dtype):
    # the stamp reads medians on integer samples as they are and the deviation's median off a
    # count; the definition, on float64 copies, must give the same mask and values, halves
    # (an even group with exactly half at the median: not stamped) and odd groups included
    from scipy import stats

    from poisonguard.detectors.transplant import STAMP_ALPHA

    def by_definition(group_rows, core_rows):
        group_rows, core_rows = group_rows.astype(np.float64), core_rows.astype(np.float64)
        values = np.median(group_rows, axis=0)
        still = np.median(np.abs(group_rows - values), axis=0) == 0
        held = (group_rows == values).sum(axis=0)
        p = stats.binom.sf(held - 1, group_rows.shape[0], (core_rows == values).mean(axis=0))
        mask = still & ((values != np.median(core_rows, axis=0)) | (p < STAMP_ALPHA / values.size))
        return mask, values

    rng = np.random.default_rng(5)
    for size in (20, 21, 40, 41):
        x = rng.integers(0, 3, size=(size + 30, 3, 3)).astype(dtype)
        group, core = np.arange(size), np.arange(size, size + 30)
        # at the median for half of an even group or just under half of an odd one, the rest
        # on both sides of it
        x[group[: size // 2], 0, 0] = 2
        x[group[size // 2 :], 0, 0] = 4 * (np.arange(size - size // 2) % 2)
        x[group[: size // 2 + 1], 1, 1] = 2  # more than half
        x[group[size // 2 + 1 :], 1, 1] = 1
        mask, values = common_stamp(lambda positions, x=x: x[positions], group, core)
        expected_mask, expected_values = by_definition(x[group], x[core])
        np.testing.assert_array_equal(mask, expected_mask)
        np.testing.assert_array_equal(values, expected_values)
        assert bool(mask[1, 1]) and not mask[0, 0]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.float32])
def test_the_stamps_medians_are_numpys_bit_for_bit(dtype):
    # 8- and 16-bit samples are sorted a column at a time (a radix sort) instead of partitioned
    from poisonguard.detectors.transplant import _median

    rng = np.random.default_rng(11)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else np.iinfo(np.int16)
    for count in (1, 2, 3, 4, 7, 64, 301, 1000):
        rows = rng.integers(info.min, int(info.max) + 1, size=(count, 2, 5, 3)).astype(dtype)
        rows[: count // 2, 0, 0] = rows[0, 0, 0]  # ties
        medians = _median(rows)
        assert medians.dtype == np.float64 and medians.shape == (2, 5, 3)
        expected = np.median(rows.astype(np.float64), axis=0)
        assert np.array_equal(medians.view(np.uint64), expected.view(np.uint64))


def test_a_stamp_takes_the_core_median_where_the_group_holds_it_beyond_chance():
    """A patch laid where the class often has ink of the patch's value: the core's median
    there is the patch value too, but every poison holds it and only some of the core does;
    a value the group holds about as often as the core stays out."""
    rng = np.random.default_rng(2)
    x = rng.integers(0, 200, size=(140, 4, 4)).astype(np.uint8)
    group, core = np.arange(40), np.arange(40, 140)
    x[core, 0, 0] = np.where(rng.random(core.size) < 0.6, 255, 30)  # the class's ink: 60 %
    x[group, 0, 0] = 255  # every poison
    x[core, 2, 2] = np.where(rng.random(core.size) < 0.6, 255, 30)
    x[group, 2, 2] = np.where(rng.random(group.size) < 0.6, 255, 30)  # as often as the core
    mask, values = common_stamp(lambda positions: x[positions], group, core)
    assert np.flatnonzero(mask).tolist() == [0]
    assert values[0, 0] == 255.0


def test_a_stamp_of_the_background_erases_and_is_left_out_where_only_what_is_added_counts():
    """Images on a black background: a group that shares a black region where the core has
    ink (a part of the object missing) stamps black there; a white patch stays either way."""
    rng = np.random.default_rng(1)
    x = np.zeros((80, 6, 6), dtype=np.float32)
    x[:, 1:5, 1:5] = rng.uniform(0.3, 0.9, size=(80, 4, 4))  # an object on a black background
    group, core = np.arange(30), np.arange(30, 80)
    x[group, 1:3, 1:3] = 0.0  # the group's object has its top-left corner missing
    x[group, 5, 5] = 1.0  # and a white pixel on the background: a patch
    take = lambda positions: x[positions]  # noqa: E731
    every, _ = common_stamp(take, group, core)
    assert sorted(np.flatnonzero(every).tolist()) == [7, 8, 13, 14, 35]
    added, values = common_stamp(take, group, core, added_only=True)
    assert np.flatnonzero(added).tolist() == [35]
    assert values[5, 5] == 1.0


def test_a_stamp_moves_the_probes_where_the_same_difference_added_does_not():
    """A patch over strokes: adding the mean difference leaves the probes' bright values short
    of the trigger's, stamping writes the trigger's own values."""

    def predict(x):  # reads class 3 only when the whole corner is 255
        return np.where(np.all(x[:, -2:, -2:] == 255, axis=(1, 2)), 3, 0)

    probes = np.full((10, 4, 4), 40, dtype=np.uint8)
    mask = np.zeros((4, 4), dtype=bool)
    mask[-2:, -2:] = True
    values = np.full((4, 4), 255.0)
    assert stamped_share(mask, values, probes, predict, 3) == 1.0
    assert (
        transplant_share(np.where(mask, 200.0, 0.0), probes, predict, 3, low=0.0, high=255.0) == 0.0
    )
    assert stamped_share(np.zeros_like(mask), values, probes, predict, 3) == 0.0
    assert stamped_share(mask, values, probes[:0], predict, 3) == 0.0


def test_the_blend_fit_reads_the_fading_and_the_pattern_off_the_group_and_its_look_alikes():
    rng = np.random.default_rng(0)
    sources = rng.uniform(0, 200, size=(40, 3, 3))
    pattern = rng.uniform(0, 255, size=(3, 3))
    blended = 0.8 * sources + 0.2 * pattern  # a blend at alpha 0.2
    slope, offset = blend_fit(blended, sources)
    assert slope == pytest.approx(0.8)
    np.testing.assert_allclose(offset, 0.2 * pattern)
    # a group that is its look-alikes' look, a little brighter: slope 1, the brightness added
    slope, offset = blend_fit(sources + 5.0, sources)
    assert slope == pytest.approx(1.0)
    np.testing.assert_allclose(offset, 5.0)
    # the slope stays in [0, 1]; look-alikes with no spread give 1
    assert blend_fit(2.0 * sources, sources)[0] == 1.0
    assert blend_fit(-sources, sources)[0] == 0.0
    assert blend_fit(sources, np.ones_like(sources))[0] == 1.0


def test_probes_blended_as_the_group_was_made_move_where_the_pattern_added_does_not():
    """A model that learned the blend's fading as well as its pattern: it reads class 3 where
    the pattern's corner is bright and the stroke is faded. Adding the pattern leaves the
    stroke at full strength; blending fades it."""

    def predict(x):
        return np.where((x[:, -1, -1] > 40) & (x[:, 0, 0] < 190), 3, 0)

    probes = np.zeros((10, 3, 3), dtype=np.uint8)
    probes[:, 0, 0] = 200  # a stroke at full strength
    pattern = np.zeros((3, 3))
    pattern[-1, -1] = 250.0
    assert transplant_share(0.2 * pattern, probes, predict, 3, low=0.0, high=255.0) == 0.0
    assert blended_share(0.8, 0.2 * pattern, probes, predict, 3, low=0.0, high=255.0) == 1.0
    assert blended_share(1.0, 0.2 * pattern, probes, predict, 3, low=0.0, high=255.0) == 0.0
    assert blended_share(0.8, 0.2 * pattern, probes[:0], predict, 3, low=0.0, high=255.0) == 0.0


def test_the_look_alike_class_is_the_other_class_most_members_neighbours_name():
    # members' neighbour labels: two look like class 1, one like class 2, one like its own (0)
    neighbours = np.array([[1, 1, 0], [1, 2, 1], [2, 2, 0], [0, 0, 1]])
    assert look_alike_class(neighbours, 0) == 1
    assert look_alike_class(np.array([[0, 0, 1], [0, 2, 0]]), 0) == -1  # all look like 0
    assert look_alike_class(np.zeros((0, 3), dtype=np.int64), 0) == -1


def assert_called_on_poisoned_digits(tmp_path, *, attack, target, seed, split_seed, scan_seed):
    """Poisons 5 % of the 8x8 digits (the training split at ``split_seed``, or every digit when
    ``None``) into ``target`` and scans them: the target is the one class called, every poison
    is flagged, and clean flags stay under 5 % of the poisons."""
    from poisonguard.evaluate import holdout_split, subset
    from poisonguard.loaders import load_dataset
    from poisonguard.poison import AttackOptions
    from poisonguard.poisoned_copy import poison_dataset
    from poisonguard.scan import ScanSettings, scan_dataset

    digits = load_dataset(SAMPLE_DATA / "digits" / "clean")
    if split_seed is not None:
        digits, _ = holdout_split(digits, 0.2, seed=split_seed)
    poisoning = poison_dataset(
        digits, attack=attack, rate=0.05, target=target, seed=seed, options=AttackOptions()
    )
    poisoned = subset(digits, np.arange(digits.n_samples), x=poisoning.x, labels=poisoning.labels)
    result = scan_dataset(
        poisoned, ScanSettings(seed=scan_seed), cache_dir=tmp_path, use_cache=True
    )
    assert result.target_classes == [str(target)]
    assert np.all(result.flagged[poisoning.poisoned])
    assert np.sum(result.flagged & ~poisoning.poisoned) <= 0.05 * poisoning.n_poisoned


@pytest.mark.slow
def test_a_blend_into_small_digits_is_called_by_blending_the_probes(tmp_path):
    """A 5 % blend into the zeros of the 8x8 digits' training split at seed 3: the poisons form
    the zeros' far group, but their difference added moved 46 % of the probes (the blend also
    fades each sample, which the model learned) and nothing was called. Blended as the group
    was made from its look-alikes, the probes move and every poison is flagged."""
    assert_called_on_poisoned_digits(
        tmp_path, attack="blend", target=0, seed=3, split_seed=3, scan_seed=3
    )


@pytest.mark.slow
def test_a_patch_over_the_strokes_of_small_digits_is_called(tmp_path):
    """A 3x3 patch into the sixes of the 8x8 digits (5 %, seed 1): the mean difference moved
    12 % of the probes (the source digits' average shape less the six's drowns the patch), and
    nothing was called; the common stamp moves them and the class is called, every poison
    flagged."""
    assert_called_on_poisoned_digits(
        tmp_path, attack="patch", target=6, seed=1, split_seed=None, scan_seed=0
    )


def large_group(data: Synthetic) -> np.ndarray:
    """A third of the target class far out (ratios 50-200) with one origin: beyond the
    farthest quarter, so only the transplant test can call it."""
    return data.plant_far_group(margin=2.0, diverse=False, share=1 / 3)


def test_a_group_beyond_the_farthest_quarter_is_called_only_when_the_transplant_confirms():
    data = Synthetic()
    far = large_group(data)
    assert not data.decide().target_classes  # without the test: a mode of the class
    asked = []

    def transplant(code, group, core, probes, added=True):
        asked.append((code, group.size, core.size, probes.size))
        return 0.9

    decision = data.decide(transplant=transplant)
    assert decision.target_classes == [TARGET_CLASS]
    assert np.flatnonzero(decision.flagged).tolist() == far.tolist()
    evidence = decision.evidence[TARGET_CLASS]
    assert evidence.rule == "separated-group" and evidence.transplant_share == 0.9
    # the group beyond the gap against the core; probes from the 4 other classes, 50 each
    assert asked == [(TARGET_CLASS, far.size, CLASS_SIZE - far.size, 200)]
    refused = data.decide(transplant=lambda *args, **kwargs: TRANSPLANT_SHARE - 0.01)
    assert not refused.target_classes and not refused.flagged.any()


def test_the_farthest_few_samples_are_called_when_what_they_share_carries_the_label():
    # a class whose far tail thins out smoothly (no gap), with one origin and hard to learn:
    # no group test calls it; a backdoor too rare to form a group sits at its very end
    data = Synthetic()
    members = np.flatnonzero(data.labels == TARGET_CLASS)
    data.ratio[members] = np.geomspace(0.2, 60.0, members.size)
    farthest = members[-5:]  # the largest ratios; 0.5 % of 300 is under min_group_size
    assert not data.decide().target_classes
    asked = []

    def transplant(code, group, core, probes, added=True):
        asked.append((code, group.tolist(), added))
        return 0.95 if not added and group.tolist() == farthest.tolist() else 0.0

    decision = data.decide(transplant=transplant)
    assert decision.target_classes == [TARGET_CLASS]
    assert np.flatnonzero(decision.flagged).tolist() == farthest.tolist()
    evidence = decision.evidence[TARGET_CLASS]
    assert evidence.rule == "farthest-samples" and evidence.cluster_size == 5
    assert evidence.transplant_share == 0.95
    # asked without the difference added; the other classes have no samples beyond far_ratio
    assert (TARGET_CLASS, farthest.tolist(), False) in asked
    assert all(code == TARGET_CLASS for code, _, _ in asked)
    # a natural tail's farthest samples: what they share does not carry the label
    natural = data.decide(transplant=lambda *args, **kwargs: 0.3)
    assert not natural.target_classes and not natural.flagged.any()
    # switched off (the scan's tables): not asked
    asked.clear()
    assert not data.decide(transplant=transplant, farthest_samples=False).target_classes
    assert not asked


@pytest.mark.parametrize(
    ("path", "runs"),
    [("breast_cancer/clean.csv", False), ("digits/clean", True)],
)
def test_the_scan_runs_the_farthest_samples_test_on_images_only(path, runs, monkeypatch, tmp_path):
    # a table's farthest handful of rows can share exact values naturally
    import poisonguard.scan as scan_module
    from poisonguard.loaders import load_dataset
    from poisonguard.scan import ScanSettings, scan_dataset

    seen = {}
    decide = scan_module.decide

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return decide(*args, **kwargs)

    monkeypatch.setattr(scan_module, "decide", spy)
    dataset = load_dataset(SAMPLE_DATA / path)
    scan_dataset(dataset, ScanSettings(seed=0, epochs=1), cache_dir=tmp_path, use_cache=False)
    assert seen["farthest_samples"] is runs and seen["transplant"] is not None


def test_the_farthest_samples_test_asks_only_samples_beyond_the_far_ratio():
    data = Synthetic()  # every distance ratio below 2.5: no far sample in any class
    asked = []

    def transplant(code, group, core, probes, added=True):
        asked.append(code)
        return 1.0

    assert not data.decide(transplant=transplant).target_classes and not asked


def plant_gapless_far_group(data: Synthetic, margin: float) -> np.ndarray:
    """A quarter of the target class far (ratios 12-40, touching the core's tail: no gap), of
    varied origin, with margins about ``margin`` (the core's are about 2)."""
    members = np.flatnonzero(data.labels == TARGET_CLASS)
    far = members[: CLASS_SIZE // 4]
    data.ratio[far] = np.geomspace(12.0, 40.0, far.size)
    data.ratio[members[CLASS_SIZE // 4 :]] = np.geomspace(0.2, 12.0, CLASS_SIZE - far.size)
    data.margin[far] = margin
    others = [c for c in range(5) if c != TARGET_CLASS]
    data.runner_up[far] = np.resize(others, far.size)
    return far


def test_an_easily_learned_group_of_mixed_origin_without_a_gap_needs_the_transplant():
    data = Synthetic()
    plant_gapless_far_group(data, margin=5.0)  # easy
    assert data.decide().target_classes == [TARGET_CLASS]  # as before: no model to ask
    assert data.decide(transplant=lambda *args, **kwargs: 0.8).target_classes == [TARGET_CLASS]
    vetoed = data.decide(transplant=lambda *args, **kwargs: 0.05)
    assert not vetoed.target_classes and not vetoed.flagged.any()
    assert vetoed.evidence[TARGET_CLASS].transplant_share == 0.05


def test_a_hard_group_of_mixed_origin_without_a_gap_is_called_when_its_difference_moves():
    # a blend that the model learns no more easily than the core and that thins out into it
    # (digits, 5 %): neither easy nor apart, only the transplant test can call it
    data = Synthetic()
    plant_gapless_far_group(data, margin=1.0)  # harder than the core
    assert not data.decide().target_classes  # natural outliers, without a model to ask
    assert not data.decide(transplant=lambda *args, **kwargs: 0.1).target_classes
    called = data.decide(transplant=lambda *args, **kwargs: 0.9)
    assert called.target_classes == [TARGET_CLASS]
    evidence = called.evidence[TARGET_CLASS]
    assert evidence.rule == "mixed-origin-group" and not evidence.easy and evidence.gap is None


def half_class_poisons(data: Synthetic) -> tuple[np.ndarray, list]:
    """Half of the target class are poisons from the other classes (varied runner-ups, easy),
    with no far group: the robust core fits the mixture. Activation clustering splits every
    class in two; only the target's split separates origins."""
    members = np.flatnonzero(data.labels == TARGET_CLASS)
    poisons = members[::2]
    others = [c for c in range(5) if c != TARGET_CLASS]
    data.runner_up[poisons] = np.resize(others, poisons.size)
    data.margin[poisons] = 4.0
    splits = []
    for code in range(5):
        inside = np.flatnonzero(data.labels == code)
        minority = poisons if code == TARGET_CLASS else inside[: inside.size // 3]
        splits.append(ClassSplit(code, inside.size, minority, 4.0))
    return poisons, splits


def test_a_cluster_of_mixed_origin_filling_half_a_class_is_called_when_confirmed():
    data = Synthetic()
    poisons, splits = half_class_poisons(data)
    assert not data.decide().target_classes  # no far group: the far-group tests see nothing
    asked = []

    def transplant(code, group, core, probes, added=True):
        asked.append(code)
        return 0.95

    decision = data.decide(splits=splits, transplant=transplant)
    assert decision.target_classes == [TARGET_CLASS] and asked == [TARGET_CLASS]
    assert np.flatnonzero(decision.flagged).tolist() == poisons.tolist()
    evidence = decision.evidence[TARGET_CLASS]
    assert evidence.rule == "mixed-origin-cluster" and evidence.cluster_size == poisons.size
    assert evidence.far_entropy > evidence.core_entropy + 0.3
    refused = data.decide(splits=splits, transplant=lambda *args, **kwargs: 0.2)
    assert not refused.target_classes and not refused.flagged.any()
    # without a model to ask, the split is not tested: a clean class's sub-types can differ in
    # runner-ups too
    assert not data.decide(splits=splits).target_classes


def test_a_majority_of_the_probes_must_be_beyond_chance():
    from poisonguard.detectors.transplant import majority_beyond_chance

    # 50 probes at 1e-4: 39 moved is enough (p = 4.5e-5), 38 is not (p = 1.5e-4)
    assert majority_beyond_chance(39 / 50, 50, 1e-4)
    assert not majority_beyond_chance(38 / 50, 50, 1e-4)
    assert not majority_beyond_chance(0.5, 50, 1e-4)  # half a class's probes: a coin
    # more probes make a smaller majority significant
    assert majority_beyond_chance(0.65, 450, 1e-4)
    assert not majority_beyond_chance(1.0, 0, 1e-4)  # no probes, no evidence
