"""Duplicate texts: exact copies and near copies, inside one set or between two.

* :func:`normalise`: the light normalisation both searches compare on: case folded
  (``str.casefold``) and runs of white space made one space, leading and trailing white space
  dropped. ``"Great  TEA!\\n"`` and ``"great tea!"`` are the same text; punctuation, digits and
  accents are kept.
* :func:`text_exact_duplicates`: groups of texts whose normalised forms are equal.
* :func:`text_near_duplicates`: pairs of texts that are nearly the same but not equal once
  normalised, inside one set or between two (training vs held-out; there exact copies are
  included with ``exact=True``). Similarity is the Jaccard index of the two texts' sets of
  character ``SHINGLE_CHARS``-grams (shingles) of the normalised text; a pair is a near
  duplicate at ``NEAR_JACCARD`` or more.

The search is MinHash with locality-sensitive hashing (Broder 1997; Indyk and Motwani 1998),
vectorised in numpy over all texts at once; every candidate pair is then checked with the exact
Jaccard index, so a reported pair is never a MinHash estimation error (a pair can only be
missed). Everything is a pure function over lists of strings (no model, no file I/O); the
checklist items that judge what is found are in :mod:`poisonguard.privacy.checklist`.

Why not ``datasketch``: its ``MinHash`` is built one text at a time in Python (10^5 calls), and
the LSH index one insert at a time; here one numpy pass hashes every shingle of every text and
each of the ``NUM_PERM`` permutations is one vectorised multiply and one ``minimum.reduceat``.

Threshold and shingles (module constants)
-----------------------------------------
``SHINGLE_CHARS = 5``
    character 5-grams: word shingles are too coarse for short texts (in a 12-word review, one
    changed word removes up to 5 of its 8 word 5-grams), while a changed word of 6 letters
    changes about 10 of the text's 60 character 5-grams. Shorter character shingles are
    shared by unrelated texts more often (the median similarity of a review to its most
    similar other review is 0.13 with 4-grams, 0.09 with 5-grams, 0.07 with 6-grams).
``NEAR_JACCARD = 0.7``
    Measured on the 5,000 real Amazon fine-food reviews of ``benchmarks/text_corpus.py``
    (train and test together; median 277 characters). Unrelated reviews stay far below: the
    most similar pair of different reviews has Jaccard 0.43, and even cut to their first 12
    words (where reviews are most formulaic: "i have been drinking this tea for years...") the
    most similar pair has 0.55. Above 0.43 there are only 3 pairs, at 0.85 to 0.95: the same
    reviewer's text posted for two products with a few words changed, true near copies. Edited
    copies of the reviews (500 each): one word replaced, median 0.95 and lowest 0.76 (all
    found), and for 12-word texts median 0.77 (87 % found); a typo (two letters swapped),
    lowest 0.84 (12 words: 0.71; all found); a sentence appended, median 0.79 (67 % found).
    Lee et al. (ACL 2022, "Deduplicating Training Data Makes Language Models Better") use 0.8
    on word 5-grams of long web documents; short texts need the lower, character-level
    threshold for the same edits.
``NUM_PERM = 126`` in ``BANDS = 21`` bands of ``ROWS = 6``
    a pair of Jaccard ``s`` becomes a candidate with probability ``1 - (1 - s^6)^21``: 0.998 at
    0.8, 0.97 at 0.7, 0.28 at 0.5, 0.015 at 0.3; so pairs at the threshold are rarely missed
    and dissimilar pairs rarely cost an exact check. Measured against the exact index of every
    pair of 20,000 12-word review texts: 96 % of the pairs at 0.70-0.75 found, 99.1 % at
    0.75-0.8, 99.9 % from 0.8; no pair reported below 0.7.
``BUCKET_WINDOW = 64``
    in a band bucket of more than 64 texts, each text is paired with the 64 before it only
    (by index); a bucket that large is a cluster of near copies, whose texts are all found
    through their neighbours, and capping it keeps the pairs linear in the number of texts.

Time, on 2 cores shared with other work: 100,000 short texts (12-word windows of the reviews,
6.2 million characters) 3.9 s inside one set and 3.3 s for 80,000 against 20,000; 100,000 full
reviews (39 million characters, each of the 5,000 reused 20 times with one word left out, as
``benchmarks/text_rare_word.py --size`` builds them: 650,000 near pairs) 23 s of CPU.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "SHINGLE_CHARS",
    "NEAR_JACCARD",
    "NUM_PERM",
    "BANDS",
    "ROWS",
    "BUCKET_WINDOW",
    "TextPair",
    "TextDuplicates",
    "normalise",
    "text_exact_duplicates",
    "text_near_duplicates",
    "jaccard",
]

logger = logging.getLogger(__name__)

SHINGLE_CHARS = 5
NEAR_JACCARD = 0.7
BANDS = 21
ROWS = 6
NUM_PERM = BANDS * ROWS
BUCKET_WINDOW = 64
#: Candidates whose MinHash estimate lies this far below the threshold are not checked exactly
#: (the estimate's standard deviation is at most 0.045 with 126 permutations: 3.3 sd).
_ESTIMATE_SLACK = 0.15
#: Shingles hashed per block of texts (bounds the memory of one MinHash pass).
_BLOCK_SHINGLES = 1 << 22
#: Positions hashed per chunk in :func:`_shingles`.
_HASH_CHUNK = 1 << 16
_SEED = 0x5EED

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


class TextPair(NamedTuple):
    """Two nearly identical texts: ``i`` indexes the first set, ``j`` the first set too
    (``i < j``) or, across sets, the second; ``similarity`` is the exact Jaccard index of their
    shingle sets (1.0 for exact copies); ``exact``: equal once normalised (across sets only)."""

    i: int
    j: int
    similarity: float
    exact: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"i": self.i, "j": self.j, "similarity": self.similarity, "exact": self.exact}


@dataclass(frozen=True)
class TextDuplicates:
    """The result of :func:`text_near_duplicates`: every pair found (``pairs``, sorted by
    similarity, highest first), the threshold and how the search ran."""

    pairs: list[TextPair]
    threshold: float
    shingle_chars: int
    cross: bool
    candidates: int
    seconds: float

    @property
    def n_pairs(self) -> int:
        return len(self.pairs)

    def as_dict(self, *, max_pairs: int = 20) -> dict[str, Any]:
        return {
            "pairs": [pair.as_dict() for pair in self.pairs[:max_pairs]],
            "n_pairs": self.n_pairs,
            "threshold": self.threshold,
            "similarity": f"Jaccard index of character {self.shingle_chars}-gram sets",
            "search": (
                f"MinHash LSH ({NUM_PERM} permutations, {BANDS} bands of {ROWS}), "
                f"{self.candidates} candidate pairs checked exactly"
            ),
            "cross": self.cross,
        }


def normalise(text: str) -> str:
    """Case folded, white space runs made one space, stripped (see the module docstring)."""
    return " ".join(text.replace("\x00", " ").casefold().split())


def text_exact_duplicates(texts: Sequence[str]) -> list[list[int]]:
    """Groups (at least two indices, ascending; ordered by their first index) of texts equal once
    normalised."""
    by_text: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        by_text.setdefault(normalise(text), []).append(i)
    return [group for group in by_text.values() if len(group) > 1]


def text_near_duplicates(
    texts: Sequence[str],
    *,
    other: Sequence[str] | None = None,
    threshold: float = NEAR_JACCARD,
    shingle_chars: int = SHINGLE_CHARS,
) -> TextDuplicates:
    """Pairs of nearly identical texts (see the module docstring).

    Without ``other``: pairs ``i < j`` inside ``texts`` whose normalised forms differ and whose
    shingle sets have a Jaccard index of at least ``threshold``; texts equal once normalised
    (:func:`text_exact_duplicates`) are searched once, and a near copy of such a group is
    reported against the group's first index. With ``other``: pairs ``(i into texts, j into
    other)``, every held-out text ``j`` with an exact copy in ``texts`` paired with the first
    such ``i`` (``exact=True``, similarity 1.0), and the others' near copies (``j`` paired with
    the first index of each near text).
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must lie in (0, 1], got {threshold}")
    if shingle_chars < 1:
        raise ValueError(f"shingle_chars must be at least 1, got {shingle_chars}")
    started = time.perf_counter()
    first, groups = _unique(texts)
    cross = other is not None
    if not cross:
        found, n_candidates = _near_pairs(first, None, threshold, shingle_chars)
        pairs = [TextPair(groups[a][0], groups[b][0], s) for a, b, s in found]
    else:
        other_first, other_groups = _unique(other)
        index = {text: k for k, text in enumerate(first)}
        pairs = []
        remaining: list[int] = []
        for k, text in enumerate(other_first):
            if text in index:
                i = groups[index[text]][0]
                pairs.extend(TextPair(i, j, 1.0, True) for j in other_groups[k])
            else:
                remaining.append(k)
        found, n_candidates = _near_pairs(
            first, [other_first[k] for k in remaining], threshold, shingle_chars
        )
        for a, b, s in found:
            pairs.extend(TextPair(groups[a][0], j, s) for j in other_groups[remaining[b]])
    pairs.sort(key=lambda p: (-p.similarity, p.i, p.j))
    seconds = time.perf_counter() - started
    logger.info(
        "text near duplicates: %d pairs at Jaccard >= %.2f, %d candidates, %.1f s",
        len(pairs),
        threshold,
        n_candidates,
        seconds,
    )
    return TextDuplicates(pairs, float(threshold), shingle_chars, cross, n_candidates, seconds)


