"""The privacy review checklist: the items a reviewer signs off.

Each item is a dict ``{"item": str, "status": "pass" | "warn" | "fail", "evidence": str,
"details": dict}``; ``evidence`` states the measured numbers and the threshold in plain words.
Everything here is a pure function over arrays (no model, no file I/O).

The data checks the items judge have their own modules: duplicates inside a set and between
training and held-out data in :mod:`poisonguard.privacy.duplicates` (with the near-duplicate
threshold ``NEAR_DUPLICATE_FACTOR`` and the measurements behind it), identifier columns in
:mod:`poisonguard.privacy.id_columns`. :func:`accuracy_gap` is here.

Thresholds (module constants)
-----------------------------
``DUPLICATE_FAIL_SHARE = 0.01``
    duplicates inside training: ``warn`` when under 1 % of the samples are involved, ``fail`` at
    1 % or more; duplicated records are memorised far more than single ones (Carlini et al.,
    "Quantifying Memorization Across Neural Language Models", ICLR 2023 / arXiv 2022).
``ACCURACY_GAP_WARN = 0.02``, ``ACCURACY_GAP_FAIL = 0.10``
    train minus held-out accuracy: the attack "a record is a member when the model classifies it
    correctly" has a membership advantage equal to this gap (Yeom et al., CSF 2018), so a gap of
    10 points is a 10-point attacker advantage for free; 2 points is about three standard errors
    of a held-out accuracy of 90 % measured on 2,000 records (below it, the gap may be noise).
``MEMBERSHIP_AUC_WARN = 0.55``, ``MEMBERSHIP_AUC_FAIL = 0.60``; ``TPR_RATIO_WARN = 3``,
``TPR_RATIO_FAIL = 10``
    the AUC averages over all records; what matters is whether *some* records are identified
    with confidence, i.e. the true-positive rate at a low false-positive rate (Carlini et al.,
    "Membership Inference Attacks From First Principles", S&P 2022). A TPR 10 times the FPR
    means nine in ten of the attacker's confident claims are right.
``INVERSION_RATIO_FAIL = 0.5``, ``INVERSION_RATIO_WARN = 0.8``
    median over classes of (distance from a reconstruction to its nearest training record) /
    (to its nearest held-out record of the class): without record leakage it is about 1 when
    the two sets are of similar size per class (the nearest of a larger set is nearer by chance,
    so a training side much larger than the held-out side pulls the ratio below 1). The
    independent classifier's accuracy on the reconstructions is reported but does not set the
    status: a good model's class inversions look like their class whether or not it memorised
    anyone (class-level, not record-level information; Fredrikson et al., CCS 2015). Only when
    each class *is* a person (``classes_are_people=True``, e.g. face identification) is a
    recognisable reconstruction itself the leak: then accuracy >= ``INVERSION_RECOGNISED_WARN``
    (0.9) is at least a ``warn``.
``OUTLIER_CLASS_Z = 3.0``
    a class whose membership AUC has a robust z-score (median and MAD over classes) of 3 or more
    leaks much more than the others: ``warn``, naming the classes.

``PERSONAL_DATA_FAIL_KINDS = ("payment_card", "iban")``
    personal data in texts (:mod:`poisonguard.privacy.personal_data`): any payment card number
    or IBAN fails, any e-mail address or phone number warns. Language models repeat contact
    data seen in training (Carlini et al., "Extracting Training Data from Large Language
    Models", USENIX Security 2021); a card number or an account is harmful wherever it shows,
    whereas an e-mail address or phone number may be public (a support line), which a
    reviewer decides.

Identifier columns (:func:`~poisonguard.privacy.id_columns.id_like_columns`) and exact
training/held-out copies fail on any occurrence; near training/held-out copies warn on any.
For texts, duplicates are texts equal once normalised and near copies by the Jaccard index of
character shingles (:mod:`poisonguard.privacy.text_duplicates`), and model inversion is not
applicable (:func:`inversion_not_applicable_item`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from poisonguard.privacy.duplicates import NearPair

__all__ = [
    "DUPLICATE_FAIL_SHARE",
    "ACCURACY_GAP_WARN",
    "ACCURACY_GAP_FAIL",
    "MEMBERSHIP_AUC_WARN",
    "MEMBERSHIP_AUC_FAIL",
    "TPR_RATIO_WARN",
    "TPR_RATIO_FAIL",
    "INVERSION_RATIO_WARN",
    "INVERSION_RATIO_FAIL",
    "INVERSION_RECOGNISED_WARN",
    "OUTLIER_CLASS_Z",
    "accuracy_gap",
    "duplicates_item",
    "train_heldout_overlap_item",
    "accuracy_gap_item",
    "id_columns_item",
    "personal_data_item",
    "inversion_not_applicable_item",
    "PERSONAL_DATA_FAIL_KINDS",
    "membership_item",
    "inversion_item",
    "outlier_classes_item",
]

Status = Literal["pass", "warn", "fail"]

DUPLICATE_FAIL_SHARE = 0.01
ACCURACY_GAP_WARN = 0.02
ACCURACY_GAP_FAIL = 0.10
MEMBERSHIP_AUC_WARN = 0.55
MEMBERSHIP_AUC_FAIL = 0.60
TPR_RATIO_WARN = 3.0
TPR_RATIO_FAIL = 10.0
INVERSION_RATIO_WARN = 0.8
INVERSION_RATIO_FAIL = 0.5
INVERSION_RECOGNISED_WARN = 0.9
OUTLIER_CLASS_Z = 3.0
PERSONAL_DATA_FAIL_KINDS = ("payment_card", "iban")


# --- accuracy gap --------------------------------------------------------------------------------


def accuracy_gap(train_accuracy: float, heldout_accuracy: float) -> float:
    """Training accuracy minus held-out accuracy (both in [0, 1]); positive = overfitting."""
    for name, value in (("train_accuracy", train_accuracy), ("heldout_accuracy", heldout_accuracy)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return float(train_accuracy) - float(heldout_accuracy)


# --- checklist items ---------------------------------------------------------------------------


def _item(item: str, status: Status, evidence: str, details: dict[str, Any]) -> dict[str, Any]:
    return {"item": item, "status": status, "evidence": evidence, "details": details}


def _percent(value: float) -> str:
    """A share as a percentage: one decimal from 1 % on, two significant digits below."""
    percent = 100 * value
    return f"{percent:.1f}%" if abs(percent) >= 1 else f"{percent:.2g}%"


def _pair_indices(pair: NearPair | Sequence[Any]) -> tuple[int, int, bool]:
    if isinstance(pair, NearPair):
        return pair.i, pair.j, pair.exact
    exact = bool(pair[3]) if len(pair) > 3 else False
    return int(pair[0]), int(pair[1]), exact


def duplicates_item(
    exact_groups: Sequence[Sequence[int]],
    near_pairs: Iterable[NearPair | Sequence[Any]],
    n: int,
    *,
    rule: str | None = None,
) -> dict[str, Any]:
    """Duplicated records inside the training set.

    ``pass`` when there are none; ``warn`` when the samples in an exact-duplicate group or a
    near-duplicate pair are under ``DUPLICATE_FAIL_SHARE`` of ``n``; ``fail`` from there on.
    ``near_pairs`` are :class:`NearPair` or ``(i, j, distance)`` tuples (texts:
    :class:`~poisonguard.privacy.text_duplicates.TextPair`). ``rule``, when given, says what
    counts as a duplicate (texts: the normalisation and the Jaccard threshold) and ends the
    evidence.
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    pairs = [_pair_indices(pair) for pair in near_pairs]
    in_exact = {int(i) for group in exact_groups for i in group}
    in_near = {i for i, _, _ in pairs} | {j for _, j, _ in pairs}
    involved = len(in_exact | in_near)
    share = involved / n
    copies = sum(len(group) - 1 for group in exact_groups)
    if involved == 0:
        status: Status = "pass"
    elif share < DUPLICATE_FAIL_SHARE:
        status = "warn"
    else:
        status = "fail"
    evidence = (
        f"{len(exact_groups)} groups of exact duplicates ({copies} extra copies) and "
        f"{len(pairs)} near-duplicate pairs; {involved} of {n} training samples "
        f"({_percent(share)}) are involved (warn at any, fail at >= "
        f"{_percent(DUPLICATE_FAIL_SHARE)})"
    )
    if rule:
        evidence += f"; {rule}"
    details = {
        "exact_groups": len(exact_groups),
        "exact_extra_copies": copies,
        "near_pairs": len(pairs),
        "samples_involved": involved,
        "share": share,
        "n": n,
        "fail_share": DUPLICATE_FAIL_SHARE,
    }
    return _item("duplicates in the training data", status, evidence, details)


