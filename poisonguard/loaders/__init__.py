"""Dataset loaders: one module per format, and :func:`load_dataset`, which picks one by path.

=================  ==================================  ==========================================
Format             Path                                Module
=================  ==================================  ==========================================
``image-folder``   a folder ``<root>/<class>/<image>``  :mod:`poisonguard.loaders.image_folder`
``hdf5``           ``.h5``, ``.hdf5``, ``.hdf``         :mod:`poisonguard.loaders.hdf5`
``npz``            ``.npz``                             :mod:`poisonguard.loaders.npz`
``csv``            ``.csv``                             :mod:`poisonguard.loaders.csv_table`
=================  ==================================  ==========================================

HDF5 and NPZ share their reading logic in :mod:`poisonguard.loaders.arrays`. Every loader returns
a :class:`~poisonguard.dataset.Dataset` and raises :class:`~poisonguard.errors.DatasetError`
naming the file and the problem.

Nothing outside the dataset is read: image folders skip symbolic links that leave the folder,
loop or are broken (:mod:`poisonguard.loaders.links`), and HDF5 files with data stored outside
them (external storage, virtual datasets) are refused (:mod:`poisonguard.loaders.hdf5`).

Every loader checks the sizes a file declares (array shapes, image headers, a CSV's lines and
columns) against a limit before it allocates anything (:mod:`poisonguard.limits`, ``max_bytes``).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from pathlib import Path

from poisonguard.dataset import Dataset
from poisonguard.errors import DatasetError
from poisonguard.loaders.csv_table import load_csv
from poisonguard.loaders.hdf5 import load_hdf5
from poisonguard.loaders.image_folder import load_image_folder
from poisonguard.loaders.npz import load_npz
from poisonguard.ondisk import Staging

__all__ = [
    "FORMATS",
    "detect_format",
    "load_dataset",
    "load_csv",
    "load_hdf5",
    "load_image_folder",
    "load_npz",
]

logger = logging.getLogger(__name__)

FORMATS: dict[str, Callable[..., Dataset]] = {
    "image-folder": load_image_folder,
    "hdf5": load_hdf5,
    "npz": load_npz,
    "csv": load_csv,
}
"""Loader of each format, by the name given with ``--format``."""

_SUFFIXES = {".h5": "hdf5", ".hdf5": "hdf5", ".hdf": "hdf5", ".npz": "npz", ".csv": "csv"}
_FORMAT_HELP = (
    "image-folder (a folder of class folders), hdf5 (.h5, .hdf5, .hdf), npz (.npz), csv (.csv)"
)


def detect_format(path: str | Path) -> str:
    """The format of ``path``, from its kind (folder) or file extension.

    Returns
    -------
    str
        A key of :data:`FORMATS`: ``"image-folder"`` for a directory, else by extension (any
        case): ``.h5``/``.hdf5``/``.hdf`` ``"hdf5"``, ``.npz`` ``"npz"``, ``.csv`` ``"csv"``.

    Raises
    ------
    DatasetError
        For any other extension; the message lists the formats and points to ``--format``.
    """
    path = Path(path)
    if path.is_dir():
        return "image-folder"
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
    skip_bad: bool = False,
    max_image_side: int = 64,
    staging: Staging | None = None,
    max_bytes: int | None = None,
) -> Dataset:
    """Read a dataset with the loader for its format.

    Parameters
    ----------
    path : str or Path
        A folder of class folders of images, or an HDF5, NPZ or CSV file.
    format : str, optional
        A key of :data:`FORMATS`; by default :func:`detect_format` picks one.
    x_key, y_key : str, optional
        HDF5/NPZ names of the sample and label arrays.
    label_column, id_column : str, optional
        CSV columns of the labels and of the sample ids.
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
    if format is not None and format not in FORMATS:
        raise ValueError(
            f"unknown dataset format {format!r}; valid formats are: {', '.join(sorted(FORMATS))}"
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
    if max_bytes is not None:
        kwargs["max_bytes"] = max_bytes  # every loader takes it
    if staging is not None:
        if "staging" in accepted:
            kwargs["staging"] = staging
        else:
            logger.info("%s datasets are read whole into memory, not staged on disk", name)
    logger.debug("%s: loading as %s", path, name)
    return loader(path, **kwargs)
