"""What a model that never saw a text's label reads: the text's words, as dense columns.

A scan's ``predicted_label`` is meant to come from a model that never saw the sample
(:func:`~poisonguard.detectors.streaming.out_of_sample_probabilities`, cross-validated heads).
On images the heads read the embedding model's features; on texts those features are no such
thing: the text model trains on every text with its label and memorises them (100 % training
accuracy on 4,000 reviews), so heads on its features agree with every given label, flipped or
not (on 4,000 real reviews: 0.0 % of the clean labels disagreed with them, where a model that
never saw the texts disagrees with 21.8 %). As the raw columns of a table stand in for a
table's features, the words of a text do: TF-IDF over the words held by at least two texts,
sublinear term counts (Salton & Buckley, 1988), reduced by a truncated SVD to
:data:`COMPONENTS` dimensions (latent semantic analysis, Deerwester et al., 1990), dense rows
the heads take like any features.

Measured on 4,000 real reviews with 10 % of the labels flipped (``benchmarks/text.py``'s
corpus): AUROC of ``1 - p(given label)`` for the flips 0.833 (word pairs added: 0.840, at three
times the cost; the heads on the text model's features: 0.69); on 10,000 reviews the columns
take about 1 s on 2 cores.

Only the predictions (``predicted_label``, the label confusion, how ambiguous the labels look,
``sanitize --action relabel``) come from these columns; the label-noise rule still reads the
heads on the model's features. With these columns it called noise on the clean reviews: 22 %
of them disagree with their label, most of it the ambiguity of short reviews (see
docs/benchmarks.md, "Text").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer

from poisonguard.embed.text_tokens import tokenize

__all__ = ["COMPONENTS", "word_columns"]

COMPONENTS = 128
"""Dimensions the TF-IDF is reduced to."""


def word_columns(texts: Sequence[str], *, seed: int = 0) -> np.ndarray:
    """``(N, k)`` float32 LSA coordinates of ``texts``: ``k`` is :data:`COMPONENTS`, or fewer
    when the texts hold fewer terms; one column of zeros when no word is held by two texts
    (nothing then tells the texts apart).

    Tokens are the text model's (:func:`~poisonguard.embed.text_tokens.tokenize`). The SVD is
    seeded and its random projection acts on the terms, so the rows' order changes the columns
    by rounding only.
    """
    vectorizer = TfidfVectorizer(
        tokenizer=tokenize,
        lowercase=False,  # tokenize lower-cases
        token_pattern=None,
        min_df=2,
        sublinear_tf=True,
        dtype=np.float32,
    )
    try:
        tfidf = vectorizer.fit_transform(list(texts))
    except ValueError:  # no word in two texts
        return np.zeros((len(texts), 1), dtype=np.float32)
    k = min(COMPONENTS, tfidf.shape[1] - 1, tfidf.shape[0] - 1)
    if k < 1:
        return tfidf.toarray().astype(np.float32)
    svd = TruncatedSVD(n_components=k, random_state=seed)
    return np.ascontiguousarray(svd.fit_transform(tfidf), dtype=np.float32)
