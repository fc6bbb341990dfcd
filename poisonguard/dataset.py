"""The in-memory dataset every loader returns and every later stage reads.

A :class:`Dataset` holds the samples in one of three layouts:

* ``kind == "image"``: ``x`` has shape ``(N, C, H, W)`` (``C`` is 1 or 3), dtype ``uint8`` or
  ``float32``, in the value range of the source file;
* ``kind == "table"``: ``x`` has shape ``(N, D)``, dtype ``float32``;
* ``kind == "text"``: ``x`` has shape ``(N,)``, dtype ``object``, one Python ``str`` per sample:
  the text exactly as the file holds it (no stripping, case folding or Unicode normalisation;
  line ends inside a text are kept), never empty or only white space, and encodable as UTF-8
  (no lone surrogates). ``feature_names`` is ``None``.

Labels are stored as integer codes ``0 .. K-1`` into ``class_names``; the original labels (integers
or strings) are kept as the class names, so reports show what the user wrote.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from poisonguard.errors import DatasetError

__all__ = ["Dataset", "RowNumbers", "encode_labels", "check_finite", "align_classes"]

DatasetKind = Literal["image", "table", "text"]

_NDIM = {"image": 4, "table": 2, "text": 1}


class RowNumbers(Sequence):
    """The ids ``"0", "1", ..., str(n - 1)`` of a dataset without its own ids, made on demand
    (a list of a million such strings takes about 60 MB)."""

    def __init__(self, n: int) -> None:
        self._n = int(n)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, key):
        if isinstance(key, slice):
            return [str(i) for i in range(*key.indices(self._n))]
        index = int(key) + self._n if key < 0 else int(key)
        if not 0 <= index < self._n:
            raise IndexError(f"id {key} is out of range for {self._n} samples")
        return str(index)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RowNumbers):
            return len(other) == self._n
        if isinstance(other, Sequence) and not isinstance(other, str):
            return len(other) == self._n and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    def __repr__(self) -> str:
        return f"RowNumbers({self._n})"


@dataclass
class Dataset:
    """Samples, labels and where they came from.

    Attributes
    ----------
    x : ndarray
        ``(N, C, H, W)`` images, ``(N, D)`` table rows or ``(N,)`` texts (``str`` objects; see
        the module docstring).
    labels : ndarray of int64, shape (N,)
        Class codes into ``class_names``.
    class_names : list of str
        The original label of each class code, as text.
    ids : list of str or RowNumbers
        One identifier per sample (relative path, ``ids`` array or row number).
    kind : {"image", "table", "text"}
    path : Path
        The file or folder the dataset was read from.
    format : str
        Name of the loader that read it (``"image-folder"``, ``"hdf5"``, ``"npz"``, ``"csv"``;
        for text, ``"csv"``, ``"tsv"``, ``"jsonl"``, ``"parquet"``, ``"text-folder"``).
    feature_names : list of str or None
        Column names of a table.
    notes : list of str
        Facts about loading a reader of the report should know (resizing, layout guesses).
    skipped : list of tuple (str, str)
        ``(file, reason)`` of samples left out with ``skip_bad``.
    """

    x: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    ids: Sequence[str]
    kind: DatasetKind
    path: Path
    format: str
    feature_names: list[str] | None = None
    notes: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.x.shape[0] != n or len(self.ids) != n:
            raise DatasetError(
                self.path,
                f"x has {self.x.shape[0]} samples, labels {n} and ids {len(self.ids)}; "
                "they must all have the same length",
            )
        expected_ndim = _NDIM.get(self.kind)
        if expected_ndim is None:
            raise DatasetError(self.path, f"internal: unknown dataset kind {self.kind!r}")
        if self.x.ndim != expected_ndim:
            raise DatasetError(self.path, f"internal: {self.kind} x has shape {self.x.shape}")
        if self.kind == "text":
            _check_texts(self.x, self.path)

    @property
    def n_samples(self) -> int:
        return int(self.labels.shape[0])

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def name(self) -> str:
        """A short name for the dataset: the file or folder name without extension."""
        return self.path.stem if self.path.is_file() else self.path.name

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.n_classes)


def _check_texts(x: np.ndarray, path: Path) -> None:
    """The ``kind == "text"`` layout: an object array of non-blank ``str``."""
    if x.dtype != object:
        raise DatasetError(path, f"internal: text x has dtype {x.dtype}, expected object")
    for index, text in enumerate(x.tolist()):
        if not isinstance(text, str) or not text.strip():
            raise DatasetError(path, f"internal: text x holds {text!r} at sample {index}")


def align_classes(other: Dataset, reference: Dataset, *, role: str) -> Dataset:
    """``other`` with its labels recoded to ``reference``'s class codes.

    For a second dataset used beside the audited one (a trusted set, a test set, held-out data):
    its classes must all be ``reference``'s and its samples of the same shape, else
    :class:`DatasetError` names ``other``'s file; ``role`` says what it is in the message.
    """
    unknown = sorted(set(other.class_names) - set(reference.class_names))
    if unknown:
        raise DatasetError(
            other.path,
            f"{role} has classes the dataset lacks: {', '.join(map(str, unknown[:5]))}",
        )
    if tuple(other.x.shape[1:]) != tuple(reference.x.shape[1:]):
        raise DatasetError(
            other.path,
            f"{role} samples have shape {tuple(other.x.shape[1:])}, the dataset's are "
            f"{tuple(reference.x.shape[1:])}",
        )
    codes = {name: code for code, name in enumerate(reference.class_names)}
    labels = np.array([codes[other.class_names[c]] for c in other.labels], dtype=np.int64)
    return replace(other, labels=labels, class_names=list(reference.class_names))


def encode_labels(raw: Sequence | np.ndarray, *, path: str | Path) -> tuple[np.ndarray, list[str]]:
    """Turn raw labels (integers or strings) into codes ``0..K-1`` and class names.

    Integer labels (also floats holding whole numbers) are ordered numerically, strings
    lexicographically. Raises :class:`DatasetError` naming ``path`` for missing, fractional or
    non-finite labels, or fewer than two classes.
    """
    arr = np.asarray(raw)
    if arr.ndim != 1:
        raise DatasetError(path, f"labels must be one-dimensional, got shape {arr.shape}")
    if arr.dtype.kind in "iub":
        values = arr.astype(np.int64)
    elif arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            bad = int(np.flatnonzero(~np.isfinite(arr))[0])
            raise DatasetError(path, f"label at index {bad} is {arr[bad]} (not finite)")
        if not np.all(arr == np.round(arr)):
            bad = int(np.flatnonzero(arr != np.round(arr))[0])
            raise DatasetError(path, f"label at index {bad} is {arr[bad]}, not a whole number")
        values = arr.astype(np.int64)
    elif arr.dtype.kind in "USO":
        values = np.array([_label_text(v) for v in arr.tolist()], dtype=object)
        empty = [i for i, v in enumerate(values) if v == ""]
        if empty:
            raise DatasetError(path, f"label at index {empty[0]} is empty")
        as_int = _try_int(values)
        if as_int is not None:
            values = as_int
    else:
        raise DatasetError(path, f"labels have unsupported dtype {arr.dtype}")

    uniques, codes = np.unique(values, return_inverse=True)
    names = [str(u) for u in uniques.tolist()]
    if len(names) < 2:
        found = names[0] if names else "none"
        raise DatasetError(
            path, f"found {len(names)} class ({found}); a scan needs at least 2 classes"
        )
    return codes.astype(np.int64).reshape(-1), names


def _label_text(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return str(value).strip()


def _try_int(values: np.ndarray) -> np.ndarray | None:
    """Read string labels such as ``"3"`` as integers so they sort numerically."""
    try:
        ints = np.array([int(v) for v in values], dtype=np.int64)
    except ValueError:
        return None
    return ints if all(str(i) == v for i, v in zip(ints, values, strict=True)) else None


def check_finite(x: np.ndarray, *, path: str | Path, offset: int = 0, what: str = "x") -> None:
    """Raise :class:`DatasetError` if a float array holds NaN or infinity.

    ``offset`` is added to the reported index, so chunked readers report the sample's index in
    the whole dataset.
    """
    if x.dtype.kind != "f":
        return
    finite = np.isfinite(x)
    if finite.all():
        return
    bad = np.argwhere(~finite)[0]
    index = int(bad[0]) + offset
    value = x[tuple(bad)]
    raise DatasetError(path, f"{what} holds {value} at sample {index}; NaN and inf are not allowed")
