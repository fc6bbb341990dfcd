"""Tests of the report package: scores.csv, report.json, report.html and their atomic writing."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from poisonguard.dataset import Dataset
from poisonguard.errors import OutputError
from poisonguard.report import (
    REPORT_FILES,
    ReportFiles,
    build_report_json,
    plots,
    projection,
    scores_csv_text,
    write_report,
)
from poisonguard.report.json_report import ranked_indices
from poisonguard.report.thumbnails import image_thumbnail_png
from poisonguard.results import ClassFinding, Embedding, ScanResult
from poisonguard.scan import rules_off

HOSTILE_ID = '<script>alert(1)</script>,"x'
HOSTILE_CLASS = "<img src=x onerror=alert(2)>"
MATH_CLASS = r"$\notacommand$"  # invalid mathtext: matplotlib would fail if it parsed it
CLASS_NAMES = ["cat", HOSTILE_CLASS, MATH_CLASS]
DETECTORS = ("spectral", "activation_clustering")
N = 60
FLAGGED = (3, 17, 42)


def make_result(kind: str = "image", n: int = N, tmp_path: Path | None = None) -> ScanResult:
    rng = np.random.default_rng(0)
    labels = np.arange(n, dtype=np.int64) % 3
    if kind == "image":
        x = rng.integers(0, 256, size=(n, 1, 8, 8), dtype=np.uint8)
    else:
        x = rng.normal(size=(n, 5)).astype(np.float32)
    ids = [f"img_{i:03d}.png" for i in range(n)]
    ids[FLAGGED[0]] = HOSTILE_ID
    ids[5] = "line\nbreak, and 'quotes'"
    dataset = Dataset(
        x=x,
        labels=labels,
        class_names=list(CLASS_NAMES),
        ids=ids,
        kind=kind,
        path=Path("/data/<b>toy"),
        format="npz" if kind == "image" else "csv",
        feature_names=None if kind == "image" else [f"f{i}" for i in range(5)],
        notes=["resized <nothing>"],
        skipped=[("bad<i>.png", "cannot decode")],
    )
    embedding = Embedding(
        features=rng.normal(size=(n, 16)).astype(np.float32),
        probabilities=np.full((n, 3), 1 / 3, dtype=np.float32),
        loss=rng.random((n, 4)).astype(np.float32),
        margin=rng.normal(size=(n, 4)).astype(np.float32),
        gradient_sq=rng.random((n, 4)).astype(np.float32),
        model={"source": "trained", "architecture": "tiny-cnn", "recipe": {"epochs": 4}},
        input_shape=tuple(x.shape[1:]),
        train_accuracy=0.9,
        fingerprint="ab" * 32,
        from_cache=True,
        cache_path=tmp_path,
    )
    score = rng.random(n).astype(np.float32)
    flagged = np.zeros(n, dtype=bool)
    flagged[list(FLAGGED)] = True
    score[flagged] += 2.0
    score[7] = np.nan
    detector_scores = {name: rng.normal(size=n).astype(np.float32) for name in DETECTORS}
    counts = np.bincount(labels, minlength=3)
    per_class_flagged = np.bincount(labels[flagged], minlength=3)
    findings = [
        ClassFinding(
            code=c,
            name=CLASS_NAMES[c],
            count=int(counts[c]),
            flagged=int(per_class_flagged[c]),
            verdict="backdoor-target" if c == 0 else "clean",
            reason="a tight cluster <of> flagged samples" if c == 0 else "nothing stands out",
        )
        for c in range(3)
    ]
    return ScanResult(
        dataset=dataset,
        embedding=embedding,
        detector_scores=detector_scores,
        score=score,
        flagged=flagged,
        threshold=2.0,
        class_findings=findings,
        settings={"seed": np.int64(0), "contamination": 0.05, "path": Path("/x"), "nan": np.nan},
        timings={"load": 0.12345, "embed": 1.5},
        warnings=["only 20 samples <per> class"],
        finding=np.array(["backdoor" if i in FLAGGED else "" for i in range(n)], dtype=object),
        predicted=(labels + 1) % 3,
        predicted_probability=np.full(n, 0.75),
    )


@pytest.fixture(autouse=True)
def fast_projection(monkeypatch):
    """Replace UMAP (numba compilation takes seconds) by a cheap deterministic layout."""

    def fake(features, *, seed):
        return np.asarray(features, dtype=np.float64)[:, :2].copy()

    monkeypatch.setattr(projection, "umap_coordinates", fake)


def test_writes_three_files(tmp_path):
    out = tmp_path / "report"
    files = write_report(make_result(), out)
    assert isinstance(files, ReportFiles)
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES)
    for path in (files.csv, files.json, files.html):
        assert path.parent == out and path.is_file() and path.stat().st_size > 0
    # No temporary directories left beside it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_scores_csv_rows_header_and_hostile_id(tmp_path):
    result = make_result()
    files = write_report(result, tmp_path / "r")
    text = files.csv.read_text(encoding="utf-8")
    assert text == scores_csv_text(result)
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == [
        "index",
        "id",
        "label",
        "score",
        "flagged",
        *DETECTORS,
        "finding",
        "predicted_label",
        "predicted_probability",
    ]
    body = rows[1:]
    assert len(body) == N
    assert [int(r[0]) for r in body] == list(range(N))
    assert [r[1] for r in body] == result.dataset.ids
    assert body[FLAGGED[0]][1] == HOSTILE_ID
    assert body[5][1] == "line\nbreak, and 'quotes'"
    assert body[1][2] == HOSTILE_CLASS
    assert {i for i, r in enumerate(body) if r[4] == "1"} == set(FLAGGED)
    assert {r[4] for r in body} == {"0", "1"}
    assert body[7][3] == "nan"
    assert float(body[0][3]) == pytest.approx(float(result.score[0]), rel=1e-5)
    spectral = result.detector_scores["spectral"]
    assert float(body[0][5]) == pytest.approx(float(spectral[0]), rel=1e-5)
    assert [i for i, r in enumerate(body) if r[-3] == "backdoor"] == sorted(FLAGGED)
    assert {r[-3] for r in body} == {"backdoor", ""}
    # predicted_label is the class name of (label + 1) % 3, with its probability
    assert body[1][-2] == CLASS_NAMES[2] and body[0][-2] == CLASS_NAMES[1]
    assert {r[-1] for r in body} == {"0.75"}


def test_report_json_keys_and_counts(tmp_path):
    result = make_result(tmp_path=tmp_path)
    files = write_report(result, tmp_path / "r")
    report = json.loads(files.json.read_text(encoding="utf-8"))
    assert list(report) == [
        "poisonguard_version",
        "dataset",
        "settings",
        "model",
        "findings",
        "detectors",
        "timings",
        "execution",
        "warnings",
        "versions",
        "created_utc",
    ]
    ds = report["dataset"]
    assert ds["n_samples"] == N and ds["kind"] == "image" and ds["format"] == "npz"
    assert ds["input_shape"] == [1, 8, 8]
    assert ds["classes"] == [{"code": c, "name": CLASS_NAMES[c], "count": 20} for c in range(3)]
    assert ds["skipped"] == [{"file": "bad<i>.png", "reason": "cannot decode"}]
    assert ds["fingerprint"] == "ab" * 32
    assert report["settings"] == {"seed": 0, "contamination": 0.05, "path": "/x", "nan": None}
    model = report["model"]
    assert model["architecture"] == "tiny-cnn" and model["train_accuracy"] == 0.9
    assert model["from_cache"] is True and model["cache_path"] == str(tmp_path)
    findings = report["findings"]
    assert findings["flagged_count"] == len(FLAGGED)
    assert findings["flagged_fraction"] == pytest.approx(len(FLAGGED) / N)
    assert findings["threshold"] == 2.0
    assert [c["flagged"] for c in findings["per_class"]] == [2, 0, 1]
    assert findings["per_class"][0]["verdict"] == "backdoor-target"
    top = findings["top_flagged"]
    assert sorted(t["index"] for t in top) == sorted(FLAGGED)
    assert [t["score"] for t in top] == sorted((t["score"] for t in top), reverse=True)
    assert set(top[0]) == {"index", "id", "label", "score", "evidence", "fired", *DETECTORS}
    assert HOSTILE_ID in {t["id"] for t in top}
    assert set(report["detectors"]) == set(DETECTORS)
    assert set(report["detectors"]["spectral"]) == {
        "min",
        "median",
        "max",
        "fired",
        "fired_on_flagged",
    }
    assert report["timings"]["load"] == 0.123
    assert report["timings"]["report"] >= 0 and "report" in result.timings
    assert report["warnings"] == ["only 20 samples <per> class"]
    assert {"python", "numpy", "torch", "scikit-learn", "umap-learn", "h5py"} <= set(
        report["versions"]
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", report["created_utc"])
    # Built in memory the same way, and strictly JSON (no NaN, no numpy types).
    json.dumps(build_report_json(result), allow_nan=False)


def test_html_is_escaped_and_self_contained(tmp_path):
    files = write_report(make_result(), tmp_path / "r", thumbnails=10)
    html = files.html.read_text(encoding="utf-8")
    # the only scripts: the flag browser's data (JSON, < > & escaped) and its own code
    assert html.lower().count("<script") == 2 and "<script>alert(1)" not in html
    assert '<script type="application/json" id="fb-data">' in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert HOSTILE_CLASS not in html and "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "<b>toy" not in html and "<i>.png" not in html
    assert re.search(r"https?://", html) is None
    # histogram, map, 10 thumbnails, the backdoor target's group, core and difference, and the
    # label-confusion cells' examples (the 3 flagged samples, each predicted as another class)
    assert html.count('src="data:image/png;base64,') == 2 + 10 + 3 + 3
    assert "<title>PoisonGuard report: &lt;b&gt;toy</title>" in html
    assert 'class="suspicious"' in html
    for text in ("only 20 samples &lt;per&gt; class", "resized &lt;nothing&gt;", "spectral"):
        assert text in html


def test_thumbnail_sizes_and_modes():
    gray = Image.open(io.BytesIO(image_thumbnail_png(np.zeros((1, 8, 8), dtype=np.uint8))))
    assert gray.mode == "L" and gray.size == (64, 64)
    rgb = np.random.default_rng(0).normal(size=(3, 32, 40)).astype(np.float32)
    picture = Image.open(io.BytesIO(image_thumbnail_png(rgb)))
    assert picture.mode == "RGB" and min(picture.size) >= 64 and max(picture.size) <= 128
    assert np.asarray(picture).min() == 0 and np.asarray(picture).max() == 255
    big = Image.open(io.BytesIO(image_thumbnail_png(np.zeros((3, 300, 200), dtype=np.uint8))))
    assert max(big.size) == 128


def test_table_dataset(tmp_path):
    files = write_report(make_result(kind="table"), tmp_path / "r", thumbnails=5)
    html = files.html.read_text(encoding="utf-8")
    assert html.count('src="data:image/png;base64,') == 2
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    report = json.loads(files.json.read_text(encoding="utf-8"))
    assert report["dataset"]["kind"] == "table" and report["dataset"]["input_shape"] == [5]
    assert len(files.csv.read_text(encoding="utf-8").splitlines()) == N + 1 + 1  # + id "\n"


def test_rewrite_replaces_outputs(tmp_path):
    out = tmp_path / "r"
    write_report(make_result(), out)
    (out / "scores.csv").write_text("stale", encoding="utf-8")
    result = make_result()
    result.threshold = 2.5
    write_report(result, out)
    assert (out / "scores.csv").read_text(encoding="utf-8").startswith("index,id,")
    assert json.loads((out / "report.json").read_text())["findings"]["threshold"] == 2.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_foreign_file_is_refused(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(OutputError):
        write_report(make_result(), out)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert (out / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_failure_midway_leaves_nothing(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("plot failed")

    monkeypatch.setattr(plots, "embedding_map_png", broken)
    with pytest.raises(RuntimeError, match="plot failed"):
        write_report(make_result(), tmp_path / "r")
    assert list(tmp_path.iterdir()) == []


def test_failure_midway_keeps_previous_report(tmp_path, monkeypatch):
    out = tmp_path / "r"
    write_report(make_result(), out)
    before = (out / "report.json").read_bytes()

    def broken(*args, **kwargs):
        raise RuntimeError("plot failed")

    monkeypatch.setattr(plots, "score_histogram_png", broken)
    with pytest.raises(RuntimeError):
        write_report(make_result(), out)
    assert (out / "report.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_map_subsample_keeps_flagged_and_is_deterministic():
    flagged = np.zeros(1000, dtype=bool)
    flagged[[5, 500, 999]] = True
    a = projection.map_subsample(flagged, max_points=50, seed=1)
    b = projection.map_subsample(flagged, max_points=50, seed=1)
    c = projection.map_subsample(flagged, max_points=50, seed=2)
    assert a.size == 50 and np.array_equal(a, b) and not np.array_equal(a, c)
    assert set(np.flatnonzero(flagged)) <= set(a.tolist())
    assert np.all(np.diff(a) > 0)
    # More flagged than room: a random choice of them, and a third as many others; small data:
    # everything.
    many = np.zeros(1000, dtype=bool)
    many[:100] = True
    drawn = projection.map_subsample(many, max_points=10, seed=0)
    assert many[drawn].sum() == 10 and (~many[drawn]).sum() == 3
    assert projection.map_subsample(np.ones(100, dtype=bool), max_points=10, seed=0).size == 10
    assert np.array_equal(
        projection.map_subsample(flagged[:20], max_points=50, seed=0), np.arange(20)
    )


def test_umap_coordinates_deterministic_and_tiny(monkeypatch):
    monkeypatch.undo()  # the real UMAP (this test pays its numba compilation once)
    features = np.random.default_rng(0).normal(size=(25, 6)).astype(np.float32)
    a = projection.umap_coordinates(features, seed=3)
    b = projection.umap_coordinates(features, seed=3)
    assert a.shape == (25, 2) and np.isfinite(a).all() and np.array_equal(a, b)
    tiny = projection.umap_coordinates(features[:6], seed=0)  # n_neighbors lowered to 5
    assert tiny.shape == (6, 2) and np.isfinite(tiny).all()
    for n in (0, 1, 2, 4):
        coords = projection.umap_coordinates(features[:n], seed=0)
        assert coords.shape == (n, 2) and np.isfinite(coords).all()


def test_plots_are_pngs_with_untrusted_class_names():
    rng = np.random.default_rng(0)
    score = rng.random(100)
    flagged = score > 0.9
    for png in (
        plots.score_histogram_png(score, flagged, 0.9),
        plots.score_histogram_png(np.full(3, np.nan), np.zeros(3, bool), float("nan")),
        plots.embedding_map_png(
            rng.normal(size=(100, 2)), np.arange(100) % 3, flagged, ["_hidden", MATH_CLASS, "a $ b"]
        ),
    ):
        picture = Image.open(io.BytesIO(png))
        assert picture.format == "PNG" and picture.size == (800, 500)


def test_ranked_indices_among_and_count_match_the_full_ranking():
    rng = np.random.default_rng(0)
    for _ in range(100):
        n = int(rng.integers(0, 60))
        score = np.round(rng.random(n), 1)  # many ties, broken by index
        score[rng.random(n) < 0.1] = np.nan  # ranked last
        among = rng.random(n) < 0.5
        full = ranked_indices(score).tolist()
        for count in (None, 0, 1, 3, 100):
            expected = [i for i in full if among[i]][:count]
            assert ranked_indices(score, among, count).tolist() == expected


# --- the evidence of a backdoor target (group_evidence) -----------------------------------------

PATCH = (slice(1, 4), slice(4, 7))  # rows 1-3, columns 4-6


def planted_patch_result() -> ScanResult:
    """``make_result`` on flat grey images, with a 3x3 white patch on the samples of the
    backdoor target (class 0) flagged as backdoor."""
    result = make_result()
    x = result.dataset.x
    x[:] = 40
    group = (result.dataset.labels == 0) & (result.finding == "backdoor")
    x[group, 0, PATCH[0], PATCH[1]] = 255
    return result


def test_backdoor_target_evidence_in_report_json_and_html(tmp_path):
    files = write_report(planted_patch_result(), tmp_path / "r", thumbnails=0)
    report = json.loads(files.json.read_text(encoding="utf-8"))
    (evidence,) = report["findings"]["group_differences"]
    assert evidence["class"] == "cat" and evidence["code"] == 0
    assert evidence["group_size"] == 2 and evidence["core_size"] == 18  # FLAGGED 3 and 42
    box = {"row_min": 1, "row_max": 3, "col_min": 4, "col_max": 6, "pixels": 9}
    assert evidence["bounding_box"] == box and evidence["peak_region"] == box
    assert evidence["max_abs_difference"] == 215.0
    assert evidence["difference_l2"] == pytest.approx(215.0 * 3)
    html = files.html.read_text(encoding="utf-8")
    section = html[html.index('<section id="group-evidence">') :]
    section = section[: section.index("</section>")]
    assert section.count('src="data:image/png;base64,') == 3
    assert "flagged group: mean of 2" in section and "core: mean of 18" in section
    assert "rows 1–3, columns 4–6" in section
    assert re.search(r"https?://", html) is None


def test_no_backdoor_target_no_evidence_section(tmp_path):
    result = planted_patch_result()
    for finding in result.class_findings:
        finding.verdict = "clean"
    files = write_report(result, tmp_path / "r", thumbnails=0)
    assert json.loads(files.json.read_text())["findings"]["group_differences"] == []
    html = files.html.read_text(encoding="utf-8")
    assert 'id="group-evidence"' not in html
    # the histogram and the map; the label-confusion cells' examples apart
    elsewhere = re.sub(r'<section id="label-confusion">.*?</section>', "", html, flags=re.S)
    assert elsewhere.count('src="data:image/png;base64,') == 2


def test_table_evidence_lists_the_planted_column_first(tmp_path):
    result = make_result(kind="table")
    group = (result.dataset.labels == 0) & (result.finding == "backdoor")
    result.dataset.x[group, 3] += 10.0
    files = write_report(result, tmp_path / "r", thumbnails=0)
    (evidence,) = json.loads(files.json.read_text())["findings"]["group_differences"]
    columns = evidence["top_columns"]
    assert [c["column"] for c in columns][0] == "f3" and len(columns) == 5
    assert columns[0]["standardized_difference"] > 5
    html = files.html.read_text(encoding="utf-8")
    section = html[html.index('<section id="group-evidence">') :]
    section = section[: section.index("</section>")]
    assert section.index(">f3<") < min(section.index(f">f{i}<") for i in (0, 1, 2, 4))
    assert "data:image" not in section


# --- rules that did not run ---------------------------------------------------------------------


def test_rules_off_are_in_report_json_and_the_html_summary(tmp_path):
    result = make_result()
    result.flagged[:] = False
    result.rules_off = rules_off(["spectral", "confident-learning", "activation-clustering"])
    files = write_report(result, tmp_path / "r", thumbnails=0)
    findings = json.loads(files.json.read_text())["findings"]
    assert [(r["rule"], r["detector"]) for r in findings["rules_off"]] == [("backdoor", "spectre")]
    assert "spectre" in findings["rules_off"][0]["message"]
    html = files.html.read_text(encoding="utf-8")
    summary = html[html.index('<section id="summary">') :]
    summary = summary[: summary.index("</section>")]
    assert (
        "No samples flagged — but the backdoor tests did not run (spectre not selected)." in summary
    )
    assert 'id="rules-off"' in summary and "no attack found" not in summary
    assert "nothing found by the rules that ran, but the backdoor tests did not run" in summary
    # with flags, the count stays and the rule that was off is named beside it
    result.flagged[3] = True
    result.rules_off = rules_off(["spectre", "activation-clustering"])
    html = write_report(result, tmp_path / "r2", thumbnails=0).html.read_text(encoding="utf-8")
    assert "1 of 60 samples flagged" in html and "the label-noise rule did not run" in html
    assert "confident-learning not selected" in html


def test_no_rules_off_no_alert(tmp_path):
    result = make_result()
    result.flagged[:] = False
    result.attack_kinds = []
    files = write_report(result, tmp_path / "r", thumbnails=0)
    assert json.loads(files.json.read_text())["findings"]["rules_off"] == []
    html = files.html.read_text(encoding="utf-8")
    assert 'id="rules-off"' not in html and "did not run" not in html
    assert "no attack found" in html


def test_rules_off_names_the_missing_detectors():
    assert rules_off(["spectre", "confident-learning", "activation-clustering"]) == []
    off = rules_off(["knn-labels"])
    assert [(r.rule, r.detector) for r in off] == [
        ("backdoor", "spectre"),
        ("label-noise", "confident-learning"),
        ("cluster", "activation-clustering"),
    ]
    assert off[2].summary == "the cluster tests did not run (activation-clustering not selected)"
    assert off[1].summary == "the label-noise rule did not run (confident-learning not selected)"


def test_a_rule_that_does_not_apply_to_the_data_is_not_listed_as_off():
    # the cluster tests never run on texts: leaving their detector out turns nothing off there
    off = rules_off(["spectre", "confident-learning"], exempt=("cluster",))
    assert off == []
    assert [r.rule for r in rules_off(["spectre", "confident-learning"])] == ["cluster"]
