"""The flag browser of ``report.html``: every flagged sample, to filter, sort, page and decide.

:func:`build_flag_browser` turns a scan into the data the page's script reads (one JSON block,
columns of equal length, one entry per flagged sample, highest score first):

* ``index``, ``id``, ``label`` (class code), ``score``;
* ``finding``: a code into ``findings``, the rule that flagged the sample and the test that
  carried it (``backdoor`` with the class's evidence, ``separated-group``,
  ``mixed-origin-group`` or ``trigger-words``; ``label-noise`` with ``label-noise-spread`` or
  ``label-noise-pair``), as
  ``report.json``'s ``top_flagged`` names them;
* ``fired``: codes into ``detectors``, the detectors that fired on the sample;
* ``group``: a code into ``groups``, the sample's reason (``ScanResult.reasons``) without its
  list of fired detectors, which the page shows once, as the header of the group's cards;
* ``predicted`` (when the scan has predictions): the class code a model predicts
  (``ScanResult.predicted``), shown where it is not the given label;
* per kind of data: for images, thumbnails on sprite sheets (one PNG of
  :data:`SPRITE_COLUMNS` x :data:`SPRITE_ROWS` cells, a ``data:`` URI drawn on a canvas), for
  the highest-scoring flags whose sheets fit in :data:`MAX_SPRITE_BYTES`; for texts an excerpt
  (``text``) and the spans of it to mark (``marks``, pairs of offsets); for tables the values of
  at most :data:`TABLE_COLUMNS` columns (those that set a target's flagged group apart first).

The script (``templates/_flag_browser.js``, :func:`browser_script`) runs under the page's
Content-Security-Policy, which allows it by its sha256 hash (:func:`script_hash`) and nothing
else: it builds every element with ``textContent``, never from HTML, and downloads the
reviewer's decisions as a CSV file that :mod:`poisonguard.reviewer_decisions` reads
(``poisonguard sanitize --decisions``), each cell made spreadsheet-safe by the rule of
:mod:`poisonguard.csv_safety`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from poisonguard.findings import label_noise_evidence
from poisonguard.report import text_evidence
from poisonguard.report.group_evidence import GroupDifference
from poisonguard.report.json_report import ranked_indices
from poisonguard.results import ScanResult
from poisonguard.rows import as_rows

__all__ = [
    "FlagBrowser",
    "MAX_SPRITE_BYTES",
    "MAX_THUMBNAILS",
    "SPRITE_COLUMNS",
    "SPRITE_ROWS",
    "SPRITE_MAX_SIDE",
    "TABLE_COLUMNS",
    "TEXT_EXCERPT_CHARS",
    "browser_script",
    "build_flag_browser",
    "script_hash",
    "strip_fired",
]

MAX_SPRITE_BYTES = 16 << 20
"""The thumbnails' sprite sheets stop before they pass 16 MiB of PNG (21 MiB in the page, as
base64): the highest-scoring flags get a thumbnail, 39,936 of 60,000 flagged Fashion-MNIST
images (28 x 28), every one of 6,000. Measured (docs/benchmarks.md, "The report page"): with
all 60,000 thumbnails the page was 36 MB and usable after 0.8 s, with the budget 25 MB and
0.5 s; the budget matters more for larger images (a 64 x 64 colour thumbnail is some ten times
a Fashion-MNIST one), whose page it keeps to about the same size. The first sheet is always
kept."""

MAX_THUMBNAILS = 100_000
"""Most flags given a thumbnail, whatever their size."""

SPRITE_COLUMNS = 32
SPRITE_ROWS = 32
"""Cells of one sprite sheet (1,024 thumbnails a PNG)."""

SPRITE_MAX_SIDE = 64
"""No side of a sprite cell is longer: larger images are reduced (area averaging); smaller
ones keep their pixels and the page enlarges them."""

TEXT_EXCERPT_CHARS = 240
"""Characters of a text shown on its card (around the first marked term, if it lies further)."""

TABLE_COLUMNS = 8
"""Columns of a table's row shown."""

SCRIPT = Path(__file__).parent / "templates" / "_flag_browser.js"
FIRED_PREFIX = "; detectors that fired: "
"""How :func:`poisonguard.findings.sample_reasons` ends a reason that lists fired detectors."""


