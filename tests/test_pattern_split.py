"""The pattern-split test (poisonguard.detectors.pattern_split) and its place in the decision:
part of a class carrying one added pattern, labels kept (a clean-label backdoor), is called; a
natural sub-type, or a pattern the model does not read one way, is not."""

from __future__ import annotations

import numpy as np
from test_detectors import CLASS_SIZE, TARGET_CLASS, K, Synthetic

from poisonguard.detectors.pattern_split import class_splits, middle_gap, separation_left

SIDE = 8


def test_middle_gap_finds_an_empty_stretch_and_not_a_smooth_density():
    rng = np.random.default_rng(0)
    two = np.concatenate([rng.normal(0.0, 1.0, 300), rng.normal(20.0, 1.0, 200)])
    p_value, size, statistic = middle_gap(rng.permutation(two), min_group_size=5)
    assert p_value < 1e-10 and size == 300 and statistic > 50
    p_value, _, _ = middle_gap(rng.normal(0.0, 1.0, 500), min_group_size=5)
    assert p_value > 0.01
    assert middle_gap(np.arange(9.0), min_group_size=5) == (1.0, 0, 0.0)


def images(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """8x8 "images": a mean per class and independent noise, values around 100 (0..255)."""
    means = rng.uniform(60.0, 140.0, size=(K, SIDE, SIDE))
    return means[labels] + rng.normal(0.0, 12.0, size=(labels.size, SIDE, SIDE))


def sinusoid(amplitude: float) -> np.ndarray:
    """A horizontal sinusoid, as SIG adds (Barni et al. 2019)."""
    columns = np.arange(SIDE)
    return np.tile(amplitude * np.sin(2 * np.pi * 2 * columns / SIDE), (SIDE, 1))


def test_one_added_pattern_is_what_a_shift_removes_and_a_sub_type_is_not():
    rng = np.random.default_rng(1)
    rest = rng.normal(100.0, 12.0, size=(150, SIDE, SIDE))
    carrying = rng.normal(100.0, 12.0, size=(150, SIDE, SIDE)) + sinusoid(25.0)
    assert separation_left(carrying, rest, low=0.0, high=255.0) < 0.25
    # a sub-type: another mean and another texture (its noise four times as strong)
    sub_type = rng.normal(130.0, 48.0, size=(150, SIDE, SIDE))
    assert separation_left(sub_type, rest, low=0.0, high=255.0) > 0.75


def test_the_class_splits_where_half_of_it_carries_a_pattern():
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(K), CLASS_SIZE)
    x = images(rng, labels)
    members = np.flatnonzero(labels == TARGET_CLASS)
    carrying = np.sort(rng.choice(members, CLASS_SIZE // 2, replace=False))
    x[carrying] += sinusoid(30.0)
    splits = {
        s.code: s
        for s in class_splits(lambda rows: x[rows], labels, np.arange(K), min_group_size=5)
    }
    assert set(splits) == set(range(K))
    target = splits[TARGET_CLASS]
    assert target.p_value < 1e-10
    sides = [target.low.tolist(), target.high.tolist()]
    assert carrying.tolist() in sides
    assert sorted(target.low.tolist() + target.high.tolist()) == members.tolist()
    assert all(s.p_value > 1e-4 for code, s in splits.items() if code != TARGET_CLASS)


def planted(seed: int = 3, *, sub_type: bool = False) -> tuple[Synthetic, np.ndarray, np.ndarray]:
    """Synthetic decision arrays with images: half of the target class carries a sinusoid
    (``sub_type``: is a sub-type instead: another mean and texture, far from a pattern added)."""
    data = Synthetic()
    rng = np.random.default_rng(seed)
    x = images(rng, data.labels)
    members = np.flatnonzero(data.labels == TARGET_CLASS)
    half = np.sort(rng.choice(members, CLASS_SIZE // 2, replace=False))
    if sub_type:
        x[half] = x[half] + 60.0 + rng.normal(0.0, 36.0, size=(half.size, SIDE, SIDE))
    else:
        x[half] += sinusoid(30.0)
    return data, np.clip(x, 0.0, 255.0), half


def test_half_a_class_carrying_a_pattern_the_model_reads_is_called():
    data, x, half = planted()
    asked = []

    def transplant(code, group, core, probes, added=True):
        asked.append((code, group.size, core.size, added))
        # the pattern added moves 40 % of the probes to the class; taken away, none
        return 0.4 if group.tolist() == half.tolist() else 0.0

    assert not data.decide(inputs=x).target_classes  # no transplant: the test does not run
    decision = data.decide(inputs=x, transplant=transplant)
    assert decision.target_classes == [TARGET_CLASS]
    assert np.flatnonzero(decision.flagged).tolist() == half.tolist()
    evidence = decision.evidence[TARGET_CLASS]
    assert evidence.rule == "pattern-split" and evidence.cluster_size == half.size
    assert evidence.transplant_share == 0.4 and evidence.pattern_reverse_share == 0.0
    assert evidence.pattern_gap_p < 1e-10 and evidence.pattern_left < 0.5
    # both sides asked, with the difference added, each against the other
    both = [(TARGET_CLASS, half.size, CLASS_SIZE - half.size, True)] * 2
    assert [a for a in asked if a[1] == a[2] == CLASS_SIZE // 2] == both
    # off (the scan's tables and texts): not called
    assert not data.decide(inputs=x, transplant=transplant, pattern_split=False).target_classes


def test_a_pattern_the_model_does_not_read_one_way_is_not_called():
    data, x, half = planted()
    # both sides' differences move as many probes: no side carries a trigger
    even = data.decide(inputs=x, transplant=lambda *args, **kwargs: 0.2)
    assert not even.target_classes and not even.flagged.any()
    assert even.evidence[TARGET_CLASS].pattern_left < 0.5  # the split itself was found
    assert not data.decide(inputs=x, transplant=lambda *a, **k: 0.0).target_classes


def test_a_natural_sub_type_is_not_called_whatever_its_difference_does():
    data, x, half = planted(sub_type=True)

    def transplant(code, group, core, probes, added=True):
        return 0.9 if group.tolist() == half.tolist() else 0.0

    decision = data.decide(inputs=x, transplant=transplant)
    assert not decision.target_classes and not decision.flagged.any()
    evidence = decision.evidence[TARGET_CLASS]
    assert evidence.pattern_gap_p < 1e-10  # it does split in two
    assert evidence.pattern_left >= 0.5  # but shifted, one side is not like the other


def test_the_report_says_what_the_pattern_split_found():
    from poisonguard.findings import class_findings, sample_reasons

    data, x, half = planted()
    decision = data.decide(
        inputs=x,
        transplant=lambda code, group, *a, **k: 0.4 if group.tolist() == half.tolist() else 0.0,
    )
    assert decision.target_classes == [TARGET_CLASS]
    dataset = data.image_dataset(x)
    counts = np.bincount(data.labels, minlength=K)
    finding = class_findings(dataset, decision, counts, np.ones(K, dtype=bool))[TARGET_CLASS]
    assert finding.verdict == "backdoor-target"
    assert "pattern-split test" in finding.reason and "labels kept" in finding.reason
    reasons = sample_reasons(dataset, decision)
    assert all("one added pattern" in reasons[i] for i in half)
    assert sum(bool(r) for r in reasons) == half.size


def dirty_label(seed: int = 4) -> tuple[Synthetic, np.ndarray, np.ndarray]:
    """Synthetic decision arrays with images: a third of the target class is other classes'
    images carrying one added pattern (a dirty-label backdoor's poisons: their source classes'
    pixels, relabelled); the class's split along its own direction is not a pattern on the
    class's own images, so shifted, the sides keep apart."""
    data = Synthetic()
    rng = np.random.default_rng(seed)
    x = images(rng, data.labels)
    members = np.flatnonzero(data.labels == TARGET_CLASS)
    third = np.sort(rng.choice(members, CLASS_SIZE // 3, replace=False))
    others = np.flatnonzero(data.labels != TARGET_CLASS)
    x[third] = x[rng.choice(others, third.size, replace=False)] + sinusoid(30.0)
    return data, np.clip(x, 0.0, 255.0), third


def neighbour_votes(foreign: np.ndarray, labels: np.ndarray):
    """An input-neighbour test whose neighbours name another class for the ``foreign`` samples
    and their own label for every other sample."""

    def votes(group, excluded):
        named = np.where(np.isin(group, foreign), (labels[group] + 1) % K, labels[group])
        return group, named

    return votes


def test_a_dirty_label_side_of_the_split_is_called_when_it_looks_foreign_and_moves_probes():
    data, x, third = dirty_label()
    asked = []

    def transplant(code, group, core, probes, added=True):
        asked.append((code, group.tolist() == third.tolist(), core.size))
        return 0.8 if group.tolist() == third.tolist() else 0.0

    votes = neighbour_votes(third, data.labels)
    decision = data.decide(inputs=x, transplant=transplant, input_votes=votes)
    assert decision.target_classes == [TARGET_CLASS]
    assert np.flatnonzero(decision.flagged).tolist() == third.tolist()
    evidence = decision.evidence[TARGET_CLASS]
    assert evidence.rule == "foreign-split" and evidence.cluster_size == third.size
    assert evidence.pattern_gap_p < 1e-10 and evidence.pattern_left >= 0.5
    assert evidence.foreign_share == 1.0 and evidence.transplant_share == 0.8
    # the smaller side was asked against the other side of the split
    assert (TARGET_CLASS, True, CLASS_SIZE - third.size) in asked
    # without the input-neighbour test, the split is not called
    assert not data.decide(inputs=x, transplant=transplant).target_classes


def test_a_split_that_looks_like_its_own_class_or_moves_few_probes_is_not_called():
    data, x, third = dirty_label()
    own = neighbour_votes(np.array([], dtype=np.int64), data.labels)
    moving = lambda code, group, *a, **k: 0.9  # noqa: E731
    decision = data.decide(inputs=x, transplant=moving, input_votes=own)
    assert not decision.target_classes and not decision.flagged.any()
    assert decision.evidence[TARGET_CLASS].foreign_share == 0.0
    # foreign, but its difference moves half of the probes: not a majority beyond chance
    foreign = neighbour_votes(third, data.labels)
    decision = data.decide(inputs=x, transplant=lambda *a, **k: 0.5, input_votes=foreign)
    assert not decision.target_classes and not decision.flagged.any()
    assert decision.evidence[TARGET_CLASS].transplant_share == 0.5


def test_the_report_says_what_the_foreign_split_found():
    from poisonguard.findings import class_findings, sample_reasons

    data, x, third = dirty_label()
    decision = data.decide(
        inputs=x,
        transplant=lambda code, group, *a, **k: 0.8 if group.tolist() == third.tolist() else 0.0,
        input_votes=neighbour_votes(third, data.labels),
    )
    dataset = data.image_dataset(x)
    counts = np.bincount(data.labels, minlength=K)
    finding = class_findings(dataset, decision, counts, np.ones(K, dtype=bool))[TARGET_CLASS]
    assert finding.verdict == "backdoor-target"
    assert "look like other classes in the input" in finding.reason
    assert "dirty-label trigger" in finding.reason and "80%" in finding.reason
    reasons = sample_reasons(dataset, decision)
    assert all("looks like other classes in the input" in reasons[i] for i in third)
    assert sum(bool(r) for r in reasons) == third.size
