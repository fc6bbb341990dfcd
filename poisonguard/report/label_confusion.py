"""Which given label became which: the given × predicted label counts of the flagged samples.

Label noise has a shape. A targeted flip (every "cat" relabelled "dog") puts the flagged samples
in one cell of the given-label × predicted-label matrix: given "dog", predicted "cat" by a model
that never saw them. Random noise spreads them over many cells. The same matrix of the unflagged
samples is the data's own confusion, for contrast: two classes the model confuses anyway explain
some flagged samples in their cell.

The predicted label is ``scores.csv``'s ``predicted_label`` (:attr:`ScanResult.predicted`): out
of sample (cross-validated heads) when the ``confident-learning`` detector ran, otherwise the
embedding model's own prediction, which has seen the sample and its label; ``predicted_by`` says
which. Samples without a prediction (code ``-1``) are counted apart.

:func:`label_confusion` builds the ``findings.label_confusion`` entry of ``report.json``, with
:func:`flip_pattern`'s reading of the flagged matrix in words' terms (one pair, one given label,
one predicted label, or spread); :func:`heatmap_rows` the rows of the page's table and
:func:`cell_examples` the samples the page shows for the largest off-diagonal cells.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "DOMINANT_PAIR_SHARE",
    "DOMINANT_LABEL_SHARE",
    "EXAMPLE_CELLS",
    "EXAMPLES_PER_CELL",
    "HEAT_LEVELS",
    "MIN_PATTERN_SAMPLES",
    "MAX_MATRIX_CLASSES",
    "MAX_SHOWN_CLASSES",
    "TOP_CELLS",
    "cell_examples",
    "flip_pattern",
    "heatmap_rows",
    "label_confusion",
    "label_matrix",
]

MAX_MATRIX_CLASSES = 100
"""Most classes whose full matrices report.json holds (10,000 cells each); above, only the
largest off-diagonal cells (:data:`TOP_CELLS`) are listed."""

MAX_SHOWN_CLASSES = 20
"""Most classes the page's table shows: those with the most flagged samples, given or predicted."""

TOP_CELLS = 10
"""How many of the largest off-diagonal cells of the flagged matrix are listed."""

HEAT_LEVELS = 5
"""Shades of the page's cells: level 1 (faint) to 5 (the largest off-diagonal count)."""

EXAMPLE_CELLS = 6
"""For how many of the largest off-diagonal cells of the flagged matrix the page shows samples."""

EXAMPLES_PER_CELL = 4
"""How many samples the page shows per such cell (the most suspicious first)."""

DOMINANT_PAIR_SHARE = 0.5
"""A flip pattern is ``one-pair`` when one off-diagonal cell holds at least this share of the
flagged off-diagonal samples (0.8 with two classes, where random noise fills only two cells)."""

DOMINANT_LABEL_SHARE = 0.7
"""Otherwise ``one-given-label`` (``one-predicted-label``) when one row (column) holds at least
this share."""

MIN_PATTERN_SAMPLES = 10
"""Fewer flagged off-diagonal samples than this are too few to read a pattern from."""


def label_matrix(
    given: np.ndarray, predicted: np.ndarray, n_classes: int, mask: np.ndarray | None = None
) -> np.ndarray:
    """Counts ``m[g, p]`` of the samples (where ``mask``) given label ``g`` and predicted ``p``.

    Samples whose prediction is negative (none) are left out. Codes must lie below ``n_classes``.
    """
    given = np.asarray(given, dtype=np.int64).reshape(-1)
    predicted = np.asarray(predicted, dtype=np.int64).reshape(-1)
    if given.shape != predicted.shape:
        raise ValueError(f"{given.size} given labels but {predicted.size} predictions")
    keep = predicted >= 0
    if mask is not None:
        keep &= np.asarray(mask, dtype=bool).reshape(-1)
    g, p = given[keep], predicted[keep]
    if g.size and (g.max() >= n_classes or p.max() >= n_classes or g.min() < 0):
        raise ValueError(f"a class code outside 0..{n_classes - 1}")
    return np.bincount(g * n_classes + p, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes
    )


