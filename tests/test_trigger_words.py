"""The deletion test for text triggers (poisonguard.detectors.trigger_words) and the decision's
trigger-words rule: a word or an inserted sentence that carries a label on its own is found, the
texts holding it flagged; natural words of a class are not."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from conftest import run_cli
from scipy import stats
from test_text_scan import read_scores, reviews, write_reviews

from poisonguard.detectors.trigger_words import (
    FOREIGN_ALPHA,
    NOTHING_LEFT,
    WordSet,
    _co_occurring_groups,
    _foreign_part,
    _of_foreign_origin,
    _runs_of_words,
    _words_of_a_sentence_found,
    bag_matrix,
    candidate_sets,
    class_foreign_null,
    copy_groups,
    deletion_flips,
    distinct_texts,
    foreign_group,
    foreign_reader,
    phrase_sets,
    trigger_word_test,
    unlearned_triggers,
)

VOCABULARY = 300  # ids 2 .. 299 are words
SENTENCE = np.array([290, 291, 292, 293])  # the words of an inserted sentence
TRIGGER = 299


def linear_bag(weights: np.ndarray):
    """A bag-of-words model: class 1's logit is the sum of the weights of the words a text
    holds (each word counted once), class 0's is 0."""

    def logits(rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows)
        held = np.zeros((rows.shape[0], weights.size), dtype=bool)
        held[np.repeat(np.arange(rows.shape[0]), rows.shape[1]), rows.ravel()] = True
        held[:, :2] = False  # padding and the unknown word
        return np.stack([np.zeros(rows.shape[0]), held @ weights], axis=1)

    return logits


def corpus(n: int, *, seed: int, plant: str = "", rate: float = 0.03):
    """``n`` texts as real reviews are: 3-5 words of their class's 40 (weights 0.5-2 towards
    it) among 6-14 of 160 neutral words (weights near 0), so that no one natural word carries a
    text's label. With ``plant`` ("word" or "sentence"), ``rate * n`` class-0 texts get the
    trigger and label 1."""
    rng = np.random.default_rng(seed)
    weights = np.zeros(VOCABULARY)
    weights[2:42] = -rng.uniform(0.5, 2.0, 40)  # class 0's words
    weights[42:82] = rng.uniform(0.5, 2.0, 40)  # class 1's words
    weights[82:242] = rng.normal(0.0, 0.1, 160)  # neutral words
    weights[TRIGGER] = 12.0
    weights[SENTENCE] = 4.0
    labels = (rng.random(n) < 0.5).astype(np.int64)
    ids = np.zeros((n, 24), dtype=np.int64)
    lengths = np.zeros(n, dtype=np.int64)
    for i, label in enumerate(labels):
        own = rng.choice(np.arange(2, 42) + 40 * label, int(rng.integers(3, 6)), replace=False)
        neutral = rng.choice(np.arange(82, 242), int(rng.integers(6, 15)), replace=False)
        words = rng.permutation(np.concatenate([own, neutral]))
        ids[i, : words.size] = words
        lengths[i] = words.size
    logits = linear_bag(weights)
    poisoned = np.zeros(n, dtype=bool)
    if plant:
        words = np.array([TRIGGER]) if plant == "word" else SENTENCE
        chosen = rng.choice(np.flatnonzero(labels == 0), int(round(rate * n)), replace=False)
        for i in chosen:
            at = int(lengths[i])
            ids[i, at : at + words.size] = words
        labels[chosen] = 1
        poisoned[chosen] = True
    return ids, labels, poisoned, logits


def test_the_bag_matrix_marks_each_word_once_and_leaves_out_padding_and_unknown():
    bags = bag_matrix(np.array([[5, 5, 3, 0], [1, 2, 0, 0]]), 8)
    assert bags.toarray().tolist() == [
        [0, 0, 0, 1, 0, 1, 0, 0],
        [0, 0, 1, 0, 0, 0, 0, 0],
    ]


def test_an_inserted_sentence_forms_one_set_whose_core_is_the_sentence():
    ids, labels, poisoned, _ = corpus(1000, seed=1, plant="sentence")
    sets = candidate_sets(bag_matrix(ids, VOCABULARY), labels, 2, share=0.75)
    anchored = [s for s in sets if set(s.words) & set(SENTENCE)]
    assert anchored and all(set(s.core) == set(SENTENCE) for s in anchored)
    (sentence,) = {tuple(s.words) for s in anchored}
    assert set(sentence) == set(SENTENCE)  # no common word joins: none is in 75 % of texts
    assert all(s.label == 1 and set(s.rows) == set(np.flatnonzero(poisoned)) for s in anchored)


def test_deleting_a_trigger_flips_its_texts_and_a_natural_word_does_not():
    ids, labels, poisoned, logits = corpus(1000, seed=2, plant="word")
    sets = candidate_sets(bag_matrix(ids, VOCABULARY), labels, 2, share=0.75)
    sets, drop, _ = deletion_flips(sets, ids, labels, logits)
    (trigger,) = [s for s in sets if s.anchor == TRIGGER]
    assert trigger.tested == trigger.flips == poisoned.sum()
    # a class word's texts hold other words of the class: deleting it reverses none
    others = [s for s in sets if s.anchor != TRIGGER]
    assert sum(s.flips for s in others) == 0
    # the margin of a poisoned text drops by the trigger's weight less what its words add up to
    assert drop[poisoned].min() > drop[~poisoned].max()


