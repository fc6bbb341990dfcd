"""The privacy page (issue 17, item 5): report.html's layout, a headline counted from the
checklist, a "What to look for" per section, untrusted text escaped."""

from __future__ import annotations

import re

import pytest
from test_report import make_result

from poisonguard.report import projection, write_report
from poisonguard.report.privacy_report import render_privacy_html

HOSTILE = "<img src=x onerror=alert(3)>"


@pytest.fixture(autouse=True)
def fast_projection(monkeypatch):
    monkeypatch.setattr(projection, "umap_coordinates", lambda f, *, seed: f[:, :2].copy())


def _item(item: str, status: str) -> dict:
    return {"item": item, "status": status, "evidence": f"evidence of {item}", "details": {}}


def privacy_report(statuses: dict[str, str], *, text: bool = False) -> dict:
    """A privacy report.json as build_privacy_json writes it, small and hand-made."""
    roc = {"fpr": [0.0, 0.5, 1.0], "tpr": [0.0, 0.6, 1.0]}
    tpr = [{"requested_fpr": 0.01, "fpr": 0.01, "tpr": 0.03, "ci": [0.01, 0.05], "supported": True}]
    attack = {"auc": 0.6, "advantage": 0.2, "tpr_at_fpr": tpr, "roc": roc}
    report = {
        "poisonguard_version": "0.1.0",
        "dataset": {
            "name": "<b>toy",
            "path": "/data/<b>toy",
            "format": "csv",
            "kind": "text" if text else "table",
            "n_samples": 100,
            "classes": [
                {"code": 0, "name": HOSTILE, "count": 50},
                {"code": 1, "name": "b", "count": 50},
            ],
        },
        "settings": {"seed": 0, "note": "<i>"},
        "model": {
            "source": "trained",
            "recipe": {"epochs": 3},
            "train_accuracy": 0.9,
            "from_cache": False,
        },
        "privacy": {
            "split": "stratified hold-out",
            "n_members": 50,
            "n_nonmembers": 50,
            "train_accuracy": 0.9,
            "heldout_accuracy": 0.8,
            "checklist": [_item(name, status) for name, status in statuses.items()],
            "membership": {
                "attack": "loss",
                "auc": 0.6,
                "auc_ci": [0.5, 0.7],
                "advantage": 0.2,
                "n_members": 50,
                "n_nonmembers": 50,
                "tpr_at_fpr": tpr,
                "attacks": {"loss": attack, "lira": attack},
                "per_class": [
                    {
                        "class": HOSTILE,
                        "auc": 0.9,
                        "advantage": 0.5,
                        "robust_z": 4.0,
                        "skipped": None,
                    },
                    {"class": "b", "auc": 0.5, "advantage": 0.0, "robust_z": -1.0, "skipped": None},
                ],
            },
            "inversion": {"per_class": [], "summary": None, "note": "not applicable <here>"},
        },
        "timings": {"train": 1.5, "membership": 0.25},
        "warnings": ["few <members>"],
        "versions": {"python": "3.11", "numpy": "2.0"},
        "created_utc": "2026-12-05T00:00:00Z",
    }
    if text:
        pairs = {"n_pairs": 1, "threshold": 0.7, "similarity": "Jaccard", "search": "exact"}
        report["privacy"]["text"] = {
            "normalisation": "case folded",
            "exact_groups": [[HOSTILE, "t2"]],
            "n_exact_groups": 1,
            "near_duplicates": {**pairs, "cross": False, "examples": []},
            "train_heldout": {
                **pairs,
                "cross": True,
                "examples": [{"id_a": HOSTILE, "id_b": "h1", "similarity": 1.0, "exact": True}],
            },
            "personal_data": {
                "n_texts": 100,
                "texts_affected": 1,
                "kinds": {
                    "phone": {
                        "occurrences": 1,
                        "texts": 1,
                        "examples": [{"index": 3, "id": HOSTILE, "masked": "***07"}],
                    }
                },
            },
        }
    return report


def _sections(page: str) -> dict[str, str]:
    return dict(re.findall(r'<section id="([a-z-]+)"[^>]*>(.*?)</section>', page, re.S))


def _headline(page: str) -> str:
    summary = _sections(page)["summary"]
    return " ".join(re.search(r'<p class="big">(.*?)</p>', summary, re.S).group(1).split())


def test_headline_counts_and_names_the_failing_and_warning_items():
    page = render_privacy_html(
        privacy_report({"dups": "fail", "gap": "warn", "ids": "pass", "mi": "fail"})
    )
    assert _headline(page) == "2 of 4 checklist items fail and 1 warn: dups, mi."
    page = render_privacy_html(privacy_report({"dups": "pass", "gap": "warn", "ids": "warn"}))
    assert _headline(page) == "No checklist item fails; 2 of 3 warn: gap, ids."
    page = render_privacy_html(privacy_report({"dups": "pass", "gap": "pass"}))
    assert _headline(page) == "All 2 checklist items pass."


def test_privacy_page_follows_the_report_layout(tmp_path):
    page = render_privacy_html(privacy_report({"dups": "fail", "gap": "pass"}, text=True))
    scan_page = write_report(make_result(tmp_path=tmp_path), tmp_path / "r").html.read_text("utf-8")
    # One stylesheet, the same header and summary structure.
    style = re.compile(r"<style>.*?</style>", re.S)
    assert style.search(page).group(0) == style.search(scan_page).group(0)
    for pattern in (
        r"<h1>PoisonGuard [a-z ]*report: &lt;b&gt;toy</h1>",
        r'<p class="sub">',
        r'<dl class="facts">',
    ):
        assert re.search(pattern, page) and re.search(pattern, scan_page)
    sections = _sections(page)
    assert list(sections)[:3] == ["summary", "warnings", "checklist"]
    assert list(sections)[-1] == "run" and "<footer>" in page
    # Every section that shows evidence says what to look for.
    for name in ("checklist", "text-checks", "membership"):
        assert "What to look for: <strong>" in sections[name], name
    # Tables carry the report's classes: numbers right-aligned, ids in the id class, a header.
    checklist = sections["checklist"]
    assert '<tr class="suspicious"><td>dups</td><td class="status-fail">fail</td>' in checklist
    assert checklist.count("<thead>") == 1
    assert '<td class="num">0.6</td>' in sections["membership"]
    assert '<tr class="suspicious"><td class="id">' in sections["membership"]  # robust z 4
    assert "style=" not in page and "<script" not in page


def test_privacy_page_escapes_untrusted_text():
    page = render_privacy_html(privacy_report({"dups": "warn"}, text=True))
    assert HOSTILE not in page and "&lt;img src=x onerror=alert(3)&gt;" in page
    for raw in ("<b>toy", "<members>", "<here>", "<i>"):
        assert raw not in page
    assert re.search(r"https?://", page) is None
