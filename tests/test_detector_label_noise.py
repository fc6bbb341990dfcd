"""Tests of the label-noise detectors: confident learning, k-NN label disagreement and the
training-dynamics scores, on synthetic data with a known answer and on degenerate inputs."""

from __future__ import annotations

import numpy as np
import pytest

from poisonguard.detectors.confident_learning import (
    confident_classes,
    confident_joint_issues,
    confident_learning_scores,
    disagreement_above_floor,
    estimated_noise_rate,
    likely_mislabelled,
    one_sided_pairs,
)
from poisonguard.detectors.streaming import knn_label_disagreement, out_of_sample_probabilities
from poisonguard.detectors.training_dynamics import (
    area_under_margin_scores,
    early_loss_scores,
)

pytestmark = pytest.mark.filterwarnings("error")

N_CLASSES = 4
PER_CLASS = 150
DIM = 12


def flipped_blobs(
    seed: int = 0, *, flip_rate: float = 0.05, separation: float = 8.0, per_class: int = PER_CLASS
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``N_CLASSES`` unit Gaussian blobs whose centres are ``separation`` apart on average, with
    ``round(flip_rate * N)`` labels flipped to a different class drawn uniformly.

    Returns float32 features, given labels, true labels and the flipped mask.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=separation / np.sqrt(2 * DIM), size=(N_CLASSES, DIM))
    true = np.repeat(np.arange(N_CLASSES), per_class)
    features = (centres[true] + rng.normal(size=(true.size, DIM))).astype(np.float32)
    flipped = np.zeros(true.size, dtype=bool)
    flipped[rng.choice(true.size, round(flip_rate * true.size), replace=False)] = True
    labels = true.copy()
    labels[flipped] = (true[flipped] + rng.integers(1, N_CLASSES, flipped.sum())) % N_CLASSES
    return features, labels, true, flipped


def precision_recall(flags: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    hits = int((flags & truth).sum())
    return hits / max(int(flags.sum()), 1), hits / max(int(truth.sum()), 1)


def top_share(scores: np.ndarray, truth: np.ndarray) -> float:
    """Share of the ``truth.sum()`` highest scores that are true positives."""
    top = np.argsort(-scores, kind="stable")[: truth.sum()]
    return float(truth[top].mean())


# --- out-of-sample probabilities ------------------------------------------------------------


def test_probabilities_are_distributions_and_accurate():
    features, labels, true, _ = flipped_blobs()
    probabilities = out_of_sample_probabilities(features, labels)
    assert probabilities.shape == (labels.size, N_CLASSES)
    assert probabilities.dtype == np.float64
    assert np.isfinite(probabilities).all() and (probabilities >= 0).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-12)
    assert (probabilities.argmax(axis=1) == true).mean() >= 0.98


def test_probabilities_deterministic_under_seed():
    features, labels, _, _ = flipped_blobs()
    first = out_of_sample_probabilities(features, labels, seed=3)
    np.testing.assert_array_equal(first, out_of_sample_probabilities(features, labels, seed=3))
    assert not np.array_equal(first, out_of_sample_probabilities(features, labels, seed=4))


def test_flipped_labels_get_low_probability():
    features, labels, true, flipped = flipped_blobs()
    probabilities = out_of_sample_probabilities(features, labels)
    rows = np.arange(labels.size)
    # A few flips fall near a class boundary; nearly all are confidently their true class.
    assert (probabilities[rows, labels][flipped] < 0.1).mean() >= 0.9
    assert (probabilities[rows, true][flipped] > 0.9).mean() >= 0.9


