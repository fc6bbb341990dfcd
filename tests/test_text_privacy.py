"""The privacy probe on texts (issue 16, item 6): duplicate texts (exact once normalised, near by
the Jaccard index of character shingles) inside the training data and across the held-out split,
personal data in the texts (e-mail addresses, phone numbers, Luhn-valid card numbers, mod-97
IBANs) reported masked, and ``poisonguard privacy`` on a small text CSV."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_clean_failure, run_cli
from test_text_scan import reviews

from poisonguard.privacy import checklist as checks
from poisonguard.privacy.personal_data import (
    find_personal_data,
    iban_valid,
    luhn_valid,
    mask,
    personal_data_summary,
)
from poisonguard.privacy.text_duplicates import (
    NEAR_JACCARD,
    jaccard,
    normalise,
    text_exact_duplicates,
    text_near_duplicates,
)

LONG = (
    "We ordered the green tea twice this winter and both boxes arrived sealed, fresh and "
    "fragrant; the leaves brew a clear cup that stays sweet even when left a little too long."
)
OTHER = (
    "The coffee beans were oily and stale, the bag had split open in transit and the seller "
    "never answered the two messages we sent about a refund for the whole order."
)

# Personal data planted in the tests (all standard test values: no real person's).
EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"
IBAN = "GB82 WEST 1234 5698 7654 32"
PHONE = "+44 20 7946 0958"
RAW_VALUES = (EMAIL, CARD, CARD.replace(" ", ""), IBAN, IBAN.replace(" ", ""), PHONE)


# --- duplicates ------------------------------------------------------------------------------


def test_normalisation_ignores_case_and_white_space_only():
    assert normalise("  Great\tTEA!\n\nBuy  it ") == "great tea! buy it"
    assert normalise("Great tea.") != normalise("Great tea!")


def test_exact_copies_are_grouped_after_normalisation():
    texts = ["Fresh tea", "stale coffee", "  FRESH   tea ", "fresh tea!", "fresh tea"]
    assert text_exact_duplicates(texts) == [[0, 2, 4]]


def test_planted_near_copies_are_found_and_a_different_text_is_not():
    texts, _, _ = reviews(400, seed=5)
    base = len(texts)
    texts += [
        LONG,
        LONG.replace("twice", "three times"),  # one word replaced
        LONG.replace("fragrant", "fargrant"),  # a typo
        LONG.upper(),  # an exact copy once normalised: not a near pair
        OTHER,
    ]
    result = text_near_duplicates(texts)
    pairs = {(p.i, p.j) for p in result.pairs}
    assert (base, base + 1) in pairs and (base, base + 2) in pairs and (base + 1, base + 2) in pairs
    assert not any(base + 4 in (p.i, p.j) for p in result.pairs)  # the different review
    assert not any(base + 3 in (p.i, p.j) for p in result.pairs)  # reported as exact instead
    assert [base, base + 3] in text_exact_duplicates(texts)
    assert all(p.similarity >= NEAR_JACCARD and not p.exact for p in result.pairs)
    assert jaccard(LONG, OTHER) < 0.2


def test_the_search_misses_no_pair_well_above_the_threshold_and_reports_none_below():
    rng = np.random.default_rng(0)
    texts, _, _ = reviews(150, seed=2)
    for i in rng.choice(len(texts), 40, replace=False):  # near copies: a word dropped or added
        words = texts[i].split(" ")
        if rng.random() < 0.5 and len(words) > 8:
            del words[int(rng.integers(len(words)))]
        else:
            words.insert(int(rng.integers(len(words) + 1)), "really")
        texts.append(" ".join(words))
    found = {(p.i, p.j): p.similarity for p in text_near_duplicates(texts).pairs}
    unique = {}
    for i, text in enumerate(texts):
        unique.setdefault(normalise(text), i)
    truth = {}
    for a, b in itertools.combinations(sorted(unique.values()), 2):
        similarity = jaccard(texts[a], texts[b])
        if similarity >= NEAR_JACCARD:
            truth[(a, b)] = similarity
    assert truth  # the planted copies
    assert set(found) <= set(truth)  # every pair reported is checked exactly
    strong = {pair for pair, s in truth.items() if s >= 0.8}
    assert strong <= set(found)  # candidate probability >= 0.998 each at 0.8
    assert len(found) >= 0.9 * len(truth)
    for pair, similarity in found.items():
        assert similarity == pytest.approx(truth[pair])


def test_copies_across_the_split_are_found_exact_and_near():
    train, _, _ = reviews(200, seed=7)
    train += [LONG]
    heldout, _, _ = reviews(50, seed=8)
    heldout += [LONG.lower() + "  ", LONG.replace("winter", "summer"), OTHER]
    result = text_near_duplicates(train, other=heldout)
    by_heldout = {p.j: p for p in result.pairs}
    exact, near = by_heldout[50], by_heldout[51]
    assert exact.exact and exact.i == 200 and exact.similarity == 1.0
    assert not near.exact and near.i == 200 and near.similarity >= NEAR_JACCARD
    assert 52 not in by_heldout
    item = checks.train_heldout_overlap_item(result.pairs, len(heldout), rule="texts")
    assert item["status"] == "fail"
    assert item["details"]["heldout_with_exact_copy"] == 1
    assert item["details"]["heldout_with_near_copy"] == 1
    alone = checks.train_heldout_overlap_item(
        text_near_duplicates(train, other=heldout[:50] + [OTHER]).pairs, 51
    )
    assert alone["status"] == "pass"


def test_duplicates_scale_to_many_short_texts():
    texts, _, _ = reviews(20000, seed=11)  # random bags of a small vocabulary: many near texts
    result = text_near_duplicates(texts)
    assert result.seconds < 30
    assert all(p.similarity >= NEAR_JACCARD for p in result.pairs)


# --- personal data ---------------------------------------------------------------------------


def test_luhn_and_iban_checks():
    for number in ("4111111111111111", "5500000000000004", "378282246310005", "6011111111111117"):
        assert luhn_valid(number), number
    for number in ("4111111111111112", "5500000000000005", "12a4", "", "٤١١١"):
        assert not luhn_valid(number), number
    for iban in ("GB82WEST12345698765432", "DE89370400440532013000", "fr1420041010050500013m02606"):
        assert iban_valid(iban), iban
    for iban in (
        "GB82WEST12345698765433",  # check digits do not match
        "GB82WEST1234569876543",  # one short for GB
        "XX82WEST12345698765432",  # no such country
        "DE8937040044053201300X",
    ):
        assert not iban_valid(iban), iban


def test_personal_data_is_found_and_masked():
    text = (
        f"Mail {EMAIL} or call {PHONE} / (212) 555-0187. Card {CARD} or amex 3782 822463 10005, "
        f"IBAN {IBAN}."
    )
    found = find_personal_data(text)
    kinds = [value.kind for value in found]
    assert kinds == ["email", "phone", "phone", "payment_card", "payment_card", "iban"]
    masked = {text[v.start : v.end]: v.masked for v in found}
    assert masked[EMAIL] == "j***@e***.com"
    assert masked[CARD] == "**** **** **** 1111"
    assert masked["3782 822463 10005"] == "**** **** *** 0005"
    assert masked[IBAN] == "GB** **** **** **** ** 5432"
    assert masked[PHONE] == "+** ** **** **58"
    assert masked["(212) 555-0187"] == "(***) ***-**87"
    for value in found:
        assert text[value.start : value.end] not in value.masked
    with pytest.raises(ValueError, match="unknown kind"):
        mask("name", "x")


@pytest.mark.parametrize(
    "text",
    [
        "Ordered 2021-03-04, delivered 04/03/2021 and 10-12-2020 at 10:30.",
        "Paid $12.99 (was $1 234 567), 3 stars, 12 boxes, 100 200 300 400 grams.",
        "Order 1234567890123456 and tracking 1Z999AA10123456784, lot 123456789.",
        "Card 4111 1111 1111 1112 fails Luhn; 0000 0000 0000 0000 is no card.",
        "Mixed separators 4111-1111 1111 1111 are not one number.",
        "IBAN GB82 WEST 1234 5698 7654 33 has a wrong check; XX82 WEST 1234 5698 7654 32 too.",
        "ISBN 978-3-16-148410-0, model 2000 3000, serial 555-0187, version 1.2.3.4.",
        "Not an address: jane@localhost, @handle, a@b.",
    ],
)
def test_no_false_positives_on_numbers_that_are_not_personal_data(text):
    assert find_personal_data(text) == []


def test_the_summary_counts_kinds_and_texts_and_masks_the_examples():
    texts = [
        f"great tea, write to {EMAIL}",
        f"my card {CARD} was charged twice; {EMAIL} again",
        "nothing here, 12 boxes for $30",
        f"refund to {IBAN} please",
    ]
    summary = personal_data_summary(texts, ["a", "b", "c", "d"])
    assert summary["n_texts"] == 4 and summary["texts_affected"] == 3
    kinds = summary["kinds"]
    assert (kinds["email"]["occurrences"], kinds["email"]["texts"]) == (2, 2)
    assert kinds["payment_card"]["examples"] == [
        {"index": 1, "id": "b", "masked": "**** **** **** 1111"}
    ]
    assert kinds["phone"]["occurrences"] == 0
    dumped = json.dumps(summary)
    assert not any(value in dumped for value in RAW_VALUES)
    item = checks.personal_data_item(summary)
    assert item["status"] == "fail" and "2 e-mail addresses in 2 texts" in item["evidence"]
    contact_only = checks.personal_data_item(personal_data_summary([texts[0], texts[2]]))
    assert contact_only["status"] == "warn"
    assert checks.personal_data_item(personal_data_summary([texts[2]]))["status"] == "pass"


# --- the command -----------------------------------------------------------------------------

HOSTILE_ID = '=HYPERLINK("http://x")<script>alert(1)</script>'


def write_csv(path: Path, ids: list[str], texts: list[str], labels: list[str]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["id", "text", "label"])
        writer.writerows(zip(ids, texts, labels, strict=True))
    return path


def write_private_reviews(folder: Path) -> tuple[Path, Path]:
    """A training CSV of 100 reviews with personal data in four and 10 copies (5 exact once
    normalised, 5 near), and a held-out CSV of 40 with 4 exact and 4 near copies of training
    reviews."""
    texts, labels, _ = reviews(140, seed=3)
    texts[4] += f" email me at {EMAIL}"
    texts[7] = f"my card {CARD} was charged twice " + texts[7]
    texts[9] += f" refund to {IBAN}"
    texts[12] += f" or call {PHONE}"
    for k in range(90, 100):  # copies inside training
        texts[k] = texts[k - 60].upper() if k % 2 else texts[k - 60] + " really"
        labels[k] = labels[k - 60]
    for k in range(100, 108):  # copies of training reviews held out
        texts[k] = f"  {texts[k - 50]} " if k % 2 else texts[k - 50] + " really"
        labels[k] = labels[k - 50]
    ids = [f"rev-{i:04d}" for i in range(len(texts))]
    ids[9] = HOSTILE_ID
    train = write_csv(folder / "reviews.csv", ids[:100], texts[:100], labels[:100])
    heldout = write_csv(folder / "heldout.csv", ids[100:], texts[100:], labels[100:])
    return train, heldout


def test_privacy_runs_on_a_text_csv_and_writes_no_personal_value(tmp_path):
    path, heldout = write_private_reviews(tmp_path)
    out = tmp_path / "report"
    result = run_cli(
        "privacy",
        path,
        "--holdout",
        heldout,
        "--epochs",
        "2",
        "--shadows",
        "4",
        "--cache-dir",
        tmp_path / "cache",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["dataset"]["kind"] == "text"
    privacy = report["privacy"]
    assert (privacy["n_members"], privacy["n_nonmembers"]) == (100, 40)
    assert 0.0 <= privacy["membership"]["auc"] <= 1.0
    items = {item["item"]: item for item in privacy["checklist"]}
    assert items["personal data in the texts"]["status"] == "fail"
    assert items["model inversion"]["evidence"].startswith("not applicable to text")
    assert items["model inversion"]["details"]["applicable"] is False
    assert privacy["inversion"]["per_class"] == []
    assert "not applicable to text" in privacy["inversion"]["note"]
    text = privacy["text"]
    assert text["n_exact_groups"] == 5 and text["near_duplicates"]["n_pairs"] == 5
    assert ["rev-0031", "rev-0091"] in text["exact_groups"]
    near = {(p["id_a"], p["id_b"]) for p in text["near_duplicates"]["examples"]}
    assert ("rev-0030", "rev-0090") in near
    cross = {(p["id_a"], p["id_b"], p["exact"]) for p in text["train_heldout"]["examples"]}
    assert ("rev-0051", "rev-0101", True) in cross and ("rev-0050", "rev-0100", False) in cross
    assert text["train_heldout"]["n_pairs"] == 8
    assert items["duplicates in the training data"]["details"]["samples_involved"] == 20
    assert items["duplicates in the training data"]["status"] == "fail"
    overlap = items["overlap between training and held-out data"]
    assert overlap["status"] == "fail" and overlap["details"]["heldout_with_exact_copy"] == 4
    kinds = text["personal_data"]["kinds"]
    assert {kind: kinds[kind]["occurrences"] for kind in kinds} == {
        "email": 1,
        "phone": 1,
        "payment_card": 1,
        "iban": 1,
    }
    assert kinds["iban"]["examples"][0]["id"] == HOSTILE_ID
    html = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="text-checks"' in html and "**** **** **** 1111" in html
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    for file in out.iterdir():
        written = file.read_text(encoding="utf-8")
        for value in RAW_VALUES:
            assert value not in written, (file.name, value)
    assert not any(value in result.output for value in RAW_VALUES)
    assert "not applicable to text" in result.output


def test_privacy_on_text_refuses_a_torchscript_model(tmp_path):
    path, _ = write_private_reviews(tmp_path)
    (tmp_path / "m.pt").write_bytes(b"")
    result = run_cli("privacy", path, "--model", tmp_path / "m.pt", "--out", tmp_path / "o")
    assert_clean_failure(result, "reviews.csv", "is a text dataset", "TorchScript extractor")
    assert not (tmp_path / "o").exists()