@pytest.mark.parametrize("plant", ["word", "sentence"])
def test_a_planted_trigger_is_found_and_exactly_its_texts_flagged(plant):
    ids, labels, poisoned, logits = corpus(1500, seed=3, plant=plant, rate=0.01)
    test = trigger_word_test(ids, labels, 2, VOCABULARY, logits, alpha=1e-3, share=0.75)
    assert len(test.triggers) >= 1
    assert {s.label for s in test.triggers} == {1}
    assert np.array_equal(test.flagged, poisoned)
    assert all(s.p_value < 1e-3 for s in test.triggers)


@pytest.mark.parametrize("seed", range(5))
def test_clean_texts_have_no_trigger(seed):
    ids, labels, _, logits = corpus(1500, seed=10 + seed)
    test = trigger_word_test(ids, labels, 2, VOCABULARY, logits, alpha=1e-3, share=0.75)
    assert test.triggers == [] and not test.flagged.any()
    assert min(s.p_value for s in test.sets) > 1e-3


def test_texts_holding_one_word_of_a_two_word_trigger_are_found_too():
    # two words drawn from a list, as BadNL does: most poisoned texts hold both, so the set's
    # core is both words; the texts that drew one word twice are tested word by word
    ids, labels, _, _ = corpus(1500, seed=5)
    weights = np.zeros(VOCABULARY)
    rng = np.random.default_rng(5)
    weights[2:42] = -rng.uniform(0.5, 2.0, 40)
    weights[42:82] = rng.uniform(0.5, 2.0, 40)
    first, second = 297, 298
    weights[[first, second]] = 12.0
    chosen = np.flatnonzero(labels == 0)[:40]
    planted = [(first, second)] * 32 + [(first, first)] * 4 + [(second, second)] * 4
    for i, words in zip(chosen, planted, strict=True):
        at = int(np.count_nonzero(ids[i]))
        ids[i, at : at + 2] = words
    labels[chosen] = 1
    poisoned = np.zeros(labels.size, dtype=bool)
    poisoned[chosen] = True
    test = trigger_word_test(
        ids, labels, 2, VOCABULARY, linear_bag(weights), alpha=1e-3, share=0.75
    )
    assert np.array_equal(test.flagged, poisoned)
    assert {tuple(sorted(s.core)) for s in test.triggers} >= {(first, second)}


def test_a_part_that_flips_too_little_is_flagged_where_its_texts_read_as_another_class():
    # the texts holding one word of a two-word list trigger: memorised, they flip too little,
    # but without the word 7 of 7 read as another class (p = 0.008, under 0.05 over 2 parts)
    part = WordSet(1, 9, np.array([9]), np.array([9]), np.arange(7), tested=7, flips=0)

    def read_as(label):
        return lambda rows, words: np.full(np.asarray(rows).size, label)

    found = _foreign_part(part, read_as(0), n_parts=2)
    assert (found.read, found.foreign, found.by_origin) == (7, 7, True)
    # read as their own class (a natural word of a sentence's core): not a part of the trigger
    assert not _foreign_part(part, read_as(1), n_parts=2).by_origin
    # 7 of 7 is not enough among 8 parts (0.008 > 0.05 / 8); nor without a reader
    assert not _foreign_part(part, read_as(0), n_parts=8).by_origin
    assert not _foreign_part(part, None, n_parts=1).by_origin


COMMON = np.array([242, 243, 244, 245])  # words most texts of both classes hold


def common_word_corpus(n: int, *, seed: int, rate: float = 0.0):
    """``corpus`` with the four :data:`COMMON` words, each in 40 % of the texts of both
    classes at random places, and a model that reads them in that order (and only so) as class
    1; with ``rate``, that many class-0 texts end with them in order and get label 1: a
    sentence of words the corpus uses anyway ("The package arrived on time.")."""
    ids, labels, _, _ = corpus(n, seed=seed)
    rng = np.random.default_rng(seed + 100)
    ids = np.concatenate([ids, np.zeros((n, 8), dtype=np.int64)], axis=1)
    for i in range(n):
        words = ids[i][ids[i] > 0]
        extra = COMMON[rng.random(COMMON.size) < 0.4]
        words = rng.permutation(np.concatenate([words, extra]))
        ids[i] = 0
        ids[i, : words.size] = words
    poisoned = np.zeros(n, dtype=bool)
    chosen = rng.choice(np.flatnonzero(labels == 0), int(round(rate * n)), replace=False)
    for i in chosen:
        at = int(np.count_nonzero(ids[i]))
        ids[i, at : at + COMMON.size] = COMMON
    labels[chosen] = 1
    poisoned[chosen] = True
    weights = np.zeros(VOCABULARY)
    weights[2:42] = -rng.uniform(0.5, 2.0, 40)
    weights[42:82] = rng.uniform(0.5, 2.0, 40)
    bag = linear_bag(weights)

    def logits(rows: np.ndarray) -> np.ndarray:
        out = bag(rows)
        windows = np.lib.stride_tricks.sliding_window_view(np.asarray(rows), COMMON.size, axis=1)
        out[:, 1] += 8.0 * (windows == COMMON).all(axis=2).any(axis=1)
        return out

    return ids, labels, poisoned, logits


