"""Reading logic shared by the array formats (HDF5 and NPZ).

An array file holds named arrays: the samples ``x``, the labels ``y`` and optionally ``ids``. This
module finds them by name, reads the labels and ids and builds the
:class:`~poisonguard.dataset.Dataset`; how ``x`` maps onto it (images ``(N, C, H, W)`` or a table
``(N, D)``) and its copy chunk by chunk into one preallocated array, so a large file is never held
twice in memory, are in :mod:`poisonguard.loaders.array_layout`. The format modules only open the
file and hand over a ``get(key)`` function returning an array-like (an ``h5py.Dataset`` or a numpy
array).

Declared sizes are checked before anything is allocated or read (:mod:`poisonguard.limits`):
what ``x`` takes once loaded (in memory, or in the staging file of an out-of-core scan), and
``y`` and ``ids``, which are read whole.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from poisonguard.dataset import Dataset, RowNumbers, encode_labels
from poisonguard.errors import DatasetError
from poisonguard.limits import ByteLimit, byte_limit, check_declared, declared_bytes
from poisonguard.loaders.array_layout import (
    ArrayLike,
    copy_chunked,
    loaded_bytes,
    output_dtype,
    plan_layout,
)
from poisonguard.ondisk import Staging

__all__ = [
    "X_KEYS",
    "Y_KEYS",
    "IDS_KEY",
    "resolve_key",
    "read_labels",
    "read_ids",
    "load_arrays",
    "check_whole_array",
]

logger = logging.getLogger(__name__)

X_KEYS = ("x", "images")
"""Names tried for the samples when no ``x_key`` is given, in order."""
Y_KEYS = ("y", "labels")
"""Names tried for the labels when no ``y_key`` is given, in order."""
IDS_KEY = "ids"
"""Name of the optional array of sample identifiers."""

_MAX_KEYS_LISTED = 30


def _describe_keys(keys: Sequence[str]) -> str:
    if not keys:
        return "the file holds no arrays"
    shown = ", ".join(repr(k) for k in sorted(keys)[:_MAX_KEYS_LISTED])
    more = len(keys) - _MAX_KEYS_LISTED
    return f"the file holds: {shown}" + (f" and {more} more" if more > 0 else "")


def _find_default(keys: Sequence[str], names: Sequence[str]) -> str | None:
    """The first of ``names`` at the top level, else the only nested array with that name."""
    for name in names:
        if name in keys:
            return name
        nested = [k for k in keys if k.rsplit("/", 1)[-1] == name]
        if len(nested) == 1:
            return nested[0]
    return None


def resolve_key(
    keys: Sequence[str],
    given: str | None,
    defaults: Sequence[str],
    *,
    path: str | Path,
    role: str,
    option: str,
) -> str:
    """Pick the array to read for one role (``"x"`` or ``"y"``).

    Parameters
    ----------
    keys : sequence of str
        Names of the arrays in the file (dataset paths such as ``"train/x"`` for HDF5).
    given : str or None
        The name the user asked for; used as is (a leading ``/`` is ignored).
    defaults : sequence of str
        Names tried in order when ``given`` is None: first at the top level, then as the name of
        the only nested array of that name.
    path, role, option
        File, role and command-line option named in the error message.

    Returns
    -------
    str
        One of ``keys``.

    Raises
    ------
    DatasetError
        If the array is missing; the message lists the arrays the file has.
    """
    if given is not None:
        key = given.lstrip("/")
        if key in keys:
            return key
        raise DatasetError(
            path,
            f"has no array {given!r} (given with {option}); {_describe_keys(keys)}",
        )
    found = _find_default(keys, defaults)
    if found is None:
        looked = " or ".join(repr(d) for d in defaults)
        raise DatasetError(
            path,
            f"has no {role} array (looked for {looked}); {_describe_keys(keys)}; "
            "use --x-key and --y-key to name the arrays to read",
        )
    return found


def check_whole_array(path: str | Path, name: str, source: ArrayLike, limit: ByteLimit) -> None:
    """Refuse an array that is read whole (labels, ids, an NPZ member) when its declared shape
    and dtype take more than ``limit`` (see :mod:`poisonguard.limits`)."""
    shape = tuple(int(s) for s in (source.shape or ()))
    dtype = np.dtype(source.dtype)
    check_declared(
        path,
        f"array {name!r} declares shape {shape} of {dtype}, which would take",
        declared_bytes(shape, dtype.itemsize),
        limit,
        place=" in memory (it is read whole)",
    )


def _is_one_hot(y: np.ndarray) -> bool:
    if y.dtype.kind not in "biuf" or y.shape[1] < 2:
        return False
    return bool(np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all())


def read_labels(
    raw: Any, *, path: str | Path, name: str = "y"
) -> tuple[np.ndarray, list[str], list[str]]:
    """Encode a label array as class codes.

    ``(N,)`` and ``(N, 1)`` arrays are read as they are, a one-hot ``(N, K)`` array as the index
    of its 1 (with a note). Integer, whole-float and string labels are accepted (see
    :func:`~poisonguard.dataset.encode_labels`).

    Returns
    -------
    codes : ndarray of int64
    class_names : list of str
    notes : list of str
    """
    y = np.asarray(raw)
    notes: list[str] = []
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    elif y.ndim == 2 and _is_one_hot(y):
        y = y.argmax(axis=1)
        notes.append(f"{name} is one-hot encoded; read as the class index of each row")
    if y.ndim != 1:
        raise DatasetError(
            path, f"{name} has shape {y.shape}; labels must have shape (N,), one per sample"
        )
    codes, class_names = encode_labels(y, path=path)
    return codes, class_names, notes


def read_ids(raw: Any, n: int, *, path: str | Path, name: str = IDS_KEY) -> list[str]:
    """Sample identifiers from an array of ``n`` strings or integers.

    Raises
    ------
    DatasetError
        For the wrong shape, another dtype, an empty id or a duplicate id.
    """
    arr = np.asarray(raw)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise DatasetError(
            path, f"{name} has shape {arr.shape}; expected ({n},), one id per sample"
        )
    if arr.dtype.kind in "iu":
        ids = [str(int(v)) for v in arr.tolist()]
    elif arr.dtype.kind in "USO":
        ids = [
            v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v)
            for v in arr.tolist()
        ]
    else:
        raise DatasetError(path, f"{name} has dtype {arr.dtype}; ids must be strings or integers")
    first_seen: dict[str, int] = {}
    for index, value in enumerate(ids):
        if value == "":
            raise DatasetError(path, f"{name} is empty at sample {index}")
        if value in first_seen:
            raise DatasetError(
                path,
                f"{name} holds {value!r} twice (samples {first_seen[value]} and {index}); "
                "ids must be unique",
            )
        first_seen[value] = index
    return ids


def load_arrays(
    keys: Sequence[str],
    get: Callable[[str], ArrayLike],
    *,
    path: str | Path,
    format: str,
    x_key: str | None = None,
    y_key: str | None = None,
    staging: Staging | None = None,
    max_bytes: int | None = None,
) -> Dataset:
    """Build a :class:`Dataset` from the named arrays of one file.

    Parameters
    ----------
    keys : sequence of str
        Names of the arrays in the file.
    get : callable
        ``get(key)`` returns the array-like of that name; ``x`` is only sliced, never read whole.
    path : str or Path
        The file, stored as :attr:`Dataset.path` and named in errors.
    format : str
        Registry name of the calling loader.
    x_key, y_key : str, optional
        Names of the sample and label arrays; by default ``x`` or ``images``, ``y`` or
        ``labels``. An array named ``ids`` is used as sample ids when present, else the ids are
        the sample indices ``"0" .. "N-1"``.
    staging : Staging, optional
        Copy ``x`` to a staging file instead of memory (an out-of-core scan).
    max_bytes : int, optional
        The most bytes ``x`` may take once loaded, and ``y`` and ``ids`` each; by default
        :func:`poisonguard.limits.byte_limit`'s (``--max-bytes``, else half the memory, or 64 GiB
        for ``x`` staged on disk).

    Returns
    -------
    Dataset
        ``kind`` is ``"image"`` or ``"table"`` depending on the shape of ``x``.

    Raises
    ------
    DatasetError
        Naming the file and the problem: a missing array, a bad shape or dtype, ``x`` and ``y``
        of different lengths, NaN/inf, bad or duplicate ids, fewer than two classes, or an
        array whose declared size is over the limit (checked before it is read).
    """
    keys = sorted(keys)
    xk = resolve_key(keys, x_key, X_KEYS, path=path, role="x", option="--x-key")
    yk = resolve_key(keys, y_key, Y_KEYS, path=path, role="y", option="--y-key")
    if xk == yk:
        raise DatasetError(path, f"x and y are the same array {xk!r}; name two different arrays")
    ids_key = _find_default([k for k in keys if k not in (xk, yk)], (IDS_KEY,))
    logger.debug("%s: reading x from %r, y from %r, ids from %r", path, xk, yk, ids_key)

    x_source = get(xk)
    layout = plan_layout(x_source.shape, path=path, name=xk)
    source_dtype = np.dtype(x_source.dtype)
    out_dtype = output_dtype(source_dtype, layout, path=path, name=xk)
    n = layout.out_shape[0]
    where = "a staging file" if staging is not None else "memory"
    check_declared(
        path,
        f"array {xk!r} declares shape {tuple(int(s) for s in x_source.shape)} of "
        f"{source_dtype}, which would take",
        loaded_bytes(layout.out_shape, source_dtype, out_dtype),
        byte_limit(max_bytes, staged=staging is not None),
        place=f" in {where} once loaded",
        hint=(
            "; poisonguard scan can also read an HDF5 file out of core (--chunk-rows)"
            if staging is None and format == "hdf5"
            else ""
        ),
    )
    in_memory = byte_limit(max_bytes)

    y_source = get(yk)
    y_shape = y_source.shape
    if not y_shape:
        raise DatasetError(path, f"{yk} has shape {y_shape}; labels must have shape (N,)")
    if y_shape[0] != n:
        raise DatasetError(path, f"x has {n} rows but y has {y_shape[0]} ({xk!r}, {yk!r})")
    check_whole_array(path, yk, y_source, in_memory)
    labels, class_names, label_notes = read_labels(y_source[()], path=path, name=yk)

    if ids_key is None:
        ids = RowNumbers(n)
    else:
        ids_source = get(ids_key)
        check_whole_array(path, ids_key, ids_source, in_memory)
        ids = read_ids(ids_source[()], n, path=path, name=ids_key)

    x, copy_notes = copy_chunked(x_source, layout, path=path, name=xk, staging=staging)
    logger.info(
        "%s: read %d samples (%s %s, %s) in %d classes",
        path,
        n,
        layout.kind,
        x.shape[1:],
        x.dtype,
        len(class_names),
    )
    return Dataset(
        x=x,
        labels=labels,
        class_names=class_names,
        ids=ids,
        kind=layout.kind,
        path=Path(path),
        format=format,
        notes=[*layout.notes, *copy_notes, *label_notes],
    )
