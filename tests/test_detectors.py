"""Tests of the detectors (on synthetic features with a known answer), of the registry's contract,
and of the flagging rules of :mod:`poisonguard.decision`.

The influence, confident-learning, k-NN and training-dynamics functions have their own tests
(``test_detector_influence.py``, ``test_detector_label_noise.py``); here they are only checked
through the registry.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

from poisonguard.decision import Decision, DecisionSettings, decide, robust_z
from poisonguard.detectors import (
    DETECTORS,
    Detector,
    DetectorInputs,
    TrustedSet,
    get_detectors,
)
from poisonguard.detectors.activation_clustering import ClassSplit
from poisonguard.detectors.class_rows import (
    activation_clustering,
    robust_class_fits,
    spectral_signature_scores,
    spectre_scores,
)
from poisonguard.detectors.spectre import que_scores
from poisonguard.detectors.trigger_words import TriggerWordTest, WordSet
from poisonguard.results import Embedding
from poisonguard.tail_gap import tail_gap

# --- synthetic data -----------------------------------------------------------------------------

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


def top_of_class(scores: np.ndarray, labels: np.ndarray, code: int, k: int) -> set[int]:
    members = np.flatnonzero(labels == code)
    return set(members[np.argsort(-scores[members], kind="stable")[:k]].tolist())


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


# The registry's synthetic embedding: Gaussian blobs, and a model whose logits at epoch e are
# ``SHARPNESS[e] * -||h - centre_k||^2 / (4 F)``, i.e. a model that sharpens while it trains.
N_CLASSES = 4
FEATURES = 16
EPOCHS = 4
BLOB_SIZE = 150
SHARPNESS = np.array([0.25, 0.5, 0.75, 1.0])


def blob_centres(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=3.0, size=(N_CLASSES, FEATURES))


def blobs(seed: int, sizes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Features (float64) and labels of Gaussian blobs around :func:`blob_centres`."""
    rng = np.random.default_rng(seed + 100)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    features = blob_centres()[labels] + rng.normal(size=(labels.size, FEATURES))
    return features, labels


