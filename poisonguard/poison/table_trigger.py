"""Table backdoor: a few columns set to fixed values.

The tabular analogue of a BadNets patch (Gu, Dolan-Gavitt & Garg, 2017), as in the tabular
backdoors of Joe, Mehra, Shin & Hamm ("Machine Learning with Electronic Health Records is
Vulnerable to Backdoor Trigger Attacks", AAAI workshop on trustworthy AI for healthcare, 2021):
the trigger is a set of feature values clean rows do not show, and the poisoned rows get the
target label.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["default_table_trigger", "table_trigger"]


def table_trigger(x: np.ndarray, *, columns: Sequence[int], values: Sequence[float]) -> np.ndarray:
    """Set ``columns`` of every row to ``values``.

    Parameters
    ----------
    x : ndarray of float, shape (N, D)
    columns : sequence of int
        Distinct column indices in ``0 .. D-1``.
    values : sequence of float
        One finite value per column, cast to ``x.dtype``.

    Returns
    -------
    ndarray, same shape and dtype as ``x``
        A copy; ``x`` is not modified.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"the table trigger needs a table of shape (N, D); got {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"the table trigger needs a float table; got dtype {x.dtype}")
    columns_array = np.asarray(columns)
    values_array = np.asarray(values, dtype=np.float64)
    if columns_array.ndim != 1 or columns_array.size == 0:
        raise ValueError(f"table trigger columns must be a non-empty list; got {columns!r}")
    if not np.issubdtype(columns_array.dtype, np.integer):
        raise ValueError(f"table trigger columns must be integers; got {columns!r}")
    if values_array.shape != columns_array.shape:
        raise ValueError(
            f"the table trigger has {columns_array.size} columns but {values_array.size} values"
        )
    d = x.shape[1]
    if columns_array.min() < 0 or columns_array.max() >= d:
        raise ValueError(f"table trigger columns {list(columns)} out of range for {d} columns")
    if np.unique(columns_array).size != columns_array.size:
        raise ValueError(f"table trigger columns {list(columns)} repeat a column")
    if not np.isfinite(values_array).all():
        raise ValueError(f"table trigger values must be finite; got {list(values)}")
    out = x.copy()
    out[:, columns_array] = values_array.astype(x.dtype)
    return out


def default_table_trigger(
    x: np.ndarray, *, n_columns: int = 3, rng: np.random.Generator
) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Pick trigger columns and values from clean data.

    ``n_columns`` distinct columns are drawn from ``rng`` (returned sorted); each gets the value
    ``column max + column std`` (``+ 1`` for a constant column), computed over ``x``: a value
    *outside* the range the column shows in ``x``, so no clean row carries the trigger. Values are
    rounded to ``x.dtype``, so passing them back to :func:`table_trigger` reproduces the trigger
    bit for bit.

    Parameters
    ----------
    x : ndarray of float, shape (N, D)
        Clean rows (the training set before poisoning).
    n_columns : int
        At most ``D``.
    rng : numpy.random.Generator
        Draws the columns (one ``choice`` call, nothing else).

    Returns
    -------
    columns : tuple of int
    values : tuple of float
    """
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"the table trigger needs a non-empty table (N, D); got {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"the table trigger needs a float table; got dtype {x.dtype}")
    d = x.shape[1]
    if isinstance(n_columns, bool) or not isinstance(n_columns, int | np.integer):
        raise ValueError(f"n_columns must be an integer; got {n_columns!r}")
    if not 1 <= n_columns <= d:
        raise ValueError(f"n_columns must be in 1..{d} for a table of {d} columns; got {n_columns}")
    columns = np.sort(rng.choice(d, size=int(n_columns), replace=False))
    picked = x[:, columns].astype(np.float64)
    spread = picked.std(axis=0)
    values = picked.max(axis=0) + np.where(spread > 0, spread, 1.0)
    values = values.astype(x.dtype)
    # Rounding to a float32 can land back on the maximum when the spread is tiny next to it.
    maxima = picked.max(axis=0).astype(x.dtype)
    values = np.where(values > maxima, values, np.nextafter(maxima, np.inf))
    return tuple(int(c) for c in columns), tuple(float(v) for v in values)
