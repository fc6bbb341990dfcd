"""Does the attack work, and does cleaning remove it? Models for :mod:`detection`'s ``--retrain``.

For one row, three models with the same recipe (the embedding model, :mod:`poisonguard.embed`,
same seed and epochs as the scan), the approach of :mod:`poisonguard.evaluate`:

* **clean**: trained on the row's training set before poisoning. Shared by every row on the
  same data: trained once per data, seed and epochs (the embedding cache keeps the model) and its
  numbers kept in ``<work>/clean-models.json``, so a later row or run only adds its own attack
  success;
* **poisoned**: the model the scan trained (read back from the embedding cache);
* **sanitized**: trained on the poisoned set without the samples the scan flagged (``poisonguard
  sanitize --action remove``: :func:`poisonguard.sanitize.plan_sanitize`).

Each is measured on the Fashion-MNIST test split (t10k; for a two-class row, its two classes):
clean accuracy, and attack success per :class:`detection_rows.AttackTest` (the share of the
triggered test images it counts that the model predicts as their goal; pooled over the
backdoors of a row with several, each one's own under ``attack_success_by_test``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from detection_rows import AttackTest

from poisonguard.dataset import Dataset
from poisonguard.embed import EmbedSettings, embed_dataset, embed_with
from poisonguard.evaluate import subset
from poisonguard.loaders import load_dataset
from poisonguard.poison import NO_TARGET
from poisonguard.results import Embedding
from poisonguard.sanitize import plan_sanitize, read_scan_decisions

CLEAN_MODELS = "clean-models.json"


def triggered_sets(
    tests: tuple[AttackTest, ...], images: np.ndarray, labels: np.ndarray
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Per test, ``(name, triggered images (n, 1, 28, 28), goals)`` of the counted images."""
    sets = []
    for test in tests:
        goals = test.goals(labels)
        counted = goals != NO_TARGET
        sets.append((test.name, test.stamp(images[counted])[:, None], goals[counted]))
    return sets


def measure(
    embedding: Embedding,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    triggered: list[tuple[str, np.ndarray, np.ndarray]],
) -> dict:
    """Clean accuracy and attack success of ``embedding``'s model (``None`` without a test)."""
    _, probabilities = embed_with(embedding, test_images[:, None])
    result = {"clean_accuracy": float(np.mean(probabilities.argmax(axis=1) == test_labels))}
    result.update(attack_success(embedding, triggered))
    return result


def attack_success(embedding: Embedding, triggered: list) -> dict:
    hits, counted, by_test = 0, 0, {}
    for name, images, goals in triggered:
        if not len(goals):
            continue
        _, probabilities = embed_with(embedding, images)
        hit = int(np.sum(probabilities.argmax(axis=1) == goals))
        by_test[name] = round(hit / len(goals), 4)
        hits, counted = hits + hit, counted + len(goals)
    result = {"attack_success": round(hits / counted, 4) if counted else None}
    if len(by_test) > 1:
        result["attack_success_by_test"] = by_test
    return result


def _check_codes(dataset: Dataset, n_classes: int) -> None:
    if dataset.class_names != [str(c) for c in range(n_classes)]:
        raise SystemExit(
            f"{dataset.path}: classes {dataset.class_names}, expected 0..{n_classes - 1}"
        )


