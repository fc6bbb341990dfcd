"""The given × predicted label table of the flagged samples (issue 17, item 1): report.json and
report.html. The small scan is tests/test_report.py's hand-built ScanResult."""

from __future__ import annotations

import html
import json
import re

import numpy as np
import pytest
from test_report import CLASS_NAMES, FLAGGED, HOSTILE_CLASS, make_result

from poisonguard.report import build_report_json, projection, write_report
from poisonguard.report.label_confusion import (
    HEAT_LEVELS,
    MAX_MATRIX_CLASSES,
    heatmap_rows,
    label_confusion,
    label_matrix,
)


@pytest.fixture(autouse=True)
def fast_projection(monkeypatch):
    monkeypatch.setattr(
        projection, "umap_coordinates", lambda f, *, seed: np.asarray(f, dtype=float)[:, :2].copy()
    )


def test_label_matrix_counts_given_by_predicted_and_skips_no_prediction():
    given = np.array([0, 0, 1, 1, 2, 2, 2])
    predicted = np.array([0, 1, 1, -1, 0, 0, 2])
    m = label_matrix(given, predicted, 3)
    np.testing.assert_array_equal(m, [[1, 1, 0], [0, 1, 0], [2, 0, 1]])
    masked = label_matrix(given, predicted, 3, mask=np.array([1, 1, 0, 0, 1, 0, 0], bool))
    np.testing.assert_array_equal(masked, [[1, 1, 0], [0, 0, 0], [1, 0, 0]])
    assert label_matrix(given[:0], predicted[:0], 3).shape == (3, 3)
    with pytest.raises(ValueError, match="class code"):
        label_matrix(np.array([3]), np.array([0]), 3)
    with pytest.raises(ValueError, match="given labels"):
        label_matrix(given, predicted[:2], 3)


def test_a_targeted_flip_is_one_dominant_cell_and_random_noise_spreads():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 50)
    predicted = labels.copy()
    flagged = np.zeros(200, dtype=bool)
    flagged[100:120] = True  # 20 samples labelled 2, predicted 0: a flip 0 -> 2
    predicted[100:120] = 0
    predicted[0] = 1  # one unflagged confusion
    names = ["a", "b", "c", "d"]
    flip = label_confusion(labels, predicted, flagged, names, out_of_sample=True)
    assert flip["predicted_by"] == "out-of-sample"
    assert flip["flagged"]["matrix"][2][0] == 20 and flip["flagged"]["off_diagonal"] == 20
    assert flip["unflagged"]["matrix"][0][1] == 1 and flip["unflagged"]["total"] == 180
    assert flip["top_cells"] == [{"given": "c", "predicted": "a", "count": 20, "share": 1.0}]
    assert flip["dominant_share"] == 1.0

    noisy = labels.copy()
    flagged = rng.random(200) < 0.3
    noisy[flagged] = (labels[flagged] + rng.integers(1, 4, flagged.sum())) % 4
    spread = label_confusion(labels, noisy, flagged, names, out_of_sample=False)
    assert spread["predicted_by"] == "embedding model"
    assert len(spread["top_cells"]) == 10 and spread["dominant_share"] < 0.25
    assert sum(c["count"] for c in spread["top_cells"]) <= spread["flagged"]["off_diagonal"]
    assert label_confusion(labels, None, flagged, names, out_of_sample=True) is None


def test_many_classes_keep_top_cells_but_not_the_full_matrix_and_the_page_shows_twenty():
    n_classes = MAX_MATRIX_CLASSES + 1
    labels = np.arange(n_classes * 2) % n_classes
    predicted = (labels + 1) % n_classes
    flagged = labels < 30
    names = [f"k{i}" for i in range(n_classes)]
    found = label_confusion(labels, predicted, flagged, names, out_of_sample=True)
    assert found["flagged"]["matrix"] is None and found["unflagged"]["matrix"] is None
    assert found["flagged"]["off_diagonal"] == 60 and len(found["top_cells"]) == 10
    table = heatmap_rows(labels, predicted, flagged, names, max_classes=20)
    assert len(table["names"]) == 20 and table["hidden"] == n_classes - 20
    assert all(len(row["cells"]) == 20 for row in table["flagged"])


def test_heatmap_levels_scale_with_the_largest_off_diagonal_cell():
    labels = np.array([0] * 10 + [1] * 3 + [2] * 5)
    predicted = np.array([1] * 10 + [0] * 3 + [2] * 5)
    table = heatmap_rows(labels, predicted, np.ones(18, bool), ["a", "b", "c"])
    cells = table["flagged"]
    assert cells[0]["cells"][1] == {"count": 10, "level": HEAT_LEVELS, "diagonal": False}
    assert cells[1]["cells"][0]["level"] == 2  # 3 of 10 -> ceil(1.5)
    assert cells[2]["cells"][2] == {"count": 5, "level": 0, "diagonal": True}
    assert table["unflagged"][0]["cells"][1]["count"] == 0


def test_report_json_holds_both_matrices(tmp_path):
    result = make_result(tmp_path=tmp_path)
    found = build_report_json(result)["findings"]["label_confusion"]
    labels = np.arange(60) % 3
    predicted = (labels + 1) % 3  # make_result predicts the next class for every sample
    expected = np.zeros((3, 3), int)
    for i in FLAGGED:
        expected[labels[i], predicted[i]] += 1
    assert found["classes"] == CLASS_NAMES
    assert found["flagged"]["matrix"] == expected.tolist()
    assert found["flagged"]["total"] == len(FLAGGED)
    assert found["unflagged"]["total"] == 60 - len(FLAGGED)
    assert sum(map(sum, found["unflagged"]["matrix"])) == 60 - len(FLAGGED)
    assert found["predicted_by"] == "embedding model"  # no confident-learning scores here
    json.dumps(found, allow_nan=False)


def test_report_html_has_the_escaped_table_and_its_caption(tmp_path):
    files = write_report(make_result(tmp_path=tmp_path), tmp_path / "report")
    page = files.html.read_text(encoding="utf-8")
    match = re.search(r'<section id="label-confusion">(.*?)</section>', page, re.S)
    assert match, "no label-confusion section"
    section = match.group(1)
    assert section.count('<table class="confusion">') == 2
    assert "One dominant cell means a targeted flip" in section
    assert "random label noise" in section
    assert HOSTILE_CLASS not in page and html.escape(HOSTILE_CLASS) in section
    assert re.search(r'class="num heat5"', section)  # the largest off-diagonal cell
    assert "style=" not in section  # shades are CSS classes: nothing inline for the CSP
    assert "<script" not in page


def test_no_flags_no_section(tmp_path):
    result = make_result(tmp_path=tmp_path)
    result.flagged[:] = False
    files = write_report(result, tmp_path / "report")
    assert 'id="label-confusion"' not in files.html.read_text(encoding="utf-8")
    found = json.loads(files.json.read_text(encoding="utf-8"))["findings"]["label_confusion"]
    assert found["flagged"]["total"] == 0 and found["top_cells"] == []
    assert found["dominant_share"] is None