def train_heldout_overlap_item(
    cross_pairs: Iterable[NearPair | Sequence[Any]], n_heldout: int, *, rule: str | None = None
) -> dict[str, Any]:
    """Copies of held-out records in the training data.

    ``cross_pairs`` come from ``near_duplicates(train, other=heldout)`` (texts:
    ``text_near_duplicates(train, other=heldout)``). ``fail`` when any held-out record has an
    exact copy in training (it is not held out), ``warn`` when any has a near copy, ``pass``
    otherwise. ``rule`` as in :func:`duplicates_item`.
    """
    if n_heldout <= 0:
        raise ValueError(f"n_heldout must be positive, got {n_heldout}")
    pairs = [_pair_indices(pair) for pair in cross_pairs]
    exact = {j for _, j, is_exact in pairs if is_exact}
    near = {j for _, j, is_exact in pairs if not is_exact} - exact
    if exact:
        status: Status = "fail"
    elif near:
        status = "warn"
    else:
        status = "pass"
    evidence = (
        f"{len(exact)} of {n_heldout} held-out records ({_percent(len(exact) / n_heldout)}) have "
        f"an exact copy in training (fail at any); {len(near)} more "
        f"({_percent(len(near) / n_heldout)}) have a near copy (warn at any)"
    )
    if rule:
        evidence += f"; {rule}"
    details = {
        "heldout_with_exact_copy": len(exact),
        "heldout_with_near_copy": len(near),
        "pairs": len(pairs),
        "n_heldout": n_heldout,
    }
    return _item("overlap between training and held-out data", status, evidence, details)


