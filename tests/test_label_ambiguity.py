"""How ambiguous the labels look (poisonguard.report.label_ambiguity): the share of samples a
model that never saw them predicts as another class, stated apart from the flags."""

from __future__ import annotations

import numpy as np

from poisonguard.report.label_ambiguity import CONFIDENT, label_ambiguity


def test_the_disagreement_is_counted_overall_per_class_and_at_high_confidence():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    predicted = np.array([0, 1, 1, 0, 1, 1, 0, 1, 1, -1])  # the last has no prediction
    probability = np.array([0.8, 0.95, 0.6, 0.9, 0.7, 0.99, CONFIDENT, 0.5, 0.6, np.nan])
    flagged = np.array([False, True, False, False, False, False, False, False, False, False])
    entry = label_ambiguity(
        labels, predicted, probability, flagged, ["neg", "pos"], out_of_sample=True
    )
    assert entry["samples"] == 9 and entry["disagreeing"] == 3
    assert entry["fraction"] == 3 / 9
    assert entry["confident"] == 2  # 0.95 and exactly CONFIDENT; 0.6 is borderline
    assert entry["unflagged_fraction"] == 2 / 8
    assert entry["per_class"] == [
        {"class": "neg", "samples": 4, "fraction": 0.5},
        {"class": "pos", "samples": 5, "fraction": 0.2},
    ]
    assert "33.3 %" in entry["statement"] and "'neg', 50.0 %" in entry["statement"]


def test_predictions_of_the_embedding_model_are_said_to_understate_the_ambiguity():
    labels = np.array([0, 1, 1])
    entry = label_ambiguity(
        labels, np.array([0, 1, 0]), None, np.zeros(3, bool), ["a", "b"], out_of_sample=False
    )
    assert entry["predicted_by"] == "embedding-model" and entry["confident"] == 0
    assert "understates" in entry["statement"]


def test_no_predictions_give_no_entry():
    assert (
        label_ambiguity(np.zeros(3), None, None, np.zeros(3, bool), ["a"], out_of_sample=True)
        is None
    )


def test_the_statement_says_when_the_heads_read_features_that_saw_the_labels():
    labels = np.array([0, 1, 1, 0])
    args = (labels, np.array([0, 1, 1, 1]), np.full(4, 0.95), np.zeros(4, bool), ["a", "b"])
    plain = label_ambiguity(*args, out_of_sample=True)
    saw = label_ambiguity(*args, out_of_sample=True, features_saw_labels=True)
    assert plain["statement"].startswith("A model that never saw them predicts another class")
    assert saw["features_saw_labels"] and "may have memorised" in saw["statement"]
    agreeing = label_ambiguity(
        labels, labels, None, np.zeros(4, bool), ["a", "b"], out_of_sample=True
    )
    assert (
        agreeing["statement"]
        == "A model that never saw them predicts the given class for every sample."
    )


def test_on_texts_the_statement_says_flipped_labels_can_be_missed():
    labels = np.array([0, 1, 1, 0])
    args = (labels, np.array([0, 1, 1, 1]), np.full(4, 0.95), np.zeros(4, bool), ["a", "b"])
    images = label_ambiguity(*args, out_of_sample=True)
    texts = label_ambiguity(*args, out_of_sample=True, rule_flags_disagreement=False)
    assert "flags disagreement only where it forms a pattern" in images["statement"]
    assert "can miss them" in texts["statement"] and "--trusted" in texts["statement"]
    assert "forms a pattern" not in texts["statement"] and not texts["rule_flags_disagreement"]
    assert texts["statement"].startswith(images["statement"].split(" That is")[0])
    called = label_ambiguity(*args, out_of_sample=True, rule_flags_disagreement=False, noisy=True)
    assert "can miss them" not in called["statement"]


def test_with_a_trusted_sample_the_statement_compares_the_two():
    labels = np.array([0, 1, 1, 0])
    args = (labels, np.array([0, 1, 1, 1]), np.full(4, 0.95), np.zeros(4, bool), ["a", "b"])
    floor = {
        "disagreeing": 30,
        "samples": 200,
        "trusted_disagreeing": 5,
        "trusted_samples": 100,
        "z": 2.5,
        "p_value": 0.006,
    }
    quiet = label_ambiguity(*args, out_of_sample=True, trusted_floor=floor)
    assert quiet["trusted_floor"] == floor
    assert "15.0 % of the scanned samples" in quiet["statement"]
    assert "5.0 % of the trusted ones (z 2.5)" in quiet["statement"]
    assert quiet["statement"].endswith("so it is not flagged.")
    called = label_ambiguity(*args, out_of_sample=True, trusted_floor=floor, noisy=True)
    assert "more than the corpus's own ambiguity explains" in called["statement"]