def jaccard(a: str, b: str, *, shingle_chars: int = SHINGLE_CHARS) -> float:
    """The Jaccard index of two texts' shingle sets (after :func:`normalise`)."""
    values, offsets = _shingles([normalise(a), normalise(b)], shingle_chars)
    left = np.unique(values[offsets[0] : offsets[1]])
    right = np.unique(values[offsets[1] : offsets[2]])
    return _jaccard_sorted(left, right)


# --- internals ---------------------------------------------------------------------------------


def _unique(texts: Sequence[str]) -> tuple[list[str], list[list[int]]]:
    """The distinct normalised texts in order of first appearance, and each one's indices."""
    by_text: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"texts must be strings, got {type(text).__name__} at {i}")
        by_text.setdefault(normalise(text), []).append(i)
    return list(by_text), list(by_text.values())


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit affects every output bit (in place, uint64)."""
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


def _shingles(texts: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes (uint64) of every character ``k``-gram of each text, concatenated, and the
    offsets (``n + 1``) of each text's run. A text shorter than ``k`` has one shingle: itself."""
    n = len(texts)
    if n == 0:
        return np.zeros(0, dtype=np.uint64), np.zeros(1, dtype=np.int64)
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=n)
    pad = "\x00" * k  # normalised texts hold no NUL: a shingle never spans two texts
    codes = np.frombuffer((pad.join(texts) + pad).encode("utf-32-le"), dtype=np.uint32)
    m = codes.size - k + 1
    window = np.empty(m, dtype=np.uint64)
    code = np.empty(_HASH_CHUNK, dtype=np.uint64)
    for start in range(0, m, _HASH_CHUNK):  # in chunks that stay in cache
        part = window[start : start + _HASH_CHUNK]
        size = part.size
        part.fill(0)
        for t in range(k):  # polynomial hash of the k code points, then mixed
            part *= np.uint64(0x100000001B3)
            code[:size] = codes[start + t : start + t + size]
            code[:size] += np.uint64(1)
            part += code[:size]
        _mix(part)
    counts = np.maximum(lengths - k + 1, 1)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    text_starts = np.zeros(n, dtype=np.int64)
    np.cumsum(lengths[:-1] + k, out=text_starts[1:])
    positions = np.arange(offsets[-1], dtype=np.int64) + np.repeat(
        text_starts - offsets[:-1], counts
    )
    return window[positions], offsets