def accuracy_gap_item(gap: float) -> dict[str, Any]:
    """Train minus held-out accuracy: ``pass`` under ``ACCURACY_GAP_WARN``, ``warn`` under
    ``ACCURACY_GAP_FAIL``, ``fail`` from there on."""
    if not math.isfinite(gap):
        raise ValueError(f"gap must be a finite number, got {gap}")
    if gap >= ACCURACY_GAP_FAIL:
        status: Status = "fail"
    elif gap >= ACCURACY_GAP_WARN:
        status = "warn"
    else:
        status = "pass"
    evidence = (
        f"training accuracy exceeds held-out accuracy by {100 * gap:.1f} points (warn at >= "
        f"{100 * ACCURACY_GAP_WARN:.0f}, fail at >= {100 * ACCURACY_GAP_FAIL:.0f}); the attack "
        "'member if classified correctly' gains this much advantage"
    )
    details = {"gap": gap, "warn_at": ACCURACY_GAP_WARN, "fail_at": ACCURACY_GAP_FAIL}
    return _item("train/held-out accuracy gap", status, evidence, details)


def id_columns_item(
    columns: Sequence[dict[str, Any]] | None, *, kind: str = "image"
) -> dict[str, Any]:
    """Identifier-like columns used as features: ``fail`` on any, ``pass`` otherwise.

    ``columns`` is the output of :func:`id_like_columns`, or None for images and texts (not
    applicable: ``pass``, evidence "images: no columns" or "texts: ...").
    """
    name = "identifier columns used as features"
    if columns is None:
        evidence = (
            "texts: no feature columns (the model reads only the text; personal data inside "
            "the texts is its own item)"
            if kind == "text"
            else "images: no columns"
        )
        return _item(name, "pass", evidence, {"applicable": False, "columns": []})
    listed = [dict(column) for column in columns]
    if listed:
        named = "; ".join(f"{c['column']!r} ({c['reason']})" for c in listed)
        evidence = (
            f"{len(listed)} feature column(s) identify rows: {named} (fail at any: a model can "
            "memorise an identifier and it points at a person; drop it or pass it as --id-column)"
        )
        status: Status = "fail"
    else:
        evidence = "0 feature columns look like identifiers or row counters (fail at any)"
        status = "pass"
    return _item(name, status, evidence, {"applicable": True, "columns": listed})


