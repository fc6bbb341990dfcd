"""Writing logic shared by the array formats (HDF5 and NPZ): the inverse of
:mod:`poisonguard.loaders.arrays`.

The writers find the sample, label and id arrays exactly as the loader does (same names, same
``x_key``/``y_key``), check that the file still holds the dataset that was loaded, and then build
each output array from the source's stored values:

* samples: the kept rows as stored (dtype, axis order and any alpha channel untouched), with the
  changed rows replaced by the new values put back in the source's axis order and dtype (integers
  rounded and clipped to the dtype's range, floats cast);
* labels: the kept rows' stored values; a changed label takes the stored value of the first source
  row of its new class, so it has the source's representation (integer dtype, text, one-hot row);
* per-sample arrays (first axis of length ``N``): the kept rows; other arrays unchanged;
* ids: when the source has no ids array and the copy is not all rows in their order, an ``ids``
  array of the source row numbers is added (the ids the loader gave those rows), so the source
  row of every sample stays traceable.

An array that is not about the samples but happens to have ``N`` rows cannot be told apart from a
per-sample one and is subset too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from poisonguard.dataset import Dataset
from poisonguard.errors import DatasetError
from poisonguard.loaders.array_layout import Layout, plan_layout
from poisonguard.loaders.arrays import IDS_KEY, X_KEYS, Y_KEYS, read_labels, resolve_key

__all__ = [
    "CHUNK_BYTES",
    "ArrayPlan",
    "plan_arrays",
    "is_all_rows",
    "new_labels",
    "replace_samples",
    "to_source_dtype",
    "rows_per_chunk",
]

CHUNK_BYTES = 64 * 1024 * 1024
"""Rough upper bound on the memory of one block of rows read or written at a time."""
CHUNK_SAMPLES = 4096
"""Most rows per block."""


@dataclass(frozen=True)
class ArrayPlan:
    """Which arrays of the source play which role, and what the writer must add.

    Attributes
    ----------
    x_key, y_key : str
        Names of the sample and label arrays.
    ids_key : str or None
        Name of the ids array the loader used, if any.
    n : int
        Number of samples in the source.
    layout : Layout
        How the source ``x`` maps onto :attr:`Dataset.x`.
    add_ids : bool
        Whether to add an ``ids`` array of source row numbers (no ids array in the source and the
        copy is not all rows in order).
    """

    x_key: str
    y_key: str
    ids_key: str | None
    n: int
    layout: Layout
    add_ids: bool


def is_all_rows(rows: np.ndarray, n: int) -> bool:
    """Whether ``rows`` is ``0 .. n-1`` in order."""
    return rows.shape[0] == n and bool(np.array_equal(rows, np.arange(n)))


def plan_arrays(
    keys: Sequence[str],
    get: Callable[[str], Any],
    source: Dataset,
    rows: np.ndarray,
    options: dict,
) -> ArrayPlan:
    """Find the arrays as the loader does and check the file still matches ``source``.

    ``get(key)`` returns an array-like with ``shape``; ``options`` holds the ``x_key`` and
    ``y_key`` the source was loaded with.

    Raises
    ------
    DatasetError
        If an array is missing or ``x`` no longer has the loaded shape.
    """
    path = source.path
    keys = sorted(keys)
    xk = resolve_key(keys, options.get("x_key"), X_KEYS, path=path, role="x", option="--x-key")
    yk = resolve_key(keys, options.get("y_key"), Y_KEYS, path=path, role="y", option="--y-key")
    others = [k for k in keys if k not in (xk, yk)]
    try:
        ids_key: str | None = resolve_key(
            others, None, (IDS_KEY,), path=path, role="ids", option="--ids-key"
        )
    except DatasetError:
        ids_key = None
    layout = plan_layout(get(xk).shape, path=path, name=xk)
    if layout.out_shape[0] != source.n_samples or layout.out_shape[1:] != source.x.shape[1:]:
        raise DatasetError(
            path,
            f"changed since it was loaded: {xk!r} has shape {tuple(get(xk).shape)}, which does "
            f"not give the loaded samples of shape {source.x.shape}",
        )
    add_ids = ids_key is None and not is_all_rows(rows, layout.out_shape[0])
    if add_ids and IDS_KEY in keys:
        raise DatasetError(
            path,
            f"cannot add an {IDS_KEY!r} array of source ids: the name is used by the "
            f"{'sample' if IDS_KEY == xk else 'label'} array",
        )
    return ArrayPlan(xk, yk, ids_key, layout.out_shape[0], layout, add_ids)


def new_labels(
    y_raw: np.ndarray, source: Dataset, rows: np.ndarray, labels: np.ndarray, *, name: str
) -> np.ndarray:
    """The label array of the copy, in the representation of ``y_raw`` (the stored labels).

    Rows whose class code is unchanged keep their stored value exactly; a changed row takes the
    stored value of the first source row of its new class.

    Raises
    ------
    DatasetError
        If ``y_raw`` no longer encodes to the labels and class names of ``source``.
    """
    codes, class_names, _ = read_labels(y_raw, path=source.path, name=name)
    if class_names != source.class_names or not np.array_equal(codes, source.labels):
        raise DatasetError(
            source.path,
            f"changed since it was loaded: the labels in {name!r} differ from the loaded ones",
        )
    out = np.array(y_raw[rows], copy=True)
    changed = labels != codes[rows]
    if changed.any():
        present, first = np.unique(codes, return_index=True)
        if present.shape[0] != len(class_names):
            raise DatasetError(source.path, f"{name!r} lacks a row of some class")
        out[changed] = y_raw[first[labels[changed]]]
    return out


def to_source_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``values`` in ``dtype``: rounded and clipped for integer and bool dtypes, else cast."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return np.rint(values.astype(np.float64)) >= 1
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if values.dtype.kind in "biu":
            wide = values.astype(np.int64)
        else:
            wide = np.rint(values.astype(np.float64))
        return np.clip(wide, info.min, info.max).astype(dtype)
    return values.astype(dtype)


def replace_samples(stored: np.ndarray, new: np.ndarray, layout: Layout) -> np.ndarray:
    """``stored`` (source rows as stored) with every sample replaced by ``new``.

    ``new`` is in the :class:`Dataset` layout (``(k, C, H, W)`` or ``(k, D)``); it is put back in
    the source's axis order and dtype. A dropped alpha channel keeps its stored values.
    """
    out = np.array(stored, copy=True)
    values = to_source_dtype(new, out.dtype)
    if layout.source == "NHW":
        out[...] = values[:, 0]
    elif layout.source == "NHWC":
        out[..., : values.shape[1]] = values.transpose(0, 2, 3, 1)
    elif layout.source == "NCHW":
        out[:, : values.shape[1]] = values
    else:
        out[...] = values
    return out


def rows_per_chunk(row_bytes: int) -> int:
    """Rows per block so that a block holds at most about :data:`CHUNK_BYTES`."""
    return int(min(CHUNK_SAMPLES, max(1, CHUNK_BYTES // max(row_bytes, 1))))