def model_records(
    features: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Probabilities (N, K) and per-epoch loss, margin and gradient_sq (N, E) of the model.

    The model predicts from the features alone (nearest blob centre), so a sample whose label
    disagrees with its blob gets a low probability for its label, a negative margin and a large
    gradient, as a mislabelled sample does.
    """
    n = labels.size
    squared = np.square(features[:, None, :] - blob_centres()[None, :, :]).sum(axis=2)
    base = -squared / (4 * FEATURES)
    onehot = np.eye(N_CLASSES)[labels]
    loss, margin, gradient_sq = (np.zeros((n, EPOCHS)) for _ in range(3))
    norm = np.square(features).sum(axis=1) + 1.0
    for epoch, sharpness in enumerate(SHARPNESS):
        logits = sharpness * base
        probabilities = softmax(logits)
        loss[:, epoch] = -np.log(probabilities[np.arange(n), labels])
        others = np.where(onehot > 0, -np.inf, logits)
        margin[:, epoch] = logits[np.arange(n), labels] - others.max(axis=1)
        gradient_sq[:, epoch] = np.square(probabilities - onehot).sum(axis=1) * norm
    return probabilities, loss, margin, gradient_sq


def make_embedding(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    records: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> Embedding:
    probabilities, loss, margin, gradient_sq = records or model_records(features, labels)
    return Embedding(
        features=np.asarray(features, dtype=np.float32),
        probabilities=probabilities.astype(np.float32),
        loss=loss.astype(np.float32),
        margin=margin.astype(np.float32),
        gradient_sq=gradient_sq.astype(np.float32),
        model={"source": "test"},
        input_shape=(features.shape[1],),
        train_accuracy=1.0,
        fingerprint="0" * 64,
    )


def trusted_set() -> TrustedSet:
    features, labels = blobs(7, [10] * N_CLASSES)
    probabilities = model_records(features, labels)[0]
    return TrustedSet(features.astype(np.float32), probabilities.astype(np.float32), labels)


def run_detector(
    detector: Detector, embedding: Embedding, labels: np.ndarray, seed: int = 0
) -> np.ndarray:
    inputs = DetectorInputs(
        embedding,
        labels,
        min_class_size=10,
        seed=seed,
        trusted=trusted_set() if detector.needs_trusted else None,
    )
    return detector.run(inputs)


def clean_case() -> tuple[Embedding, np.ndarray]:
    features, labels = blobs(0, [BLOB_SIZE] * N_CLASSES)
    return make_embedding(features, labels), labels


def singleton_class_case() -> tuple[Embedding, np.ndarray]:
    features, labels = blobs(1, [BLOB_SIZE, BLOB_SIZE, BLOB_SIZE, 1])
    return make_embedding(features, labels), labels


def single_class_case() -> tuple[Embedding, np.ndarray]:
    features, labels = blobs(2, [BLOB_SIZE])
    return make_embedding(features, labels), labels


def duplicated_rows_case() -> tuple[Embedding, np.ndarray]:
    features, labels = blobs(3, [25] * N_CLASSES)
    features, labels = np.vstack([features] * 3), np.tile(labels, 3)
    return make_embedding(features, labels), labels


def constant_features_case() -> tuple[Embedding, np.ndarray]:
    labels = np.repeat(np.arange(N_CLASSES), 40)
    features = np.full((labels.size, FEATURES), 3.25)
    return make_embedding(features, labels), labels


DEGENERATE = {
    "singleton-class": singleton_class_case,
    "single-class": single_class_case,
    "duplicated-rows": duplicated_rows_case,
    "constant-features": constant_features_case,
}

BACKDOOR_DETECTORS = [d for d in DETECTORS.values() if d.family == "backdoor"]
LABEL_NOISE_DETECTORS = [d for d in DETECTORS.values() if d.family == "label-noise"]


def ids(detectors: list[Detector]) -> list[str]:
    return [d.name for d in detectors]


def standardized_gap(scores: np.ndarray, suspects: np.ndarray, rest: np.ndarray) -> float:
    """``(mean(suspects) - mean(rest)) / std(rest)``: how far above the rest the suspects sit."""
    spread = float(scores[rest].std())
    gap = float(scores[suspects].mean() - scores[rest].mean())
    return gap / spread if spread > 0 else (np.inf if gap > 0 else -np.inf)


# --- the registry and its contract --------------------------------------------------------------


def test_every_detector_is_registered_under_its_name_with_a_known_family():
    assert len(DETECTORS) >= 10
    for name, detector in DETECTORS.items():
        assert detector.name == name
        assert detector.family in ("backdoor", "label-noise")
        assert detector.summary.strip()
        assert callable(detector.run)
    assert [d.name for d in DETECTORS.values() if d.needs_trusted] == ["trusted-influence"]


@pytest.mark.parametrize("detector", DETECTORS.values(), ids=DETECTORS.keys())
def test_detector_gives_one_finite_float_per_sample_deterministically(detector: Detector):
    embedding, labels = clean_case()
    scores = run_detector(detector, embedding, labels)
    assert isinstance(scores, np.ndarray)
    assert scores.shape == (labels.size,)
    assert np.issubdtype(scores.dtype, np.floating)
    assert np.all(np.isfinite(scores))
    # Same seed, fresh inputs (nothing cached between the runs): the same scores.
    again = run_detector(detector, embedding, labels)
    np.testing.assert_array_equal(scores, again)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("case", DEGENERATE.values(), ids=DEGENERATE.keys())
@pytest.mark.parametrize("detector", DETECTORS.values(), ids=DETECTORS.keys())
def test_detector_copes_with_degenerate_data(detector: Detector, case):
    embedding, labels = case()
    scores = run_detector(detector, embedding, labels)
    assert scores.shape == (labels.size,)
    assert np.all(np.isfinite(scores))


def test_trusted_influence_without_a_trusted_set_raises():
    embedding, labels = clean_case()
    with pytest.raises(ValueError, match="trusted"):
        DETECTORS["trusted-influence"].run(DetectorInputs(embedding, labels))


# --- higher = more suspicious, per family -------------------------------------------------------


def backdoor_case(seed: int = 0) -> tuple[Embedding, np.ndarray, np.ndarray]:
    """Class ``TARGET`` of the blobs holds 15 % of points shifted by 8 along a new direction;
    the shifted points also reach a low loss early (a trigger is an easy feature)."""
    features, labels = blobs(10 + seed, [BLOB_SIZE] * N_CLASSES)
    rng = np.random.default_rng(seed)
    members = np.flatnonzero(labels == TARGET)
    planted = np.sort(rng.choice(members, round(0.15 * members.size), replace=False))
    direction = rng.normal(size=FEATURES)
    direction /= np.linalg.norm(direction)
    features[planted] += 8.0 * direction
    records = model_records(features, labels)
    records[1][planted] *= 0.1  # loss
    return make_embedding(features, labels, records=records), labels, planted


@pytest.mark.parametrize("detector", BACKDOOR_DETECTORS, ids=ids(BACKDOOR_DETECTORS))
def test_backdoor_detector_scores_a_planted_group_above_its_class(detector: Detector):
    embedding, labels, planted = backdoor_case()
    scores = run_detector(detector, embedding, labels)
    rest = np.setdiff1d(np.flatnonzero(labels == TARGET), planted)
    assert standardized_gap(scores, planted, rest) > 2.0
    # Most planted samples sit above every one of the rest of their class.
    assert np.mean(scores[planted] > scores[rest].max()) > 0.5


def label_noise_case(seed: int = 0) -> tuple[Embedding, np.ndarray, np.ndarray]:
    """Blobs with 8 % of the labels flipped to another class; the model's records are those of
    a model that predicts from the features (so flipped samples are misfit)."""
    features, labels = blobs(20 + seed, [BLOB_SIZE] * N_CLASSES)
    rng = np.random.default_rng(seed)
    flipped = np.sort(rng.choice(labels.size, round(0.08 * labels.size), replace=False))
    labels = labels.copy()
    labels[flipped] = (labels[flipped] + rng.integers(1, N_CLASSES, flipped.size)) % N_CLASSES
    return make_embedding(features, labels), labels, flipped


@pytest.mark.parametrize("detector", LABEL_NOISE_DETECTORS, ids=ids(LABEL_NOISE_DETECTORS))
def test_label_noise_detector_scores_flipped_labels_higher(detector: Detector):
    embedding, labels, flipped = label_noise_case()
    # The synthetic model is consistent with the flips being misfit.
    given = embedding.probabilities[flipped, labels[flipped]]
    assert np.all(given < 0.5) and np.all(embedding.margin[flipped].mean(axis=1) < 0)
    scores = run_detector(detector, embedding, labels)
    clean = np.setdiff1d(np.arange(labels.size), flipped)
    assert standardized_gap(scores, flipped, clean) > 3.0
    # Trusted influence is signed and noisier (a flip can lower the trusted loss of a few
    # trusted samples near its blob); the others put nearly every flip above the clean median.
    share = 0.75 if detector.needs_trusted else 0.95
    assert np.mean(scores[flipped] > np.median(scores[clean])) > share


def test_label_noise_detectors_include_the_expected_ones():
    expected = {"confident-learning", "knn-labels", "aum", "tracin", "influence"}
    assert expected <= {d.name for d in LABEL_NOISE_DETECTORS}
    assert {"spectral", "spectre", "activation-clustering", "early-loss"} <= {
        d.name for d in BACKDOOR_DETECTORS
    }


# --- get_detectors ------------------------------------------------------------------------------


def test_get_detectors_none_and_all_leave_out_detectors_that_need_a_trusted_set():
    untrusted = [name for name, d in DETECTORS.items() if not d.needs_trusted]
    assert "trusted-influence" not in untrusted
    assert [d.name for d in get_detectors(None)] == untrusted
    assert [d.name for d in get_detectors("all")] == untrusted
    assert all(isinstance(d, Detector) for d in get_detectors(None))


def test_get_detectors_with_a_trusted_set_gives_every_detector():
    assert [d.name for d in get_detectors(None, trusted=True)] == list(DETECTORS)
    assert [d.name for d in get_detectors("all", trusted=True)] == list(DETECTORS)
    chosen = get_detectors("trusted-influence,spectral", trusted=True)
    assert [d.name for d in chosen] == ["trusted-influence", "spectral"]


def test_get_detectors_parses_comma_separated_names():
    names = list(DETECTORS)
    first, last = names[0], names[-2]
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


@pytest.mark.parametrize("names", ["trusted-influence", "spectral,trusted-influence"])
def test_get_detectors_refuses_trusted_influence_without_a_trusted_set(names):
    with pytest.raises(ValueError, match="trusted-influence.*trusted"):
        get_detectors(names)


# --- spectral signatures (and SPECTRE through the same cases) -----------------------------------

SCORERS = {
    "spectral": lambda f, y, **kw: spectral_signature_scores(
        f, y, min_class_size=kw.get("min_class_size", 10)
    ),
    "spectre": lambda f, y, **kw: spectre_scores(f, y, **kw),
}


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


# --- SPECTRE: robust whitening, distance ratio, QUE ---------------------------------------------


def one_class_with_far_group(
    seed: int, n: int = 400, share: float = 0.0, shift: float = 12.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One Gaussian class in ``DIM`` dimensions (unequal axis scales); ``share`` of it moved by
    ``shift`` along a random direction. Returns features, labels (all 0) and the moved rows."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, DIM)) * np.linspace(0.5, 3.0, DIM)
    far = np.sort(rng.choice(n, round(share * n), replace=False))
    direction = rng.normal(size=DIM)
    direction /= np.linalg.norm(direction)
    features[far] += shift * direction * 3.0
    return features, np.zeros(n, dtype=np.int64), far


def test_robust_class_fits_are_deterministic_under_a_seed():
    features, labels, _ = planted_features()
    kwargs = {"min_class_size": 10, "n_components": 5, "max_fit_samples": 100}
    first = robust_class_fits(features, labels, seed=7, **kwargs)
    again = robust_class_fits(features, labels, seed=7, **kwargs)
    for field in ("que", "distance", "distance_ratio", "scored"):
        np.testing.assert_array_equal(getattr(first, field), getattr(again, field))
    np.testing.assert_array_equal(spectre_scores(features, labels, seed=7, **kwargs), first.que)
    # Even fitting on a random subset of 100 of each class, the planted points stay on top.
    planted = planted_features()[2]
    assert top_of_class(first.que, labels, TARGET, N_PLANTED) == set(planted.tolist())
    assert top_of_class(first.distance_ratio, labels, TARGET, N_PLANTED) == set(planted.tolist())


def test_distance_ratio_is_about_one_on_a_clean_gaussian_class():
    features, labels, _ = one_class_with_far_group(0)
    fit = robust_class_fits(features, labels)
    assert fit.scored.all()
    assert 0.5 < np.median(fit.distance_ratio) < 2.0
    assert np.all(fit.distance_ratio >= 0)
    # A clean Gaussian class has no far group: nothing near the rule's far_ratio of 10.
    assert np.mean(fit.distance_ratio > 10.0) < 0.01
    # The ratio is the distance over a positive class constant.
    constant = fit.distance / fit.distance_ratio
    np.testing.assert_allclose(constant, constant[0], rtol=1e-9)


# sklearn's MinCovDet alone mixed the 30 % group (every random start holds ~30 % of it); the
# 2-means starts of minimum_covariance_determinant find the clean half up to nearly half poison.
@pytest.mark.parametrize("share", [0.1, 0.2, 0.3, 0.45])
def test_a_planted_far_group_gets_a_large_distance_ratio(share):
    features, labels, far = one_class_with_far_group(1, share=share)
    fit = robust_class_fits(features, labels)
    clean = np.setdiff1d(np.arange(labels.size), far)
    assert np.min(fit.distance_ratio[far]) > 10.0
    assert np.median(fit.distance_ratio[far]) > 30.0
    assert 0.5 < np.median(fit.distance_ratio[clean]) < 2.0
    # QUE ranks them on top as well.
    assert np.min(fit.que[far]) > np.max(fit.que[clean])


def test_small_classes_are_not_fitted():
    features, labels, _ = planted_features()
    features = np.vstack([features, np.random.default_rng(3).normal(size=(5, DIM)) * 40])
    labels = np.concatenate([labels, np.full(5, 3)])
    fit = robust_class_fits(features, labels, min_class_size=10)
    small = labels == 3
    assert not fit.scored[small].any() and fit.scored[~small].all()
    for values in (fit.que, fit.distance, fit.distance_ratio):
        assert np.all(values[small] == 0)


def test_que_with_alpha_zero_is_the_mean_squared_norm():
    rng = np.random.default_rng(4)
    whitened = rng.normal(size=(50, 6)) * np.array([1, 1, 1, 2, 3, 5])
    expected = np.square(whitened).sum(axis=1) / 6
    np.testing.assert_allclose(que_scores(whitened, alpha=0.0), expected, rtol=1e-12)
    # And through the class fits: QUE with alpha 0 is the robust distance over k.
    features, labels, _ = one_class_with_far_group(2, share=0.1)
    fit = robust_class_fits(features, labels, alpha=0.0, n_components=5)
    np.testing.assert_allclose(fit.que, fit.distance / 5, rtol=1e-9)


def test_que_weights_the_direction_where_the_excess_variance_lies():
    # Whitened rows: isotropic, plus a few rows far along the first axis. With alpha > 0 QUE
    # weighs that axis more, so those rows gain on the rest relative to alpha = 0.
    rng = np.random.default_rng(5)
    whitened = rng.normal(size=(200, 5))
    whitened[:20, 0] += 6.0
    flat, sharp = que_scores(whitened, alpha=0.0), que_scores(whitened, alpha=4.0)
    assert np.all(np.isfinite(sharp)) and np.all(sharp >= 0)
    assert sharp[:20].mean() / sharp[20:].mean() > flat[:20].mean() / flat[20:].mean()


def test_robust_class_fits_rejects_negative_alpha():
    features, labels, _ = planted_features()
    with pytest.raises(ValueError, match="alpha"):
        robust_class_fits(features, labels, alpha=-1.0)


# --- activation clustering ----------------------------------------------------------------------


def two_blob_class(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A class of 200 samples: 70 % in one Gaussian blob, 30 % in another 10 apart; plus a
    second, single-blob class. Returns features, labels and the rows of the 30 % blob."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(400, DIM))
    labels = np.repeat([0, 1], 200)
    minority = np.sort(rng.choice(200, 60, replace=False))
    direction = rng.normal(size=DIM)
    features[minority] += 10.0 * direction / np.linalg.norm(direction)
    features[200:] += 30.0
    return features, labels, minority


@pytest.mark.parametrize("reduce", ["pca", "ica"])
def test_activation_clustering_finds_the_minority_blob(reduce):
    features, labels, minority = two_blob_class()
    scores, splits = activation_clustering(features, labels, reduce=reduce, seed=0)
    assert [split.code for split in splits] == [0, 1]
    split = splits[0]
    assert isinstance(split, ClassSplit)
    assert split.size == 200
    np.testing.assert_array_equal(np.sort(split.minority), minority)
    assert split.minority_share == pytest.approx(0.3)
    assert split.separation > 5.0
    # Higher = closer to the smaller cluster.
    majority = np.setdiff1d(np.arange(200), minority)
    assert np.min(scores[minority]) > np.max(scores[majority])
    assert np.all(np.isfinite(scores))


def test_activation_clustering_on_a_single_blob_separates_little():
    features, labels, _ = two_blob_class()
    _, splits = activation_clustering(features, labels, seed=0)
    assert splits[1].code == 1
    assert splits[1].separation < 4.0
    assert splits[0].separation > 2 * splits[1].separation


def test_activation_clustering_is_deterministic_and_skips_small_classes():
    features, labels, _ = two_blob_class()
    features = np.vstack([features, np.full((3, DIM), 50.0)])
    labels = np.concatenate([labels, [2, 2, 2]])
    scores, splits = activation_clustering(features, labels, seed=3)
    again, splits_again = activation_clustering(features, labels, seed=3)
    np.testing.assert_array_equal(scores, again)
    assert [s.separation for s in splits] == [s.separation for s in splits_again]
    assert 2 not in [s.code for s in splits]
    assert np.all(scores[labels == 2] == 0)


def test_activation_clustering_rejects_an_unknown_reduction():
    features, labels, _ = two_blob_class()
    with pytest.raises(ValueError, match="tsne"):
        activation_clustering(features, labels, reduce="tsne")


# --- the decision rules -------------------------------------------------------------------------

K = 5
CLASS_SIZE = 300
TARGET_CLASS = 2


class Synthetic:
    """Arrays for :func:`decide`: 5 classes of 300; every sample's model probability of its
    label is 0.9, its runner-up class (label + 1) mod K; its distance ratio is between 0.2 and
    2.5; its margins are about 2 per epoch; its out-of-sample probability of the label is 0.9."""

    def __init__(self, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.labels = np.repeat(np.arange(K), CLASS_SIZE)
        n = self.labels.size
        self.ratio = rng.uniform(0.2, 2.5, size=n)
        self.margin = 2.0 + 0.3 * rng.normal(size=(n, 4))
        self.runner_up = (self.labels + 1) % K
        self.oos_predicted = self.labels.copy()
        self.oos_given = np.full(n, 0.9)

    @property
    def probabilities(self) -> np.ndarray:
        return self._probabilities(self.labels, self.runner_up, 0.9)

    @property
    def oos_probabilities(self) -> np.ndarray:
        other = np.where(
            self.oos_predicted == self.labels, (self.labels + 1) % K, self.oos_predicted
        )
        return self._probabilities(self.labels, other, self.oos_given)

    def _probabilities(self, labels, other, given) -> np.ndarray:
        n = labels.size
        given = np.broadcast_to(np.asarray(given, dtype=np.float64), (n,))
        second = np.where(given < 0.5, 0.9, 0.06)  # the other class wins when given is low
        rest = (1.0 - given - second) / (K - 2)
        probabilities = np.repeat(rest[:, None], K, axis=1)
        probabilities[np.arange(n), labels] = given
        probabilities[np.arange(n), other] = second
        assert np.allclose(probabilities.sum(axis=1), 1.0) and np.all(probabilities >= 0)
        return probabilities

    def plant_far_group(self, *, margin: float, diverse: bool, share: float = 0.25) -> np.ndarray:
        members = np.flatnonzero(self.labels == TARGET_CLASS)
        far = np.sort(self.rng.choice(members, round(share * members.size), replace=False))
        self.ratio[far] = self.rng.uniform(50.0, 200.0, size=far.size)
        self.margin[far] = margin + 0.3 * self.rng.normal(size=(far.size, 4))
        if diverse:
            others = [c for c in range(K) if c != TARGET_CLASS]
            self.runner_up[far] = np.resize(others, far.size)
        return far

    def image_dataset(self, x: np.ndarray | None = None):
        """An in-memory image dataset with these labels (``x``: (N, H, W); blank 2x2 images by
        default), for the report's findings."""
        from pathlib import Path

        from poisonguard.dataset import Dataset

        n = self.labels.size
        x = np.zeros((n, 2, 2)) if x is None else x
        return Dataset(
            x=np.asarray(x, dtype=np.float32)[:, None],
            labels=self.labels,
            class_names=[f"c{k}" for k in range(K)],
            ids=[str(i) for i in range(n)],
            kind="image",
            path=Path("memory"),
            format="npz",
        )

    def decide(self, **overrides) -> Decision:
        kwargs = {
            "distance_ratio": self.ratio,
            "margin": self.margin,
            "probabilities": self.probabilities,
            "oos_probabilities": self.oos_probabilities,
            "settings": DecisionSettings(),
        }
        kwargs.update(overrides)
        detector_scores = {"spectre": self.ratio.copy()}
        return decide(self.labels, K, np.ones(K, dtype=bool), detector_scores, **kwargs)


def test_synthetic_decision_inputs_are_what_they_claim():
    data = Synthetic()
    probabilities = data.probabilities
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert np.all(probabilities.argmax(axis=1) == data.labels)
    others = probabilities.copy()
    others[np.arange(data.labels.size), data.labels] = -1
    np.testing.assert_array_equal(others.argmax(axis=1), (data.labels + 1) % K)


def test_backdoor_rule_calls_a_far_easy_group_of_diverse_origin():
    data = Synthetic()
    far = data.plant_far_group(margin=5.0, diverse=True)
    decision = data.decide()
    assert decision.target_classes == [TARGET_CLASS]
    assert decision.attack_kinds == ["backdoor"]
    truth = np.zeros(data.labels.size, dtype=bool)
    truth[far] = True
    np.testing.assert_array_equal(decision.flagged, truth)
    assert set(decision.kind[far]) == {"backdoor"}
    assert set(decision.kind[~truth]) == {""}
    assert np.all(decision.score[truth] >= 0.5)
    assert np.all(decision.score[~truth] < 0.5)
    assert np.all((decision.score >= 0) & (decision.score <= 1))
    evidence = decision.evidence[TARGET_CLASS]
    assert evidence.backdoor and evidence.far_share == pytest.approx(0.25)
    assert evidence.far_margin > evidence.core_margin
    assert evidence.far_entropy - evidence.core_entropy > 0.9
    assert 2.5 < evidence.cut_ratio < 50.0
    assert not any(e.backdoor for e in decision.evidence if e.code != TARGET_CLASS)
    assert not decision.noisy_labels


def features_with_ten_below_the_cut(
    data: Synthetic, far: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Random features in which the planted group ``far`` and ten other samples of the target
    class (poisons below the distance cut) share one large value; returns them and the ten."""
    rng = np.random.default_rng(7)
    features = rng.normal(size=(data.labels.size, 12))
    members = np.flatnonzero(data.labels == TARGET_CLASS)
    missed = np.setdiff1d(members, far)[:10]
    features[np.concatenate([far, missed]), 0] += 8.0
    return features, missed


def test_group_completion_adds_the_poisons_below_the_cut_and_only_in_a_called_class():
    """Ten poisons whose distance ratios lie among the core's (the model learned them less
    sharply) share the group's features: the discriminant adds them; the other classes, not
    called, are left alone even where a few samples sit apart in the features."""
    data = Synthetic()
    far = data.plant_far_group(margin=5.0, diverse=True)
    features, missed = features_with_ten_below_the_cut(data, far)
    elsewhere = np.flatnonzero(data.labels == (TARGET_CLASS + 1) % K)[:40]
    features[elsewhere, 0] += 8.0
    without = data.decide()
    decision = data.decide(features=features)
    truth = np.zeros(data.labels.size, dtype=bool)
    truth[far] = True
    np.testing.assert_array_equal(without.flagged, truth)
    truth[missed] = True
    np.testing.assert_array_equal(decision.flagged, truth)
    assert set(decision.kind[missed]) == {"backdoor"}
    assert np.all(decision.score[missed] >= 0.5)
    assert decision.evidence[TARGET_CLASS].completed == missed.size
    assert without.evidence[TARGET_CLASS].completed == 0


@pytest.mark.parametrize("grown_foreign", [True, False])
def test_in_texts_group_completion_stays_only_if_the_grown_group_is_another_class_s(
    grown_foreign,
):
    # the same planted group and ten like it below the cut; the texts' check accepts the group
    # and then judges what completion grew it to
    data = Synthetic()
    far = data.plant_far_group(margin=5.0, diverse=False)
    features, missed = features_with_ten_below_the_cut(data, far)
    asked = []

    def foreign_texts(code: int, rows: np.ndarray, grown: bool = False) -> bool:
        asked.append((rows.size, grown))
        return grown_foreign if grown else True

    decision = data.decide(features=features, foreign_texts=foreign_texts)
    assert asked == [(far.size, False), (far.size + missed.size, True)]
    expected = np.concatenate([far, missed]) if grown_foreign else far
    assert np.flatnonzero(decision.flagged).tolist() == sorted(expected.tolist())
    assert decision.evidence[TARGET_CLASS].completed == (missed.size if grown_foreign else 0)


def apart_in_features_ten_more_in_input(
    data: Synthetic, far: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random features in which the planted group ``far`` shares one large value, and random
    4x4 samples in which it and ten other samples of the target class (poisons the model
    learned too faintly) share one large pixel, the trigger's; returns both and the ten."""
    rng = np.random.default_rng(11)
    features = rng.normal(size=(data.labels.size, 12))
    features[far, 0] += 8.0
    members = np.flatnonzero(data.labels == TARGET_CLASS)
    missed = np.setdiff1d(members, far)[:10]
    images = rng.normal(size=(data.labels.size, 4, 4))
    images[np.concatenate([far, missed]), 0, 0] += 8.0  # the trigger's pixel, in every poison
    return features, images, missed


def test_group_completion_in_the_samples_adds_poisons_the_features_do_not_show():
    """Ten poisons the model's features put with the class (learned too faintly) still carry
    the trigger's pixels: group completion in the samples themselves adds them, after the
    features; the width cap leaves wide samples to the features, with a note."""
    data = Synthetic()
    far = data.plant_far_group(margin=5.0, diverse=True)
    features, images, missed = apart_in_features_ten_more_in_input(data, far)
    features_only = data.decide(features=features)
    decision = data.decide(features=features, inputs=images)
    truth = np.zeros(data.labels.size, dtype=bool)
    truth[far] = True
    np.testing.assert_array_equal(features_only.flagged, truth)
    truth[missed] = True
    np.testing.assert_array_equal(decision.flagged, truth)
    assert set(decision.kind[missed]) == {"backdoor"}
    evidence = decision.evidence[TARGET_CLASS]
    assert (evidence.completed, evidence.completed_in_input) == (0, missed.size)
    wide = np.repeat(images.reshape(data.labels.size, -1), 65, axis=1)  # 1,040 values
    capped = data.decide(features=features, inputs=wide)
    assert capped.evidence[TARGET_CLASS].completed_in_input == 0
    assert any("1040 values per sample" in note for note in capped.notes)


IN_FEATURES, IN_SAMPLES = (12,), (4, 4)  # a call in the features, in the samples


@pytest.mark.parametrize(
    ("chain_length", "step", "joined", "calls"),
    [
        # the second turn's features add none: stop
        (2, 1, 2, [IN_FEATURES, IN_SAMPLES, IN_FEATURES]),
        # 6 a turn; the fourth adds 2, fewer than a group: undone
        (20, 3, 18, [IN_FEATURES, IN_SAMPLES] * 4),
        (8, 1, 2, [IN_FEATURES, IN_SAMPLES] * 2),  # 2 a turn after the first: drift, undone
        (100, 3, 30, [IN_FEATURES, IN_SAMPLES] * 5),  # the cap
    ],
)
def test_group_completion_runs_again_while_the_features_add_a_group(
    monkeypatch, chain_length, step, joined, calls
):
    """A group grown in the samples is a better start for the features' discriminant: the
    features, then the samples, run again while the features add samples, at most
    ``COMPLETION_TURNS`` turns; a later turn that adds fewer than the smallest group
    (``min_group_size``) is undone. A stand-in discriminant that adds ``step`` more poisons a call
    shows the turns (the real one's reach is measured in docs/benchmarks.md)."""
    import poisonguard.decision as decision_module

    assert decision_module.COMPLETION_TURNS == 5 and DecisionSettings().min_group_size == 5
    data = Synthetic()
    far = data.plant_far_group(margin=5.0, diverse=True)
    members = np.flatnonzero(data.labels == TARGET_CLASS)
    chain = np.setdiff1d(members, far)[:chain_length]
    seen = []

    def some_more(rows, class_members, group, seed):
        seen.append(rows.shape[1:])
        grown = group.copy()
        grown[np.flatnonzero(np.isin(class_members, chain) & ~group)[:step]] = True
        return grown

    monkeypatch.setattr(decision_module, "complete_group", some_more)
    rng = np.random.default_rng(3)
    features = rng.normal(size=(data.labels.size, 12))
    images = rng.normal(size=(data.labels.size, 4, 4))
    decision = data.decide(features=features, inputs=images)
    evidence = decision.evidence[TARGET_CLASS]
    assert seen == calls
    assert decision.flagged[chain].sum() == joined
    np.testing.assert_array_equal(decision.flagged[far], True)
    assert set(decision.kind[chain[decision.flagged[chain]]].tolist()) == {"backdoor"}
    assert "backdoor" not in set(decision.kind[chain[~decision.flagged[chain]]].tolist())
    assert evidence.completed + evidence.completed_in_input == joined


def smooth_tail(rng, size: int, far_share: float = 0.25) -> np.ndarray:
    """Distance ratios with a smooth Pareto tail (no group apart): ``far_share`` above 10."""
    scale = np.log(10.0) / np.log(1.0 / far_share)  # P(log ratio > log 10) = far_share
    return np.exp(rng.exponential(scale, size=size))


def test_backdoor_rule_ignores_a_far_tail_of_hard_samples():
    """A quarter of the class far from the core, but hard to learn and with no gap between it
    and the core: natural outliers, not a backdoor."""
    data = Synthetic()
    members = np.flatnonzero(data.labels == TARGET_CLASS)
    data.ratio[members] = smooth_tail(data.rng, members.size)
    far = members[data.ratio[members] > 10.0]
    data.margin[far] = -1.0 + 0.3 * data.rng.normal(size=(far.size, 4))
    others = [c for c in range(K) if c != TARGET_CLASS]
    data.runner_up[far] = np.resize(others, far.size)
    decision = data.decide()
    evidence = decision.evidence[TARGET_CLASS]
    assert evidence.far_share == pytest.approx(far.size / members.size)  # measured ...
    assert evidence.far_margin < evidence.core_margin  # ... and found hard
    assert evidence.gap is not None and evidence.gap.p_value > 0.001  # ... and no gap
    assert decision.target_classes == []
    assert not decision.flagged.any()
    assert np.all(decision.score < 0.5)


def test_separated_group_test_calls_a_hard_group_apart_from_its_class():
    """The same hard group, but apart from the core (ratios 50-200 against at most 2.5): a
    group that does not belong, such as the partial-trigger payload of an adaptive attack. Of
    diverse origin, the mixed-origin test calls it on its gap; of one origin, the
    separated-group test."""
    data = Synthetic()
    far = data.plant_far_group(margin=-1.0, diverse=True)
    decision = data.decide()
    evidence = decision.evidence[TARGET_CLASS]
    assert evidence.far_margin < evidence.core_margin and not evidence.easy
    assert evidence.rule == "mixed-origin-group"
    assert evidence.gap.size == far.size and evidence.gap.p_value < 1e-6
    assert decision.target_classes == [TARGET_CLASS]
    assert np.flatnonzero(decision.flagged).tolist() == far.tolist()
    data = Synthetic()
    far = data.plant_far_group(margin=-1.0, diverse=False)
    decision = data.decide()
    evidence = decision.evidence[TARGET_CLASS]
    assert evidence.rule == "separated-group"
    assert decision.target_classes == [TARGET_CLASS]
    assert np.flatnonzero(decision.flagged).tolist() == far.tolist()


def test_backdoor_rule_calls_a_group_easier_than_a_typical_class_in_an_easy_class():
    """A target class that is itself easier than its poisons (the 8x8 digits' class 0)."""
    data = Synthetic()
    members = data.labels == TARGET_CLASS
    data.margin[members] += 10.0  # the target's core: margin about 12, other cores about 2
    far = data.plant_far_group(margin=8.0, diverse=True)
    decision = data.decide()
    evidence = decision.evidence[TARGET_CLASS]
    assert evidence.core_margin > evidence.far_margin > evidence.typical_margin
    assert evidence.typical_margin == pytest.approx(2.0, abs=0.1)
    assert decision.target_classes == [TARGET_CLASS]
    assert decision.flagged[far].all() and decision.flagged.sum() == far.size
    assert evidence.rule == "mixed-origin-group"
    assert evidence.easy
    # the same group but harder than a typical class's core is not easy; it is still a group
    # apart from its class, which calls it too
    data.margin[far] = 1.0
    again = data.decide()
    assert again.target_classes == [TARGET_CLASS]
    assert not again.evidence[TARGET_CLASS].easy
    assert again.evidence[TARGET_CLASS].gap.p_value < 1e-6


def test_separated_group_test_calls_a_group_of_one_origin():
    """Poisons from one source class (source-specific and all-to-all backdoors) have no
    runner-up variety: the mixed-origin test passes them, the separated-group test does not."""
    data = Synthetic()
    far = data.plant_far_group(margin=5.0, diverse=False)
    decision = data.decide()
    evidence = decision.evidence[TARGET_CLASS]
    assert evidence.far_entropy == pytest.approx(evidence.core_entropy)
    assert evidence.rule == "separated-group"
    assert evidence.gap.size == far.size == 75
    assert evidence.gap.p_value < 1e-6
    assert decision.target_classes == [TARGET_CLASS]
    assert np.flatnonzero(decision.flagged).tolist() == far.tolist()
    assert set(decision.kind[far]) == {"backdoor"}


def test_separated_group_test_works_with_two_classes():
    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1], 400)
    ratio = smooth_tail(rng, labels.size, far_share=0.05)
    group = np.flatnonzero(labels == 1)[:20]
    ratio[group] = rng.uniform(300.0, 900.0, size=group.size)
    probabilities = np.where(np.eye(2, dtype=bool)[labels], 0.9, 0.1)
    decision = decide(
        labels,
        2,
        np.ones(2, dtype=bool),
        {"spectre": ratio},
        distance_ratio=ratio,
        margin=np.full((labels.size, 3), 2.0),
        probabilities=probabilities,
        oos_probabilities=probabilities,
    )
    assert decision.target_classes == [1]
    assert np.flatnonzero(decision.flagged).tolist() == group.tolist()
    assert any("mixed-origin backdoor test off" in note for note in decision.notes)


