"""The warp search (poisonguard.detectors.warp_search) and its place in the decision: a class
that a sub-pixel smooth warp reaches is confirmed where no pattern transplant moves the probes,
and its group is then grown in the model's features only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_detectors import TARGET_CLASS, Synthetic, apart_in_features_ten_more_in_input
from test_transplant import assert_called_on_poisoned_digits, plant_gapless_far_group

from poisonguard.decision import TRANSPLANT_SHARE, carried_by_warp
from poisonguard.detectors.warp_search import SURE, WARP_BOUND, search_warp, smooth_warp
from poisonguard.findings import class_findings

BAR = 4  # the column where every bar of :func:`bars` starts


def bars(n: int, size: int = 12) -> np.ndarray:
    """``n`` images ``(n, 1, size, size)``, each a bright vertical bar two columns wide at
    columns ``BAR`` and ``BAR + 1``, of a height that differs from image to image."""
    images = np.zeros((n, 1, size, size), dtype=np.float32)
    for i in range(n):
        images[i, 0, 1 + i % 3 : size - 1 - i % 2, BAR : BAR + 2] = 255.0
    return images


def column_of(images: torch.Tensor) -> torch.Tensor:
    """Each image's ink-weighted mean column."""
    columns = torch.arange(images.shape[3], dtype=images.dtype)
    ink = images.sum(dim=(1, 2))  # (N, W)
    return (ink * columns).sum(dim=1) / ink.sum(dim=1)


def test_a_zero_field_leaves_the_images_and_a_one_pixel_field_shifts_them_a_column():
    images = torch.from_numpy(bars(4))
    np.testing.assert_allclose(smooth_warp(images, torch.zeros(2, 4, 4)), images, atol=1e-2)
    field = torch.zeros(2, 4, 4)
    field[0] = -1.0  # every output pixel reads one column to its left: the bar moves right
    moved = smooth_warp(images, field)
    np.testing.assert_allclose(column_of(moved), column_of(images) + 1.0, atol=1e-3)


def bar_model(threshold: float, steepness: float = 20.0):
    """Logits of a 'model' that reads class 1 when a bar of :func:`bars` stands more than
    ``threshold`` columns right of its place, and class 0 otherwise: a shortcut that a small
    shift reaches (``steepness``: the logit's slope per column)."""

    def logits(images: torch.Tensor) -> torch.Tensor:
        read = steepness * (column_of(images) - (BAR + 0.5) - threshold)
        return torch.stack([torch.zeros_like(read), read], dim=1)

    return logits


def test_the_search_finds_a_sub_pixel_shift_that_carries_a_class_within_its_bound():
    probes = bars(16)
    # a shift of 0.8 column reads as class 1 where the bar is still the bar; within half a
    # pixel it reads as class 0
    reach = bar_model(threshold=0.8)
    assert search_warp(reach, probes, 1, bound=1.0)[0] == 1.0
    assert search_warp(reach, probes, 1, bound=WARP_BOUND)[0] == 0.0
    # and one a quarter column reaches: found within the default bound, deterministically
    near = bar_model(threshold=0.25)
    assert search_warp(near, probes, 1)[0] == 1.0
    assert search_warp(near, probes, 1, seed=3)[0] == search_warp(near, probes, 1, seed=3)[0]
    assert search_warp(near, probes[:1], 1) == (0.0, None)  # nothing to fit and measure on


def test_a_sure_search_counts_only_the_probes_the_model_is_sure_of():
    """``confidence``: a model whose class 1 lies a quarter column away on a soft slope reads
    every probe shifted by half a pixel as class 1, but at about 62 %; a sure search counts
    none of them, and the same probes read by a steep model are all counted."""
    probes = bars(16)
    steep, soft = bar_model(threshold=0.25), bar_model(threshold=0.25, steepness=2.0)
    assert search_warp(soft, probes, 1)[0] == 1.0
    assert search_warp(soft, probes, 1, confidence=SURE)[0] == 0.0
    assert search_warp(steep, probes, 1, confidence=SURE)[0] == 1.0


