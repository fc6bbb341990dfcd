"""The input-neighbour test (poisonguard.detectors.input_neighbours) and the foreign-cluster
rule it feeds: with fewer than four classes, the smaller cluster of a class that looks like
another class in the input, and whose difference the transplant test confirms, calls the
class."""

from __future__ import annotations

import numpy as np
import pytest

from poisonguard.decision import DecisionSettings, decide
from poisonguard.detectors.activation_clustering import ClassSplit
from poisonguard.detectors.input_neighbours import FOREIGN_SHARE, NEIGHBOURS, foreign_share

pytestmark = pytest.mark.filterwarnings("error")


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
    assert foreign_share(take, labels, 0, poisons, standardise=False) == 1.0
    # the darkest 40 of class 0: a sub-type of its own class
    darkest = np.argsort(x[:300].mean(axis=(1, 2)))[:40]
    assert foreign_share(take, labels, 0, darkest, standardise=False) == 0.0
    assert foreign_share(take, labels, 0, np.zeros(0, dtype=np.int64), standardise=False) == 0.0


def test_the_neighbours_are_the_same_whatever_the_block_and_sample_sizes():
    x, labels = two_blobs(seed=1)
    group = np.concatenate([np.arange(0, 10), np.arange(300, 330)])  # 10 own, 30 foreign
    take = x.__getitem__
    shares = {
        foreign_share(take, labels, 0, group, standardise=False, block=block)
        for block in (7, 64, 4096)
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
    assert foreign_share(take, labels, 0, group, standardise=True) >= 0.9
    # unscaled, the noise column decides the neighbours: about half say class 1 at best
    assert foreign_share(take, labels, 0, group, standardise=False) < FOREIGN_SHARE


def test_too_few_samples_outside_the_group_give_no_evidence():
    x = np.zeros((NEIGHBOURS + 3, 2))
    labels = np.zeros(NEIGHBOURS + 3, dtype=np.int64)
    assert foreign_share(x.__getitem__, labels, 0, np.arange(5), standardise=False) == 0.0


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

    def foreign(code, group):
        asked.append((code, group.size))
        return 0.98 if code == 0 else 0.01

    decision = decide(
        labels, 2, np.ones(2, dtype=bool), {}, transplant=lambda *a: 1.0, foreign=foreign, **kwargs
    )
    assert asked == [(0, 40), (1, 160)]
    assert decision.target_classes == [0]
    np.testing.assert_array_equal(np.flatnonzero(decision.flagged), cluster)
    evidence = decision.evidence[0]
    assert evidence.rule == "foreign-cluster" and evidence.cluster_size == 40
    assert evidence.foreign_share == 0.98 and evidence.transplant_share == 1.0
    assert set(decision.kind[cluster]) == {"backdoor"}


@pytest.mark.parametrize(
    "foreign, transplant",
    [(0.3, 1.0), (0.98, 0.2)],
    ids=["own-class-look", "difference-does-not-carry-the-label"],
)
def test_a_cluster_needs_both_a_foreign_look_and_a_confirmed_difference(foreign, transplant):
    labels, _, kwargs = two_class_inputs()
    decision = decide(
        labels,
        2,
        np.ones(2, dtype=bool),
        {},
        transplant=lambda *a: transplant,
        foreign=lambda code, group: foreign,
        **kwargs,
    )
    assert not decision.target_classes and not decision.flagged.any()


def test_the_foreign_cluster_rule_is_off_with_four_classes_or_without_the_tests():
    labels, _, kwargs = two_class_inputs()
    # without the input (texts) or without a model to ask, nothing is called this way
    for transplant, foreign in [(None, lambda *a: 1.0), (lambda *a: 1.0, None)]:
        decision = decide(
            labels, 2, np.ones(2, dtype=bool), {}, transplant=transplant, foreign=foreign, **kwargs
        )
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
        transplant=lambda *a: 1.0,
        foreign=lambda *a: 1.0,
    )
    assert all(item.rule != "foreign-cluster" for item in decision.evidence)
