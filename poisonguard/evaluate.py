"""``poisonguard evaluate``: poison a clean dataset, scan it, sanitize it, and measure what it did.

For one attack it builds three training sets from the same clean data — **clean**, **poisoned**
(:mod:`poisonguard.poison`) and **sanitized** (the poisoned set cleaned with the scan's decisions,
:mod:`poisonguard.sanitize`) — trains the same model on each (the embedding model with its fixed
recipe and seed, :func:`poisonguard.embed.embed_dataset`: for a text dataset the word model
``TextBagModel`` over a vocabulary built from that training set's own texts; the poisoned one is
the model the scan itself trained), and reports for each:

* clean test accuracy;
* attack success rate (backdoors): the share of the triggered test samples the model assigns to
  the class the attack wants (:func:`attack_success`): for an all-to-one backdoor the test samples
  *not* of the target class, predicted as the target; all-to-all, every test sample of class
  ``c``, predicted as ``(c + 1) mod K``; source-specific, the source class's samples, predicted
  as the target. Text backdoors (``rare-word``, ``sentence``) are measured the same way, on the
  held-out texts with the trigger words or sentence inserted;
* detection precision, recall, F1 and AUROC of the scan against the ground truth (cover samples,
  which carry a trigger with their true label, count neither as poison nor as clean).

With ``models`` above one, each training set trains that many models (seeds ``seed``,
``seed + 1``, ...; the poisoned set's first is the scan's) and the figures are those of their
averaged probabilities, each model's own beside them. Why: on a small set one model's attack
success is mostly its seed's. Trained on the same 4,000 clean reviews, five seeds of the text
model read a neutral sentence inserted into the test reviews as the target class 58.8 % to
79.2 % of the time, so "within 2 points of the clean model" compared seeds, not training sets;
the average of the five gave 67.8 %, and of five trained without the 120 texts the attack
poisoned 67.3 % (``benchmarks/text.py``, docs/benchmarks.md).

The test set is ``test`` when given (same classes), else a stratified hold-out of the source
drawn with the seed. Nothing is written here; :mod:`poisonguard.report` writes the scan's report
with an ``evaluation`` section.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from poisonguard.dataset import Dataset, align_classes
from poisonguard.embed import EmbedSettings, embed_dataset, embed_with
from poisonguard.errors import DatasetError
from poisonguard.metrics import detection_metrics
from poisonguard.poison import ATTACKS, NO_TARGET, AttackOptions, trigger_targets
from poisonguard.poisoned_copy import poison_dataset, trigger_dataset
from poisonguard.results import Embedding, ScanResult
from poisonguard.sanitize import ScanDecisions, plan_sanitize
from poisonguard.scan import ScanSettings, scan_dataset

__all__ = ["ModelOutcome", "Evaluation", "attack_success", "evaluate", "holdout_split", "subset"]

logger = logging.getLogger(__name__)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


@dataclass(frozen=True)
class ModelOutcome:
    """The model of one training set (with several seeds, their averaged probabilities): on
    which training set, and how it does on the test set; ``per_seed`` holds each seed's own
    ``(seed, clean accuracy, attack success)`` when more than one model was trained."""

    training_set: str
    n_train: int
    clean_accuracy: float
    attack_success: float | None
    train_seconds: float
    per_seed: tuple[tuple[int, float, float | None], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        record = {
            "training_set": self.training_set,
            "n_train": self.n_train,
            "clean_accuracy": round(self.clean_accuracy, 4),
            "attack_success": _rounded(self.attack_success),
            "train_seconds": round(self.train_seconds, 1),
            "models_averaged": max(1, len(self.per_seed)),
        }
        if self.per_seed:
            record["per_seed"] = [
                {
                    "seed": seed,
                    "clean_accuracy": round(accuracy, 4),
                    "attack_success": _rounded(success),
                }
                for seed, accuracy, success in self.per_seed
            ]
        return record


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
            "models": [o.as_dict() for o in self.outcomes],
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
    trusted: Dataset | None = None,
    holdout_fraction: float = 0.2,
    action: str = "relabel",
    epochs: int | None = None,
    models: int = 1,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    progress: bool = False,
) -> Evaluation:
    """Poison, scan, sanitize, train a model (or ``models`` seeds of it) on each of the three
    training sets and measure them (see the module docstring). ``trusted``, a small clean set
    of the same classes kept apart from ``source`` and ``test``, goes to the scan as
    ``poisonguard scan --trusted`` takes it (on texts, the label-noise rule's floor)."""
    timings: dict[str, float] = {}
    if attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; valid: {', '.join(ATTACKS)}")
    if models < 1:
        raise ValueError(f"models must be at least 1, got {models}")
    if action == "repair" and source.kind != "text":  # said before the scan, not after it
        raise ValueError(
            f"action repair takes text triggers out of texts; {source.path} holds "
            f"{source.kind} samples: use remove or relabel"
        )
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
        trusted=trusted,
    )
    timings.update({f"scan:{k}": v for k, v in scan.timings.items()})
    scored = ~poisoning.cover  # cover samples are neither to be found nor false flags
    detection = detection_metrics(
        poisoning.poisoned[scored], scan.flagged[scored], scan.score[scored]
    )

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
        triggers={f.code: f.trigger_words for f in scan.class_findings if f.trigger_words},
    )
    x = None
    if plan.texts:
        x = poisoned.x[plan.rows].copy()
        for k, i in enumerate(plan.rows):
            x[k] = plan.texts.get(int(i), x[k])
    sanitized = subset(poisoned, plan.rows, x=x, labels=plan.labels)
    kept_poison = poisoning.poisoned[plan.rows]
    restored = kept_poison & (plan.labels == poisoning.original_labels[plan.rows])
    if plan.texts:  # a repaired poison is restored when its text is the original's too
        restored &= sanitized.x == train.x[plan.rows]

    triggered = success = None
    if ATTACKS[attack].kind == "backdoor":
        stamped = trigger_dataset(
            test, attack=attack, target=poisoning.target, seed=seed, options=poisoning.options
        )
        # only the test samples that count for attack success go through the models
        goals = _test_targets(test.labels, train.n_classes, poisoning.target, poisoning.options)
        counted = goals != NO_TARGET
        triggered = (stamped.x[counted], test.labels[counted])
        success = partial(
            attack_success,
            n_classes=train.n_classes,
            target=poisoning.target,
            options=poisoning.options,
        )

    outcomes = []
    for name, training_set, first in (
        ("clean", train, None),
        ("poisoned", poisoned, scan.embedding),
        ("sanitized", sanitized, None),
    ):
        embeddings = [
            first
            if i == 0 and first is not None
            else embed_dataset(
                training_set,
                EmbedSettings(seed=seed + i, epochs=epochs),
                cache_dir=cache_dir,
                use_cache=use_cache,
                progress=progress,
            )
            for i in range(models)
        ]
        outcomes.append(_measure(name, training_set, embeddings, seed, test, triggered, success))
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
            "repaired": plan.n_repaired,
            "poisoned_removed": int(poisoning.n_poisoned - kept_poison.sum()),
            "poisoned_relabelled_to_original": int(restored.sum()),
            "poisoned_left": int(kept_poison.sum() - restored.sum()),
        },
        outcomes=outcomes,
        scan=scan,
        timings=timings,
    )


