"""Tests of the detectors (on synthetic features with a known answer) and of the flagging rule."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from poisonguard.decision import (
    MAX_SCORE,
    class_pvalues,
    decide,
    suspicion_from_pvalues,
)
from poisonguard.detectors import (
    DETECTORS,
    Detector,
    get_detectors,
    robust_spectral_scores,
    spectral_signature_scores,
)
from poisonguard.results import Embedding

DIM = 20
PER_CLASS = 200
N_PLANTED = 20
TARGET = 1


def planted_features(
    seed: int = 0, *, shift: float = 10.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three classes of ``PER_CLASS`` standard Gaussian points in ``DIM`` dimensions; class
    ``TARGET`` also holds ``N_PLANTED`` points moved by ``shift`` along one random direction.

    Returns features, labels and the indices of the planted points.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=5.0, size=(3, DIM))
    labels = np.repeat(np.arange(3), PER_CLASS)
    features = centres[labels] + rng.normal(size=(labels.size, DIM))
    direction = rng.normal(size=DIM)
    direction /= np.linalg.norm(direction)
    planted = centres[TARGET] + rng.normal(size=(N_PLANTED, DIM)) + shift * direction
    features = np.vstack([features, planted])
    labels = np.concatenate([labels, np.full(N_PLANTED, TARGET)])
    # Shuffle so that the planted points are not simply the last rows.
    order = rng.permutation(labels.size)
    features, labels = features[order], labels[order]
    planted_index = np.flatnonzero(order >= 3 * PER_CLASS)
    return features, labels, planted_index


def as_embedding(features: np.ndarray) -> Embedding:
    n = features.shape[0]
    return Embedding(
        features=features.astype(np.float32),
        probabilities=np.full((n, 2), 0.5, dtype=np.float32),
        loss=np.zeros((n, 1), dtype=np.float32),
        margin=np.zeros((n, 1), dtype=np.float32),
        gradient_sq=np.zeros((n, 1), dtype=np.float32),
        model={"source": "test"},
        input_shape=(features.shape[1],),
        train_accuracy=1.0,
        fingerprint="0" * 64,
    )


def top_of_class(scores: np.ndarray, labels: np.ndarray, code: int, k: int) -> set[int]:
    members = np.flatnonzero(labels == code)
    return set(members[np.argsort(-scores[members], kind="stable")[:k]].tolist())


SCORERS = {
    "spectral_signature_scores": lambda f, y, **kw: spectral_signature_scores(
        f, y, min_class_size=kw.get("min_class_size", 10)
    ),
    "robust_spectral_scores": lambda f, y, **kw: robust_spectral_scores(f, y, **kw),
}


# --- the pure scoring functions -----------------------------------------------------------------


@pytest.mark.parametrize("scorer", SCORERS.values(), ids=SCORERS.keys())
def test_planted_cluster_gets_the_top_scores_of_its_class(scorer):
    features, labels, planted = planted_features()
    scores = scorer(features, labels)
    assert scores.shape == (labels.size,)
    assert np.all(np.isfinite(scores))
    assert np.all(scores >= 0)
    assert top_of_class(scores, labels, TARGET, N_PLANTED) == set(planted.tolist())


@pytest.mark.parametrize("scorer", SCORERS.values(), ids=SCORERS.keys())
def test_class_smaller_than_min_class_size_is_scored_zero(scorer):
    features, labels, _ = planted_features()
    rng = np.random.default_rng(1)
    small = rng.normal(size=(7, DIM)) * 50  # far out, yet too few to score
    features = np.vstack([features, small])
    labels = np.concatenate([labels, np.full(7, 3)])
    scores = scorer(features, labels, min_class_size=10)
    assert np.all(scores[labels == 3] == 0)
    assert np.any(scores[labels == 0] > 0)  # the others are still scored
    # Lowering the bound scores the class.
    assert np.any(scorer(features, labels, min_class_size=5)[labels == 3] > 0)


@pytest.mark.parametrize("scorer", SCORERS.values(), ids=SCORERS.keys())
def test_single_sample_class_is_scored_zero(scorer):
    features, labels, _ = planted_features()
    features = np.vstack([features, np.full((1, DIM), 100.0)])
    labels = np.concatenate([labels, [3]])
    scores = scorer(features, labels, min_class_size=1)
    assert scores[-1] == 0
    assert np.all(np.isfinite(scores))


@pytest.mark.parametrize("scorer", SCORERS.values(), ids=SCORERS.keys())
def test_constant_features_give_finite_zero_scores(scorer):
    features = np.full((60, DIM), 3.25)
    labels = np.repeat([0, 1], 30)
    scores = scorer(features, labels)
    assert scores.shape == (60,)
    assert np.all(np.isfinite(scores))
    np.testing.assert_allclose(scores, 0.0, atol=1e-12)


@pytest.mark.parametrize("scorer", SCORERS.values(), ids=SCORERS.keys())
def test_duplicated_rows_give_finite_scores(scorer):
    rng = np.random.default_rng(2)
    base = rng.normal(size=(15, DIM))
    features = np.vstack([base, base, base])  # every row three times
    labels = np.zeros(45, dtype=np.int64)
    labels[::2] = 1
    scores = scorer(features, labels)
    assert np.all(np.isfinite(scores))
    assert np.all(scores >= 0)
    # Two rows holding the same vector in the same class get the same score.
    rows = np.arange(45)
    for i in range(15):
        same = rows[(rows % 15 == i)]
        for code in (0, 1):
            group = same[labels[same] == code]
            if group.size > 1:
                np.testing.assert_allclose(scores[group], scores[group[0]], rtol=1e-9)


@pytest.mark.parametrize("scorer", SCORERS.values(), ids=SCORERS.keys())
def test_a_class_with_few_distinct_rows_is_finite(scorer):
    features = np.zeros((40, DIM))
    features[::2, 0] = 1.0  # two distinct vectors, twenty times each
    labels = np.repeat([0, 1], 20)
    scores = scorer(features, labels)
    assert np.all(np.isfinite(scores))


def test_spectral_scores_do_not_depend_on_sample_order_or_translation():
    features, labels, _ = planted_features()
    scores = spectral_signature_scores(features, labels)
    order = np.random.default_rng(3).permutation(labels.size)
    permuted = spectral_signature_scores(features[order], labels[order])
    np.testing.assert_allclose(permuted, scores[order], rtol=1e-8, atol=1e-10)
    shifted = spectral_signature_scores(features + 123.0, labels)
    np.testing.assert_allclose(shifted, scores, rtol=1e-6, atol=1e-8)


def test_spectral_scores_are_measured_from_the_median():
    # The top direction of this class is the first axis; scores are squared distances of the
    # projection from the median projection, so the median sample scores 0.
    features = np.zeros((11, 3))
    features[:, 0] = [-5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 20]
    labels = np.zeros(11, dtype=np.int64)
    scores = spectral_signature_scores(features, labels, min_class_size=2)
    expected = (features[:, 0] - 0.0) ** 2
    np.testing.assert_allclose(scores, expected, rtol=1e-9, atol=1e-9)


def test_robust_spectral_is_deterministic_under_a_seed():
    features, labels, _ = planted_features()
    kwargs = {"min_class_size": 10, "n_components": 5, "max_fit_samples": 100}
    first = robust_spectral_scores(features, labels, seed=7, **kwargs)
    again = robust_spectral_scores(features, labels, seed=7, **kwargs)
    np.testing.assert_array_equal(first, again)
    # Even fitting on a random subset of 100 of each class, the planted points stay on top.
    assert top_of_class(first, labels, TARGET, N_PLANTED) == set(planted_features()[2].tolist())


def test_robust_spectral_small_class_is_mapped_to_the_common_null():
    # A class of 20 samples is scored in a 4-d subspace (20 // 5) and its distances mapped to
    # the chi2(n_components) quantile with the same tail probability, so its median sits near
    # the median of chi2(n_components), like a full-size class.
    rng = np.random.default_rng(4)
    features = rng.normal(size=(20 + 400, DIM))
    labels = np.concatenate([np.zeros(20, dtype=np.int64), np.ones(400, dtype=np.int64)])
    scores = robust_spectral_scores(features, labels, n_components=10)
    target = stats.chi2.median(10)
    assert np.all(np.isfinite(scores)) and np.all(scores >= 0)
    assert 0.5 * target < np.median(scores[labels == 0]) < 2.0 * target
    assert 0.8 * target < np.median(scores[labels == 1]) < 1.25 * target


# --- the detector registry and its contract ------------------------------------------------------


@pytest.mark.parametrize("detector", DETECTORS.values(), ids=DETECTORS.keys())
def test_registered_detector_contract(detector: Detector):
    features, labels, planted = planted_features(seed=5)
    embedding = as_embedding(features)
    scores = detector.run(embedding, labels, min_class_size=10, seed=0)
    assert isinstance(scores, np.ndarray)
    assert scores.shape == (labels.size,)
    assert np.all(np.isfinite(scores))
    # Higher = more suspicious: the planted points rank on top of their class.
    assert top_of_class(scores, labels, TARGET, N_PLANTED) == set(planted.tolist())
    # Deterministic under a seed.
    np.testing.assert_array_equal(
        scores, detector.run(embedding, labels, min_class_size=10, seed=0)
    )
    assert detector.null_df >= 1
    assert detector.summary.strip()


@pytest.mark.parametrize("detector", DETECTORS.values(), ids=DETECTORS.keys())
def test_registered_detector_is_calibrated_on_clean_gaussian_classes(detector: Detector):
    # Within a clean class the scores follow a scaled chi2(null_df): the p-values of
    # class_pvalues are then close to uniform, which the flagging rule's tail threshold assumes.
    rng = np.random.default_rng(6)
    labels = np.repeat(np.arange(3), 1000)
    features = rng.normal(size=(labels.size, DIM)) * np.array([1.0, 3.0, 0.2])[labels, None]
    scores = detector.run(as_embedding(features), labels, min_class_size=10, seed=0)
    pvalues = class_pvalues(scores, labels, df=detector.null_df, min_class_size=10)
    assert 0.03 <= np.mean(pvalues < 0.05) <= 0.07
    assert 0.3 <= np.mean(pvalues < 0.5) <= 0.7


@pytest.mark.parametrize("detector", DETECTORS.values(), ids=DETECTORS.keys())
def test_registered_detector_skips_small_classes(detector: Detector):
    features, labels, _ = planted_features()
    features = np.vstack([features, np.full((3, DIM), 50.0)])
    labels = np.concatenate([labels, [3, 3, 3]])
    scores = detector.run(as_embedding(features), labels, min_class_size=10, seed=0)
    assert np.all(scores[labels == 3] == 0)


def test_get_detectors_none_and_all_give_every_detector():
    assert [d.name for d in get_detectors(None)] == list(DETECTORS)
    assert [d.name for d in get_detectors("all")] == list(DETECTORS)
    assert all(isinstance(d, Detector) for d in get_detectors(None))


def test_get_detectors_parses_comma_separated_names():
    names = list(DETECTORS)
    first, last = names[0], names[-1]
    assert [d.name for d in get_detectors(f"{last}, {first}")] == [last, first]
    assert [d.name for d in get_detectors(f" {first} ,")] == [first]
    assert [d.name for d in get_detectors(f"{first},{first}")] == [first]
    assert [d.name for d in get_detectors([last])] == [last]
    assert [d.name for d in get_detectors((first, last))] == [first, last]


@pytest.mark.parametrize("names", ["nope", "spectral,nope", ["nope"], "", " , ", []])
def test_get_detectors_unknown_name_lists_valid_ones(names):
    with pytest.raises(ValueError) as info:
        get_detectors(names)
    message = str(info.value)
    for name in DETECTORS:
        assert name in message
    if "nope" in str(names):
        assert "nope" in message


# --- the flagging rule ---------------------------------------------------------------------------


def _tail_pvalues(rng, counts, tail_share):
    """p-values per class: ``tail_share[c]`` of class c far in the tail (1e-7), the rest uniform."""
    labels = np.repeat(np.arange(len(counts)), counts)
    pvalues = rng.uniform(0.001, 1.0, size=labels.size)
    truth = np.zeros(labels.size, dtype=bool)
    for code, share in enumerate(tail_share):
        members = np.flatnonzero(labels == code)
        tail = members[: round(share * members.size)]
        pvalues[tail] = 1e-7
        truth[tail] = True
    return pvalues, labels, truth


def test_decide_calls_the_class_whose_tail_stands_out():
    rng = np.random.default_rng(0)
    shares = [0.10, 0.08, 0.12, 0.09, 0.11, 0.40, 0.10, 0.07, 0.13, 0.10]
    pvalues, labels, truth = _tail_pvalues(rng, [200] * 10, shares)
    decision = decide(pvalues, labels, np.ones(10, dtype=bool), tail_p=1e-4, class_z=3.0)
    assert decision.rule == "class-tail"
    assert decision.suspicious_classes == [5]
    # Only the tail samples of the suspicious class are flagged.
    assert decision.flagged.tolist() == (truth & (labels == 5)).tolist()
    assert decision.tail_share[5] == pytest.approx(0.40)
    assert decision.class_z[5] > 3.0
    assert np.all(decision.class_z[np.arange(10) != 5] < 3.0)
    assert decision.threshold == pytest.approx(4.0)


def test_decide_is_quiet_when_no_class_stands_out():
    rng = np.random.default_rng(1)
    shares = [0.10, 0.08, 0.12, 0.09, 0.11, 0.10, 0.10, 0.07, 0.13, 0.10]
    pvalues, labels, truth = _tail_pvalues(rng, [200] * 10, shares)
    decision = decide(pvalues, labels, np.ones(10, dtype=bool), tail_p=1e-4, class_z=3.0)
    assert truth.sum() > 150  # plenty of tail samples, spread evenly over the classes
    assert decision.suspicious_classes == []
    assert not decision.flagged.any()


def test_decide_ignores_unscored_classes():
    rng = np.random.default_rng(2)
    shares = [0.10, 0.08, 0.12, 0.90, 0.11]
    pvalues, labels, _ = _tail_pvalues(rng, [200] * 5, shares)
    scored = np.array([True, True, True, False, True])
    decision = decide(pvalues, labels, scored, tail_p=1e-4, class_z=3.0)
    assert decision.suspicious_classes == []
    assert np.isnan(decision.class_z[3])


def test_decide_flags_nothing_with_fewer_than_three_classes():
    rng = np.random.default_rng(3)
    pvalues, labels, truth = _tail_pvalues(rng, [200, 200], [0.5, 0.0])
    decision = decide(pvalues, labels, np.ones(2, dtype=bool), tail_p=1e-4, class_z=3.0)
    assert truth.any()
    assert decision.rule == "unavailable"
    assert not decision.flagged.any()
    assert decision.suspicious_classes == []
    # The evidence is still reported per sample.
    assert np.all(decision.score[truth] == pytest.approx(7.0))


@pytest.mark.parametrize("tail_p", [0.0, 1.0, -0.1, 1.5])
def test_decide_rejects_bad_tail_p(tail_p):
    with pytest.raises(ValueError, match="tail_p"):
        decide(
            np.array([0.5, 0.5]),
            np.array([0, 1]),
            np.ones(2, dtype=bool),
            tail_p=tail_p,
            class_z=3.0,
        )


@pytest.mark.parametrize("df", [1, 10])
def test_class_pvalues_uniform_under_the_null(df):
    rng = np.random.default_rng(df)
    labels = np.repeat([0, 1], 10_000)
    sigma2 = np.array([0.3, 40.0])[labels]  # a different scale in each class
    scores = sigma2 * rng.chisquare(df, size=labels.size)
    pvalues = class_pvalues(scores, labels, df=df, min_class_size=10)
    assert pvalues.shape == scores.shape
    assert np.all((pvalues >= 0) & (pvalues <= 1))
    for code in (0, 1):
        p = pvalues[labels == code]
        assert 0.03 <= np.mean(p < 0.05) <= 0.07
        assert 0.45 <= np.mean(p < 0.5) <= 0.55
    # Higher score, lower p-value, within a class.
    members = np.flatnonzero(labels == 0)
    order = np.argsort(scores[members])
    assert np.all(np.diff(pvalues[members][order]) <= 0)


def test_class_pvalues_do_not_depend_on_a_class_scale():
    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1], 200)
    scores = rng.chisquare(1, size=400)
    base = class_pvalues(scores, labels, df=1, min_class_size=10)
    scaled = scores.copy()
    scaled[labels == 1] *= 1000.0
    np.testing.assert_allclose(class_pvalues(scaled, labels, df=1, min_class_size=10), base)


def test_class_pvalues_skipped_classes_get_one():
    rng = np.random.default_rng(4)
    labels = np.concatenate([np.zeros(100, dtype=np.int64), np.ones(5, dtype=np.int64), [2]])
    scores = rng.chisquare(1, size=labels.size) * 5
    scores[labels == 1] = 1e6  # huge, but the class is too small to be scored
    scores[labels == 2] = 1e6
    pvalues = class_pvalues(scores, labels, df=1, min_class_size=10)
    assert np.all(pvalues[labels == 1] == 1.0)
    assert np.all(pvalues[labels == 2] == 1.0)
    assert np.any(pvalues[labels == 0] < 1.0)
    # A class whose scores are all zero (e.g. constant features) has no scale: p = 1.
    zero = class_pvalues(np.zeros(50), np.repeat([0, 1], 25), df=1, min_class_size=10)
    np.testing.assert_array_equal(zero, 1.0)


def test_suspicion_from_pvalues():
    p = np.array([1.0, 0.1, 1e-5, 0.0])
    scores = suspicion_from_pvalues(p)
    np.testing.assert_allclose(scores[:3], [0.0, 1.0, 5.0], atol=1e-12)
    assert scores[3] == MAX_SCORE
    assert np.all(np.diff(scores) > 0)  # lower p-value, higher suspicion
