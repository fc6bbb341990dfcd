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

:func:`label_confusion` builds the ``findings.label_confusion`` entry of ``report.json``;
:func:`heatmap_rows` the rows of the page's table from it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "HEAT_LEVELS",
    "MAX_MATRIX_CLASSES",
    "MAX_SHOWN_CLASSES",
    "TOP_CELLS",
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
    small for random noise; ``None`` without flagged off-diagonal samples).
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
    return {
        "predicted_by": "out-of-sample" if out_of_sample else "embedding model",
        "classes": list(class_names),
        **sides,
        "top_cells": top_cells,
        "dominant_share": top_cells[0]["share"] if top_cells else None,
    }


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