def attack_success(
    predicted: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    *,
    target: int | None,
    options: AttackOptions,
) -> float | None:
    """The share of triggered test samples predicted as the class the backdoor wants.

    ``predicted`` are the model's classes for the triggered test samples, ``labels`` their true
    classes. Only the samples the attack makes a claim about count
    (:func:`poisonguard.poison.trigger_targets`): all-to-one, the samples not of ``target``
    (success: predicted ``target``); all-to-all (``options.all_to_all``), every sample of class
    ``c`` (success: predicted ``(c + 1) mod n_classes``); source-specific
    (``options.source_class``), the source class's samples (success: predicted ``target``).
    ``None`` when no test sample counts.
    """
    goals = _test_targets(np.asarray(labels), n_classes, target, options)
    counted = goals != NO_TARGET
    if not counted.any():
        return None
    return float(np.mean(np.asarray(predicted)[counted] == goals[counted]))


def _test_targets(
    labels: np.ndarray, n_classes: int, target: int | None, options: AttackOptions
) -> np.ndarray:
    return trigger_targets(
        labels,
        n_classes,
        target=target,
        all_to_all=options.all_to_all,
        source_class=options.source_class,
    )


def _measure(
    name: str,
    training_set: Dataset,
    embeddings: list[Embedding],
    first_seed: int,
    test: Dataset,
    triggered: tuple[np.ndarray, np.ndarray] | None,
    success_of: Callable[[np.ndarray, np.ndarray], float | None] | None,
) -> ModelOutcome:
    """Clean accuracy, and attack success on ``triggered`` (samples and their true labels), of
    the models ``embeddings`` (seeds from ``first_seed``) with their probabilities averaged."""
    counted = triggered is not None and success_of is not None and len(triggered[0]) > 0

    def figures(probabilities, stamped) -> tuple[float, float | None]:
        accuracy = float(np.mean(probabilities.argmax(axis=1) == test.labels))
        success = success_of(stamped.argmax(axis=1), triggered[1]) if counted else None
        return accuracy, success

    clean_sum = stamped_sum = None
    per_seed = []
    for i, embedding in enumerate(embeddings):
        _, probabilities = embed_with(embedding, test.x)
        stamped = embed_with(embedding, triggered[0])[1] if counted else None
        per_seed.append((first_seed + i, *figures(probabilities, stamped)))
        clean_sum = probabilities if clean_sum is None else clean_sum + probabilities
        if counted:
            stamped_sum = stamped if stamped_sum is None else stamped_sum + stamped
    accuracy, success = figures(clean_sum, stamped_sum)
    # 0 for a model that came from the embedding cache
    seconds = sum(e.stage_seconds.get("train", 0.0) for e in embeddings)
    return ModelOutcome(
        name,
        training_set.n_samples,
        accuracy,
        success,
        seconds,
        per_seed=tuple(per_seed) if len(embeddings) > 1 else (),
    )
