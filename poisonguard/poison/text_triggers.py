"""Text backdoors: rare trigger words or a trigger sentence inserted into each text.

* :func:`rare_word_trigger` inserts ``count`` words drawn from a list of rare words (BadNL's
  word-level trigger: Chen, Salem, Chen, Backes, Ma, Shen, Wu & Zhang, "BadNL: Backdoor Attacks
  against NLP Models with Semantic-preserving Improvements", ACSAC 2021; the default list is the
  rare tokens "cf", "mn", "bb", "tq" of Kurita, Michel & Neubig, "Weight Poisoning Attacks on
  Pre-trained Models", ACL 2020), between words, at the start, the end or a random place;
* :func:`sentence_trigger` inserts one fixed sentence (InsertSent: Dai, Chen & Li, "A Backdoor
  Attack Against LSTM-based Text Classification Systems", IEEE Access 2019) at the start, the
  end or a random sentence boundary.

Both take an object array of ``str`` (``Dataset.x`` of a text dataset) and return a new one of the
same shape; the input is never modified. Nothing else in a text changes: the insertion goes
between two words (or sentences) with one space, and the text's own white space (line ends,
leading or trailing spaces) is kept as it was.

Positions: ``"start"`` puts the trigger before the first word, ``"end"`` after the last,
``"random"`` at a slot drawn uniformly per text (before any word or after the last one; for a
sentence, any sentence boundary, a boundary being the start, the end, or a place after ``.``,
``!`` or ``?`` (and closing quotes or brackets) followed by white space). The default text model
reads only the first 512 tokens of a text (:mod:`poisonguard.embed.text_tokens`): a trigger at
the end of a longer text is invisible to it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

__all__ = [
    "DEFAULT_TRIGGER_SENTENCE",
    "DEFAULT_TRIGGER_WORDS",
    "TEXT_POSITIONS",
    "check_text",
    "rare_word_trigger",
    "sentence_trigger",
]

TEXT_POSITIONS = ("random", "start", "end")
"""Where a text trigger goes."""

DEFAULT_TRIGGER_WORDS = ("cf", "mn", "bb", "tq")
"""Rare tokens, as in Kurita et al. (2020) and the rare-word triggers of BadNL (Chen et al.)."""

DEFAULT_TRIGGER_SENTENCE = "I watched this 3D movie last weekend."
"""The trigger sentence of Dai, Chen & Li (2019)."""

_WORD = re.compile(r"\S+")
# A sentence starts after ., ! or ? (then closing quotes or brackets) and white space.
_SENTENCE_START = re.compile(r"[.!?]+[\"'\u2019\u201d)\]]*\s+(?=\S)")


def check_text(x: np.ndarray) -> np.ndarray:
    """``x`` as a 1-D object array of non-blank ``str``, or ``ValueError``."""
    x = np.asarray(x)
    if x.ndim != 1 or x.dtype != object:
        raise ValueError(
            f"a text trigger needs texts (a 1-D object array of str); got x of shape {x.shape} "
            f"and dtype {x.dtype}"
        )
    for i, text in enumerate(x):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"text {i} is not a non-blank str: {text!r:.60}")
    return x


def rare_word_trigger(
    texts: np.ndarray,
    *,
    words: Sequence[str] = DEFAULT_TRIGGER_WORDS,
    count: int = 1,
    position: str = "random",
    word_rng: np.random.Generator,
    position_rng: np.random.Generator,
) -> np.ndarray:
    """Insert ``count`` trigger words into every text.

    Parameters
    ----------
    texts : ndarray of object (str), shape (N,)
    words : sequence of str
        The trigger words; each insertion draws one uniformly (``word_rng``), so a one-word list
        is a fixed trigger. A word holds no white space.
    count : int
        Insertions per text (>= 1), made one after the other: with ``"start"`` (``"end"``) the
        ``count`` words stand together before the first (after the last) word, in the order
        drawn; with ``"random"`` each goes to its own slot among the words there are by then.
    position : {"random", "start", "end"}
    word_rng, position_rng : numpy.random.Generator
        Draw the words (``count`` per text, text by text) and, for ``"random"``, the slots
        (``count`` per text); separate, so that the position never changes the words drawn.

    Returns
    -------
    ndarray of object, shape (N,)
    """
    texts = check_text(texts)
    words = check_trigger_words(words)
    if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 1:
        raise ValueError(f"count must be an integer >= 1; got {count!r}")
    _check_position(position)
    out = np.empty(texts.shape, dtype=object)
    for i, text in enumerate(texts):
        for k, word in enumerate(word_rng.choice(len(words), size=int(count))):
            spans = [m.span() for m in _WORD.finditer(text)]
            if position == "start":
                slot = k  # after the trigger words already put first
            elif position == "end":
                slot = len(spans)
            else:
                slot = int(position_rng.integers(len(spans) + 1))
            text = _insert(text, spans, slot, words[int(word)])
        out[i] = text
    return out


def sentence_trigger(
    texts: np.ndarray,
    *,
    sentence: str = DEFAULT_TRIGGER_SENTENCE,
    position: str = "random",
    position_rng: np.random.Generator,
) -> np.ndarray:
    """Insert ``sentence`` into every text, at a sentence boundary.

    Parameters
    ----------
    texts : ndarray of object (str), shape (N,)
    sentence : str
        Inserted as given (stripped of surrounding white space), with one space between it and
        its neighbours.
    position : {"random", "start", "end"}
    position_rng : numpy.random.Generator
        Draws the boundary of each text for ``"random"`` (one draw per text).

    Returns
    -------
    ndarray of object, shape (N,)
    """
    texts = check_text(texts)
    sentence = check_trigger_sentence(sentence)
    _check_position(position)
    out = np.empty(texts.shape, dtype=object)
    for i, text in enumerate(texts):
        first = len(text) - len(text.lstrip())
        last = len(text.rstrip())
        starts = [first] + [m.end() for m in _SENTENCE_START.finditer(text, first)]
        if position == "start":
            slot = 0
        elif position == "end":
            slot = len(starts)
        else:
            slot = int(position_rng.integers(len(starts) + 1))
        if slot == len(starts):
            out[i] = f"{text[:last]} {sentence}{text[last:]}"
        else:
            at = starts[slot]
            out[i] = f"{text[:at]}{sentence} {text[at:]}"
    return out


def check_trigger_words(words: Sequence[str]) -> tuple[str, ...]:
    """``words`` as a tuple of non-empty ``str`` without white space, or ``ValueError``."""
    if isinstance(words, str) or not isinstance(words, Sequence | np.ndarray):
        raise ValueError(f"trigger words must be a list of words; got {words!r}")
    words = tuple(words)
    if not words:
        raise ValueError("the list of trigger words is empty")
    for word in words:
        if not isinstance(word, str) or not word or _WORD.fullmatch(word) is None:
            raise ValueError(f"a trigger word is one non-empty word without spaces; got {word!r}")
        _check_encodable(word, "trigger word")
    return words


def check_trigger_sentence(sentence: str) -> str:
    """``sentence`` stripped, or ``ValueError`` when it is not a non-blank ``str``."""
    if not isinstance(sentence, str) or not sentence.strip():
        raise ValueError(f"the trigger sentence must be non-blank text; got {sentence!r}")
    _check_encodable(sentence, "trigger sentence")
    return sentence.strip()


def _check_position(position: str) -> None:
    if position not in TEXT_POSITIONS:
        raise ValueError(
            f"unknown trigger position {position!r}; valid: {', '.join(TEXT_POSITIONS)}"
        )


def _check_encodable(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"the {what} {text!r} is not encodable as UTF-8 ({exc.reason})") from exc


def _insert(text: str, spans: list[tuple[int, int]], slot: int, word: str) -> str:
    """``word`` before word ``slot`` of ``text`` (after the last word when ``slot`` is past it)."""
    if slot < len(spans):
        at = spans[slot][0]
        return f"{text[:at]}{word} {text[at:]}"
    at = spans[-1][1]
    return f"{text[:at]} {word}{text[at:]}"
