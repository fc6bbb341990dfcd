"""Membership-inference attacks and their metrics, on synthetic populations."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from poisonguard.privacy.membership_attacks import (
    _logit_confidence,
    lira_offline_scores,
    lira_online_statistic,
    lira_statistic,
    loss_attack_scores,
)
from poisonguard.privacy.membership_metrics import membership_metrics, per_class_membership


def _probabilities_from_phi(phi: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Probabilities whose given label has logit-confidence ``phi``, the rest spread evenly."""
    given = 1.0 / (1.0 + np.exp(-phi))
    probabilities = np.repeat(((1.0 - given) / (n_classes - 1))[:, None], n_classes, axis=1)
    probabilities[np.arange(labels.size), labels] = given
    return probabilities


def _overfit_population(n: int = 4000, seed: int = 0, gap: float = 4.0):
    """Members get logit-confidence ~ N(gap, 1), non-members ~ N(0, 1)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, n)
    is_member = np.arange(n) < n // 2
    phi = rng.normal(size=n) + gap * is_member
    return _probabilities_from_phi(phi, labels, 5), labels, is_member


def _population(n: int, rng: np.random.Generator, n_classes: int, n_features: int):
    """Features whose difficulty varies per record: each record sits a random share ``a`` of the
    way from another class's centre to its own, so some records are hard for every model."""
    centres = np.random.default_rng(123).normal(size=(n_classes, n_features)) * 1.5
    labels = rng.integers(0, n_classes, n)
    other = (labels + rng.integers(1, n_classes, n)) % n_classes
    share = rng.uniform(0.0, 1.0, n)[:, None]
    features = share * centres[labels] + (1 - share) * centres[other]
    return (features + 0.5 * rng.normal(size=(n, n_features))).astype(np.float32), labels


@pytest.fixture(scope="module")
def lira_population():
    """A target that is, on every record, as confident as a head that never saw it, plus a
    boost of 1 logit on its members: the membership signal is small next to the spread of
    difficulty, which only a per-record calibration removes."""
    n_classes, n_features, n = 4, 16, 2000
    features, labels = _population(n, np.random.default_rng(1), n_classes, n_features)
    reference_x, reference_y = _population(n, np.random.default_rng(2), n_classes, n_features)
    reference = LogisticRegression(max_iter=500).fit(reference_x, reference_y)
    phi_reference = _logit_confidence(reference.predict_proba(features), labels)
    is_member = np.random.default_rng(3).random(n) < 0.5
    noise = 0.3 * np.random.default_rng(4).normal(size=n)
    phi = phi_reference + 1.0 * is_member + noise
    probabilities = _probabilities_from_phi(phi, labels, n_classes)
    return features, labels, probabilities, is_member


# --- loss attack ---------------------------------------------------------------------------


def test_loss_attack_is_minus_cross_entropy_with_clipping():
    probabilities = np.array([[0.9, 0.1], [0.25, 0.75], [1.0, 0.0]])
    scores = loss_attack_scores(probabilities, np.array([0, 0, 1]))
    np.testing.assert_allclose(scores, [np.log(0.9), np.log(0.25), np.log(1e-12)])


def test_loss_attack_rejects_mismatched_labels():
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        loss_attack_scores(np.full((2, 3), 1 / 3), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, K\) = \[0, 3\)"):
        loss_attack_scores(np.full((2, 3), 1 / 3), np.array([0, 3]))


# --- membership_metrics --------------------------------------------------------------------


def test_overfit_target_is_detected():
    probabilities, labels, is_member = _overfit_population()
    result = membership_metrics(loss_attack_scores(probabilities, labels), is_member)
    assert result["auc"] > 0.9
    assert result["advantage"] > 0.6
    at_one_percent = result["tpr_at_fpr"][0]
    assert at_one_percent["requested_fpr"] == 0.01 and at_one_percent["supported"]
    assert at_one_percent["tpr"] > 0.3
    assert result["n_members"] == 2000 and result["n_nonmembers"] == 2000
    assert set(result) == {
        "auc",
        "auc_ci",
        "advantage",
        "advantage_ci",
        "tpr_at_fpr",
        "roc",
        "n_members",
        "n_nonmembers",
    }


def test_identical_distributions_give_chance():
    rng = np.random.default_rng(5)
    scores = rng.normal(size=4000)
    is_member = rng.random(4000) < 0.5
    result = membership_metrics(scores, is_member)
    assert 0.45 <= result["auc"] <= 0.55
    assert result["advantage"] < 0.08
    low, high = result["auc_ci"]
    assert low < 0.5 < high


