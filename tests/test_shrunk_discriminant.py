"""The shrunk linear discriminant from moments is scikit-learn's ``LinearDiscriminantAnalysis(
solver="lsqr", shrinkage="auto")``, and group completion's folds fit what scikit-learn fits on
the same samples."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from poisonguard.detectors.group_completion import FOLDS, _CrossFit
from poisonguard.detectors.shrunk_discriminant import (
    Moments,
    fourth_moment,
    shrunk_discriminant,
    squared_norms,
    standard_scale,
)


def two_parts(seed: int, n: int, features: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(n, features)) * rng.uniform(0.1, 5.0, features)
    rows += 3.0 * rng.normal(size=features)
    if features > 3:
        rows[:, 1] += 0.8 * rows[:, 0]  # correlated columns: a shrinkage that matters
        rows[:, 2] = 7.0  # constant columns: scale 1, as scikit-learn's standardization
        rows[:, 3] = 0.0
    in_group = rng.random(n) < 0.2
    rows[in_group, 0] += 1.5
    return rows, in_group


def from_moments(rows: np.ndarray, in_group: np.ndarray):
    def part(samples):
        moments = Moments.of(samples)
        norms = squared_norms(
            samples, samples**2, moments.mean[None], standard_scale(moments)[None]
        )
        return moments, fourth_moment(norms)

    (group, group_fourth), (rest, rest_fourth) = part(rows[in_group]), part(rows[~in_group])
    return shrunk_discriminant(group, rest, group_fourth, rest_fourth)


@pytest.mark.parametrize(("n", "features"), [(300, 16), (2000, 64), (500, 1), (400, 200)])
def test_the_discriminant_from_moments_is_scikit_learns(n, features):
    rows, in_group = two_parts(n + features, n, features)
    reference = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(rows, in_group)
    ours = from_moments(rows, in_group)
    expected = reference.decision_function(rows)
    np.testing.assert_allclose(ours.log_odds(rows), expected, rtol=1e-8, atol=1e-8)
    # more samples than features and fewer (400 x 200 has parts of ~80 samples): the shrinkage
    # is what makes the second one solvable, so a wrong coefficient shows
    assert np.abs(expected).mean() > 0.5


def test_moments_add_and_subtract_as_the_sets_do():
    rows = np.random.default_rng(1).normal(size=(50, 4))
    whole, first = Moments.of(rows), Moments.of(rows[:20])
    rest = whole - first
    np.testing.assert_allclose(rest.gram, rows[20:].T @ rows[20:])
    np.testing.assert_allclose(rest.mean, rows[20:].mean(0))
    np.testing.assert_allclose((first + rest).variance, rows.var(0))
    assert rest.count == 30
    assert Moments.of(np.empty((0, 4))).count == 0
    parts = [Moments.of(rows[start : start + 10]) for start in range(0, 50, 10)]
    together = Moments.summed(parts)
    assert together.count == 50
    np.testing.assert_allclose(together.total, whole.total)
    np.testing.assert_allclose(together.gram, whole.gram)
    assert parts[0].count == 10  # the first part is not changed in place
    np.testing.assert_allclose(parts[0].gram, rows[:10].T @ rows[:10])


def test_each_folds_fit_is_scikit_learns_on_the_other_folds_and_the_anchors():
    rows, in_group = two_parts(7, 1500, 24)
    rng = np.random.default_rng(3)
    anchors = rng.normal(size=(120, 24)) + 2.0, rng.random(120) < 0.5
    folds = rng.permutation(np.arange(rows.shape[0]) % FOLDS)
    crossfit = _CrossFit(rows, folds, anchors)
    joins = crossfit.judged(in_group)
    odds = np.empty(rows.shape[0])
    for fold in range(FOLDS):
        train = folds != fold
        reference = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(
            np.concatenate([rows[train], anchors[0]]),
            np.concatenate([in_group[train], anchors[1]]),
        )
        odds[~train] = reference.decision_function(rows[~train])
        ours = crossfit.fit(in_group, held_out=fold)
        np.testing.assert_allclose(ours.log_odds(rows[~train]), odds[~train], rtol=1e-8, atol=1e-8)
    np.testing.assert_array_equal(joins, odds > 0)
    assert 0 < joins.sum() < joins.size
    every = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(
        np.concatenate([rows, anchors[0]]), np.concatenate([in_group, anchors[1]])
    )
    np.testing.assert_allclose(
        crossfit.fit(in_group, held_out=None).log_odds(rows),
        every.decision_function(rows),
        rtol=1e-8,
        atol=1e-8,
    )


def test_a_fold_whose_training_part_holds_too_few_of_the_group_judges_nothing():
    rows, _ = two_parts(2, 400, 8)
    folds = np.arange(400) % FOLDS
    in_group = np.zeros(400, dtype=bool)
    in_group[[0, 5, 1]] = True  # two in fold 0, one in fold 1
    rows[in_group] += 50.0  # far off: any fit that saw one of them puts the others with it
    crossfit = _CrossFit(rows, folds, None)
    assert crossfit.fit(in_group, held_out=0) is None  # one of the group left to fit on
    assert crossfit.fit(in_group, held_out=1) is not None  # two of each part are enough
    joins = crossfit.judged(in_group)
    assert not joins[folds == 0].any()
    assert joins[1]  # fold 1, judged by a fit on the two in fold 0
