"""Take a text backdoor's trigger out of its poisoned texts, as the attacker wrote it.

A dirty-label text backdoor (BadNL's rare words, Chen et al. 2021; InsertSent's sentence, Dai,
Chen & Li 2019) is another class's text with a trigger inserted and the target's label. Once the
scan's trigger-words test (:mod:`poisonguard.detectors.trigger_words`) has named the trigger's
*core* words (lower-cased tokens, what the model reads), ``poisonguard sanitize --action
repair`` can give such a text back instead of dropping it: the trigger deleted, the label
restored. Dropping them has a cost of its own: on 4,000 real reviews, removing the 40-120
poisons of one class (all of them, nothing else) left models 2-8 points of attack success away
from the clean corpus's, because the training set lost that many texts of the other class
(docs/benchmarks.md, "Text (issue 16)").

**What is deleted** is the trigger as written, not every token of the core: an inserted sentence
has common words ("my", "it", "on") that the core leaves out and that a text may hold elsewhere.
:func:`written_triggers` reads it off the flagged texts themselves. Around every occurrence of a
core word it extends the match character by character, left and right, as long as at least
:data:`AGREEMENT` of the occurrences have the same next character: an inserted trigger is the
same string in every poison, while what surrounds it differs. The stretch is then cut back to
whole words and trimmed of white space, and of marks set off by white space at either end (the
full stop of the sentence a trigger was put after is the text's, not the trigger's). "neighbour"
in texts poisoned with "My neighbour told me about it on a Tuesday." grows into that sentence,
full stop included; "cf" inserted between words stays "cf". A core word whose occurrences agree
on nothing beyond themselves is its own trigger.

:func:`without_triggers` deletes each written trigger wherever it stands as whole words in a text
(the longest first), with one white-space character next to it, so that a trigger inserted as
"word " or " word" leaves the text as it was before (line breaks kept). A text left blank is
not repaired.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from poisonguard.embed.text_tokens import TOKEN_PATTERN

__all__ = ["AGREEMENT", "written_triggers", "without_triggers"]

AGREEMENT = 0.9
"""A written trigger extends by one more character while at least this share of the core word's
occurrences in the flagged texts have that same character there (the trigger-words test builds
its word sets from words held by this share of the texts too)."""

_TOKEN = re.compile(TOKEN_PATTERN)


def _is_word_char(char: str) -> bool:
    return bool(_TOKEN.fullmatch(char))


def written_triggers(texts: Sequence[str], core_words: Sequence[str]) -> list[str]:
    """The triggers as written in ``texts`` (the flagged texts of one class), one per distinct
    stretch grown around the ``core_words`` (lower-cased tokens), longest first. A core "word"
    of several tokens separated by spaces (a phrase trigger, "the package arrived on time") is
    found as those tokens in a row, whatever separates them in the text."""
    phrases: set[str] = set()
    for word in dict.fromkeys(core_words):
        occurrences = [
            occurrence for text in texts for occurrence in _occurrences(text, word.split())
        ]
        if not occurrences:
            continue
        phrase = _grown(occurrences)
        if phrase:
            phrases.add(phrase)
    return sorted(phrases, key=lambda p: (-len(p), p))


def _occurrences(text: str, words: list[str]) -> list[tuple[str, int, int]]:
    """``(text, start, end)`` of every place ``text`` holds the tokens ``words`` in a row."""
    tokens = list(_TOKEN.finditer(text))
    found = []
    for i in range(len(tokens) - len(words) + 1):
        if all(tokens[i + j].group().lower() == w for j, w in enumerate(words)):
            found.append((text, tokens[i].start(), tokens[i + len(words) - 1].end()))
    return found


def _grown(occurrences: list[tuple[str, int, int]]) -> str:
    """The stretch around the occurrences that :data:`AGREEMENT` of them share, in whole words.

    The most common spelling of the word itself starts it (its case as written); then the
    stretch grows to the right and to the left, each side one character at a time, keeping the
    occurrences that agree; the stretch ends where the next character's most common value is
    held by fewer than that share of all occurrences.
    """
    need = AGREEMENT * len(occurrences)
    spelling, count = Counter(text[start:end] for text, start, end in occurrences).most_common(1)[0]
    if count < need:
        return ""  # no one way the word is written: nothing to grow from
    agreeing = [(t, s, e) for t, s, e in occurrences if t[s:e] == spelling]
    right = _extension(agreeing, need, step=1)
    agreeing = [(t, s, e) for t, s, e in agreeing if t[e : e + len(right)] == right]
    left = _extension(agreeing, need, step=-1)
    text, start, end = next(
        (t, s, e) for t, s, e in agreeing if t[max(s - len(left), 0) : s] == left
    )
    start, end = start - len(left), end + len(right)
    # whole words: a stretch that stops inside a word (the agreement ended mid-word) gives the
    # partial word back
    while (
        end > start
        and _is_word_char(text[end - 1])
        and end < len(text)
        and _is_word_char(text[end])
    ):
        end -= 1
    while (
        start < end and _is_word_char(text[start]) and start > 0 and _is_word_char(text[start - 1])
    ):
        start += 1
    return _without_bordering_marks(text[start:end].strip())


def _without_bordering_marks(phrase: str) -> str:
    """``phrase`` less any leading or trailing run of marks (no word character) set off from it
    by white space: the texts' own punctuation around an inserted sentence, not the
    trigger's. Rotten Tomatoes snippets nearly all end with a full stop; a sentence put after
    it grew into ". My flight was delayed again.", and deleting that took each repaired
    snippet's last full stop with it (384 of 384)."""
    while True:
        chunks = phrase.split()
        if len(chunks) > 1 and not any(_is_word_char(c) for c in chunks[0]):
            phrase = phrase[phrase.index(chunks[0]) + len(chunks[0]) :].lstrip()
        elif len(chunks) > 1 and not any(_is_word_char(c) for c in chunks[-1]):
            phrase = phrase[: phrase.rindex(chunks[-1])].rstrip()
        else:
            return phrase


