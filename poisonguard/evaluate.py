"""``poisonguard evaluate``: poison a clean dataset, scan it, sanitize it, and measure what it did.

For one attack it builds three training sets from the same clean data — **clean**, **poisoned**
(:mod:`poisonguard.poison`) and **sanitized** (the poisoned set cleaned with the scan's decisions,
:mod:`poisonguard.sanitize`) — trains the same model on each (the embedding model with its fixed
recipe and seed; the poisoned one is the model the scan itself trained), and reports for each:

* clean test accuracy;
* attack success rate (backdoors): the share of the test samples *not* of the target class that
  the model assigns to the target once the trigger is stamped on them;
* detection precision, recall, F1 and AUROC of the scan against the ground truth.

The test set is ``test`` when given (same classes), else a stratified hold-out of the source
drawn with the seed. Nothing is written here; :mod:`poisonguard.report` writes the scan's report
with an ``evaluation`` section.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from poisonguard.dataset import Dataset, align_classes
from poisonguard.embed import EmbedSettings, embed_dataset, embed_with
from poisonguard.errors import DatasetError
from poisonguard.metrics import detection_metrics
from poisonguard.poison import ATTACKS, AttackOptions
from poisonguard.poisoned_copy import poison_dataset, trigger_dataset
from poisonguard.results import Embedding, ScanResult
from poisonguard.sanitize import ScanDecisions, plan_sanitize
from poisonguard.scan import ScanSettings, scan_dataset

__all__ = ["ModelOutcome", "Evaluation", "evaluate", "holdout_split", "subset"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelOutcome:
    """One trained model: on which training set, and how it does on the test set."""

    training_set: str
    n_train: int
    clean_accuracy: float
    attack_success: float | None
    train_seconds: float


@dataclass
class Evaluation:
    """Everything ``poisonguard evaluate`` measured (``as_dict`` for report.json)."""

    attack: str
    rate: float
    target: str | None
    seed: int
    action: str
    n_train: int
    n_test: int
    test_source: str
    n_poisoned: int
    detection: dict[str, Any]
    sanitized: dict[str, int]
    outcomes: list[ModelOutcome]
    scan: ScanResult
    timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "attack": self.attack,
            "paper": ATTACKS[self.attack].paper,
            "rate": self.rate,
            "target": self.target,
            "seed": self.seed,
            "action": self.action,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "test_source": self.test_source,
            "n_poisoned": self.n_poisoned,
            "detection": self.detection,
            "sanitized": self.sanitized,
            "models": [
                {
                    "training_set": o.training_set,
                    "n_train": o.n_train,
                    "clean_accuracy": round(o.clean_accuracy, 4),
                    "attack_success": None
                    if o.attack_success is None
                    else round(o.attack_success, 4),
                    "train_seconds": round(o.train_seconds, 1),
                }
                for o in self.outcomes
            ],
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


def subset(dataset: Dataset, rows: np.ndarray, *, x=None, labels=None) -> Dataset:
    """The samples ``rows`` of ``dataset`` (optionally with new samples or labels)."""
    rows = np.asarray(rows, dtype=np.int64)
    return replace(
        dataset,
        x=dataset.x[rows] if x is None else x,
        labels=dataset.labels[rows] if labels is None else np.asarray(labels, dtype=np.int64),
        ids=[dataset.ids[i] for i in rows],
        skipped=[],
    )


def holdout_split(dataset: Dataset, fraction: float, *, seed: int) -> tuple[Dataset, Dataset]:
    """A stratified ``(train, test)`` split holding out ``fraction`` of the samples."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the hold-out fraction must be in (0, 1), got {fraction}")
    indices = np.arange(dataset.n_samples)
    try:
        train, test = train_test_split(
            indices, test_size=fraction, random_state=seed, stratify=dataset.labels
        )
    except ValueError as exc:
        raise DatasetError(
            dataset.path, f"cannot hold out a stratified test split ({exc})"
        ) from exc
    return subset(dataset, np.sort(train)), subset(dataset, np.sort(test))