def test_tail_gap_p_values_hold_on_smooth_tails():
    """On tails with no group the gap test's p-value is (close to) uniform: its false calls
    are what ``gap_alpha`` says, not a matter of tuning."""
    rng = np.random.default_rng(0)
    p_values = []
    for _ in range(300):
        gap = tail_gap(smooth_tail(rng, 3000), far_ratio=10.0, core_ratio=3.0, min_group_size=5)
        p_values.append(gap.p_value)
    p_values = np.array(p_values)
    # conservative (the Hill estimate includes the gap itself): at most the nominal rate
    assert np.mean(p_values < 0.05) <= 0.08
    assert np.mean(p_values < 0.001) <= 0.01
    assert np.mean(p_values < 0.5) > 0.2  # ... but not blind: the statistic varies


def test_tail_gap_finds_the_group_boundary():
    rng = np.random.default_rng(1)
    tail = smooth_tail(rng, 3000, far_share=0.05)
    ratio = np.concatenate([tail, rng.uniform(5e4, 1e5, size=12)])
    gap = tail_gap(ratio, far_ratio=10.0, core_ratio=3.0, min_group_size=5)
    assert gap.size == 12 and gap.upper >= 5e4 and gap.lower == tail.max()
    assert gap.p_value < 1e-6
    # too short a tail to judge
    assert tail_gap(np.ones(50), far_ratio=10.0, core_ratio=3.0, min_group_size=5) is None