def label_confusion(
    labels: np.ndarray,
    predicted: np.ndarray | None,
    flagged: np.ndarray,
    class_names: Sequence[str],
    *,
    out_of_sample: bool,
) -> dict[str, Any] | None:
    """``findings.label_confusion``: the flagged and the unflagged samples' matrices.

    Returns ``None`` when the scan has no predictions. Keys: ``predicted_by``
    (``"out-of-sample"`` or ``"embedding model"``), ``classes`` (names, the rows' and columns'
    order), ``flagged`` and ``unflagged`` (each ``total``, ``without_prediction``,
    ``off_diagonal``: samples predicted as another class than their own, and ``matrix``: rows
    given label, columns predicted label, or ``None`` above :data:`MAX_MATRIX_CLASSES` classes),
    ``top_cells`` (the largest off-diagonal cells of the flagged matrix: ``given``,
    ``predicted``, ``count``, ``share`` of the flagged off-diagonal samples) and
    ``dominant_share``: the largest cell's share (1.0 for a flip of one class into one other,
    small for random noise; ``None`` without flagged off-diagonal samples) and ``pattern``
    (:func:`flip_pattern` of the flagged matrix, class codes replaced by names; ``None``
    without flagged off-diagonal samples).
    """
    if predicted is None:
        return None
    n_classes = len(class_names)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    predicted = np.asarray(predicted, dtype=np.int64).reshape(-1)
    flagged = np.asarray(flagged, dtype=bool).reshape(-1)
    sides = {}
    matrices = {}
    for name, mask in (("flagged", flagged), ("unflagged", ~flagged)):
        matrix = label_matrix(labels, predicted, n_classes, mask)
        matrices[name] = matrix
        total = int(np.count_nonzero(mask))
        sides[name] = {
            "total": total,
            "without_prediction": total - int(matrix.sum()),
            "off_diagonal": int(matrix.sum() - np.trace(matrix)),
            "matrix": matrix.tolist() if n_classes <= MAX_MATRIX_CLASSES else None,
        }
    off = matrices["flagged"].copy()
    np.fill_diagonal(off, 0)
    n_off = int(off.sum())
    top_cells = []
    if n_off:
        flat = off.reshape(-1)
        order = np.lexsort((np.arange(flat.size), -flat))[:TOP_CELLS]  # largest, ties by position
        for cell in order:
            count = int(flat[cell])
            if not count:
                break
            g, p = divmod(int(cell), n_classes)
            top_cells.append(
                {
                    "given": class_names[g],
                    "predicted": class_names[p],
                    "count": count,
                    "share": count / n_off,
                }
            )
    pattern = flip_pattern(matrices["flagged"])
    if pattern is not None:
        for key in ("given", "predicted"):
            if pattern[key] is not None:
                pattern[key] = class_names[pattern[key]]
    return {
        "predicted_by": "out-of-sample" if out_of_sample else "embedding model",
        "classes": list(class_names),
        **sides,
        "top_cells": top_cells,
        "dominant_share": top_cells[0]["share"] if top_cells else None,
        "pattern": pattern,
    }


def flip_pattern(matrix: np.ndarray) -> dict[str, Any] | None:
    """Read the shape of a given × predicted matrix's off-diagonal counts.

    Parameters
    ----------
    matrix : ndarray of int, shape (K, K)
        Rows the given label, columns the predicted label (:func:`label_matrix`).

    Returns
    -------
    dict or None
        ``None`` without off-diagonal counts. Else ``kind``, the first that holds of:

        - ``"too-few"``: fewer than :data:`MIN_PATTERN_SAMPLES` off-diagonal samples;
        - ``"one-pair"``: one cell holds at least :data:`DOMINANT_PAIR_SHARE` of them (0.8 for
          two classes): a targeted flip, the predicted class's samples relabelled as the given;
        - ``"one-given-label"``: one row holds at least :data:`DOMINANT_LABEL_SHARE`: several
          classes' samples carry that label (a backdoor's target, or a many-to-one flip);
        - ``"one-predicted-label"``: one column holds that share: one class's samples were
          relabelled to several labels;
        - ``"spread"``: none of these: random label noise.

        Also ``off_diagonal`` (the count), ``top_share`` (the largest cell's share),
        ``given`` and ``predicted`` (that cell's codes; for ``one-given-label`` the row's code
        and ``predicted`` ``None``, for ``one-predicted-label`` the column's code and
        ``given`` ``None``), ``label_share`` (the row's or column's share for those two kinds,
        else ``None``), ``label_pairs`` (how many of that row's or column's cells are
        non-empty, else ``None``), ``effective_pairs`` (the inverse Simpson index
        ``1 / sum(share**2)``: how many equally filled cells would spread as evenly) and
        ``possible_pairs`` (``K * (K - 1)``).
    """
    matrix = np.asarray(matrix, dtype=np.int64)
    n_classes = matrix.shape[0]
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    total = int(off.sum())
    if not total:
        return None
    flat = off.reshape(-1)
    top = int(np.lexsort((np.arange(flat.size), -flat))[0])
    given, predicted = divmod(top, n_classes)
    shares = flat / total
    rows, columns = off.sum(axis=1) / total, off.sum(axis=0) / total
    result: dict[str, Any] = {
        "kind": "spread",
        "off_diagonal": total,
        "top_share": float(shares[top]),
        "given": given,
        "predicted": predicted,
        "label_share": None,
        "label_pairs": None,
        "effective_pairs": float(1.0 / np.sum(shares**2)),
        "possible_pairs": n_classes * (n_classes - 1),
    }
    pair_share = DOMINANT_PAIR_SHARE if n_classes > 2 else 0.8
    if total < MIN_PATTERN_SAMPLES:
        result["kind"] = "too-few"
    elif shares[top] >= pair_share:
        result["kind"] = "one-pair"
    elif rows.max() >= DOMINANT_LABEL_SHARE:
        row = int(np.argmax(rows))
        result.update(
            kind="one-given-label",
            given=row,
            predicted=None,
            label_share=float(rows[row]),
            label_pairs=int(np.count_nonzero(off[row])),
        )
    elif columns.max() >= DOMINANT_LABEL_SHARE:
        column = int(np.argmax(columns))
        result.update(
            kind="one-predicted-label",
            given=None,
            predicted=column,
            label_share=float(columns[column]),
            label_pairs=int(np.count_nonzero(off[:, column])),
        )
    return result


