"""Dataset writers: write a changed copy of a dataset in the format it was read from.

``poisonguard poison`` writes a poisoned copy (some samples' pixels or labels changed) and
``poisonguard sanitize`` a cleaned one (some rows removed, some labels changed). Both call
:func:`write_like`, which picks the writer of the source's format:

=================  ===================================  =======================================
Format             Destination                          Module
=================  ===================================  =======================================
``image-folder``   a folder ``<dest>/<class>/<image>``  :mod:`poisonguard.writers.image_folder`
``hdf5``           an HDF5 file                         :mod:`poisonguard.writers.hdf5`
``npz``            an ``.npz`` archive                  :mod:`poisonguard.writers.npz`
``csv``            a CSV file (a numeric table)         :mod:`poisonguard.writers.csv_table`
``csv`` (text)     a CSV file with a text column        :mod:`poisonguard.writers.text_table`
``tsv``            a TSV file                           :mod:`poisonguard.writers.text_table`
``jsonl``          a JSON Lines file                    :mod:`poisonguard.writers.text_jsonl`
``parquet``        a Parquet file                       :mod:`poisonguard.writers.text_parquet`
``text-folder``    a folder ``<dest>/<class>/<n>.txt``  :mod:`poisonguard.writers.text_folder`
=================  ===================================  =======================================

A text dataset (``Dataset.kind == "text"``) is written by the writer of :data:`TEXT_WRITERS`
for its format (a CSV file holds a table or text), any other by that of :data:`WRITERS`.

Every writer keeps what did not change exactly as in the source: unchanged samples are copied
from the source file in their stored form (never from :attr:`Dataset.x`, which may be
``float32``, resized or without an alpha channel; an unchanged text is its record, line or file
byte for byte), labels keep the source's representation, and everything else in the file (other
arrays, attributes, columns, fields, header) is carried over. The copy can be read back with
:func:`poisonguard.loaders.load_dataset` and the same options.

Writing is atomic (:mod:`poisonguard.atomic`): the copy is built under a temporary name beside
``destination`` (``.<name>.<random>.tmp``), fsynced, and renamed (a folder: swapped) into place
only when complete; on any error the temporary is removed and the error re-raised, so a
half-written destination is never left behind and an earlier copy stays as it was. The
source is only read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from poisonguard.atomic import atomic_directory, atomic_path
from poisonguard.dataset import Dataset
from poisonguard.errors import OutputError
from poisonguard.writers.csv_table import write_csv
from poisonguard.writers.hdf5 import write_hdf5
from poisonguard.writers.image_folder import write_image_folder
from poisonguard.writers.npz import write_npz
from poisonguard.writers.text_folder import write_text_folder
from poisonguard.writers.text_jsonl import write_jsonl
from poisonguard.writers.text_parquet import write_parquet
from poisonguard.writers.text_table import write_text_csv, write_tsv

__all__ = ["TEXT_WRITERS", "WRITERS", "write_like", "prepare_output_dir"]

logger = logging.getLogger(__name__)

WRITERS: dict[str, Callable[..., list[str]]] = {
    "image-folder": write_image_folder,
    "hdf5": write_hdf5,
    "npz": write_npz,
    "csv": write_csv,
}
"""Writer of each format, by :attr:`Dataset.format`. Each writes into a new path that must not be
in use (the temporary chosen by :func:`write_like`); call :func:`write_like`, not these."""

TEXT_WRITERS: dict[str, Callable[..., list[str]]] = {
    "csv": write_text_csv,
    "tsv": write_tsv,
    "jsonl": write_jsonl,
    "parquet": write_parquet,
    "text-folder": write_text_folder,
}
"""Writer of each format of text datasets (``Dataset.kind == "text"``), as :data:`WRITERS`."""

_FOLDER_FORMATS = frozenset({"image-folder", "text-folder"})


def write_like(
    source: Dataset,
    destination: str | Path,
    *,
    rows: np.ndarray,
    labels: np.ndarray,
    x: np.ndarray | None = None,
    x_changed: np.ndarray | None = None,
    loader_options: dict | None = None,
) -> list[str]:
    """Write a changed copy of ``source`` to ``destination`` in the source's own format.

    Parameters
    ----------
    source : Dataset
        The dataset as loaded from ``source.path``; ``source.format`` picks the writer. The file
        or folder is read again (it must not have changed since loading) and never modified.
    destination : str or Path
        The dataset to create: a file for ``hdf5``/``npz``/``csv``/``tsv``/``jsonl``/``parquet``,
        a folder for ``image-folder`` and ``text-folder``. Missing parent folders are created.
        An existing file is replaced atomically (``os.replace``); an existing folder is renamed
        away, the new one renamed in, then the old one deleted. It must not be, be inside, or
        contain the source.
    rows : ndarray of int, shape (n,)
        Indices into ``source`` of the samples to write, in output order, each at most once
        (all of ``range(N)`` for a poisoned copy).
    labels : ndarray of int, shape (n,)
        New class codes (into ``source.class_names``) of those samples. Where the code equals the
        source's, the source's label value is kept exactly; a changed label is written in the
        source's representation (integer dtype, text, one-hot, class folder; for text, the label
        value of the source's first sample of that class).
    x : ndarray, shape (n, C, H, W), (n, D) or (n,), optional
        New samples for those rows in the :class:`Dataset` layout: for text, an object array
        of ``str`` (a changed text must be a non-blank string of valid Unicode). Only rows where
        ``x_changed`` is True are taken from it; all others are copied from the source file as
        stored.
    x_changed : ndarray of bool, shape (n,), optional
        Which rows of ``x`` to write. Without it, every row of ``x`` counts as changed.
    loader_options : dict, optional
        The ``x_key``/``y_key``/``label_column``/``id_column``/``text_column`` the source was
        loaded with, so that the writer finds the same arrays or columns. Other keys are ignored.

    Returns
    -------
    list of str
        The id of each written sample in ``destination``, in ``rows`` order, as the loader will
        report it: the relative path for image and text folders (the folder changes with the
        label, and a name may get a numeric suffix), else the source id of the row; for a CSV,
        TSV, JSON Lines or Parquet file without an id column, the new row number. HDF5 and NPZ
        copies of a subset gain an ``ids`` array of the source ids when the source had none, so
        the source id of each row is kept.

    Raises
    ------
    ValueError
        For an unknown ``source.format`` (listing the valid ones) or arguments of the wrong shape,
        dtype or range.
    OutputError
        If ``destination`` overlaps the source or is of the wrong kind (file vs folder), a new
        text cannot be stored in the format (a tab or line break in a TSV text), or writing fails
        with an operating-system error (disk full, permissions).
    DatasetError
        If the source cannot be read again or no longer matches ``source``.
    """
    writers = TEXT_WRITERS if source.kind == "text" else WRITERS
    writer = writers.get(source.format)
    if writer is None:
        what = "text datasets" if source.kind == "text" else "datasets"
        raise ValueError(
            f"cannot write {what} of format {source.format!r}; "
            f"writable formats are: {', '.join(sorted(writers))}"
        )
    rows, labels, x, x_changed = _check_arguments(source, rows, labels, x, x_changed)
    destination = Path(destination)
    is_folder = source.format in _FOLDER_FORMATS
    _check_destination(Path(source.path), destination, folder=is_folder)
    options = dict(loader_options or {})
    logger.info(
        "%s: writing %d of %d samples (%d labels changed, %d samples changed) to %s",
        source.path,
        rows.shape[0],
        source.n_samples,
        int(np.count_nonzero(labels != source.labels[rows])),
        int(np.count_nonzero(x_changed)),
        destination,
    )
    context = (
        atomic_directory(destination, replaceable=None) if is_folder else atomic_path(destination)
    )
    try:
        with context as tmp:
            return writer(
                source, tmp, rows=rows, labels=labels, x=x, x_changed=x_changed, options=options
            )
    except OSError as exc:
        raise OutputError(
            f"{destination}: could not write the copy of {source.path} ({exc})"
        ) from exc


def prepare_output_dir(source_path: str | Path, out_dir: str | Path) -> Path:
    """Check and create the output folder of a command that writes a copy of a dataset.

    Paths are compared after resolving symbolic links.

    Returns
    -------
    Path
        ``out_dir`` resolved, now an existing folder (parents created as needed).

    Raises
    ------
    OutputError
        (a :class:`~poisonguard.errors.PoisonGuardError`) naming both paths when ``out_dir`` is
        the source, is inside the source folder, contains the source, or is an existing file, or
        when it cannot be created.
    """
    source = Path(source_path).resolve()
    out = Path(out_dir).resolve()
    where = f"output folder {out_dir}"
    if out == source:
        raise OutputError(f"{where} is the source dataset {source_path}; choose another folder")
    if out.is_relative_to(source):
        raise OutputError(
            f"{where} is inside the source dataset {source_path}; choose a folder outside it"
        )
    if source.is_relative_to(out):
        raise OutputError(
            f"{where} contains the source dataset {source_path}; choose a folder that does not "
            "hold the source"
        )
    if out.exists() and not out.is_dir():
        raise OutputError(f"{where} exists and is a file, not a folder (source {source_path})")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{where} could not be created ({exc})") from exc
    return out


def _check_arguments(
    source: Dataset,
    rows: np.ndarray,
    labels: np.ndarray,
    x: np.ndarray | None,
    x_changed: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """``rows``, ``labels``, ``x`` and ``x_changed`` validated, as int64/bool arrays."""
    n_source = source.n_samples
    rows = np.asarray(rows)
    if rows.ndim != 1 or rows.shape[0] == 0:
        raise ValueError(f"rows must be a non-empty 1-D array of indices, got shape {rows.shape}")
    if rows.dtype.kind not in "iu":
        raise ValueError(f"rows must hold integers, got dtype {rows.dtype}")
    rows = rows.astype(np.int64)
    if rows.min() < 0 or rows.max() >= n_source:
        bad = int(rows[(rows < 0) | (rows >= n_source)][0])
        raise ValueError(f"row {bad} is outside the source's {n_source} samples")
    if np.unique(rows).shape[0] != rows.shape[0]:
        values, counts = np.unique(rows, return_counts=True)
        raise ValueError(f"row {int(values[counts > 1][0])} is listed more than once")
    n = rows.shape[0]

    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"labels has shape {labels.shape}; expected ({n},), one per row")
    if labels.dtype.kind not in "iu":
        raise ValueError(f"labels must hold integer class codes, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.min() < 0 or labels.max() >= source.n_classes:
        bad = int(labels[(labels < 0) | (labels >= source.n_classes)][0])
        raise ValueError(f"label code {bad} is not one of the source's {source.n_classes} classes")

    if x is None:
        if x_changed is not None and np.any(x_changed):
            raise ValueError("x_changed marks changed rows but no x was given")
        return rows, labels, None, np.zeros(n, dtype=bool)
    x = np.asarray(x)
    expected = (n, *source.x.shape[1:])
    if x.shape != expected:
        raise ValueError(f"x has shape {x.shape}; expected {expected} (one sample per row)")
    text = source.kind == "text"
    if text and x.dtype.kind not in "OU":
        raise ValueError(f"x must hold texts (an object array of str), got dtype {x.dtype}")
    if not text and x.dtype.kind not in "biuf":
        raise ValueError(f"x must hold numbers, got dtype {x.dtype}")
    if x_changed is None:
        x_changed = np.ones(n, dtype=bool)
    x_changed = np.asarray(x_changed)
    if x_changed.shape != (n,) or x_changed.dtype != np.bool_:
        raise ValueError(
            f"x_changed must be a boolean array of shape ({n},), got {x_changed.dtype} "
            f"{x_changed.shape}"
        )
    if x.dtype.kind == "f" and not np.isfinite(x[x_changed]).all():
        raise ValueError("x holds NaN or infinity in a changed row")
    if text:
        x = x.astype(object)
        for i in np.flatnonzero(x_changed).tolist():
            _check_text(x[i], i)
    return rows, labels, x, x_changed


def _check_text(value: object, i: int) -> None:
    """Refuse a new text the loaders would refuse: not a string, blank, or not valid Unicode."""
    if not isinstance(value, str):
        raise ValueError(f"x[{i}] is a {type(value).__name__}, not a str (a changed text)")
    if not value.strip():
        raise ValueError(f"x[{i}] is an empty text (or only white space)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"x[{i}] holds a lone surrogate at character {exc.start} (not valid Unicode)"
        ) from None


def _check_destination(source: Path, destination: Path, *, folder: bool) -> None:
    """Refuse a destination that would overwrite or delete the source, or is of the wrong kind."""
    src, dst = source.resolve(), destination.resolve()
    if dst == src or dst.is_relative_to(src) or src.is_relative_to(dst):
        raise OutputError(
            f"{destination}: writing here would change the source dataset {source}; "
            "choose a destination outside it"
        )
    if folder and destination.exists() and not destination.is_dir():
        raise OutputError(f"{destination}: exists and is not a folder")
    if not folder and destination.is_dir():
        raise OutputError(f"{destination}: is a folder; expected a file path for the copy")
