"""Write a poisoned (or triggered) copy of a dataset with its ground truth: ``poisonguard poison``.

``poisonguard poison SRC --attack KIND --rate R [--target T] [--seed S] --out DST`` writes

* ``DST/<SRC name>``: SRC with ``round(R * N)`` samples poisoned, in SRC's own format;
* ``DST/ground_truth.csv``: ``index,id,poisoned,original_label,new_label,attack,role``, one row
  per sample of the copy (``index`` and ``id`` as PoisonGuard loads the copy). ``role`` is
  ``payload`` (``poisoned`` 1: the samples a detector should find), ``cover`` (trigger stamped,
  true label kept: TaCT's cover and adaptive-blend's conservatism samples, neither found nor
  false flags in a benchmark) or ``clean``; ``attack`` names the backdoor of a payload or cover
  sample (several backdoors: each its own);
* ``DST/poison.json``: the attack, its parameters and the trigger options, so that the same
  trigger can be stamped on a test set (``--apply-trigger`` with the same seed and options);
  with several backdoors, each one's own record under ``backdoors``.

With ``apply_trigger=True`` every sample of a backdoor's non-target classes (all-to-all: every
sample) gets the trigger and keeps its label: the triggered test copy on which attack success is
measured.

Text datasets take the text backdoors (``rare-word``: trigger words inserted between words;
``sentence``: a trigger sentence at a sentence boundary) and the label flips; the copy is written
in the source's text format (CSV or TSV with a text column, JSON Lines, Parquet, a folder of
``.txt`` files), a changed text replacing the old one and everything else kept.

The attacks themselves are array functions in :mod:`poisonguard.poison`; this module loads,
embeds where an attack needs a model, and writes. SRC is only read. Two attacks need a model,
trained on SRC itself with the embedding recipe (and cached like a scan's):

* ``flip-near-boundary`` takes out-of-sample probabilities from heads cross-validated on the
  embedding, and flips the samples with the smallest margin;
* ``clean-label`` perturbs the chosen target-class images adversarially (PGD within
  ``clean_label_epsilon``) before stamping the trigger, as Turner et al. do, so that the model
  cannot fit them from their natural features and learns the trigger instead.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from poisonguard import csv_safety
from poisonguard.atomic import atomic_directory, atomic_path
from poisonguard.dataset import Dataset
from poisonguard.errors import DatasetError
from poisonguard.poison import (
    ATTACKS,
    AttackOptions,
    Poisoning,
    add_backdoor,
    apply_trigger,
    poison_arrays,
)
from poisonguard.poison.validation import check_layout

__all__ = [
    "GROUND_TRUTH_COLUMNS",
    "PoisonedCopy",
    "class_code",
    "poison_dataset",
    "trigger_dataset",
    "write_poisoned_copy",
    "ground_truth_csv_text",
]

logger = logging.getLogger(__name__)

GROUND_TRUTH_COLUMNS = (
    "index",
    "id",
    "poisoned",
    "original_label",
    "new_label",
    "attack",
    "role",
)


@dataclass
class PoisonedCopy:
    """Where a poisoned copy was written and what it holds."""

    path: Path
    ground_truth: Path
    poisoning: Poisoning
    ids: list[str]


def class_code(dataset: Dataset, name: str | None) -> int | None:
    """The class code of a class given by name as the user wrote it (``None`` passes through)."""
    if name is None:
        return None
    if name in dataset.class_names:
        return dataset.class_names.index(name)
    listed = ", ".join(dataset.class_names[:20])
    raise DatasetError(dataset.path, f"has no class {name!r}; its classes are {listed}")


def poison_dataset(
    dataset: Dataset,
    *,
    attack: str,
    rate: float,
    target: int | None = None,
    seed: int = 0,
    options: AttackOptions | None = None,
    progress: bool = False,
    also: Sequence[tuple[str, int | None, float]] = (),
) -> Poisoning:
    """Poison the arrays of ``dataset`` (see :func:`poisonguard.poison.poison_arrays`).

    ``also`` plants more backdoors, ``(attack, target, rate)`` each, with the same ``options``,
    on samples the earlier ones left untouched (:func:`poisonguard.poison.add_backdoor`; the
    k-th uses the seed ``seed + k``).
    """
    for name in (attack, *(extra[0] for extra in also)):
        if name not in ATTACKS:
            raise ValueError(f"unknown attack {name!r}; valid: {', '.join(ATTACKS)}")
        # before a model is trained for the attack: an image attack on texts fails at once
        check_layout(ATTACKS[name], dataset.x)
    options = options or AttackOptions()
    probabilities = None
    if ATTACKS[attack].needs == "probabilities":
        probabilities = _out_of_sample_probabilities(dataset, seed=seed, progress=progress)

    def perturbation(name: str):
        if ATTACKS[name].needs == "perturbation" and options.clean_label_epsilon > 0:
            return _adversarial(dataset, options, seed=seed, progress=progress)
        return None

    poisoning = poison_arrays(
        dataset.x,
        dataset.labels,
        dataset.n_classes,
        attack=attack,
        rate=rate,
        target=target,
        seed=seed,
        options=options,
        probabilities=probabilities,
        perturb=perturbation(attack),
    )
    for extra_attack, extra_target, extra_rate in also:
        poisoning = add_backdoor(
            poisoning,
            dataset.n_classes,
            attack=extra_attack,
            rate=extra_rate,
            target=extra_target,
            options=options,
            perturb=perturbation(extra_attack),
        )
    return poisoning


def trigger_dataset(
    dataset: Dataset,
    *,
    attack: str,
    target: int | None,
    seed: int = 0,
    options: AttackOptions | None = None,
) -> Poisoning:
    """Stamp the trigger on every sample not of class ``target``; labels are kept.

    ``target`` ``None`` stamps every sample (an all-to-all backdoor's test copy, which must have
    no target). The result is a :class:`Poisoning` whose ``poisoned`` marks the triggered
    samples; which of them count towards attack success, and for which class, is
    :func:`poisonguard.poison.trigger_targets`.
    """
    if attack not in ATTACKS or ATTACKS[attack].kind != "backdoor":
        backdoors = [name for name, spec in ATTACKS.items() if spec.kind == "backdoor"]
        raise ValueError(f"--apply-trigger needs a backdoor attack: {', '.join(backdoors)}")
    if options is not None and options.all_to_all and target is not None:
        raise ValueError(
            "an all-to-all backdoor has no target: its test copy stamps every sample, class c "
            "being meant to be read as (c + 1) mod K; leave the target out"
        )
    if options is not None and target is not None and options.source_class == target:
        raise ValueError(f"source_class {target} is the target class")
    chosen = np.ones(dataset.n_samples, dtype=bool) if target is None else dataset.labels != target
    x = dataset.x.copy()
    x[chosen] = apply_trigger(dataset.x[chosen], attack=attack, seed=seed, options=options)
    changed = chosen & _rows_differ(x, dataset.x)
    return Poisoning(
        x=x,
        labels=dataset.labels.copy(),
        poisoned=changed,
        original_labels=dataset.labels.copy(),
        attack=attack,
        target=target,
        description={"attack": attack, "seed": seed, "target": target, "triggered": True},
        seed=seed,
        options=options or AttackOptions(),
    )


def write_poisoned_copy(
    dataset: Dataset,
    poisoning: Poisoning,
    out_dir: str | Path,
    *,
    loader_options: dict | None = None,
) -> PoisonedCopy:
    """Write ``DST/<name>``, ``DST/ground_truth.csv`` and ``DST/poison.json`` atomically."""
    from poisonguard.writers import prepare_output_dir, write_like

    out_dir = prepare_output_dir(dataset.path, Path(out_dir))
    name = dataset.path.name
    changed_x = _rows_differ(poisoning.x, dataset.x)
    with atomic_directory(out_dir, replaceable={name, "ground_truth.csv", "poison.json"}) as tmp:
        ids = write_like(
            dataset,
            tmp / name,
            rows=np.arange(dataset.n_samples),
            labels=poisoning.labels,
            x=poisoning.x,
            x_changed=changed_x,
            loader_options=loader_options,
        )
        order = _load_order(dataset, tmp / name, ids, loader_options)
        with atomic_path(tmp / "ground_truth.csv") as part:
            part.write_text(ground_truth_csv_text(dataset, poisoning, ids, order), encoding="utf-8")
        with atomic_path(tmp / "poison.json") as part:
            record = json.dumps(_record(dataset, poisoning), indent=2, default=_numpy_scalar)
            part.write_text(record + "\n")
    logger.info("wrote %s (%d samples poisoned)", out_dir / name, poisoning.n_poisoned)
    return PoisonedCopy(out_dir / name, out_dir / "ground_truth.csv", poisoning, ids)


def ground_truth_csv_text(
    dataset: Dataset, poisoning: Poisoning, ids: list[str], order: np.ndarray
) -> str:
    """One row per sample, sorted by its index in the written copy; every cell made
    spreadsheet-safe (:mod:`poisonguard.csv_safety`)."""
    names = dataset.class_names
    buffer = io.StringIO()
    writer = csv_safety.writer(buffer, lineterminator="\n")
    writer.writerow(GROUND_TRUTH_COLUMNS)
    roles = poisoning.roles
    for i in np.argsort(order, kind="stable"):
        writer.writerow(
            [
                int(order[i]),
                ids[i],
                int(poisoning.poisoned[i]),
                names[int(poisoning.original_labels[i])],
                names[int(poisoning.labels[i])],
                str(poisoning.sample_attacks[i]),
                str(roles[i]),
            ]
        )
    return buffer.getvalue()


def _load_order(
    dataset: Dataset, written: Path, ids: list[str], loader_options: dict | None
) -> np.ndarray:
    """Index of each source sample in the written copy as the loader will order it.

    Array and row formats keep the order. A folder of images or texts is listed class by class,
    so a sample whose label changed moves; the written folder's listing gives the new order.
    """
    if dataset.format not in ("image-folder", "text-folder"):
        return np.arange(len(ids))
    from poisonguard.loaders import load_dataset

    listing = load_dataset(written, format=dataset.format).ids
    position = {sample_id: i for i, sample_id in enumerate(listing)}
    missing = [sample_id for sample_id in ids if sample_id not in position]
    if missing or len(listing) != len(ids):
        raise DatasetError(written, "internal: the written folder does not list every sample")
    return np.array([position[sample_id] for sample_id in ids], dtype=np.int64)


def _rows_differ(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} and {b.shape}")
    return np.any((a != b).reshape(a.shape[0], -1), axis=1)


def _record(dataset: Dataset, poisoning: Poisoning) -> dict:
    """poison.json: the source, and the attack; several backdoors each under ``backdoors``."""
    record = {"source": str(dataset.path), "format": dataset.format}
    if not poisoning.parts:
        return {**record, **_attack_record(dataset, poisoning)}
    return {
        **record,
        "attack": poisoning.attack,
        "paper": "; ".join(ATTACKS[part.attack].paper for part in poisoning.parts),
        "n_samples": dataset.n_samples,
        "n_poisoned": poisoning.n_poisoned,
        "n_cover": poisoning.n_cover,
        "backdoors": [_attack_record(dataset, part) for part in poisoning.parts],
    }


def _attack_record(dataset: Dataset, poisoning: Poisoning) -> dict:
    names = dataset.class_names
    options = {k: v for k, v in asdict(poisoning.options).items() if v is not None}
    return {
        "attack": poisoning.attack,
        "paper": ATTACKS[poisoning.attack].paper,
        "seed": poisoning.seed,
        "target": None if poisoning.target is None else names[poisoning.target],
        "n_samples": dataset.n_samples,
        "n_poisoned": poisoning.n_poisoned,
        "n_cover": poisoning.n_cover,
        "description": poisoning.description,
        "options": options,
    }


def _numpy_scalar(value):
    """``json.dumps`` fallback: the attack parameters hold numpy scalars next to built-ins."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _adversarial(dataset: Dataset, options: AttackOptions, *, seed: int, progress: bool):
    from poisonguard.embed import EmbedSettings, embed_dataset
    from poisonguard.poison.clean_label import adversarial_perturbation

    if dataset.kind != "image":
        raise ValueError("clean-label needs images")
    embedding = embed_dataset(dataset, EmbedSettings(seed=seed), progress=progress)
    top = 255.0 if dataset.x.dtype == np.uint8 else max(1.0, float(dataset.x.max()))
    epsilon = options.clean_label_epsilon * top / 255.0

    def perturb(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return adversarial_perturbation(embedding, images, labels, epsilon=epsilon)

    return perturb


def _out_of_sample_probabilities(dataset: Dataset, *, seed: int, progress: bool) -> np.ndarray:
    """Class probabilities of every sample from heads that never saw it (near-boundary flips)."""
    from poisonguard.detectors import DetectorInputs
    from poisonguard.embed import EmbedSettings, embed_dataset

    embedding = embed_dataset(dataset, EmbedSettings(seed=seed), progress=progress)
    return DetectorInputs(embedding, dataset.labels, seed=seed).out_of_sample_probabilities
