"""Read samples and labels from an HDF5 file (``.h5``, ``.hdf5``, ``.hdf``).

The file is opened read-only with h5py. Every dataset in it, at the top level or inside groups,
is known by its path (``"x"``, ``"train/images"``); the samples, labels and optional ids are
picked and read as described in :mod:`poisonguard.loaders.arrays`. Links to other files are not
followed.

Nothing outside the file is read: a file with a dataset whose data live elsewhere is refused
before anything is read (:func:`refuse_outside_storage`), whichever dataset it is (``poison``
and ``sanitize`` copy every dataset of the file): a dataset with external storage (h5py
``external=``: raw data in other files, found relative to the working directory) or a virtual
dataset (VDS: mapped from source datasets, which may lie in other files).
"""

from __future__ import annotations

import logging
from pathlib import Path

import h5py

from poisonguard.dataset import Dataset
from poisonguard.errors import DatasetError
from poisonguard.loaders.arrays import load_arrays
from poisonguard.ondisk import Staging

__all__ = ["load_hdf5"]

logger = logging.getLogger(__name__)


def list_datasets(group: h5py.Group) -> dict[str, h5py.Dataset]:
    """All datasets reachable by hard links from ``group``, by path (``"train/x"``)."""
    found: dict[str, h5py.Dataset] = {}

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            found[name] = obj

    group.visititems(visit)
    return found


def refuse_outside_storage(path: Path, datasets: dict[str, h5py.Dataset]) -> None:
    """Raise :class:`DatasetError` naming ``path`` and the key of the first dataset whose data
    are stored outside the file: external storage or a virtual dataset."""
    for key, dataset in datasets.items():
        if dataset.is_virtual:
            raise DatasetError(
                path,
                f"dataset {key!r} is a virtual dataset (its data are mapped from source datasets "
                "that may lie in other files); refused, as nothing outside the dataset file is "
                "read: store the data in the file itself",
            )
        external = dataset.external
        if external:
            names = ", ".join(repr(_text(entry[0])) for entry in external[:3])
            raise DatasetError(
                path,
                f"dataset {key!r} keeps its data in external raw file(s) outside the HDF5 file "
                f"({names}); refused, as nothing outside the dataset file is read: store the "
                "data in the file itself",
            )


def _text(name: str | bytes) -> str:
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else name


def load_hdf5(
    path: str | Path,
    *,
    x_key: str | None = None,
    y_key: str | None = None,
    staging: Staging | None = None,
    max_bytes: int | None = None,
) -> Dataset:
    """Read an HDF5 file of samples and labels.

    Parameters
    ----------
    path : str or Path
        The HDF5 file.
    x_key, y_key : str, optional
        Dataset paths of the samples and labels (``"x"``, ``"train/images"``); by default ``x``
        or ``images`` and ``y`` or ``labels``. A dataset ``ids`` holds optional sample ids.
    staging : Staging, optional
        Copy the samples block by block to a staging file instead of memory (out of core).
    max_bytes : int, optional
        The most bytes the samples may take once loaded, and the labels and ids each (see
        :mod:`poisonguard.limits`): checked against the declared shapes before anything is read.

    Returns
    -------
    Dataset
        With ``format="hdf5"``; images ``(N, C, H, W)`` or a table ``(N, D)``.

    Raises
    ------
    DatasetError
        If the file is not HDF5, lacks the arrays (the message lists the datasets it has), has a
        dataset stored outside it (external storage, virtual dataset) or holds unusable data.
    """
    path = Path(path)
    if path.is_dir():
        raise DatasetError(path, "is a folder, not an HDF5 file")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise DatasetError(path, f"is not a readable HDF5 file ({exc})") from exc
    with handle:
        datasets = list_datasets(handle)
        refuse_outside_storage(path, datasets)
        try:
            return load_arrays(
                list(datasets),
                datasets.__getitem__,
                path=path,
                format="hdf5",
                x_key=x_key,
                y_key=y_key,
                staging=staging,
                max_bytes=max_bytes,
            )
        except OSError as exc:
            raise DatasetError(path, f"could not be read ({exc})") from exc