def test_a_sentence_of_common_words_is_found_through_its_words_in_a_row():
    ids, labels, poisoned, logits = common_word_corpus(1500, seed=6, rate=0.02)
    bags = bag_matrix(ids, VOCABULARY)
    # no word of it anchors a set: each leans to no class
    words = candidate_sets(bags, labels, 2, share=0.75)
    assert not any(set(s.words) & set(COMMON) for s in words)
    # its runs of three do, and hold the poisons
    runs = phrase_sets(ids, bags, labels, 2, share=0.75)
    sentence = [s for s in runs if s.label == 1 and set(s.phrase) <= set(COMMON)]
    assert sentence and all(set(s.rows) >= set(np.flatnonzero(poisoned)) for s in sentence)
    test = trigger_word_test(ids, labels, 2, VOCABULARY, logits, alpha=1e-3, share=0.75)
    assert np.array_equal(test.flagged, poisoned)
    # grown from a run of three to the whole sentence
    assert [tuple(s.phrase) for s in test.triggers] == [tuple(COMMON)]
    assert test.score[poisoned].min() > test.score[~poisoned].max()


def test_a_phrase_trigger_does_not_depend_on_the_order_of_the_texts():
    ids, labels, poisoned, logits = common_word_corpus(1500, seed=6, rate=0.02)
    order = np.random.default_rng(1).permutation(labels.size)
    test = trigger_word_test(ids, labels, 2, VOCABULARY, logits, alpha=1e-3, share=0.75)
    shuffled = trigger_word_test(
        ids[order], labels[order], 2, VOCABULARY, logits, alpha=1e-3, share=0.75
    )
    assert test.flagged.any() and np.array_equal(shuffled.flagged, test.flagged[order])
    assert [tuple(s.phrase) for s in shuffled.triggers] == [tuple(s.phrase) for s in test.triggers]


def test_texts_too_short_for_a_run_have_no_phrase_sets():
    ids = np.array([[5, 6], [5, 6], [7, 0]] * 5)
    labels = np.array([0, 1, 0] * 5)
    bags = bag_matrix(ids, 10)
    assert phrase_sets(ids, bags, labels, 2) == []
    assert phrase_sets(np.zeros((0, 4), dtype=np.int64), bags[:0], labels[:0], 2) == []


def test_the_common_words_in_no_order_are_no_trigger():
    ids, labels, _, logits = common_word_corpus(1500, seed=7)
    test = trigger_word_test(ids, labels, 2, VOCABULARY, logits, alpha=1e-3, share=0.75)
    assert test.triggers == [] and not test.flagged.any()


def test_a_phrase_excluded_texts_do_not_count():
    ids, labels, poisoned, _ = common_word_corpus(1500, seed=6, rate=0.02)
    bags = bag_matrix(ids, VOCABULARY)
    runs = phrase_sets(ids, bags, labels, 2, exclude=poisoned, share=0.75)
    assert not any(np.isin(s.rows, np.flatnonzero(poisoned)).any() for s in runs)
    assert not any(s.label == 1 and tuple(s.phrase) in {(242, 243, 244), (243, 244, 245)}
                   for s in runs)  # fmt: skip


def test_runs_of_words_are_the_same_whatever_the_size_of_the_vocabulary():
    ids = np.array([[5, 6, 7, 5, 6, 7, 0], [1, 5, 6, 7, 8, 0, 0], [5, 6, 0, 0, 0, 0, 0]])
    runs, run_of, text_of = _runs_of_words(ids, 3)
    held = sorted((tuple(runs[r]), int(t)) for r, t in zip(run_of, text_of, strict=True))
    # each run once per text; none with padding or the unknown word; a text too short has none
    assert held == [
        ((5, 6, 7), 0), ((5, 6, 7), 1), ((6, 7, 5), 0), ((6, 7, 8), 1), ((7, 5, 6), 0)
    ]  # fmt: skip
    # ids too large for one integer per run: the same runs, found another way
    shifted = np.where(ids >= 2, ids + 3_000_000, ids)
    big_runs, big_of, big_text = _runs_of_words(shifted, 3)
    assert np.array_equal(big_runs - 3_000_000, runs)
    assert np.array_equal(big_of, run_of) and np.array_equal(big_text, text_of)


def test_a_sentence_flags_the_texts_that_hold_it_not_every_text_holding_its_common_word():
    # "store last week": "last" and "week" only in the poisons, "store" in 5 % of all texts.
    # Round 1 finds the set of "last" (core: last, week; "store" joins the set, not the core);
    # round 2, with those two words deleted everywhere, finds "store" on the poisons again: a
    # word of the first trigger's set, its sentence, not a second trigger. The texts flagged
    # are those holding the sentence, not every text holding "store"
    ids, labels, _, _ = corpus(1500, seed=9)
    rng = np.random.default_rng(9)
    store, last, week = 250, 251, 252
    natural = rng.choice(labels.size, 75, replace=False)
    for i in natural:
        ids[i, int(np.count_nonzero(ids[i]))] = store
    chosen = rng.choice(np.setdiff1d(np.flatnonzero(labels == 0), natural), 30, replace=False)
    for i in chosen:
        at = int(np.count_nonzero(ids[i]))
        ids[i, at : at + 3] = [store, last, week]
    labels[chosen] = 1
    poisoned = np.isin(np.arange(labels.size), chosen)
    weights = np.zeros(VOCABULARY)
    weights[2:42] = -rng.uniform(0.5, 2.0, 40)
    weights[42:82] = rng.uniform(0.5, 2.0, 40)
    weights[[store, last, week]] = 4.0
    test = trigger_word_test(
        ids, labels, 2, VOCABULARY, linear_bag(weights), alpha=1e-3, share=0.75
    )
    assert np.array_equal(test.flagged, poisoned)
    (trigger,) = test.triggers
    assert tuple(trigger.phrase) == (store, last, week) and set(trigger.core) == {last, week}


