"""The words and phrases that set a flagged group of texts apart (issue 16, items 3 and 5):
poisonguard.report.text_evidence, its place in report.json and report.html, and the marked,
escaped texts on the page."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from poisonguard.dataset import Dataset
from poisonguard.report import projection, write_report
from poisonguard.report.text_evidence import (
    ALPHA,
    TermIndex,
    marked_segments,
    over_represented_terms,
)
from poisonguard.results import ClassFinding, Embedding, ScanResult

WORDS = (
    "good great tasty fresh lovely bad stale bland awful soggy the a this bag box tea coffee "
    "snack bought ordered price shipping package flavour taste it was is and with for my"
).split()
SENTENCE = "I watched this movie twice!"
HOSTILE = '"><img src=x onerror=alert(1)> <script>alert("cf")</script> <b>CF</b>'


def texts_of(n: int, seed: int) -> list[str]:
    """``n`` texts of 6-16 words drawn from :data:`WORDS` (no word is rare)."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, int(rng.integers(6, 17)))) for _ in range(n)]


def planted(n: int, count: int, insert: str, seed: int) -> tuple[list[str], np.ndarray]:
    """:func:`texts_of` with ``insert`` put at a random place of ``count`` random texts."""
    rng = np.random.default_rng(seed + 1)
    texts = texts_of(n, seed)
    group = np.zeros(n, dtype=bool)
    for i in rng.choice(n, count, replace=False):
        words = texts[i].split(" ")
        words.insert(int(rng.integers(len(words) + 1)), insert)
        texts[i] = " ".join(words)
        group[i] = True
    return texts, group


# --- the terms --------------------------------------------------------------------------------


def test_a_planted_rare_word_tops_the_list():
    texts, group = planted(2000, 40, "cf", seed=0)
    texts[7] += " Cf."  # one clean text holds it too, in another case
    evidence = over_represented_terms(texts, group)
    assert evidence["group_size"] == 40 and evidence["others_size"] == 1960
    top = evidence["terms"][0]
    assert top["term"] == "cf" and top["words"] == 1
    assert (top["group_count"], top["others_count"]) == (40, 1 - group[7])
    assert top["share_in_group"] == 1.0 and top["share_in_others"] <= 1 / 1960
    assert top["p_value"] < 1e-50 and top["log10_p_value"] < -50 and top["log_odds_ratio"] > 8
    # "cf the", "a cf" ...: runs the word explains are not listed beside it
    assert not any("cf" in t["term"].split() for t in evidence["terms"][1:])


def test_a_planted_sentence_shows_as_one_phrase():
    texts, group = planted(2000, 30, SENTENCE, seed=1)
    evidence = over_represented_terms(texts, group)
    top = evidence["terms"][0]
    assert top["term"] == "i watched this movie twice" and top["words"] == 5
    assert (top["group_count"], top["others_count"]) == (30, 0)
    # its words and shorter runs, and runs of it with the words around it, are left out
    assert [t["term"] for t in evidence["terms"]] == ["i watched this movie twice"]


def test_clean_texts_get_no_term_for_a_random_subset():
    """The adjusted p-value is calibrated: a random subset of clean texts gets a term listed in
    about ALPHA of the draws at most (Bonferroni is conservative)."""
    texts = texts_of(2000, seed=2)
    index = TermIndex(texts)
    listed = 0
    for draw, size in enumerate([10, 40, 100, 300] * 10):
        group = np.zeros(len(texts), dtype=bool)
        group[np.random.default_rng(100 + draw).choice(len(texts), size, replace=False)] = True
        evidence = over_represented_terms(index, group)
        assert evidence["tested"] > 0
        listed += bool(evidence["terms"])
        assert all(t["p_value"] <= ALPHA for t in evidence["terms"])
    assert listed <= 2, listed  # expected at most 0.4 of 40 draws


def test_terms_use_the_models_tokens_and_limit_and_are_deterministic():
    texts, group = planted(600, 20, "CF,", seed=3)
    first = over_represented_terms(texts, group)
    assert first["terms"][0]["term"] == "cf"  # lower-cased, punctuation dropped
    order = np.random.default_rng(0).permutation(len(texts))
    again = over_represented_terms([texts[i] for i in order], group[order])
    assert json.dumps(again, sort_keys=True) == json.dumps(first, sort_keys=True)
    # words after the model's limit are not read: a trigger there is not counted
    late = [t if not g else " ".join(["tea"] * 20 + [t]) for t, g in zip(texts, group, strict=True)]
    cut = over_represented_terms(TermIndex(late, max_tokens=20), group)
    assert "cf" not in [t["term"] for t in cut["terms"]]
    assert over_represented_terms(texts, np.zeros(len(texts), dtype=bool))["terms"] == []
    with pytest.raises(ValueError, match="600 texts"):
        over_represented_terms(texts, group[:10])


# --- marking the texts ------------------------------------------------------------------------


def test_marked_segments_match_words_and_phrases_whatever_the_case():
    pieces = marked_segments("I  WATCHED this\nmovie, twice; cf", ["i watched", "cf"])
    assert pieces == [("I WATCHED", True), (" this movie, twice; ", False), ("cf", True)]
    assert marked_segments("a cfx and xcf", ["cf"]) == [("a cfx and xcf", False)]
    # a long text shows the stretch around its first marked term
    long = " ".join(["word"] * 200) + " the cf trigger " + " ".join(["tail"] * 200)
    pieces = marked_segments(long, ["cf"], limit=120)
    assert pieces[0] == ("…", False) and pieces[-1] == ("…", False)
    assert ("cf", True) in pieces and sum(len(p) for p, _ in pieces) <= 125


