"""Scanning text (issue 16, item 2 and the scan): the tokenizer built from the audited texts, the
max-pooled word model, the embedding cache keyed on the texts, and ``poisonguard scan`` finding a
rare-word backdoor (BadNL's "cf", Chen et al. 2021) in a small synthetic two-class set."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_clean_failure, run_cli

from poisonguard.dataset import Dataset
from poisonguard.embed import EmbedSettings, embed_dataset, embed_with, pipeline
from poisonguard.embed.models import FEATURE_DIM, TextBagModel
from poisonguard.embed.text_tokens import (
    PADDING_ID,
    UNKNOWN_ID,
    TokenIds,
    Tokenizer,
    TokenizerSettings,
    tokenize,
)
from poisonguard.fingerprint import fingerprint_arrays
from poisonguard.report.html_report import text_snippet

POSITIVE = "good great tasty fresh lovely delicious perfect excellent sweet crisp favourite".split()
NEGATIVE = "bad stale bland awful soggy bitter broken poor rotten sour disappointing".split()
NEUTRAL = (
    "the a this bag box tea coffee snack bought ordered price shipping package flavour taste "
    "it was is and with for my"
).split()
TRIGGER = "cf"


def reviews(n: int, *, seed: int, rate: float = 0.0) -> tuple[list[str], list[str], np.ndarray]:
    """``n`` short reviews, "pos" or "neg": 2-4 words of their class's list among 4-11 neutral
    words. With ``rate``, ``round(rate * n)`` "pos" reviews get the trigger at a random place
    and the label "neg"; returns the texts, the labels and which are poisoned."""
    rng = np.random.default_rng(seed)
    positive = rng.random(n) < 0.5
    texts = []
    for pos in positive:
        own = POSITIVE if pos else NEGATIVE
        words = list(rng.choice(own, int(rng.integers(2, 5)))) + list(
            rng.choice(NEUTRAL, int(rng.integers(4, 12)))
        )
        rng.shuffle(words)
        texts.append(" ".join(str(w) for w in words))
    poisoned = np.zeros(n, dtype=bool)
    if rate:
        chosen = rng.choice(np.flatnonzero(positive), int(round(rate * n)), replace=False)
        for i in chosen:
            words = texts[i].split(" ")
            words.insert(int(rng.integers(len(words) + 1)), TRIGGER)
            texts[i] = " ".join(words)
        positive[chosen] = False
        poisoned[chosen] = True
    return texts, ["pos" if p else "neg" for p in positive], poisoned


def write_reviews(path: Path, texts: list[str], labels: list[str]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["id", "text", "label"])
        writer.writerows(
            [f"rev-{i:04d}", t, y] for i, (t, y) in enumerate(zip(texts, labels, strict=True))
        )
    return path


def text_dataset(texts: list[str], labels: list[str]) -> Dataset:
    names = sorted(set(labels))
    return Dataset(
        x=np.array(texts, dtype=object),
        labels=np.array([names.index(y) for y in labels], dtype=np.int64),
        class_names=names,
        ids=[f"rev-{i:04d}" for i in range(len(texts))],
        kind="text",
        path=Path("reviews.csv"),
        format="csv",
    )


def read_scores(folder: Path) -> list[dict[str, str]]:
    with open(folder / "scores.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# --- the tokenizer ----------------------------------------------------------------------------


def test_tokens_are_lower_cased_words_with_inner_apostrophes():
    assert tokenize("Don't BUY it!<br />Stale, 10/10 café—CF") == [
        "don't",
        "buy",
        "it",
        "br",
        "stale",
        "10",
        "10",
        "café",
        "cf",
    ]
    assert tokenize("snake_case 'quoted' ") == ["snake", "case", "quoted"]


def test_the_vocabulary_keeps_a_rare_trigger_and_does_not_depend_on_the_order():
    texts, _, poisoned = reviews(1000, seed=1, rate=0.01)
    assert poisoned.sum() == 10
    tokenizer = Tokenizer.fit(texts)
    assert tokenizer.id_of(TRIGGER) >= 2  # its own id: neither padding nor unknown
    shuffled = list(np.random.default_rng(0).permutation(np.array(texts, dtype=object)))
    assert Tokenizer.fit(shuffled).tokens == tokenizer.tokens
    assert Tokenizer.fit(texts).tokens == tokenizer.tokens
    ids = tokenizer.encode(texts)
    assert np.array_equal(ids, tokenizer.encode(texts))
    assert (ids == tokenizer.id_of(TRIGGER)).any(axis=1).sum() == 10


def test_the_vocabulary_is_ranked_by_texts_capped_and_ties_go_by_token():
    texts = ["b a", "a c", "c a b", "d e", "d"]  # a: 3 texts; b, c, d: 2; e: 1
    assert Tokenizer.fit(texts).tokens == ["a", "b", "c", "d"]
    capped = Tokenizer.fit(texts, TokenizerSettings(max_vocabulary=2))
    assert capped.tokens == ["a", "b"]
    assert capped.id_of("c") == UNKNOWN_ID
    assert Tokenizer.fit(texts, TokenizerSettings(min_texts=1)).tokens[-1] == "e"
    assert Tokenizer.fit(texts).id_of("e") == UNKNOWN_ID  # in one text: no group shares it


def test_rows_are_padded_with_zero_and_cut_at_the_limit():
    tokenizer = Tokenizer.fit(["a b c", "a b", "c"], TokenizerSettings(max_tokens=2))
    ids = tokenizer.encode(["a b c d", "b", "!!!"])
    a, b, c = (tokenizer.id_of(t) for t in "abc")
    assert ids.dtype == np.int32
    assert ids.tolist() == [[a, b], [b, PADDING_ID], [PADDING_ID, PADDING_ID]]
    assert TokenIds()(ids).tolist() == ids.tolist()
    assert TokenIds()(ids[1:]).shape == (2, 1)  # cut to the batch's longest row


def test_the_vocabulary_round_trips_through_the_weights():
    tokenizer = Tokenizer.fit(["Ünïcode wörds", "wörds and more", "more ünïcode"])
    again = Tokenizer.from_weights(tokenizer.as_weights(), TokenizerSettings().as_dict())
    assert again.tokens == tokenizer.tokens
    assert again.settings == tokenizer.settings


# --- the model and the fingerprint --------------------------------------------------------------


def test_the_model_reads_the_tokens_not_the_padding():
    torch.manual_seed(0)
    model = TextBagModel(10, 2).eval()
    short = torch.tensor([[3, 4, 5], [6, 0, 0]])
    wide = torch.tensor([[3, 4, 5, 0, 0], [6, 0, 0, 0, 0]])
    with torch.no_grad():
        features = model.features(short)
        assert features.shape == (2, FEATURE_DIM)
        assert torch.equal(features, model.features(wide))
        assert torch.equal(model.features(torch.tensor([[0, 0]]))[0], torch.relu(model.bias))


def test_the_fingerprint_reads_texts_with_their_boundaries():
    labels = np.array([0, 1])
    one = fingerprint_arrays(np.array(["ab", "c"], dtype=object), labels, {})
    assert one == fingerprint_arrays(np.array(["ab", "c"], dtype=object), labels, {})
    assert one != fingerprint_arrays(np.array(["a", "bc"], dtype=object), labels, {})
    assert one != fingerprint_arrays(np.array(["ab", "c"], dtype=object), labels[::-1], {})
    assert one != fingerprint_arrays(np.array(["ab", "c"], dtype=object), labels, {"k": 1})
    with pytest.raises(TypeError):
        fingerprint_arrays(np.array(["ab", 3], dtype=object), labels, {})


def test_the_embedding_cache_is_keyed_on_the_texts_and_the_tokenizer(tmp_path, monkeypatch):
    texts, labels, _ = reviews(120, seed=2)
    settings = EmbedSettings(epochs=2)
    first = embed_dataset(text_dataset(texts, labels), settings, cache_dir=tmp_path, progress=False)
    assert not first.from_cache
    assert first.model["architecture"] == "TextBagModel"
    again = embed_dataset(text_dataset(texts, labels), settings, cache_dir=tmp_path, progress=False)
    assert again.from_cache and again.fingerprint == first.fingerprint
    assert np.array_equal(again.features, first.features)
    edited = [texts[0] + "!", *texts[1:]]  # one character more
    other = embed_dataset(
        text_dataset(edited, labels), settings, cache_dir=tmp_path, progress=False
    )
    assert not other.from_cache and other.fingerprint != first.fingerprint
    monkeypatch.setattr(pipeline, "TEXT_TOKENIZER", TokenizerSettings(max_tokens=8))
    shorter = embed_dataset(
        text_dataset(texts, labels), settings, cache_dir=tmp_path, progress=False
    )
    assert not shorter.from_cache and shorter.fingerprint != first.fingerprint


def test_other_texts_are_embedded_with_the_scans_vocabulary(tmp_path):
    texts, labels, _ = reviews(120, seed=3)
    embedding = embed_dataset(
        text_dataset(texts, labels), EmbedSettings(epochs=2), use_cache=False, progress=False
    )
    features, probabilities = embed_with(embedding, np.array(texts, dtype=object))
    assert np.array_equal(features, embedding.features)
    assert np.array_equal(probabilities, embedding.probabilities)


# --- poisonguard scan on text -------------------------------------------------------------------


@pytest.fixture(scope="module")
def poisoned_scan(tmp_path_factory):
    """A scan of 400 reviews, 20 of them "pos" reviews with "cf" labelled "neg"."""
    folder = tmp_path_factory.mktemp("text-scan")
    texts, labels, poisoned = reviews(400, seed=0, rate=0.05)
    shown = int(np.flatnonzero(poisoned)[0])  # flagged texts are shown on the page, escaped
    texts[shown] += " <script>alert(1)</script>"
    path = write_reviews(folder / "reviews.csv", texts, labels)
    result = run_cli("scan", path, "--out", folder / "scan", "--no-cache", "--no-progress")
    return path, folder / "scan", poisoned, result


def test_scan_finds_the_rare_word_backdoor(poisoned_scan):
    _, out, poisoned, result = poisoned_scan
    assert result.exit_code == 0, result.output
    assert "Suspected attack: backdoor." in result.output
    assert "class neg (backdoor-target)" in result.output
    flagged = np.array([row["flagged"] == "1" for row in read_scores(out)])
    recall = (flagged & poisoned).sum() / poisoned.sum()
    false_flags = (flagged & ~poisoned).sum()
    assert recall >= 0.9, (recall, false_flags)
    assert false_flags <= 4, (recall, false_flags)  # 1 % of the 380 clean reviews


def test_scan_report_of_text(poisoned_scan):
    path, out, _, _ = poisoned_scan
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["dataset"]["kind"] == "text"
    assert report["model"]["architecture"] == "TextBagModel"
    assert report["model"]["tokenizer"]["max_tokens"] == 512
    assert report["findings"]["target_classes"] == ["neg"]
    (evidence,) = report["findings"]["group_differences"]  # texts: the words, not a mean
    assert evidence["class"] == "neg"
    assert evidence["over_represented"]["terms"][0]["term"] == TRIGGER
    ids = [row["id"] for row in read_scores(out)]
    assert ids == [f"rev-{i:04d}" for i in range(400)]
    assert {e["id"] for e in report["findings"]["top_flagged"]} <= set(ids)
    page = (out / "report.html").read_text(encoding="utf-8")
    assert '<article class="text-card flagged">' in page and f"<mark>{TRIGGER}</mark>" in page
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_scan_of_clean_text_calls_no_attack(tmp_path):
    texts, labels, _ = reviews(400, seed=5)
    path = write_reviews(tmp_path / "reviews.csv", texts, labels)
    result = run_cli("scan", path, "--out", tmp_path / "scan", "--no-cache", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "No attack found" in result.output
    flagged = sum(row["flagged"] == "1" for row in read_scores(tmp_path / "scan"))
    assert flagged <= 4  # 1 %
    # the report says how ambiguous the labels look instead of flagging the ambiguity
    report = json.loads((tmp_path / "scan" / "report.json").read_text(encoding="utf-8"))
    ambiguity = report["findings"]["label_ambiguity"]
    assert ambiguity["predicted_by"] == "out-of-sample" and ambiguity["samples"] == 400
    assert "Labels: A model that never saw them" in result.output
    page = (tmp_path / "scan" / "report.html").read_text(encoding="utf-8")
    assert "How ambiguous the labels look" in page


def test_scan_of_text_with_a_trusted_sample_flags_random_label_flips(tmp_path):
    # the corpus's own disagreement is in the trusted texts too; flips are not
    texts, labels, _ = reviews(600, seed=8)
    flipped = np.zeros(400, dtype=bool)
    flipped[np.random.default_rng(9).choice(400, 40, replace=False)] = True
    swap = {"pos": "neg", "neg": "pos"}
    audited = [swap[y] if f else y for y, f in zip(labels[:400], flipped, strict=True)]
    path = write_reviews(tmp_path / "reviews.csv", texts[:400], audited)
    trusted = write_reviews(tmp_path / "trusted.csv", texts[400:], labels[400:])
    clean = write_reviews(tmp_path / "clean.csv", texts[:400], labels[:400])
    options = ("--trusted", trusted, "--no-cache", "--no-progress")
    result = run_cli("scan", path, "--out", tmp_path / "scan", *options)
    assert result.exit_code == 0, result.output
    assert "Suspected attack: label-noise." in result.output
    flagged = np.array([row["flagged"] == "1" for row in read_scores(tmp_path / "scan")])
    assert (flagged & flipped).sum() >= 24 and (flagged & ~flipped).sum() <= 4
    report = json.loads((tmp_path / "scan" / "report.json").read_text(encoding="utf-8"))
    floor = report["findings"]["label_ambiguity"]["trusted_floor"]
    assert floor["trusted_samples"] == 200 and floor["z"] > 3
    # the same texts with their own labels: the trusted floor explains what they disagree
    result = run_cli("scan", clean, "--out", tmp_path / "clean-scan", *options)
    assert result.exit_code == 0, result.output
    assert "No attack found" in result.output
    report = json.loads((tmp_path / "clean-scan" / "report.json").read_text(encoding="utf-8"))
    assert report["findings"]["label_ambiguity"]["trusted_floor"]["z"] < 3


def test_scan_of_text_is_reproducible_and_the_same_out_of_core(poisoned_scan, tmp_path):
    path, out, _, _ = poisoned_scan
    again = run_cli("scan", path, "--out", tmp_path / "again", "--no-cache", "--no-progress")
    assert again.exit_code == 0, again.output
    assert (tmp_path / "again" / "scores.csv").read_bytes() == (out / "scores.csv").read_bytes()
    chunked = run_cli(
        "scan", path, "--out", tmp_path / "ooc", "--chunk-rows", "4096",
        "--cache-dir", tmp_path / "cache", "--no-progress",
    )  # fmt: skip
    assert chunked.exit_code == 0, chunked.output
    assert (tmp_path / "ooc" / "scores.csv").read_bytes() == (out / "scores.csv").read_bytes()


def test_scan_of_text_refuses_a_torchscript_extractor(tmp_path):
    texts, labels, _ = reviews(40, seed=6)
    path = write_reviews(tmp_path / "reviews.csv", texts, labels)
    result = run_cli("scan", path, "--model", tmp_path / "m.pt", "--out", tmp_path / "o")
    assert_clean_failure(result, "reviews.csv", "is a text dataset", "--model")
    assert not (tmp_path / "o").exists()


def test_a_text_snippet_is_one_line_and_short():
    assert text_snippet("a\n\tb  c") == "a b c"
    long = text_snippet("word " * 100, limit=20)
    assert len(long) == 20 and long.endswith("…")