def test_reversed_scores_give_auc_below_half():
    probabilities, labels, is_member = _overfit_population()
    result = membership_metrics(-loss_attack_scores(probabilities, labels), is_member)
    assert result["auc"] < 0.5
    assert result["advantage"] < 0.05  # the trivial threshold only


def test_rank_auc_matches_sklearn_and_cis_hold_point_estimates():
    rng = np.random.default_rng(6)
    is_member = rng.random(3000) < 0.4
    scores = np.round(rng.normal(size=3000) + 0.8 * is_member, 1)  # many ties
    result = membership_metrics(scores, is_member, n_bootstrap=100)
    assert result["auc"] == pytest.approx(roc_auc_score(is_member, scores), abs=1e-12)
    for name in ("auc", "advantage"):
        low, high = result[f"{name}_ci"]
        assert low <= result[name] <= high and low < high
    for row in result["tpr_at_fpr"]:
        low, high = row["ci"]
        assert low <= row["tpr"] <= high and low < high


def test_tpr_at_fpr_by_hand():
    # Non-members 0..9, members 9.5, 8.5, 6.5, 5.5, 3.0.
    nonmembers = np.arange(10.0)
    members = np.array([9.5, 8.5, 6.5, 5.5, 3.0])
    scores = np.concatenate([members, nonmembers])
    is_member = np.arange(15) < 5
    result = membership_metrics(
        scores, is_member, fprs=(0.2, 0.3, 0.1), min_false_positives=2, n_bootstrap=0
    )
    rows = result["tpr_at_fpr"]
    # 2 false positives allowed: threshold = 3rd highest non-member (7); above it: 9.5, 8.5.
    assert rows[0] == {"fpr": 0.2, "tpr": 0.4, "ci": None, "requested_fpr": 0.2, "supported": True}
    # 3 allowed: threshold 6; above it 9.5, 8.5, 6.5.
    assert rows[1]["tpr"] == pytest.approx(0.6) and rows[1]["supported"]
    # 10 x 0.1 = 1 false positive < 2: reported at FPR 2 / 10 instead.
    assert rows[2] == {"fpr": 0.2, "tpr": 0.4, "ci": None, "requested_fpr": 0.1, "supported": False}
    # Best threshold 8.5: TPR 2/5, FPR 1/10 -> 0.3; threshold 5.5: TPR 4/5, FPR 4/10 -> 0.4.
    assert result["advantage"] == pytest.approx(0.4)
    # AUC: pairs member > non-member 10 + 9 + 7 + 6 + 3, plus half the tie 3.0 = 3: 35.5 / 50.
    assert result["auc"] == pytest.approx(0.71)
    assert result["auc_ci"] is None and result["advantage_ci"] is None


def test_tpr_at_fpr_counts_ties_at_the_threshold_as_not_above():
    nonmembers = np.array([0.0, 1, 2, 3, 4, 5, 6, 7, 7, 7])
    members = np.array([7.0, 7.5, 8.0])
    scores = np.concatenate([members, nonmembers])
    is_member = np.arange(13) < 3
    result = membership_metrics(scores, is_member, fprs=(0.2,), min_false_positives=1)
    # Threshold: the 3rd highest non-member, 7; no non-member is above it (0 <= 2 allowed), and
    # the member tied at 7 does not count.
    assert result["tpr_at_fpr"][0]["tpr"] == pytest.approx(2 / 3)


def test_few_nonmembers_report_the_lowest_supported_fpr():
    rng = np.random.default_rng(7)
    is_member = np.arange(600) < 400
    scores = rng.normal(size=600) + 2.0 * is_member
    result = membership_metrics(scores, is_member, fprs=(0.01, 0.001))
    for row in result["tpr_at_fpr"]:  # 200 x 0.01 = 2 < 5 false positives
        assert row["supported"] is False
        assert row["fpr"] == pytest.approx(5 / 200)
        low, high = row["ci"]
        assert 0.0 <= low <= row["tpr"] <= high <= 1.0
    assert [row["requested_fpr"] for row in result["tpr_at_fpr"]] == [0.01, 0.001]


def test_roc_is_downsampled_and_keeps_the_low_fpr_end():
    rng = np.random.default_rng(8)
    is_member = rng.random(20000) < 0.5
    scores = rng.normal(size=20000) + 0.5 * is_member
    roc = membership_metrics(scores, is_member, n_bootstrap=0)["roc"]
    fpr, tpr = np.array(roc["fpr"]), np.array(roc["tpr"])
    assert 50 < fpr.size <= 200 and fpr.size == tpr.size
    assert fpr[0] == 0.0 and fpr[-1] == 1.0 and tpr[-1] == 1.0
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.sum((fpr > 0) & (fpr <= 1e-3)) >= 5  # log spacing keeps the low end
    assert np.sum(fpr > 0.5) <= 40