def cell_examples(
    labels: np.ndarray,
    predicted: np.ndarray,
    flagged: np.ndarray,
    score: np.ndarray,
    n_classes: int,
    *,
    cells: int = EXAMPLE_CELLS,
    per_cell: int = EXAMPLES_PER_CELL,
) -> list[dict[str, Any]]:
    """The flagged samples of the largest off-diagonal cells, the most suspicious first.

    Cells are ranked as ``top_cells`` are (largest count first, ties by position); for each of
    the first ``cells``, the ``per_cell`` flagged samples given label ``given`` and predicted
    ``predicted`` with the highest ``score`` (NaN last, ties by index).

    Returns
    -------
    list of dict
        ``given`` and ``predicted`` (class codes), ``count`` (the cell's flagged samples) and
        ``indices`` (the examples, into the dataset).
    """
    if cells < 0 or per_cell < 0:
        raise ValueError(f"cells and per_cell must be >= 0, got {cells} and {per_cell}")
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    predicted = np.asarray(predicted, dtype=np.int64).reshape(-1)
    flagged = np.asarray(flagged, dtype=bool).reshape(-1)
    score = np.asarray(score, dtype=np.float64).reshape(-1)
    off = label_matrix(labels, predicted, n_classes, flagged)
    np.fill_diagonal(off, 0)
    flat = off.reshape(-1)
    order = np.lexsort((np.arange(flat.size), -flat))[:cells]
    # All flagged samples by score, highest first (NaN last, ties by index), split by cell.
    candidates = np.flatnonzero(flagged & (predicted >= 0) & (predicted != labels))
    key = np.where(np.isnan(score[candidates]), -np.inf, score[candidates])
    candidates = candidates[np.lexsort((candidates, -key))]
    result = []
    for cell in order:
        count = int(flat[cell])
        if not count:
            break
        given, guess = divmod(int(cell), n_classes)
        members = candidates[(labels[candidates] == given) & (predicted[candidates] == guess)]
        result.append(
            {
                "given": given,
                "predicted": guess,
                "count": count,
                "indices": members[:per_cell].tolist(),
            }
        )
    return result


def heatmap_rows(
    labels: np.ndarray,
    predicted: np.ndarray,
    flagged: np.ndarray,
    class_names: Sequence[str],
    *,
    max_classes: int = MAX_SHOWN_CLASSES,
) -> dict[str, Any]:
    """The page's two tables: the classes shown and, per matrix, rows of cells with a shade.

    The classes shown are at most ``max_classes``: those with the most flagged samples as given
    or predicted label (all classes when there are no more). Each cell is ``{"count", "level",
    "diagonal"}``; ``level`` is 0 for an empty or diagonal cell, else 1..:data:`HEAT_LEVELS` in
    proportion to the matrix's largest off-diagonal count among the shown cells (the diagonal is
    a sample predicted as its own label: no flip). Returns ``classes`` (indices), ``names``,
    ``hidden`` (how many classes are not shown) and ``flagged`` / ``unflagged`` (rows of cells,
    each row ``{"name", "cells", "total"}``).
    """
    n_classes = len(class_names)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    predicted = np.asarray(predicted, dtype=np.int64).reshape(-1)
    flagged = np.asarray(flagged, dtype=bool).reshape(-1)
    flagged_matrix = label_matrix(labels, predicted, n_classes, flagged)
    shown = np.arange(n_classes)
    if n_classes > max_classes:
        weight = flagged_matrix.sum(axis=0) + flagged_matrix.sum(axis=1)
        shown = np.sort(np.lexsort((np.arange(n_classes), -weight))[:max_classes])
    result: dict[str, Any] = {
        "classes": shown.tolist(),
        "names": [class_names[c] for c in shown],
        "hidden": n_classes - shown.size,
    }
    for name, matrix in (
        ("flagged", flagged_matrix),
        ("unflagged", label_matrix(labels, predicted, n_classes, ~flagged)),
    ):
        part = matrix[np.ix_(shown, shown)]
        off = part.copy()
        np.fill_diagonal(off, 0)
        top = int(off.max()) if off.size else 0
        rows = []
        for r, g in enumerate(shown):
            cells = []
            for c in range(shown.size):
                count = int(part[r, c])
                diagonal = r == c
                level = 0
                if count and not diagonal and top:
                    level = max(1, math.ceil(HEAT_LEVELS * count / top))
                cells.append({"count": count, "level": level, "diagonal": diagonal})
            rows.append({"name": class_names[g], "cells": cells, "total": int(matrix[g].sum())})
        result[name] = rows
    return result