def test_hostile_text_stays_inert_when_marked():
    pieces = marked_segments(HOSTILE, ["cf"])
    assert "".join(p for p, _ in pieces) == HOSTILE  # plain text, not escaped here
    assert [p for p, m in pieces if m] == ["cf", "CF"]


# --- report.json and report.html ----------------------------------------------------------------


@pytest.fixture
def fast_projection(monkeypatch):
    monkeypatch.setattr(
        projection, "umap_coordinates", lambda f, *, seed: np.asarray(f, float)[:, :2].copy()
    )


def text_result(texts: list[str], labels: np.ndarray, backdoor: np.ndarray) -> ScanResult:
    """A scan of ``texts`` that flags ``backdoor`` in class 1 ("neg"), a backdoor target."""
    n = len(texts)
    rng = np.random.default_rng(0)
    names = ["pos", "neg"]
    dataset = Dataset(
        x=np.array(texts, dtype=object),
        labels=labels,
        class_names=names,
        ids=[f"rev-{i:04d}" for i in range(n)],
        kind="text",
        path=Path("reviews.csv"),
        format="csv",
    )
    embedding = Embedding(
        features=rng.normal(size=(n, 4)).astype(np.float32),
        probabilities=np.full((n, 2), 0.5, dtype=np.float32),
        loss=rng.random((n, 2)).astype(np.float32),
        margin=rng.normal(size=(n, 2)).astype(np.float32),
        gradient_sq=rng.random((n, 2)).astype(np.float32),
        model={"architecture": "TextBagModel", "tokenizer": {"max_tokens": 512}},
        input_shape=(),
        train_accuracy=1.0,
        fingerprint="cd" * 32,
    )
    counts = np.bincount(labels, minlength=2)
    findings = [
        ClassFinding(
            code=c,
            name=names[c],
            count=int(counts[c]),
            flagged=int((backdoor & (labels == c)).sum()),
            verdict="backdoor-target" if c == 1 else "clean",
            reason="a group stands apart" if c == 1 else "nothing stands out",
        )
        for c in range(2)
    ]
    score = np.where(backdoor, 0.9, rng.random(n) * 0.4).astype(np.float32)
    return ScanResult(
        dataset=dataset,
        embedding=embedding,
        detector_scores={"spectre": score.copy()},
        score=score,
        flagged=backdoor.copy(),
        threshold=0.5,
        class_findings=findings,
        settings={},
        timings={},
        finding=np.where(backdoor, "backdoor", "").astype(object),
    )


def test_report_json_and_html_show_the_terms_and_mark_escaped_texts(tmp_path, fast_projection):
    texts, group = planted(400, 16, "cf", seed=4)
    labels = np.arange(400, dtype=np.int64) % 2
    labels[group] = 1
    hostile = int(np.flatnonzero(group)[0])
    texts[hostile] = HOSTILE + " " + texts[hostile]
    files = write_report(text_result(texts, labels, group), tmp_path / "r", thumbnails=20)

    report = json.loads(files.json.read_text(encoding="utf-8"))
    (evidence,) = report["findings"]["group_differences"]
    assert (evidence["class"], evidence["group_size"]) == ("neg", 16)
    terms = evidence["over_represented"]
    assert terms["others_size"] == 384 and terms["tested"] > 0
    assert terms["terms"][0]["term"] == "cf" and terms["terms"][0]["group_count"] == 16

    page = files.html.read_text(encoding="utf-8")
    section = page[page.index('<section id="group-evidence">') :]
    section = section[: section.index("</section>")]
    assert "“<mark>cf</mark>” appears in 100.00% of the flagged texts (16 of 16)" in section
    assert "0.00% of the others (0 of 384)" in section
    assert re.search(r'<td class="id">cf</td>', section)
    cards = page[page.index('<section id="top">') :]
    cards = cards[: cards.index("</section>")]
    assert cards.count('<article class="text-card flagged">') == 16
    assert cards.count("<mark>cf</mark>") >= 15
    # the hostile text: escaped, its "CF" marked inside the escaped markup, nothing live
    assert "&lt;b&gt;<mark>CF</mark>&lt;/b&gt;" in cards
    assert "&lt;script&gt;alert(&#34;<mark>cf</mark>&#34;)&lt;/script&gt;" in cards
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in cards
    assert page.count("<script") == 2  # the flag browser's data and code, nothing of the texts
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "onerror=alert(1)>" not in page
    assert re.findall(r"<mark>(.*?)</mark>", page) and all(
        "<" not in m for m in re.findall(r"<mark>(.*?)</mark>", page)
    )
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


def test_no_term_listed_for_a_group_without_a_shared_word(tmp_path, fast_projection):
    texts = texts_of(300, seed=5)
    labels = np.arange(300, dtype=np.int64) % 2
    group = np.zeros(300, dtype=bool)
    group[np.flatnonzero(labels == 1)[:12]] = True
    files = write_report(text_result(texts, labels, group), tmp_path / "r", thumbnails=5)
    (evidence,) = json.loads(files.json.read_text())["findings"]["group_differences"]
    assert evidence["over_represented"]["terms"] == []
    page = files.html.read_text(encoding="utf-8")
    assert "No word or phrase is found significantly more often in this group" in page
    cards = page[page.index('<div class="text-cards">') :]
    assert cards.count('<article class="text-card') == 5 and "<mark>" not in cards