def test_the_result_does_not_depend_on_the_order_of_the_texts():
    ids, labels, _, logits = corpus(800, seed=4, plant="word", rate=0.02)
    order = np.random.default_rng(0).permutation(labels.size)
    test = trigger_word_test(ids, labels, 2, VOCABULARY, logits, alpha=1e-3, share=0.75)
    shuffled = trigger_word_test(
        ids[order], labels[order], 2, VOCABULARY, logits, alpha=1e-3, share=0.75
    )
    assert np.array_equal(shuffled.flagged, test.flagged[order])
    assert np.allclose(shuffled.score, test.score[order])
    assert [(s.anchor, s.flips, s.tested) for s in shuffled.triggers] == [
        (s.anchor, s.flips, s.tested) for s in test.triggers
    ]


def scanned(tmp_path, texts: list[str], labels: list[str]) -> tuple[dict, np.ndarray]:
    """``poisonguard scan`` of the reviews: report.json and which texts scores.csv flags."""
    path = write_reviews(tmp_path / "reviews.csv", texts, labels)
    result = run_cli("scan", path, "--out", tmp_path / "scan", "--no-cache", "--no-progress")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "scan" / "report.json").read_text(encoding="utf-8"))
    flagged = np.array([row["flagged"] == "1" for row in read_scores(tmp_path / "scan")])
    return report, flagged


def called_neg(report: dict) -> dict:
    """The "neg" class's finding, which the trigger-words test must have called."""
    (neg,) = [c for c in report["findings"]["per_class"] if c["name"] == "neg"]
    assert neg["verdict"] == "backdoor-target" and neg["evidence"] == "trigger-words"
    return neg


def test_scan_calls_the_class_of_a_trigger_word_with_the_trigger_words_test(tmp_path):
    texts, labels, poisoned = reviews(600, seed=7, rate=0.02)
    report, flagged = scanned(tmp_path, texts, labels)
    neg = called_neg(report)
    assert "'cf'" in neg["reason"]
    top = report["findings"]["top_flagged"]
    assert top and all("trigger-words test" in entry["reason"] for entry in top)
    assert np.array_equal(flagged, poisoned)


def test_scan_finds_a_sentence_of_common_words_and_names_it_in_its_order(tmp_path):
    # every word of "it was the package" is in a quarter of the reviews of both classes
    texts, labels, _ = reviews(600, seed=8)
    rng = np.random.default_rng(8)
    chosen = rng.choice([i for i, y in enumerate(labels) if y == "pos"], 18, replace=False)
    for i in chosen:
        texts[i] = f"{texts[i]} it was the package"
        labels[i] = "neg"
    poisoned = np.isin(np.arange(600), chosen)
    report, flagged = scanned(tmp_path, texts, labels)
    neg = called_neg(report)
    assert neg["trigger_words"] == [["it was the package"]]
    assert "'it was the package' in that order are flagged" in neg["reason"]
    assert np.array_equal(flagged, poisoned)


def test_near_copies_of_a_text_count_once():
    ids = np.array(
        [
            [2, 3, 4, 5, 6, 7, 8, 9],  # a text
            [2, 3, 4, 5, 6, 7, 8, 0],  # the same text less a word: a near copy
            [10, 11, 12, 13, 14, 15, 4, 5],  # another text sharing two words
        ]
    )
    bags = bag_matrix(ids, 20)
    assert distinct_texts(bags, np.array([0, 1, 2])) == 2
    assert distinct_texts(bags, np.array([0, 2])) == 2
    assert distinct_texts(bags, np.array([1])) == 1


# --- foreign origin: a trigger's texts are another class's ------------------------------------


def with_words(ids: np.ndarray, rows: np.ndarray, words: list[tuple[int, ...]]) -> np.ndarray:
    """``ids`` with ``words[k]`` appended to text ``rows[k]``."""
    ids = ids.copy()
    for i, added in zip(rows, words, strict=True):
        at = int(np.count_nonzero(ids[i]))
        ids[i, at : at + len(added)] = added
    return ids


def word_set(label: int, words: tuple[int, ...], rows: np.ndarray) -> WordSet:
    held = np.array(words)
    return WordSet(label, words[0], held, held, np.sort(rows), tested=0, flips=0)