@dataclass(frozen=True)
class FlagBrowser:
    """What the page's flag browser shows.

    Attributes
    ----------
    payload : dict
        The JSON-able data the script reads (see the module docstring).
    n_flagged : int
        Flagged samples, every one in ``payload``.
    n_thumbnails : int
        How many of them (the first, by score) have a thumbnail (0 unless images).
    classes, findings, detectors : list of (str, int)
        Filter choices and how many flags each holds (``findings``: readable names).
    """

    payload: dict[str, Any]
    n_flagged: int
    n_thumbnails: int
    classes: list[tuple[str, int]]
    findings: list[tuple[str, int]]
    detectors: list[tuple[str, int]]


def build_flag_browser(
    result: ScanResult,
    *,
    marked_terms: list[str] | tuple[str, ...] = (),
    group_differences: list[GroupDifference] | tuple[GroupDifference, ...] = (),
    max_thumbnails: int = MAX_THUMBNAILS,
    max_sprite_bytes: int | None = MAX_SPRITE_BYTES,
    key: str = "",
) -> FlagBrowser:
    """The flag browser's data for ``result``.

    Parameters
    ----------
    result : ScanResult
        The scan.
    marked_terms : sequence of str
        For texts, the terms marked in every excerpt (those over-represented in a flagged group,
        :func:`~poisonguard.report.text_evidence.marked_segments`).
    group_differences : sequence of GroupDifference
        For tables, the columns that set each target's group apart are shown first.
    max_thumbnails : int
        Most flags given a thumbnail (images), highest score first.
    max_sprite_bytes : int or None
        The sprite sheets stop before they pass this many bytes (None: no limit).
    key : str
        Names this scan in the browser's local storage, where the page keeps the reviewer's
        decisions until they are exported.
    """
    if max_thumbnails < 0:
        raise ValueError(f"max_thumbnails must be >= 0, got {max_thumbnails}")
    dataset = result.dataset
    score = np.asarray(result.score, dtype=np.float64).reshape(-1)
    flagged = np.asarray(result.flagged, dtype=bool).reshape(-1)
    order = ranked_indices(score, flagged)
    labels = np.asarray(dataset.labels)[order]
    names = list(dataset.class_names)

    evidence = _evidence(result, order)
    finding_names = sorted(set(evidence))
    finding_code = {name: code for code, name in enumerate(finding_names)}

    detectors = list(result.fired)
    fired_masks = [np.asarray(result.fired[d], dtype=bool).reshape(-1)[order] for d in detectors]
    fired = [[d for d, mask in enumerate(fired_masks) if mask[k]] for k in range(order.size)]

    groups: list[str] = []
    group_code: dict[str, int] = {}
    group = []
    for k, i in enumerate(order):
        reason = result.reasons[int(i)] if result.reasons else ""
        text = strip_fired(reason, [detectors[d] for d in fired[k]])
        if text not in group_code:
            group_code[text] = len(groups)
            groups.append(text)
        group.append(group_code[text])

    rows: dict[str, Any] = {
        "index": [int(i) for i in order],
        "id": [str(dataset.ids[int(i)]) for i in order],
        "label": [int(c) for c in labels],
        "score": [_rounded(s) for s in score[order]],
        "finding": [finding_code[e] for e in evidence],
        "fired": fired,
        "group": group,
    }
    if result.predicted is not None:  # the class a model predicts: what a flip may have hidden
        predicted = np.asarray(result.predicted).reshape(-1)[order]
        rows["predicted"] = [int(c) for c in predicted]
    payload: dict[str, Any] = {
        "kind": dataset.kind,
        "key": key,
        "classes": names,
        "findings": [_finding_text(name) for name in finding_names],
        "detectors": detectors,
        "groups": groups,
        "rows": rows,
    }
    n_thumbnails = 0
    if dataset.kind == "image":
        sheets, cell, n_thumbnails = sprite_sheets(
            dataset.x, order[:max_thumbnails], max_bytes=max_sprite_bytes
        )
        payload["sprites"] = {
            "sheets": [_data_uri(png) for png in sheets],
            "cell": list(cell),
            "columns": SPRITE_COLUMNS,
            "per_sheet": SPRITE_COLUMNS * SPRITE_ROWS,
            "count": n_thumbnails,
        }
    elif dataset.kind == "text":
        texts, marks = [], []
        for i in order:
            segments = text_evidence.marked_segments(
                dataset.x[int(i)], list(marked_terms), TEXT_EXCERPT_CHARS
            )
            text, spans, at = [], [], 0
            for piece, marked in segments:
                if marked:
                    spans += [at, at + len(piece)]
                text.append(piece)
                at += len(piece)
            texts.append("".join(text))
            marks.append(spans)
        rows["text"] = texts
        rows["marks"] = marks
    else:
        columns = table_columns(dataset.x.shape[1], group_differences)
        feature_names = dataset.feature_names or [f"x{j}" for j in range(dataset.x.shape[1])]
        payload["columns"] = [str(feature_names[j]) for j in columns]
        payload["columns_total"] = int(dataset.x.shape[1])
        positions = np.sort(order)  # read in file order, then put back in the score order
        values = as_rows(dataset.x).take(positions)[:, columns][np.searchsorted(positions, order)]
        rows["values"] = [[_rounded(v) for v in row] for row in values]

    counts = np.bincount(labels, minlength=len(names)) if order.size else np.zeros(len(names))
    finding_counts = np.bincount(rows["finding"], minlength=len(finding_names))
    return FlagBrowser(
        payload=payload,
        n_flagged=int(order.size),
        n_thumbnails=n_thumbnails,
        classes=[(name, int(counts[c])) for c, name in enumerate(names)],
        findings=[
            (_finding_text(name), int(finding_counts[c])) for c, name in enumerate(finding_names)
        ],
        detectors=[(d, int(m.sum())) for d, m in zip(detectors, fired_masks, strict=True)],
    )


