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
    cell_examples,
    flip_pattern,
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
    assert "What to look for: <strong>one dominant cell means a targeted flip" in section
    assert "random label noise" in section
    assert HOSTILE_CLASS not in page and html.escape(HOSTILE_CLASS) in section
    assert re.search(r'class="num heat5"', section)  # the largest off-diagonal cell
    assert "style=" not in section  # shades are CSS classes: nothing inline for the CSP
    assert "<script" not in section  # the page's one script is the flag browser's


def test_no_flags_no_section(tmp_path):
    result = make_result(tmp_path=tmp_path)
    result.flagged[:] = False
    files = write_report(result, tmp_path / "report")
    assert 'id="label-confusion"' not in files.html.read_text(encoding="utf-8")
    found = json.loads(files.json.read_text(encoding="utf-8"))["findings"]["label_confusion"]
    assert found["flagged"]["total"] == 0 and found["top_cells"] == []
    assert found["dominant_share"] is None


# --- the flip pattern in words and the examples per cell ---------------------------------------


def _matrix(cells: dict[tuple[int, int], int], n_classes: int) -> np.ndarray:
    m = np.zeros((n_classes, n_classes), int)
    for (g, p), count in cells.items():
        m[g, p] = count
    np.fill_diagonal(m, 7)  # the diagonal never counts
    return m


def test_flip_pattern_reads_the_shape_from_the_counts():
    one_pair = flip_pattern(_matrix({(3, 5): 60, (1, 2): 10, (0, 4): 10}, 10))
    assert one_pair["kind"] == "one-pair" and (one_pair["given"], one_pair["predicted"]) == (3, 5)
    assert one_pair["top_share"] == pytest.approx(0.75) and one_pair["off_diagonal"] == 80
    # A backdoor's target row: several source classes, no cell with half.
    row = flip_pattern(_matrix({(0, 1): 30, (0, 2): 30, (0, 3): 30, (4, 5): 10}, 6))
    assert row["kind"] == "one-given-label" and row["given"] == 0 and row["predicted"] is None
    assert row["label_share"] == pytest.approx(0.9) and row["label_pairs"] == 3
    column = flip_pattern(_matrix({(1, 0): 30, (2, 0): 30, (3, 0): 30, (4, 5): 10}, 6))
    assert column["kind"] == "one-predicted-label" and column["predicted"] == 0
    assert column["given"] is None and column["label_pairs"] == 3
    # Random flips over 10 classes: every pair about equally filled.
    rng = np.random.default_rng(0)
    given = rng.integers(0, 10, 3000)
    noisy = (given + rng.integers(1, 10, 3000)) % 10
    spread = flip_pattern(label_matrix(given, noisy, 10))
    assert spread["kind"] == "spread" and spread["possible_pairs"] == 90
    assert spread["top_share"] < 0.05 and spread["effective_pairs"] > 80
    assert flip_pattern(_matrix({(0, 1): 5, (1, 0): 4}, 3))["kind"] == "too-few"
    assert flip_pattern(_matrix({}, 3)) is None
    # Two classes: random noise fills both cells, so half is no dominance; 80 % is.
    assert flip_pattern(_matrix({(0, 1): 30, (1, 0): 25}, 2))["kind"] == "spread"
    assert flip_pattern(_matrix({(0, 1): 45, (1, 0): 5}, 2))["kind"] == "one-pair"


def test_report_json_pattern_names_the_classes():
    labels = np.repeat(np.arange(4), 50)
    predicted = labels.copy()
    flagged = np.zeros(200, dtype=bool)
    flagged[100:130] = True
    predicted[100:130] = 0  # given c, predicted a
    found = label_confusion(labels, predicted, flagged, ["a", "b", "c", "d"], out_of_sample=True)
    assert found["pattern"]["kind"] == "one-pair"
    assert (found["pattern"]["given"], found["pattern"]["predicted"]) == ("c", "a")
    flagged[:] = False
    none = label_confusion(labels, predicted, flagged, ["a", "b", "c", "d"], out_of_sample=True)
    assert none["pattern"] is None


