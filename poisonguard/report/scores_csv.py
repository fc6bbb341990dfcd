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
    # the untrusted text (ids, class names) escaped once per value; the numbers are written
    # as they are (a float's or an integer's text never starts a formula)
    names = [csv_safety.escape_cell(name) for name in dataset.class_names]
    finding = result.finding if result.finding is not None else np.full(n, "", dtype=object)
    predicted = result.predicted
    confidence = result.predicted_probability
    # a block of rows at a time: detector scores of an out-of-core scan are read from files;
    # the numbers formatted a column at a time from Python floats (a NumPy scalar's format
    # costs about three times as much)
    for start in range(0, n, BLOCK_ROWS):
        stop = min(start + BLOCK_ROWS, n)
        ids = [csv_safety.escape_cell(dataset.ids[i]) for i in range(start, stop)]
        labels = np.asarray(dataset.labels[start:stop], dtype=np.int64).tolist()
        kinds = [csv_safety.escape_cell(finding[i]) for i in range(start, stop)]
        guesses = (
            None if predicted is None else np.asarray(predicted[start:stop], np.int64).tolist()
        )
        scores = _formatted(score[start:stop])
        columns = [_formatted(col[start:stop]) for col in detectors.values()]
        confidences = None if confidence is None else _formatted(confidence[start:stop])
        flags = flagged[start:stop].astype(np.int64).tolist()
        for offset in range(stop - start):
            writer.write_escaped(
                [
                    str(start + offset),
                    ids[offset],
                    names[labels[offset]],
                    scores[offset],
                    str(flags[offset]),
                    *(col[offset] for col in columns),
                    kinds[offset],
                    "" if guesses is None else names[guesses[offset]],
                    "" if confidences is None else confidences[offset],
                ]
            )


def _formatted(values) -> list[str]:
    """``values`` (any real array) as float64, each with :data:`_FLOAT_FORMAT`."""
    return [
        format(value, _FLOAT_FORMAT)
        for value in np.asarray(values, dtype=np.float64).reshape(-1).tolist()
    ]