def personal_data_item(summary: dict[str, Any]) -> dict[str, Any]:
    """Personal data in the training texts (``summary`` from
    :func:`~poisonguard.privacy.personal_data.personal_data_summary`).

    ``fail`` on any payment card number or IBAN (financial identifiers: a model that repeats
    one does harm, and they have no place in training text); ``warn`` on any e-mail address
    or phone number (contact data; some may be public, such as a company's support line, so
    a reviewer decides); ``pass`` otherwise. The evidence counts each kind and the texts that
    hold it; the masked examples are in ``details`` (never a value in full).
    """
    kinds = summary["kinds"]
    n = int(summary["n_texts"])
    if any(kinds[kind]["occurrences"] for kind in PERSONAL_DATA_FAIL_KINDS):
        status: Status = "fail"
    elif any(entry["occurrences"] for entry in kinds.values()):
        status = "warn"
    else:
        status = "pass"
    counts = ", ".join(
        f"{entry['occurrences']} {_KIND_NAMES.get(kind, kind)} in {entry['texts']} texts"
        for kind, entry in kinds.items()
    )
    affected = int(summary["texts_affected"])
    evidence = (
        f"{affected} of {n} texts ({_percent(affected / n if n else 0.0)}) hold personal data: "
        f"{counts} (fail at any card number or IBAN, warn at any e-mail address or phone number)"
    )
    details = {**summary, "fail_kinds": list(PERSONAL_DATA_FAIL_KINDS)}
    return _item("personal data in the texts", status, evidence, details)


_KIND_NAMES = {
    "email": "e-mail addresses",
    "phone": "phone numbers",
    "payment_card": "payment card numbers",
    "iban": "IBANs",
}


def inversion_not_applicable_item(kind: str, reason: str) -> dict[str, Any]:
    """Model inversion where it does not apply (texts): ``pass`` with ``applicable`` False and
    the reason as the evidence, so the checklist says why the item was not measured."""
    details = {"applicable": False, "kind": kind}
    return _item("model inversion", "pass", f"not applicable to {kind}: {reason}", details)


def membership_item(
    auc: float, advantage: float, tpr_at_low_fpr: float, low_fpr: float
) -> dict[str, Any]:
    """Membership inference: ``fail`` when AUC >= ``MEMBERSHIP_AUC_FAIL`` or TPR at the low FPR
    >= ``TPR_RATIO_FAIL`` x that FPR; ``warn`` when AUC >= ``MEMBERSHIP_AUC_WARN`` or TPR >=
    ``TPR_RATIO_WARN`` x FPR; else ``pass``."""
    if not 0.0 < low_fpr < 1.0:
        raise ValueError(f"low_fpr must lie in (0, 1), got {low_fpr}")
    tpr_fail, tpr_warn = TPR_RATIO_FAIL * low_fpr, TPR_RATIO_WARN * low_fpr
    if auc >= MEMBERSHIP_AUC_FAIL or tpr_at_low_fpr >= tpr_fail:
        status: Status = "fail"
    elif auc >= MEMBERSHIP_AUC_WARN or tpr_at_low_fpr >= tpr_warn:
        status = "warn"
    else:
        status = "pass"
    evidence = (
        f"membership AUC {auc:.2f} (warn at >= {MEMBERSHIP_AUC_WARN:.2f}, fail at >= "
        f"{MEMBERSHIP_AUC_FAIL:.2f}); TPR {_percent(tpr_at_low_fpr)} at {_percent(low_fpr)} FPR "
        f"(warn at >= {_percent(tpr_warn)}, fail at >= {_percent(tpr_fail)}); "
        f"membership advantage {advantage:.2f}"
    )
    details = {
        "auc": auc,
        "advantage": advantage,
        "tpr_at_low_fpr": tpr_at_low_fpr,
        "low_fpr": low_fpr,
        "auc_warn_at": MEMBERSHIP_AUC_WARN,
        "auc_fail_at": MEMBERSHIP_AUC_FAIL,
        "tpr_warn_at": tpr_warn,
        "tpr_fail_at": tpr_fail,
    }
    return _item("membership inference", status, evidence, details)


