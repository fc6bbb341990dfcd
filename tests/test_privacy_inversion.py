"""Tests of model inversion (MI-Face) and of the leakage measures of its reconstructions."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from poisonguard.dataset import Dataset
from poisonguard.embed import EmbedSettings, embed_dataset, embed_with
from poisonguard.privacy import inversion_leakage as leakage
from poisonguard.privacy.inversion_leakage import (
    inversion_leakage,
    nearest_distances,
    ssim,
    summarise_inversion,
)
from poisonguard.privacy.model_inversion import Inversion, invert_classes

N_CLASSES = 3
SIDE = 8


def bar_images(seed: int = 0, per_class: int = 40) -> Dataset:
    """1x8x8 uint8 images: dark noise with one bright row per class, at row ``2 * class + 1``."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(N_CLASSES), per_class)
    x = rng.integers(0, 40, size=(labels.size, 1, SIDE, SIDE)).astype(np.uint8)
    for i, code in enumerate(labels):
        x[i, 0, 2 * code + 1, :] = 230
    return Dataset(
        x=x,
        labels=labels.astype(np.int64),
        class_names=["low", "middle", "high"],
        ids=[str(i) for i in range(labels.size)],
        kind="image",
        path=Path("/synthetic/bars"),
        format="npz",
    )


def blob_table(seed: int = 0, per_class: int = 40) -> Dataset:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(N_CLASSES), per_class)
    x = (rng.normal(size=(labels.size, 5)) + 3.0 * labels[:, None]).astype(np.float32)
    return Dataset(
        x=x,
        labels=labels.astype(np.int64),
        class_names=["x", "y", "z"],
        ids=[str(i) for i in range(labels.size)],
        kind="table",
        path=Path("/synthetic/blobs.csv"),
        format="csv",
        feature_names=[f"f{i}" for i in range(5)],
    )


@pytest.fixture(scope="module")
def image_embedding(tmp_path_factory):
    cache = tmp_path_factory.mktemp("inversion-cache")
    return embed_dataset(bar_images(), EmbedSettings(seed=0, epochs=10), cache_dir=cache)


@pytest.fixture(scope="module")
def table_embedding(tmp_path_factory):
    cache = tmp_path_factory.mktemp("inversion-table-cache")
    return embed_dataset(blob_table(), EmbedSettings(seed=0, epochs=10), cache_dir=cache)


def probabilities(embedding, images: np.ndarray) -> np.ndarray:
    return embed_with(embedding, images.astype(np.float32))[1].astype(np.float64)


def mi_face_cost(embedding, inversion: Inversion, tv_weight: float, l2_weight: float):
    """The MI-Face cost recomputed in numpy from the returned images (not from the run)."""
    p = probabilities(embedding, inversion.images)[
        np.arange(len(inversion.classes)), inversion.classes
    ]
    u = inversion.images / inversion.value_max
    tv = (
        np.abs(np.diff(u, axis=2)).mean(axis=(1, 2, 3))
        + np.abs(np.diff(u, axis=3)).mean(axis=(1, 2, 3))
    ) / 2
    return 1 - p + tv_weight * tv + l2_weight * np.square(u).mean(axis=(1, 2, 3))


# --- inversion -----------------------------------------------------------------------------------


def test_inversion_raises_every_class_confidence(image_embedding):
    inversion = invert_classes(image_embedding, [0, 1, 2], value_max=255)
    start = np.broadcast_to(image_embedding.weights["scaler.mean"], (1, 1, SIDE, SIDE))
    start_confidence = probabilities(image_embedding, np.array(start))[0]
    assert inversion.images.shape == (3, 1, SIDE, SIDE)
    assert inversion.images.dtype == np.float64
    assert np.all(start_confidence < 0.5)
    assert np.all(inversion.confidence > 0.9)
    assert np.all(inversion.confidence > start_confidence + 0.4)
    # the reported confidence is the model's on the returned images
    recomputed = probabilities(image_embedding, inversion.images)[np.arange(3), [0, 1, 2]]
    np.testing.assert_allclose(recomputed, inversion.confidence, atol=1e-4)
    # and the reconstruction shows the class's bar as its brightest row
    brightest_rows = inversion.images[:, 0].mean(axis=2).argmax(axis=1)
    np.testing.assert_array_equal(brightest_rows, [1, 3, 5])


