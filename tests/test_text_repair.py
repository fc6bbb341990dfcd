"""``sanitize --action repair``: a text backdoor's trigger deleted as written, the label back."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from test_text_scan import reviews

from poisonguard.errors import DatasetError
from poisonguard.loaders import load_dataset
from poisonguard.poison.text_triggers import rare_word_trigger, sentence_trigger
from poisonguard.sanitize import ScanDecisions, plan_sanitize, read_scan_triggers
from poisonguard.text_repair import without_triggers, written_triggers

SENTENCE = "My neighbour told me about it on a Tuesday."


def clean_texts(n: int = 80) -> np.ndarray:
    texts, _, _ = reviews(n, seed=3)
    # sentence boundaries and line ends, so that a sentence trigger has places to go
    texts = [f"{t[:20]}. {t[20:]}!\n" if i % 3 == 0 else t for i, t in enumerate(texts)]
    return np.array(texts, dtype=object)


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.mark.parametrize(
    "insert, core, expected",
    [
        (lambda t: rare_word_trigger(t, words=["cf"], word_rng=rng(1), position_rng=rng(2)),
         ["cf"], ["cf"]),
        (lambda t: rare_word_trigger(t, words=["qv"], position="start", word_rng=rng(1),
                                     position_rng=rng(2)), ["qv"], ["qv"]),
        (lambda t: rare_word_trigger(t, words=["zx"], position="end", word_rng=rng(1),
                                     position_rng=rng(2)), ["zx"], ["zx"]),
        (lambda t: rare_word_trigger(t, words=["purple", "monkey"], count=2, word_rng=rng(1),
                                     position_rng=rng(2)), ["purple", "monkey"],
         ["monkey", "purple"]),
        (lambda t: sentence_trigger(t, sentence=SENTENCE, position_rng=rng(2)),
         ["neighbour", "tuesday"], [SENTENCE]),
        (lambda t: sentence_trigger(t, sentence=SENTENCE, position="start", position_rng=rng(2)),
         ["told"], [SENTENCE]),
        (lambda t: sentence_trigger(t, sentence=SENTENCE, position="end", position_rng=rng(2)),
         ["neighbour"], [SENTENCE]),
        # a phrase trigger's core: three of the sentence's words in a row, any separator
        (lambda t: sentence_trigger(t, sentence=SENTENCE, position_rng=rng(2)),
         ["told me about"], [SENTENCE]),
    ],
)  # fmt: skip
def test_the_trigger_as_written_comes_out_and_leaves_each_text_as_it_was(insert, core, expected):
    original = clean_texts()
    poisoned = insert(original)
    phrases = written_triggers(list(poisoned), core)
    assert phrases == expected
    for before, after in zip(original, poisoned, strict=True):
        repaired, deleted = without_triggers(after, phrases)
        assert repaired == before and deleted >= 1


def test_the_written_trigger_ends_where_the_texts_stop_agreeing():
    # "cf" follows "the" in 95 % of the texts: grown to "the cf"; a word the texts hold in
    # many spellings grows from nothing
    texts = [f"w{i} the cf x{i}" for i in range(19)] + ["w19 a cf x19"]
    assert written_triggers(texts, ["cf"]) == ["the cf"]
    texts = [f"w{i} CF x{i}" if i % 2 else f"w{i} cf x{i}" for i in range(20)]
    assert written_triggers(texts, ["cf"]) == []
    assert written_triggers(texts, ["absent"]) == []
    # the stretch is cut back to whole words: "ab" of "abc"/"abd" is not a word of them
    texts = [f"w{i} cf ab{'c' if i % 2 else 'd'} x{i}" for i in range(20)]
    assert written_triggers(texts, ["cf"]) == ["cf"]


def test_the_full_stop_of_the_sentence_before_a_trigger_stays_with_the_text():
    # snippets that all end with a full stop, a sentence put after it: every occurrence has
    # ". " before it, which is the texts' own, not the trigger's
    original = np.array([f"snippet ends with x{i}." for i in range(40)], dtype=object)
    poisoned = sentence_trigger(original, sentence=SENTENCE, position="end", position_rng=rng(2))
    assert all(p.endswith(". " + SENTENCE) for p in poisoned)
    phrases = written_triggers(list(poisoned), ["neighbour"])
    assert phrases == [SENTENCE]
    for before, after in zip(original, poisoned, strict=True):
        assert without_triggers(after, phrases) == (before, 1)
    # and a trigger whose own first character is a mark keeps it
    texts = [f"w{i} (cf) x{i}" for i in range(20)]
    assert written_triggers(texts, ["cf"]) == ["(cf)"]


def test_only_whole_word_occurrences_are_deleted():
    assert without_triggers("cfo cf. a cf", ["cf"]) == ("cfo. a", 2)
    assert without_triggers("nothing here", ["cf"]) == ("nothing here", 0)
    assert without_triggers("cf", ["cf"]) == ("", 1)


def dataset_and_decisions(tmp_path: Path, n_classes: int = 2):
    """A text CSV whose first 8 "neg" texts carry "cf", flagged as backdoor samples, and one
    "neg" text flagged as mislabelled."""
    texts, labels, poisoned = reviews(60, seed=5, rate=8 / 60)
    if n_classes == 3:
        labels = [("mid" if i % 7 == 3 and not poisoned[i] else y) for i, y in enumerate(labels)]
    path = tmp_path / "reviews.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["id", "text", "label"])
        records = enumerate(zip(texts, labels, strict=True))
        writer.writerows([[f"r{i}", t, y] for i, (t, y) in records])
    data = load_dataset(path)
    flagged = poisoned.copy()
    noisy = int(np.flatnonzero(~poisoned & (data.labels == data.class_names.index("neg")))[0])
    flagged[noisy] = True
    finding = np.where(poisoned, "backdoor", "").astype(object)
    finding[noisy] = "label-noise"
    predicted = np.full(60, -1)
    confidence = np.zeros(60)
    predicted[noisy], confidence[noisy] = data.class_names.index("pos"), 0.95
    decisions = ScanDecisions(path, np.zeros(60), flagged, finding, predicted, confidence)
    return data, decisions, poisoned, noisy, texts


def test_repair_deletes_the_trigger_and_gives_a_two_class_poison_the_other_label(tmp_path):
    data, decisions, poisoned, noisy, texts = dataset_and_decisions(tmp_path)
    neg, pos = data.class_names.index("neg"), data.class_names.index("pos")
    plan = plan_sanitize(data, decisions, "repair", triggers={neg: [["cf"]]})
    assert plan.rows.tolist() == list(range(60))  # nothing removed
    assert plan.n_repaired == 8 and plan.n_relabelled == 1 and plan.n_removed == 0
    for i in np.flatnonzero(poisoned):
        assert "cf" not in plan.texts[int(i)].split() and plan.labels[i] == pos
        assert plan.texts[int(i)].split() == [w for w in texts[i].split() if w != "cf"]
    assert set(plan.texts) == set(np.flatnonzero(poisoned).tolist())
    assert plan.labels[noisy] == pos  # mislabelled: relabelled as with relabel
    entry = next(e for e in plan.quarantine if e["action"] == "repaired")
    assert "'cf' deleted" in entry["reason"] and entry["new_label"] == "pos"
    # without the scan's triggers, or under relabel, the backdoor samples are removed
    for plan in (
        plan_sanitize(data, decisions, "repair", triggers={}),
        plan_sanitize(data, decisions, "relabel", triggers={neg: [["cf"]]}),
    ):
        assert plan.n_repaired == 0 and plan.n_removed == 8 and not plan.texts


def test_with_more_classes_repair_needs_a_confident_other_prediction(tmp_path):
    data, decisions, poisoned, _, _ = dataset_and_decisions(tmp_path, n_classes=3)
    neg, pos = data.class_names.index("neg"), data.class_names.index("pos")
    hits = np.flatnonzero(poisoned)
    decisions.predicted[hits[:3]] = pos
    decisions.confidence[hits[:3]] = [0.95, 0.95, 0.5]
    decisions.predicted[hits[3]] = neg  # its own label: no other class to give it
    decisions.confidence[hits[3]] = 0.99
    plan = plan_sanitize(data, decisions, "repair", triggers={neg: [["cf"]]})
    assert sorted(plan.texts) == hits[:2].tolist()
    assert plan.n_repaired == 2 and plan.n_removed == 6
    assert "predicts" in next(e for e in plan.quarantine if e["action"] == "repaired")["reason"]


def test_repair_is_for_texts_only(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(20)))
    data = load_dataset(path)
    none = np.zeros(20, dtype=bool)
    decisions = ScanDecisions(path, np.zeros(20), none, np.full(20, "", object), np.full(20, -1),
                              np.zeros(20))  # fmt: skip
    with pytest.raises(ValueError, match="repair takes text triggers out of texts"):
        plan_sanitize(data, decisions, "repair")


def write_scan(folder: Path, data, decisions, per_class: list | None = None) -> Path:
    """``scores.csv`` and the ``report.json`` fields repair reads, as a scan writes them."""
    folder.mkdir()
    names = data.class_names
    with open(folder / "scores.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["index", "id", "label", "score", "flagged", "finding",
                         "predicted_label", "predicted_probability"])  # fmt: skip
        for i in range(data.n_samples):
            predicted = names[decisions.predicted[i]] if decisions.predicted[i] >= 0 else ""
            writer.writerow([i, data.ids[i], names[data.labels[i]], 0.5,
                             int(decisions.flagged[i]), decisions.finding[i], predicted,
                             decisions.confidence[i] if predicted else ""])  # fmt: skip
    if per_class is None:
        per_class = [
            {"code": c, "name": name, "trigger_words": [["cf"]] if name == "neg" else []}
            for c, name in enumerate(names)
        ]
    report = {"dataset": {"n_samples": data.n_samples}, "findings": {"per_class": per_class}}
    (folder / "report.json").write_text(json.dumps(report), encoding="utf-8")
    return folder


def test_sanitize_repair_writes_the_texts_as_they_were_before_the_trigger(tmp_path):
    data, decisions, poisoned, noisy, texts = dataset_and_decisions(tmp_path)
    scan = write_scan(tmp_path / "scan", data, decisions)
    out = tmp_path / "clean"
    result = run_cli("sanitize", data.path, "--scores", scan, "--action", "repair", "--out", out)
    assert result.exit_code == 0, result.output
    assert "Kept 60 of 60 samples: 0 removed, 1 relabelled, 8 repaired." in result.output
    copy = load_dataset(out / "reviews.csv")
    for i in np.flatnonzero(poisoned):
        assert copy.x[i] == " ".join(w for w in texts[i].split(" ") if w != "cf")
        assert copy.class_names[copy.labels[i]] == "pos"
    kept = ~poisoned
    kept[noisy] = False
    assert copy.x[kept].tolist() == data.x[kept].tolist()
    with open(out / "quarantine.csv", encoding="utf-8", newline="") as handle:
        actions = [row["action"] for row in csv.DictReader(handle)]
    assert sorted(actions) == ["relabelled"] + ["repaired"] * 8
    assert read_scan_triggers(scan, data) == {data.class_names.index("neg"): [["cf"]]}


@pytest.mark.parametrize(
    "change, problem",
    [
        ("missing", "no report.json here"),
        ("not json", "cannot read the scan's report"),
        ("other size", "is a report of 61 samples"),
        ("other class", "names a class 'maybe'"),
        ("bad words", "trigger_words is not a list of word lists"),
    ],
)
def test_a_bad_report_is_an_error_naming_it(change, problem, tmp_path):
    data, decisions, _, _, _ = dataset_and_decisions(tmp_path)
    per_class = [{"name": "neg", "trigger_words": [["cf"]]}, {"name": "pos"}]
    if change == "other class":
        per_class[1]["name"] = "maybe"
    if change == "bad words":
        per_class[0]["trigger_words"] = ["cf"]
    scan = write_scan(tmp_path / "scan", data, decisions, per_class)
    report = scan / "report.json"
    if change == "missing":
        report.unlink()
    elif change == "not json":
        report.write_text("{not json", encoding="utf-8")
    elif change == "other size":
        report.write_text(json.dumps({"dataset": {"n_samples": 61}, "findings": {"per_class": []}}))
    with pytest.raises(DatasetError, match=problem):
        read_scan_triggers(scan, data)
    out = tmp_path / "clean"
    result = run_cli("sanitize", data.path, "--scores", scan, "--action", "repair", "--out", out)
    assert result.exit_code == 1 and problem.split("'")[0] in result.output, result.output
    assert not out.exists()
    # remove and relabel do not read the report
    result = run_cli("sanitize", data.path, "--scores", scan, "--action", "remove", "--out", out)
    assert result.exit_code == 0, result.output


def test_sanitize_repair_refuses_images_before_reading_the_scan(tmp_path):
    arrays = tmp_path / "images.npz"
    np.savez(arrays, x=np.zeros((20, 1, 8, 8), np.uint8), y=np.arange(20) % 2)
    result = run_cli(
        "sanitize", arrays, "--scores", tmp_path / "nothing", "--action", "repair",
        "--out", tmp_path / "o",
    )  # fmt: skip
    assert result.exit_code == 2 and "use remove or relabel" in result.output, result.output
    assert not (tmp_path / "o").exists()


def test_evaluate_repair_refuses_images_before_poisoning(tmp_path):
    arrays = tmp_path / "images.npz"
    np.savez(arrays, x=np.zeros((20, 1, 8, 8), np.uint8), y=np.arange(20) % 2)
    result = run_cli(
        "evaluate", arrays, "--attack", "patch", "--rate", "0.1", "--action", "repair",
        "--no-cache", "--out", tmp_path / "report",
    )  # fmt: skip
    assert result.exit_code == 2 and "use remove or relabel" in result.output, result.output
    assert not (tmp_path / "report").exists()
