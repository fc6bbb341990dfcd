"""Tests of the last-layer influence detectors: against hand and brute-force computations, on
planted mislabelled samples, and on degenerate inputs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from poisonguard.detectors import influence
from poisonguard.detectors.influence import tracin_self_influence
from poisonguard.detectors.streaming import influence_self_scores, trusted_influence_scores

pytestmark = pytest.mark.filterwarnings("error")


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def random_model(
    seed: int, n: int, n_features: int, n_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random features, probabilities of a random linear softmax head over them, random labels."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, n_features))
    weights = rng.normal(size=(n_features, n_classes))
    probabilities = softmax(features @ weights + rng.normal(size=n_classes))
    labels = rng.integers(0, n_classes, size=n)
    return features, probabilities, labels


def brute_force(
    features: np.ndarray, probabilities: np.ndarray, labels: np.ndarray, damping: float
) -> tuple[np.ndarray, np.ndarray]:
    """Every gradient ``(p - e_y) (x) [h, 1]`` and the damped full ``K (F + 1)`` Hessian,
    materialised with ``np.kron``."""
    n, n_classes = probabilities.shape
    augmented = np.hstack([features, np.ones((n, 1))])
    residual = probabilities - np.eye(n_classes)[labels]
    gradients = np.stack([np.kron(residual[i], augmented[i]) for i in range(n)])
    hessian = (
        sum(
            np.kron(
                np.diag(probabilities[i]) - np.outer(probabilities[i], probabilities[i]),
                np.outer(augmented[i], augmented[i]),
            )
            for i in range(n)
        )
        / n
    )
    size = hessian.shape[0]
    damped = hessian + damping * np.trace(hessian) / size * np.eye(size)
    return gradients, damped


def brute_self(features, probabilities, labels, damping=0.01):
    gradients, damped = brute_force(features, probabilities, labels, damping)
    return np.einsum("ij,ji->i", gradients, np.linalg.solve(damped, gradients.T))


def brute_trusted(
    features, probabilities, labels, t_features, t_probabilities, t_labels, damping=0.01
):
    gradients, damped = brute_force(features, probabilities, labels, damping)
    trusted, _ = brute_force(t_features, t_probabilities, t_labels, damping)
    return -gradients @ np.linalg.solve(damped, trusted.sum(axis=0))


def planted_mislabels(
    seed: int, n: int = 300, n_features: int = 5, n_flipped: int = 8
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, LogisticRegression]:
    """Two classes split by a hyperplane; ``n_flipped`` points well inside one side carry the
    other side's label. Probabilities from a logistic regression fitted to the noisy labels.

    Returns features, probabilities, labels, the flipped indices, the hyperplane's unit normal
    (the true rule) and the fitted model.
    """
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=n_features)
    direction /= np.linalg.norm(direction)
    features = rng.normal(size=(n, n_features))
    margin = features @ direction
    labels = (margin > 0).astype(int)
    flipped = rng.choice(np.flatnonzero(np.abs(margin) > 1.0), size=n_flipped, replace=False)
    labels[flipped] = 1 - labels[flipped]
    model = LogisticRegression(C=1.0).fit(features, labels)
    return features, model.predict_proba(features), labels, flipped, direction, model


# --- TracIn -------------------------------------------------------------------------------------


def test_tracin_matches_hand_computation():
    gradient_sq = np.array([[1.0, 2.0, 3.0], [0.0, 0.5, 0.0]], dtype=np.float32)
    scores = tracin_self_influence(gradient_sq)
    np.testing.assert_allclose(scores, [6.0, 0.5])
    assert scores.dtype == np.float64
    weighted = tracin_self_influence(gradient_sq, learning_rates=[0.1, 1.0, 0.01])
    np.testing.assert_allclose(weighted, [0.1 + 2.0 + 0.03, 0.5])


def test_tracin_learning_rates_weight_epochs():
    rng = np.random.default_rng(0)
    gradient_sq = rng.random((50, 4))
    rates = np.array([0.0, 0.0, 1.0, 0.0])
    np.testing.assert_allclose(tracin_self_influence(gradient_sq, rates), gradient_sq[:, 2])
    np.testing.assert_allclose(
        tracin_self_influence(gradient_sq, 3.0 * np.ones(4)),
        3.0 * tracin_self_influence(gradient_sq),
    )


@pytest.mark.parametrize(
    ("gradient_sq", "rates", "message"),
    [
        (np.ones(5), None, "shape"),
        (np.ones((5, 3, 1)), None, "shape"),
        (np.ones((5, 3)), np.ones(2), "learning_rates"),
        (np.ones((5, 3)), np.ones((3, 1)), "learning_rates"),
        (np.full((5, 3), np.nan), None, "non-finite"),
        (-np.ones((5, 3)), None, "negative"),
        (np.ones((5, 3)), -np.ones(3), "negative"),
    ],
)
def test_tracin_rejects_bad_input(gradient_sq, rates, message):
    with pytest.raises(ValueError, match=message):
        tracin_self_influence(gradient_sq, rates)


# --- influence functions against brute force ----------------------------------------------------


@pytest.mark.parametrize(("n_classes", "damping"), [(2, 0.01), (4, 0.01), (3, 0.5)])
def test_self_influence_matches_brute_force(n_classes, damping):
    features, probabilities, labels = random_model(1, 30, 3, n_classes)
    scores = influence_self_scores(features, probabilities, labels, damping=damping)
    expected = brute_self(features, probabilities, labels, damping)
    np.testing.assert_allclose(scores, expected, rtol=1e-7, atol=1e-10)
    assert scores.dtype == np.float64 and scores.shape == (30,)
    assert np.all(scores >= 0)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_trusted_influence_matches_brute_force(n_classes):
    features, probabilities, labels = random_model(2, 30, 3, n_classes)
    t_features, t_probabilities, t_labels = random_model(3, 7, 3, n_classes)
    scores = trusted_influence_scores(
        features, probabilities, labels, t_features, t_probabilities, t_labels
    )
    expected = brute_trusted(features, probabilities, labels, t_features, t_probabilities, t_labels)
    np.testing.assert_allclose(scores, expected, rtol=1e-7, atol=1e-10)


def test_blocks_do_not_change_the_result(monkeypatch):
    features, probabilities, labels = random_model(4, 50, 4, 3)
    whole_self = influence_self_scores(features, probabilities, labels)
    whole_trusted = trusted_influence_scores(
        features, probabilities, labels, features[:9], probabilities[:9], labels[:9]
    )
    monkeypatch.setattr(influence, "CHUNK_ROWS", 7)
    np.testing.assert_allclose(influence_self_scores(features, probabilities, labels), whole_self)
    np.testing.assert_allclose(
        trusted_influence_scores(
            features, probabilities, labels, features[:9], probabilities[:9], labels[:9]
        ),
        whole_trusted,
    )


def test_float32_inputs_match_float64():
    features, probabilities, labels = random_model(5, 40, 4, 3)
    scores64 = influence_self_scores(features, probabilities, labels)
    scores32 = influence_self_scores(
        features.astype(np.float32), probabilities.astype(np.float32), labels.astype(np.int32)
    )
    np.testing.assert_allclose(scores32, scores64, rtol=1e-4)


# --- planted mislabelled samples ----------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_self_influence_ranks_mislabelled_samples_first(seed):
    features, probabilities, labels, flipped, _, _ = planted_mislabels(seed)
    scores = influence_self_scores(features, probabilities, labels)
    top = np.argsort(scores)[::-1][: flipped.size]
    assert set(top) == set(flipped)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_trusted_influence_ranks_mislabelled_samples_most_harmful(seed):
    features, probabilities, labels, flipped, rule, model = planted_mislabels(seed)
    assert model.coef_[0] @ rule / np.linalg.norm(model.coef_[0]) > 0.9  # learned despite flips
    # A clean trusted set from the same distribution, labelled by the true rule.
    trusted = np.random.default_rng(100 + seed).normal(size=(200, features.shape[1]))
    trusted_labels = (trusted @ rule > 0).astype(int)
    scores = trusted_influence_scores(
        features,
        probabilities,
        labels,
        trusted,
        model.predict_proba(trusted),
        trusted_labels,
    )
    top = np.argsort(scores)[::-1][: flipped.size]
    assert set(top) == set(flipped)
    assert np.all(scores[flipped] > 0)  # harmful: up-weighting them raises the trusted loss


# --- degenerate inputs --------------------------------------------------------------------------


def degenerate_cases() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(6)
    features, probabilities, labels = random_model(7, 20, 3, 3)
    one_hot = np.eye(3)[labels]
    one_hot[:4] = np.eye(3)[(labels[:4] + 1) % 3]  # confidently wrong on four samples
    return {
        "one sample": (features[:1], probabilities[:1], labels[:1]),
        "one class": (features, np.ones((20, 1)), np.zeros(20, dtype=int)),
        "constant features": (np.full((20, 3), 2.5), probabilities, labels),
        "all-zero features": (np.zeros((20, 3)), probabilities, labels),
        "duplicated rows": (
            np.repeat(features[:2], 10, axis=0),
            np.repeat(probabilities[:2], 10, axis=0),
            np.repeat(labels[:2], 10),
        ),
        "one-hot probabilities": (features, one_hot, labels),
        "huge features": (1e6 * rng.normal(size=(20, 3)), probabilities, labels),
        "no features": (np.zeros((20, 0)), probabilities, labels),
    }


@pytest.mark.parametrize("case", list(degenerate_cases()))
def test_degenerate_inputs_give_finite_scores(case):
    features, probabilities, labels = degenerate_cases()[case]
    n = features.shape[0]
    self_scores = influence_self_scores(features, probabilities, labels)
    trusted_scores = trusted_influence_scores(
        features, probabilities, labels, features[:3], probabilities[:3], labels[:3]
    )
    for scores in (self_scores, trusted_scores):
        assert scores.shape == (n,) and scores.dtype == np.float64
        assert np.all(np.isfinite(scores))
    assert np.all(self_scores >= 0)


def test_one_class_scores_zero():
    features = np.random.default_rng(8).normal(size=(10, 4))
    scores = influence_self_scores(features, np.ones((10, 1)), np.zeros(10, dtype=int))
    np.testing.assert_array_equal(scores, np.zeros(10))


def test_one_hot_probabilities_rank_the_wrong_samples_first():
    features, probabilities, labels = degenerate_cases()["one-hot probabilities"]
    scores = influence_self_scores(features, probabilities, labels)
    assert set(np.argsort(scores)[::-1][:4]) == {0, 1, 2, 3}
    np.testing.assert_array_equal(scores[4:], 0.0)


def test_duplicated_rows_score_alike():
    features, probabilities, labels = degenerate_cases()["duplicated rows"]
    scores = influence_self_scores(features, probabilities, labels)
    np.testing.assert_allclose(scores[:10], scores[0], rtol=1e-9)


def test_empty_inputs():
    features, probabilities, labels = np.zeros((0, 3)), np.zeros((0, 2)), np.zeros(0, dtype=int)
    assert influence_self_scores(features, probabilities, labels).shape == (0,)
    one = (np.ones((1, 3)), np.array([[0.3, 0.7]]), np.array([1]))
    assert trusted_influence_scores(*one, features, probabilities, labels).shape == (1,)


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f, p, y: (f[:, 0], p, y), "features"),
        (lambda f, p, y: (f, p[:-1], y), "probabilities"),
        (lambda f, p, y: (f, p, y[:-1]), "labels"),
        (lambda f, p, y: (f, p, y + 3), r"\[0, K\)"),
        (lambda f, p, y: (f, p, y.astype(float)), "integers"),
        (lambda f, p, y: (f, np.log(p), y), "probabilities"),
        (lambda f, p, y: (f, 2 * p, y), "sum to 1"),
        (lambda f, p, y: (np.where(f > 1, np.inf, f), p, y), "non-finite"),
    ],
)
def test_influence_rejects_bad_input(change, message):
    features, probabilities, labels = change(*random_model(9, 12, 3, 3))
    with pytest.raises(ValueError, match=message):
        influence_self_scores(features, probabilities, labels)


def test_influence_rejects_bad_damping():
    features, probabilities, labels = random_model(9, 12, 3, 3)
    for damping in (0.0, -1.0, np.nan):
        with pytest.raises(ValueError, match="damping"):
            influence_self_scores(features, probabilities, labels, damping=damping)


def test_trusted_set_must_match_the_model():
    features, probabilities, labels = random_model(10, 12, 3, 3)
    with pytest.raises(ValueError, match="F = 2"):
        trusted_influence_scores(
            features, probabilities, labels, features[:, :2], probabilities, labels
        )
    with pytest.raises(ValueError, match="K = 2"):
        trusted_influence_scores(
            features,
            probabilities,
            labels,
            features,
            softmax(probabilities[:, :2]),
            np.zeros(12, dtype=int),
        )


def test_too_small_damping_is_raised_with_a_warning():
    features = np.full((20, 3), 2.5)  # every direction but the bias one is singular
    _, probabilities, labels = random_model(11, 20, 3, 3)
    with pytest.warns(RuntimeWarning, match="damping"):
        scores = influence_self_scores(features, probabilities, labels, damping=1e-30)
    assert np.all(np.isfinite(scores))
