"""The words and phrases that set a flagged group of texts apart: a text backdoor's trigger.

Texts have no mean to compare, as images and tables do (:mod:`~poisonguard.report.group_evidence`);
what poisons of a text backdoor share is their trigger: a rare word (BadNL's "cf", Chen et al.
2021) or an inserted sentence. So, for a flagged group, the report lists the **terms** (words and
runs of up to :data:`MAX_WORDS` consecutive words) found in far more of the group's texts than of
the dataset's other texts, as document frequencies: "`cf` is in 120 of the 123 flagged texts
(97.6 %) and in 1 of the 3,877 others (0.03 %)".

- **Words** are the model's tokens (:func:`poisonguard.embed.text_tokens.tokenize`: lower-cased
  runs of letters and digits), of each text's first ``max_tokens`` (512): what is reported is
  what the model reads. A term is a run of consecutive words of one text.
- **The test**: a term held by ``x`` of the group's ``n`` texts and by ``K`` of all ``N`` texts
  gets the one-sided hypergeometric tail ``P(X >= x)`` (Fisher's exact test: how likely a random
  set of ``n`` texts holds it that often), multiplied by the number of terms tested (Bonferroni;
  the terms in at least :data:`MIN_GROUP_TEXTS` of the group's texts). A term is reported when
  that adjusted p-value is at most :data:`ALPHA`, so a random subset of clean texts gets no term
  reported in all but about 1 % of draws: the list is empty when nothing sets the group apart.
  Each term also gets a log-odds ratio (group against others, each count plus 0.5): the size of
  the difference, where the p-value says how sure it is.
- **Redundant terms are merged**, so that a trigger shows once: a word or run held by almost the
  same group texts as a longer significant run that contains it is left out (the words of an
  inserted sentence give way to the sentence); a longer run is left out when a reported shorter
  run inside it explains it (among the texts holding "cf", those holding "cf the" are no more
  often in the group); and runs of :data:`MAX_WORDS` words that overlap and are held by the same
  texts are joined into one phrase, counted again exactly (a planted sentence shows whole).
  The rest are ranked by p-value, the strongest first, and the first :data:`TOP_TERMS` kept.

Everything is vectorised over the texts' token ids (one pass of the tokenizer, then ``numpy``
sorts), deterministic, and takes about a second per 10,000 short texts; the counts of all
groups of one scan share one index (:class:`TermIndex`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import gammaln
from scipy.stats import hypergeom

from poisonguard.embed.text_tokens import TOKEN_PATTERN, TokenizerSettings, tokenize

__all__ = [
    "ALPHA",
    "MAX_WORDS",
    "MIN_GROUP_TEXTS",
    "TOP_TERMS",
    "TermIndex",
    "marked_segments",
    "over_represented_terms",
]

MAX_WORDS = 3
"""Longest run of words counted as a term (longer phrases are joined from overlapping runs)."""

TOP_TERMS = 10
"""How many terms the report lists per group."""

ALPHA = 0.01
"""Largest Bonferroni-adjusted p-value of a reported term (family-wise, per group)."""

MIN_GROUP_TEXTS = 2
"""A term is tested when at least this many of the group's texts hold it (a trigger is shared)."""

_SUBSUMED = 0.9
"""A term gives way to a longer run holding it when the run is in at least this share of the
term's group texts; overlapping runs are joined when the phrase keeps this share of each."""

_BLOCK_TEXTS = 10_000

_WORD = re.compile(TOKEN_PATTERN)


@dataclass
class _Runs:
    """The runs of ``n`` words held by at least :data:`MIN_GROUP_TEXTS` texts of one group:
    ``prefix`` (the index of a run's first ``n - 1`` words among the runs of ``n - 1``; for
    ``n = 1``, -1) and ``last`` (its last word's id); ``x`` the group texts and ``held`` all the
    texts holding it; ``at[j]`` the run starting at token ``j`` (-1 where none is)."""

    prefix: np.ndarray
    last: np.ndarray
    x: np.ndarray
    held: np.ndarray
    at: np.ndarray