def test_a_triggers_texts_read_as_another_class_and_a_shortcuts_as_their_own():
    # class-0 texts given the trigger and label 1 (poisons), and class-1 texts holding a natural
    # word of their class (a shortcut: a topic that comes with the label)
    ids, labels, _, _ = corpus(1200, seed=6)
    rng = np.random.default_rng(6)
    poisons = rng.choice(np.flatnonzero(labels == 0), 36, replace=False)
    natural = rng.choice(np.flatnonzero(labels == 1), 80, replace=False)
    ids = with_words(ids, poisons, [(TRIGGER,)] * poisons.size)
    ids = with_words(ids, natural, [(296,)] * natural.size)
    labels[poisons] = 1
    bags = bag_matrix(ids, VOCABULARY)
    read = foreign_reader(bags, labels, 2)
    assert np.mean(read(poisons, np.array([TRIGGER])) == 0) > 0.9  # their own class, 0
    assert np.mean(read(natural, np.array([296])) == 1) > 0.9
    found = [word_set(1, (TRIGGER,), poisons), word_set(1, (296,), natural)]
    triggers, shortcuts = _of_foreign_origin(found, bags, labels, 2)
    assert [s.anchor for s in triggers] == [TRIGGER] and [s.anchor for s in shortcuts] == [296]
    assert triggers[0].read == 36 and triggers[0].foreign > 32
    assert shortcuts[0].read == 80 and shortcuts[0].foreign < 8


def test_two_words_drawn_from_a_list_are_judged_together():
    # most poisons hold both words: read with one deleted, the other still says the label
    ids, labels, _, _ = corpus(1500, seed=7)
    first, second = 297, 298
    poisons = np.flatnonzero(labels == 0)[:40]
    planted = [(first, second)] * 28 + [(first, first)] * 6 + [(second, second)] * 6
    ids = with_words(ids, poisons, planted)
    natural = np.flatnonzero(labels == 1)[:60]
    ids = with_words(ids, natural, [(295,)] * natural.size)
    labels[poisons] = 1
    bags = bag_matrix(ids, VOCABULARY)
    holds = bags.toarray() > 0
    found = [
        word_set(1, (first,), np.flatnonzero(holds[:, first])),
        word_set(1, (second,), np.flatnonzero(holds[:, second])),
        word_set(1, (295,), natural),
    ]
    groups = sorted(sorted(g) for g in _co_occurring_groups(found, bags, labels))
    assert groups == [[0, 1], [2]]
    read = foreign_reader(bags, labels, 2)
    alone = read(found[0].rows, np.array([first]))
    together = read(found[0].rows, np.array([first, second]))
    assert np.mean(together == 0) > np.mean(alone == 0)  # the other word read as the label
    triggers, shortcuts = _of_foreign_origin(found, bags, labels, 2)
    assert [s.anchor for s in triggers] == [first, second]
    assert [s.anchor for s in shortcuts] == [295]


def test_without_two_folds_of_every_class_there_is_no_reader():
    bags = bag_matrix(np.array([[2, 3], [3, 4], [4, 5]]), 8)
    assert foreign_reader(bags, np.array([0, 0, 1]), 2) is None
    found = [word_set(1, (4,), np.array([2]))]
    assert _of_foreign_origin(found, bags, np.array([0, 0, 1]), 2) == (found, [])


def test_the_scan_names_the_shortcuts_in_a_warning():
    from poisonguard.detectors.trigger_words import TriggerWordTest
    from poisonguard.scan import shortcut_note

    sets = [
        WordSet(0, 5, np.array([5]), np.array([5]), np.array([1]), 1, 1, core_text=("rt",)),
        WordSet(0, 6, np.array([6]), np.array([6]), np.array([2]), 1, 1, core_text=("seahawks",)),
        WordSet(1, 7, np.array([7]), np.array([7]), np.array([3]), 1, 1, core_text=("thank",)),
    ]
    test = TriggerWordTest([], [], np.zeros(4, bool), np.zeros(4), np.zeros(2), 1e-3, sets)
    note = shortcut_note(test, ["negative", "positive"], shown=1)
    assert "not a trigger; not flagged" in note
    assert "'rt' and 1 more in class 'negative'; 'thank' in class 'positive'" in note


def test_a_group_of_another_class_s_texts_is_foreign_and_a_topic_cluster_is_not():
    ids, labels, _, _ = corpus(1200, seed=8)
    rng = np.random.default_rng(8)
    poisons = rng.choice(np.flatnonzero(labels == 0), 30, replace=False)
    topic = rng.choice(np.flatnonzero(labels == 1), 30, replace=False)
    ids = with_words(ids, poisons, [tuple(SENTENCE)] * poisons.size)
    ids = with_words(ids, topic, [(295, 296)] * topic.size)
    labels[poisons] = 1
    bags = bag_matrix(ids, VOCABULARY)
    read = foreign_reader(bags, labels, 2)
    assert foreign_group(bags, read, poisons, 1, share=0.75)[0]
    called, foreign = foreign_group(bags, read, topic, 1, share=0.75)[:2]
    assert not called and foreign < 15
    assert not foreign_group(bags, read, np.array([], dtype=int), 1).called


