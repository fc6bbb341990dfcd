"""Every registered detector keeps the contract of :mod:`detector_contract`: one finite score
per sample, the same from memory and from a file, permuted with the samples. The plug-in
example of CONTRIBUTING.md is checked the same way in ``test_plugins.py``."""

from __future__ import annotations

import numpy as np
import pytest
from detector_contract import (
    check_memory_and_file_agree,
    check_one_finite_score_per_sample,
    check_shuffling_permutes_scores,
)

from poisonguard.detectors import DETECTORS, confident_learning, knn_labels
from poisonguard.detectors.class_rows import robust_class_fit, split_class
from poisonguard.detectors.streaming import knn_label_disagreement, out_of_sample_probabilities
from poisonguard.seeding import class_rng

# detectors that need a trusted clean set are checked in test_detectors.py, with one
CHECKED = {name: d for name, d in DETECTORS.items() if not d.needs_trusted}


@pytest.mark.parametrize("name", CHECKED)
def test_one_finite_score_per_sample_and_deterministic(name):
    check_one_finite_score_per_sample(CHECKED[name])


@pytest.mark.parametrize("name", CHECKED)
def test_scores_from_memory_and_from_a_file_are_equal(name, tmp_path):
    check_memory_and_file_agree(CHECKED[name], tmp_path)


@pytest.mark.parametrize("name", CHECKED)
def test_shuffling_the_samples_permutes_the_scores(name):
    check_shuffling_permutes_scores(CHECKED[name])


# The contract case is small enough that no detector subsamples; here each detector's sampled
# path runs on a class larger than its sample, and shuffling the rows must still permute the
# scores: the samples are drawn by content (poisonguard.seeding.row_keys), not by position.


def _shuffled_pair(n: int = 1200, width: int = 8):
    rng = np.random.default_rng(3)
    features = rng.normal(size=(n, width)).astype(np.float32)
    features[: n // 20] += 4.0  # a far group
    labels = (np.arange(n) % 3).astype(np.int64)
    order = rng.permutation(n)
    return features, labels, order


def test_sampled_robust_fit_and_split_do_not_depend_on_row_order():
    features, _, order = _shuffled_pair()
    fit = robust_class_fit(features, class_rng(0, 1), max_fit_samples=200)
    fit_shuffled = robust_class_fit(features[order], class_rng(0, 1), max_fit_samples=200)
    for got, expected in zip(fit_shuffled, fit, strict=True):
        np.testing.assert_allclose(got, expected[order], rtol=1e-6, atol=1e-9)
    split = split_class(features, class_rng(0, 1), max_fit_samples=200)
    split_shuffled = split_class(features[order], class_rng(0, 1), max_fit_samples=200)
    np.testing.assert_allclose(split_shuffled[0], split[0][order], rtol=1e-6, atol=1e-9)


def test_sampled_heads_and_knn_cells_do_not_depend_on_row_order(monkeypatch):
    features, labels, order = _shuffled_pair(n=3000)
    monkeypatch.setattr(confident_learning, "_CALIBRATION_SAMPLES", 300)
    heads = out_of_sample_probabilities(features, labels)
    heads_shuffled = out_of_sample_probabilities(features[order], labels[order])
    np.testing.assert_allclose(heads_shuffled, heads[order], rtol=1e-6, atol=1e-9)
    monkeypatch.setattr(knn_labels, "CELL_SIZE", 100)  # 30 cells, 4 probed: the cell search
    knn = knn_label_disagreement(features, labels, n_probe=4)
    knn_shuffled = knn_label_disagreement(features[order], labels[order], n_probe=4)
    np.testing.assert_array_equal(knn_shuffled, knn[order])