def test_bootstrap_is_deterministic_under_the_seed():
    probabilities, labels, is_member = _overfit_population(gap=0.5)
    scores = loss_attack_scores(probabilities, labels)
    first = membership_metrics(scores, is_member, n_bootstrap=50, seed=3)
    assert first == membership_metrics(scores, is_member, n_bootstrap=50, seed=3)
    assert (
        first["auc_ci"] != membership_metrics(scores, is_member, n_bootstrap=50, seed=4)["auc_ci"]
    )


@pytest.mark.parametrize(
    ("scores", "is_member", "message"),
    [
        (np.zeros(4), np.zeros(4, dtype=bool), "no members among the 4 samples"),
        (np.zeros(4), np.ones(4, dtype=bool), "no non-members among the 4 samples"),
        (np.zeros(4), np.ones(3, dtype=bool), r"is_member must have shape \(4,\)"),
        (np.zeros((4, 2)), np.ones(4, dtype=bool), r"scores must have shape \(N,\)"),
        (np.array([0.0, np.nan]), np.array([True, False]), "1 NaN or infinite"),
        (np.zeros(2), np.array([0, 2]), "is_member must be boolean"),
    ],
)
def test_membership_metrics_rejects_bad_input(scores, is_member, message):
    with pytest.raises(ValueError, match=message):
        membership_metrics(scores, is_member)


def test_membership_metrics_rejects_bad_options():
    scores, is_member = np.arange(4.0), np.array([True, True, False, False])
    with pytest.raises(ValueError, match=r"fprs must lie in \(0, 1\]"):
        membership_metrics(scores, is_member, fprs=(0.0,))
    with pytest.raises(ValueError, match="min_false_positives"):
        membership_metrics(scores, is_member, min_false_positives=0)
    with pytest.raises(ValueError, match="n_bootstrap"):
        membership_metrics(scores, is_member, n_bootstrap=-1)


# --- LiRA ----------------------------------------------------------------------------------


def test_lira_beats_the_loss_attack_when_difficulty_varies(lira_population):
    features, labels, probabilities, is_member = lira_population
    lira = membership_metrics(
        lira_offline_scores(features, labels, probabilities, n_shadow=16), is_member
    )
    loss = membership_metrics(loss_attack_scores(probabilities, labels), is_member)
    # Measured: LiRA AUC 0.93, TPR at 1 % FPR 0.38; loss attack 0.75 and 0.21.
    assert lira["auc"] > 0.85
    assert lira["auc"] > loss["auc"] + 0.1
    assert lira["auc_ci"][0] > loss["auc_ci"][1]
    assert lira["tpr_at_fpr"][0]["tpr"] > loss["tpr_at_fpr"][0]["tpr"]


def test_lira_is_deterministic_under_the_seed(lira_population):
    features, labels, probabilities, _ = lira_population
    first = lira_offline_scores(features, labels, probabilities, n_shadow=4, seed=0)
    again = lira_offline_scores(features, labels, probabilities, n_shadow=4, seed=0)
    other = lira_offline_scores(features, labels, probabilities, n_shadow=4, seed=1)
    np.testing.assert_array_equal(first, again)
    assert first.shape == (labels.size,) and first.dtype == np.float64
    assert not np.allclose(first, other)


def test_lira_per_sample_variance_runs_and_agrees_roughly(lira_population):
    features, labels, probabilities, is_member = lira_population
    scores = lira_offline_scores(
        features, labels, probabilities, n_shadow=16, variance="per-sample"
    )
    assert np.isfinite(scores).all()
    assert membership_metrics(scores, is_member, n_bootstrap=0)["auc"] > 0.7


def test_lira_without_out_models_falls_back_to_the_class_mean(lira_population):
    features, labels, probabilities, _ = lira_population
    # One head on 90 % of the records: the other 10 % are its OUT records, the rest have none.
    scores = lira_offline_scores(features, labels, probabilities, n_shadow=1, fit_fraction=0.9)
    assert np.isfinite(scores).all()
    chosen = np.random.default_rng([0, 0]).permutation(labels.size)[: round(0.9 * labels.size)]
    phi = _logit_confidence(probabilities, labels)
    for code in range(4):
        rows = np.intersect1d(chosen, np.flatnonzero(labels == code))
        # Same mean and scale for the whole class: the score is an increasing affine function of
        # the target's confidence.
        slope, intercept = np.polyfit(phi[rows], scores[rows], 1)
        assert slope > 0
        np.testing.assert_allclose(scores[rows], slope * phi[rows] + intercept, atol=1e-9)