def test_backdoor_rule_is_off_without_distance_ratios():
    data = Synthetic()
    data.plant_far_group(margin=5.0, diverse=True)
    decision = data.decide(distance_ratio=None)
    assert decision.target_classes == []
    assert not decision.flagged.any()
    assert any("backdoor rule off" in note for note in decision.notes)
    assert np.all(decision.score < 0.5)


def test_mixed_origin_test_is_off_with_fewer_than_four_classes():
    data = Synthetic()
    far = data.plant_far_group(margin=5.0, diverse=True)
    keep = data.labels < 3  # classes 0, 1 and 2 (the target)
    labels = data.labels[keep]
    probabilities = data.probabilities[keep][:, :3]
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    oos = data.oos_probabilities[keep][:, :3]
    oos /= oos.sum(axis=1, keepdims=True)
    decision = decide(
        labels,
        3,
        np.ones(3, dtype=bool),
        {},
        distance_ratio=data.ratio[keep],
        margin=data.margin[keep],
        probabilities=probabilities,
        oos_probabilities=oos,
    )
    assert far.max() < keep.sum()
    # the mixed-origin test is off; the group apart from its class is still called
    assert any("at least 4 classes" in note for note in decision.notes)
    assert decision.target_classes == [TARGET_CLASS]
    assert decision.evidence[TARGET_CLASS].rule == "separated-group"
    assert np.flatnonzero(decision.flagged).tolist() == far.tolist()
    # Four classes of which only three are scored: the mixed-origin test is off as well
    scored = np.array([True, True, True, False, False])
    decision = decide(
        data.labels,
        K,
        scored,
        {},
        distance_ratio=data.ratio,
        margin=data.margin,
        probabilities=data.probabilities,
        oos_probabilities=data.oos_probabilities,
    )
    assert any("at least 4 classes" in note for note in decision.notes)
    assert decision.evidence[TARGET_CLASS].rule == "separated-group"