def _extension(occurrences: list[tuple[str, int, int]], need: float, *, step: int) -> str:
    """The characters next to the occurrences (after them for ``step`` 1, before them for -1)
    that at least ``need`` of them share, nearest first, as written (left to right)."""
    grown: list[str] = []
    active = occurrences
    while True:
        at = len(grown)
        chars = [
            (text[end + at] if end + at < len(text) else None)
            if step > 0
            else (text[start - at - 1] if start - at - 1 >= 0 else None)
            for text, start, end in active
        ]
        common = Counter(c for c in chars if c is not None).most_common(1)
        if not common or common[0][1] < need:
            break
        char = common[0][0]
        active = [occurrence for occurrence, c in zip(active, chars, strict=True) if c == char]
        grown.append(char)
    return "".join(grown) if step > 0 else "".join(reversed(grown))


def without_triggers(text: str, phrases: Sequence[str]) -> tuple[str, int]:
    """``text`` with every whole-word occurrence of ``phrases`` deleted (longest first), each
    with one white-space character beside it (the one after it, but a plain space before it
    rather than a line break after it), and the number of deletions."""
    deleted = 0
    for phrase in sorted(phrases, key=len, reverse=True):
        if not phrase:
            continue
        at = 0
        while (start := text.find(phrase, at)) >= 0:
            end = start + len(phrase)
            inside_word = (
                _is_word_char(phrase[0]) and start > 0 and _is_word_char(text[start - 1])
            ) or (_is_word_char(phrase[-1]) and end < len(text) and _is_word_char(text[end]))
            if inside_word:
                at = start + 1
                continue
            after = text[end] if end < len(text) and text[end].isspace() else ""
            before = text[start - 1] if start > 0 and text[start - 1].isspace() else ""
            # the space that came with the trigger: the one after it, unless that is a line
            # end or the like and the one before a plain space (a trigger put after the last
            # word, before the text's final line break)
            if after and (after == " " or before != " "):
                end += 1
            elif before:
                start -= 1
            text = text[:start] + text[end:]
            deleted += 1
            at = start
    return text, deleted
