"""The privacy checklist's items, the identifier-column check and the accuracy gap they judge."""

from __future__ import annotations

import numpy as np
import pytest

from poisonguard.privacy.checklist import (
    accuracy_gap,
    accuracy_gap_item,
    duplicates_item,
    id_columns_item,
    inversion_item,
    membership_item,
    outlier_classes_item,
    train_heldout_overlap_item,
)
from poisonguard.privacy.duplicates import NearPair
from poisonguard.privacy.id_columns import id_like_columns

# --- identifier columns ------------------------------------------------------------------------


def test_id_like_columns():
    rng = np.random.default_rng(6)
    n = 600
    columns = {
        "patient_id": rng.permutation(np.arange(1001, 1001 + n)),  # shuffled integers
        "row": np.arange(n),  # row counter
        "blood_pressure": rng.normal(120, 15, n),  # continuous, all distinct
        "children": rng.integers(0, 5, n),  # small-cardinality integer
        "recorded_at": 1.7e6 + np.cumsum(rng.uniform(0.1, 9.0, n)),  # monotone float timestamp
        "score": np.round(rng.normal(50, 10, n)),  # integer-valued, many repeats
    }
    x = np.stack(list(columns.values()), axis=1).astype(np.float32)
    found = id_like_columns(x, list(columns))
    assert [(c["column"], c["index"]) for c in found] == [
        ("patient_id", 0),
        ("row", 1),
        ("recorded_at", 4),
    ]
    reasons = {c["column"]: c["reason"] for c in found}
    assert "600 distinct values in 600 rows" in reasons["patient_id"]
    assert "strictly increasing" in reasons["row"] and "distinct" in reasons["row"]
    assert "strictly increasing" in reasons["recorded_at"]
    assert "distinct" not in reasons["recorded_at"]


def test_id_like_columns_tolerates_a_few_repeats_only_in_large_tables():
    rng = np.random.default_rng(7)
    large = rng.permutation(2000).astype(np.float32)
    large[:10] = large[10:20]  # 99.5 % distinct
    small = rng.permutation(600).astype(np.float32)
    small[0] = small[1]  # one repeat in 600 rows
    assert [c["column"] for c in id_like_columns(large[:, None], ["customer"])] == ["customer"]
    assert id_like_columns(small[:, None], ["customer"]) == []
    with pytest.raises(ValueError, match="feature names"):
        id_like_columns(small[:, None], ["a", "b"])


# --- accuracy gap and the items ---------------------------------------------------------------


def test_accuracy_gap():
    assert accuracy_gap(0.97, 0.91) == pytest.approx(0.06)
    assert accuracy_gap(0.90, 0.92) == pytest.approx(-0.02)
    with pytest.raises(ValueError, match="train_accuracy"):
        accuracy_gap(97.0, 91.0)


def _check_item(item: dict, status: str) -> None:
    assert set(item) == {"item", "status", "evidence", "details"}
    assert item["status"] == status, item["evidence"]
    assert isinstance(item["evidence"], str) and item["evidence"]


@pytest.mark.parametrize(
    ("groups", "pairs", "status"),
    [
        ([], [], "pass"),
        ([[1, 2]], [(3, 4, 0.01)], "warn"),  # 4 of 1000 samples
        ([[0, 1, 2, 3, 4]], [(5, 6, 0.0), (7, 8, 0.0)], "warn"),  # 9 of 1000: under 1 %
        ([[0, 1, 2, 3, 4]], [NearPair(5, 6, 0.0), NearPair(7, 8, 0.0), (8, 9, 0.1)], "fail"),
    ],
)
def test_duplicates_item(groups, pairs, status):
    item = duplicates_item(groups, pairs, 1000)
    _check_item(item, status)
    involved = len({i for g in groups for i in g} | {i for p in pairs for i in _ij(p)})
    assert f"{involved} of 1000 training samples" in item["evidence"]
    assert "fail at >= 1.0%" in item["evidence"]


def _ij(pair) -> tuple[int, int]:
    return (pair.i, pair.j) if isinstance(pair, NearPair) else (pair[0], pair[1])


def test_train_heldout_overlap_item():
    _check_item(train_heldout_overlap_item([], 500), "pass")
    near = train_heldout_overlap_item([NearPair(3, 7, 0.02), (4, 8, 0.03)], 500)
    _check_item(near, "warn")
    assert "0 of 500 held-out records" in near["evidence"]
    assert "2 more (0.4%) have a near copy" in near["evidence"]
    exact = train_heldout_overlap_item([NearPair(3, 7, 0.0, exact=True), (4, 8, 0.03)], 500)
    _check_item(exact, "fail")
    assert "1 of 500 held-out records (0.2%) have an exact copy" in exact["evidence"]