@pytest.mark.parametrize("foreign", [True, False])
def test_texts_standing_apart_are_called_only_if_they_are_another_class_s(foreign):
    # a text dataset's separated group: a dirty-label backdoor's texts are another class's; a
    # topic cluster of the class's own texts (positive tweets about one airline) is not called
    data = Synthetic()
    far = data.plant_far_group(margin=5.0, diverse=False)
    asked = []

    def foreign_texts(code: int, rows: np.ndarray, grown: bool = False) -> bool:
        asked.append((code, rows.tolist(), grown))
        return foreign

    decision = data.decide(foreign_texts=foreign_texts)
    # without features group completion does not run, so the group is asked once
    assert asked == [(TARGET_CLASS, far.tolist(), False)]
    if foreign:
        assert decision.target_classes == [TARGET_CLASS]
        assert np.flatnonzero(decision.flagged).tolist() == far.tolist()
    else:
        assert decision.target_classes == [] and not decision.flagged.any()
        assert decision.evidence[TARGET_CLASS].rule == ""


def plant_label_noise(data: Synthetic, per_class: int) -> np.ndarray:
    """``per_class`` samples of every class get out-of-sample probability 0.005 for their label,
    the predicted class cycling through the other classes (so every class pair gets some)."""
    noisy = []
    for code in range(K):
        members = np.flatnonzero(data.labels == code)
        chosen = np.sort(data.rng.choice(members, per_class, replace=False))
        others = [c for c in range(K) if c != code]
        data.oos_predicted[chosen] = np.resize(others, per_class)
        data.oos_given[chosen] = 0.005
        noisy.append(chosen)
    return np.concatenate(noisy)


def test_label_noise_rule_flags_low_probability_labels_spread_over_the_pairs():
    data = Synthetic()
    noisy = plant_label_noise(data, per_class=30)  # 10 % of the data, 7 or 8 per class pair
    oos = data.oos_probabilities
    assert np.all(oos[noisy].argmax(axis=1) != data.labels[noisy])
    decision = data.decide()
    assert decision.noisy_labels
    assert decision.attack_kinds == ["label-noise"]
    assert decision.pair_median >= 7
    truth = np.zeros(data.labels.size, dtype=bool)
    truth[noisy] = True
    np.testing.assert_array_equal(decision.flagged, truth)
    assert set(decision.kind[truth]) == {"label-noise"}
    assert set(decision.kind[~truth]) == {""}
    assert np.all(decision.score[truth] >= 0.5) and np.all(decision.score[~truth] < 0.5)
    assert [e.label_flags for e in decision.evidence] == [30] * K
    assert decision.target_classes == []


def test_label_noise_alone_orders_the_scores_by_the_label_evidence():
    """A lone far sample with a likely label ranks below a doubtful label when the decision
    found label noise only; with clean labels its distance from the class core ranks it first."""

    def plant(data: Synthetic) -> tuple[int, int]:
        clean = np.flatnonzero((data.labels == 0) & (data.oos_predicted == data.labels))
        far, doubtful = int(clean[0]), int(clean[1])
        data.ratio[far] = 30.0  # far evidence 0.75
        data.oos_given[doubtful] = 0.5  # label evidence 0.5: above the bar, not flagged
        return far, doubtful

    data = Synthetic()
    plant_label_noise(data, per_class=30)
    far, doubtful = plant(data)
    decision = data.decide()
    assert decision.noisy_labels and decision.target_classes == []
    assert not decision.flagged[[far, doubtful]].any()
    assert decision.score[doubtful] > decision.score[far]

    data = Synthetic()
    far, doubtful = plant(data)
    decision = data.decide()
    assert not decision.noisy_labels and not decision.flagged.any()
    assert decision.score[far] > decision.score[doubtful]


def test_label_probabilities_order_the_scores_and_leave_the_rules_alone():
    """Texts pass heads on their words: they order the samples by label evidence in place of
    the out-of-sample heads on the features, which decide the label-noise rule as before."""
    data = Synthetic()
    plant_label_noise(data, per_class=30)
    before = data.decide()
    unflagged = np.flatnonzero(~before.flagged)
    doubted, trusted = unflagged[:2]
    data_words = Synthetic()
    data_words.oos_given[:] = 0.9
    data_words.oos_given[doubted] = 0.5  # the words doubt this label
    words = data_words.oos_probabilities
    data.ratio[:] = 1.0  # no distance evidence either way
    decision = data.decide(label_probabilities=words)
    np.testing.assert_array_equal(decision.flagged, before.flagged)
    assert decision.noisy_labels
    assert decision.score[doubted] > decision.score[trusted]
    without = data.decide()
    assert without.score[doubted] == without.score[trusted]


def test_label_probabilities_alone_order_the_scores_when_nothing_is_called():
    """With texts' word heads given, a far sample whose words agree with its label ranks below
    one whose words doubt it, the rules calling nothing: the distance ratios of a text model
    that memorised its training set are no evidence of their own there."""
    data = Synthetic()
    clean = np.flatnonzero((data.labels == 0) & (data.oos_predicted == data.labels))
    far, doubtful = int(clean[0]), int(clean[1])
    data.ratio[far] = 30.0  # far evidence 0.75
    data_words = Synthetic()
    data_words.oos_given[:] = 0.9
    data_words.oos_given[doubtful] = 0.5  # the words doubt this label: label evidence 0.5
    decision = data.decide(label_probabilities=data_words.oos_probabilities)
    assert not decision.flagged.any() and decision.target_classes == []
    assert decision.score[doubtful] > decision.score[far]
    assert data.decide().score[far] > data.decide().score[doubtful]  # the maximum without


def test_label_noise_rule_ignores_a_few_confusions_in_one_class_pair():
    data = Synthetic()
    members = np.flatnonzero(data.labels == 0)[:3]
    data.oos_predicted[members] = 1
    data.oos_given[members] = 0.005
    decision = data.decide()
    assert not decision.noisy_labels
    assert decision.pair_median == 0
    assert not decision.flagged.any()
    assert np.all(decision.kind == "")