def test_lira_handles_a_class_missing_from_shadow_subsets():
    rng = np.random.default_rng(9)
    features, labels = _population(300, rng, 3, 8)
    labels[:2] = 3  # a 2-record class: most heads trained on half the data miss one of them
    probabilities = np.full((300, 4), 0.1)
    probabilities[np.arange(300), labels] = 0.7
    scores = lira_offline_scores(features, labels, probabilities, n_shadow=8)
    assert np.isfinite(scores).all()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_shadow": 0}, "n_shadow must be an integer >= 1"),
        ({"fit_fraction": 1.0}, r"fit_fraction must lie in \(0, 1\)"),
        ({"variance": "local"}, "unknown variance 'local'; valid: global, per-sample"),
    ],
)
def test_lira_rejects_bad_options(options, message):
    features = np.zeros((10, 2), dtype=np.float32)
    with pytest.raises(ValueError, match=message):
        lira_offline_scores(features, np.zeros(10, dtype=int), np.ones((10, 1)), **options)


def test_lira_rejects_mismatched_features():
    with pytest.raises(ValueError, match=r"features must have shape \(N, F\) = \(10, F\)"):
        lira_offline_scores(np.zeros((9, 2)), np.zeros(10, dtype=int), np.ones((10, 1)))


# --- per class -----------------------------------------------------------------------------


def test_per_class_flags_the_leaky_class_and_skips_tiny_ones():
    rng = np.random.default_rng(10)
    labels = np.repeat(np.arange(6), 400)
    labels[-397:] = 0  # class 5 keeps 3 records
    is_member = rng.random(labels.size) < 0.5
    shift = np.array([0.1, 0.0, 1.5, 0.2, 0.05, 0.0])  # class 2 leaks
    scores = rng.normal(size=labels.size) + shift[labels] * is_member
    names = [f"c{k}" for k in range(6)]
    rows = per_class_membership(scores, is_member, labels, names, n_bootstrap=50)
    assert [row["code"] for row in rows] == list(range(6))
    assert [row["class"] for row in rows] == names
    assert rows[5]["skipped"] and "at least 5 of each" in rows[5]["skipped"]
    assert rows[5]["auc"] is None and rows[5]["robust_z"] is None
    scored = [row for row in rows if row["skipped"] is None]
    assert len(scored) == 5
    assert max(scored, key=lambda row: row["robust_z"])["code"] == 2
    assert rows[2]["robust_z"] > 3 and rows[2]["auc"] > 0.8
    for row in scored:
        assert row["auc_ci"][0] <= row["auc"] <= row["auc_ci"][1]
        assert row["n_members"] + row["n_nonmembers"] == np.sum(labels == row["code"])


def test_per_class_rejects_labels_without_names():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\) for 2 class names"):
        per_class_membership(np.zeros(3), np.array([1, 0, 1]), np.array([0, 1, 2]), ["a", "b"])


def test_loss_attack_resolves_confident_float32_predictions():
    """p_y rounds to exactly 1 in float32; the other classes still tell the records apart."""
    probabilities = np.array(
        [[1.0, 1e-9, 1e-9], [1.0, 1e-7, 1e-7], [0.2, 0.7, 0.1]], dtype=np.float32
    )
    assert probabilities[0, 0] == probabilities[1, 0] == 1.0
    scores = loss_attack_scores(probabilities, np.array([0, 0, 1]))
    assert scores[0] > scores[1] > scores[2]
    np.testing.assert_allclose(scores[:2], [-2e-9, -2e-7], rtol=1e-3)
    np.testing.assert_allclose(scores[2], np.log(np.float32(0.7)), rtol=1e-6)


def test_online_lira_separates_members_with_in_and_out_shadows():
    """Members sit near their IN mean, non-members near their OUT mean; per-sample means vary."""
    rng = np.random.default_rng(5)
    n, k = 400, 8
    labels = rng.integers(0, 4, size=n)
    difficulty = rng.normal(0, 3, size=n)  # each record's own OUT level
    is_in = rng.random((n, k)) < 0.5
    phi = difficulty[:, None] + np.where(is_in, 2.0, 0.0) + rng.normal(0, 0.5, size=(n, k))
    member = np.arange(n) < n // 2
    target = difficulty + np.where(member, 2.0, 0.0) + rng.normal(0, 0.5, size=n)
    online = lira_online_statistic(target, phi, is_in, labels)
    offline = lira_statistic(target, np.where(is_in, np.nan, phi), labels)
    assert roc_auc_score(member, online) > 0.95
    assert roc_auc_score(member, offline) > 0.9
    # a record no shadow trained on falls back to its class's IN mean and stays finite
    is_in[0] = False
    assert np.isfinite(lira_online_statistic(target, phi, is_in, labels)).all()
    with pytest.raises(ValueError, match="is_in"):
        lira_online_statistic(target, phi, is_in[:, :3], labels)
