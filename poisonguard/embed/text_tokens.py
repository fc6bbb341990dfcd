"""Turning texts into rows of token ids, with a vocabulary built from the audited texts.

The default text model (:class:`~poisonguard.embed.models.TextBagModel`) reads each text as the
ids of its words. The tokenizer is deliberately plain, so that it is deterministic, offline and
fast on a laptop CPU (10,000 short reviews in well under a second), and so that what the model
can learn is easy to state:

- **tokens** are the matches of :data:`TOKEN_PATTERN` in the lower-cased text (``str.lower``):
  runs of Unicode letters and digits, with apostrophes inside a word kept (``don't``); every
  other character (punctuation, white space, markup such as ``<br />``'s brackets) separates
  tokens;
- **the vocabulary** is built from the audited texts: the tokens found in at least
  ``min_texts`` texts (default 2), most frequent first (by the number of texts holding them),
  ties broken by the token's text, at most ``max_vocabulary`` (default 50,000). Rare tokens are
  *kept*: a backdoor's rare-word trigger (BadNL's "cf" or "mn", Chen et al. 2021) in 1 % of the
  texts must get an id of its own, or the model could not learn it and the detectors could not
  see it. A token seen in a single text is left out: no group shares it;
- **ids**: 0 is padding, 1 every token outside the vocabulary, then the vocabulary in order;
- **rows**: each text becomes its first ``max_tokens`` (default 512) token ids, padded with 0 to
  the width of the longest text (at most ``max_tokens``), an ``(N, width)`` ``int32`` matrix that
  the training loop batches like table rows (:class:`TokenIds` feeds a batch to the model). The
  model reads the tokens only, not the padding, so a long limit costs memory (4 bytes a token
  of the longest text, per text), not time. Words after the limit are not seen: a trigger there
  is invisible (in the benchmark corpus of reviews, 0.35 % of the texts are longer than 512
  words, 2.6 % longer than 256).

The vocabulary travels with the trained weights (:meth:`Tokenizer.as_weights`), as the input
scaling of images and tables does, so that other texts (a trusted set) are encoded the same way.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

__all__ = [
    "TOKEN_PATTERN",
    "PADDING_ID",
    "UNKNOWN_ID",
    "VOCABULARY_KEY",
    "TokenizerSettings",
    "Tokenizer",
    "TokenIds",
    "tokenize",
]

TOKEN_PATTERN = r"[^\W_]+(?:['\u2019][^\W_]+)*"
"""A word: letters and digits (any script, no underscore), with inner apostrophes (' or ’)."""

_TOKEN = re.compile(TOKEN_PATTERN)

PADDING_ID = 0
UNKNOWN_ID = 1
_FIRST_ID = 2

VOCABULARY_KEY = "tokenizer.vocabulary"
"""Name of the vocabulary in a text model's weights: its tokens, UTF-8, one per line."""


def tokenize(text: str) -> list[str]:
    """The lower-cased word tokens of ``text`` (see :data:`TOKEN_PATTERN`)."""
    return _TOKEN.findall(text.lower())


@dataclass(frozen=True)
class TokenizerSettings:
    """How texts become token ids; part of the embedding's fingerprint.

    Parameters
    ----------
    max_tokens : int
        Tokens kept per text, the first ones (a review's median is about 50 words).
    max_vocabulary : int
        Most tokens in the vocabulary, the most frequent first.
    min_texts : int
        A token enters the vocabulary when at least this many texts hold it.
    """

    max_tokens: int = 512
    max_vocabulary: int = 50_000
    min_texts: int = 2

    def __post_init__(self) -> None:
        for name in ("max_tokens", "max_vocabulary", "min_texts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    def as_dict(self) -> dict:
        return {"pattern": TOKEN_PATTERN, "lowercase": True, **asdict(self)}


class Tokenizer:
    """A fitted vocabulary: token text -> id (ids from 2; 0 padding, 1 unknown).

    Build one with :meth:`fit` (from the audited texts) or :meth:`from_weights` (from a trained
    model's weights); :meth:`encode` turns texts into rows of ids.
    """

    def __init__(self, tokens: Iterable[str], settings: TokenizerSettings) -> None:
        self.tokens = list(tokens)
        self.settings = settings
        self._ids = {token: index + _FIRST_ID for index, token in enumerate(self.tokens)}

    @property
    def vocabulary_size(self) -> int:
        """Rows of the model's embedding table: the tokens plus padding and unknown."""
        return len(self.tokens) + _FIRST_ID

    def id_of(self, token: str) -> int:
        """The id of ``token`` (:data:`UNKNOWN_ID` when it is not in the vocabulary)."""
        return self._ids.get(token, UNKNOWN_ID)

    @classmethod
    def fit(cls, texts: Iterable[str], settings: TokenizerSettings | None = None) -> Tokenizer:
        """The vocabulary of ``texts``: tokens in at least ``min_texts`` texts, by the number of
        texts holding them (most first), then by their text, at most ``max_vocabulary``."""
        settings = settings or TokenizerSettings()
        in_texts: Counter[str] = Counter()
        for text in texts:
            in_texts.update(set(tokenize(text)))
        kept = [(-count, token) for token, count in in_texts.items() if count >= settings.min_texts]
        kept.sort()
        return cls((token for _, token in kept[: settings.max_vocabulary]), settings)

    def encode(self, texts: Iterable[str]) -> np.ndarray:
        """Rows of token ids, ``(N, width)`` ``int32``: each text's first ``max_tokens`` ids,
        padded with 0; ``width`` is the longest row (at least 1)."""
        limit = self.settings.max_tokens
        rows = [[self._ids.get(t, UNKNOWN_ID) for t in tokenize(text)[:limit]] for text in texts]
        width = max([1, *map(len, rows)])
        out = np.zeros((len(rows), width), dtype=np.int32)
        for row, ids in zip(out, rows, strict=True):
            row[: len(ids)] = ids
        return out

    def as_weights(self) -> dict[str, np.ndarray]:
        """The vocabulary as a weights entry: its tokens, UTF-8, joined by line feeds (a token
        holds none), as ``uint8``; :meth:`from_weights` reads it back."""
        data = "\n".join(self.tokens).encode("utf-8")
        return {VOCABULARY_KEY: np.frombuffer(data, dtype=np.uint8).copy()}

    @classmethod
    def from_weights(
        cls, weights: dict[str, np.ndarray], settings: dict | None = None
    ) -> Tokenizer:
        """The tokenizer whose vocabulary ``weights`` carries (:meth:`as_weights`);
        ``settings`` is :meth:`TokenizerSettings.as_dict` as the model description holds it."""
        data = np.asarray(weights[VOCABULARY_KEY], dtype=np.uint8).tobytes().decode("utf-8")
        tokens = data.split("\n") if data else []
        names = {f.name for f in fields(TokenizerSettings)}
        known = {k: v for k, v in (settings or {}).items() if k in names}
        return cls(tokens, TokenizerSettings(**known))


@dataclass(frozen=True)
class TokenIds:
    """Feeds a batch of token-id rows to a text model: what
    :class:`~poisonguard.embed.inputs.InputScaler` is to images and tables.

    The batch is cut to its longest row (the columns after it are padding only), which saves
    memory on batches of short texts and changes nothing the model computes: it leaves padding
    out.
    """

    def __call__(self, batch: np.ndarray) -> torch.Tensor:
        used = np.flatnonzero((batch != PADDING_ID).any(axis=0))
        width = int(used[-1]) + 1 if used.size else 1
        return torch.from_numpy(np.ascontiguousarray(batch[:, :width], dtype=np.int64))
