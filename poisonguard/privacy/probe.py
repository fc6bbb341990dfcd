"""``poisonguard privacy``: will a model trained on this data give its records away?

The probe splits the data into **members** (the model is trained on them) and **non-members**
(held out: ``--holdout PATH``, or a stratified ``--holdout-fraction`` of the data), trains the
embedding model on the members (or uses ``--model``), and measures:

1. **Membership inference** (:mod:`poisonguard.privacy.membership_attacks`, figures from
   :mod:`poisonguard.privacy.membership_metrics`): the loss-threshold attack
   and offline LiRA with shadow heads on the model's features, and with ``shadow_models`` > 0
   offline LiRA with shadow models trained like the target (``lira-models``: stronger, one
   training run each); AUC, membership advantage and TPR
   at low FPR with confidence intervals, overall and per class. The headline figures are those of
   the stronger attack (higher AUC).
2. **Model inversion** (:mod:`poisonguard.privacy.model_inversion`, MI-Face): one reconstruction per
   class; an independent classifier trained on the non-members judges whether it shows its class;
   its distance to the nearest training record against the nearest held-out record of the class
   (on equal numbers of records per class: the nearest of more records is nearer by chance), and
   its SSIM to that training image (:mod:`poisonguard.privacy.inversion_leakage`).
3. **Checklist** (:mod:`poisonguard.privacy.checklist`): duplicates inside the training set and
   between training and held-out data (:mod:`poisonguard.privacy.duplicates`), the train/held-out
   accuracy gap, ID-like table columns (:mod:`poisonguard.privacy.id_columns`), classes whose
   leakage stands out, and the membership and inversion figures against the thresholds stated in
   that module.

Text datasets (``Dataset.kind == "text"``) run the same membership attacks on the text model
(:class:`~poisonguard.embed.models.TextBagModel`). Model inversion does not apply to them (the
checklist says so in its item, ``inversion.note`` too); instead the checklist finds duplicate
texts, exact once normalised and near by the Jaccard index of character shingles
(:mod:`poisonguard.privacy.text_duplicates`), and personal data in every text of the dataset
(:mod:`poisonguard.privacy.personal_data`: e-mail addresses, phone numbers, card numbers,
IBANs, only ever written masked); ``privacy.text`` holds what these found.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from poisonguard.dataset import Dataset, align_classes
from poisonguard.embed import EmbedSettings, embed_dataset, embed_with
from poisonguard.evaluate import holdout_split, subset
from poisonguard.privacy import checklist as checks
from poisonguard.privacy.duplicates import exact_duplicates, near_duplicates
from poisonguard.privacy.id_columns import id_like_columns
from poisonguard.privacy.inversion_leakage import inversion_leakage, summarise_inversion
from poisonguard.privacy.membership_attacks import (
    lira_offline_scores,
    lira_online_statistic,
    lira_statistic,
    logit_confidence,
    loss_attack_scores,
)
from poisonguard.privacy.membership_metrics import membership_metrics, per_class_membership
from poisonguard.privacy.personal_data import personal_data_summary
from poisonguard.privacy.text_duplicates import (
    NEAR_JACCARD,
    SHINGLE_CHARS,
    text_exact_duplicates,
    text_near_duplicates,
)
from poisonguard.results import Embedding

__all__ = ["PrivacySettings", "PrivacyResult", "privacy_probe", "TEXT_INVERSION_REASON"]

logger = logging.getLogger(__name__)

TEXT_INVERSION_REASON = (
    "MI-Face optimises a continuous input by gradient, and a text model reads discrete words; "
    "what a text model gives away is measured by membership inference and by the duplicate and "
    "personal-data items"
)
#: Pairs of duplicate texts listed (by id) in the report, per search.
_TEXT_PAIR_EXAMPLES = 20


@dataclass(frozen=True)
class PrivacySettings:
    """How the probe runs. ``epochs`` ``None`` lets the embedding recipe choose."""

    seed: int = 0
    holdout_fraction: float = 0.5
    epochs: int | None = None
    model_file: Path | None = None
    n_shadow: int = 16
    shadow_models: int = 0
    inversion_steps: int = 300

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["model_file"] = None if self.model_file is None else str(self.model_file)
        return values


@dataclass
class PrivacyResult:
    """Everything the privacy report shows (``privacy`` is the JSON-able ``privacy`` section)."""

    dataset: Dataset
    members: Dataset
    nonmembers: Dataset
    embedding: Embedding
    privacy: dict[str, Any]
    reconstructions: np.ndarray | None
    nearest_training: np.ndarray | None
    settings: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def privacy_probe(
    dataset: Dataset,
    settings: PrivacySettings,
    *,
    holdout: Dataset | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    progress: bool = False,
) -> PrivacyResult:
    """Run the probe (see the module docstring)."""
    timings: dict[str, float] = {}
    warnings_: list[str] = []
    if holdout is None:
        members, nonmembers = holdout_split(dataset, settings.holdout_fraction, seed=settings.seed)
        split = f"stratified hold-out of {settings.holdout_fraction:.0%} of {dataset.path.name}"
    else:
        members, nonmembers = dataset, align_classes(holdout, dataset, role="held-out set")
        split = f"held-out set {holdout.path}"

    start = time.perf_counter()
    embed_settings = EmbedSettings(
        seed=settings.seed, epochs=settings.epochs, model_file=settings.model_file
    )
    embedding = embed_dataset(
        members, embed_settings, cache_dir=cache_dir, use_cache=use_cache, progress=progress
    )
    held_features, held_probabilities = embed_with(
        embedding, nonmembers.x, model_file=settings.model_file
    )
    timings["train"] = time.perf_counter() - start

    # --- membership inference ------------------------------------------------------------------
    start = time.perf_counter()
    features = np.concatenate([embedding.features, held_features]).astype(np.float32)
    probabilities = np.concatenate([embedding.probabilities, held_probabilities])
    labels = np.concatenate([members.labels, nonmembers.labels])
    is_member = np.concatenate(
        [np.ones(members.n_samples, dtype=bool), np.zeros(nonmembers.n_samples, dtype=bool)]
    )
    attacks = {
        "loss": loss_attack_scores(probabilities, labels),
        "lira": lira_offline_scores(
            features, labels, probabilities, n_shadow=settings.n_shadow, seed=settings.seed
        ),
    }
    if settings.shadow_models:
        attacks["lira-models"], attacks["lira-models-online"] = _lira_with_models(
            members, nonmembers, labels, probabilities, settings, cache_dir, use_cache, progress
        )
    results = {
        name: membership_metrics(scores, is_member, seed=settings.seed)
        for name, scores in attacks.items()
    }
    strongest = max(results, key=lambda name: results[name]["auc"])
    per_class = per_class_membership(
        attacks[strongest], is_member, labels, dataset.class_names, seed=settings.seed
    )
    membership = {
        "attack": strongest,
        **{k: results[strongest][k] for k in ("auc", "auc_ci", "advantage", "advantage_ci")},
        "tpr_at_fpr": results[strongest]["tpr_at_fpr"],
        "n_members": int(is_member.sum()),
        "n_nonmembers": int((~is_member).sum()),
        "attacks": results,
        "per_class": per_class,
    }
    timings["membership"] = time.perf_counter() - start

    # --- model inversion -----------------------------------------------------------------------
    start = time.perf_counter()
    inversion: dict[str, Any] = {"per_class": [], "summary": None, "note": None}
    reconstructions = nearest = None
    if dataset.kind == "text":
        inversion["note"] = f"not applicable to text: {TEXT_INVERSION_REASON}"
    elif embedding.model.get("source") == "torchscript":
        inversion["note"] = "not run: inversion needs a model PoisonGuard trained itself"
    else:
        reconstructions, nearest, inversion = _invert(
            dataset, members, nonmembers, embedding, settings, cache_dir, use_cache, progress
        )
    timings["inversion"] = time.perf_counter() - start

    # --- checklist -----------------------------------------------------------------------------
    start = time.perf_counter()
    train_accuracy = float(np.mean(embedding.probabilities.argmax(axis=1) == members.labels))
    heldout_accuracy = float(np.mean(held_probabilities.argmax(axis=1) == nonmembers.labels))
    text_checks: dict[str, Any] | None = None
    if dataset.kind == "text":
        checklist, text_checks = _text_checklist(
            dataset, members, nonmembers, membership, train_accuracy, heldout_accuracy
        )
    else:
        checklist = _checklist(
            dataset, members, nonmembers, membership, inversion, train_accuracy, heldout_accuracy
        )
    timings["checklist"] = time.perf_counter() - start

    privacy = {
        "split": split,
        "n_members": members.n_samples,
        "n_nonmembers": nonmembers.n_samples,
        "train_accuracy": round(train_accuracy, 4),
        "heldout_accuracy": round(heldout_accuracy, 4),
        "membership": membership,
        "inversion": inversion,
        "checklist": checklist,
    }
    if text_checks is not None:
        privacy["text"] = text_checks
    return PrivacyResult(
        dataset=dataset,
        members=members,
        nonmembers=nonmembers,
        embedding=embedding,
        privacy=privacy,
        reconstructions=reconstructions,
        nearest_training=nearest,
        settings=settings.as_dict(),
        timings=timings,
        warnings=warnings_,
    )


def _lira_with_models(
    members, nonmembers, labels, probabilities, settings, cache_dir, use_cache, progress
) -> tuple[np.ndarray, np.ndarray]:
    """Offline and online LiRA with shadow models trained exactly like the target.

    Each of ``settings.shadow_models`` models trains with the target's recipe on a random half of
    the population (members and non-members together, as an attacker who does not know which is
    which would draw it), so that every sample has about half of them as IN and half as OUT
    models. Costs one training run per shadow model; much stronger than the heads at low
    false-positive rates, because each record's own difficulty is measured on models that never
    saw it (offline: OUT models only; online: the likelihood ratio of IN against OUT).
    """
    population = replace(
        members,
        x=np.concatenate([members.x, nonmembers.x]),
        labels=labels,
        ids=[*members.ids, *nonmembers.ids],
        skipped=[],
    )
    n = labels.shape[0]
    phi = np.zeros((n, settings.shadow_models))
    is_in = np.zeros((n, settings.shadow_models), dtype=bool)
    for k in range(settings.shadow_models):
        chosen = np.sort(np.random.default_rng([settings.seed, 1000 + k]).permutation(n)[: n // 2])
        is_in[chosen, k] = True
        logger.info("LiRA: shadow model %d of %d", k + 1, settings.shadow_models)
        shadow = embed_dataset(
            subset(population, chosen),
            EmbedSettings(
                seed=settings.seed + 1000 + k,
                epochs=settings.epochs,
                model_file=settings.model_file,  # a user's extractor: shadows are heads on it too
            ),
            cache_dir=cache_dir,
            use_cache=use_cache,
            progress=progress,
        )
        _, predicted = embed_with(shadow, population.x, model_file=settings.model_file)
        phi[:, k] = logit_confidence(predicted, labels)
    target = logit_confidence(probabilities, labels)
    offline = lira_statistic(target, np.where(is_in, np.nan, phi), labels)
    return offline, lira_online_statistic(target, phi, is_in, labels)


def _invert(dataset, members, nonmembers, embedding, settings, cache_dir, use_cache, progress):
    from poisonguard.privacy.model_inversion import invert_classes

    classes = np.unique(members.labels)
    value_max = _value_max(members)
    bounds = None
    if members.kind == "table":  # keep each column within what the training data spans
        bounds = (members.x.min(axis=0), members.x.max(axis=0))
    inverted = invert_classes(
        embedding,
        classes,
        steps=settings.inversion_steps,
        seed=settings.seed,
        value_max=value_max,
        bounds=bounds,
    )
    # The independent judge: the same recipe trained only on the non-members.
    judge = embed_dataset(
        nonmembers,
        EmbedSettings(seed=settings.seed + 1, epochs=settings.epochs),
        cache_dir=cache_dir,
        use_cache=use_cache,
        progress=progress,
    )
    images = (
        inverted.images.astype(members.x.dtype)
        if members.x.dtype != np.uint8
        else (np.clip(np.rint(inverted.images), 0, 255).astype(np.uint8))
    )
    _, judged = embed_with(judge, images)
    # The nearest of more records is nearer by chance: compare equal numbers per class.
    train_rows, heldout_rows = _balanced_rows(members.labels, nonmembers.labels, settings.seed)
    per_class = inversion_leakage(
        inverted,
        classes,
        dataset.class_names,
        train_x=members.x[train_rows],
        train_labels=members.labels[train_rows],
        heldout_x=nonmembers.x[heldout_rows],
        heldout_labels=nonmembers.labels[heldout_rows],
        evaluation_probabilities=judged,
        value_max=value_max,
    )
    nearest = np.stack(
        [
            members.x[train_rows[item["nearest_train_index"]]]
            if item.get("nearest_train_index") is not None
            else np.zeros_like(members.x[0])
            for item in per_class
        ]
    )
    inversion = {"per_class": per_class, "summary": summarise_inversion(per_class), "note": None}
    return inverted.images, nearest, inversion


def _balanced_rows(
    train_labels: np.ndarray, heldout_labels: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per class, as many training as held-out rows (a seeded subsample of the larger side)."""
    rng = np.random.default_rng([seed, 7])
    train_rows, heldout_rows = [], []
    for code in np.union1d(train_labels, heldout_labels):
        train = np.flatnonzero(train_labels == code)
        heldout = np.flatnonzero(heldout_labels == code)
        size = min(train.size, heldout.size)
        if size == 0:  # keep the side that exists; the leakage record notes the missing one
            train_rows.append(train)
            heldout_rows.append(heldout)
            continue
        train_rows.append(np.sort(rng.choice(train, size, replace=False)))
        heldout_rows.append(np.sort(rng.choice(heldout, size, replace=False)))
    return np.concatenate(train_rows), np.concatenate(heldout_rows)


