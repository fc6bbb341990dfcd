"""The privacy probe's report: ``report.json`` and a self-contained ``report.html``.

``report.json`` keys: ``poisonguard_version``, ``dataset`` (``name``, ``path``, ``format``,
``kind``, ``n_samples``, ``classes``), ``settings``, ``model``, ``privacy``
(``membership`` with ``auc``, ``advantage`` and ``tpr_at_fpr``, the per-attack and per-class
figures; ``inversion.per_class``; ``checklist``, a list of ``{item, status, evidence}``),
``timings``, ``warnings``, ``versions``, ``created_utc``; for a text dataset ``privacy.text``
too: ``personal_data`` (counts per kind, texts affected, masked examples with their sample ids),
``near_duplicates`` and ``train_heldout`` (pair counts, the threshold and the first pairs by
id) and ``exact_groups``. The page has ``report.html``'s layout (:mod:`html_report`, the same
stylesheet): a summary whose headline counts the checklist's fails and warns, then the
checklist, then (texts) the personal data and duplicate texts, then the membership figures with
a log-scale ROC plot, then each class's reconstruction beside its nearest training image
(images only; for texts the inversion section says it is not applicable), then the run's
timings and settings; each section opens with what it shows and what to look for.

Nothing found in a text is written in full: personal data only masked
(:mod:`poisonguard.privacy.personal_data`), duplicates only by sample id. Ids and class names
are escaped on the page (Jinja autoescaping).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from poisonguard import __version__
from poisonguard.atomic import atomic_directory
from poisonguard.privacy.probe import PrivacyResult
from poisonguard.report import html_report
from poisonguard.report.json_report import jsonable, package_versions, report_json_text
from poisonguard.report.plots import roc_curves_png
from poisonguard.report.thumbnails import image_thumbnail_png

__all__ = [
    "PRIVACY_FILES",
    "PrivacyReportFiles",
    "build_privacy_json",
    "render_privacy_html",
    "write_privacy_report",
]

logger = logging.getLogger(__name__)

PRIVACY_FILES = ("report.json", "report.html")
_TEMPLATE = "privacy.html"


@dataclass(frozen=True)
class PrivacyReportFiles:
    json: Path
    html: Path


def build_privacy_json(result: PrivacyResult) -> dict[str, Any]:
    """The JSON-able report (only built-in types; NaN and infinity become ``None``)."""
    dataset = result.dataset
    report = {
        "poisonguard_version": __version__,
        "dataset": {
            "name": dataset.name,
            "path": str(dataset.path),
            "format": dataset.format,
            "kind": dataset.kind,
            "n_samples": dataset.n_samples,
            "classes": [
                {"code": c, "name": name, "count": int(count)}
                for c, (name, count) in enumerate(
                    zip(dataset.class_names, dataset.class_counts(), strict=True)
                )
            ],
        },
        "settings": result.settings,
        "model": {
            **result.embedding.model,
            "train_accuracy": result.embedding.train_accuracy,
            "from_cache": result.embedding.from_cache,
        },
        "privacy": result.privacy,
        "timings": {k: round(v, 3) for k, v in result.timings.items()},
        "warnings": result.warnings,
        "versions": package_versions(),
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return jsonable(report)


def write_privacy_report(result: PrivacyResult, out_dir: str | Path) -> PrivacyReportFiles:
    """Write ``report.json`` and ``report.html`` into ``out_dir`` atomically."""
    out_dir = Path(out_dir)
    report = build_privacy_json(result)
    html = _render(result, report)
    with atomic_directory(out_dir, replaceable=PRIVACY_FILES) as tmp:
        (tmp / "report.json").write_bytes(report_json_text(report).encode("utf-8"))
        (tmp / "report.html").write_bytes(html.encode("utf-8"))
    logger.info("Wrote privacy report to %s", out_dir)
    return PrivacyReportFiles(out_dir / "report.json", out_dir / "report.html")


def _render(result: PrivacyResult, report: dict[str, Any]) -> str:
    gallery = []
    inversion = report["privacy"]["inversion"]
    if result.reconstructions is not None and result.dataset.kind == "image":
        for k, item in enumerate(inversion["per_class"]):
            gallery.append(
                {
                    "item": item,
                    "reconstruction": _data_uri(image_thumbnail_png(result.reconstructions[k])),
                    "nearest": _data_uri(image_thumbnail_png(result.nearest_training[k])),
                }
            )
    return render_privacy_html(report, gallery=gallery)


def render_privacy_html(report: dict[str, Any], *, gallery: Sequence[dict[str, Any]] = ()) -> str:
    """The page of :func:`build_privacy_json`'s ``report``.

    ``gallery`` holds, per class, ``item`` (its ``privacy.inversion.per_class`` entry),
    ``reconstruction`` and ``nearest`` (``data:`` URIs of the reconstruction and of its nearest
    training image). The summary's headline counts the checklist's ``fail`` and ``warn`` items
    and names them.
    """
    privacy = report["privacy"]
    membership = privacy["membership"]
    curves = {
        name: (values["roc"]["fpr"], values["roc"]["tpr"])
        for name, values in membership["attacks"].items()
    }
    statuses = [item["status"] for item in privacy["checklist"]]
    context = {
        "report": report,
        "dataset": report["dataset"],
        "privacy": privacy,
        "membership": membership,
        "inversion": privacy["inversion"],
        "roc_src": _data_uri(roc_curves_png(curves)),
        "gallery": list(gallery),
        "counts": {
            "total": len(statuses),
            "fail": statuses.count("fail"),
            "warn": statuses.count("warn"),
        },
        "failing": [i["item"] for i in privacy["checklist"] if i["status"] == "fail"],
        "warning": [i["item"] for i in privacy["checklist"] if i["status"] == "warn"],
        "model_details": [
            (key, _describe(value))
            for key, value in report["model"].items()
            if key not in ("from_cache", "train_accuracy")  # the accuracy has its own line
        ],
        "settings_text": json.dumps(report["settings"], indent=2, ensure_ascii=False),
    }
    return html_report.template_environment().get_template(_TEMPLATE).render(**context)


def _describe(value: Any) -> str:
    """A model description value as one line of text (nested values as compact JSON), as in
    ``report.html``'s summary."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    return "—" if value is None else str(value)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