def strip_fired(reason: str, fired: list[str]) -> str:
    """``reason`` without the list of detectors that fired on the sample, which
    :func:`~poisonguard.findings.sample_reasons` appends: the rest is shared by the sample's
    group. A reason that does not end with that list (in any order) is returned whole."""
    head, found, tail = reason.rpartition(FIRED_PREFIX)
    if fired and found and sorted(tail.split(", ")) == sorted(fired):
        return head
    return reason


def sprite_sheets(
    images,
    positions: np.ndarray,
    *,
    max_side: int = SPRITE_MAX_SIDE,
    max_bytes: int | None = None,
) -> tuple[list[bytes], tuple[int, int], int]:
    """PNG sprite sheets of the images at ``positions`` (in that order), the cell size, and how
    many of the images they hold: all, or the first ones whose sheets fit in ``max_bytes``
    (whole sheets; the first is always kept).

    Cell ``k`` holds the ``k``-th image, on sheet ``k // (SPRITE_COLUMNS * SPRITE_ROWS)``, row
    and column ``divmod(k % (SPRITE_COLUMNS * SPRITE_ROWS), SPRITE_COLUMNS)``. Every cell has the
    size ``(width, height)``: the images' own, or reduced to ``max_side`` on the long side.
    ``uint8`` values are drawn as they are; other dtypes are min-max scaled per image, as the
    thumbnails of :mod:`~poisonguard.report.thumbnails` are.
    """
    rows = as_rows(images)
    positions = np.asarray(positions, dtype=np.int64)
    shape = tuple(images.shape[1:])
    channels, height, width = (1, *shape) if len(shape) == 2 else shape
    factor = max(height, width) / max_side
    cell = (
        (width, height)
        if factor <= 1
        else (max(1, round(width / factor)), max(1, round(height / factor)))
    )
    mode = "L" if channels == 1 else "RGB"
    per_sheet = SPRITE_COLUMNS * SPRITE_ROWS
    sheets: list[bytes] = []
    held = total = 0
    for start in range(0, positions.size, per_sheet):
        chunk = positions[start : start + per_sheet]
        sorted_at = np.argsort(chunk, kind="stable")
        block = np.empty((chunk.size, channels, height, width), dtype=np.uint8)
        read = rows.take(chunk[sorted_at]).reshape(chunk.size, channels, height, width)
        block[sorted_at] = to_uint8(read)
        n_rows = math.ceil(chunk.size / SPRITE_COLUMNS)
        white = 255 if mode == "L" else (255, 255, 255)
        sheet = Image.new(mode, (SPRITE_COLUMNS * cell[0], n_rows * cell[1]), color=white)
        for k, pixels in enumerate(block):
            picture = Image.fromarray(
                pixels[0] if channels == 1 else np.ascontiguousarray(pixels.transpose(1, 2, 0))
            )
            if picture.size != cell:
                picture = picture.resize(cell, resample=Image.Resampling.BOX)
            row, column = divmod(k, SPRITE_COLUMNS)
            sheet.paste(picture, (column * cell[0], row * cell[1]))
        buffer = io.BytesIO()
        sheet.save(buffer, format="PNG")
        png = buffer.getvalue()
        if sheets and max_bytes is not None and total + len(png) > max_bytes:
            break
        sheets.append(png)
        total += len(png)
        held += chunk.size
    return sheets, cell, held