def test_label_noise_rule_needs_enough_confusions_per_pair_and_overall():
    # One per class pair (as clean data has in its confusable pairs): 1 < 2.
    data = Synthetic()
    plant_label_noise(data, per_class=4)
    decision = data.decide()
    assert decision.pair_median == 1
    assert not decision.noisy_labels and not decision.flagged.any()
    # Two per class pair: called (2 x 20 pairs = 2.7 % of the 1,500 samples)...
    data = Synthetic()
    plant_label_noise(data, per_class=8)
    decision = data.decide()
    assert decision.pair_median == 2
    assert decision.noisy_labels and decision.flagged.sum() == 40
    # ...but not when half the pairs hold 3 and the other half 1: a majority of the pairs must
    # reach the count (the plain median, 2, would call it)
    data = Synthetic()
    for code in range(K):
        members = np.flatnonzero(data.labels == code)
        predicted = [(code + offset) % K for offset in (1, 1, 1, 2, 2, 2, 3, 4)]
        data.oos_predicted[members[: len(predicted)]] = predicted
        data.oos_given[members[: len(predicted)]] = 0.005
    decision = data.decide()
    assert decision.pair_median == 1
    assert not decision.noisy_labels and not decision.flagged.any()
    # 10 % noise, but the settings ask for an estimated rate of at least 20 %.
    data = Synthetic()
    plant_label_noise(data, per_class=30)
    decision = data.decide(settings=DecisionSettings(min_noise_rate=0.2))
    assert decision.pair_median >= 7
    assert not decision.noisy_labels and not decision.flagged.any()


def test_label_noise_rule_is_off_without_out_of_sample_probabilities():
    data = Synthetic()
    plant_label_noise(data, per_class=30)
    decision = data.decide(oos_probabilities=None)
    assert not decision.noisy_labels
    assert np.isnan(decision.pair_median)
    assert not decision.flagged.any()
    assert any("label-noise rule off" in note for note in decision.notes)


def plant_confusion(data: Synthetic, given: int, read_as: int, count: int) -> np.ndarray:
    """``count`` more samples labelled ``given`` that out-of-sample heads read as ``read_as``
    (probability 0.9 against 0.05 for the label: confidently the other class)."""
    members = np.flatnonzero((data.labels == given) & (data.oos_predicted == data.labels))
    chosen = np.sort(data.rng.choice(members, count, replace=False))
    data.oos_predicted[chosen] = read_as
    data.oos_given[chosen] = 0.05
    return chosen


def test_targeted_flip_rule_flags_a_one_sided_class_pair():
    data = Synthetic()
    # natural confusion: 6 samples each way between neighbouring classes (a ring of five pairs:
    # half the ordered pairs hold none, so the labels are not called noisy)
    for i in range(K):
        plant_confusion(data, i, (i + 1) % K, 6)
        plant_confusion(data, (i + 1) % K, i, 6)
    decision = data.decide()
    assert not decision.noisy_labels and decision.pair_median == 0
    assert not decision.flagged.any() and decision.flipped_pairs == []
    assert not any("targeted-flip" in note for note in decision.notes)
    # 60 samples of class 4 relabelled 3: class 3 holds 66 samples read as 4, class 4 holds 6
    # read as 3
    plant_confusion(data, 3, 4, 60)
    decision = data.decide()
    assert decision.attack_kinds == ["label-noise"]
    assert [(p.given, p.predicted, p.count, p.reverse) for p in decision.flipped_pairs] == [
        (3, 4, 66, 6)
    ]
    expected = (data.labels == 3) & (data.oos_predicted == 4)
    np.testing.assert_array_equal(decision.flagged, expected)
    assert set(decision.kind[expected]) == {"label-noise"}
    assert decision.evidence[3].label_flags == 66 and decision.evidence[3].flipped_from
    assert [e.label_flags for e in decision.evidence if e.code != 3] == [0] * (K - 1)
    assert np.isnan(decision.noise_rate)  # the spread rule did not fire


def test_targeted_flip_rule_is_off_without_pairs_to_compare():
    data = Synthetic()
    plant_confusion(data, 3, 1, 60)  # lopsided, but no other pair shows how lopsided is normal
    decision = data.decide()
    assert not decision.flagged.any()
    assert any("targeted-flip test off" in note for note in decision.notes)


def test_both_rules_together_flag_each_kind_once():
    data = Synthetic()
    far = data.plant_far_group(margin=5.0, diverse=True)
    noisy = plant_label_noise(data, per_class=30)
    decision = data.decide()
    assert decision.attack_kinds == ["backdoor", "label-noise"]
    assert set(decision.kind[far]) == {"backdoor"}  # a backdoor flag is not overwritten
    only_noisy = np.setdiff1d(noisy, far)
    assert set(decision.kind[only_noisy]) == {"label-noise"}
    assert decision.flagged.sum() == np.union1d(far, noisy).size


def test_decide_calibrates_and_fires_detectors_per_class():
    data = Synthetic()
    scores = data.rng.normal(size=data.labels.size) * (1 + data.labels)  # a scale per class
    scores[7] = 100.0
    decision = decide(
        data.labels,
        K,
        np.ones(K, dtype=bool),
        {"toy": scores},
        distance_ratio=data.ratio,
        margin=data.margin,
        probabilities=data.probabilities,
        oos_probabilities=data.oos_probabilities,
    )
    np.testing.assert_array_equal(
        decision.fired["toy"],
        robust_z(scores, data.labels, np.ones(scores.size, bool)) > DecisionSettings().fired_z,
    )
    assert decision.fired["toy"][7]
    assert decision.fired["toy"].mean() < 0.02


# --- robust_z -----------------------------------------------------------------------------------


def test_robust_z_is_centred_and_scaled_within_each_class():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], [301, 400, 5000])
    scale = np.array([0.01, 1.0, 50.0])[labels]
    scores = 7.0 * labels + scale * rng.normal(size=labels.size)
    z = robust_z(scores, labels, np.ones(labels.size, dtype=bool))
    for code in range(3):
        values = z[labels == code]
        assert np.median(values) == pytest.approx(0.0, abs=1e-12)
    # For a Gaussian class, 1.4826 MAD estimates the standard deviation.
    assert 0.95 < z[labels == 2].std() < 1.05
    # Invariant to an affine change of one class's scores.
    moved = scores.copy()
    moved[labels == 1] = 3.0 * moved[labels == 1] - 40.0
    np.testing.assert_allclose(robust_z(moved, labels, np.ones(labels.size, bool)), z)


def test_robust_z_gives_zero_to_unscored_classes_and_copes_with_constant_ones():
    labels = np.repeat([0, 1, 2], 20)
    rng = np.random.default_rng(1)
    scores = rng.normal(size=60)
    scores[labels == 1] = 4.0  # constant class
    scored = labels != 2
    z = robust_z(scores, labels, scored)
    assert np.all(np.isfinite(z))
    assert np.all(z[labels == 2] == 0)
    assert np.all(z[labels == 1] == 0)
    assert np.any(z[labels == 0] != 0)
    # A class where more than half the scores tie (MAD 0) still ranks its outlier on top.
    scores[labels == 1] = 0.0
    scores[np.flatnonzero(labels == 1)[0]] = 5.0
    z = robust_z(scores, labels, scored)
    assert np.all(np.isfinite(z))
    assert z[np.flatnonzero(labels == 1)[0]] > 0
    # A single scored sample cannot be calibrated: 0.
    assert robust_z(np.array([3.0, 1.0]), np.array([0, 1]), np.ones(2, bool)).tolist() == [0, 0]


def test_tail_gap_leaves_a_second_mode_of_the_class_alone():
    """Half a class in a second mode (a natural sub-type) is not a group in the class's tail:
    searched in the farthest quarter only, and over everything when asked to."""
    rng = np.random.default_rng(2)
    core = smooth_tail(rng, 2000, far_share=0.02)
    mode = np.exp(rng.normal(np.log(300.0), 0.2, size=1800))
    ratio = np.concatenate([core, mode])
    tail = tail_gap(ratio, far_ratio=10.0, core_ratio=3.0, min_group_size=5)
    assert tail.positions <= ratio.size // 4
    assert tail.p_value > 1e-4
    whole = tail_gap(ratio, far_ratio=10.0, core_ratio=3.0, min_group_size=5, tail_share=1.0)
    assert abs(whole.size - 1800) <= 5 and whole.p_value < 1e-6  # a core sample may reach it


def test_mixed_origin_test_finds_a_hard_group_below_the_far_ratio_by_its_gap():
    """Poisons of a small dataset that reach only ratios 5-9 (below ``far_ratio``) and are not
    learned more easily than the core (the 8x8 digits with a 5 % patch): the gap between them
    and the core, searched from the core out, calls the class and cuts the group exactly (the
    poisons between the gap and the far ratio are of diverse origin, as the far group is)."""
    data = Synthetic()
    members = np.flatnonzero(data.labels == TARGET_CLASS)
    group = members[:60]
    data.ratio[group] = data.rng.uniform(5.0, 9.0, size=group.size)
    data.ratio[members[60:70]] = data.rng.uniform(10.0, 12.0, size=10)  # ten farther ones
    data.margin[members[:70]] = 1.0
    others = [c for c in range(K) if c != TARGET_CLASS]
    data.runner_up[members[:70]] = np.resize(others, 70)
    decision = data.decide()
    evidence = decision.evidence[TARGET_CLASS]
    assert not evidence.easy and evidence.rule == "mixed-origin-group"
    assert decision.target_classes == [TARGET_CLASS]
    assert set(np.flatnonzero(decision.flagged)) == set(members[:70])


