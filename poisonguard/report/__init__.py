"""The scan report: ``scores.csv``, ``report.json`` and a self-contained ``report.html``.

:func:`write_report` writes all three into one directory, atomically: the directory appears whole
or not at all, and an earlier report in the same place is replaced only if it holds nothing else.

Where each part comes from:

* ``scores.csv`` -- :mod:`poisonguard.report.scores_csv` (one row per sample);
* ``report.json`` -- :mod:`poisonguard.report.json_report` (findings, settings, timings);
* ``report.html`` -- :mod:`poisonguard.report.html_report` with the template
  ``templates/report.html``, its figures from :mod:`~poisonguard.report.plots`, the map layout from
  :mod:`~poisonguard.report.projection`, image thumbnails from
  :mod:`~poisonguard.report.thumbnails` and, per backdoor target class, what sets the flagged
  group apart from the rest of the class from :mod:`~poisonguard.report.group_evidence` (in
  report.json too), and which given label became which from
  :mod:`~poisonguard.report.label_confusion` (in report.json too).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from poisonguard.atomic import atomic_directory
from poisonguard.report import html_report
from poisonguard.report.json_report import build_report_json, report_json_text
from poisonguard.report.scores_csv import scores_csv_text, write_scores_csv
from poisonguard.results import ScanResult

__all__ = [
    "REPORT_FILES",
    "ReportFiles",
    "write_report",
    "build_report_json",
    "report_json_text",
    "scores_csv_text",
]

logger = logging.getLogger(__name__)

SCORES_CSV = "scores.csv"
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
REPORT_FILES: tuple[str, ...] = (SCORES_CSV, REPORT_JSON, REPORT_HTML)
"""The files a report directory holds; only these may be replaced by a later run."""


@dataclass(frozen=True)
class ReportFiles:
    """Paths of the three files :func:`write_report` wrote."""

    csv: Path
    json: Path
    html: Path


def write_report(
    result: ScanResult,
    out_dir: str | Path,
    *,
    seed: int = 0,
    map_points: int = 3000,
    thumbnails: int = 48,
    evaluation: dict | None = None,
) -> ReportFiles:
    """Write ``scores.csv``, ``report.json`` and ``report.html`` into ``out_dir``.

    Parameters
    ----------
    result : ScanResult
        The scan to report. ``result.timings["report"]`` is set to the seconds this function
        spent (measured before ``report.json`` is written, so the JSON and the page include it).
    out_dir : str or Path
        Report directory. It is built under a temporary name beside it and moved into place
        when complete. An existing ``out_dir`` is replaced only if it holds nothing but
        :data:`REPORT_FILES`.
    seed : int
        Seed of the map's random subsample and of UMAP; the same seed gives the same map.
    map_points : int
        Most flagged samples drawn on the UMAP map; unflagged samples fill the rest of these
        places, and at least a third of them (see
        :func:`~poisonguard.report.projection.map_subsample`).
    thumbnails : int
        How many of the most suspicious samples the page shows (image thumbnails, or table rows
        for tabular data).
    evaluation : dict or None
        ``poisonguard evaluate``'s measurements (:meth:`poisonguard.evaluate.Evaluation.as_dict`),
        added to report.json under ``evaluation`` and shown as a section of the page.

    Returns
    -------
    ReportFiles
        The paths of the three files.

    Raises
    ------
    OutputError
        If ``out_dir`` exists and holds other files, or is not a directory. Nothing is written.
    ValueError
        If ``map_points`` or ``thumbnails`` is negative.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    if map_points < 0:
        raise ValueError(f"map_points must be >= 0, got {map_points}")
    if thumbnails < 0:
        raise ValueError(f"thumbnails must be >= 0, got {thumbnails}")

    with atomic_directory(out_dir, replaceable=REPORT_FILES) as tmp:
        with (tmp / SCORES_CSV).open("w", encoding="utf-8", newline="") as handle:
            write_scores_csv(result, handle)
        figures = html_report.prepare_figures(
            result, seed=seed, map_points=map_points, thumbnails_count=thumbnails
        )
        result.timings["report"] = time.perf_counter() - start
        report = build_report_json(result, figures.group_differences)
        if evaluation is not None:
            report["evaluation"] = evaluation
        (tmp / REPORT_JSON).write_bytes(report_json_text(report).encode("utf-8"))
        html = html_report.render_html(result, report, figures)
        (tmp / REPORT_HTML).write_bytes(html.encode("utf-8"))

    logger.info("Wrote report to %s", out_dir)
    return ReportFiles(
        csv=out_dir / SCORES_CSV,
        json=out_dir / REPORT_JSON,
        html=out_dir / REPORT_HTML,
    )
