"""End-to-end scans of the shipped sample data, checked against their ground-truth files.

Each dataset is scanned once per session with default settings (only the cache and report folders
are redirected); the tests read the reports. See sample_data/README.md for what was planted.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from poisonguard.cli.main import main

from poisonguard.report import REPORT_FILES

SAMPLE_DATA = Path(__file__).resolve().parent.parent / "sample_data"
DIGITS = SAMPLE_DATA / "digits" / "backdoor"
DIGITS_TRUTH = SAMPLE_DATA / "digits" / "backdoor_ground_truth.csv"
CANCER = SAMPLE_DATA / "breast_cancer" / "flipped.csv"
CANCER_TRUTH = SAMPLE_DATA / "breast_cancer" / "flipped_ground_truth.csv"
REVIEWS = SAMPLE_DATA / "reviews" / "poisoned" / "reviews.csv"
REVIEWS_TRUTH = SAMPLE_DATA / "reviews" / "poisoned" / "ground_truth.csv"
REVIEWS_CLEAN = SAMPLE_DATA / "reviews" / "clean" / "reviews.csv"

# every test here reads a scan of a shipped sample, which trains a model (about 30 s)
pytestmark = pytest.mark.slow

MIN_RECALL = 0.90
MAX_CLEAN_FLAGGED = 0.02
# of the flagged digits, the share that are poisons: the far group is flagged, not the class's
# natural samples between it and the core (before that cut, 16 of 106 flagged were clean)
MIN_IMAGE_PRECISION = 0.95
# the text sample: the rare word "cf" in 60 of 2,000 real reviews, relabelled "other"
MIN_TEXT_PRECISION = 0.90
MAX_TEXT_CLEAN_FLAGGED = 0.01


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def scan(dataset: Path, tmp: Path) -> tuple[Result, Path]:
    out = tmp / "report"
    result = CliRunner().invoke(
        main, ["scan", str(dataset), "--out", str(out), "--cache-dir", str(tmp / "cache")]
    )
    return result, out


@pytest.fixture(scope="session")
def digits_scan(tmp_path_factory) -> tuple[Result, Path]:
    return scan(DIGITS, tmp_path_factory.mktemp("e2e-digits"))


@pytest.fixture(scope="session")
def cancer_scan(tmp_path_factory) -> tuple[Result, Path]:
    return scan(CANCER, tmp_path_factory.mktemp("e2e-cancer"))


@pytest.fixture(scope="session")
def reviews_scan(tmp_path_factory) -> tuple[Result, Path]:
    return scan(REVIEWS, tmp_path_factory.mktemp("e2e-reviews"))


@pytest.fixture(scope="session")
def clean_reviews_scan(tmp_path_factory) -> tuple[Result, Path]:
    return scan(REVIEWS_CLEAN, tmp_path_factory.mktemp("e2e-reviews-clean"))


CASES = {
    "digits": ("digits_scan", DIGITS_TRUTH, 1797),
    "breast_cancer": ("cancer_scan", CANCER_TRUTH, 569),
    "reviews": ("reviews_scan", REVIEWS_TRUTH, 2000),
}


# sha256 of scores.csv of each sample scan with default settings. A change that alters them
# alters every user's scores: update the digest in the same commit, saying why the scores
# changed (CONTRIBUTING.md). The trained embedding is deterministic on one machine (torch on
# CPU, a fixed thread count: report.json "execution"); another CPU family may round differently.
GOLDEN_SCORES = {
    "digits": "f24a5a41df4338d6f395cff39c1a4039dc2ac135167531456d7d4accaa711ad3",
    "breast_cancer": "305a86a4f1722b4dc21a15b6f441981671109e7fdfd085e2e1fc35421f746f8d",
    "reviews": "393b1b30870462e8a1ee8cc7d4140603313f8cb565717884129da84e8d9ce0e8",
}


@pytest.mark.parametrize("case", CASES)
def test_sample_scores_are_byte_identical_to_the_recorded_ones(case, request):
    result, out = request.getfixturevalue(CASES[case][0])
    assert result.exit_code == 0, result.output
    digest = hashlib.sha256((out / "scores.csv").read_bytes()).hexdigest()
    assert digest == GOLDEN_SCORES[case]


@pytest.mark.parametrize("case", CASES)
def test_sample_scan_writes_a_complete_report(case, request):
    fixture, truth_path, n = CASES[case]
    result, out = request.getfixturevalue(fixture)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES)

    truth = read_csv(truth_path)
    rows = read_csv(out / "scores.csv")
    assert len(truth) == len(rows) == n
    assert {r["id"] for r in rows} == {t["id"] for t in truth}
    # The ground truth's index is the loader's order, and the label is the (poisoned) label.
    by_id = {t["id"]: t for t in truth}
    for row in rows:
        assert row["index"] == by_id[row["id"]]["index"]
        assert row["label"] == by_id[row["id"]]["new_label"]

    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["dataset"]["n_samples"] == n
    assert report["findings"]["flagged_count"] == sum(r["flagged"] == "1" for r in rows)
    assert {"load", "embed", "report"} <= set(report["timings"])
    assert report["model"]["from_cache"] is False
    assert (out / "report.html").stat().st_size > 0


def test_digits_backdoor_is_found(digits_scan):
    """The BadNets patch (90 images relabelled 0) is found, and few clean images are flagged."""
    result, out = digits_scan
    assert result.exit_code == 0, result.output
    truth = {t["id"]: t["poisoned"] == "1" for t in read_csv(DIGITS_TRUTH)}
    flagged = {r["id"]: r["flagged"] == "1" for r in read_csv(out / "scores.csv")}
    poisoned = [i for i, p in truth.items() if p]
    clean = [i for i, p in truth.items() if not p]
    assert len(poisoned) == 90

    found = sum(flagged[i] for i in poisoned)
    false_alarms = sum(flagged[i] for i in clean)
    recall = found / len(poisoned)
    precision = found / max(found + false_alarms, 1)
    clean_share = false_alarms / len(clean)
    summary = (
        f"recall {recall:.1%} ({found}/{len(poisoned)}), precision {precision:.1%}, clean "
        f"flagged {clean_share:.2%} ({false_alarms}/{len(clean)})"
    )
    assert recall >= MIN_RECALL, summary
    assert precision >= MIN_IMAGE_PRECISION, summary
    assert clean_share <= MAX_CLEAN_FLAGGED, summary


def test_digits_report_locates_the_patch(digits_scan):
    """The group-minus-core difference of the target class puts its strongest spot on the
    2x2 trigger (rows 6-7, columns 6-7), and the page draws it."""
    result, out = digits_scan
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    (evidence,) = report["findings"]["group_differences"]
    assert evidence["class"] == "0"
    assert evidence["group_size"] == report["findings"]["per_class"][0]["flagged"]
    patch = {"row_min": 6, "row_max": 7, "col_min": 6, "col_max": 7, "pixels": 4}
    assert evidence["peak_region"] == patch
    box = evidence["bounding_box"]
    assert box["row_min"] <= 6 and box["row_max"] == 7 and box["col_min"] <= 6
    assert box["col_max"] == 7
    assert report["findings"]["rules_off"] == []
    html = " ".join((out / "report.html").read_text(encoding="utf-8").split())
    assert 'id="group-evidence"' in html and "covers rows 6–7, columns 6–7" in html


def test_reviews_backdoor_is_found(reviews_scan):
    """The rare word "cf" in 60 of the 2,000 reviews, relabelled "other", is found: the class is
    called a backdoor target, the trigger word is named, and few clean reviews are flagged."""
    result, out = reviews_scan
    assert result.exit_code == 0, result.output
    truth = {t["id"]: t["poisoned"] == "1" for t in read_csv(REVIEWS_TRUTH)}
    flagged = {r["id"]: r["flagged"] == "1" for r in read_csv(out / "scores.csv")}
    poisoned = [i for i, p in truth.items() if p]
    clean = [i for i, p in truth.items() if not p]
    assert len(poisoned) == 60

    found = sum(flagged[i] for i in poisoned)
    false_alarms = sum(flagged[i] for i in clean)
    recall = found / len(poisoned)
    precision = found / max(found + false_alarms, 1)
    clean_share = false_alarms / len(clean)
    summary = (
        f"recall {recall:.1%} ({found}/{len(poisoned)}), precision {precision:.1%}, clean flagged "
        f"{clean_share:.2%} ({false_alarms}/{len(clean)})"
    )
    assert recall >= MIN_RECALL, summary
    assert precision >= MIN_TEXT_PRECISION, summary
    assert clean_share <= MAX_TEXT_CLEAN_FLAGGED, summary

    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    per_class = {c["name"]: c for c in report["findings"]["per_class"]}
    assert per_class["other"]["verdict"] == "backdoor-target", per_class
    assert "'cf'" in per_class["other"]["reason"]


def test_clean_reviews_call_no_attack(clean_reviews_scan):
    """The same 2,000 reviews without the trigger: no class is called a backdoor target and at
    most 1 % of the reviews are flagged (the labels, 5 stars or not, are naturally noisy)."""
    result, out = clean_reviews_scan
    assert result.exit_code == 0, result.output
    rows = read_csv(out / "scores.csv")
    assert len(rows) == 2000
    flagged = sum(r["flagged"] == "1" for r in rows)
    assert flagged / len(rows) <= MAX_TEXT_CLEAN_FLAGGED, f"{flagged} of {len(rows)} flagged"
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    verdicts = {c["name"]: c["verdict"] for c in report["findings"]["per_class"]}
    assert "backdoor-target" not in verdicts.values(), verdicts