def test_best_iterate_is_kept_not_the_last(image_embedding):
    tv, l2 = 0.05, 0.01
    inversion = invert_classes(
        image_embedding,
        [0, 1, 2],
        value_max=255,
        learning_rate=2.0,  # far too large: the cost jumps around
        steps=60,
        patience=1000,
        tv_weight=tv,
        l2_weight=l2,
    )
    history = inversion.history
    assert history.shape == (61, 3)
    np.testing.assert_allclose(inversion.cost, np.nanmin(history, axis=0), rtol=0, atol=0)
    assert np.any(history[-1] > inversion.cost + 1e-3), "the test needs a worse last iterate"
    # the images returned are the best iterates: their cost is the reported lowest cost
    np.testing.assert_allclose(
        mi_face_cost(image_embedding, inversion, tv, l2), inversion.cost, atol=1e-4
    )


def test_early_stopping_on_a_flat_objective(image_embedding):
    inversion = invert_classes(
        image_embedding,
        [0, 1, 2],
        value_max=255,
        learning_rate=1e-7,
        tv_weight=0.0,
        l2_weight=0.0,
        patience=5,
        steps=300,
    )
    np.testing.assert_array_equal(inversion.steps_run, [5, 5, 5])
    assert inversion.history.shape[0] == 6
    # an objective that keeps improving runs all its steps
    moving = invert_classes(image_embedding, [0], value_max=255, steps=40, min_improvement=0)
    assert moving.steps_run.tolist() == [40]


@pytest.mark.parametrize("value_max", [255.0, 100.0])
def test_reconstructions_stay_in_the_value_range(image_embedding, value_max):
    inversion = invert_classes(
        image_embedding, [0, 1, 2], value_max=value_max, learning_rate=1.0, steps=30
    )
    assert inversion.images.min() >= 0.0
    assert inversion.images.max() <= value_max
    assert inversion.images.max() == value_max  # the clamp was needed, so it was tested
    assert inversion.value_max == value_max


def test_inversion_is_deterministic(image_embedding):
    first = invert_classes(image_embedding, [2, 0], value_max=255, steps=50, seed=3)
    second = invert_classes(image_embedding, [2, 0], value_max=255, steps=50, seed=3)
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.cost, second.cost)
    np.testing.assert_array_equal(first.classes, [2, 0])


def test_value_max_is_guessed_from_the_data_mean(image_embedding, caplog):
    inversion = invert_classes(image_embedding, [0], steps=5)
    assert inversion.value_max == 255.0
    assert "value_max not given" in caplog.text


def test_inversion_refuses_what_it_cannot_invert(image_embedding):
    scripted = replace(image_embedding, model={"source": "torchscript", "head": "LinearHead"})
    with pytest.raises(ValueError, match="TorchScript"):
        invert_classes(scripted, [0], value_max=255)
    with pytest.raises(ValueError, match="no trained weights"):
        invert_classes(replace(image_embedding, weights={}), [0], value_max=255)
    with pytest.raises(ValueError, match="class codes"):
        invert_classes(image_embedding, [3], value_max=255)
    with pytest.raises(ValueError, match="learning_rate"):
        invert_classes(image_embedding, [0], value_max=255, learning_rate=0)
    with pytest.raises(ValueError, match=r"\(C, H, W\) images or \(D,\) rows"):
        invert_classes(replace(image_embedding, input_shape=(8, 8)), [0], value_max=255)


def test_table_inversion_within_bounds(table_embedding):
    data = blob_table()
    low, high = data.x.min(axis=0), data.x.max(axis=0)
    inversion = invert_classes(table_embedding, [0, 1, 2], bounds=(low, high))
    assert inversion.images.shape == (3, 5)
    assert np.all(inversion.images >= low - 1e-4) and np.all(inversion.images <= high + 1e-4)
    at_bound = np.isclose(inversion.images, low, atol=1e-4) | np.isclose(inversion.images, high)
    assert at_bound.any()  # the clamp was needed, so it was tested
    recomputed = probabilities(table_embedding, inversion.images)[np.arange(3), [0, 1, 2]]
    np.testing.assert_allclose(recomputed, inversion.confidence, atol=1e-4)
    start = probabilities(table_embedding, table_embedding.weights["scaler.mean"][None])[0]
    assert np.all(inversion.confidence >= start - 1e-6)  # the start is a candidate too
    # the mean row lies in the middle class's blob; the outer classes have far to go
    assert start[0] < 0.5 and start[2] < 0.5
    assert inversion.confidence[0] > 0.9 and inversion.confidence[2] > 0.9
    # class k's blob is centred at 3k: the reconstructions are ordered like the classes
    assert np.all(np.diff(inversion.images.mean(axis=1)) > 0)
    # without bounds: within 4 standard deviations of each column's mean
    free = invert_classes(table_embedding, [0, 2], learning_rate=1.0)
    mean, std = table_embedding.weights["scaler.mean"], table_embedding.weights["scaler.std"]
    assert np.all(np.abs(free.images - mean) <= 4 * std + 1e-4)