def _value_max(dataset: Dataset) -> float:
    """The brightest value of an image dataset (255 for uint8; else the data's maximum, at
    least 1); the scale of distances for tables too."""
    if dataset.x.dtype == np.uint8:
        return 255.0
    return float(max(1.0, np.nanmax(np.abs(dataset.x))))


def _checklist(dataset, members, nonmembers, membership, inversion, train_acc, held_acc):
    items = []
    exact = exact_duplicates(members.x, members.ids)
    near = near_duplicates(members.x)
    items.append(checks.duplicates_item(exact, near.pairs, members.n_samples))
    cross = near_duplicates(members.x, other=nonmembers.x, threshold=near.threshold)
    items.append(checks.train_heldout_overlap_item(cross.pairs, nonmembers.n_samples))
    items.append(checks.accuracy_gap_item(checks.accuracy_gap(train_acc, held_acc)))
    if dataset.kind == "table":
        columns = id_like_columns(dataset.x, dataset.feature_names or [])
    else:
        columns = None
    items.append(checks.id_columns_item(columns))
    items.append(_membership_check(membership))
    summary = inversion.get("summary")
    if summary:
        items.append(
            checks.inversion_item(summary["median_distance_ratio"], summary["evaluation_accuracy"])
        )
    items.append(
        checks.outlier_classes_item(
            [row for row in membership["per_class"] if row.get("robust_z") is not None]
        )
    )
    return items


