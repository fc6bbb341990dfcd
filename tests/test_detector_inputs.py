"""The embedding is checked once, as it enters the detectors: bad shapes and values are refused
there, and no detector reads the features again to check them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from poisonguard.detectors import DETECTORS, DetectorInputs, validation
from poisonguard.results import Embedding


def embedding(n: int = 300, *, from_cache: bool = False) -> tuple[Embedding, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 3
    features = (rng.normal(size=(n, 6)) + 3.0 * labels[:, None]).astype(np.float32)
    logits = rng.normal(size=(n, 3))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    records = np.abs(rng.normal(size=(n, 4))).astype(np.float32)
    return Embedding(
        features=features,
        probabilities=probabilities.astype(np.float32),
        loss=records,
        margin=records,
        gradient_sq=records,
        model={"source": "test"},
        input_shape=(6,),
        train_accuracy=1.0,
        fingerprint="inputs",
        from_cache=from_cache,
    ), labels


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e, y: (dataclasses.replace(e, features=e.features[:, 0]), y), r"shape \(N, F\)"),
        (lambda e, y: (dataclasses.replace(e, probabilities=e.probabilities[:-1]), y), "match"),
        (lambda e, y: (e, y[:-1]), r"labels must have shape \(300,\)"),
        (lambda e, y: (e, y + 3), r"\[0, K\)"),
        (
            lambda e, y: (dataclasses.replace(e, features=np.where(e.features > 5, np.nan, 0)), y),
            "NaN or infinite",
        ),
        (lambda e, y: (dataclasses.replace(e, probabilities=2 * e.probabilities), y), "sum to 1"),
    ],
)
def test_a_bad_embedding_is_refused_as_it_enters_the_detectors(change, message):
    with pytest.raises(ValueError, match=message):
        DetectorInputs(*change(*embedding()))


def test_a_table_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match="the table has 299 rows for 300 samples"):
        DetectorInputs(*embedding(), table=np.zeros((299, 2)))


@pytest.mark.parametrize("from_cache", [False, True])
def test_the_features_are_checked_once_and_not_by_the_detectors(monkeypatch, from_cache):
    checked = []
    original = validation.check_finite

    def counting(block, name="features"):
        checked.append(name)
        original(block, name)

    monkeypatch.setattr(validation, "check_finite", counting)
    inputs = DetectorInputs(*embedding(from_cache=from_cache))
    for detector in DETECTORS.values():
        if not detector.needs_trusted:
            detector.run(inputs)
    # one block of 300 rows, once, or not at all when the cache checked it on reading
    assert checked.count("features") == (0 if from_cache else 1)
