"""Words that carry a label on their own: the deletion test for text triggers.

A text backdoor inserts the same word (BadNL, Chen et al., ACSAC 2021) or sentence (InsertSent,
Dai, Chen & Li, IEEE Access 2019) into texts of other classes and labels them as the target. The
model learns the trigger as a shortcut, so in the poisoned texts the trigger alone carries the
label: **deleted, the rest of the text is read as another class**. A natural word of a class
(``terrific`` in five-star reviews) is almost never the only reason for its texts' label; the
rest of a review says the same thing. This is the idea of Backdoor Keyword Identification (Chen &
Dai, Neurocomputing 2021), turned into a test with a null model:

1. **Candidate word sets** (:func:`candidate_sets`). For each class ``c`` and each word ``t``
   held by at least ``min_texts`` texts labelled ``c`` (the *anchor*), the set ``S(t)`` is every
   word held by at least ``share`` of those texts. An inserted sentence's words always come
   together, so the set of any of its rare words is the whole sentence (common words such as
   ``the`` may join; deleting them changes little); a trigger word's set is the word itself.
   Anchors that give the same set are tested once.
2. **Deletion** (:func:`deletion_flips`). In each text of class ``c`` holding the anchor that the
   model predicts as ``c``, the words of ``S(t)`` are deleted and the text predicted again. A
   *flip* is a text that another class then wins with odds of at least three to one
   (:data:`FLIP_ODDS`): what is left reads as another class. Deleting a strong natural word
   leaves a text undecided more often than reversed (on the reviews below, the few natural flips
   ended within 0.9 of the boundary in logits; a trigger's, up to 5.5).
3. **Null model** (:func:`trigger_word_test`). Flipped texts that are near copies of each other
   (:data:`COPY_JACCARD`) count once. Some texts flip whatever word is deleted: they sit
   near the boundary. Without a trigger, flips fall on a set's texts at the class's pooled rate
   ``q_c`` (all flips over all tested texts of the class, the trigger's included, which only
   makes the test more cautious), so a set's flips are ``Binomial(n, q_c)``. A set whose flips
   have a tail probability below ``alpha`` divided by the number of sets tested (Bonferroni)
   passes.
4. **Foreign origin** (:func:`foreign_reader`, :func:`_of_foreign_origin`). A natural corpus
   has words that carry a label on their own too: in crowd-labelled tweets a topic's hashtag
   ("deflategate": 4,853 negative tweets) or a word of thanks. Deleted, they move a few per
   cent of their texts, which thousands of texts make significant: on 23,140 clean tweets
   steps 1-3 flagged 9,107 (39 %). What tells a dirty-label trigger apart is where its texts
   come from: without it they are another class's texts. So a set that passed is read once
   more, its words deleted, by a model that never saw its texts (logistic regression on the
   words' TF-IDF, cross-fitted), and is a trigger only if that model reads a majority of them
   as another class, beyond chance (:data:`FOREIGN_ALPHA`, Bonferroni over the groups of sets
   that share their texts). Triggers on the benchmark's reviews: 64-89 % read as another class;
   the tweets' natural sets at most 22 of 33 ("weak", p = 0.04 against 0.005); sets rejected so
   are returned as ``shortcuts`` for the report.
5. **Phrases** (:func:`phrase_sets`). A sentence made only of words the corpus uses anyway
   ("The package arrived on time.") gives no word a set of its own: each word's natural texts
   outnumber the poisons. Its words *in a row* are rare, so, once the word sets are done, runs
   of :data:`PHRASE_WORDS` words anchor sets in the texts not flagged yet, tested as in steps
   2-4 against the class's first-round rate, a family of its own (Bonferroni over the phrases).
   A phrase trigger is grown to the words around it that ``share`` of its texts hold too (the
   whole sentence) and flags the texts of its class holding that, in order; a run that does not
   grow beyond its three words is an idiom of the corpus, its texts going on in different ways
   ("thank you for" in airline tweets), and is returned as a shortcut. On the benchmark's
   reviews: the package sentence at 3 % into "great", 15 of 122 flip (p below 1e-300); at 1 %
   into "other", seed 21: 3 of 44 (p = 1.7e-7); seed 20: 1 of 44, not found (the model learned
   that trigger weakly: 40.7 % attack success against the clean model's 13.8 %).
6. **Triggers the model did not learn** (:func:`unlearned_triggers`). A rare word among the 400
   words of a news article is not what the model learns from a few dozen poisons: it memorises them,
   and deleting the word moves none. Their origin still shows: every set the deletion test did not
   pass is read by the foreign-origin reader, and a set whose texts read as another class far more
   often than the class's other sets' do (a beta-binomial null fitted to those sets, Bonferroni over
   the sets) and by a majority beyond chance (near copies once: the messages of one spam campaign
   are one) is a trigger too; the phrase sets the deletion test did not pass are judged so as well,
   in a family of their own. A trigger also flags the texts of its class that hold it past the
   model's token limit (``cut_texts``). On BBC News articles: 12 of 12 planted triggers found,
   against 2 of 12 by steps 1-5 alone, and 11 of 12 fresh ones; on the unpoisoned articles, tweets
   and reviews nothing (docs/benchmarks.md, twenty-first session).

Measured on 4,000 real reviews (``benchmarks/text.py``; the text model the scan trains): ``cf``
inserted into 1 % of them, 11 of its 41 texts flip (the model has memorised the others) against
a pooled rate of 0.0004, p = 4e-26 after the correction; an inserted sentence at 1 %, 26 of 42
flip, p = 3e-66; on the clean corpus the most significant set had an adjusted p of 0.16 (1 flip
of 7 texts). Shares of 0.6 and 0.9 were tried: at 0.6 so many common words join every set that
deleting them reverses natural texts (a natural set reached p = 3e-5); at 0.9 a sentence of
words that also occur naturally ("The weather was lovely that afternoon.") splits into sets too
small to flip its texts.

The samples of a trigger are the texts of its class that hold its *core*: the words of the set
held by hardly more texts of the class than the anchor (at most ``1 / share`` times as many),
i.e. the trigger's own words, without the common words that joined the set. Where its texts
hold the anchor inside one run of at least :data:`PHRASE_WORDS` words (grown word by word while
``share`` of them agree: an inserted sentence), the samples are the texts holding that run
instead, so that natural texts holding the core's words apart ("last week") are not flagged.
A trigger found in a later round on a word of an earlier trigger's set is that trigger's
sentence, not a second trigger (:func:`_standing_on_their_own`). A core of several
words may be a list the attacker drew from (BadNL draws trigger words from a list): the texts
that hold only some of its words are then tested word by word (:func:`_core_parts`), in a
family of their own tested only after a trigger is found. The per-sample
score is the largest drop of a text's margin (its label's logit over the largest other) when one
of its sets is deleted.

The functions are plain array functions; the model is a callable ``logits(rows) -> (n, K)``
taking rows of token ids (:mod:`poisonguard.embed.text_tokens`, padding 0).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np
from scipy import sparse, stats
from scipy.sparse import csgraph

__all__ = [
    "COPY_JACCARD",
    "FLIP_ODDS",
    "FOREIGN_ALPHA",
    "MIN_TEXTS",
    "NOTHING_LEFT",
    "PHRASE_WORDS",
    "PURITY_ALPHA",
    "SHARE",
    "TriggerWordTest",
    "WordSet",
    "bag_matrix",
    "candidate_sets",
    "deletion_flips",
    "ForeignReading",
    "copy_groups",
    "distinct_texts",
    "foreign_group",
    "foreign_reader",
    "named_word_sets",
    "phrase_sets",
    "trigger_word_test",
    "unlearned_triggers",
    "class_foreign_null",
]

MIN_TEXTS = 5
"""A word must be held by at least this many texts of a class to anchor a set (the decision's
smallest group)."""
SHARE = 0.9
"""A word joins an anchor's set when at least this share of the anchor's texts hold it."""
PURITY_ALPHA = 0.05
"""A word anchors a set in a class only if the class holds more of its texts than the class's
share of all texts would give, at this one-sided binomial level (a screen, not the test)."""
FLIP_ODDS = 3.0
"""A deletion flips a text when another class then wins with at least these odds against the
text's label (its logit exceeds the label's by ``log(3)``): what is left of the text reads as
another class, not merely as undecided."""
PHRASE_WORDS = 3
"""A phrase anchor is this many words in a row (:func:`phrase_sets`)."""
MAX_ROUNDS = 3
"""Rounds of the test: after a round that finds triggers, they are deleted from every text and
the other sets tested again (a trigger of two words drawn from a list: the texts holding both
flip only when both are gone). The correction counts every set of every round."""
FOREIGN_ALPHA = 0.05
"""A set that passes the deletion test is a trigger only if, its words deleted, its texts read as
another class to a model that never saw them, by a majority beyond chance: a one-sided binomial
test against one half at this level (:func:`foreign_reader`)."""
CO_OCCURRING = 0.25
"""Share of a set's texts that must hold another found set's anchor for the foreign-origin
check to delete that set's words too (:func:`_of_foreign_origin`)."""
READER_C = 1.0
"""Inverse regularisation of the foreign-origin reader's logistic regression (scikit-learn's
default). C = 10 was tried: the shipped poisoned reviews' 60 "cf" texts (sources "great") read
as another class 37 -> 42 times, but three sentence triggers into "great" (sources "other",
1-4 star reviews, which read as "great" more often) fell below the bar, 0 flagged. Reading
only the texts holding a set's whole core was tried too: it lost the two-word trigger of
seed 12 (14 of 21 read as another class, against 21 of 28 holding the anchor)."""
FOREIGN_FOLDS = 5
"""Folds of the foreign-origin check's cross-fitted reader."""
COPY_JACCARD = 0.5
"""Flipped texts whose sets of words overlap this much (Jaccard) count as one flip: near copies of
a text (a review posted twice, a word changed) flip together, and the null model takes the
texts as independent."""
_READ_ROWS = 50_000  # texts read in one batch by a reader of many sets (memory, not results)
_COPY_ROWS = 512  # texts whose overlaps with all the others are held at once (memory)
_FIRST_WORD_ID = 2  # ids 0 and 1 are padding and the unknown word
_BATCH_ROWS = 4096

