"""Poisoning text (issue 16, item 4): the rare-word (BadNL) and sentence (InsertSent) backdoors
and the label flips on texts, their positions, counts, determinism, labels and ground truth, the
triggered test copy, the errors; ``poisonguard poison`` and ``poisonguard evaluate`` on a small
text dataset."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_cli
from test_text_scan import reviews

from poisonguard.embed.text_tokens import tokenize
from poisonguard.loaders import load_dataset
from poisonguard.poison import (
    ATTACKS,
    AttackOptions,
    apply_trigger,
    poison_arrays,
    rare_word_trigger,
    sentence_trigger,
)
from poisonguard.poison.text_triggers import DEFAULT_TRIGGER_SENTENCE, DEFAULT_TRIGGER_WORDS

N, K = 120, 3
SENTENCE = DEFAULT_TRIGGER_SENTENCE
TEXT_BACKDOORS = ["rare-word", "sentence"]


def _texts(n: int = N) -> np.ndarray:
    """Short texts of one to three sentences, some with odd white space around them."""
    rng = np.random.default_rng(0)
    words = "the tea was good bad fine fresh stale box price it arrived late".split()
    texts = []
    for i in range(n):
        sentences = [
            " ".join(rng.choice(words, int(rng.integers(2, 7)))).capitalize() + "."
            for _ in range(int(rng.integers(1, 4)))
        ]
        text = "  ".join(sentences) if i % 3 == 0 else " ".join(sentences)
        texts.append(text + "\n" if i % 5 == 0 else text)
    return np.array(texts, dtype=object)


def _labels(n: int = N) -> np.ndarray:
    return np.random.default_rng(1).permutation(np.arange(n) % K).astype(np.int64)


def _rngs(seed: int = 0) -> dict:
    return {
        "word_rng": np.random.default_rng([seed, 1]),
        "position_rng": np.random.default_rng([seed, 2]),
    }


def _words(text: str) -> list[str]:
    return text.split()


# --- the generators ---------------------------------------------------------------------------


def test_text_attacks_are_registered_for_text():
    for name in TEXT_BACKDOORS:
        assert ATTACKS[name].data == "text" and ATTACKS[name].kind == "backdoor"
    assert "BadNL" in ATTACKS["rare-word"].paper and "Dai" in ATTACKS["sentence"].paper
    assert ATTACKS["flip-random"].data == ATTACKS["flip-pair"].data == "any"


@pytest.mark.parametrize("position", ["start", "end", "random"])
@pytest.mark.parametrize("count", [1, 3])
def test_rare_words_are_inserted_between_words_and_nothing_else_changes(position, count):
    texts = _texts()
    out = rare_word_trigger(texts, count=count, position=position, **_rngs())
    assert out.dtype == object and out.shape == texts.shape
    for before, after in zip(texts, out, strict=True):
        old, new = _words(before), _words(after)
        assert len(new) == len(old) + count
        inserted = [w for w in new if w in DEFAULT_TRIGGER_WORDS]
        assert len(inserted) == count
        assert [w for w in new if w not in DEFAULT_TRIGGER_WORDS] == old
        if position == "start":
            assert all(w in DEFAULT_TRIGGER_WORDS for w in new[:count])
        if position == "end":
            assert all(w in DEFAULT_TRIGGER_WORDS for w in new[-count:])
        # the text's own white space is kept: leading, trailing and between its words
        assert after.endswith("\n") == before.endswith("\n")
        assert after.replace(" ".join(inserted), "").count("  ") >= before.count("  ") - count


def test_random_positions_vary_and_use_every_slot():
    texts = np.array(["one two three"] * 400, dtype=object)
    out = rare_word_trigger(texts, words=["cf"], position="random", **_rngs())
    places = {tuple(_words(t)).index("cf") for t in out}
    assert places == {0, 1, 2, 3}  # before each word and after the last


def test_one_trigger_word_is_a_fixed_trigger_and_the_token_survives_tokenizing():
    out = rare_word_trigger(_texts(), words=("zq",), count=2, position="random", **_rngs())
    assert all(tokenize(t).count("zq") == 2 for t in out)


def test_the_words_drawn_do_not_depend_on_the_position():
    texts = _texts()
    picked = [
        [w for w in _words(t) if w in DEFAULT_TRIGGER_WORDS]
        for t in rare_word_trigger(texts, count=2, position="start", **_rngs(5))
    ]
    at_end = [
        [w for w in _words(t) if w in DEFAULT_TRIGGER_WORDS]
        for t in rare_word_trigger(texts, count=2, position="end", **_rngs(5))
    ]
    assert picked == at_end
    assert len({w for words in picked for w in words}) == len(DEFAULT_TRIGGER_WORDS)


@pytest.mark.parametrize("position", ["start", "end", "random"])
def test_the_sentence_goes_to_a_sentence_boundary(position):
    texts = _texts()
    out = sentence_trigger(texts, position=position, position_rng=np.random.default_rng(0))
    seen = set()
    for before, after in zip(texts, out, strict=True):
        assert after.count(SENTENCE) == 1
        head, _, tail = after.partition(SENTENCE)
        assert _words(head) + _words(tail) == _words(before)
        assert head == "" or head.endswith(". ") or head.endswith(".  ")
        assert tail == "" or tail == "\n" or tail.startswith(" ")
        if position == "start":
            assert after.startswith(SENTENCE + " ")
        if position == "end":
            assert after.rstrip("\n").endswith(" " + SENTENCE)
        seen.add("start" if not head else "end" if not tail.strip() else "middle")
    if position == "random":
        assert seen == {"start", "middle", "end"}


def test_a_sentence_between_sentences_and_after_closing_quotes():
    rng = np.random.default_rng(0)
    texts = np.array(['He said "great!" Then left?  Yes'] * 200, dtype=object)
    out = set(sentence_trigger(texts, sentence=" Hi there. ", position_rng=rng))
    assert out == {
        'Hi there. He said "great!" Then left?  Yes',
        'He said "great!" Hi there. Then left?  Yes',
        'He said "great!" Then left?  Hi there. Yes',
        'He said "great!" Then left?  Yes Hi there.',
    }


def test_generators_refuse_bad_inputs():
    texts = _texts(4)
    with pytest.raises(ValueError, match="texts"):
        rare_word_trigger(np.zeros((4, 3)), **_rngs())
    with pytest.raises(ValueError, match="empty"):
        rare_word_trigger(texts, words=[], **_rngs())
    with pytest.raises(ValueError, match="without spaces"):
        rare_word_trigger(texts, words=["two words"], **_rngs())
    with pytest.raises(ValueError, match="list of words"):
        rare_word_trigger(texts, words="cf", **_rngs())
    with pytest.raises(ValueError, match="count"):
        rare_word_trigger(texts, count=0, **_rngs())
    with pytest.raises(ValueError, match="position"):
        rare_word_trigger(texts, position="middle", **_rngs())
    with pytest.raises(ValueError, match="non-blank"):
        sentence_trigger(texts, sentence="  ", position_rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="UTF-8"):
        sentence_trigger(texts, sentence="a\ud800b.", position_rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="not a non-blank str"):
        sentence_trigger(np.array(["ok", " "], dtype=object), position_rng=np.random.default_rng(0))


# --- poison_arrays and apply_trigger on texts ------------------------------------------------


@pytest.mark.parametrize("attack", TEXT_BACKDOORS)
@pytest.mark.parametrize("rate", [0.1, 0.125])
def test_text_backdoors_poison_round_rate_n_and_relabel_to_the_target(attack, rate):
    texts, labels = _texts(), _labels()
    before = texts.copy()
    result = poison_arrays(texts, labels, K, attack=attack, rate=rate, target=2, seed=0)
    assert texts.tolist() == before.tolist()  # inputs untouched
    assert result.poisoned.sum() == result.n_poisoned == round(rate * N)
    assert (result.labels[result.poisoned] == 2).all() and (labels[result.poisoned] != 2).all()
    changed = result.x != texts
    np.testing.assert_array_equal(changed, result.poisoned)
    np.testing.assert_array_equal(result.labels[~result.poisoned], labels[~result.poisoned])
    assert result.x.dtype == object and result.x.shape == texts.shape
    assert result.description["attack"] == attack and result.description["target"] == 2
    if attack == "rare-word":
        assert result.description["words"] == list(DEFAULT_TRIGGER_WORDS)
        assert result.description["count"] == 1 and result.description["position"] == "random"
    else:
        assert result.description["sentence"] == SENTENCE
        assert all(SENTENCE in t for t in result.x[result.poisoned])


@pytest.mark.parametrize("attack", [*TEXT_BACKDOORS, "flip-random", "flip-pair"])
def test_same_seed_same_texts_and_another_seed_other_samples(attack):
    texts, labels = _texts(), _labels()
    options = AttackOptions(source_class=1) if attack == "flip-pair" else None
    target = None if attack == "flip-random" else 2
    runs = [
        poison_arrays(
            texts, labels, K, attack=attack, rate=0.1, target=target, seed=s, options=options
        )
        for s in (7, 7, 8)
    ]
    assert runs[0].x.tolist() == runs[1].x.tolist()
    np.testing.assert_array_equal(runs[0].labels, runs[1].labels)
    np.testing.assert_array_equal(runs[0].poisoned, runs[1].poisoned)
    assert runs[0].description == runs[1].description
    assert not np.array_equal(runs[0].poisoned, runs[2].poisoned)


@pytest.mark.parametrize("attack", ["flip-random", "flip-pair"])
def test_label_flips_on_texts_change_labels_only(attack):
    texts, labels = _texts(), _labels()
    options = AttackOptions(source_class=0) if attack == "flip-pair" else None
    target = 1 if attack == "flip-pair" else None
    result = poison_arrays(
        texts, labels, K, attack=attack, rate=0.1, target=target, options=options, seed=0
    )
    assert result.x.tolist() == texts.tolist()
    assert result.n_poisoned == 12
    np.testing.assert_array_equal(result.poisoned, result.labels != labels)
    if attack == "flip-pair":
        assert (labels[result.poisoned] == 0).all() and (result.labels[result.poisoned] == 1).all()


def test_more_samples_never_change_the_words_or_places_of_the_trigger():
    texts = _texts()
    options = AttackOptions(trigger_count=2)
    first = apply_trigger(texts[:10], attack="rare-word", seed=3, options=options)
    longer = apply_trigger(texts, attack="rare-word", seed=3, options=options)
    # per-text draws run text by text: the first texts get the same words and places
    assert first.tolist() == longer[:10].tolist()


@pytest.mark.parametrize("attack", TEXT_BACKDOORS)
def test_apply_trigger_stamps_the_training_trigger_on_every_text(attack):
    texts, labels = _texts(), _labels()
    options = AttackOptions(trigger_words=("cf",), trigger_position="end")
    result = poison_arrays(
        texts, labels, K, attack=attack, rate=0.1, target=0, seed=4, options=options
    )
    triggered = apply_trigger(texts, attack=attack, seed=4, options=result.options)
    assert (triggered != texts).all()
    # at a fixed position with one word the test copy is the training trigger exactly
    assert triggered[result.poisoned].tolist() == result.x[result.poisoned].tolist()


def test_options_record_the_text_trigger_and_check_it():
    options = AttackOptions(
        trigger_words=["cf", "zz"], trigger_count=2, trigger_sentence="  Hello there.  "
    )
    assert options.trigger_words == ("cf", "zz") and hash(options)
    assert options.trigger_sentence == "Hello there."
    for bad in (
        {"trigger_words": ()},
        {"trigger_words": ("a b",)},
        {"trigger_count": 0},
        {"trigger_count": True},
        {"trigger_position": "middle"},
        {"trigger_sentence": ""},
    ):
        with pytest.raises(ValueError):
            AttackOptions(**bad)


@pytest.mark.parametrize("attack", ["patch", "blend", "table-trigger", "clean-label"])
def test_image_and_table_attacks_refuse_texts(attack):
    with pytest.raises(ValueError, match="this is a text dataset .*rare-word, sentence"):
        poison_arrays(_texts(), _labels(), K, attack=attack, rate=0.1, target=0)
    with pytest.raises(ValueError, match="this is a text dataset"):
        apply_trigger(_texts(), attack=attack)


@pytest.mark.parametrize("attack", TEXT_BACKDOORS)
def test_text_attacks_refuse_images_and_tables(attack):
    labels = _labels()
    for x in (np.zeros((N, 1, 8, 8), np.uint8), np.zeros((N, 4), np.float32)):
        with pytest.raises(ValueError, match=f"{attack}.*is for text datasets"):
            poison_arrays(x, labels, K, attack=attack, rate=0.1, target=0)
    with pytest.raises(ValueError, match="is for text datasets"):
        apply_trigger(np.zeros((3, 4), np.float32), attack=attack)


def test_text_backdoors_take_the_variants_of_a_backdoor_that_relabels():
    texts, labels = _texts(), _labels()
    everywhere = poison_arrays(
        texts, labels, K, attack="rare-word", rate=0.1, options=AttackOptions(all_to_all=True)
    )
    moved = everywhere.poisoned
    np.testing.assert_array_equal(everywhere.labels[moved], (labels[moved] + 1) % K)
    tact = poison_arrays(
        texts,
        labels,
        K,
        attack="sentence",
        rate=0.1,
        target=2,
        options=AttackOptions(source_class=0, cover_rate=0.05),
    )
    assert (labels[tact.poisoned] == 0).all() and tact.n_cover == 6
    assert all(SENTENCE in t for t in tact.x[tact.cover])
    np.testing.assert_array_equal(tact.labels[tact.cover], labels[tact.cover])


# --- poisonguard poison and evaluate on a text dataset -----------------------------------------

FORMATS = ["csv", "tsv", "jsonl", "parquet", "text-folder"]


def write_reviews_as(fmt: str, folder: Path, n: int = 60, *, seed: int = 0) -> Path:
    """``n`` synthetic reviews ("pos" or "neg", :func:`test_text_scan.reviews`) in ``fmt``."""
    texts, labels, _ = reviews(n, seed=seed)
    ids = [f"rev-{i:04d}" for i in range(n)]
    if fmt == "text-folder":
        root = folder / "reviews"
        for sample_id, text, label in zip(ids, texts, labels, strict=True):
            (root / label).mkdir(parents=True, exist_ok=True)
            (root / label / f"{sample_id}.txt").write_text(text, encoding="utf-8")
        return root
    records = [{"id": i, "text": t, "label": y} for i, t, y in zip(ids, texts, labels, strict=True)]
    path = folder / f"reviews.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    elif fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(records), path)
    else:
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(
                handle, ["id", "text", "label"], delimiter="\t" if fmt == "tsv" else ","
            )
            writer.writeheader()
            writer.writerows(records)
    return path


def read_ground_truth(folder: Path) -> list[dict[str, str]]:
    with open(folder / "ground_truth.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _by_id(dataset) -> dict[str, tuple[str, str]]:
    names = dataset.class_names
    return {
        sample_id: (text, names[int(label)])
        for sample_id, text, label in zip(dataset.ids, dataset.x, dataset.labels, strict=True)
    }


def _base_id(sample_id: str) -> str:
    """``rev-0007`` from ``pos/rev-0007.txt`` (a text folder's id is its path)."""
    return Path(sample_id).stem


@pytest.mark.parametrize("fmt", FORMATS)
def test_poison_writes_a_rare_word_copy_in_the_input_format(fmt, tmp_path):
    path = write_reviews_as(fmt, tmp_path)
    result = run_cli(
        "poison", path, "--attack", "rare-word", "--rate", "0.1", "--target", "pos",
        "--trigger-words", "cf", "--trigger-count", "2", "--out", tmp_path / "out",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Poisoned 6 of 60 samples: 6 with rare-word, target 'pos'" in result.output
    source, copy = load_dataset(path), load_dataset(tmp_path / "out" / path.name)
    assert copy.kind == "text" and copy.format == fmt and copy.n_samples == 60
    before = {_base_id(k): v for k, v in _by_id(source).items()}
    after = _by_id(copy)
    truth = read_ground_truth(tmp_path / "out")
    assert [int(row["index"]) for row in truth] == list(range(60))
    assert sum(row["poisoned"] == "1" for row in truth) == 6
    for row in truth:
        text, label = after[row["id"]]
        old_text, old_label = before[_base_id(row["id"])]
        assert copy.ids[int(row["index"])] == row["id"]  # index as PoisonGuard loads the copy
        assert (row["original_label"], row["new_label"]) == (old_label, label)
        if row["poisoned"] == "1":
            assert (row["attack"], row["role"], label, old_label) == (
                "rare-word",
                "payload",
                "pos",
                "neg",
            )
            assert tokenize(text).count("cf") == 2
            assert [w for w in text.split() if w != "cf"] == old_text.split()
        else:
            assert (text, label, row["role"]) == (old_text, old_label, "clean")
    record = json.loads((tmp_path / "out" / "poison.json").read_text())
    assert record["format"] == fmt and record["description"]["words"] == ["cf"]
    assert record["options"]["trigger_count"] == 2


def test_poison_apply_trigger_stamps_every_text_outside_the_target_and_keeps_labels(tmp_path):
    path = write_reviews_as("jsonl", tmp_path)
    result = run_cli(
        "poison", path, "--attack", "sentence", "--apply-trigger", "--target", "pos",
        "--trigger-position", "end", "--out", tmp_path / "test",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    source, copy = load_dataset(path), load_dataset(tmp_path / "test" / path.name)
    negative = source.labels == source.class_names.index("neg")
    assert f"Triggered {negative.sum()} of 60 samples with sentence" in result.output
    np.testing.assert_array_equal(copy.labels, source.labels)
    for old, new, stamped in zip(source.x, copy.x, negative, strict=True):
        assert new == (f"{old} {SENTENCE}" if stamped else old)
    truth = read_ground_truth(tmp_path / "test")
    assert [row["poisoned"] == "1" for row in truth] == negative.tolist()


@pytest.mark.parametrize("attack", ["flip-random", "flip-pair"])
def test_poison_flips_labels_of_texts_and_keeps_the_texts(attack, tmp_path):
    path = write_reviews_as("text-folder", tmp_path)
    extra = ["--source-class", "neg", "--target", "pos"] if attack == "flip-pair" else []
    result = run_cli(
        "poison", path, "--attack", attack, "--rate", "0.1", *extra, "--out", tmp_path / "out"
    )
    assert result.exit_code == 0, result.output
    copy = load_dataset(tmp_path / "out" / path.name)
    before = {_base_id(k): v for k, v in _by_id(load_dataset(path)).items()}
    truth = read_ground_truth(tmp_path / "out")
    assert sum(row["poisoned"] == "1" for row in truth) == 6
    for row in truth:
        text, label = _by_id(copy)[row["id"]]
        assert copy.ids[int(row["index"])] == row["id"]  # moved files: the copy's own order
        assert text == before[_base_id(row["id"])][0]
        assert (label != before[_base_id(row["id"])][1]) == (row["poisoned"] == "1")


def test_poison_refuses_image_attacks_on_text_and_text_attacks_on_arrays(tmp_path):
    path = write_reviews_as("csv", tmp_path)
    result = run_cli("poison", path, "--attack", "patch", "--rate", "0.1", "--out", tmp_path / "o")
    assert result.exit_code == 2, result.output
    assert "attack 'patch' is for images; this is a text dataset" in result.output
    assert "rare-word, sentence" in result.output
    arrays = tmp_path / "images.npz"
    np.savez(arrays, x=np.zeros((20, 1, 8, 8), np.uint8), y=np.arange(20) % 2)
    result = run_cli(
        "poison", arrays, "--attack", "sentence", "--rate", "0.1", "--out", tmp_path / "o"
    )
    assert result.exit_code == 2, result.output
    assert "attack 'sentence' is for text datasets" in result.output
    result = run_cli(
        "poison", path, "--attack", "rare-word", "--rate", "0.1", "--trigger-words", "cf,a b",
        "--out", tmp_path / "o",
    )  # fmt: skip
    assert result.exit_code == 2 and "without spaces" in result.output, result.output
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_evaluate_measures_a_sentence_backdoor_on_texts(tmp_path):
    # 300 reviews, 240 to train: the text model trained on the poisoned texts reads the sentence
    # as "neg"; the scan flags the 12 poisoned reviews, so the sanitized model does not.
    path = write_reviews_as("csv", tmp_path, n=300, seed=0)
    result = run_cli(
        "evaluate", path, "--attack", "sentence", "--rate", "0.05", "--target", "neg",
        "--seed", "0", "--no-cache", "--out", tmp_path / "report",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Attack sentence -> class neg: 12 of 240 training samples poisoned" in result.output
    evaluation = json.loads((tmp_path / "report" / "report.json").read_text())["evaluation"]
    models = {m["training_set"]: m for m in evaluation["models"]}
    assert evaluation["n_test"] == 60 and evaluation["n_poisoned"] == 12
    assert all(m["clean_accuracy"] > 0.9 for m in models.values())
    assert models["clean"]["attack_success"] < 0.1  # the sentence means nothing to it
    assert models["poisoned"]["attack_success"] > 0.8  # the backdoor works
    assert evaluation["detection"]["recall"] == 1.0 and evaluation["sanitized"]["removed"] >= 12
    assert models["sanitized"]["attack_success"] < 0.1
    assert models["sanitized"]["n_train"] == 240 - evaluation["sanitized"]["removed"]


@pytest.mark.slow
def test_evaluate_repairs_rare_word_poisons_on_texts(tmp_path):
    # 600 reviews, 480 to train, 24 poisoned with a word of the default list (cf, mn, bb, tq):
    # the words the trigger-words test names are deleted from their texts and the label turned
    # back; the rest of the flagged texts are removed. Either way no poison is left.
    path = write_reviews_as("csv", tmp_path, n=600, seed=0)
    result = run_cli(
        "evaluate", path, "--attack", "rare-word", "--rate", "0.05", "--target", "neg",
        "--seed", "0", "--no-cache", "--action", "repair", "--out", tmp_path / "report",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    evaluation = json.loads((tmp_path / "report" / "report.json").read_text())["evaluation"]
    sanitized = evaluation["sanitized"]
    models = {m["training_set"]: m for m in evaluation["models"]}
    per_class = json.loads((tmp_path / "report" / "report.json").read_text())["findings"][
        "per_class"
    ]
    named = {word for c in per_class for core in c["trigger_words"] for word in core}
    assert named and named <= {"cf", "mn", "bb", "tq"}
    assert sanitized["repaired"] >= 1 and f"{sanitized['repaired']} repaired" in result.output
    # every repaired poison is the original text with its original label
    assert sanitized["poisoned_relabelled_to_original"] == sanitized["repaired"]
    assert sanitized["poisoned_left"] == 0
    assert models["sanitized"]["n_train"] == 480 - sanitized["removed"]
    assert models["poisoned"]["attack_success"] > 0.5
    assert models["sanitized"]["attack_success"] <= models["clean"]["attack_success"] + 0.05
    page = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    assert f"{sanitized['repaired']} repaired" in page


@pytest.mark.slow
def test_evaluate_passes_a_trusted_sample_to_the_scan(tmp_path):
    # 500 reviews, 400 to train, 40 labels flipped; 200 other reviews of the same kind are the
    # trusted sample: the scan reads the texts' words against them and calls the flips
    path = write_reviews_as("csv", tmp_path, n=500, seed=0)
    (tmp_path / "trusted").mkdir()
    trusted = write_reviews_as("csv", tmp_path / "trusted", n=200, seed=1)
    result = run_cli(
        "evaluate", path, "--attack", "flip-random", "--rate", "0.1", "--trusted", trusted,
        "--seed", "0", "--no-cache", "--out", tmp_path / "report",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    floor = report["findings"]["label_ambiguity"]["trusted_floor"]
    assert floor["trusted_samples"] == 200 and floor["samples"] <= 400
    assert report["findings"]["attack_kinds"] == ["label-noise"]
    assert report["evaluation"]["detection"]["recall"] >= 0.6
    missing = run_cli(
        "evaluate", path, "--attack", "flip-random", "--rate", "0.1", "--trusted",
        tmp_path / "nowhere.csv", "--no-cache", "--out", tmp_path / "r2",
    )  # fmt: skip
    assert missing.exit_code != 0 and "nowhere.csv" in missing.output
    assert not (tmp_path / "r2").exists()
