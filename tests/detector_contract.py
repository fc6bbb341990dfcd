"""The contract every registered detector keeps, built-in or plug-in (see CONTRIBUTING.md).

A detector maps an embedding and the labels to one finite score per sample, higher = more
suspicious, and the scores are a property of the samples, not of how they are stored or
ordered:

- the same inputs give the same scores (nothing random left unseeded);
- the arrays in memory or in a file (an out-of-core scan) give the same scores, exactly;
- shuffling the samples permutes the scores.

:func:`check_detector` runs every check through :func:`poisonguard.scan.scan_embedding`, the
pipeline a scan runs after embedding, so a plug-in is checked the way a scan will call it.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from poisonguard.dataset import Dataset, RowNumbers
from poisonguard.detectors import Detector
from poisonguard.ondisk import BLOCK_ROWS, ArrayFile, staging_area
from poisonguard.results import Embedding
from poisonguard.rows import Rows
from poisonguard.scan import ScanSettings, scan_embedding

N_CLASSES = 4
PER_CLASS = 150
FEATURES = 12
EPOCHS = 3
RECORDS = ("features", "probabilities", "loss", "margin", "gradient_sq")


def contract_case(seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Gaussian classes with a planted far group in class 1 and 5 % flipped labels, and made-up
    training records of a model that learns the features: the arrays of an embedding and the
    labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(N_CLASSES, FEATURES))
    truth = np.repeat(np.arange(N_CLASSES), PER_CLASS)
    features = centres[truth] + rng.normal(size=(truth.size, FEATURES))
    planted = rng.choice(np.flatnonzero(truth != 1), 20, replace=False)
    features[planted] += 6.0 * rng.normal(size=FEATURES) / np.sqrt(FEATURES)
    labels = truth.copy()
    labels[planted] = 1
    flipped = rng.choice(np.setdiff1d(np.arange(truth.size), planted), 30, replace=False)
    labels[flipped] = (labels[flipped] + rng.integers(1, N_CLASSES, 30)) % N_CLASSES
    logits = -np.square(features[:, None, :] - centres[None]).sum(axis=2) / (2 * FEATURES)
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    given = probabilities[np.arange(labels.size), labels]
    sharpening = np.linspace(0.5, 1.5, EPOCHS)[None, :]
    loss = -np.log(np.clip(given, 1e-12, None))[:, None] * sharpening
    margin = np.log(np.clip(given, 1e-12, None) / np.clip(1 - given, 1e-12, None))[:, None]
    records = {
        "features": features.astype(np.float32),
        "probabilities": probabilities.astype(np.float32),
        "loss": loss.astype(np.float32),
        "margin": (margin * sharpening).astype(np.float32),
        "gradient_sq": np.square(1 - given)[:, None].repeat(EPOCHS, axis=1).astype(np.float32),
    }
    return records, labels


def scores_of(
    detector: Detector,
    records: dict[str, np.ndarray],
    labels: np.ndarray,
    *,
    folder: Path | None = None,
) -> np.ndarray:
    """The detector's scores from a scan of the embedding ``records``; with ``folder``, the
    arrays are in an HDF5 file there and the scan stages its results (``--chunk-rows``)."""
    arrays: dict = dict(records)
    if folder is not None:
        path = folder / "embedding.h5"
        with h5py.File(path, "w") as handle:
            for name, values in records.items():
                handle[name] = values
        arrays = {name: ArrayFile(path, name, chunk_rows=BLOCK_ROWS) for name in records}
    embedding = Embedding(
        **arrays,
        model={"source": "synthetic"},
        input_shape=(FEATURES,),
        train_accuracy=1.0,
        fingerprint="contract",
    )
    dataset = Dataset(
        x=records["features"],
        labels=labels,
        class_names=[str(k) for k in range(N_CLASSES)],
        ids=RowNumbers(labels.size),
        kind="table",  # its columns are the features: the out-of-sample heads read them
        path=Path("contract"),
        format="npz",
    )
    settings = ScanSettings(detectors=(detector.name,))
    if folder is None:
        result = scan_embedding(dataset, embedding, settings)
        return np.asarray(result.detector_scores[detector.name], dtype=np.float64)
    with staging_area(folder) as staging:
        result = scan_embedding(dataset, embedding, settings, staging=staging)
        return np.asarray(Rows(result.detector_scores[detector.name]).whole(), dtype=np.float64)


def check_one_finite_score_per_sample(detector: Detector) -> None:
    records, labels = contract_case()
    scores = scores_of(detector, records, labels)
    assert scores.shape == labels.shape, f"{detector.name}: one score per sample"
    assert np.all(np.isfinite(scores)), f"{detector.name}: scores must be finite"
    np.testing.assert_array_equal(scores, scores_of(detector, records, labels))


def check_memory_and_file_agree(detector: Detector, folder: Path) -> None:
    records, labels = contract_case()
    in_memory = scores_of(detector, records, labels)
    from_file = scores_of(detector, records, labels, folder=folder)
    np.testing.assert_array_equal(in_memory, from_file, err_msg=detector.name)


def check_shuffling_permutes_scores(detector: Detector) -> None:
    records, labels = contract_case()
    order = np.random.default_rng(7).permutation(labels.size)
    scores = scores_of(detector, records, labels)
    shuffled = scores_of(detector, {k: v[order] for k, v in records.items()}, labels[order])
    np.testing.assert_allclose(shuffled, scores[order], rtol=1e-6, atol=1e-9, err_msg=detector.name)


def check_detector(detector: Detector, folder: Path) -> None:
    """Every check of the contract."""
    check_one_finite_score_per_sample(detector)
    check_memory_and_file_agree(detector, folder)
    check_shuffling_permutes_scores(detector)