def test_cell_examples_belong_to_their_cell_most_suspicious_first():
    rng = np.random.default_rng(1)
    n = 600
    labels = rng.integers(0, 5, n)
    predicted = labels.copy()
    flip = rng.random(n) < 0.4
    predicted[flip] = (labels[flip] + rng.integers(1, 5, flip.sum())) % 5
    flagged = rng.random(n) < 0.7
    score = rng.random(n)
    score[:50] = np.nan
    cells = cell_examples(labels, predicted, flagged, score, 5, cells=6, per_cell=4)
    off = label_matrix(labels, predicted, 5, flagged)
    np.fill_diagonal(off, 0)
    assert len(cells) == 6
    assert [c["count"] for c in cells] == sorted(np.sort(off.reshape(-1))[::-1][:6].tolist())[::-1]
    for cell in cells:
        g, p = cell["given"], cell["predicted"]
        assert g != p and cell["count"] == off[g, p]
        members = np.flatnonzero(flagged & (labels == g) & (predicted == p))
        assert len(cell["indices"]) == min(4, members.size)
        assert set(cell["indices"]) <= set(members.tolist())
        shown = score[cell["indices"]]
        key = np.where(np.isnan(score[members]), -np.inf, score[members])
        best = np.sort(key)[::-1][: len(shown)]
        np.testing.assert_array_equal(np.where(np.isnan(shown), -np.inf, shown), best)
    # Bounded: never more than cells x per_cell; no off-diagonal flags, no cells.
    assert sum(len(c["indices"]) for c in cells) <= 24
    assert cell_examples(labels, labels, flagged, score, 5) == []
    assert cell_examples(labels, predicted, flagged, score, 5, cells=2, per_cell=1)[1]["indices"]


def test_report_html_states_the_pattern_and_shows_examples_of_its_cells(tmp_path):
    result = make_result(tmp_path=tmp_path)
    files = write_report(result, tmp_path / "report")
    page = files.html.read_text(encoding="utf-8")
    section = re.search(r'<section id="label-confusion">(.*?)</section>', page, re.S).group(1)
    # make_result: flagged 3 and 42 (class cat, predicted the hostile class), 17 (math class,
    # predicted cat): 3 off-diagonal samples, too few to read a pattern from.
    assert 'class="pattern pattern-too-few"' in section and "Too few to tell" in section
    assert "Examples per cell" in section
    blocks = re.findall(r'<div class="cell-example">(.*?)</div>\n</div>', section, re.S)
    assert len(blocks) == 2
    first, second = blocks
    assert 'given <span class="id">cat</span>' in first
    assert html.escape(HOSTILE_CLASS) in first and first.count("<img ") == 2
    assert "sample 3," in first and "sample 42," in first and "sample 17," not in first
    assert second.count("<img ") == 1 and "sample 17," in second
    assert "style=" not in section and HOSTILE_CLASS not in page


def test_report_html_examples_of_a_table_are_ids(tmp_path):
    files = write_report(make_result(kind="table", tmp_path=tmp_path), tmp_path / "report")
    page = files.html.read_text(encoding="utf-8")
    section = re.search(r'<section id="label-confusion">(.*?)</section>', page, re.S).group(1)
    table = re.search(r'<table class="cell-ids">(.*?)</table>', section, re.S).group(1)
    assert table.count("<tr>") == 3  # header and two cells
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in table  # sample 3's id, escaped


def test_a_one_pair_flip_is_said_in_words(tmp_path):
    result = make_result(tmp_path=tmp_path)
    labels = result.dataset.labels
    result.flagged[:] = labels == 0  # 20 cat samples, all predicted as the hostile class
    files = write_report(result, tmp_path / "report")
    page = files.html.read_text(encoding="utf-8")
    pattern = re.search(
        r'<p id="flip-pattern" class="pattern pattern-one-pair">(.*?)</p>', page, re.S
    )
    assert pattern and "One pair dominates: a targeted flip." in pattern.group(1)
    assert "100.00%" in pattern.group(1)
    section = re.search(r'<section id="label-confusion">(.*?)</section>', page, re.S).group(1)
    assert section.count("<img ") == 4  # one cell, four of its 20 samples
    assert "20 flagged, 4 shown" in section