class TermIndex:
    """The texts of a dataset as word ids, read once per scan; :func:`over_represented_terms`
    counts the runs of words of each flagged group from it.

    Parameters
    ----------
    texts : sequence of str
    max_words : int
        Longest run counted.
    max_tokens : int
        Words read per text, the first ones (the model's limit).
    """

    def __init__(
        self,
        texts: Any,
        *,
        max_words: int = MAX_WORDS,
        max_tokens: int = TokenizerSettings().max_tokens,
    ) -> None:
        if max_words < 1:
            raise ValueError(f"max_words must be at least 1, got {max_words}")
        ids: dict[str, int] = {}
        chunks, lengths = [], []
        texts = list(texts)
        for start in range(0, len(texts), _BLOCK_TEXTS):
            block = [tokenize(str(t))[:max_tokens] for t in texts[start : start + _BLOCK_TEXTS]]
            lengths.extend(len(words) for words in block)
            flat = [ids.setdefault(word, len(ids)) for words in block for word in words]
            chunks.append(np.asarray(flat, dtype=np.int64))
        self.n_texts = len(texts)
        self.max_words = max_words
        self.words = list(ids)
        self.tokens = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)
        self.doc = np.repeat(np.arange(self.n_texts, dtype=np.int64), lengths)
        _, words = _distinct_pairs(self.doc, self.tokens, len(ids))
        self.held = np.bincount(words, minlength=len(ids))
        """Per word, the texts holding it."""

    def runs(self, group: np.ndarray) -> list[_Runs]:
        """Per ``n`` from 1 to ``max_words``, the runs of ``n`` words in at least
        :data:`MIN_GROUP_TEXTS` texts of ``group`` (a boolean mask), counted in the group and in
        all the texts. Vectorised: a run is looked for only where its first ``n - 1`` words
        are such a run and its last word such a word (a run is in no more texts than they)."""
        tokens, doc = self.tokens, self.doc
        in_group = group[doc]
        _, group_words = _distinct_pairs(doc[in_group], tokens[in_group], len(self.words))
        x = np.bincount(group_words, minlength=len(self.words))
        words = np.flatnonzero(x >= MIN_GROUP_TEXTS)
        lookup = np.full(len(self.words), -1, dtype=np.int64)
        lookup[words] = np.arange(words.size)
        at = lookup[tokens]
        out = [_Runs(np.full(words.size, -1), words, x[words], self.held[words], at)]
        size, span = tokens.size, max(1, words.size)
        for n in range(2, self.max_words + 1):
            previous = out[-1].at
            where = np.flatnonzero(previous[: max(0, size - n + 1)] >= 0)
            last = at[where + n - 1]
            keep = (last >= 0) & (doc[where] == doc[where + n - 1])
            where, last = where[keep], last[keep]
            key = previous[where] * span + last
            key_span = max(1, out[-1].x.size) * span
            mine = in_group[where]
            _, group_keys = _distinct_pairs(doc[where[mine]], key[mine], key_span)
            candidates, x_n = np.unique(group_keys, return_counts=True)
            keep = x_n >= MIN_GROUP_TEXTS
            candidates, x_n = candidates[keep], x_n[keep]
            at_n = np.full(size, -1, dtype=np.int64)
            held = np.zeros(candidates.size, dtype=np.int64)
            if candidates.size:
                # cheap dense tests first: the prefix and the last word of some candidate
                starts = np.zeros(max(1, out[-1].x.size), dtype=bool)
                starts[candidates // span] = True
                ends = np.zeros(span, dtype=bool)
                ends[candidates % span] = True
                maybe = starts[previous[where]] & ends[last]
                where, key = where[maybe], key[maybe]
                slot = np.minimum(np.searchsorted(candidates, key), candidates.size - 1)
                hit = candidates[slot] == key
                at_n[where[hit]] = slot[hit]
                _, held_runs = _distinct_pairs(doc[where[hit]], slot[hit], candidates.size)
                held = np.bincount(held_runs, minlength=candidates.size)
            out.append(_Runs(candidates // span, words[candidates % span], x_n, held, at_n))
        return out

    def words_of(self, runs: list[_Runs], n: int, run: int) -> tuple[str, ...]:
        """The words of run ``run`` of ``n`` words in ``runs`` (:meth:`runs`)."""
        out = []
        while n >= 1:
            out.append(self.words[int(runs[n - 1].last[run])])
            run = int(runs[n - 1].prefix[run])
            n -= 1
        return tuple(reversed(out))


def _distinct_pairs(
    first: np.ndarray, second: np.ndarray, span: int
) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ``(first, second)`` pairs, sorted (``second`` is below ``span``): as one
    int64 each when they fit, else as rows."""
    first, second = np.asarray(first, dtype=np.int64), np.asarray(second, dtype=np.int64)
    span = max(1, int(span))
    if first.size == 0:
        return first, second
    if (int(first.max()) + 1) * span < 2**62:
        pairs = _distinct(first * span + second)
        return pairs // span, pairs % span
    rows = np.unique(np.stack([first, second], axis=1), axis=0)
    return rows[:, 0], rows[:, 1]


def _distinct(values: np.ndarray) -> np.ndarray:
    """The sorted distinct values (``np.unique``'s hash path is slower on large int arrays)."""
    values = np.sort(values)
    keep = np.ones(values.size, dtype=bool)
    keep[1:] = values[1:] != values[:-1]
    return values[keep]


def _log_choose(n: np.ndarray, k: np.ndarray) -> np.ndarray:
    return gammaln(n + 1.0) - gammaln(k + 1.0) - gammaln(n - k + 1.0)


def _log_tail(x: np.ndarray, total: int, held: np.ndarray, drawn: int) -> np.ndarray:
    """``log P(X >= x)`` for X hypergeometric: ``drawn`` of ``total`` texts, ``held`` of them
    holding the term. Accurate far into the tail (scipy sums the tail's terms in logs)."""
    x = np.asarray(x, dtype=np.int64)
    if x.size == 0:
        return np.zeros(0)
    return np.minimum(hypergeom.logsf(x - 1, total, held, drawn), 0.0)


def _log_odds(x, n, y, m) -> np.ndarray:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return np.log((x + 0.5) / (n - x + 0.5)) - np.log((y + 0.5) / (m - y + 0.5))


def over_represented_terms(
    index: TermIndex | Any,
    group: np.ndarray,
    *,
    top: int = TOP_TERMS,
    alpha: float = ALPHA,
) -> dict[str, Any]:
    """The terms of ``group``'s texts found in far more of them than of the other texts.

    Parameters
    ----------
    index : TermIndex, or the texts (a sequence of str; indexed here)
    group : ndarray of bool, shape (N,)
        The flagged group; every other text is compared with it.
    top : int
        Most terms returned.
    alpha : float
        Largest Bonferroni-adjusted p-value of a returned term.

    Returns
    -------
    dict
        ``group_size``, ``others_size`` (texts outside the group), ``tested`` (terms in at
        least :data:`MIN_GROUP_TEXTS` of the group's texts: the Bonferroni factor), ``alpha``,
        ``max_words`` and ``terms``: at most ``top`` dicts, strongest first, each with
        ``term`` (its words joined by a space), ``words`` (how many), ``group_count``,
        ``others_count``, ``share_in_group``, ``share_in_others``, ``log_odds_ratio``,
        ``p_value`` (Bonferroni-adjusted, at most 1; 0.0 below the smallest float) and
        ``log10_p_value`` (the same, as its base-10 logarithm, never underflows).
    """
    if not isinstance(index, TermIndex):
        index = TermIndex(index)
    group = np.asarray(group, dtype=bool).reshape(-1)
    if group.size != index.n_texts:
        raise ValueError(f"the group mask has {group.size} entries for {index.n_texts} texts")
    total, drawn = index.n_texts, int(group.sum())
    others = total - drawn
    result: dict[str, Any] = {
        "group_size": drawn,
        "others_size": others,
        "tested": 0,
        "alpha": alpha,
        "max_words": index.max_words,
        "terms": [],
    }
    if drawn < MIN_GROUP_TEXTS or others == 0:
        return result

    runs = index.runs(group)
    tested = int(sum(r.x.size for r in runs))
    result["tested"] = tested
    limit = math.log(alpha) - math.log(max(1, tested))  # the unadjusted log p a term must reach
    found: dict[tuple[str, ...], dict[str, Any]] = {}
    for n, counted in enumerate(runs, start=1):
        x, held = counted.x, counted.held
        y = held - x
        candidate = np.flatnonzero(x.astype(np.float64) * others > y.astype(np.float64) * drawn)
        if candidate.size == 0:
            continue
        xc, kc = x[candidate], held[candidate]
        # P(X = x) <= P(X >= x): a term whose point probability misses the limit is out
        point = (
            _log_choose(kc, xc)
            + _log_choose(total - kc, drawn - xc)
            - _log_choose(np.float64(total), np.float64(drawn))
        )
        candidate = candidate[point <= limit + 1e-9]
        log_p = _log_tail(x[candidate], total, held[candidate], drawn)
        for gram, lp in zip(candidate[log_p <= limit], log_p[log_p <= limit], strict=True):
            words = index.words_of(runs, n, int(gram))
            term = _term(words, int(x[gram]), int(y[gram]), float(lp), drawn, others, tested)
            found[words] = {**term, "_gram": int(gram)}

    kept = _drop_redundant(found, alpha)
    kept = _join_runs(index, runs[-1].at, kept, group, drawn, others, tested, limit, top)
    ranked = sorted(kept.values(), key=_rank)
    result["terms"] = [{k: v for k, v in t.items() if not k.startswith("_")} for t in ranked[:top]]
    return result


def _term(
    words: tuple[str, ...], x: int, y: int, log_p: float, drawn: int, others: int, tested: int
) -> dict[str, Any]:
    adjusted = min(0.0, log_p + math.log(max(1, tested)))
    return {
        "term": " ".join(words),
        "words": len(words),
        "group_count": x,
        "others_count": y,
        "share_in_group": x / drawn,
        "share_in_others": y / others,
        "log_odds_ratio": float(_log_odds(x, drawn, y, others)),
        "p_value": math.exp(adjusted),
        "log10_p_value": adjusted / math.log(10.0),
        "_words": words,
        "_log_p": log_p,
    }


def _runs_inside(words: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The shorter runs of consecutive words inside ``words``."""
    size = len(words)
    return [words[i : i + n] for n in range(1, size) for i in range(size - n + 1)]


def _drop_redundant(
    found: dict[tuple[str, ...], dict[str, Any]], alpha: float
) -> dict[tuple[str, ...], dict[str, Any]]:
    """Leave out the runs that a significant shorter term inside them explains (among the texts
    holding "cf", those holding "cf the" are no more often in the group than chance), then the
    words and runs held by almost the same group texts as a longer run left that holds them
    (the words of an inserted sentence give way to the sentence)."""
    explained = set()
    for words, term in found.items():
        for inner in _runs_inside(words):
            base = found.get(inner)
            if base is None or _covers(term, base):
                continue  # not significant, or `words` is the longer form of `inner`
            held_inner = base["group_count"] + base["others_count"]
            held = term["group_count"] + term["others_count"]
            log_p = _log_tail(
                np.array([term["group_count"]]), held_inner, np.array([held]), base["group_count"]
            )[0]
            if log_p > math.log(alpha):
                explained.add(words)
                break
    alive = {w: t for w, t in found.items() if w not in explained}
    covered = {
        inner
        for words, term in alive.items()
        for inner in _runs_inside(words)
        if inner in alive and _covers(term, alive[inner])
    }
    return {w: t for w, t in alive.items() if w not in covered}


def _covers(longer: dict[str, Any], inner: dict[str, Any]) -> bool:
    """Whether ``longer`` (a run holding ``inner``) is in almost all of ``inner``'s group texts."""
    return longer["group_count"] >= _SUBSUMED * inner["group_count"]


def _join_runs(
    index: TermIndex,
    at: np.ndarray,
    kept: dict[tuple[str, ...], dict[str, Any]],
    group: np.ndarray,
    drawn: int,
    others: int,
    tested: int,
    limit: float,
    top: int,
) -> dict[tuple[str, ...], dict[str, Any]]:
    """Join kept runs of ``max_words`` words (among the ``3 * top`` strongest terms) that
    overlap by all but one word into a phrase, while the phrase, counted exactly from the runs'
    places in the texts (``at``: the run of ``max_words`` starting at each token, as
    :meth:`TermIndex.runs` gives it), keeps most of each run's group texts and stays
    significant."""
    size = index.max_words
    if size < 2:
        return kept
    strongest = sorted(kept.values(), key=_rank)[: 3 * max(1, top)]
    runs = {t["_words"]: t for t in strongest if len(t["_words"]) == size}
    if len(runs) < 2:
        return kept
    starting: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    ending: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    for words in sorted(runs):
        starting.setdefault(words[:-1], []).append(words)
        ending.setdefault(words[1:], []).append(words)
    used: set[tuple[str, ...]] = set()
    kept = dict(kept)
    for seed in sorted(runs, key=lambda w: (runs[w]["_log_p"], w)):
        if seed in used:
            continue
        words, positions, members = seed, np.flatnonzero(at == runs[seed]["_gram"]), [seed]
        grown = True
        while grown:
            grown = False
            need = _SUBSUMED * max(runs[m]["group_count"] for m in members)
            for side in ("right", "left"):
                table = starting if side == "right" else ending
                edge = words[-(size - 1) :] if side == "right" else words[: size - 1]
                for other in table.get(edge, []):
                    if other in used or other in members:
                        continue
                    gram = runs[other]["_gram"]
                    if side == "right":
                        shift = len(words) - size + 1
                        inside = positions[positions + shift < at.size]
                        moved = inside[at[inside + shift] == gram]
                    else:
                        inside = positions[positions >= 1]
                        moved = inside[at[inside - 1] == gram] - 1
                    texts = np.unique(index.doc[moved])
                    if int(group[texts].sum()) < max(need, _SUBSUMED * runs[other]["group_count"]):
                        continue
                    words = words + other[-1:] if side == "right" else other[:1] + words
                    positions, grown = moved, True
                    members.append(other)
                    break
                if grown:
                    break
        if len(members) < 2:
            continue
        texts = np.unique(index.doc[positions])
        x = int(group[texts].sum())
        y = int(texts.size - x)
        log_p = float(_log_tail(np.array([x]), index.n_texts, np.array([x + y]), drawn)[0])
        if log_p > limit:
            continue
        used.update(members)
        for member in members:
            del kept[member]
        kept[words] = _term(words, x, y, log_p, drawn, others, tested)
    return kept


def _rank(term: dict[str, Any]) -> tuple:
    """Strongest first: smallest p-value, then largest log-odds ratio, then the text."""
    return (term["_log_p"], -term["log_odds_ratio"], term["term"])


def marked_segments(
    text: str, terms: list[str] | tuple[str, ...], limit: int = 300
) -> list[tuple[str, bool]]:
    """``text`` cut for the page, as ``(piece, marked)`` pairs: ``marked`` where the piece is
    one of ``terms`` (space-joined lower-cased words, as :func:`over_represented_terms`
    reports them) matched on the text's words, whatever their case and the punctuation
    between them.

    White space runs become one space. At most about ``limit`` characters are kept: the start
    of the text, or, when the first marked term lies beyond it, a window around that term,
    with an ellipsis where the text was cut. The pieces are plain text: the page escapes them.
    """
    flat = " ".join(str(text).split())
    wanted = {tuple(t.split()) for t in terms if t.split()}
    longest = max((len(t) for t in wanted), default=0)
    matches = list(_WORD.finditer(flat))
    lowered = [m.group().lower() for m in matches]
    spans: list[list[int]] = []
    i = 0
    while i < len(matches) and longest:
        for n in range(min(longest, len(matches) - i), 0, -1):
            if tuple(lowered[i : i + n]) in wanted:
                start, end = matches[i].start(), matches[i + n - 1].end()
                if spans and start <= spans[-1][1]:
                    spans[-1][1] = max(spans[-1][1], end)
                else:
                    spans.append([start, end])
                break
        i += 1
    begin = 0
    if spans and spans[0][1] > limit and len(flat) > limit:
        begin = max(0, spans[0][0] - limit // 3)
        space = flat.find(" ", begin)
        begin = space + 1 if 0 <= space < spans[0][0] else min(begin, spans[0][0])
    end = len(flat)
    if end - begin > limit:
        end = begin + limit
        space = flat.rfind(" ", begin, end)
        if space > begin:
            end = space
        inside = [s for s in spans if s[0] < end < s[1]]
        if inside:
            end = inside[0][1]
    pieces: list[tuple[str, bool]] = [("…", False)] if begin > 0 else []
    cursor = begin
    for start, stop in spans:
        start, stop = max(start, begin), min(stop, end)
        if start >= stop:
            continue
        if start > cursor:
            pieces.append((flat[cursor:start], False))
        pieces.append((flat[start:stop], True))
        cursor = stop
    if cursor < end:
        pieces.append((flat[cursor:end], False))
    if end < len(flat):
        pieces.append(("…", False))
    return pieces