def inversion_item(
    median_distance_ratio: float | None,
    evaluation_accuracy: float | None,
    *,
    classes_are_people: bool = False,
) -> dict[str, Any]:
    """Model inversion: does a class reconstruction reveal training records?

    The status follows the median distance ratio (reconstruction to nearest training record
    over to nearest held-out record of its class): ``fail`` under ``INVERSION_RATIO_FAIL``,
    ``warn`` under ``INVERSION_RATIO_WARN``, else ``pass``; ``warn`` when it could not be
    measured (None or NaN). The independent classifier's accuracy on the reconstructions is
    context only, unless ``classes_are_people`` (each class is one person, so a recognisable
    reconstruction shows that person): then accuracy >= ``INVERSION_RECOGNISED_WARN`` is at
    least a ``warn``.
    """
    ratio = math.nan if median_distance_ratio is None else float(median_distance_ratio)
    accuracy = None if evaluation_accuracy is None else float(evaluation_accuracy)
    if math.isnan(ratio):
        status: Status = "warn"
        first = "distance ratio not measured (no held-out records to compare with)"
    else:
        if ratio < INVERSION_RATIO_FAIL:
            status = "fail"
        elif ratio < INVERSION_RATIO_WARN:
            status = "warn"
        else:
            status = "pass"
        if ratio >= 1:
            verdict = "no closer to training records than to held-out records of their class"
        elif status == "pass":
            verdict = "only slightly closer to training records than to held-out ones"
        else:
            verdict = "closer to training records than to held-out records of their class"
        first = (
            f"median distance ratio {ratio:.2f}: reconstructions are {verdict} "
            f"(warn below {INVERSION_RATIO_WARN:.1f}, fail below {INVERSION_RATIO_FAIL:.1f})"
        )
    if accuracy is None:
        second = "no independent classifier judged the reconstructions"
    elif classes_are_people:
        second = (
            f"an independent classifier recognises {_percent(accuracy)} of the reconstructions "
            f"(warn at >= {_percent(INVERSION_RECOGNISED_WARN)}: each class is a person)"
        )
        if accuracy >= INVERSION_RECOGNISED_WARN and status == "pass":
            status = "warn"
    else:
        second = (
            f"an independent classifier recognises {_percent(accuracy)} of the reconstructions "
            "(context only: looking like its class is class-level, not record-level, information)"
        )
    details = {
        "median_distance_ratio": None if math.isnan(ratio) else ratio,
        "evaluation_accuracy": accuracy,
        "classes_are_people": classes_are_people,
        "ratio_warn_below": INVERSION_RATIO_WARN,
        "ratio_fail_below": INVERSION_RATIO_FAIL,
    }
    return _item("model inversion", status, f"{first}; {second}", details)


def outlier_classes_item(per_class: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Classes whose membership leakage stands out: ``warn`` when a class's robust z-score of
    membership AUC is at least ``OUTLIER_CLASS_Z`` (naming them), else ``pass``.

    ``per_class`` holds dicts with ``class`` and ``robust_z`` (and optionally ``auc``); rows whose
    ``robust_z`` is None or NaN are skipped.
    """
    scored = [
        row
        for row in per_class
        if row.get("robust_z") is not None and math.isfinite(float(row["robust_z"]))
    ]
    outliers = sorted(
        (row for row in scored if float(row["robust_z"]) >= OUTLIER_CLASS_Z),
        key=lambda row: -float(row["robust_z"]),
    )
    if outliers:
        named = ", ".join(_describe_class(row) for row in outliers)
        evidence = (
            f"{len(outliers)} of {len(scored)} classes leak much more than the others: {named} "
            f"(warn at robust z >= {OUTLIER_CLASS_Z:.1f})"
        )
        status: Status = "warn"
    else:
        top = max((float(row["robust_z"]) for row in scored), default=math.nan)
        highest = f"highest robust z {top:.1f}" if scored else "no class could be scored"
        evidence = (
            f"no class's membership AUC stands out among {len(scored)} classes ({highest}; "
            f"warn at >= {OUTLIER_CLASS_Z:.1f})"
        )
        status = "pass"
    details = {
        "classes": [str(row["class"]) for row in outliers],
        "robust_z": {str(row["class"]): float(row["robust_z"]) for row in scored},
        "warn_at": OUTLIER_CLASS_Z,
    }
    return _item("classes with outlying leakage", status, evidence, details)


def _describe_class(row: dict[str, Any]) -> str:
    auc = row.get("auc")
    auc_text = f"AUC {float(auc):.2f}, " if auc is not None else ""
    return f"class {row['class']!r} ({auc_text}robust z {float(row['robust_z']):.1f})"
