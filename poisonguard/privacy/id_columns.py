"""Identifier columns: table columns that identify a row (a customer or patient number, a row
counter, a timestamp) rather than measure something.

A model can memorise an identifier, and it points at a person; the checklist item that judges
the columns found here is :func:`poisonguard.privacy.checklist.id_columns_item` (fail on any).
A pure function over arrays (no model, no file I/O).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["ID_DISTINCT_SHARE", "id_like_columns"]

#: An integer column is an identifier when all its values are distinct, or (from
#: ``ID_MIN_ROWS_FOR_SHARE`` rows on) at least this share of them.
ID_DISTINCT_SHARE = 0.99
ID_MIN_ROWS_FOR_SHARE = 1000
#: Fewer rows than this and a column being distinct or sorted is too likely by chance.
ID_MIN_ROWS = 10


def id_like_columns(x: np.ndarray, feature_names: Sequence[str]) -> list[dict[str, Any]]:
    """Table columns that identify a row rather than measure something.

    A column is flagged when it is

    * integer-valued and every value distinct (from ``ID_MIN_ROWS_FOR_SHARE`` rows on: at least
      ``ID_DISTINCT_SHARE`` of them), like a customer or patient number; or
    * strictly increasing or decreasing down the rows (a row counter, a timestamp).

    Float measurements that are merely all distinct (continuous features usually are) are not
    flagged. Tables with fewer than ``ID_MIN_ROWS`` rows are not judged.

    Returns
    -------
    list of dict
        ``{"column": name, "index": j, "reason": str}`` per flagged column, in column order.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must be a table of shape (N, D), got {x.shape}")
    if len(feature_names) != x.shape[1]:
        raise ValueError(f"x has {x.shape[1]} columns but {len(feature_names)} feature names")
    n = x.shape[0]
    if n < ID_MIN_ROWS:
        return []
    found = []
    for j, name in enumerate(feature_names):
        column = x[:, j].astype(np.float64)
        if not np.isfinite(column).all():
            continue
        steps = np.diff(column)
        reasons = []
        if (steps > 0).all() or (steps < 0).all():
            direction = "increasing" if steps[0] > 0 else "decreasing"
            reasons.append(f"strictly {direction} down the rows (a row counter or timestamp)")
        if np.array_equal(column, np.round(column)):
            distinct = np.unique(column).size
            enough = distinct == n or (
                n >= ID_MIN_ROWS_FOR_SHARE and distinct >= ID_DISTINCT_SHARE * n
            )
            if enough:
                reasons.append(
                    f"integer-valued with {distinct} distinct values in {n} rows "
                    f"({100 * distinct / n:.1f}%)"
                )
        if reasons:
            found.append({"column": str(name), "index": j, "reason": "; ".join(reasons)})
    return found