def _text_checklist(dataset, members, nonmembers, membership, train_acc, held_acc):
    """The checklist of a text dataset, and the ``privacy.text`` section behind its items:
    duplicates by text (:mod:`poisonguard.privacy.text_duplicates`), personal data in the texts
    (:mod:`poisonguard.privacy.personal_data`, over every text of ``dataset``), model inversion
    not applicable."""
    rule = (
        f"texts compared with case and white space ignored; near copies at Jaccard >= "
        f"{NEAR_JACCARD} of character {SHINGLE_CHARS}-grams"
    )
    exact = text_exact_duplicates(members.x)
    near = text_near_duplicates(members.x)
    cross = text_near_duplicates(members.x, other=nonmembers.x)
    personal = personal_data_summary(dataset.x, dataset.ids)
    items = [
        checks.duplicates_item(exact, near.pairs, members.n_samples, rule=rule),
        checks.train_heldout_overlap_item(cross.pairs, nonmembers.n_samples, rule=rule),
        checks.personal_data_item(personal),
        checks.accuracy_gap_item(checks.accuracy_gap(train_acc, held_acc)),
        checks.id_columns_item(None, kind="text"),
        _membership_check(membership),
        checks.inversion_not_applicable_item("text", TEXT_INVERSION_REASON),
        checks.outlier_classes_item(
            [row for row in membership["per_class"] if row.get("robust_z") is not None]
        ),
    ]

    def listed(result, left, right) -> dict[str, Any]:
        section = result.as_dict(max_pairs=0)
        section["examples"] = [
            {
                "id_a": left.ids[pair.i],
                "id_b": right.ids[pair.j],
                "similarity": round(pair.similarity, 4),
                "exact": pair.exact,
            }
            for pair in result.pairs[:_TEXT_PAIR_EXAMPLES]
        ]
        del section["pairs"]
        return section

    text_checks = {
        "normalisation": "case folded, white space runs made one space",
        "exact_groups": [[members.ids[i] for i in group] for group in exact[:_TEXT_PAIR_EXAMPLES]],
        "n_exact_groups": len(exact),
        "near_duplicates": listed(near, members, members),
        "train_heldout": listed(cross, members, nonmembers),
        "personal_data": personal,
    }
    return items, text_checks


def _membership_check(membership):
    low = next(
        (row for row in membership["tpr_at_fpr"] if row.get("requested_fpr") == 0.01),
        membership["tpr_at_fpr"][0],
    )
    return checks.membership_item(
        membership["auc"], membership["advantage"], low["tpr"], low["fpr"]
    )
