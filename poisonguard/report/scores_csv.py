"""``scores.csv``: one row per sample with the fused score, the decision and every detector's score.

Columns: ``index,id,label,score,flagged,<detector>...,finding,predicted_label,
predicted_probability`` where ``index``
is the sample's 0-based position in the dataset, ``label`` its class name, ``score`` the calibrated
suspicion the flagging rule thresholds (higher = more suspicious), ``flagged`` 0 or 1, then one
column per detector with its raw score (higher = more suspicious; not comparable across
detectors), in the order of ``ScanResult.detector_scores``; ``finding`` is ``backdoor``,
``label-noise`` or empty (not flagged), ``predicted_label`` the class a model predicts for the
sample and ``predicted_probability`` its probability (see :class:`~poisonguard.results.ScanResult`),
which ``poisonguard sanitize`` reads.
"""

from __future__ import annotations

import io
from typing import TextIO

import numpy as np

from poisonguard import csv_safety
from poisonguard.results import ScanResult
from poisonguard.rows import BLOCK_ROWS, as_rows

__all__ = [
    "SCORES_HEADER",
    "TRAILING_COLUMNS",
    "scores_csv_header",
    "scores_csv_text",
    "write_scores_csv",
]

SCORES_HEADER: tuple[str, ...] = ("index", "id", "label", "score", "flagged")
"""The fixed leading columns; one column per detector follows, then :data:`TRAILING_COLUMNS`."""

TRAILING_COLUMNS: tuple[str, ...] = ("finding", "predicted_label", "predicted_probability")

_FLOAT_FORMAT = ".6g"


def scores_csv_header(result: ScanResult) -> list[str]:
    """The header row: the fixed columns, then the detector names in ``detector_scores`` order."""
    return [*SCORES_HEADER, *result.detector_scores, *TRAILING_COLUMNS]


def scores_csv_text(result: ScanResult) -> str:
    """``scores.csv`` of a scan as text (see :func:`write_scores_csv`)."""
    buffer = io.StringIO()
    write_scores_csv(result, buffer)
    return buffer.getvalue()


def write_scores_csv(result: ScanResult, handle: TextIO) -> None:
    """Write ``scores.csv`` for a scan to the text file ``handle``, row by row (a million rows
    never sit in memory as one string).

    Parameters
    ----------
    result : ScanResult
        The scan to report.
    handle : text file
        Opened with ``newline=""``.

    Notes
    -----
    CSV text with ``\\n`` line endings. Ids and class names are untrusted text: they are quoted
    by the :mod:`csv` module as needed (commas, quotes, newlines) and made spreadsheet-safe with
    :mod:`poisonguard.csv_safety` (a cell that would start a formula, or starts with ``'``, gets a
    leading ``'``), so every cell reads back unchanged through :func:`csv_safety.reader`. Floats
    are written with 6 significant digits; a non-finite score is written as ``nan`` or ``inf``.
    """
    dataset = result.dataset
    n = dataset.n_samples
    score = np.asarray(result.score, dtype=np.float64).reshape(-1)
    flagged = np.asarray(result.flagged, dtype=bool).reshape(-1)
    detectors = {name: as_rows(values) for name, values in result.detector_scores.items()}
    for what, values in [("score", score), ("flagged", flagged), *detectors.items()]:
        if values.shape[0] != n:
            raise ValueError(f"{what} has {values.shape[0]} values for {n} samples")

    writer = csv_safety.writer(handle, lineterminator="\n")
    writer.writerow(scores_csv_header(result))
    names = dataset.class_names
    finding = result.finding if result.finding is not None else np.full(n, "", dtype=object)
    predicted = result.predicted
    confidence = result.predicted_probability
    # a block of rows at a time: detector scores of an out-of-core scan are read from files
    for start in range(0, n, BLOCK_ROWS):
        stop = min(start + BLOCK_ROWS, n)
        columns = [
            np.asarray(col[start:stop], dtype=np.float64).reshape(-1) for col in detectors.values()
        ]
        for i in range(start, stop):
            writer.writerow(
                [
                    i,
                    dataset.ids[i],
                    names[int(dataset.labels[i])],
                    format(score[i], _FLOAT_FORMAT),
                    int(flagged[i]),
                    *(format(col[i - start], _FLOAT_FORMAT) for col in columns),
                    finding[i],
                    "" if predicted is None else names[int(predicted[i])],
                    "" if confidence is None else format(confidence[i], _FLOAT_FORMAT),
                ]
            )