# --- leakage measures ----------------------------------------------------------------------------


def split_bars():
    data = bar_images(seed=1, per_class=6)
    members = np.arange(data.labels.size) % 2 == 0
    return data.x[members], data.labels[members], data.x[~members], data.labels[~members]


def fake_inversion(images: np.ndarray, confidence=None) -> Inversion:
    k = images.shape[0]
    return Inversion(
        classes=np.arange(k),
        images=images.astype(np.float64),
        confidence=np.full(k, 0.9) if confidence is None else np.asarray(confidence),
        cost=np.zeros(k),
        steps_run=np.zeros(k, dtype=np.int64),
        history=np.zeros((1, k)),
        value_max=255.0,
    )


def test_reconstruction_equal_to_a_training_image_leaks():
    train_x, train_labels, held_x, held_labels = split_bars()
    index = int(np.flatnonzero(train_labels == 1)[2])
    other = int(np.flatnonzero(held_labels == 2)[0])
    images = np.stack([train_x[index], held_x[other]])  # class 1: a member; class 2: a non-member
    evaluation = np.array([[0.1, 0.8, 0.1], [0.5, 0.3, 0.2]])
    per_class = inversion_leakage(
        fake_inversion(images, [0.95, 0.6]),
        [1, 2],
        ["low", "middle", "high"],
        train_x=train_x,
        train_labels=train_labels,
        heldout_x=held_x,
        heldout_labels=held_labels,
        evaluation_probabilities=evaluation,
        value_max=255,
    )
    member, nonmember = per_class
    assert member["class"] == "middle" and member["code"] == 1
    assert member["nearest_train_distance"] == 0.0
    assert member["nearest_heldout_distance"] > 0
    assert member["distance_ratio"] == 0.0
    assert member["nearest_train_index"] == index
    assert member["ssim_to_nearest_train"] == pytest.approx(1.0)
    assert member["evaluation_accuracy_hit"] is True
    assert member["evaluation_confidence"] == pytest.approx(0.8)
    assert member["confidence"] == pytest.approx(0.95)
    assert member["note"] is None

    assert nonmember["nearest_heldout_distance"] == 0.0
    assert nonmember["distance_ratio"] == float("inf")
    assert nonmember["ssim_to_nearest_train"] < 0.99
    assert nonmember["evaluation_accuracy_hit"] is False

    summary = summarise_inversion(per_class)
    assert summary == {
        "n_classes": 2,
        "evaluation_accuracy": 0.5,
        "median_distance_ratio": float("inf"),
        "max_ssim": pytest.approx(1.0),
    }


def test_distance_ratio_is_train_over_heldout_in_scaled_units():
    train_x = np.array([[0.0, 0.0], [10.0, 0.0]])
    held_x = np.array([[0.0, 20.0], [0.0, 9.0]])
    found = nearest_distances(
        np.array([[0.0, 3.0]]),
        [0],
        train_x,
        np.array([0, 0]),
        held_x,
        np.array([0, 0]),
        value_max=10.0,
    )[0]
    assert found["nearest_train_distance"] == pytest.approx(0.3)
    assert found["nearest_heldout_distance"] == pytest.approx(0.6)
    assert found["distance_ratio"] == pytest.approx(0.5)
    assert found["nearest_train_index"] == 0
    # a record in both sets: both distances 0, ratio 1
    both = nearest_distances(
        np.array([[0.0, 9.0]]), [0], held_x, np.array([0, 0]), held_x, np.array([0, 0])
    )[0]
    assert both["distance_ratio"] == 1.0


def test_nearest_distances_in_chunks_match_brute_force(monkeypatch):
    rng = np.random.default_rng(0)
    train_x = rng.integers(0, 256, size=(50, 1, 4, 4)).astype(np.uint8)
    train_labels = rng.integers(0, 2, size=50)
    held_x = rng.integers(0, 256, size=(30, 1, 4, 4)).astype(np.uint8)
    held_labels = rng.integers(0, 2, size=30)
    queries = rng.uniform(0, 255, size=(2, 1, 4, 4))
    monkeypatch.setattr(leakage, "CHUNK_ROWS", 3)
    found = nearest_distances(
        queries, [0, 1], train_x, train_labels, held_x, held_labels, value_max=255
    )
    for k in (0, 1):
        rows = np.flatnonzero(train_labels == k)
        d = np.linalg.norm(
            (train_x[rows].reshape(rows.size, -1) - queries[k].reshape(-1)) / 255, axis=1
        )
        assert found[k]["nearest_train_index"] == rows[np.argmin(d)]
        assert found[k]["nearest_train_distance"] == pytest.approx(d.min())
        rows = np.flatnonzero(held_labels == k)
        d = np.linalg.norm(
            (held_x[rows].reshape(rows.size, -1) - queries[k].reshape(-1)) / 255, axis=1
        )
        assert found[k]["nearest_heldout_distance"] == pytest.approx(d.min())