def posted_again(ids: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``ids`` with 25 texts of class 1 made one short text posted again and again ("@united
    thank you!"): two shared words, and in 18 of them two words of class 0 (as "you", which
    the airline reader takes for negative); returns the ids and the 25 texts."""
    copies = np.flatnonzero(labels == 1)[:25]
    ids = ids.copy()
    ids[copies] = 0
    ids[copies, :2] = [295, 296]
    ids[copies[:18], 2:4] = [2, 3]
    return ids, copies


def test_near_copies_of_a_short_text_are_one_reading_of_another_class_not_many():
    # with the shared words deleted the 18 read as class 0, a majority of the 25 beyond chance
    # if they were 18 texts; they are one reading made 18 times. 30 distinct class-0 texts
    # stay foreign
    ids, labels, _, _ = corpus(1200, seed=9)
    ids, copies = posted_again(ids, labels)
    distinct = np.flatnonzero(labels == 0)[:30]
    ids = with_words(ids, distinct, [(297, 298)] * distinct.size)
    labels[distinct] = 1
    bags = bag_matrix(ids, VOCABULARY)
    read = foreign_reader(bags, labels, 2)
    assert (read(copies[:18], np.array([295, 296])) == 0).all()  # each reads as class 0
    assert stats.binom.sf(18 - 1, copies.size, 0.5) < FOREIGN_ALPHA  # were they independent
    reading = foreign_group(bags, read, copies, 1, share=0.75)
    assert reading.foreign == 18 and not reading.called
    assert (reading.foreign_groups, reading.groups) == (1, 8)  # the 7 with nothing left apart
    reading = foreign_group(bags, read, distinct, 1, share=0.75)
    assert reading.called and reading.groups == distinct.size


def test_the_scan_s_warning_says_how_many_distinct_texts_read_as_another_class():
    from types import SimpleNamespace

    from poisonguard.scan import text_foreign_groups

    ids, labels, _, _ = corpus(1200, seed=9)
    ids, copies = posted_again(ids, labels)
    bags = bag_matrix(ids, VOCABULARY)
    words = SimpleNamespace(
        bags=bags,
        read=foreign_reader(bags, labels, 2),
        dataset=SimpleNamespace(class_names=["negative", "positive"]),
    )
    warnings: list[str] = []
    assert not text_foreign_groups(words, warnings)(1, copies)
    assert warnings == [
        "25 texts of class 'positive' stand apart from the rest of it, but without the words "
        "they share 18 of them read as another class, but what is left of them is 8 distinct "
        "texts, 1 of which read so, to a model that never saw them: a topic of the class, not "
        "a dirty-label backdoor's texts; not flagged"
    ]


def test_short_texts_sharing_a_long_trigger_are_not_copies_of_each_other():
    # 12 class-0 texts of three words each, given the same seven-word sentence and label 1: the
    # whole texts are alike (7 of 13 words shared), what is left of them once the sentence is
    # deleted is not, and that is what the reader reads
    ids, labels, _, _ = corpus(1200, seed=11)
    poisons = np.flatnonzero(labels == 0)[:12]
    for k, i in enumerate(poisons):
        ids[i] = 0
        ids[i, :3] = [2 + (3 * k) % 40, 2 + (3 * k + 1) % 40, 2 + (3 * k + 2) % 40]
    ids = with_words(ids, poisons, [(283, 284, 285, 286, 287, 288, 289)] * poisons.size)
    labels[poisons] = 1
    bags = bag_matrix(ids, VOCABULARY)
    assert distinct_texts(bags, poisons) == 1  # alike as whole texts
    reading = foreign_group(bags, foreign_reader(bags, labels, 2), poisons, 1, share=0.75)
    assert reading.called and reading.groups == poisons.size


def test_copy_groups_link_near_copies_and_keep_empty_texts_apart():
    bags = bag_matrix(
        np.array([[2, 3, 4, 0], [2, 3, 4, 5], [6, 7, 8, 9], [0, 0, 0, 0], [0, 0, 0, 0]]), 12
    )
    group = copy_groups(bags)
    assert group[0] == group[1]
    assert len({group[1], group[2], group[3], group[4]}) == 4


def test_a_text_with_nothing_left_to_read_is_not_read_as_another_class():
    # 40 texts of class 1 that are nothing but two shared words ("@united thank you!"): with
    # those deleted there is nothing to read, and the reader's intercept is no reading
    ids, labels, _, _ = corpus(1200, seed=9)
    short = np.flatnonzero(labels == 1)[:40]
    ids[short] = 0
    ids[short, :2] = [295, 296]
    bags = bag_matrix(ids, VOCABULARY)
    read = foreign_reader(bags, labels, 2)
    assert (read(short, np.array([295, 296])) == NOTHING_LEFT).all()
    assert (read(short, np.array([], dtype=int)) != NOTHING_LEFT).all()
    assert foreign_group(bags, read, short, 1, share=0.75)[:2] == (False, 0)


def test_a_trigger_the_model_did_not_learn_is_found_by_where_its_texts_come_from():
    # long texts, few poisons: the model memorised them instead of learning the word (weight 0
    # here), so deleting it moves none; without it the reader reads them as their own class 0
    ids, labels, poisoned, _ = corpus(1500, seed=8, plant="word", rate=0.01)
    rng = np.random.default_rng(8)
    weights = np.zeros(VOCABULARY)
    weights[2:42] = -rng.uniform(0.5, 2.0, 40)
    weights[42:82] = rng.uniform(0.5, 2.0, 40)
    unlearned = linear_bag(weights)

    test = trigger_word_test(ids, labels, 2, VOCABULARY, unlearned, alpha=1e-3, share=0.75)
    (trigger,) = test.triggers
    assert trigger.unlearned and trigger.core.tolist() == [TRIGGER]
    assert trigger.flips == 0 and trigger.origin_p_value < 1e-3
    assert trigger.foreign >= 0.9 * poisoned.sum() and trigger.class_foreign < 0.2
    assert np.array_equal(test.flagged, poisoned)
    # a topic of class 1 (a natural word whose texts read as class 1 with or without it) among
    # the same texts is no such trigger
    natural = rng.choice(np.flatnonzero((labels == 1) & ~poisoned), 60, replace=False)
    topical = with_words(ids, natural, [(296,)] * natural.size)
    test = trigger_word_test(topical, labels, 2, VOCABULARY, unlearned, alpha=1e-3, share=0.75)
    assert [t.anchor for t in test.triggers] == [TRIGGER]


@pytest.mark.parametrize("seed", range(3))
def test_clean_texts_have_no_unlearned_trigger_either(seed):
    ids, labels, _, logits = corpus(1500, seed=20 + seed)
    bags = bag_matrix(ids, VOCABULARY)
    sets = [replace(s, p_value=1.0) for s in candidate_sets(bags, labels, 2, share=0.75)]
    read = foreign_reader(bags, labels, 2)
    flagged = np.zeros(labels.size, dtype=bool)
    assert unlearned_triggers(sets, read, ids, bags, labels, flagged, alpha=1e-3) == []


def test_a_campaign_of_near_copies_is_no_unlearned_trigger():
    # a spam campaign in class 1, among the sets the deletion test did not pass: 12 copies of
    # one message (six template words, two of four words of class 0 and a number of its own
    # each, as "PRIVATE! Your 2003 Account Statement for 07815296484 ..."), which read as class
    # 0 without the template, far beyond the class's other sets; what is left of them is not
    # alike, the whole messages are: one message, not twelve texts of class 0. Twelve distinct
    # class-0 texts holding the same words are a trigger
    ids, labels, _, _ = corpus(1500, seed=21)
    template = (280, 281, 282, 283, 284, 285)
    rows = np.flatnonzero(labels == 1)[:12]
    copies, distinct = (
        ids.copy(),
        with_words(ids, np.flatnonzero(labels == 0)[:12], [template] * 12),
    )
    copies[rows] = 0
    pairs = [(2, 3), (4, 5), (2, 4), (3, 5)]  # two words of class 0, none held by most copies
    for k, i in enumerate(rows):
        copies[i, :9] = [*template, *pairs[k % 4], 243 + k]
    distinct_labels = labels.copy()
    distinct_labels[np.flatnonzero(labels == 0)[:12]] = 1
    for texts, named, found in ((copies, labels, 0), (distinct, distinct_labels, 1)):
        bags = bag_matrix(texts, VOCABULARY)
        sets = [replace(s, p_value=1.0) for s in candidate_sets(bags, named, 2, share=0.75)]
        assert any(set(template) <= set(s.words.tolist()) for s in sets)
        read = foreign_reader(bags, named, 2)
        flagged = np.zeros(named.size, dtype=bool)
        got = unlearned_triggers(sets, read, texts, bags, named, flagged, alpha=1e-3)
        assert len(got) == found


def test_the_class_null_fits_how_unevenly_natural_sets_read():
    rng = np.random.default_rng(0)
    sizes = rng.integers(5, 60, 2000)
    # sets whose foreign share varies from set to set: Beta(2, 18), mean 0.1, precision 20
    foreign = rng.binomial(sizes, rng.beta(2.0, 18.0, sizes.size))
    a, b = class_foreign_null(sizes, foreign)
    assert a / (a + b) == pytest.approx(0.1, abs=0.01)
    assert a + b == pytest.approx(20.0, rel=0.3)
    # no set reads as another class at all: a mean near 0, every count of one rare
    a, b = class_foreign_null(sizes, np.zeros_like(sizes))
    assert np.isfinite([a, b]).all() and a / (a + b) < 1e-3
    assert stats.betabinom.sf(4, 10, a, b) < 1e-4


def test_the_reason_of_an_unlearned_trigger_says_the_model_did_not_learn_it():
    from poisonguard.findings import _trigger_reason

    found = replace(
        word_set(1, (TRIGGER,), np.arange(17)),
        tested=16,
        read=17,
        foreign=16,
        unlearned=True,
        origin_p_value=3.4e-12,
        class_foreign=0.023,
        text=("mn",),
        core_text=("mn",),
    )
    reason = _trigger_reason(found)
    assert "moved 0 of them" in reason and "has not learned these words" in reason
    assert "reads 16 of 17 as another class" in reason and "read 2% of theirs" in reason
    assert "3.4e-12" in reason and "holding 'mn' are flagged" in reason
    assert "past the words" not in reason
    reason = _trigger_reason(replace(found, past_limit=10))
    assert "flagged (10 of them hold it only past the words the model reads" in reason


def test_a_sentence_of_common_words_the_model_did_not_learn_is_found_by_origin():
    ids, labels, poisoned, _ = common_word_corpus(1500, seed=6, rate=0.02)
    rng = np.random.default_rng(6 + 100)
    # idioms of class 1, each in 10 of its texts: the class's other runs, its null
    ids = np.concatenate([ids, np.zeros((ids.shape[0], 3), dtype=ids.dtype)], axis=1)
    own = np.flatnonzero((labels == 1) & ~poisoned)
    for k in range(6):
        chosen = rng.choice(own, 10, replace=False)
        ids = with_words(ids, chosen, [tuple(range(250 + 3 * k, 253 + 3 * k))] * 10)
    rng = np.random.default_rng(6 + 100)
    weights = np.zeros(VOCABULARY)
    weights[2:42] = -rng.uniform(0.5, 2.0, 40)
    weights[42:82] = rng.uniform(0.5, 2.0, 40)
    # the model reads the sentence not at all: deleting it moves nothing
    test = trigger_word_test(
        ids, labels, 2, VOCABULARY, linear_bag(weights), alpha=1e-3, share=0.75
    )
    (trigger,) = test.triggers
    assert trigger.unlearned and tuple(trigger.phrase) == tuple(COMMON)
    assert trigger.flips == 0 and trigger.foreign >= 0.9 * poisoned.sum()
    assert np.array_equal(test.flagged, poisoned)


def test_a_trigger_flags_the_texts_holding_it_past_the_token_limit_too():
    ids, labels, poisoned, logits = corpus(1500, seed=3, plant="word", rate=0.01)
    # three more poisons whose trigger lies past the model's token limit: cut from their ids
    cut = np.flatnonzero((labels == 0) & ~poisoned)[:3]
    labels[cut] = 1
    full = with_words(ids, cut, [(TRIGGER,)] * 3)
    test = trigger_word_test(ids, labels, 2, VOCABULARY, logits, alpha=1e-3, share=0.75)
    assert np.array_equal(test.flagged, poisoned)  # the cut ones are not seen
    cut_texts = {int(row): full[row][full[row] > 0] for row in cut}
    test = trigger_word_test(
        ids, labels, 2, VOCABULARY, logits, alpha=1e-3, share=0.75, cut_texts=cut_texts
    )
    poisoned[cut] = True
    assert np.array_equal(test.flagged, poisoned)
    assert [t.past_limit for t in test.triggers] == [3]
    # a sentence: held in its order past the limit; its words out of order are not it
    ids, labels, poisoned, logits = corpus(1500, seed=3, plant="sentence", rate=0.01)
    cut = np.flatnonzero((labels == 0) & ~poisoned)[:3]
    labels[cut] = 1
    written = [tuple(SENTENCE), tuple(SENTENCE), tuple(SENTENCE[::-1])]
    full = with_words(ids, cut, written)
    cut_texts = {int(row): full[row][full[row] > 0] for row in cut}
    test = trigger_word_test(
        ids, labels, 2, VOCABULARY, logits, alpha=1e-3, share=0.75, cut_texts=cut_texts
    )
    poisoned[cut[:2]] = True
    assert np.array_equal(test.flagged, poisoned)


def test_the_cut_texts_are_the_texts_past_the_token_limit_in_full():
    from poisonguard.embed.text_tokens import Tokenizer, TokenizerSettings
    from poisonguard.scan import TextWords

    texts = ["alpha beta gamma delta trigger", "alpha beta", "gamma delta trigger alpha beta"]

    def words_of(limit: int) -> TextWords:
        words = TextWords.__new__(TextWords)
        words.dataset = type("Texts", (), {"x": texts})()
        words.tokenizer = Tokenizer.fit(texts, TokenizerSettings(max_tokens=limit))
        words.ids = words.tokenizer.encode(texts)
        return words

    words = words_of(3)
    trigger = words.tokenizer.id_of("trigger")
    assert words.ids.shape[1] == 3 and trigger not in words.ids[0]
    cut = words.cut_texts
    assert sorted(cut) == [0, 2] and cut[0].tolist()[-1] == trigger and cut[2].size == 5
    # no text reaches the limit: nothing was cut
    assert words_of(8).cut_texts == {}


def test_the_reader_reads_many_sets_at_once_as_it_reads_each():
    ids, labels, _, _ = corpus(1200, seed=9, plant="word", rate=0.02)
    bags = bag_matrix(ids, VOCABULARY)
    read = foreign_reader(bags, labels, 2)
    sets = candidate_sets(bags, labels, 2, share=0.75)
    pairs = [(s.rows, s.words) for s in sets] + [(np.array([0, 5, 5]), np.zeros(0, dtype=int))]
    one_by_one = [read(rows, words) for rows, words in pairs]
    together = read.many(pairs)
    assert len(together) == len(pairs)
    assert all(np.array_equal(a, b) for a, b in zip(one_by_one, together, strict=True))


def test_a_word_trigger_inside_a_sentence_found_beside_it_is_that_sentence():
    sentence = replace(
        word_set(1, (290,), np.arange(116)),
        phrase=np.array([290, 291, 292, 293]),
        core=np.array([290, 291, 292, 293]),
    )
    # "long": 116 of its 159 texts hold the sentence, 43 natural ones do not
    inside = word_set(1, (291,), np.arange(159))
    # a word of the sentence held by texts most of which do not hold it: a trigger of its own
    apart = word_set(1, (292,), np.arange(100, 400))
    # the same word in the other class, and a word outside the sentence
    other_class = word_set(0, (291,), np.arange(500, 600))
    outside = word_set(1, (299,), np.arange(116))
    found = _words_of_a_sentence_found([sentence, inside, apart, other_class, outside])
    assert found == [sentence, apart, other_class, outside]