def test_a_class_only_the_warp_reaches_is_called_and_grown_in_the_features_only():
    """A group of mixed origin without a gap, learned no more easily than the core: only a
    transplant can call it. What it holds as a pattern moves 10 % of the probes, a searched warp
    90 %: the class is called on the warp, and ten members that share the group's pixels but
    not its features (a pattern in the input the warp does not have) are not added."""
    data = Synthetic()
    far = plant_gapless_far_group(data, margin=1.0)
    features, images, missed = apart_in_features_ten_more_in_input(data, far)
    asked = []

    def warp(code, probes):
        asked.append((code, probes.size))
        return 0.9

    def pattern(*args, **kwargs):
        return 0.1

    by_pattern = data.decide(
        features=features, inputs=images, transplant=lambda *args, **kwargs: 0.9
    )
    assert by_pattern.target_classes == [TARGET_CLASS]
    assert set(missed) <= set(np.flatnonzero(by_pattern.flagged))  # the input adds them
    assert not data.decide(features=features, inputs=images, transplant=pattern).target_classes
    by_warp = data.decide(features=features, inputs=images, transplant=pattern, warp=warp)
    assert by_warp.target_classes == [TARGET_CLASS]
    evidence = by_warp.evidence[TARGET_CLASS]
    assert (evidence.pattern_share, evidence.warp_share) == (0.1, 0.9)
    assert evidence.transplant_share == 0.9 and carried_by_warp(evidence)
    assert (TARGET_CLASS, 200) in asked  # every other class's 50 probes
    assert not by_warp.flagged[missed].any()
    assert evidence.completed_in_input == 0
    flagged = np.flatnonzero(by_warp.flagged)
    assert np.all(data.labels[flagged] == TARGET_CLASS) and flagged.size >= far.size // 2
    counts = np.bincount(data.labels)
    finding = class_findings(data.image_dataset(), by_warp, counts, np.ones(len(counts), bool))[
        TARGET_CLASS
    ]
    assert "warp search" in finding.reason and "model's features only" in finding.reason
    assert "-0.00" not in finding.reason  # the core's runner-ups all one class: entropy 0.00


def test_a_class_a_pattern_calls_keeps_its_group_though_a_warp_reaches_it():
    """The warp is asked last: a blend's target is reached by a warp too (the 8x8 digits), and
    a class the pattern transplants call keeps the group they gave it, completed in the input;
    the other classes, which no warp reaches, are judged once. The called class is asked at
    completion only, for the warp search's probes (none here: no ``warp_features``)."""
    data = Synthetic()
    far = plant_gapless_far_group(data, margin=1.0)
    features, images, missed = apart_in_features_ten_more_in_input(data, far)
    asked = []

    def warp(code, probes):
        asked.append(code)
        return 0.9 if code == TARGET_CLASS else 0.1

    def pattern(*args, **kwargs):
        return 0.9

    alone = data.decide(features=features, inputs=images, transplant=pattern)
    with_warp = data.decide(features=features, inputs=images, transplant=pattern, warp=warp)
    np.testing.assert_array_equal(with_warp.flagged, alone.flagged)
    assert set(missed) <= set(np.flatnonzero(with_warp.flagged))
    assert sorted(asked) == sorted([0, 1, 3, 4, TARGET_CLASS])  # each class once
    assert not carried_by_warp(with_warp.evidence[TARGET_CLASS])
    assert np.isnan(with_warp.evidence[TARGET_CLASS].warp_share)
    assert np.isnan(with_warp.evidence[TARGET_CLASS].warp_probes_share)


