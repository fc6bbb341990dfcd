"""``report.html``: one self-contained page a person reads to judge a scan.

The page renders :func:`~poisonguard.report.json_report.build_report_json`'s dictionary plus the
figures made here (score histogram, UMAP map, thumbnails of the most suspicious images, or the
most suspicious texts with the words their flagged group over-represents marked, for
each backdoor target the mean images of its flagged group and core and their difference, from
:mod:`~poisonguard.report.group_evidence`, and the given × predicted label table of the flagged
samples beside the unflagged ones', from :mod:`~poisonguard.report.label_confusion`, its cells
shaded by CSS classes). Images are
inlined as ``data:`` URIs and the CSS is inline, so the file works offline and loads nothing from
elsewhere; a Content-Security-Policy forbids outside resources and every script but the flag
browser's own (:mod:`~poisonguard.report.flag_browser`), allowed by its hash. Ids and class names
are untrusted text: the Jinja2 environment autoescapes everything, nothing is marked ``|safe``,
and the flag browser's data goes through ``|tojson``, which escapes ``<``, ``>`` and ``&``.

Per-sample data is embedded for the map's subsample (as pixels in one PNG), the top suspicious
samples and every flagged sample (the flag browser: ids, scores, findings, and thumbnails on
sprite sheets for the highest-scoring flags, text excerpts or a few table columns), not for the
unflagged ones, so the page stays small for large datasets.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
import numpy as np

from poisonguard.report import (
    flag_browser,
    group_evidence,
    plots,
    projection,
    text_evidence,
    thumbnails,
)
from poisonguard.report.json_report import ranked_indices
from poisonguard.report.label_confusion import cell_examples, heatmap_rows
from poisonguard.results import ScanResult
from poisonguard.rows import as_rows

__all__ = ["ReportFigures", "prepare_figures", "render_html", "text_snippet", "TEMPLATE_DIR"]

logger = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).parent / "templates"
_TEMPLATE = "report.html"
_MAX_LISTED_SKIPPED = 50
_SNIPPET_CHARS = 200  # of a text's start (text_snippet)
_EXCERPT_CHARS = 400  # of a text shown among the most suspicious samples, around its marks
_EXAMPLE_CHARS = 160  # of a text shown as an example of a label-confusion cell
# Model description keys shown on their own line of the summary, not in the model details.
_MODEL_SUMMARY_KEYS = ("train_accuracy", "from_cache", "cache_path")


@dataclass
class ReportFigures:
    """The slow-to-make parts of the page, computed before the report's time is taken.

    Attributes
    ----------
    histogram_png : bytes
        Score histogram.
    map_png : bytes
        UMAP map of the subsample ``map_indices``.
    map_indices : ndarray of int64
        Samples drawn on the map (see :func:`~poisonguard.report.projection.map_subsample`).
    top : list of dict
        The most suspicious samples, highest score first: ``index``, ``id``, ``label``,
        ``score``, ``flagged`` and, for image datasets, ``thumbnail`` (a ``data:`` URI), for
        text datasets ``text`` (the text's start, :func:`text_snippet`) and ``segments``
        (the text as ``(piece, marked)`` pairs, :func:`~poisonguard.report.text_evidence.
        marked_segments`: the terms over-represented in any flagged group marked, and the
        excerpt moved to the first of them when it lies past the start). The page escapes
        every piece, marked or not, like every value.
    group_differences : list of GroupDifference
        Per backdoor target class, its flagged group against the rest of the class
        (:func:`~poisonguard.report.group_evidence.target_group_differences`).
    evidence_images : dict of int to dict of str
        For image datasets, per target class code: ``group``, ``core`` and ``difference``, the
        group's and the core's mean images and their difference as ``data:`` URIs.
    flags : FlagBrowser or None
        Every flagged sample, for the page's flag browser
        (:func:`~poisonguard.report.flag_browser.build_flag_browser`).
    map_among : dict or None
        :func:`~poisonguard.report.projection.flags_among_other_labels` of the map: how many
        drawn flagged points sit among another label's points (class codes).
    confusion_examples : list of dict
        :func:`~poisonguard.report.label_confusion.cell_examples` of the flagged samples'
        largest off-diagonal cells, each example (``samples``) an entry like ``top``'s:
        ``index``, ``id``, ``score`` and a ``thumbnail`` (images) or ``text`` (texts).
    """

    histogram_png: bytes
    map_png: bytes
    map_indices: np.ndarray
    top: list[dict[str, Any]] = field(default_factory=list)
    group_differences: list[group_evidence.GroupDifference] = field(default_factory=list)
    evidence_images: dict[int, dict[str, str]] = field(default_factory=dict)
    flags: flag_browser.FlagBrowser | None = None
    map_among: dict[str, Any] | None = None
    confusion_examples: list[dict[str, Any]] = field(default_factory=list)


def prepare_figures(
    result: ScanResult,
    *,
    seed: int = 0,
    map_points: int = 3000,
    thumbnails_count: int = 48,
    flag_thumbnails: int = flag_browser.MAX_THUMBNAILS,
) -> ReportFigures:
    """Draw the histogram and the map, pick the most suspicious samples and compare each
    backdoor target's flagged group with the rest of its class.

    Parameters
    ----------
    result : ScanResult
        The scan to report.
    seed : int
        Seed of the map's subsample and of UMAP.
    map_points : int
        Most flagged points drawn on the map, and the places the unflagged ones fill (see
        :func:`~poisonguard.report.projection.map_subsample`).
    thumbnails_count : int
        How many of the most suspicious samples the page shows (thumbnails for images, table
        rows for tables).
    flag_thumbnails : int
        How many flagged images, the highest-scoring first, get a thumbnail in the flag
        browser (every flag is listed).
    """
    if thumbnails_count < 0:
        raise ValueError(f"thumbnails must be >= 0, got {thumbnails_count}")
    dataset = result.dataset
    score = np.asarray(result.score).reshape(-1)
    flagged = np.asarray(result.flagged, dtype=bool).reshape(-1)

    histogram = plots.score_histogram_png(score, flagged, result.threshold)

    indices = projection.map_subsample(flagged, max_points=map_points, seed=seed)
    logger.info("Laying out %d of %d samples with UMAP", indices.size, dataset.n_samples)
    # sorted positions: read from a feature file block by block on an out-of-core scan
    features = as_rows(result.embedding.features)
    coords = projection.umap_coordinates(features.take(indices), seed=seed)
    map_png = plots.embedding_map_png(
        coords, dataset.labels[indices], flagged[indices], dataset.class_names
    )
    map_among = projection.flags_among_other_labels(
        coords, dataset.labels[indices], flagged[indices]
    )
    confusion_examples = []
    if result.predicted is not None and flagged.any():
        for cell in cell_examples(
            dataset.labels, result.predicted, flagged, score, len(dataset.class_names)
        ):
            confusion_examples.append(
                {
                    "given": dataset.class_names[cell["given"]],
                    "predicted": dataset.class_names[cell["predicted"]],
                    "count": cell["count"],
                    "samples": [_example(dataset, i, score) for i in cell["indices"]],
                }
            )

    differences = group_evidence.target_group_differences(result)
    marked = sorted(
        {t["term"] for gd in differences if gd.terms for t in gd.terms["terms"]}
    )  # every shown text gets them marked: an unflagged text holding a trigger stands out
    # Flagged samples first (a reviewer checks those), then the highest-scoring others.
    order = ranked_indices(score, flagged, thumbnails_count)
    if order.size < thumbnails_count:
        others = ranked_indices(score, ~flagged, thumbnails_count - order.size)
        order = np.concatenate([order, others])
    def fired_at(i: int) -> list[str]:
        return [name for name, hits in result.fired.items() if hits[i]]

    top = []
    for i in order:
        i = int(i)
        entry: dict[str, Any] = {
            "index": i,
            "id": dataset.ids[i],
            "label": dataset.class_names[int(dataset.labels[i])],
            "score": float(score[i]),
            "flagged": bool(flagged[i]),
            # the reason without its fired detectors, shared by a group: shown once a group
            "reason": flag_browser.strip_fired(result.reasons[i], fired_at(i))
            if result.reasons
            else "",
            "fired": fired_at(i),
        }
        if dataset.kind == "image":
            entry["thumbnail"] = _data_uri(thumbnails.image_thumbnail_png(dataset.x[i]))
        elif dataset.kind == "text":
            entry["text"] = text_snippet(dataset.x[i])
            entry["segments"] = text_evidence.marked_segments(dataset.x[i], marked, _EXCERPT_CHARS)
        top.append(entry)

    flags = flag_browser.build_flag_browser(
        result,
        marked_terms=marked,
        group_differences=differences,
        max_thumbnails=flag_thumbnails,
        key=_review_key(result),
    )

    evidence_images = {}
    if dataset.kind == "image":
        value_range = (0.0, 255.0) if np.dtype(dataset.x.dtype) == np.uint8 else None
        for gd in differences:
            group_png, core_png = group_evidence.mean_images_png(
                gd.group_mean, gd.core_mean, value_range
            )
            evidence_images[gd.code] = {
                "group": _data_uri(group_png),
                "core": _data_uri(core_png),
                "difference": _data_uri(group_evidence.difference_png(gd.difference)),
            }
    return ReportFigures(
        histogram_png=histogram,
        map_png=map_png,
        map_indices=indices,
        top=top,
        group_differences=differences,
        evidence_images=evidence_images,
        flags=flags,
        map_among=map_among,
        confusion_examples=confusion_examples,
    )


def render_html(result: ScanResult, report: dict[str, Any], figures: ReportFigures) -> str:
    """Render the page.

    Parameters
    ----------
    result : ScanResult
        The scan (for what the JSON does not carry).
    report : dict
        :func:`~poisonguard.report.json_report.build_report_json` of the same scan.
    figures : ReportFigures
        From :func:`prepare_figures`.

    Returns
    -------
    str
        The HTML document.
    """
    flagged = np.asarray(result.flagged, dtype=bool).reshape(-1)
    model = report["model"]
    skipped = report["dataset"]["skipped"]
    context = {
        "report": report,
        "dataset": report["dataset"],
        "findings": report["findings"],
        "model_details": [
            (key, _describe(value))
            for key, value in model.items()
            if key not in _MODEL_SUMMARY_KEYS
        ],
        "model": model,
        "settings_text": json.dumps(report["settings"], indent=2, ensure_ascii=False),
        "skipped_listed": skipped[:_MAX_LISTED_SKIPPED],
        "skipped_more": max(0, len(skipped) - _MAX_LISTED_SKIPPED),
        "histogram_src": _data_uri(figures.histogram_png),
        "map_src": _data_uri(figures.map_png),
        "map_shown": int(figures.map_indices.size),
        "map_flagged": int(flagged[figures.map_indices].sum()),
        "flagged_total": int(flagged.sum()),
        "map_among": _named_pairs(figures.map_among, result.dataset.class_names),
        "confusion_examples": figures.confusion_examples,
        "top": figures.top,
        "flags": figures.flags,
        # our own file, not data: inserted as it is, and allowed by its hash
        "flag_script": markupsafe.Markup(flag_browser.browser_script()),
        "csp_script": flag_browser.script_hash(flag_browser.browser_script())
        if figures.flags is not None and figures.flags.n_flagged
        else "",
        "is_image": result.dataset.kind == "image",
        "is_text": result.dataset.kind == "text",
        "evidence_images": figures.evidence_images,
        "confusion": (
            heatmap_rows(
                result.dataset.labels, result.predicted, flagged, result.dataset.class_names
            )
            if result.predicted is not None and flagged.any()
            else None
        ),
    }
    return template_environment().get_template(_TEMPLATE).render(**context)


@functools.lru_cache(maxsize=1)
def template_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _format_number
    env.filters["pct"] = _format_percent
    env.filters["seconds"] = _format_seconds
    env.filters["pvalue"] = _format_log10_p
    # |tojson (the flag browser's data): compact, strict JSON; Jinja escapes < > & ' in it
    env.policies["json.dumps_kwargs"] = {
        "sort_keys": False,
        "separators": (",", ":"),
        "ensure_ascii": False,
        "allow_nan": False,
    }
    return env


def text_snippet(text: str, limit: int = _SNIPPET_CHARS) -> str:
    """The start of ``text`` for the page: runs of white space (line breaks too) made one space,
    at most ``limit`` characters, an ellipsis when cut. Plain text: the template escapes it."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _example(dataset, i: int, score: np.ndarray) -> dict[str, Any]:
    """One example of a label-confusion cell: a thumbnail (images) or a snippet (texts)."""
    sample: dict[str, Any] = {"index": i, "id": dataset.ids[i], "score": float(score[i])}
    if dataset.kind == "image":
        sample["thumbnail"] = _data_uri(thumbnails.image_thumbnail_png(dataset.x[i]))
    elif dataset.kind == "text":
        sample["text"] = text_snippet(dataset.x[i], _EXAMPLE_CHARS)
    return sample


def _named_pairs(among: dict[str, Any] | None, class_names: list[str]) -> dict[str, Any] | None:
    """:func:`~poisonguard.report.projection.flags_among_other_labels` with class names."""
    if among is None:
        return None
    pairs = [
        {**pair, "given": class_names[pair["given"]], "among": class_names[pair["among"]]}
        for pair in among["pairs"]
    ]
    return {**among, "pairs": pairs}


def _review_key(result: ScanResult) -> str:
    """Names this scan's flags in the browser's storage of a reviewer's decisions: the
    embedding's fingerprint and a digest of which samples were flagged."""
    flagged = np.flatnonzero(np.asarray(result.flagged, dtype=bool).reshape(-1))
    digest = hashlib.sha256(flagged.astype(np.int64).tobytes()).hexdigest()[:16]
    return f"{result.embedding.fingerprint[:16]}-{digest}"


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _describe(value: Any) -> str:
    """A model description value as one line of text (nested values as compact JSON)."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    return "—" if value is None else str(value)


def _format_number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if not np.isfinite(value):
        return "—"
    return f"{float(value):.{digits}g}"


def _format_percent(value: Any) -> str:
    if value is None or not np.isfinite(value):
        return "—"
    return f"{100.0 * float(value):.2f}%"


def _format_log10_p(value: Any) -> str:
    """A p-value given as its base-10 logarithm: ``0.0032``, ``1.2e-08``, or ``< 1e-300`` far
    below the smallest float."""
    if value is None or not np.isfinite(value):
        return "—"
    if value < -300:
        return f"< 1e{int(np.floor(value)) + 1}"
    p = 10.0 ** float(value)
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


def _format_seconds(value: Any) -> str:
    if value is None:
        return "—"
    return f"{float(value):.2f} s" if value < 100 else f"{float(value) / 60:.1f} min"