def clean_model(
    row_name: str,
    clean_key: str,
    clean_file: Path,
    triggered: list,
    test: tuple[np.ndarray, np.ndarray],
    n_classes: int,
    train: Callable[[Dataset], tuple[Embedding, float]],
    work: Path,
    in_memory: dict,
) -> dict:
    """The clean model's entry for ``row_name``: its numbers from ``work/clean-models.json``,
    trained (or read from the embedding cache, or from ``in_memory``) and added when missing."""
    path = work / CLEAN_MODELS
    records = json.loads(path.read_text()) if path.is_file() else {}
    record = records.get(clean_key)
    if record is None or row_name not in record["attack_success"]:
        if clean_key not in in_memory:
            dataset = load_dataset(clean_file)
            _check_codes(dataset, n_classes)
            in_memory[clean_key] = train(dataset)
        embedding, seconds = in_memory[clean_key]
        if record is None:
            record = {
                "n_train": int(embedding.probabilities.shape[0]),
                **measure(embedding, *test, []),
                "train_seconds": seconds,
                "attack_success": {},
                "attack_success_by_test": {},
            }
        success = attack_success(embedding, triggered)
        record["attack_success"][row_name] = success["attack_success"]
        if "attack_success_by_test" in success:
            record["attack_success_by_test"][row_name] = success["attack_success_by_test"]
        records[clean_key] = record
        path.write_text(json.dumps(records, indent=2) + "\n")
    entry = {
        "training_set": "clean",
        "n_train": record["n_train"],
        "clean_accuracy": record["clean_accuracy"],
        "attack_success": record["attack_success"][row_name],
    }
    if row_name in record["attack_success_by_test"]:
        entry["attack_success_by_test"] = record["attack_success_by_test"][row_name]
    # trained once for every row on this data (the seconds of that training)
    return {**entry, "train_seconds": record["train_seconds"], "shared": True}


def retrain(
    *,
    row_name: str,
    key: str,
    clean_file: Path,
    poisoned_file: Path,
    scan_dir: Path,
    payload: np.ndarray,
    tests: tuple[AttackTest, ...],
    test_images: np.ndarray,
    test_labels: np.ndarray,
    n_classes: int,
    work: Path,
    cache_dir: Path,
    seed: int,
    epochs: int | None,
    use_cache: bool = True,
    clean_embeddings: dict | None = None,
) -> dict:
    """The ``models`` and ``sanitized`` entries of one row (see the module docstring).

    ``key`` names the clean training set (:func:`detection_rows.data_key`); its numbers are
    kept in ``work/clean-models.json`` under the key, seed and epochs. ``clean_embeddings``
    keeps clean models in memory between the rows of one run (what ``use_cache=False`` needs).
    """
    settings = EmbedSettings(seed=seed, epochs=epochs)

    def train(dataset: Dataset) -> tuple[Embedding, float]:
        embedding = embed_dataset(
            dataset, settings, cache_dir=cache_dir, use_cache=use_cache, progress=False
        )
        return embedding, round(embedding.stage_seconds.get("train", 0.0), 1)

    test = (test_images, test_labels)
    triggered = triggered_sets(tests, test_images, test_labels)
    clean_key = f"{key}-seed{seed}-epochs{epochs or 'auto'}"
    models = [
        clean_model(
            row_name,
            clean_key,
            clean_file,
            triggered,
            test,
            n_classes,
            train,
            work,
            {} if clean_embeddings is None else clean_embeddings,
        )
    ]
    poisoned = load_dataset(poisoned_file)
    _check_codes(poisoned, n_classes)
    plan = plan_sanitize(poisoned, read_scan_decisions(scan_dir, poisoned), "remove")
    sanitized = subset(poisoned, plan.rows, labels=plan.labels)
    for name, dataset in (("poisoned", poisoned), ("sanitized", sanitized)):
        embedding, seconds = train(dataset)  # poisoned: the scan's model, from the cache
        numbers = measure(embedding, *test, triggered)
        models.append(
            {
                "training_set": name,
                "n_train": dataset.n_samples,
                **numbers,
                "train_seconds": seconds,
            }
        )
    for model in models:
        model["clean_accuracy"] = round(model["clean_accuracy"], 4)
    kept_payload = int(payload[plan.rows].sum())
    return {
        "sanitized": {
            "removed": plan.n_removed,
            "payload_removed": int(payload.sum()) - kept_payload,
            "payload_left": kept_payload,
        },
        "models": models,
    }
