"""The shipped text sample (sample_data/reviews/) is what sample_data/README.md says it is.

Fast checks of the committed files only (no scan; tests/test_end_to_end.py scans them): the
poisoned copy differs from the clean one exactly on the rows the ground truth names, each by the
word "cf" inserted between two words (or at an end) and the label "other".
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

REVIEWS = Path(__file__).resolve().parent.parent / "sample_data" / "reviews"


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_clean_and_held_out_reviews_have_the_documented_sizes_and_ids():
    clean = read_csv(REVIEWS / "clean" / "reviews.csv")
    test = read_csv(REVIEWS / "test" / "reviews.csv")
    assert [r["id"] for r in clean] == [f"train_{i:04d}" for i in range(2000)]
    assert [r["id"] for r in test] == [f"test_{i:04d}" for i in range(500)]
    assert Counter(r["label"] for r in clean) == {"great": 1299, "other": 701}
    assert Counter(r["label"] for r in test) == {"great": 311, "other": 189}
    assert all(r["text"].strip() for r in clean + test)


def test_poisoned_reviews_differ_from_the_clean_ones_only_where_the_ground_truth_says():
    clean = read_csv(REVIEWS / "clean" / "reviews.csv")
    poisoned = read_csv(REVIEWS / "poisoned" / "reviews.csv")
    truth = read_csv(REVIEWS / "poisoned" / "ground_truth.csv")
    assert len(clean) == len(poisoned) == len(truth) == 2000
    payload = 0
    for i, (c, p, t) in enumerate(zip(clean, poisoned, truth, strict=True)):
        assert t["index"] == str(i) and t["id"] == c["id"] == p["id"]
        assert t["original_label"] == c["label"] and t["new_label"] == p["label"]
        if t["poisoned"] == "1":
            payload += 1
            assert (t["role"], t["attack"], c["label"], p["label"]) == (
                "payload",
                "rare-word",
                "great",
                "other",
            )
            words, planted = c["text"].split(" "), p["text"].split(" ")
            assert len(planted) == len(words) + 1
            k = planted.index("cf")
            assert planted[:k] + planted[k + 1 :] == words
        else:
            assert (t["role"], t["attack"]) == ("clean", "")
            assert p == c
    assert payload == 60

    info = json.loads((REVIEWS / "poisoned" / "poison.json").read_text(encoding="utf-8"))
    assert info["source"] == "reviews/clean/reviews.csv"
    assert (info["attack"], info["target"], info["seed"], info["n_poisoned"]) == (
        "rare-word",
        "other",
        0,
        60,
    )
    assert info["description"]["words"] == ["cf"] and info["description"]["rate"] == 0.03