@pytest.mark.parametrize(
    ("gap", "status"),
    [(-0.05, "pass"), (0.0199, "pass"), (0.02, "warn"), (0.0999, "warn"), (0.10, "fail")],
)
def test_accuracy_gap_item(gap, status):
    item = accuracy_gap_item(gap)
    _check_item(item, status)
    assert f"by {100 * gap:.1f} points" in item["evidence"]
    assert "warn at >= 2" in item["evidence"] and "fail at >= 10" in item["evidence"]


def test_id_columns_item():
    image = id_columns_item(None)
    _check_item(image, "pass")
    assert image["evidence"] == "images: no columns"
    _check_item(id_columns_item([]), "pass")
    column = {"column": "patient_id", "index": 0, "reason": "integer-valued with 600 distinct"}
    failed = id_columns_item([column])
    _check_item(failed, "fail")
    assert "'patient_id'" in failed["evidence"] and "600 distinct" in failed["evidence"]


@pytest.mark.parametrize(
    ("auc", "tpr", "fpr", "status"),
    [
        (0.54, 0.029, 0.01, "pass"),
        (0.55, 0.01, 0.01, "warn"),
        (0.52, 0.03, 0.01, "warn"),
        (0.60, 0.01, 0.01, "fail"),
        (0.52, 0.10, 0.01, "fail"),
        (0.52, 0.0029, 0.001, "pass"),
        (0.52, 0.01, 0.001, "fail"),
    ],
)
def test_membership_item(auc, tpr, fpr, status):
    _check_item(membership_item(auc, 0.05, tpr, fpr), status)


def test_membership_item_evidence_states_numbers_and_thresholds():
    evidence = membership_item(0.74, 0.41, 0.12, 0.01)["evidence"]
    assert "membership AUC 0.74 (warn at >= 0.55, fail at >= 0.60)" in evidence
    assert "TPR 12.0% at 1.0% FPR (warn at >= 3.0%, fail at >= 10.0%)" in evidence
    assert "advantage 0.41" in evidence


@pytest.mark.parametrize(
    ("ratio", "accuracy", "people", "status"),
    [
        (0.49, 0.5, False, "fail"),
        (0.5, 0.5, False, "warn"),
        (0.79, 0.5, False, "warn"),
        (0.8, 0.5, False, "pass"),
        (1.02, 1.0, False, "pass"),  # recognisable class prototypes alone are not record leakage
        (1.02, 0.95, True, "warn"),  # ...unless each class is a person
        (1.02, 0.85, True, "pass"),
        (0.3, 1.0, True, "fail"),
        (None, 0.9, False, "warn"),
        (float("nan"), None, False, "warn"),
    ],
)
def test_inversion_item(ratio, accuracy, people, status):
    item = inversion_item(ratio, accuracy, classes_are_people=people)
    _check_item(item, status)
    if ratio is not None and ratio == ratio:
        assert f"median distance ratio {ratio:.2f}" in item["evidence"]
        assert "warn below 0.8, fail below 0.5" in item["evidence"]
    if accuracy is not None:
        assert f"recognises {100 * accuracy:.1f}%" in item["evidence"]


def test_outlier_classes_item():
    rows = [
        {"class": "cat", "auc": 0.81, "robust_z": 4.2},
        {"class": "dog", "auc": 0.55, "robust_z": 0.3},
        {"class": "frog", "auc": None, "robust_z": None},
        {"class": "ship", "auc": 0.70, "robust_z": 3.0},
    ]
    item = outlier_classes_item(rows)
    _check_item(item, "warn")
    assert item["details"]["classes"] == ["cat", "ship"]
    assert "2 of 3 classes" in item["evidence"]
    assert "class 'cat' (AUC 0.81, robust z 4.2)" in item["evidence"]
    assert "warn at robust z >= 3.0" in item["evidence"]
    calm = outlier_classes_item(
        [{"class": "cat", "robust_z": 2.9}, {"class": "dog", "robust_z": -1}]
    )
    _check_item(calm, "pass")
    assert "highest robust z 2.9" in calm["evidence"]
    _check_item(outlier_classes_item([]), "pass")