def test_a_gap_before_a_mode_of_the_class_calls_it_only_if_the_transplant_test_confirms():
    """The sandals beside a 0.3 % adaptive blend into the sneakers: a natural far mode of 38 %
    of the class ended at a gap of p = 7e-6 from the core, with varied runner-ups, and its
    difference moved 2 % of the probes; called by the gap alone, 5,062 clean sandals were
    flagged. Beyond the farthest quarter the gap's tail model does not hold, so the transplant
    test decides: a mode whose difference does not carry the label is left alone, one whose
    difference does (a 5 % backdoor is a third of its target) is called and cut at its gap."""
    data = Synthetic()
    members = np.flatnonzero(data.labels == TARGET_CLASS)
    mode = members[:120]  # 40 % of the class
    data.ratio[mode] = data.rng.uniform(5.0, 9.0, size=mode.size)
    data.ratio[mode[:10]] = data.rng.uniform(10.0, 12.0, size=10)  # its far end
    data.margin[mode] = 1.0
    others = [c for c in range(K) if c != TARGET_CLASS]
    data.runner_up[mode] = np.resize(others, mode.size)
    # without the transplant test the gap alone calls the mode
    assert data.decide().evidence[TARGET_CLASS].rule == "mixed-origin-group"
    asked = []

    def natural(code, group, core, probes, added=True):
        asked.append((code, group.size))
        return 0.02

    left = data.decide(transplant=natural)
    assert (TARGET_CLASS, mode.size) in asked  # the mode beyond the gap was put to the test
    assert left.target_classes == [] and not left.flagged.any()
    called = data.decide(transplant=lambda *a, **k: 1.0)
    assert called.target_classes == [TARGET_CLASS]
    assert called.evidence[TARGET_CLASS].rule == "mixed-origin-group"
    assert set(np.flatnonzero(called.flagged)) == set(mode)


def test_a_gap_among_the_class_s_own_samples_flags_no_nearer_than_the_far_group():
    """The 8x8 digits, a 5 % blend into the fours (seed 10): the class's most significant gap
    lay at ratio 2.5-3.8, inside its own samples, and the 21 clean fours beyond it (12 of them
    between it and the far ratio) were flagged with the 72 poisons. A cut at the gap here would
    flag the class's natural samples at ratios 4-8; from the far ratio out, the poisons alone."""
    data = Synthetic()
    members = np.flatnonzero(data.labels == TARGET_CLASS)
    poisons, natural = members[:60], members[60:80]
    data.ratio[members] = data.rng.uniform(0.2, 2.4, size=members.size)
    data.ratio[natural] = data.rng.uniform(4.0, 8.0, size=natural.size)
    data.ratio[poisons] = data.rng.uniform(12.0, 40.0, size=poisons.size)
    data.margin[poisons] = 1.0
    others = [c for c in range(K) if c != TARGET_CLASS]
    data.runner_up[poisons] = np.resize(others, poisons.size)
    decision = data.decide()
    evidence = decision.evidence[TARGET_CLASS]
    assert evidence.rule == "mixed-origin-group" and evidence.gap is not None
    assert evidence.gap.lower < 4.0  # the gap's group holds the natural samples too
    assert set(np.flatnonzero(decision.flagged)) == set(poisons)