Logits = Callable[[np.ndarray], np.ndarray]
Reader = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``read(rows, words)``: the class read in texts ``rows`` with ``words`` deleted
(:data:`NOTHING_LEFT` for a text with no word left)."""
NOTHING_LEFT = -1
"""What a reader returns for a text with no word left once the words are deleted: neither its
own class nor another (:func:`_foreign`)."""


@dataclass(frozen=True)
class WordSet:
    """One candidate set of words of one class and what deleting it did.

    ``words`` are the token ids deleted together, ``core`` those specific to the anchor's texts
    (the anchor among them), ``rows`` the texts of class ``label`` holding the anchor, ``tested``
    how many of them the model predicted as ``label`` and ``flips`` how many of those left it
    when the words were deleted. ``p_value`` is the Bonferroni-adjusted binomial tail (capped at
    1). ``text`` and ``core_text`` are the words as text, once :func:`named_word_sets` has named
    them. ``read`` and ``foreign``: of ``rows``, how many the foreign-origin check read (0 when it
    did not run) and how many of those it read as another class (:func:`foreign_reader`).
    ``phrase``: for a set anchored on words in a row (:func:`phrase_sets`), their ids in order
    (empty for a set anchored on one word); ``rows`` are then the texts holding them in that
    order, and ``core`` their distinct words. A phrase grown from its anchor (or a word trigger
    whose core its texts hold as one run) keeps what it was tested on in ``anchor_run`` (the
    run; empty: the anchor word), named in ``anchor_text``. ``by_origin``: a part of a
    trigger's core that passed by where its texts come from alone (:func:`_foreign_part`).
    ``unlearned``: a set the deletion test did not pass whose texts read as another class far
    more often than the class's other sets' do (:func:`unlearned_triggers`): ``origin_p_value``
    is that tail, Bonferroni-adjusted, and ``class_foreign`` the class's sets' mean share.
    ``past_limit``: the texts it flags that hold it only past the model's token limit.
    """

    label: int
    anchor: int
    words: np.ndarray
    core: np.ndarray
    rows: np.ndarray
    tested: int
    flips: int
    p_value: float = 1.0
    text: tuple[str, ...] = ()
    core_text: tuple[str, ...] = ()
    read: int = 0
    foreign: int = 0
    phrase: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    anchor_run: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    anchor_text: str = ""
    by_origin: bool = False
    unlearned: bool = False
    origin_p_value: float = 1.0
    class_foreign: float = float("nan")
    past_limit: int = 0


@dataclass(frozen=True)
class TriggerWordTest:
    """The deletion test over every class: its sets, the triggers among them, the flagged
    texts (those of a trigger's class holding its whole core) and the per-sample score.
    ``shortcuts`` are the sets that passed the deletion test but whose texts, their words
    deleted, still read as their own class (:func:`foreign_reader`): words that carry the label
    in a natural corpus (a topic's hashtag in crowd-labelled tweets), not triggers."""

    sets: list[WordSet]
    triggers: list[WordSet]
    flagged: np.ndarray
    score: np.ndarray
    flip_rate: np.ndarray  # per class: the pooled rate q_c of the null model
    alpha: float
    shortcuts: list[WordSet] = field(default_factory=list)


def bag_matrix(ids: np.ndarray, vocabulary_size: int) -> sparse.csr_matrix:
    """Which words each text holds: a binary ``(N, vocabulary_size)`` CSR matrix from rows of
    token ids (padding and the unknown word left out)."""
    ids = np.asarray(ids)
    n = ids.shape[0]
    rows = np.repeat(np.arange(n), ids.shape[1])
    words = ids.ravel()
    known = words >= _FIRST_WORD_ID
    matrix = sparse.csr_matrix(
        (np.ones(int(known.sum()), dtype=np.float32), (rows[known], words[known])),
        shape=(n, vocabulary_size),
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def candidate_sets(
    bags: sparse.csr_matrix,
    labels: np.ndarray,
    n_classes: int,
    *,
    min_texts: int = MIN_TEXTS,
    share: float = SHARE,
    purity_alpha: float = PURITY_ALPHA,
) -> list[WordSet]:
    """The candidate word sets of every class (step 1 of the module docstring), not yet tested.

    Sets are ordered by class, then by anchor id; of the anchors that give the same set the one
    held by the most texts is kept (ties: the smallest id).
    """
    labels = np.asarray(labels)
    everywhere = np.diff(bags.tocsc().indptr)
    found: list[WordSet] = []
    for label in range(n_classes):
        members = np.flatnonzero(labels == label)
        if members.size < min_texts:
            continue
        in_class = bags[members].tocsc()
        counts = np.diff(in_class.indptr)
        anchors = np.flatnonzero(counts >= min_texts)
        # a word held as often in this class as the class's share of texts predicts cannot be
        # a trigger: every poisoned text holding it has this label
        share_of_texts = members.size / labels.size
        leaning = stats.binom.sf(counts[anchors] - 1, everywhere[anchors], share_of_texts)
        anchors = anchors[leaning < purity_alpha]
        if anchors.size == 0:
            continue
        # co-occurrence of each anchor with every word, in the texts of this class
        together = (in_class[:, anchors].T @ in_class).tocsr()
        together.sort_indices()
        by_words: dict[bytes, WordSet] = {}
        for position, anchor in enumerate(anchors):
            start, end = together.indptr[position], together.indptr[position + 1]
            words = together.indices[start:end]
            shared = together.data[start:end]
            held = int(counts[anchor])
            words = words[shared >= share * held]
            key = words.tobytes()
            previous = by_words.get(key)
            if previous is not None and previous.rows.size >= held:
                continue
            core = words[counts[words] <= held / share]
            rows = members[in_class.indices[in_class.indptr[anchor] : in_class.indptr[anchor + 1]]]
            by_words[key] = WordSet(
                label=label,
                anchor=int(anchor),
                words=words,
                core=core,
                rows=np.sort(rows),
                tested=0,
                flips=0,
            )
        found.extend(sorted(by_words.values(), key=lambda s: s.anchor))
    return found


def phrase_sets(
    ids: np.ndarray,
    bags: sparse.csr_matrix,
    labels: np.ndarray,
    n_classes: int,
    *,
    exclude: np.ndarray | None = None,
    length: int = PHRASE_WORDS,
    min_texts: int = MIN_TEXTS,
    share: float = SHARE,
    purity_alpha: float = PURITY_ALPHA,
) -> list[WordSet]:
    """Candidate sets anchored on ``length`` words in a row, for the sentences made of words a
    corpus uses anyway.

    An inserted sentence with one rare word is found through that word's set (step 1 of the
    module docstring). "The package arrived on time." has none: each of its words is held by
    more natural texts of the class than poisons, so no word's set is the sentence. Its words in
    a row are rare, though: on 4,000 reviews poisoned at 1 %, "package arrived on" is held by the
    40 poisons and 3 natural texts. So each run of ``length`` known words held by at least
    ``min_texts`` texts of a class, leaning to it as a word anchor must, anchors a set: the
    words held by ``share`` of the texts holding the run, in its order. Its ``rows`` are those
    texts (not every text holding its words), its ``core`` the run's distinct words; texts
    ``exclude`` marks (those the word sets' triggers flag) are left out. Of runs giving the same
    words, the one held by the most texts is kept, as of words (ties: the smallest ids): a run
    across the sentence's end ("whole family i") has its words too, in fewer of its texts.
    A run's set may have the words of a word's set: it is tested on other texts, those holding
    the run. ("We bought this for the whole family." at 2 %, seed 31: the set of "family" was
    the sentence, but judged with that of "whole", whose 63 natural texts read as their own
    class, it was taken for a shortcut; the texts holding "the whole family" are the 80 poisons,
    70 of them read as another class.)
    """
    ids = np.asarray(ids)
    labels = np.asarray(labels)
    n, width = ids.shape
    if width < length or n == 0:
        return []
    counted = np.ones(n, dtype=bool) if exclude is None else ~np.asarray(exclude, dtype=bool)
    runs, run_of, text_of = _runs_of_words(ids, length)
    if runs.shape[0] == 0:
        return []
    holders = sparse.csr_matrix(
        (np.ones(run_of.size, dtype=np.float32), (run_of, text_of)), shape=(runs.shape[0], n)
    )
    everywhere = np.rint(holders @ counted.astype(np.float32)).astype(np.int64)
    found: list[WordSet] = []
    for label in range(n_classes):
        in_class = ((labels == label) & counted).astype(np.float32)
        counts = np.rint(holders @ in_class).astype(np.int64)
        anchors = np.flatnonzero(counts >= min_texts)
        if anchors.size == 0:
            continue
        share_of_texts = float(in_class.sum() / max(int(counted.sum()), 1))
        leaning = stats.binom.sf(counts[anchors] - 1, everywhere[anchors], share_of_texts)
        anchors = anchors[leaning < purity_alpha]
        if anchors.size == 0:
            continue
        members = sparse.csr_matrix(holders[anchors] @ sparse.diags(in_class))
        members.eliminate_zeros()
        together = (members @ bags).tocsr()
        together.sort_indices()
        by_words: dict[bytes, WordSet] = {}
        for position, run in enumerate(anchors):
            start, end = together.indptr[position], together.indptr[position + 1]
            held = int(counts[run])
            words = together.indices[start:end][together.data[start:end] >= share * held]
            key = words.astype(np.int64).tobytes()
            previous = by_words.get(key)
            if previous is not None and previous.rows.size >= held:
                continue
            phrase = runs[run]
            rows = members.indices[members.indptr[position] : members.indptr[position + 1]]
            by_words[key] = WordSet(
                label=label,
                anchor=int(phrase[0]),
                words=words,
                core=np.array(list(dict.fromkeys(phrase.tolist())), dtype=words.dtype),
                rows=np.sort(rows),
                tested=0,
                flips=0,
                phrase=phrase,
                anchor_run=phrase,
            )
        found.extend(sorted(by_words.values(), key=lambda s: tuple(s.phrase)))
    return found


def _runs_of_words(ids: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every run of ``length`` known words in a row that a text holds: the distinct runs
    ``(R, length)``, sorted, and one ``(run, text)`` pair per text holding a run (``run_of``,
    ``text_of``), each pair once. Built a block of texts at a time, so that memory follows the
    words the texts hold, not ``length`` copies of the padded matrix. A run is one integer
    (its ids in base ``max id + 1``) where that fits in 62 bits (vocabularies up to 1.6 million
    words for runs of three), else a row of ``length`` ids (slower)."""
    base = int(np.max(ids, initial=0)) + 1
    as_integer = base**length < 2**62
    width = 1 if as_integer else length
    pieces = [np.zeros((0, width + 1), dtype=np.int64)]
    for start in range(0, ids.shape[0], _BATCH_ROWS):
        block = np.asarray(ids[start : start + _BATCH_ROWS], dtype=np.int64)
        positions = block.shape[1] - length + 1
        if positions < 1:
            continue
        columns = [block[:, k : k + positions] for k in range(length)]
        known = np.logical_and.reduce([c >= _FIRST_WORD_ID for c in columns])
        texts = np.broadcast_to(np.arange(start, start + block.shape[0])[:, None], known.shape)
        if as_integer:
            key = np.zeros(int(known.sum()), dtype=np.int64)
            for column in columns:
                key = key * base + column[known]
            pieces.append(np.column_stack([key, texts[known]]))
        else:
            pieces.append(np.column_stack([c[known] for c in columns] + [texts[known]]))
    pairs = np.concatenate(pieces)
    if as_integer:
        order = np.lexsort((pairs[:, 1], pairs[:, 0]))
        pairs = pairs[order]
        first = np.ones(pairs.shape[0], dtype=bool)
        first[1:] = (np.diff(pairs, axis=0) != 0).any(axis=1)
        pairs = pairs[first]
        keys, run_of = np.unique(pairs[:, 0], return_inverse=True)
        runs = np.empty((keys.size, length), dtype=np.int64)
        for k in range(length - 1, -1, -1):
            runs[:, k] = keys % base
            keys = keys // base
    else:
        pairs = np.unique(pairs, axis=0)
        runs, run_of = np.unique(pairs[:, :length], axis=0, return_inverse=True)
    return runs, run_of.reshape(-1), pairs[:, width]


def _margins(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each row's logit of its label over the largest other logit."""
    own = logits[np.arange(logits.shape[0]), labels]
    others = logits.copy()
    others[np.arange(logits.shape[0]), labels] = -np.inf
    return own - others.max(axis=1)


def deletion_flips(
    sets: list[WordSet],
    ids: np.ndarray,
    labels: np.ndarray,
    logits: Logits,
    *,
    odds: float = FLIP_ODDS,
) -> tuple[list[WordSet], np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Delete each set's words from its texts and predict again (step 2): a flip is a text
    that another class then wins with at least ``odds`` to one against its label.

    Returns the sets with ``tested`` and ``flips`` filled in, per text the largest drop of its
    margin over the sets it belongs to (0 for a text in no set), and the flips as two arrays:
    the index of the set and the flipped text.
    """
    ids = np.asarray(ids)
    labels = np.asarray(labels)
    n = ids.shape[0]
    lengths = np.count_nonzero(ids, axis=1)
    base = np.empty(n, dtype=np.float64)
    base_predicted = np.empty(n, dtype=np.int64)
    for start in range(0, n, _BATCH_ROWS):
        block = slice(start, start + _BATCH_ROWS)
        width = max(1, int(lengths[block].max(initial=0)))
        out = np.asarray(logits(ids[block, :width]), dtype=np.float64)
        base[block] = _margins(out, labels[block])
        base_predicted[block] = out.argmax(axis=1)
    drop = np.zeros(n, dtype=np.float64)
    flips = np.zeros(len(sets), dtype=np.int64)
    tested = np.zeros(len(sets), dtype=np.int64)
    no_pairs = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    if not sets:
        return [], drop, no_pairs
    # every (set, text) pair, shortest texts first, so that a batch is padded to little more
    # than its own texts' length
    pair_set = np.concatenate([np.full(s.rows.size, i) for i, s in enumerate(sets)])
    pair_row = np.concatenate([s.rows for s in sets])
    order = np.argsort(lengths[pair_row], kind="stable")
    pair_set, pair_row = pair_set[order], pair_row[order]
    # (set, word) keys of the words each set deletes, for one vectorised lookup per batch
    stride = int(ids.max(initial=0)) + 1
    deleted = np.unique(
        np.concatenate([i * stride + s.words.astype(np.int64) for i, s in enumerate(sets)])
    )
    set_labels = np.array([s.label for s in sets])
    flipped_sets, flipped_rows = [], []
    for start in range(0, pair_row.size, _BATCH_ROWS):
        rows = pair_row[start : start + _BATCH_ROWS]
        owners = pair_set[start : start + _BATCH_ROWS]
        width = max(1, int(lengths[rows].max(initial=0)))
        block = ids[rows, :width].astype(np.int64)
        keys = owners[:, None] * stride + block
        block[np.isin(keys, deleted)] = 0
        out = np.asarray(logits(block), dtype=np.float64)
        label = set_labels[owners]
        kept = base_predicted[rows] == label
        flipped = kept & (_margins(out, label) <= -np.log(odds))
        np.add.at(tested, owners, kept)
        np.add.at(flips, owners, flipped)
        flipped_sets.append(owners[flipped])
        flipped_rows.append(rows[flipped])
        np.maximum.at(drop, rows, base[rows] - _margins(out, labels[rows]))
    done = [
        replace(s, tested=int(t), flips=int(f)) for s, t, f in zip(sets, tested, flips, strict=True)
    ]
    pairs = (np.concatenate(flipped_sets), np.concatenate(flipped_rows))
    return done, np.maximum(drop, 0.0), pairs


def distinct_texts(
    bags: sparse.csr_matrix, rows: np.ndarray, *, jaccard: float = COPY_JACCARD
) -> int:
    """How many groups of near copies ``rows`` form (:func:`copy_groups`)."""
    if rows.size < 2:
        return int(rows.size)
    return int(copy_groups(bags[rows], jaccard=jaccard).max()) + 1


def copy_groups(held: sparse.csr_matrix, *, jaccard: float = COPY_JACCARD) -> np.ndarray:
    """The group of near copies of each text of ``held`` (one row per text, its word counts),
    numbered from 0: texts whose sets of words have a Jaccard index of at least ``jaccard`` are
    linked, and linked texts are one group. A text with no word is a group of its own."""
    held = sparse.csr_matrix(held)
    n = held.shape[0]
    if n < 2:
        return np.zeros(n, dtype=np.int64)
    held = sparse.csr_matrix((held > 0).astype(np.float32))
    sizes = np.asarray(held.sum(axis=1)).ravel()
    links = []
    for start in range(0, n, _COPY_ROWS):  # a few hundred texts' overlaps at a time (memory)
        stop = min(start + _COPY_ROWS, n)
        shared = (held[start:stop] @ held.T).toarray()
        union = sizes[start:stop, None] + sizes[None, :] - shared
        links.append(sparse.csr_matrix(shared >= jaccard * np.maximum(union, 1)))
    _, group = csgraph.connected_components(sparse.vstack(links), directed=False)
    return group.astype(np.int64)


def _without_words(held: sparse.csr_matrix, words: np.ndarray) -> sparse.csr_matrix:
    """``held`` (texts' word counts) with the columns of ``words`` zeroed: what is left of the
    texts once those words are deleted."""
    keep = np.ones(held.shape[1], dtype=np.float32)
    keep[np.asarray(words, dtype=np.int64)] = 0.0
    return sparse.csr_matrix(held @ sparse.diags(keep))


def _foreign_majority(
    held: sparse.csr_matrix, is_foreign: np.ndarray, alpha: float
) -> tuple[bool, int, int]:
    """Whether texts read as another class (``is_foreign``) by a majority beyond chance: a
    one-sided binomial test against one half below ``alpha``, near copies among ``held`` (the
    words of each text, or of what is left of it: :func:`copy_groups`) counted once, as the
    deletion test counts flips: the binomial takes its texts as independent. A group of
    copies reads as another class when most of its texts do. Returns the verdict, the groups
    that read as another class and the groups."""
    group = copy_groups(held)
    size = np.bincount(group)
    foreign = int(np.count_nonzero(2 * np.bincount(group, weights=is_foreign) > size))
    return float(stats.binom.sf(foreign - 1, size.size, 0.5)) < alpha, foreign, int(size.size)


def foreign_reader(
    bags: sparse.csr_matrix,
    labels: np.ndarray,
    n_classes: int,
    *,
    folds: int = FOREIGN_FOLDS,
    seed: int = 0,
) -> Reader | None:
    """``read(rows, words)``: the class a model that never saw them reads in texts ``rows`` with
    the words ``words`` deleted; None where no such model can be fitted (a class with fewer
    texts than two folds need).

    The model is a logistic regression (balanced class weights, so that a large class does not
    take the undecided texts) on TF-IDF of the words each text holds (``bags``; the same
    vocabulary as the text model), cross-fitted over ``folds`` stratified folds
    (:func:`_content_folds`): a text is read by the fit that left its fold out. Deleting words
    is zeroing their columns before the rows are normalised again.
    """
    from sklearn.linear_model import LogisticRegression

    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=n_classes)
    present = counts[counts > 0]
    k = min(folds, int(present.min())) if present.size else 0
    if present.size < 2 or k < 2:
        return None
    n = labels.size
    document_frequency = np.asarray(bags.sum(axis=0)).ravel()
    idf = np.log((1.0 + n) / (1.0 + document_frequency)) + 1.0

    def tfidf(held: sparse.csr_matrix) -> sparse.csr_matrix:
        weighted = sparse.csr_matrix(held.multiply(idf[None, :]))
        norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1)).ravel())
        return sparse.csr_matrix(sparse.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ weighted)

    columns = tfidf(bags)
    fold = _content_folds(bags, labels, k, seed)
    models = [
        LogisticRegression(C=READER_C, max_iter=1000, class_weight="balanced").fit(
            columns[fold != i], labels[fold != i]
        )
        for i in range(k)
    ]

    def predicted(rows: np.ndarray, held: sparse.csr_matrix) -> np.ndarray:
        held = tfidf(held)
        out = np.full(rows.size, NOTHING_LEFT, dtype=np.int64)
        # a text with no word left has nothing to read: the model would answer with its
        # intercept ("@united thank you!" without "united", "thank", "you")
        left = np.diff(held.indptr) > 0
        for i in range(k):
            mine = (fold[rows] == i) & left
            if mine.any():
                out[mine] = models[i].predict(held[mine])
        return out

    def read(rows: np.ndarray, words: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        return predicted(rows, _without_words(bags[rows], words))

    def read_many(pairs: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        # every (rows, words) of ``pairs`` read as ``read`` would, the texts of many pairs
        # stacked into one matrix (one fit's predictions for thousands of small sets at once)
        out: list[np.ndarray] = []
        start = 0
        while start < len(pairs):
            stop, stacked = start, 0
            while stop < len(pairs) and (stop == start or stacked < _READ_ROWS):
                stacked += int(np.asarray(pairs[stop][0]).size)
                stop += 1
            batch = pairs[start:stop]
            sizes = np.array([np.asarray(r).size for r, _ in batch], dtype=np.int64)
            rows = np.concatenate([np.asarray(r, dtype=np.int64) for r, _ in batch])
            held = sparse.csr_matrix(bags[rows], dtype=np.float32)
            owner = np.repeat(np.arange(len(batch), dtype=np.int64), sizes)
            at = np.repeat(owner, np.diff(held.indptr))
            width = np.int64(bags.shape[1])
            deleted = np.concatenate(
                [p * width + np.asarray(w, dtype=np.int64) for p, (_, w) in enumerate(batch)]
            )
            held.data[np.isin(at * width + held.indices, deleted)] = 0.0
            held.eliminate_zeros()
            out.extend(np.split(predicted(rows, held), np.cumsum(sizes)[:-1]))
            start = stop
        return out

    read.many = read_many  # type: ignore[attr-defined]
    return read


def foreign_group(
    bags: sparse.csr_matrix,
    read: Reader,
    rows: np.ndarray,
    label: int,
    *,
    share: float = SHARE,
) -> ForeignReading:
    """Whether the texts ``rows`` of class ``label`` are another class's texts: with the words
    at least ``share`` of them hold deleted (what they have in common: a trigger, a topic), a
    majority of them read as another class, beyond chance (:data:`FOREIGN_ALPHA`), by ``read``
    (:func:`foreign_reader`).

    What is left of texts that are near copies of each other is one reading, counted once
    (:func:`_foreign_majority`): 28 tweets "@united thank you!" of class "positive", with
    "united" and "thank" deleted, are 28 times "you", which the reader took for "negative":
    one weak word, not 28 texts of another class. The copies are judged on what is left, not
    on the whole texts: a long trigger in short texts makes the whole texts alike (twelve
    short reviews, each with the same seven-word sentence, were one text). Returns the
    verdict, how many texts read as another class, and of how many groups of copies how many
    did (:class:`ForeignReading`)."""
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        return ForeignReading(False, 0, 0, 0)
    held = bags[rows]
    words = np.flatnonzero(np.asarray(held.sum(axis=0)).ravel() >= share * rows.size)
    is_foreign = _foreign(read(rows, words), label)
    left = _without_words(held, words)
    called, foreign_groups, groups = _foreign_majority(left, is_foreign, FOREIGN_ALPHA)
    return ForeignReading(called, int(np.count_nonzero(is_foreign)), foreign_groups, groups)


class ForeignReading(NamedTuple):
    """:func:`foreign_group`'s verdict: ``called``; ``foreign`` texts read as another class;
    ``foreign_groups`` of the ``groups`` of near copies did."""

    called: bool
    foreign: int
    foreign_groups: int
    groups: int


def _foreign(read: np.ndarray, label: int) -> np.ndarray:
    """Which readings are another class than ``label``: a text with nothing left to read
    (:data:`NOTHING_LEFT`) is not; the majority tests count it against the texts read."""
    return (read != label) & (read != NOTHING_LEFT)


def _content_folds(bags: sparse.csr_matrix, labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Stratified folds that follow the texts, not their order: within each class the texts
    are ranked by a hash of the words they hold (and ``seed``) and dealt out in turn, so the
    same corpus in another order is read the same way."""
    bags = bags.copy()
    bags.sort_indices()
    salt = np.int64(seed).tobytes()
    keys = np.array(
        [
            hashlib.blake2b(
                bags.indices[bags.indptr[i] : bags.indptr[i + 1]].tobytes(), digest_size=8, key=salt
            ).digest()
            for i in range(labels.size)
        ]
    )
    fold = np.empty(labels.size, dtype=np.int64)
    for label in np.unique(labels):
        mine = np.flatnonzero(labels == label)
        fold[mine[np.argsort(keys[mine], kind="stable")]] = np.arange(mine.size) % k
    return fold


def _of_foreign_origin(
    found: list[WordSet],
    bags: sparse.csr_matrix,
    labels: np.ndarray,
    n_classes: int,
    reader: Callable[[], Reader | None] | None = None,
) -> tuple[list[WordSet], list[WordSet]]:
    """The sets the deletion test found, split into triggers and shortcuts, each with its
    counts: a trigger's texts, its words deleted, read as another class by a majority beyond
    chance (:func:`foreign_reader`). Where no reader can be fitted every set is a trigger, as
    before the check.

    Sets are judged in groups: the sets found in one class that share their texts (at least
    :data:`CO_OCCURRING` of one set's texts hold the other's anchor, more often than the
    class's texts do: a one-sided hypergeometric tail under :data:`FOREIGN_ALPHA`), joined
    transitively. A trigger of two words drawn from a list is one group: either word alone
    leaves the other in two thirds of the texts, and the reader, fitted on the other poisons,
    reads that word as the label. Natural words found in one class share few texts ("great" is
    in 9 % of the crowd-labelled tweets holding "thanks"). A group's texts are read with all
    its words deleted, and it is a trigger when the foreign ones are a majority beyond chance:
    a one-sided binomial test against one half at :data:`FOREIGN_ALPHA` divided by the number
    of groups (on 23,140 crowd-labelled tweets 19 natural sets in 10 groups passed the deletion
    test; the most foreign, "weak", 22 of its 33 texts, p = 0.04).
    """
    if not found:
        return found, []
    read = reader() if reader is not None else foreign_reader(bags, labels, n_classes)
    if read is None:
        return found, []
    groups = _co_occurring_groups(found, bags, labels)
    counted: list[WordSet] = list(found)
    accepted: set[int] = set()
    for group in groups:
        rows = np.unique(np.concatenate([found[i].rows for i in group]))
        deleted = np.unique(np.concatenate([found[i].words for i in group]))
        is_foreign = _foreign(read(rows, deleted), found[group[0]].label)
        tail = float(stats.binom.sf(int(is_foreign.sum()) - 1, rows.size, 0.5))
        for i in group:
            mine = np.isin(rows, found[i].rows)
            foreign = int(np.count_nonzero(is_foreign[mine]))
            counted[i] = replace(found[i], read=int(mine.sum()), foreign=foreign)
            if tail < FOREIGN_ALPHA / len(groups):
                accepted.add(i)
    # in the order the deletion test found them
    triggers = [s for i, s in enumerate(counted) if i in accepted]
    shortcuts = [s for i, s in enumerate(counted) if i not in accepted]
    return triggers, shortcuts


def _co_occurring_groups(
    found: list[WordSet], bags: sparse.csr_matrix, labels: np.ndarray
) -> list[list[int]]:
    """Indices into ``found``, grouped: sets of one class joined when they share their texts
    (see :func:`_of_foreign_origin`)."""
    parent = list(range(len(found)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, first in enumerate(found):
        others = [b for b, s in enumerate(found) if s.label == first.label and b != a]
        in_class = int(np.count_nonzero(labels == first.label))
        for b in others:
            second = found[b]
            # the texts of the class holding the other's anchor (word or phrase): its rows
            together = int(np.intersect1d(first.rows, second.rows, assume_unique=True).size)
            tail = stats.hypergeom.sf(together - 1, in_class, second.rows.size, first.rows.size)
            if together >= CO_OCCURRING * first.rows.size and tail < FOREIGN_ALPHA / len(others):
                parent[root(a)] = root(b)
    groups: dict[int, list[int]] = {}
    for i in range(len(found)):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def trigger_word_test(
    ids: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    vocabulary_size: int,
    logits: Logits,
    *,
    alpha: float,
    min_texts: int = MIN_TEXTS,
    share: float = SHARE,
    reader: Callable[[], Reader | None] | None = None,
    cut_texts: Mapping[int, np.ndarray] | None = None,
) -> TriggerWordTest:
    """Find the word sets that carry their class's label on their own (the module docstring).

    Parameters
    ----------
    ids : ndarray of int, shape (N, L)
        Each text's token ids, padded with 0.
    labels : ndarray of int, shape (N,)
    n_classes, vocabulary_size : int
    logits : callable
        ``logits(rows)`` gives the model's class logits ``(n, n_classes)`` for rows of ids.
    alpha : float
        The family-wise false-call rate over all sets tested.
    reader : callable, optional
        Gives the foreign-origin reader of these texts (:func:`foreign_reader`), for a caller
        that needs it too and fits it once; by default it is fitted here when a set passes.
    cut_texts : mapping of int to ndarray, optional
        The token ids in full of the texts ``ids`` cut at the model's token limit, by row: a
        trigger also flags those of its class that hold it past the limit (the model never saw
        it there, but the text carries it all the same: "mn" at the end of BBC News articles
        longer than 512 words, 10 of 27 poisons).
    """
    labels = np.asarray(labels, dtype=np.int64)
    ids = np.asarray(ids)
    bags = bag_matrix(ids, vocabulary_size)
    candidates = candidate_sets(bags, labels, n_classes, min_texts=min_texts, share=share)
    found_words = np.zeros(0, dtype=np.int64)
    n_tests = 0
    score = None
    rounds: list[list[WordSet]] = []  # the sets each round found
    for _ in range(MAX_ROUNDS):
        # later rounds: the triggers found so far deleted from every text, so that a second
        # trigger word in the same texts (two words drawn from a list) is tested on its own
        todo = [c for c in candidates if not np.isin(c.anchor, found_words)]
        if not todo:
            break
        seen = ids if found_words.size == 0 else np.where(np.isin(ids, found_words), 0, ids)
        tested_sets, round_score, flip_rate = _test_round(
            todo, seen, labels, n_classes, bags, logits
        )
        score = round_score if score is None else score
        n_tests += len(tested_sets)
        tested_sets = [_with_p_value(s, flip_rate, n_tests) for s in tested_sets]
        new = [s for s in tested_sets if s.p_value < alpha]
        if found_words.size == 0:
            first_round_sets, first_rate = tested_sets, flip_rate
        if not new:
            break
        rounds.append(new)
        found_words = np.union1d(found_words, np.concatenate([t.core for t in new]))
    if score is None:
        score = np.zeros(labels.size)
        first_round_sets, first_rate = [], np.zeros(n_classes)
    tested_sets, flip_rate = first_round_sets, first_rate
    fitted: list[Reader | None] = []

    def shared_reader() -> Reader | None:
        # fitted on the first need only, once (step 6 reads every corpus with word sets)
        if not fitted:
            fitted.append(
                reader() if reader is not None else foreign_reader(bags, labels, n_classes)
            )
        return fitted[0]

    triggers = _standing_on_their_own(rounds)
    triggers, shortcuts = _of_foreign_origin(triggers, bags, labels, n_classes, shared_reader)
    triggers = _one_per_sentence([_as_written_run(t, ids, labels, share) for t in triggers])
    triggers = _words_of_a_sentence_found(triggers)
    flagged = _flagged_by(triggers, bags, labels)
    # a core of several words: the texts holding only some of them are tested word by word
    parts = _core_parts(triggers, bags, labels, flagged)
    if parts:
        parts, _, _ = _test_round(parts, ids, labels, n_classes, bags, logits)
        # a family of its own, tested only once a trigger is found: the false-call rate of
        # the two families together is at most 2 alpha
        parts = [_with_p_value(s, first_rate, len(parts)) for s in parts]
        for part in parts:
            if part.p_value >= alpha:
                part = _foreign_part(part, shared_reader(), len(parts))
            if part.p_value < alpha or part.by_origin:
                triggers.append(part)
                flagged[part.rows] = True
    # a trigger the model did not learn: another class's texts sharing words, by origin alone
    if first_round_sets:
        for found in unlearned_triggers(
            first_round_sets, shared_reader(), ids, bags, labels, flagged, alpha=alpha, share=share
        ):
            triggers.append(found)
            flagged |= _flagged_by([found], bags, labels)
    # sentences of words the corpus uses anyway: phrase anchors, in the texts not flagged yet
    phrases = phrase_sets(
        ids, bags, labels, n_classes, exclude=flagged, min_texts=min_texts, share=share
    )
    if phrases:
        phrases, phrase_drop, _ = _test_round(phrases, ids, labels, n_classes, bags, logits)
        # a third family, over the phrases only: the false-call rate of the three families
        # together is at most 3 alpha. The rate is pooled over the first round's sets and the
        # phrases, theirs included, as a round's is: a class whose word sets flipped nothing
        # would otherwise make any one flip significant
        rate = _pooled_rate([*first_round_sets, *phrases], n_classes)
        phrases = [_with_p_value(s, rate, len(phrases)) for s in phrases]
        found, rejected = _of_foreign_origin(
            [s for s in phrases if s.p_value < alpha], bags, labels, n_classes, shared_reader
        )
        shortcuts.extend(rejected)
        for phrase in _distinct_phrases(found, share):
            phrase = _grown_phrase(phrase, ids, labels, flagged, share)
            if phrase.phrase.size <= PHRASE_WORDS:
                # an idiom whose texts go on in different ways, not a sentence written the same
                # way in every text: "thank you for" in crowd-labelled airline tweets, 56 of 92
                # read as negative without it (a shortcut, as "thanks" is)
                shortcuts.append(phrase)
                continue
            triggers.append(phrase)
            flagged[phrase.rows] = True
            score[phrase.rows] = np.maximum(score[phrase.rows], phrase_drop[phrase.rows])
        # a fifth family: the phrases the model did not learn, judged by origin as in step 6
        for phrase in unlearned_triggers(
            phrases, shared_reader(), ids, bags, labels, flagged, alpha=alpha, share=share
        ):
            triggers.append(phrase)
            flagged[phrase.rows] = True
    if cut_texts:
        counted = []
        for trigger in triggers:
            past = _holding_past_the_limit(trigger, cut_texts, labels) & ~flagged
            flagged |= past
            counted.append(replace(trigger, past_limit=int(past.sum())) if past.any() else trigger)
        triggers = counted
    # a word set rejected as a shortcut whose core is words of a phrase trigger of its class was
    # that trigger, judged with natural texts ("whole" beside "family"): not a shortcut
    shortcuts = [
        s
        for s in shortcuts
        if not any(
            t.phrase.size and t.label == s.label and np.isin(s.core, t.core).all() for t in triggers
        )
    ]
    return TriggerWordTest(
        sets=tested_sets,
        triggers=triggers,
        flagged=flagged,
        score=score,
        flip_rate=flip_rate,
        alpha=alpha,
        shortcuts=shortcuts,
    )


def unlearned_triggers(
    sets: list[WordSet],
    read: Reader | None,
    ids: np.ndarray,
    bags: sparse.csr_matrix,
    labels: np.ndarray,
    flagged: np.ndarray,
    *,
    alpha: float,
    share: float = SHARE,
) -> list[WordSet]:
    """The sets the deletion test did not pass whose texts, their words deleted, read as
    another class far beyond the class's other sets: a dirty-label trigger the model has not
    learned (it memorised the poisons one by one instead).

    In long texts a rare word is not what a small model learns from a few dozen of them: "mn"
    at the end of 27 BBC News articles (3 % of one topic, articles of some 400 words) moved no
    article when deleted, nor did any trigger of ten such rows. Yet the poisons are still
    another class's texts: without the word, the cross-fitted reader (:func:`foreign_reader`)
    reads 16 of the 17 holding it as the other topic, where the class's other word sets read
    1-2 % of theirs so. The null comes from the class itself: each set's foreign count is taken
    as beta-binomial, fitted by moments (:func:`class_foreign_null`) to the class's
    sets that do not read as another class by a majority; its spread absorbs how unevenly
    natural sets read. A set passes when its tail probability, times the number of sets, is
    below ``alpha`` (a family of its own beside the deletion test's) and its texts read as
    another class by a majority beyond chance (:data:`FOREIGN_ALPHA`, not divided: the null's
    test carries the family). A set found grows to the sentence its texts hold
    (:func:`_as_written_run`; a phrase set to its sentence, :func:`_grown_phrase`, and one that
    does not grow beyond its three words is an idiom, as in step 5), its texts read again; sets
    whose texts are half flagged already are skipped. On crowd-labelled tweets natural sets
    read as another class up to 74 % of the time ("alter" in negative tweets); the fitted
    spread there is wide (10 % of their labels flipped, the best set the deletion test did
    not pass: 0.04 after the correction, 30 of 52, no majority beyond chance) where on the BBC
    News pairs it is narrow (the triggers: at most 4e-7; measured with a maximum-likelihood
    fit, see :func:`class_foreign_null`).
    """
    if read is None or not sets:
        return []
    sizes = np.array([s.rows.size for s in sets], dtype=np.int64)
    many = getattr(read, "many", None)  # a reader of many sets at once (:func:`foreign_reader`)
    pairs = [(s.rows, s.words) for s in sets]
    readings = many(pairs) if many is not None else [read(r, w) for r, w in pairs]
    foreign = np.array(
        [int(np.count_nonzero(_foreign(r, s.label))) for r, s in zip(readings, sets, strict=True)],
        dtype=np.int64,
    )
    set_labels = np.array([s.label for s in sets], dtype=np.int64)
    majority = stats.binom.sf(foreign - 1, sizes, 0.5) < FOREIGN_ALPHA
    tail = np.ones(len(sets))
    class_share = np.full(len(sets), np.nan)
    for label in np.unique(set_labels):
        mine = set_labels == label
        if np.count_nonzero(mine) < MIN_TEXTS:
            continue  # a null from fewer sets than a group's size is no null
        # the null is fitted to the sets that read as their own class by a majority: those
        # of a trigger (one for each word of a sentence) would widen it, the more so in a
        # class of few sets, and only a set reading as another class by a majority can pass
        natural = mine & ~majority
        if np.count_nonzero(natural) < MIN_TEXTS:
            continue
        a, b = class_foreign_null(sizes[natural], foreign[natural])
        tail[mine] = stats.betabinom.sf(foreign[mine] - 1, sizes[mine], a, b)
        class_share[mine] = a / (a + b)
    adjusted = np.minimum(1.0, tail * len(sets))
    taken = flagged.copy()
    found: list[WordSet] = []
    for i in np.argsort(adjusted, kind="stable"):
        candidate = sets[i]
        if adjusted[i] >= alpha:
            break
        if candidate.p_value < alpha or taken[candidate.rows].mean() >= 0.5:
            continue  # judged by the deletion test already, or these texts are flagged
        if candidate.phrase.size:
            grown = _grown_phrase(candidate, ids, labels, taken, share)
            if grown.phrase.size <= PHRASE_WORDS:
                continue  # an idiom of the corpus, as for the phrases the deletion test passed
        else:
            grown = _as_written_run(candidate, ids, labels, share)
        rows = grown.rows[~taken[grown.rows]]
        if rows.size == 0:
            continue
        words = grown.phrase if grown.phrase.size else grown.words
        is_foreign = _foreign(read(rows, words), grown.label)
        count = int(np.count_nonzero(is_foreign))
        # near copies of whole texts count once: a spam campaign's messages, which differ in
        # their numbers and names, are one message (what is left of them, numbers, is not
        # alike: the campaign's words are the set); a trigger the model did not learn sits in
        # long texts, which its words do not make alike
        if not _foreign_majority(bags[rows], is_foreign, FOREIGN_ALPHA)[0]:
            continue
        trigger = replace(
            grown,
            read=int(rows.size),
            foreign=count,
            unlearned=True,
            origin_p_value=float(adjusted[i]),
            class_foreign=float(class_share[i]),
        )
        found.append(trigger)
        taken |= _flagged_by([trigger], bags, labels)
    return found


def class_foreign_null(sizes: np.ndarray, foreign: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` of a beta-binomial for ``foreign[i]`` of ``sizes[i]`` texts read as another
    class, over a class's word sets, by moments: the mean ``p`` is the pooled share (kept half
    a text from 0 and 1 over all the sets) and the intra-set correlation ``rho`` what the
    counts' spread adds to the binomial's,
    ``sum (f - n p)^2 = p (1 - p) sum n (1 + (n - 1) rho)`` (Kleinman, 1973), at least 0 (the
    binomial) and at most 1/2; ``a + b = (1 - rho) / rho``, at most 1e6. Maximum likelihood
    was tried first: where no set of a class reads as another class it has no maximum and
    drifted to the widest spread allowed, so that a sentence read 30 of 30 as another class
    passed for natural (measured: rho 0.00-0.02 on the reviews and the BBC News pairs, up to
    0.1 on crowd-labelled tweets, where natural sets read as another class 0-74 %)."""
    sizes = np.asarray(sizes, dtype=np.float64)
    foreign = np.asarray(foreign, dtype=np.float64)
    total = float(sizes.sum())
    floor = 0.5 / max(total, 1.0)
    p = float(np.clip(foreign.sum() / max(total, 1.0), floor, 1.0 - floor))
    spread = float(np.sum((foreign - sizes * p) ** 2)) - p * (1 - p) * total
    pairs = p * (1 - p) * float(np.sum(sizes * (sizes - 1)))
    rho = float(np.clip(spread / pairs, 0.0, 0.5)) if pairs > 0 else 0.0
    precision = min(1e6, (1 - rho) / rho) if rho > 0 else 1e6
    return p * precision, (1 - p) * precision


def _holding_past_the_limit(
    trigger: WordSet, cut_texts: Mapping[int, np.ndarray], labels: np.ndarray
) -> np.ndarray:
    """The texts of ``cut_texts`` (full token ids by row) of the class of ``trigger`` that hold
    it in full: a phrase in its order, a word trigger's whole core."""
    holds = np.zeros(labels.size, dtype=bool)
    for row, full in cut_texts.items():
        if labels[row] != trigger.label:
            continue
        if trigger.phrase.size:
            holds[row] = bool(_runs_at(full[None, :], np.array([0]), trigger.phrase))
        else:
            holds[row] = bool(np.isin(trigger.core, full).all())
    return holds


def _flagged_by(triggers: list[WordSet], bags: sparse.csr_matrix, labels: np.ndarray) -> np.ndarray:
    """The texts ``triggers`` flag: a phrase's rows (the texts of its class holding it in
    order), a word trigger's texts of its class holding its whole core."""
    flagged = np.zeros(labels.size, dtype=bool)
    for trigger in triggers:
        if trigger.phrase.size:
            flagged[trigger.rows] = True
        else:
            holds = np.asarray(bags[:, trigger.core].sum(axis=1)).ravel() >= trigger.core.size
            flagged |= holds & (labels == trigger.label)
    return flagged


def _standing_on_their_own(rounds: list[list[WordSet]]) -> list[WordSet]:
    """The sets each round found, but those of a later round anchored on a word of an earlier
    trigger's set (of the same class).

    A later round tests with the earlier rounds' core words deleted from every text, so that
    the second of two words drawn from a list is tested on its own; that word is not in the
    first one's set (they share too few texts for that). A word of the first trigger's set that
    is not in its core is the sentence around it: "I found it at the store last week." at 3 %,
    seed 31, round 1 found "last", "week" (with "store" in the set, held by too many natural
    texts to be core); round 2, those two gone from every text, found "store" on the same
    poisons, and flagged 87 natural texts holding it (judged with it, the foreign-origin check
    would also read "last" and "week" with those texts).
    """
    standing: list[WordSet] = []
    earlier: dict[int, np.ndarray] = {}
    for found in rounds:
        this_round = [
            t for t in found if not np.isin(t.anchor, earlier.get(t.label, np.zeros(0))).any()
        ]
        for trigger in this_round:
            earlier[trigger.label] = np.union1d(earlier.get(trigger.label, []), trigger.words)
        standing.extend(this_round)
    return standing


def _one_per_sentence(triggers: list[WordSet]) -> list[WordSet]:
    """``triggers`` without a second one of a class written as the same run (two anchors of one
    sentence that both passed: "3d" and "watched"), the first kept."""
    seen: set[tuple[int, bytes]] = set()
    kept = []
    for trigger in triggers:
        key = (trigger.label, trigger.phrase.astype(np.int64).tobytes())
        if trigger.phrase.size and key in seen:
            continue
        seen.add(key)
        kept.append(trigger)
    return kept


def _words_of_a_sentence_found(triggers: list[WordSet]) -> list[WordSet]:
    """``triggers`` without the word triggers that are a sentence found beside them: every word
    of the core in a phrase trigger of the class, and at least half the word trigger's texts
    holding that phrase. Two anchors of one inserted sentence may both pass; the one whose
    texts agree on the words around it grows into the sentence, the other (a word the corpus
    also uses) would flag every text of the class holding it. "It was a long day at the
    office." in 0.5 % of crowd-labelled tweets: "office" grew into the sentence (116 tweets),
    "long" did not (116 of its 159 tweets hold the sentence, under the 75 % growth needs) and
    flagged 43 natural tweets holding "long"."""
    sentences = [t for t in triggers if t.phrase.size]
    kept = []
    for trigger in triggers:
        if not trigger.phrase.size and any(
            sentence.label == trigger.label
            and np.isin(trigger.core, sentence.phrase).all()
            and np.intersect1d(trigger.rows, sentence.rows).size >= 0.5 * trigger.rows.size
            for sentence in sentences
        ):
            continue
        kept.append(trigger)
    return kept


def _as_written_run(trigger: WordSet, ids: np.ndarray, labels: np.ndarray, share: float) -> WordSet:
    """``trigger`` as the run its texts hold (:func:`_grown_phrase` from its anchor) where that
    run is a sentence (at least :data:`PHRASE_WORDS` words) holding its whole core; else
    ``trigger`` as it is. A rare word inserted among other words grows into nothing (its
    neighbours differ from text to text), nor do two words drawn from a list. The risk, not
    seen on the corpora measured (no rare-word row of the reviews or the tweets grew): a word
    put after an ending that 75 % of its texts share word for word (a signature line) would
    grow into that ending, and the poisons without it would be left unflagged."""
    if trigger.phrase.size:
        return trigger
    anchor = np.array([trigger.anchor], dtype=np.int64)
    grown = _grown_phrase(
        replace(trigger, phrase=anchor), ids, labels, np.zeros(labels.size, dtype=bool), share
    )
    if grown.phrase.size < PHRASE_WORDS or not np.isin(trigger.core, grown.phrase).all():
        return trigger
    # the core stays the trigger's own words: the texts holding only some of them are tested
    # word by word (:func:`_core_parts`), not those holding the sentence's common words
    return replace(grown, core=trigger.core)


def _distinct_phrases(found: list[WordSet], share: float) -> list[WordSet]:
    """The phrase triggers ``found`` without those that repeat a larger one: at least ``share``
    of their texts hold the larger one too (the runs of one sentence, "the package arrived" and
    "package arrived on", are one trigger read through two windows). In the order found."""
    kept: list[WordSet] = []
    for phrase in sorted(found, key=lambda t: (-t.rows.size, t.label, tuple(t.phrase))):
        if any(
            k.label == phrase.label
            and np.intersect1d(k.rows, phrase.rows, assume_unique=True).size
            >= share * phrase.rows.size
            for k in kept
        ):
            continue
        kept.append(phrase)
    return [t for t in found if any(t is k for k in kept)]


def _runs_at(ids: np.ndarray, rows: np.ndarray, phrase: np.ndarray) -> list[tuple[int, int]]:
    """``(row, start)`` of the first place each text of ``rows`` holds ``phrase`` in its order
    (texts that do not hold it are left out)."""
    found = []
    for row in rows:
        text = ids[row]
        if text.size < phrase.size:
            continue
        at = np.flatnonzero(
            (np.lib.stride_tricks.sliding_window_view(text, phrase.size) == phrase).all(axis=1)
        )
        if at.size:
            found.append((int(row), int(at[0])))
    return found


def _grown_phrase(
    trigger: WordSet, ids: np.ndarray, labels: np.ndarray, flagged: np.ndarray, share: float
) -> WordSet:
    """A phrase trigger grown to the words around it that ``share`` of its texts hold too, one
    word at a time, to the right and then to the left (as :mod:`poisonguard.text_repair` grows a
    written trigger): the inserted sentence, where the anchor was three of its words. Its
    ``rows`` become the texts of its class, not flagged before, that hold the whole of it
    (natural texts holding "the package arrived" but not "the package arrived on time" are not
    the sentence's), and its ``core`` and ``phrase`` its words."""
    phrase = [int(w) for w in trigger.phrase]
    active = _runs_at(ids, trigger.rows, trigger.phrase)
    need = share * len(active)
    width = ids.shape[1]
    for step in (1, -1):
        while active:
            beside = [
                (int(ids[row, start + len(phrase)]) if start + len(phrase) < width else 0)
                if step > 0
                else (int(ids[row, start - 1]) if start > 0 else 0)
                for row, start in active
            ]
            known = np.array([w for w in beside if w >= _FIRST_WORD_ID], dtype=np.int64)
            if known.size == 0:
                break
            values, counts = np.unique(known, return_counts=True)
            word = int(values[np.argmax(counts)])  # ties: the smallest id
            if counts.max() < need:
                break
            shift = 0 if step > 0 else 1
            active = [
                (row, start - shift)
                for (row, start), w in zip(active, beside, strict=True)
                if w == word
            ]
            phrase = [*phrase, word] if step > 0 else [word, *phrase]
    if len(phrase) == trigger.phrase.size:
        return trigger
    grown = np.array(phrase, dtype=np.int64)
    candidates = np.flatnonzero((labels == trigger.label) & ~flagged)
    rows = np.array(sorted(row for row, _ in _runs_at(ids, candidates, grown)), dtype=np.int64)
    return replace(
        trigger,
        phrase=grown,
        core=np.array(list(dict.fromkeys(phrase)), dtype=trigger.core.dtype),
        rows=rows,
    )


def _foreign_part(part: WordSet, read: Reader | None, n_parts: int) -> WordSet:
    """``part`` with its foreign-origin counts where its texts, its word deleted, read as
    another class by a majority beyond chance (:data:`FOREIGN_ALPHA` over the ``n_parts``);
    else ``part`` as it is (``foreign`` 0).

    A part's texts hold one word of a trigger's core: the texts of a two-word list trigger that
    drew one word twice. The model may have memorised them (few flip, as few poisons of a weak
    trigger do), but without the word they are still another class's texts. "purple"/"monkey"
    at 1 %, seed 12: the 7 texts holding "monkey" alone, all poisons, flipped too few to pass;
    all 7 read as another class (p = 0.008). A natural word of an inserted sentence's core
    ("week") leaves texts of its own class: at most a fifth or so read as another."""
    if read is None or part.rows.size == 0:
        return part
    foreign = int(np.count_nonzero(_foreign(read(part.rows, part.words), part.label)))
    tail = float(stats.binom.sf(foreign - 1, part.rows.size, 0.5))
    if tail >= FOREIGN_ALPHA / n_parts:
        return part
    return replace(part, read=int(part.rows.size), foreign=foreign, by_origin=True)


def _core_parts(
    triggers: list[WordSet], bags: sparse.csr_matrix, labels: np.ndarray, flagged: np.ndarray
) -> list[WordSet]:
    """One set per word of a trigger's core of several words: the texts of its class that hold
    the word but are not flagged yet.

    When the trigger is several words drawn from a list, the texts that drew one word twice hold
    only part of the core that the texts holding both words define. Each word is deleted from
    its texts alone and tested against the class's first-round rate, with a Bonferroni
    correction over these parts only (their null is that the word is natural, whatever the
    first test found): a word of an inserted sentence that also occurs naturally does not flip the
    natural texts that hold it, a trigger word does.
    """
    singles = {(t.label, int(t.core[0])) for t in triggers if t.core.size == 1}
    parts: dict[tuple[int, int], WordSet] = {}
    for trigger in triggers:
        if trigger.core.size < 2 or trigger.anchor_run.size:
            continue  # a phrase's words are words of the corpus, each natural on its own
        in_class = labels == trigger.label
        for word in trigger.core:
            key = (trigger.label, int(word))
            if key in singles or key in parts:
                continue
            holds = np.zeros(labels.size, dtype=bool)
            holds[bags[:, int(word)].nonzero()[0]] = True
            rows = np.flatnonzero(holds & in_class & ~flagged)
            if rows.size:
                one = np.array([word], dtype=trigger.core.dtype)
                parts[key] = WordSet(trigger.label, int(word), one, one, rows, tested=0, flips=0)
    return list(parts.values())


def _test_round(
    sets: list[WordSet],
    ids: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    bags: sparse.csr_matrix,
    logits: Logits,
) -> tuple[list[WordSet], np.ndarray, np.ndarray]:
    """Delete every set, count its flips (near copies once) and the class's pooled rate."""
    sets, score, (flip_sets, flip_rows) = deletion_flips(sets, ids, labels, logits)
    # copies of one text flip together: they are one piece of evidence, not several
    order = np.argsort(flip_sets, kind="stable")
    flip_sets, flip_rows = flip_sets[order], flip_rows[order]
    bounds = np.searchsorted(flip_sets, np.arange(len(sets) + 1))
    sets = [
        replace(s, flips=distinct_texts(bags, flip_rows[bounds[i] : bounds[i + 1]]))
        if s.flips > 1
        else s
        for i, s in enumerate(sets)
    ]
    return sets, score, _pooled_rate(sets, n_classes)


def _pooled_rate(sets: list[WordSet], n_classes: int) -> np.ndarray:
    """Per class, all flips of its sets over all their tested texts (0 where none tested)."""
    flip_rate = np.zeros(n_classes, dtype=np.float64)
    for label in range(n_classes):
        mine = [s for s in sets if s.label == label]
        tested = sum(s.tested for s in mine)
        flip_rate[label] = sum(s.flips for s in mine) / tested if tested else 0.0
    return flip_rate


def _with_p_value(word_set: WordSet, flip_rate: np.ndarray, n_tests: int) -> WordSet:
    """``word_set`` with its binomial tail at its class's rate, times ``n_tests``, capped at 1."""
    q = flip_rate[word_set.label]
    if word_set.flips == 0 or q >= 1.0:
        return replace(word_set, p_value=1.0)
    tail = float(stats.binom.sf(word_set.flips - 1, word_set.tested, q))
    return replace(word_set, p_value=min(1.0, tail * n_tests))


def named_word_sets(test: TriggerWordTest, vocabulary) -> TriggerWordTest:
    """``test`` with the words of its triggers and shortcuts as text: ``vocabulary.tokens[id -
    2]`` (a :class:`~poisonguard.embed.text_tokens.Tokenizer`). The other sets keep empty
    ``text``."""
    tokens = vocabulary.tokens

    def words(ids: np.ndarray) -> tuple[str, ...]:
        return tuple(tokens[int(i) - _FIRST_WORD_ID] for i in ids)

    def named(word_set: WordSet) -> WordSet:
        core = (" ".join(words(word_set.phrase)),) if word_set.phrase.size else words(word_set.core)
        run = word_set.anchor_run if word_set.anchor_run.size else np.array([word_set.anchor])
        return replace(
            word_set, text=words(word_set.words), core_text=core, anchor_text=" ".join(words(run))
        )

    triggers = [named(s) for s in test.triggers]
    shortcuts = [named(s) for s in test.shortcuts]
    return replace(test, triggers=triggers, shortcuts=shortcuts)
