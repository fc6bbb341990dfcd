"""Dataset loaders: one module per format, and :func:`load_dataset`, which picks one by path.

=================  =======================================  =======================================
Format             Path                                     Module
=================  =======================================  =======================================
``image-folder``   a folder ``<root>/<class>/<image>``      :mod:`poisonguard.loaders.image_folder`
``hdf5``           ``.h5``, ``.hdf5``, ``.hdf``              :mod:`poisonguard.loaders.hdf5`
``npz``            ``.npz``                                  :mod:`poisonguard.loaders.npz`
``csv``            ``.csv``: a numeric table, or text        :mod:`poisonguard.loaders.csv_table`,
                   when the header has the text column      :mod:`poisonguard.loaders.text_table`
``tsv``            ``.tsv`` (text)                           :mod:`poisonguard.loaders.text_table`
``jsonl``          ``.jsonl`` (text)                         :mod:`poisonguard.loaders.text_jsonl`
``parquet``        ``.parquet`` (text)                       :mod:`poisonguard.loaders.text_parquet`
``text-folder``    a folder ``<root>/<class>/<name>.txt``   :mod:`poisonguard.loaders.text_folder`
=================  =======================================  =======================================

HDF5 and NPZ share their reading logic in :mod:`poisonguard.loaders.arrays`, the text formats
theirs (columns, checks, the :class:`~poisonguard.dataset.Dataset` of ``kind == "text"``) in
:mod:`poisonguard.loaders.text_rows`. Every loader returns a
:class:`~poisonguard.dataset.Dataset` and raises :class:`~poisonguard.errors.DatasetError` naming
the file and the problem.

Nothing outside the dataset is read: image and text folders skip symbolic links that leave the
folder, loop or are broken (:mod:`poisonguard.loaders.links`), and HDF5 files with data stored
outside them (external storage, virtual datasets) are refused (:mod:`poisonguard.loaders.hdf5`).
Nothing is unpickled.

Every loader checks the sizes a file declares (array shapes, image headers, a CSV's lines and
columns) against a limit before it allocates anything (:mod:`poisonguard.limits`, ``max_bytes``).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from poisonguard.dataset import Dataset
from poisonguard.errors import DatasetError
from poisonguard.loaders.csv_table import load_csv
from poisonguard.loaders.hdf5 import load_hdf5
from poisonguard.loaders.image_folder import load_image_folder
from poisonguard.loaders.npz import load_npz
from poisonguard.loaders.text_folder import is_text_folder, load_text_folder
from poisonguard.loaders.text_jsonl import load_jsonl
from poisonguard.loaders.text_parquet import load_parquet
from poisonguard.loaders.text_table import csv_text_column, load_tsv
from poisonguard.ondisk import Staging
from poisonguard.plugins import LOADER_GROUP, PluginFailure, discover

__all__ = [
    "FORMATS",
    "TEXT_FORMATS",
    "LoaderFormat",
    "load_plugins",
    "detect_format",
    "load_dataset",
    "is_text_dataset",
    "load_csv",
    "load_hdf5",
    "load_image_folder",
    "load_jsonl",
    "load_npz",
    "load_parquet",
    "load_text_folder",
    "load_tsv",
]

logger = logging.getLogger(__name__)

FORMATS: dict[str, Callable[..., Dataset]] = {
    "image-folder": load_image_folder,
    "hdf5": load_hdf5,
    "npz": load_npz,
    "csv": load_csv,
    "tsv": load_tsv,
    "jsonl": load_jsonl,
    "parquet": load_parquet,
    "text-folder": load_text_folder,
}
"""Loader of each format, by the name given with ``--format``."""

TEXT_FORMATS = frozenset({"tsv", "jsonl", "parquet", "text-folder"})
"""The formats that always hold text (a ``csv`` file holds text when its header has the text
column: :func:`is_text_dataset`)."""

_SUFFIXES = {
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".hdf": "hdf5",
    ".npz": "npz",
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".parquet": "parquet",
}
_FORMAT_HELP = (
    "image-folder (a folder of class folders of images), text-folder (of .txt files), hdf5 "
    "(.h5, .hdf5, .hdf), npz (.npz), csv (.csv: a table, or text with a text column), tsv "
    "(.tsv), jsonl (.jsonl), parquet (.parquet)"
)


@dataclass(frozen=True)
class LoaderFormat:
    """A dataset format added by a plug-in (entry-point group ``poisonguard.loaders``).

    ``load(path, **options) -> Dataset`` reads a file whose suffix is one of ``suffixes``
    (lower case, with the dot, e.g. ``(".parquet",)``), or any path given with
    ``--format name``. It is passed the :func:`load_dataset` options its signature names
    (``x_key``, ``y_key``, ``label_column``, ``id_column``, ``text_column``, ``skip_bad``,
    ``max_image_side``, ``max_bytes``, ``staging``) and must raise
    :class:`~poisonguard.errors.DatasetError` naming the file and the problem for bad input.
    """

    name: str
    suffixes: tuple[str, ...]
    load: Callable[..., Dataset]


def _check_plugin(spec: LoaderFormat) -> None:
    if not isinstance(spec.name, str) or not spec.name:
        raise ValueError(f"the format name {spec.name!r} is empty")
    if not callable(spec.load):
        raise TypeError("its load is not callable")
    taken = [s for s in spec.suffixes if not s.startswith(".") or s.lower() in _SUFFIXES]
    if taken:
        raise ValueError(f"suffixes {', '.join(taken)} are taken or do not start with a dot")


PLUGIN_FAILURES: list[PluginFailure] = []
"""Entry points of the ``poisonguard.loaders`` group that were left out, and why."""
_PLUGINS: list[str] = []  # the names of the loaded plug-in formats
_BUILTIN_HELP = _FORMAT_HELP


def load_plugins(*, again: bool = False) -> list[str]:
    """Add the formats installed packages register under ``poisonguard.loaders`` to
    :data:`FORMATS`, once (``again``: forget them and look again). Called by
    :func:`detect_format` and :func:`load_dataset` (and the command line, for ``--format``),
    not on import, so that a plug-in module may import this package. Returns their names."""
    global _loaded, _FORMAT_HELP
    if _loaded and not again:
        return list(_PLUGINS)
    for name in _PLUGINS:
        FORMATS.pop(name, None)
        for suffix in [s for s, n in _SUFFIXES.items() if n == name]:
            del _SUFFIXES[suffix]
    found, failures = discover(LOADER_GROUP, LoaderFormat, FORMATS.__contains__, _check_plugin)
    _FORMAT_HELP = _BUILTIN_HELP
    for spec, _ in found:
        FORMATS[spec.name] = spec.load
        _SUFFIXES.update((suffix.lower(), spec.name) for suffix in spec.suffixes)
        _FORMAT_HELP += f", {spec.name} ({', '.join(spec.suffixes) or 'with --format'})"
    _PLUGINS[:] = [spec.name for spec, _ in found]
    PLUGIN_FAILURES[:] = failures
    _loaded = True
    return list(_PLUGINS)


_loaded = False


def detect_format(path: str | Path) -> str:
    """The format of ``path``, from its kind (folder) or file extension.

    Returns
    -------
    str
        A key of :data:`FORMATS`: for a directory ``"text-folder"`` when its class folders hold
        ``.txt`` files and no images (:func:`~poisonguard.loaders.text_folder.is_text_folder`),
        else ``"image-folder"``; else by extension (any case): ``.h5``/``.hdf5``/``.hdf``
        ``"hdf5"``, ``.npz`` ``"npz"``, ``.csv`` ``"csv"``, ``.tsv`` ``"tsv"``, ``.jsonl``
        ``"jsonl"``, ``.parquet`` ``"parquet"``.

    Raises
    ------
    DatasetError
        For any other extension; the message lists the formats and points to ``--format``.
    """
    load_plugins()
    path = Path(path)
    if path.is_dir():
        return "text-folder" if is_text_folder(path) else "image-folder"
    found = _SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise DatasetError(
            path,
            f"cannot tell the dataset format from the name; known formats: {_FORMAT_HELP}; "
            "use --format to choose one",
        )
    return found


def load_dataset(
    path: str | Path,
    *,
    format: str | None = None,
    x_key: str | None = None,
    y_key: str | None = None,
    label_column: str | None = None,
    id_column: str | None = None,
    text_column: str | None = None,
    skip_bad: bool = False,
    max_image_side: int = 64,
    staging: Staging | None = None,
    max_bytes: int | None = None,
) -> Dataset:
    """Read a dataset with the loader for its format.

    Parameters
    ----------
    path : str or Path
        A folder of class folders of images or of ``.txt`` files, or an HDF5, NPZ, CSV, TSV,
        JSON Lines or Parquet file.
    format : str, optional
        A key of :data:`FORMATS`; by default :func:`detect_format` picks one.
    x_key, y_key : str, optional
        HDF5/NPZ names of the sample and label arrays.
    label_column, id_column : str, optional
        CSV, TSV, JSON Lines and Parquet columns of the labels and of the sample ids.
    text_column : str, optional
        The text column of a text dataset (default ``text``); a CSV file with it holds text.
    skip_bad : bool, default False
        Image folders: leave out unreadable images instead of stopping.
    max_image_side : int, default 64
        Image folders: longest side of the loaded images.
    staging : Staging, optional
        HDF5 files and image folders: put the samples in a staging file instead of memory, a
        block of samples at a time (an out-of-core scan). NPZ and CSV files are read whole.
    max_bytes : int, optional
        The most bytes one array the file declares may take once loaded, and one image decoded
        (see :mod:`poisonguard.limits`); by default the command's ``--max-bytes``
        (:func:`~poisonguard.limits.max_bytes_setting`), else half the memory for what is held
        in memory, 64 GiB for samples staged on disk, and PIL's decompression-bomb limit for
        one image.

    Options that do not apply to the chosen format are ignored with a warning in the log.

    Returns
    -------
    Dataset

    Raises
    ------
    ValueError
        For an unknown ``format`` name (the message lists the valid ones).
    DatasetError
        If ``path`` does not exist or cannot be read as a dataset of that format, or declares
        sizes over the limit.
    """
    load_plugins()
    if format is not None and format not in FORMATS:
        why = [f"; {f.describe()}" for f in PLUGIN_FAILURES if f.name == format]
        raise ValueError(
            f"unknown dataset format {format!r}; valid formats are: {', '.join(sorted(FORMATS))}"
            + "".join(why)
        )
    path = Path(path)
    if not path.exists():
        raise DatasetError(path, "does not exist")
    name = format if format is not None else detect_format(path)
    loader = FORMATS[name]

    options = {
        "x_key": x_key,
        "y_key": y_key,
        "label_column": label_column,
        "id_column": id_column,
        "text_column": text_column,
        "skip_bad": skip_bad,
        "max_image_side": max_image_side,
    }
    defaults = {"skip_bad": False, "max_image_side": 64}
    accepted = inspect.signature(loader).parameters
    kwargs = {}
    for option, value in options.items():
        if option in accepted:
            kwargs[option] = value
        elif value is not None and value != defaults.get(option):
            logger.warning("option %s does not apply to %s datasets; ignored", option, name)
    if max_bytes is not None and "max_bytes" in accepted:
        kwargs["max_bytes"] = max_bytes  # every built-in loader takes it
    if staging is not None:
        if "staging" in accepted:
            kwargs["staging"] = staging
        else:
            logger.info("%s datasets are read whole into memory, not staged on disk", name)
    logger.debug("%s: loading as %s", path, name)
    return loader(path, **kwargs)


def is_text_dataset(
    path: str | Path, *, format: str | None = None, text_column: str | None = None
) -> bool:
    """Whether :func:`load_dataset` would read ``path`` as text, found without reading it: its
    format is one of :data:`TEXT_FORMATS`, or a CSV file's header has the text column. ``False``
    for a path that does not exist (loading it says so). Raises :class:`DatasetError` as
    :func:`detect_format` does, and when a named ``text_column`` is missing from a CSV header."""
    path = Path(path)
    if not path.exists():
        return False
    name = format if format is not None else detect_format(path)
    if name in TEXT_FORMATS:
        return True
    return name == "csv" and csv_text_column(path, text_column) is not None