def test_probabilities_are_out_of_sample():
    """Random labels on noise in more dimensions than samples: an in-sample linear fit separates
    them perfectly, an out-of-sample one is at chance."""
    rng = np.random.default_rng(1)
    features = rng.normal(size=(160, 240))
    labels = rng.integers(0, N_CLASSES, 160)
    # Least squares on one-hot targets interpolates them when there are more features than rows.
    fitted = features @ np.linalg.lstsq(features, np.eye(N_CLASSES)[labels], rcond=None)[0]
    assert (fitted.argmax(axis=1) == labels).all()
    probabilities = out_of_sample_probabilities(features, labels)
    given = probabilities[np.arange(labels.size), labels]
    assert given.mean() < 0.4
    assert (probabilities.argmax(axis=1) == labels).mean() < 0.45


def test_probabilities_small_classes_and_absent_columns():
    features, labels, _, _ = flipped_blobs(flip_rate=0.0, per_class=20)
    # Class 4 has 2 samples (fewer than the folds), class 5 one, class 6 none (n_classes=7).
    extra = np.vstack([features[:2] + 30.0, features[:1] - 30.0])
    features = np.vstack([features, extra])
    labels = np.concatenate([labels, [4, 4, 5]])
    probabilities = out_of_sample_probabilities(features, labels, n_classes=7)
    assert probabilities.shape == (labels.size, 7)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-12)
    assert (probabilities[:, 6] == 0).all()
    # The singleton is never in its own training folds: probability 0 for its label.
    assert probabilities[-1, 5] == 0.0
    # Each member of the pair is predicted from the other one.
    assert (probabilities[-3:-1, 4] > 0.5).all()


@pytest.mark.parametrize("n_samples", [1, 3, 40])
def test_probabilities_one_class(n_samples):
    features = np.random.default_rng(0).normal(size=(n_samples, 5))
    labels = np.full(n_samples, 2)
    probabilities = out_of_sample_probabilities(features, labels)
    expected = np.zeros((n_samples, 3))
    expected[:, 2] = 1.0
    np.testing.assert_array_equal(probabilities, expected)


def test_probabilities_degenerate_features():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 60)
    for features in (
        np.zeros((60, 8)),  # constant
        np.repeat(rng.normal(size=(1, 8)), 60, axis=0),  # one duplicated row
        np.hstack([rng.normal(size=(60, 3)), np.ones((60, 5))]),  # some constant columns
        rng.normal(size=(60, 1)),  # one feature
    ):
        probabilities = out_of_sample_probabilities(features, labels)
        assert np.isfinite(probabilities).all()
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-9)
    two = out_of_sample_probabilities(np.array([[0.0], [1.0]]), np.array([0, 1]))
    np.testing.assert_array_equal(two, [[0.0, 1.0], [1.0, 0.0]])
    assert out_of_sample_probabilities(np.zeros((0, 3)), np.zeros(0, int)).shape == (0, 0)


def test_probabilities_reject_bad_input():
    features = np.zeros((10, 3))
    with pytest.raises(ValueError, match=r"labels must have shape \(10,\)"):
        out_of_sample_probabilities(features, np.zeros(9, int))
    with pytest.raises(ValueError, match="n_folds"):
        out_of_sample_probabilities(features, np.zeros(10, int), n_folds=1)
    with pytest.raises(ValueError, match="n_classes"):
        out_of_sample_probabilities(features, np.arange(10) % 3, n_classes=2)
    with pytest.raises(ValueError, match="NaN"):
        out_of_sample_probabilities(np.full((10, 3), np.nan), np.zeros(10, int))


# --- confident learning -----------------------------------------------------------------------


def test_confident_learning_finds_planted_flips():
    features, labels, _, flipped = flipped_blobs()
    probabilities = out_of_sample_probabilities(features, labels)
    issues = confident_joint_issues(probabilities, labels)
    precision, recall = precision_recall(issues, flipped)
    assert precision >= 0.9 and recall >= 0.9
    scores = confident_learning_scores(probabilities, labels)
    assert scores.shape == labels.shape and scores.dtype == np.float64
    assert top_share(scores, flipped) >= 0.9