def test_tail_gap_of_a_flat_tail_has_p_value_one_without_warnings():
    """Tied ratios (identical samples) leave no spacing to speak of: p = 1, no warning."""
    ratio = np.concatenate([np.full(40, 20.0), np.full(60, 1.0)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gap = tail_gap(ratio, far_ratio=10.0, core_ratio=3.0, min_group_size=5)
    assert gap is None or gap.p_value <= 1.0


def plant_mislabel_like(data: Synthetic, size: int = 12) -> np.ndarray:
    """Samples of the target class that out-of-sample heads read, with near certainty, as the
    other classes (their label at 0.001), as they read a dirty-label backdoor's poisons whose
    trigger the features do not carry, and mislabelled samples."""
    members = np.flatnonzero(data.labels == TARGET_CLASS)
    group = np.sort(data.rng.choice(members, size, replace=False))
    others = [c for c in range(K) if c != TARGET_CLASS]
    data.oos_predicted[group] = np.resize(others, size)
    data.oos_given[group] = 0.001
    return group


def test_a_group_read_as_other_classes_whose_difference_carries_the_label_is_called():
    data = Synthetic()
    group = plant_mislabel_like(data)
    asked = []

    def transplant(code, members, core, probes, added=True):
        asked.append((code, members.tolist(), added))
        return 0.8 if code == TARGET_CLASS else 0.0

    decision = data.decide(transplant=transplant)
    assert decision.target_classes == [TARGET_CLASS]
    assert np.flatnonzero(decision.flagged).tolist() == group.tolist()
    evidence = decision.evidence[TARGET_CLASS]
    assert evidence.rule == "mislabel-like-group" and evidence.cluster_size == group.size
    assert evidence.transplant_share == evidence.mislabel_like_share == 0.8
    # the group asked with its difference added too (a dirty-label trigger is a look added)
    assert (TARGET_CLASS, group.tolist(), True) in asked
    # off (the scan's tables and texts): not called
    assert not data.decide(transplant=transplant, mislabel_like=False).target_classes


def test_mislabelled_samples_whose_difference_moves_few_probes_are_not_a_backdoor():
    data = Synthetic()
    plant_mislabel_like(data)
    # other classes' looks move the probes to those classes, not to the label given
    decision = data.decide(transplant=lambda *args, **kwargs: 0.1)
    assert not decision.target_classes
    assert decision.evidence[TARGET_CLASS].mislabel_like_share == 0.1
    assert not np.any(decision.kind == "backdoor")
    # too few samples read so to form a group: not asked
    few = Synthetic()
    plant_mislabel_like(few, size=DecisionSettings().min_group_size - 1)
    decision = few.decide(transplant=lambda *args, **kwargs: 1.0)
    assert not decision.target_classes
    assert np.isnan(decision.evidence[TARGET_CLASS].mislabel_like_share)


def test_a_group_read_as_other_classes_that_holds_one_pattern_is_called():
    """A trigger the model did not learn moves no probe; what the members hold in common
    beyond their look-alikes (the common-pattern test) calls the class instead, and only the
    members that agree are flagged."""
    data = Synthetic()
    group = plant_mislabel_like(data, size=40)
    asked = []

    def common_pattern(members, sources, code, excluded):
        asked.append((members.tolist(), sources.tolist(), code))
        agreement = np.full(members.size, 3.0)
        agreement[:3] = 0.0  # natural members among them: their own detail
        return members, agreement

    decision = data.decide(transplant=lambda *a, **k: 0.1, common_pattern=common_pattern)
    assert decision.target_classes == [TARGET_CLASS]
    assert np.flatnonzero(decision.flagged).tolist() == group[3:].tolist()
    evidence = decision.evidence[TARGET_CLASS]
    assert evidence.rule == "mislabel-like-pattern" and evidence.cluster_size == group.size - 3
    assert evidence.common_pattern_share == pytest.approx(37 / 40)
    # the members asked with the classes they look like, the target only
    assert asked == [(group.tolist(), data.oos_predicted[group].tolist(), TARGET_CLASS)]


def test_a_mislabel_like_group_whose_members_do_not_agree_is_not_called():
    data = Synthetic()
    group = plant_mislabel_like(data, size=40)

    def common_pattern(members, sources, code, excluded):
        agreement = np.zeros(members.size)
        agreement[:16] = 3.0  # 40 %: natural groups reach that, not a majority beyond chance
        agreement[16:24] = -3.0  # and nearly as many point away from the others'
        return members, agreement

    decision = data.decide(transplant=lambda *a, **k: 0.1, common_pattern=common_pattern)
    assert not decision.target_classes and not decision.flagged.any()
    assert decision.evidence[TARGET_CLASS].common_pattern_share == pytest.approx(0.4)
    assert decision.evidence[TARGET_CLASS].rule == ""

    # confirmed by the transplant test, the group is the members that hold the pattern
    def confirming(code, *args, **kwargs):
        return 0.8 if code == TARGET_CLASS else 0.0

    confirmed = data.decide(transplant=confirming, common_pattern=common_pattern)
    assert confirmed.evidence[TARGET_CLASS].rule == "mislabel-like-group"
    assert np.flatnonzero(confirmed.flagged).tolist() == group[:16].tolist()
    assert confirmed.evidence[TARGET_CLASS].cluster_size == 16
    # ... unless fewer than the decision's smallest group hold it: then all of them
    few = data.decide(
        transplant=confirming,
        common_pattern=lambda members, *a: (members, 3.0 * (np.arange(members.size) < 4)),
    )
    assert np.flatnonzero(few.flagged).tolist() == group.tolist()


def test_a_diluted_group_is_called_for_its_members_far_beyond_chance_one_way():
    """A group diluted by the class's natural mislabel-like samples is no majority, but its
    members far beyond chance (corrected for the group's size) agree nearly all one way;
    natural groups lean the agreeing way a little, not that far. Only the members that agree
    are flagged."""
    data = Synthetic()
    group = plant_mislabel_like(data, size=60)

    def leaning(agreement_of_the_group):
        return data.decide(
            transplant=lambda *a, **k: 0.1,
            common_pattern=lambda members, *a: (members, agreement_of_the_group),
        )

    # 60 members: the bar is the normal quantile of 0.05 / 60 (3.14). 24 far beyond it, 2 as
    # far the other way, 6 more agreeing below it, 28 natural members near zero
    agreement = np.zeros(60)
    agreement[:24], agreement[24:26], agreement[26:32] = 5.0, -5.0, 2.0
    decision = leaning(agreement)
    assert decision.target_classes == [TARGET_CLASS]
    agreeing = group[np.flatnonzero(agreement > 1.645)]
    assert np.flatnonzero(decision.flagged).tolist() == agreeing.tolist()
    evidence = decision.evidence[TARGET_CLASS]
    assert evidence.rule == "mislabel-like-pattern" and evidence.cluster_size == 30
    assert evidence.common_pattern_share == pytest.approx(0.5)  # no majority
    assert (evidence.pattern_agreeing, evidence.pattern_disagreeing) == (24, 2)
    assert evidence.pattern_p == pytest.approx(stats.binom.sf(23, 26, 0.5))
    from poisonguard.findings import class_findings

    counts = np.bincount(data.labels, minlength=K)
    reason = class_findings(data.image_dataset(), decision, counts, np.ones(K, dtype=bool))[
        TARGET_CLASS
    ].reason
    assert "50% of them hold" in reason and "24 far beyond it" in reason
    assert "where 2 point as far away" in reason
    # the same members only up to the bar (a natural group's lean): not called
    agreement[:24] = 3.0
    lean = leaning(agreement)
    assert not lean.target_classes and not lean.flagged.any()
    assert lean.evidence[TARGET_CLASS].pattern_agreeing == 0
    # far beyond both ways as often: not called
    agreement[:24], agreement[24:44] = 5.0, -5.0
    assert not leaning(agreement).target_classes


def test_a_mislabel_like_group_is_completed_by_its_pattern_in_the_samples():
    """Poisons the group missed (read as their label, or the images' discriminant put them
    with their sources' looks) hold the group's pattern beyond their look-alikes: the pattern
    completion adds them, after the other completions, where completion runs in the samples."""
    data = Synthetic()
    group = plant_mislabel_like(data, size=40)
    members = np.flatnonzero(data.labels == TARGET_CLASS)
    missed = np.setdiff1d(members, group)[:7]
    images = np.zeros((data.labels.size, 4, 4))  # the images' discriminant adds nothing
    asked = []

    def pattern_completion(class_members, in_group, code, excluded):
        asked.append((code, class_members[in_group].tolist(), excluded.tolist()))
        return in_group | np.isin(class_members, missed)

    def agreeing(class_members, *args):
        return class_members, np.full(class_members.size, 3.0)

    decision = data.decide(
        transplant=lambda *a, **k: 0.1,
        common_pattern=agreeing,
        pattern_completion=pattern_completion,
        inputs=images,
    )
    assert np.flatnonzero(decision.flagged).tolist() == sorted([*group, *missed])
    evidence = decision.evidence[TARGET_CLASS]
    assert evidence.rule == "mislabel-like-pattern" and evidence.completed_by_pattern == 7
    from poisonguard.findings import class_findings

    counts = np.bincount(data.labels, minlength=K)
    finding = class_findings(data.image_dataset(), decision, counts, np.ones(K, dtype=bool))[
        TARGET_CLASS
    ]
    assert "7 of them joined by group completion: 7 by what they hold beyond" in finding.reason
    # asked once, for the called class, with its flagged group (no sample flagged elsewhere)
    assert asked == [(TARGET_CLASS, group.tolist(), group.tolist())]
    # without the samples (completion there off) it is not asked
    asked.clear()
    off = data.decide(
        transplant=lambda *a, **k: 0.1,
        common_pattern=agreeing,
        pattern_completion=pattern_completion,
    )
    assert not asked and off.evidence[TARGET_CLASS].completed_by_pattern == 0
    # a class whose far group of mixed origin ends at a gap is not asked: the group is apart
    far_called = Synthetic()
    far_called.plant_far_group(margin=5.0, diverse=True)
    apart = far_called.decide(pattern_completion=pattern_completion, inputs=images)
    assert apart.evidence[TARGET_CLASS].rule == "mixed-origin-group"
    assert apart.evidence[TARGET_CLASS].gap is not None and not asked
    # one with no gap before it (confirmed by the transplant test) is: its cut is the emptiest
    # point, and poisons may lie on the class's side of it
    no_gap = Synthetic()
    far = no_gap.plant_far_group(margin=5.0, diverse=True)
    no_gap.ratio[far] = np.geomspace(2.5, 200.0, far.size)  # smooth from the core out
    smooth = no_gap.decide(
        pattern_completion=pattern_completion, inputs=images, transplant=lambda *a, **k: 1.0
    )
    evidence = smooth.evidence[TARGET_CLASS]
    assert evidence.rule == "mixed-origin-group" and evidence.gap is None
    assert [code for code, *_ in asked] == [TARGET_CLASS]
    assert evidence.completed_by_pattern == 7  # the seven "missed" the callable adds


def test_members_the_pattern_completion_leaves_out_are_no_longer_flagged():
    """The pattern completion also says which of the group's members do not carry its pattern
    (natural far members a cut at the emptiest point took in): they leave the group, and the
    report says how many."""
    data = Synthetic()
    group = plant_mislabel_like(data, size=40)
    natural = group[:6]
    images = np.zeros((data.labels.size, 4, 4))

    def pattern_completion(class_members, in_group, code, excluded):
        return in_group & ~np.isin(class_members, natural)

    decision = data.decide(
        transplant=lambda *a, **k: 0.1,
        common_pattern=lambda members, *a: (members, np.full(members.size, 3.0)),
        pattern_completion=pattern_completion,
        inputs=images,
    )
    assert np.flatnonzero(decision.flagged).tolist() == group[6:].tolist()
    assert not (decision.kind[natural] == "backdoor").any()
    evidence = decision.evidence[TARGET_CLASS]
    assert evidence.left_by_pattern == 6 and evidence.completed_by_pattern == 0
    from poisonguard.findings import class_findings

    counts = np.bincount(data.labels, minlength=K)
    reason = class_findings(data.image_dataset(), decision, counts, np.ones(K, dtype=bool))[
        TARGET_CLASS
    ].reason
    assert "6 samples the tests or completion had taken in were left out" in reason
    assert "34 samples flagged" in reason


def test_the_report_says_what_the_common_pattern_test_found():
    from poisonguard.findings import class_findings, sample_reasons

    data = Synthetic()
    group = plant_mislabel_like(data, size=20)
    decision = data.decide(
        transplant=lambda *a, **k: 0.1,
        common_pattern=lambda members, *a: (members, np.full(members.size, 3.0)),
    )
    dataset = data.image_dataset()
    counts = np.bincount(data.labels, minlength=K)
    finding = class_findings(dataset, decision, counts, np.ones(K, dtype=bool))[TARGET_CLASS]
    assert finding.verdict == "backdoor-target"
    assert "common-pattern test" in finding.reason and "100%" in finding.reason
    reasons = sample_reasons(dataset, decision)
    assert all("one pattern their look-alikes do not" in reasons[i] for i in group)
    assert sum(bool(r) for r in reasons) == group.size


def test_the_report_says_what_the_mislabel_like_group_test_found():
    from poisonguard.findings import class_findings, sample_reasons

    data = Synthetic()
    group = plant_mislabel_like(data)
    decision = data.decide(transplant=lambda code, *a, **k: 0.8 if code == TARGET_CLASS else 0.0)
    dataset = data.image_dataset()
    counts = np.bincount(data.labels, minlength=K)
    finding = class_findings(dataset, decision, counts, np.ones(K, dtype=bool))[TARGET_CLASS]
    assert finding.verdict == "backdoor-target"
    assert "mislabel-like-group test" in finding.reason and "80%" in finding.reason
    reasons = sample_reasons(dataset, decision)
    assert all("read with near certainty as other classes" in reasons[i] for i in group)
    assert sum(bool(r) for r in reasons) == group.size


def test_texts_standing_apart_beside_a_trigger_are_judged_without_the_trigger_s_texts():
    # airline tweets poisoned with "cf": the 231 poisons stood apart with 36 "@united thank
    # you!" tweets, and the poisons made the whole group read as another class. The texts the
    # trigger-words test flags are its own; the rest of the group is judged alone
    data = Synthetic()
    far = data.plant_far_group(margin=5.0, diverse=False)
    by_words, rest = far[: far.size // 2], far[far.size // 2 :]
    flagged = np.zeros(data.labels.size, dtype=bool)
    flagged[by_words] = True
    word = np.array([7])
    trigger = WordSet(TARGET_CLASS, 7, word, word, by_words, tested=by_words.size, flips=5,
                      p_value=1e-9)  # fmt: skip
    test = TriggerWordTest(
        sets=[trigger], triggers=[trigger], flagged=flagged, score=flagged.astype(float),
        flip_rate=np.zeros(K), alpha=1e-3,
    )  # fmt: skip
    asked = []

    def foreign_texts(code: int, rows: np.ndarray, grown: bool = False) -> bool:
        asked.append(rows.tolist())
        return False  # the rest reads as the class's own texts

    decision = data.decide(foreign_texts=foreign_texts, trigger_words=test)
    assert asked == [rest.tolist()]
    assert decision.target_classes == [TARGET_CLASS]
    assert decision.evidence[TARGET_CLASS].rule == "trigger-words"
    assert np.flatnonzero(decision.flagged).tolist() == sorted(by_words.tolist())