def to_uint8(images: np.ndarray) -> np.ndarray:
    """``images`` (N, ...) as uint8: kept when uint8, else min-max scaled per image (NaN and
    infinities as the image's minimum; a constant image black)."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    values = np.asarray(images, dtype=np.float64).reshape(images.shape[0], -1)
    finite = np.isfinite(values)
    low = np.where(finite, values, np.inf).min(axis=1, keepdims=True)
    high = np.where(finite, values, -np.inf).max(axis=1, keepdims=True)
    low = np.where(np.isfinite(low), low, 0.0)
    span = np.where(high > low, high - low, np.inf)
    values = np.where(finite, values, low)
    scaled = np.clip(np.rint((values - low) * (255.0 / span)), 0, 255)
    return scaled.astype(np.uint8).reshape(images.shape)


def table_columns(
    n_columns: int, group_differences: list[GroupDifference] | tuple[GroupDifference, ...] = ()
) -> list[int]:
    """The columns a table's flagged rows show: first (at most half of them) those whose mean
    differs most between a backdoor target's flagged group and its core (in the core's standard
    deviations), then the first columns, :data:`TABLE_COLUMNS` in all."""
    chosen: list[int] = []
    for gd in group_differences:
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.abs(np.asarray(gd.difference, dtype=np.float64)).reshape(-1) / np.asarray(
                gd.core_std, dtype=np.float64
            ).reshape(-1)
        z = np.nan_to_num(z, nan=-1.0, posinf=np.finfo(np.float64).max)
        for j in np.argsort(-z, kind="stable")[:TABLE_COLUMNS]:
            if z[j] > 0 and int(j) not in chosen:
                chosen.append(int(j))
    chosen = chosen[: TABLE_COLUMNS // 2]
    for j in range(n_columns):
        if len(chosen) >= min(TABLE_COLUMNS, n_columns):
            break
        if j not in chosen:
            chosen.append(j)
    return chosen


@functools.lru_cache(maxsize=1)
def browser_script() -> str:
    """The page's script, read from ``templates/_flag_browser.js``."""
    text = SCRIPT.read_text(encoding="utf-8")
    lowered = text.lower()
    if "</script" in lowered or "<!--" in lowered:  # would end or bend the script element
        raise ValueError(f"{SCRIPT} must not contain '</script' or '<!--'")
    return text


def script_hash(text: str) -> str:
    """The Content-Security-Policy source allowing an inline script of exactly ``text``:
    ``'sha256-<base64 digest>'`` of its UTF-8 bytes (CSP level 2)."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def _evidence(result: ScanResult, order: np.ndarray) -> list[str]:
    """Per flagged sample (in ``order``), its rule and test, as report.json names them."""
    finding = result.finding
    labels = result.dataset.labels
    out = []
    for i in order:
        kind = "" if finding is None else str(finding[int(i)])
        item = result.class_findings[int(labels[int(i)])] if result.class_findings else None
        if kind == "backdoor":
            test = item.evidence if item is not None and item.evidence else ""
            out.append(f"backdoor/{test}" if test else "backdoor")
        elif kind == "label-noise":
            out.append(f"label-noise/{label_noise_evidence(item)}")
        else:
            out.append(kind or "flagged")
    return out


def _finding_text(name: str) -> str:
    kind, _, test = name.partition("/")
    kind = kind.replace("-", " ")
    return f"{kind} ({test} test)" if test else kind


def _rounded(value: Any) -> float | None:
    value = float(value)
    return float(f"{value:.6g}") if math.isfinite(value) else None


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