def test_confident_learning_quiet_on_clean_blobs():
    features, labels, _, _ = flipped_blobs(flip_rate=0.0)
    probabilities = out_of_sample_probabilities(features, labels)
    assert confident_joint_issues(probabilities, labels).sum() <= 2


def test_confident_joint_by_hand():
    probabilities = np.array(
        [
            [0.9, 0.1, 0.0],  # labelled 0, confidently 0
            [0.7, 0.2, 0.1],  # labelled 0, below t0, nothing else confident: no issue
            [0.8, 0.2, 0.0],  # labelled 1, below t1; p0 reaches t0: confidently 0, an issue
            [0.2, 0.4, 0.4],  # labelled 1, above t1; p2 below t2: no issue
            [0.3, 0.2, 0.5],  # labelled 2, below t2, nothing else confident: no issue
            [0.0, 0.0, 1.0],  # labelled 2
        ]
    )
    labels = np.array([0, 0, 1, 1, 2, 2])
    # Thresholds: t0 = 0.8, t1 = 0.3, t2 = 0.75.
    np.testing.assert_array_equal(
        confident_joint_issues(probabilities, labels), [False, False, True, False, False, False]
    )
    np.testing.assert_allclose(
        confident_learning_scores(probabilities, labels), [0.1, 0.3, 0.8, 0.6, 0.5, 0.0]
    )
    # t0 = 0.5, t1 = 0.4: both classes are above threshold in the tied rows, where the given
    # label wins.
    tied = np.array([[0.5, 0.5], [0.5, 0.5], [0.7, 0.3], [0.5, 0.5]])
    np.testing.assert_array_equal(
        confident_joint_issues(tied, np.array([0, 1, 1, 0])), [False, False, True, False]
    )


def test_confident_classes_and_the_calibrated_noise_rate_by_hand():
    probabilities = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.7, 0.3], [0.1, 0.9]])
    labels = np.array([0, 0, 1, 1, 1])
    thresholds = np.array([0.75, (0.8 + 0.3 + 0.9) / 3])  # mean p_j over the samples labelled j
    confident = confident_classes(probabilities, thresholds)
    np.testing.assert_array_equal(confident, [0, -1, 1, -1, 1])  # row 3: p0 0.7 < t0
    # each row of the joint rescaled to its label's count: label 0 has 1 confident of 2 (in 0),
    # label 1 has 2 of 3 (in 1): nothing off the diagonal
    assert estimated_noise_rate(labels, confident, 2) == 0.0
    flipped = np.array([0, 1, 0, -1])  # given 0, 0, 1, 1
    # label 0: one of two confident samples is in 1 -> 1 of its 2 labels; label 1: the one
    # confident sample is in 0 -> both of its labels; 3 of 4 off the diagonal
    assert estimated_noise_rate(np.array([0, 0, 1, 1]), flipped, 2) == 0.75


def test_likely_mislabelled_follows_the_noise_rate_and_the_class_count():
    # 10 % noise, 2 classes: the given label is more likely wrong than right below p_y = 0.1
    labels = np.zeros(4, dtype=np.int64)
    p_given = np.array([0.05, 0.09, 0.11, 0.6])
    two = np.stack([p_given, 1 - p_given], axis=1)
    np.testing.assert_array_equal(
        likely_mislabelled(two, labels, 0.1, 2), [True, True, False, False]
    )
    # 10 classes: the noise spreads over 9 wrong labels, so the bar drops to p_y < 0.0122
    ten = np.full((3, 10), 0.0)
    ten[:, 0] = [0.01, 0.013, 0.5]
    ten[:, 1] = 1 - ten[:, 0]
    np.testing.assert_array_equal(
        likely_mislabelled(ten, np.zeros(3, dtype=np.int64), 0.1, 10), [True, False, False]
    )
    assert not likely_mislabelled(two, labels, 0.0, 2).any()  # no noise: nothing is


