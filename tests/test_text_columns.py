"""The columns a text's out-of-sample prediction reads (poisonguard.detectors.text_columns):
its words, as TF-IDF reduced by LSA."""

from __future__ import annotations

import numpy as np
from test_text_scan import reviews

from poisonguard.detectors.streaming import out_of_sample_probabilities
from poisonguard.detectors.text_columns import COMPONENTS, word_columns


def test_the_columns_are_dense_bounded_and_do_not_depend_on_the_order_of_the_texts():
    texts, _, _ = reviews(300, seed=1)
    columns = word_columns(texts)
    assert columns.dtype == np.float32 and columns.shape[0] == 300
    assert 1 <= columns.shape[1] <= COMPONENTS
    order = np.random.default_rng(0).permutation(300)
    shuffled = word_columns([texts[i] for i in order])
    # an SVD fixes each component up to its sign
    signs = np.sign(np.sum(shuffled * columns[order], axis=0))
    assert np.allclose(shuffled * signs, columns[order], atol=1e-4)


def test_texts_sharing_no_word_give_one_column_of_zeros():
    columns = word_columns(["alpha", "beta", "gamma"])
    assert columns.shape == (3, 1) and not columns.any()


def test_heads_on_the_columns_read_flipped_labels_as_their_true_class():
    texts, labels, _ = reviews(600, seed=2)
    y = np.array([label == "pos" for label in labels], dtype=np.int64)
    flipped = np.zeros(y.size, dtype=bool)
    flipped[np.random.default_rng(3).choice(y.size, 30, replace=False)] = True
    noisy = np.where(flipped, 1 - y, y)
    probabilities = np.asarray(
        out_of_sample_probabilities(word_columns(texts), noisy, n_classes=2, seed=0)
    )
    predicted = probabilities.argmax(axis=1)
    assert (predicted[flipped] == y[flipped]).mean() > 0.9  # the content's class, not the label
    assert (predicted[~flipped] == noisy[~flipped]).mean() > 0.9