def test_the_warp_search_probes_warped_and_not_join_the_features_completion():
    """A called class that a warp reaches, whatever called it: its group's discriminant in the
    features is fitted with the class's probes (not with the group) and their features once
    warped (with it), read from ``warp_features`` for that class and those probes only;
    without it, or where no warp reaches the class, the group alone."""
    data = Synthetic()
    far = plant_gapless_far_group(data, margin=1.0)
    features, images, _ = apart_in_features_ten_more_in_input(data, far)
    asked = []

    def warp_features(code, probes):
        asked.append((code, probes.size))
        warped = features[probes].copy()
        warped[:, 0] += 8.0  # what the group shares in the features
        return warped

    for pattern, warp_share in ((0.1, 0.9), (0.9, 0.9), (0.9, 0.3)):
        # carried by the warp only; called by a pattern, reached by a warp too; not reached
        asked.clear()
        common = dict(
            features=features,
            inputs=images,
            transplant=lambda *args, share=pattern, **kwargs: share,
            warp=lambda code, probes, share=warp_share: share if code == TARGET_CLASS else 0.0,
        )
        plain = data.decide(**common)
        anchored = data.decide(**common, warp_features=warp_features)
        reached = warp_share >= TRANSPLANT_SHARE
        assert asked == ([(TARGET_CLASS, 200)] if reached else [])  # others' 50 probes each
        assert anchored.target_classes == plain.target_classes == [TARGET_CLASS]
        evidence = anchored.evidence[TARGET_CLASS]
        assert (evidence.warp_probes_share == warp_share) is reached
        assert np.isnan(plain.evidence[TARGET_CLASS].warp_probes_share)
        assert set(np.flatnonzero(anchored.flagged)) >= set(far[: far.size // 2])
        assert np.all(data.labels[anchored.flagged] == TARGET_CLASS)
        counts = np.bincount(data.labels)
        reason = class_findings(data.image_dataset(), anchored, counts, np.ones(len(counts), bool))[
            TARGET_CLASS
        ].reason
        # a class the warp carries says so already; one a pattern called, that a warp reaches
        assert ("joined group completion in the model's features" in reason) is (
            reached and pattern >= TRANSPLANT_SHARE
        )


@pytest.mark.parametrize(("reach", "over"), [(0.97, True), (0.64, True), (0.3, False)])
def test_a_group_a_warp_carries_as_far_as_its_pattern_is_not_trimmed_to_a_pattern(reach, over):
    """A far group of mixed origin with no gap, called by its pattern (the transplant share
    0.64), is to be trimmed to the members that carry that pattern; a warp that reaches the
    class at least as far (WaNet with its noise mode: 97 %) means there is no pattern to trim
    to: the group is grown in the features only and the trim is not asked. A warp that
    reaches less leaves the pattern's judgment as it was."""
    data = Synthetic()
    far = data.plant_far_group(margin=5.0, diverse=True)
    data.ratio[far] = np.geomspace(2.5, 200.0, far.size)  # smooth from the core out: no gap
    images = np.zeros((data.labels.size, 4, 4))
    trimmed = []

    def pattern_completion(class_members, in_group, code, excluded):
        trimmed.append(code)
        return in_group & ~np.isin(class_members, far[-6:])  # six "without the pattern"

    decision = data.decide(
        pattern_completion=pattern_completion,
        inputs=images,
        transplant=lambda *a, **k: 0.64,
        warp=lambda code, probes: reach,
    )
    evidence = decision.evidence[TARGET_CLASS]
    assert decision.target_classes == [TARGET_CLASS] and evidence.gap is None
    assert evidence.warp_over_pattern is over and carried_by_warp(evidence) is over
    assert evidence.warp_share == reach and evidence.pattern_share == 0.64
    assert trimmed == ([] if over else [TARGET_CLASS])
    assert bool(decision.flagged[far[-6:]].all()) is over
    if over:
        assert evidence.completed_in_input == 0 and evidence.left_by_pattern == 0
    else:
        assert evidence.left_by_pattern == 6
    counts = np.bincount(data.labels)
    reason = class_findings(data.image_dataset(), decision, counts, np.ones(len(counts), bool))[
        TARGET_CLASS
    ].reason
    assert ("not trimmed to a pattern" in reason) is over


@pytest.mark.parametrize(
    ("pattern", "warp", "expected"),
    [
        (0.1, 0.9, True),
        (TRANSPLANT_SHARE, 0.9, False),
        (float("nan"), 0.9, True),
        (0.1, TRANSPLANT_SHARE - 0.01, False),
    ],
)
def test_a_class_is_carried_by_the_warp_only_when_no_pattern_reaches_the_bar(
    pattern, warp, expected
):
    data = Synthetic()
    item = data.decide().evidence[TARGET_CLASS]
    item.pattern_share, item.warp_share = pattern, warp
    assert carried_by_warp(item) is expected


@pytest.mark.slow
def test_a_warp_into_small_digits_is_called_by_the_warp_search(tmp_path):
    """WaNet (a smooth warp of at most about half a pixel) on 5 % of the 8x8 digits' training
    split, into the fours (seed 1): no pattern to add, stamp or blend, and before the warp
    search nothing was called (2 of 10 such rows found, two others a wrong class). The searched
    warp moves the probes; the fours are called and every poison flagged."""
    assert_called_on_poisoned_digits(
        tmp_path, attack="wanet", target=4, seed=1, split_seed=1, scan_seed=1
    )