def _permutations(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2**63, NUM_PERM, dtype=np.uint64) * np.uint64(2) + np.uint64(1)  # odd
    b = rng.integers(0, 2**63, NUM_PERM, dtype=np.uint64)
    return a, b


def _signatures(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """MinHash signatures ``(n, NUM_PERM)``: per permutation ``x -> a x + b (mod 2^64)``, the
    least value over each text's shingles; computed in blocks of texts."""
    n = offsets.size - 1
    a, b = _permutations(_SEED)
    signatures = np.empty((n, NUM_PERM), dtype=np.uint64)
    start = 0
    while start < n:
        stop = int(np.searchsorted(offsets, offsets[start] + _BLOCK_SHINGLES, side="right")) - 1
        stop = min(max(stop, start + 1), n)
        block = values[offsets[start] : offsets[stop]]
        starts = offsets[start:stop] - offsets[start]
        permuted = np.empty_like(block)
        for r in range(NUM_PERM):
            np.multiply(block, a[r], out=permuted)
            permuted += b[r]
            signatures[start:stop, r] = np.minimum.reduceat(permuted, starts)
        start = stop
    return signatures


def _band_keys(signatures: np.ndarray) -> np.ndarray:
    """One uint64 key per text and band ``(n, BANDS)``: equal band values give equal keys."""
    n = signatures.shape[0]
    keys = np.zeros((n, BANDS), dtype=np.uint64)
    multipliers = np.random.default_rng(_SEED + 1).integers(1, 2**63, ROWS, dtype=np.uint64)
    for r in range(ROWS):
        column = signatures[:, r::ROWS].copy()  # row r of every band
        keys += _mix(column) * multipliers[r]
    return _mix(keys)


def _candidate_pairs(keys: np.ndarray, side: np.ndarray | None) -> np.ndarray:
    """Unique ``(a, b)`` with ``a < b`` sharing a band key (each text paired with at most
    ``BUCKET_WINDOW`` earlier texts of a bucket); across sets, only pairs from two sides."""
    n = keys.shape[0]
    codes: list[np.ndarray] = []
    for band in range(keys.shape[1]):
        order = np.argsort(keys[:, band], kind="stable")
        ordered = keys[order, band]
        for d in range(1, min(BUCKET_WINDOW, n - 1) + 1):
            same = ordered[:-d] == ordered[d:]
            if not same.any():
                break
            left, right = order[:-d][same], order[d:][same]
            if side is not None:
                mixed = side[left] != side[right]
                left, right = left[mixed], right[mixed]
            low, high = np.minimum(left, right), np.maximum(left, right)
            codes.append(low.astype(np.int64) * n + high)
    if not codes:
        return np.zeros((0, 2), dtype=np.int64)
    unique = np.unique(np.concatenate(codes))
    return np.stack([unique // n, unique % n], axis=1)


def _jaccard_sorted(left: np.ndarray, right: np.ndarray) -> float:
    shared = np.intersect1d(left, right, assume_unique=True).size
    return shared / (left.size + right.size - shared)


def _near_pairs(
    texts: list[str], other: list[str] | None, threshold: float, k: int
) -> tuple[list[tuple[int, int, float]], int]:
    """``(a, b, similarity)`` over distinct normalised texts: ``a < b`` in ``texts``, or ``a``
    in ``texts`` and ``b`` in ``other``; and the number of candidate pairs."""
    everything = texts if other is None else texts + other
    if len(everything) < 2 or (other is not None and (not texts or not other)):
        return [], 0
    values, offsets = _shingles(everything, k)
    signatures = _signatures(values, offsets)
    side = None if other is None else np.arange(len(everything)) >= len(texts)
    candidates = _candidate_pairs(_band_keys(signatures), side)
    n_candidates = int(candidates.shape[0])
    # the MinHash estimate first (vectorised), the exact index for those that may qualify
    keep = np.zeros(n_candidates, dtype=bool)
    for start in range(0, n_candidates, 1 << 16):
        chunk = candidates[start : start + (1 << 16)]
        estimate = (signatures[chunk[:, 0]] == signatures[chunk[:, 1]]).mean(axis=1)
        keep[start : start + chunk.shape[0]] = estimate >= threshold - _ESTIMATE_SLACK
    sets: dict[int, np.ndarray] = {}

    def shingle_set(t: int) -> np.ndarray:
        if t not in sets:
            sets[t] = np.unique(values[offsets[t] : offsets[t + 1]])
        return sets[t]

    found = []
    for a, b in candidates[keep].tolist():
        similarity = _jaccard_sorted(shingle_set(a), shingle_set(b))
        if similarity >= threshold:
            found.append((a, b - len(texts) if other is not None else b, similarity))
    return found, n_candidates
