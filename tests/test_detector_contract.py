"""Every registered detector keeps the contract of :mod:`detector_contract`: one finite score
per sample, the same from memory and from a file, permuted with the samples. The plug-in
example of CONTRIBUTING.md is checked the same way in ``test_plugins.py``."""

from __future__ import annotations

import pytest
from detector_contract import (
    check_memory_and_file_agree,
    check_one_finite_score_per_sample,
    check_shuffling_permutes_scores,
)

from poisonguard.detectors import DETECTORS

# detectors that need a trusted clean set are checked in test_detectors.py, with one
CHECKED = {name: d for name, d in DETECTORS.items() if not d.needs_trusted}


@pytest.mark.parametrize("name", CHECKED)
def test_one_finite_score_per_sample_and_deterministic(name):
    check_one_finite_score_per_sample(CHECKED[name])


@pytest.mark.parametrize("name", CHECKED)
def test_scores_from_memory_and_from_a_file_are_equal(name, tmp_path):
    check_memory_and_file_agree(CHECKED[name], tmp_path)


# These two draw their random subsets by position (FastMCD's starts, the folds of the heads):
# today a shuffled dataset gets different scores. To be fixed by drawing by content.
ORDER_DEPENDENT = {"spectre", "confident-learning"}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason="draws subsets by position"))
        if n in ORDER_DEPENDENT
        else n
        for n in CHECKED
    ],
)
def test_shuffling_the_samples_permutes_the_scores(name):
    check_shuffling_permutes_scores(CHECKED[name])