def joint_samples(joint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Given labels and confident classes whose confident joint is ``joint``."""
    given, confident = [], []
    for (i, j), count in np.ndenumerate(joint):
        given += [i] * int(count)
        confident += [j] * int(count)
    return np.array(given), np.array(confident)


def symmetric_confusion(n_classes: int, seed: int) -> np.ndarray:
    """A confident joint with 200 correct samples per class and, between every two classes,
    12 confident disagreements split about evenly (binomially) between the two directions."""
    rng = np.random.default_rng(seed)
    joint = np.diag(np.full(n_classes, 200))
    for i in range(n_classes):
        for j in range(i + 1, n_classes):
            one_way = rng.binomial(12, 0.5)
            joint[i, j], joint[j, i] = one_way, 12 - one_way
    return joint


def test_one_sided_pairs_calls_a_targeted_flip_and_orients_it():
    classes = np.arange(6)
    for seed in range(5):
        joint = symmetric_confusion(6, seed)
        assert one_sided_pairs(*joint_samples(joint), classes, 1e-3) == []
        # 100 samples given label 4 that are confidently class 2: one direction only
        joint[4, 2] += 100
        pairs = one_sided_pairs(*joint_samples(joint), classes, 1e-3)
        assert [(p.given, p.predicted) for p in pairs] == [(4, 2)]
        assert pairs[0].count == joint[4, 2] and pairs[0].reverse == joint[2, 4]
        assert pairs[0].p_value * 15 < 1e-3  # Bonferroni over the 15 pairs
        # samples confidently in no class (-1) do not count
        given, confident = joint_samples(joint)
        given = np.concatenate([given, np.full(500, 4)])
        confident = np.concatenate([confident, np.full(500, -1)])
        assert one_sided_pairs(given, confident, classes, 1e-3) == pairs


def test_one_sided_pairs_measures_lopsidedness_against_the_dataset_own_pairs():
    # natural confusion that always runs 3 to 1 one way: the dispersion absorbs it, and a pair
    # of 40 to 0, which a plain binomial test would call (p = 1e-10), does not stand out
    joint = np.diag(np.full(6, 200))
    for i in range(6):
        for j in range(i + 1, 6):
            joint[i, j], joint[j, i] = 30, 10
    joint[0, 5], joint[5, 0] = 40, 0
    assert one_sided_pairs(*joint_samples(joint), np.arange(6), 1e-3) == []
    # with the same pairs balanced, 40 to 0 is called
    balanced = np.diag(np.full(6, 200)) + 20 * (1 - np.eye(6, dtype=np.int64))
    balanced[0, 5], balanced[5, 0] = 40, 0
    pairs = one_sided_pairs(*joint_samples(balanced), np.arange(6), 1e-3)
    assert [(p.given, p.predicted) for p in pairs] == [(0, 5)]


def test_one_sided_pairs_needs_enough_pairs_to_estimate_the_dispersion():
    # two classes: one pair, however lopsided, has no null from the dataset
    joint = np.array([[500, 90], [2, 500]])
    assert one_sided_pairs(*joint_samples(joint), np.arange(2), 1e-3) is None
    # six classes but only four pairs with ten disagreements or more
    joint = np.diag(np.full(6, 200))
    for i, j in [(0, 1), (1, 2), (2, 3), (3, 4)]:
        joint[i, j], joint[j, i] = 40, 5
    assert one_sided_pairs(*joint_samples(joint), np.arange(6), 1e-3) is None
    joint[4, 5] = 10
    assert one_sided_pairs(*joint_samples(joint), np.arange(6), 1e-3) is not None


def test_the_noise_rate_of_flipped_blobs_is_estimated():
    for rate in (0.0, 0.1, 0.2):
        features, labels, _, flipped = flipped_blobs(seed=3, flip_rate=rate)
        probabilities = out_of_sample_probabilities(features, labels)
        given = probabilities[np.arange(labels.size), labels]
        thresholds = np.array([given[labels == c].mean() for c in range(N_CLASSES)])
        estimate = estimated_noise_rate(
            labels, confident_classes(probabilities, thresholds), N_CLASSES
        )
        assert abs(estimate - rate) < 0.03
        flags = likely_mislabelled(probabilities, labels, estimate, N_CLASSES)
        if rate:
            precision, recall = precision_recall(flags, flipped)
            assert precision > 0.9 and recall > 0.8


def test_confident_learning_degenerate():
    one_class = np.ones((4, 1))
    np.testing.assert_array_equal(confident_joint_issues(one_class, np.zeros(4, int)), False)
    np.testing.assert_array_equal(confident_learning_scores(one_class, np.zeros(4, int)), 0.0)
    # Equal probabilities everywhere: every sample sits at its class threshold.
    flat = np.full((5, 2), 0.5)
    assert not confident_joint_issues(flat, np.array([0, 1, 0, 1, 0])).any()
    assert confident_joint_issues(np.zeros((0, 3)), np.zeros(0, int)).shape == (0,)
    with pytest.raises(ValueError, match=r"shape \(N, K\)"):
        confident_learning_scores(np.ones(4), np.zeros(4, int))


# --- k-NN label disagreement --------------------------------------------------------------


def test_knn_ranks_flips_top():
    features, labels, _, flipped = flipped_blobs()
    scores = knn_label_disagreement(features, labels)
    assert scores.shape == labels.shape and scores.dtype == np.float64
    assert scores.min() >= 0 and scores.max() <= 1
    assert top_share(scores, flipped) >= 0.9
    weighted = knn_label_disagreement(features, labels, weights="distance")
    assert top_share(weighted, flipped) >= 0.9


def test_knn_inverted_file_close_to_exact():
    # 2,400 samples: ~9 cells of which 3 are probed, so the approximate search is exercised.
    features, labels, _, flipped = flipped_blobs(per_class=600)
    exact = knn_label_disagreement(features, labels, n_probe=None)
    approximate = knn_label_disagreement(features, labels, n_probe=3, seed=5)
    assert np.abs(exact - approximate).mean() < 0.02
    assert top_share(approximate, flipped) >= 0.9
    np.testing.assert_array_equal(
        approximate, knn_label_disagreement(features, labels, n_probe=3, seed=5)
    )


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_knn_cells_searched_on_threads_give_the_same_scores_bit_for_bit(weights):
    # 2,400 samples: ~9 cells, searched one after another and on two and three threads
    features, labels, _, _ = flipped_blobs(per_class=600)
    alone = knn_label_disagreement(features, labels, n_probe=3, seed=5, weights=weights)
    for workers in (2, 3):
        threaded = knn_label_disagreement(
            features, labels, n_probe=3, seed=5, weights=weights, workers=workers
        )
        assert np.array_equal(threaded.view(np.uint64), alone.view(np.uint64))


def test_knn_duplicates_are_neighbours_not_self():
    rng = np.random.default_rng(0)
    far = rng.normal(size=(20, 3)) + 100.0
    features = np.vstack([np.zeros((2, 3)), far])
    labels = np.concatenate([[0, 1], np.arange(20) % 2])
    scores = knn_label_disagreement(features, labels, k=1)
    # Each of the two identical rows has the other as its nearest neighbour, at distance 0.
    np.testing.assert_array_equal(scores[:2], [1.0, 1.0])
    many = knn_label_disagreement(np.ones((30, 4)), np.repeat([0, 1], 15), k=5)
    assert np.isfinite(many).all() and many.min() >= 0 and many.max() <= 1


def test_knn_fewer_samples_than_k():
    scores = knn_label_disagreement(np.array([[0.0, 1.0], [2.0, 0.0], [5.0, 5.0]]), [0, 0, 1])
    np.testing.assert_allclose(scores, [0.5, 0.5, 1.0])


def test_knn_degenerate():
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(knn_label_disagreement(rng.normal(size=(1, 4)), [3]), [0.0])
    np.testing.assert_array_equal(
        knn_label_disagreement(rng.normal(size=(50, 4)), np.zeros(50, int)), 0.0
    )
    for features in (np.zeros((40, 6)), rng.normal(size=(40, 1))):
        scores = knn_label_disagreement(features, np.arange(40) % 2, weights="distance")
        assert np.isfinite(scores).all()
    assert knn_label_disagreement(np.zeros((0, 4)), np.zeros(0, int)).shape == (0,)
    with pytest.raises(ValueError, match="valid: uniform, distance"):
        knn_label_disagreement(np.zeros((5, 2)), np.zeros(5, int), weights="gaussian")


# --- training dynamics ----------------------------------------------------------------------


def test_area_under_margin():
    margin = np.array(
        [
            [0.5, 2.0, 4.0, 6.0],  # learned early: clean
            [-3.0, -2.0, -1.0, 2.0],  # memorised late: likely mislabelled
            [-1.0, -1.0, -1.0, -1.0],
        ],
        dtype=np.float32,
    )
    scores = area_under_margin_scores(margin)
    assert scores.dtype == np.float64
    np.testing.assert_allclose(scores, [-3.125, 1.0, 1.0])
    np.testing.assert_allclose(area_under_margin_scores(margin[:, :1]), [-0.5, 3.0, 1.0])
    np.testing.assert_allclose(area_under_margin_scores(np.array([2.0, -1.0])), [-2.0, 1.0])


def test_early_loss():
    loss = np.array(
        [
            [0.1, 0.1, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0],  # learned fast: trigger-like
            [2.0, 1.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1],
        ]
    )
    np.testing.assert_allclose(early_loss_scores(loss), [-0.1, -1.5])
    np.testing.assert_allclose(early_loss_scores(loss, early_fraction=1.0), -loss.mean(axis=1))
    # max(1, round(0.2 * 3)) = 1 epoch.
    np.testing.assert_allclose(early_loss_scores(loss[:, :3]), [-0.1, -2.0])
    np.testing.assert_allclose(early_loss_scores(loss[:, :1], early_fraction=0.01), [-0.1, -2.0])
    assert np.argmax(early_loss_scores(loss)) == 0


def test_training_dynamics_reject_bad_input():
    with pytest.raises(ValueError, match="early_fraction"):
        early_loss_scores(np.zeros((2, 3)), early_fraction=0.0)
    with pytest.raises(ValueError, match="NaN"):
        area_under_margin_scores(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match=r"shape \(N, E\)"):
        early_loss_scores(np.zeros((3, 0)))
    assert area_under_margin_scores(np.zeros((0, 4))).shape == (0,)


def test_disagreement_above_a_trusted_floor_is_one_sided_and_pooled():
    scanned = np.zeros(1000, dtype=bool)
    scanned[:200] = True  # 20 % disagree
    trusted = np.zeros(500, dtype=bool)
    trusted[:50] = True  # 10 %
    above = disagreement_above_floor(scanned, trusted)
    assert (above.disagreeing, above.samples) == (200, 1000)
    assert (above.trusted_disagreeing, above.trusted_samples) == (50, 500)
    pooled = 250 / 1500
    expected = 0.1 / np.sqrt(pooled * (1 - pooled) * (1 / 1000 + 1 / 500))
    assert np.isclose(above.z, expected) and above.p_value < 1e-5
    below = disagreement_above_floor(trusted, scanned)  # less than the floor: not above it
    assert below.z < 0 and below.p_value > 0.99
    same = disagreement_above_floor(scanned[:500], scanned[:500])
    assert same.z == 0.0 and same.p_value == 0.5
    nothing = disagreement_above_floor(np.zeros(10, bool), np.zeros(10, bool))
    assert nothing.z == 0.0  # no disagreement anywhere: no spread, no evidence