def evaluate(
    source: Dataset,
    *,
    attack: str,
    rate: float,
    target: int | None = None,
    seed: int = 0,
    options: AttackOptions | None = None,
    test: Dataset | None = None,
    holdout_fraction: float = 0.2,
    action: str = "relabel",
    epochs: int | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    progress: bool = False,
) -> Evaluation:
    """Poison, scan, sanitize, train three models and measure them (see the module docstring)."""
    timings: dict[str, float] = {}
    if attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; valid: {', '.join(ATTACKS)}")
    if test is None:
        train, test = holdout_split(source, holdout_fraction, seed=seed)
        test_source = f"stratified hold-out of {holdout_fraction:.0%} of {source.path.name}"
    else:
        train, test = source, align_classes(test, source, role="test set")
        test_source = str(test.path)

    start = time.perf_counter()
    poisoning = poison_dataset(
        train, attack=attack, rate=rate, target=target, seed=seed, options=options
    )
    poisoned = subset(train, np.arange(train.n_samples), x=poisoning.x, labels=poisoning.labels)
    timings["poison"] = time.perf_counter() - start

    scan = scan_dataset(
        poisoned,
        ScanSettings(seed=seed, epochs=epochs),
        cache_dir=cache_dir,
        use_cache=use_cache,
        progress=progress,
    )
    timings.update({f"scan:{k}": v for k, v in scan.timings.items()})
    detection = detection_metrics(poisoning.poisoned, scan.flagged, scan.score)

    plan = plan_sanitize(
        poisoned,
        ScanDecisions(
            Path("<scan>"),
            scan.score,
            scan.flagged,
            scan.finding,
            scan.predicted,
            scan.predicted_probability,
        ),
        action,
    )
    sanitized = subset(poisoned, plan.rows, labels=plan.labels)
    kept_poison = poisoning.poisoned[plan.rows]
    restored = kept_poison & (plan.labels == poisoning.original_labels[plan.rows])

    triggered = None
    if ATTACKS[attack].kind == "backdoor":
        stamped = trigger_dataset(
            test, attack=attack, target=poisoning.target, seed=seed, options=poisoning.options
        )
        triggered = stamped.x[test.labels != poisoning.target]

    settings = EmbedSettings(seed=seed, epochs=epochs)
    outcomes = []
    for name, training_set, embedding in (
        ("clean", train, None),
        ("poisoned", poisoned, scan.embedding),
        ("sanitized", sanitized, None),
    ):
        if embedding is None:
            embedding = embed_dataset(
                training_set, settings, cache_dir=cache_dir, use_cache=use_cache, progress=progress
            )
        # 0 when the model came from the embedding cache
        seconds = embedding.stage_seconds.get("train", 0.0)
        outcomes.append(
            _measure(name, training_set, embedding, test, triggered, poisoning.target, seconds)
        )
        logger.info("%s model: %s", name, outcomes[-1])
    timings["train"] = sum(o.train_seconds for o in outcomes)

    return Evaluation(
        attack=attack,
        rate=rate,
        target=None if poisoning.target is None else train.class_names[poisoning.target],
        seed=seed,
        action=action,
        n_train=train.n_samples,
        n_test=test.n_samples,
        test_source=test_source,
        n_poisoned=poisoning.n_poisoned,
        detection=detection,
        sanitized={
            "kept": int(plan.rows.size),
            "removed": plan.n_removed,
            "relabelled": plan.n_relabelled,
            "poisoned_removed": int(poisoning.n_poisoned - kept_poison.sum()),
            "poisoned_relabelled_to_original": int(restored.sum()),
            "poisoned_left": int(kept_poison.sum() - restored.sum()),
        },
        outcomes=outcomes,
        scan=scan,
        timings=timings,
    )


def _measure(
    name: str,
    training_set: Dataset,
    embedding: Embedding,
    test: Dataset,
    triggered: np.ndarray | None,
    target: int | None,
    seconds: float,
) -> ModelOutcome:
    _, probabilities = embed_with(embedding, test.x)
    accuracy = float(np.mean(probabilities.argmax(axis=1) == test.labels))
    success = None
    if triggered is not None and target is not None and len(triggered):
        _, stamped = embed_with(embedding, triggered)
        success = float(np.mean(stamped.argmax(axis=1) == target))
    return ModelOutcome(name, training_set.n_samples, accuracy, success, seconds)