def test_missing_classes_give_none_and_a_note():
    train_x, train_labels, held_x, held_labels = split_bars()
    keep_train = train_labels != 0  # class 0 never trained on
    keep_held = held_labels != 2  # class 2 never held out
    images = np.stack([train_x[train_labels == c][0] for c in (1, 2)] + [held_x[0]])
    per_class = inversion_leakage(
        fake_inversion(images),
        [1, 2, 0],
        ["low", "middle", "high"],
        train_x=train_x[keep_train],
        train_labels=train_labels[keep_train],
        heldout_x=held_x[keep_held],
        heldout_labels=held_labels[keep_held],
        evaluation_probabilities=None,
        value_max=255,
    )
    complete, no_heldout, no_train = per_class
    assert complete["note"] is None and complete["distance_ratio"] == 0.0
    assert no_heldout["nearest_heldout_distance"] is None
    assert no_heldout["distance_ratio"] is None
    assert no_heldout["nearest_train_distance"] == 0.0
    assert "held-out" in no_heldout["note"]
    assert no_train["nearest_train_distance"] is None
    assert no_train["nearest_train_index"] is None
    assert no_train["ssim_to_nearest_train"] is None
    assert no_train["distance_ratio"] is None
    assert "training" in no_train["note"]
    assert no_train["evaluation_accuracy_hit"] is None
    summary = summarise_inversion(per_class)
    assert summary["evaluation_accuracy"] is None
    assert summary["median_distance_ratio"] == 0.0
    assert summary["max_ssim"] == pytest.approx(1.0)


def test_table_reconstructions_have_no_ssim():
    data = blob_table(per_class=4)
    per_class = inversion_leakage(
        fake_inversion(data.x[[0, 5]]),
        [0, 1],
        data.class_names,
        train_x=data.x,
        train_labels=data.labels,
        heldout_x=data.x[::-1] + 1.0,
        heldout_labels=data.labels[::-1],
        evaluation_probabilities=np.array([[0.9, 0.1, 0.0], [0.9, 0.1, 0.0]]),
        value_max=1.0,
    )
    assert [r["ssim_to_nearest_train"] for r in per_class] == [None, None]
    assert [r["nearest_train_index"] for r in per_class] == [0, 5]
    assert [r["evaluation_accuracy_hit"] for r in per_class] == [True, False]
    assert summarise_inversion(per_class)["max_ssim"] is None


def test_summary_of_hand_made_records():
    records = [
        {"evaluation_accuracy_hit": True, "distance_ratio": 0.5, "ssim_to_nearest_train": 0.2},
        {"evaluation_accuracy_hit": False, "distance_ratio": 1.5, "ssim_to_nearest_train": 0.7},
        {"evaluation_accuracy_hit": True, "distance_ratio": None, "ssim_to_nearest_train": None},
        {"evaluation_accuracy_hit": True, "distance_ratio": 0.9, "ssim_to_nearest_train": 0.1},
    ]
    assert summarise_inversion(records) == {
        "n_classes": 4,
        "evaluation_accuracy": 0.75,
        "median_distance_ratio": 0.9,
        "max_ssim": 0.7,
    }
    assert summarise_inversion([]) == {
        "n_classes": 0,
        "evaluation_accuracy": None,
        "median_distance_ratio": None,
        "max_ssim": None,
    }


def test_ssim_on_tiny_and_colour_images(monkeypatch):
    rng = np.random.default_rng(0)
    small = rng.uniform(0, 1, size=(1, 5, 5))
    assert ssim(small, small, value_max=1.0) == pytest.approx(1.0)
    assert ssim(small, 1 - small, value_max=1.0) < 0.5
    colour = rng.integers(0, 256, size=(3, 8, 8))
    assert ssim(colour, colour, value_max=255) == pytest.approx(1.0)
    noisy = np.clip(colour + rng.normal(0, 40, size=colour.shape), 0, 255)
    assert 0 < ssim(colour, noisy, value_max=255) < 1
    with pytest.raises(ValueError, match="different shapes"):
        ssim(small, colour, value_max=1.0)
    with pytest.raises(ValueError, match="3x3"):
        ssim(np.zeros((2, 2)), np.zeros((2, 2)), value_max=1.0)
    monkeypatch.setitem(sys.modules, "skimage.metrics", None)
    with pytest.raises(ImportError, match="pip install scikit-image"):
        ssim(small, small, value_max=1.0)
