"""``report.json``: the scan's findings as plain JSON, for machines (CI gates, dashboards).

Everything here is derived from a :class:`~poisonguard.results.ScanResult`; the HTML report renders
the same dictionary, so a number on the page and in the JSON come from one place.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib.metadata
import json
import math
import platform
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import PurePath
from typing import Any

import numpy as np

import poisonguard
from poisonguard.detectors import DETECTORS
from poisonguard.findings import label_noise_evidence
from poisonguard.report import group_evidence
from poisonguard.report.label_ambiguity import label_ambiguity
from poisonguard.report.label_confusion import label_confusion
from poisonguard.results import ScanResult
from poisonguard.rows import RowsLike, as_rows

__all__ = ["TOP_FLAGGED", "build_report_json", "report_json_text", "jsonable", "ranked_indices"]

TOP_FLAGGED = 100
"""How many flagged samples ``findings.top_flagged`` lists (the most suspicious first)."""

_VERSIONED_PACKAGES = ("numpy", "torch", "scikit-learn", "umap-learn", "h5py", "dask")


def build_report_json(
    result: ScanResult,
    group_differences: list[group_evidence.GroupDifference] | None = None,
) -> dict[str, Any]:
    """Describe a scan as a JSON-able dictionary.

    Parameters
    ----------
    result : ScanResult
        The scan to describe.
    group_differences : list of GroupDifference, optional
        :func:`~poisonguard.report.group_evidence.target_group_differences` of the same scan,
        if already computed (it reads the target classes' samples); computed here otherwise.

    Returns
    -------
    dict
        Keys ``poisonguard_version``, ``dataset``, ``settings``, ``model``, ``findings``,
        ``detectors``, ``timings`` (seconds, 3 decimals), ``execution`` (where the tasks ran and
        where the features were; ``torch_threads``: training's thread count, on which the
        scores depend), ``warnings``, ``versions`` and
        ``created_utc``. It holds only built-in Python types; NaN and infinity become ``None``,
        so ``json.dumps(..., allow_nan=False)`` accepts it. Scores are "higher = more
        suspicious"; ``findings.top_flagged`` lists at most :data:`TOP_FLAGGED` flagged samples,
        highest ``score`` first, each with every detector's score under the detector's name.
        ``findings.rules_off`` lists the flagging rules that did not run because the detector
        they need was not selected (``rule``, ``detector``, ``needs``, ``summary``,
        ``message``); ``findings.group_differences`` holds, per backdoor target class, what
        sets its flagged group apart from the rest of the class
        (:func:`~poisonguard.report.group_evidence.summarize`); ``findings.label_confusion`` the
        given × predicted label counts of the flagged and of the unflagged samples
        (:func:`~poisonguard.report.label_confusion.label_confusion`; ``None`` without
        predictions); ``findings.label_ambiguity`` how often a model that never saw them
        disagrees with the given labels, flagged or not
        (:func:`~poisonguard.report.label_ambiguity.label_ambiguity`; ``None`` without
        predictions).
    """
    dataset = result.dataset
    embedding = result.embedding
    n = dataset.n_samples
    names = dataset.class_names
    score = np.asarray(result.score).reshape(-1)
    flagged = np.asarray(result.flagged, dtype=bool).reshape(-1)
    counts = dataset.class_counts()

    top = [int(i) for i in ranked_indices(score, flagged, TOP_FLAGGED)]
    top_flagged = []
    for i in top:
        entry: dict[str, Any] = {
            "index": i,
            "id": dataset.ids[i],
            "label": names[int(dataset.labels[i])],
            "score": _number(score[i]),
        }
        if result.reasons:
            entry["reason"] = result.reasons[i]
        finding = result.class_findings[int(dataset.labels[i])] if result.class_findings else None
        if finding is not None and str(result.finding[i]) == "backdoor":
            entry["evidence"] = finding.evidence
        elif str(result.finding[i]) == "label-noise":
            entry["evidence"] = label_noise_evidence(finding)
        entry["fired"] = [name for name, hits in result.fired.items() if hits[i]]
        for name, values in result.detector_scores.items():
            # one row: scores of an out-of-core scan are read from their file
            entry[name] = _number(as_rows(values)[i : i + 1].reshape(-1)[0])
        top_flagged.append(entry)

    if group_differences is None:
        group_differences = group_evidence.target_group_differences(result)
    differences = [
        group_evidence.summarize(gd, dataset.kind, names[gd.code], dataset.feature_names)
        for gd in group_differences
    ]

    model = dict(embedding.model)
    model.update(
        train_accuracy=embedding.train_accuracy,
        from_cache=embedding.from_cache,
        cache_path=None if embedding.cache_path is None else str(embedding.cache_path),
    )

    report = {
        "poisonguard_version": poisonguard.__version__,
        "dataset": {
            "path": str(dataset.path),
            "format": dataset.format,
            "name": dataset.name,
            "kind": dataset.kind,
            "n_samples": n,
            "input_shape": list(dataset.x.shape[1:]),
            "classes": [
                {"code": code, "name": name, "count": int(counts[code])}
                for code, name in enumerate(names)
            ],
            "fingerprint": embedding.fingerprint,
            "notes": list(dataset.notes),
            "skipped": [{"file": str(f), "reason": str(r)} for f, r in dataset.skipped],
        },
        "settings": result.settings,
        "model": model,
        "findings": {
            "flagged_count": result.n_flagged,
            "flagged_fraction": result.n_flagged / n if n else 0.0,
            "threshold": result.threshold,
            "attack_kinds": list(result.attack_kinds),
            "rules_off": [dataclasses.asdict(rule) for rule in result.rules_off],
            "target_classes": list(result.target_classes),
            "per_class": [dataclasses.asdict(finding) for finding in result.class_findings],
            "group_differences": differences,
            "label_confusion": label_confusion(
                dataset.labels,
                result.predicted,
                flagged,
                names,
                out_of_sample="confident-learning" in result.detector_scores,
            ),
            "label_ambiguity": scan_label_ambiguity(result),
            "top_flagged": top_flagged,
        },
        "detectors": {
            name: {
                **_summary(values),
                "fired": int(np.count_nonzero(result.fired[name])) if name in result.fired else 0,
                "fired_on_flagged": int(np.count_nonzero(result.fired[name] & flagged))
                if name in result.fired
                else 0,
                **_plugin(name),
            }
            for name, values in result.detector_scores.items()
        },
        "timings": {stage: round(float(s), 3) for stage, s in result.timings.items()},
        "execution": dict(result.execution),
        "warnings": list(result.warnings),
        "versions": package_versions(),
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return jsonable(report)


def scan_label_ambiguity(result: ScanResult) -> dict[str, Any] | None:
    """How ambiguous the labels of ``result`` look
    (:func:`~poisonguard.report.label_ambiguity.label_ambiguity` on its predictions): the
    ``findings.label_ambiguity`` entry and the scan summary's ``Labels:`` line."""
    return label_ambiguity(
        result.dataset.labels,
        result.predicted,
        result.predicted_probability,
        np.asarray(result.flagged, dtype=bool).reshape(-1),
        result.dataset.class_names,
        out_of_sample="confident-learning" in result.detector_scores,
        features_saw_labels=features_saw_labels(result),
        # texts: without a trusted sample the rule reads a model that memorised every label
        # (see label_ambiguity)
        rule_flags_disagreement=result.dataset.kind != "text" or result.label_floor is not None,
        trusted_floor=result.label_floor,
        noisy="label-noise" in result.attack_kinds,
    )


def features_saw_labels(result: ScanResult) -> bool:
    """Whether the out-of-sample heads read features of a model trained on every sample's
    label: the scan's own image model (texts' heads read their words, tables' their columns,
    and a user's extractor never saw the labels)."""
    dataset, model = result.dataset, result.embedding.model
    return dataset.kind == "image" and model.get("source") != "torchscript"


def report_json_text(report: Mapping[str, Any]) -> str:
    """Serialise :func:`build_report_json`'s dictionary (2-space indent, NaN refused)."""
    return json.dumps(report, indent=2, sort_keys=False, allow_nan=False, ensure_ascii=False) + "\n"


def ranked_indices(
    score: np.ndarray, among: np.ndarray | None = None, count: int | None = None
) -> np.ndarray:
    """Sample indices from most to least suspicious (highest score first; ties by index).

    Non-finite scores (NaN) rank last. ``among`` (a boolean mask) keeps only those samples, and
    ``count`` only the first ``count`` of them: then only the candidates are ordered, never all
    N samples (the report needs the first hundred of the flagged ones).
    """
    score = np.asarray(score, dtype=np.float64).reshape(-1)
    candidates = np.arange(score.size) if among is None else np.flatnonzero(among)
    key = -score[candidates]
    key[np.isnan(key)] = np.inf
    if count is not None and count < candidates.size:
        if count <= 0:
            return candidates[:0]
        # every candidate up to the count-th smallest key (ties at it included), then in order
        kth = np.partition(key, count - 1)[count - 1]
        near = np.flatnonzero(key <= kth)
        candidates, key = candidates[near], key[near]
    order = np.argsort(key, kind="stable")  # candidates are in index order: ties by index
    return candidates[order][:count]


def jsonable(value: Any) -> Any:
    """Convert ``value`` to built-in JSON types.

    numpy scalars and arrays become Python numbers and lists, paths become strings, tuples and
    sets become lists, dataclasses become dicts, and non-finite floats become ``None``.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()] if value.ndim else jsonable(value.item())
    if isinstance(value, (np.generic, int, float)):
        return _number(value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    return str(value)


def _number(value: Any) -> int | float | bool | None:
    """A numpy or Python number as a Python number; NaN and infinity as ``None``.

    Single-precision floats keep their shortest decimal form (``0.9``, not ``0.899999976``).
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (np.float32, np.float16)):
        number = float(str(value)) if np.isfinite(value) else math.nan
    else:
        number = float(value)
    return number if math.isfinite(number) else None


def _plugin(name: str) -> dict[str, str]:
    """``{"plugin": "distribution version"}`` for a plug-in detector: a reviewer sees which
    scores came from code outside PoisonGuard."""
    detector = DETECTORS.get(name)
    return {"plugin": detector.plugin} if detector is not None and detector.plugin else {}


def _summary(values: RowsLike) -> dict[str, Any]:
    """min / median / max of a detector's finite scores (``None`` when there are none; scores
    kept in a file, out of core, are read whole: a median needs them all)."""
    arr = as_rows(values).whole().reshape(-1)
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    finite = np.isfinite(arr)
    if not finite.any():
        return {"min": None, "median": None, "max": None}
    finite = arr[finite]  # a copy, which the median may reorder
    low, high = finite.min(), finite.max()
    return {
        "min": _number(low),
        "median": _number(np.median(finite, overwrite_input=True)),
        "max": _number(high),
    }


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for package in _VERSIONED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions
