"""Read samples and labels from a numpy ``.npz`` archive.

The archive is opened with ``numpy.load(path, allow_pickle=False)``: an array of Python objects
would need unpickling, which can run arbitrary code, so such a file is refused. The samples,
labels and optional ids are picked and read as described in :mod:`poisonguard.loaders.arrays`
(each array of an archive is decompressed whole when it is first used).

Before an array is read, the size its ``.npy`` header declares (or, for a member that is not a
``.npy`` file, the size its zip entry declares once decompressed) is checked against the limit on
what is held in memory
(:mod:`poisonguard.limits`): a header of a few bytes can declare terabytes, which numpy would
try to allocate.
"""

from __future__ import annotations

import logging
import zipfile
import zlib
from pathlib import Path

import numpy as np

from poisonguard.dataset import Dataset
from poisonguard.errors import DatasetError
from poisonguard.limits import ByteLimit, byte_limit, check_declared, declared_bytes, npy_header
from poisonguard.loaders.arrays import load_arrays

__all__ = ["load_npz"]

logger = logging.getLogger(__name__)

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_NPY_MAGIC = b"\x93NUMPY"
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError)


def _check_is_zip(path: Path, start: bytes) -> None:
    """Refuse a file whose first bytes ``start`` are not those of a zip archive."""
    if start.startswith(_NPY_MAGIC):
        raise DatasetError(
            path,
            "is a single .npy array, not an .npz archive; save x and y together with "
            "numpy.savez(path, x=..., y=...)",
        )
    if not start.startswith(_ZIP_MAGIC):
        raise DatasetError(path, "is not an .npz archive (a zip file of .npy arrays)")


def _check_member_size(path: Path, archive, key: str, limit: ByteLimit) -> None:
    """Refuse array ``key`` of ``archive`` (a ``numpy.lib.npyio.NpzFile``) when the size it
    declares is over ``limit``, reading only its header: the shape and dtype of its ``.npy``
    header (numpy allocates that much and reads into it), or for a member that is not a
    ``.npy`` file (read as bytes) the decompressed size its zip entry declares."""
    member = key if key in archive.zip.namelist() else f"{key}.npy"
    try:
        info = archive.zip.getinfo(member)
        with archive.zip.open(member) as handle:
            header = npy_header(handle)
    except (KeyError, *_READ_ERRORS):
        return  # reading the array says what is wrong
    if header is None:
        check_declared(
            path,
            f"member {key!r} declares in its zip entry a decompressed size of",
            info.file_size,
            limit,
            place=" (an .npz member is read whole into memory)",
        )
        return
    shape, dtype = header
    if dtype.hasobject:
        return  # refused as pickled objects when read
    check_declared(
        path,
        f"array {key!r} declares shape {shape} of {dtype} in its .npy header, which would take",
        declared_bytes(shape, dtype.itemsize),
        limit,
        place=" in memory (an .npz array is read whole)",
    )


def load_npz(
    path: str | Path,
    *,
    x_key: str | None = None,
    y_key: str | None = None,
    max_bytes: int | None = None,
) -> Dataset:
    """Read an ``.npz`` archive of samples and labels.

    Parameters
    ----------
    path : str or Path
        The ``.npz`` file.
    x_key, y_key : str, optional
        Names of the sample and label arrays; by default ``x`` or ``images`` and ``y`` or
        ``labels``. An array ``ids`` holds optional sample ids.
    max_bytes : int, optional
        The most bytes one array may take once read (see :mod:`poisonguard.limits`; by default
        ``--max-bytes``, else half the memory).

    Returns
    -------
    Dataset
        With ``format="npz"``; images ``(N, C, H, W)`` or a table ``(N, D)``.

    Raises
    ------
    DatasetError
        If the file is not a readable archive, an array holds pickled objects (refused), the
        arrays are missing (the message lists those it has) or hold unusable data, or an array
        declares a size over the limit.
    """
    path = Path(path)
    if path.is_dir():
        raise DatasetError(path, "is a folder, not an .npz file")
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise DatasetError(path, f"could not be opened ({exc})") from exc
    # The file is opened here, not by numpy.load, so that it is closed on every error.
    with handle:
        _check_is_zip(path, handle.read(len(_NPY_MAGIC)))
        handle.seek(0)
        try:
            archive = np.load(handle, allow_pickle=False)
        except (*_READ_ERRORS, ValueError) as exc:
            raise DatasetError(path, f"is not a readable .npz archive ({exc})") from exc

        limit = byte_limit(max_bytes)

        def get(key: str) -> np.ndarray:
            _check_member_size(path, archive, key, limit)
            try:
                value = archive[key]
            except ValueError as exc:
                if "pickle" in str(exc):
                    raise DatasetError(
                        path,
                        f"array {key!r} holds pickled Python objects, which are refused "
                        "(unpickling can run arbitrary code); save plain numeric or string "
                        "arrays instead",
                    ) from exc
                raise DatasetError(path, f"array {key!r} could not be read ({exc})") from exc
            except _READ_ERRORS as exc:
                raise DatasetError(path, f"array {key!r} is corrupt ({exc})") from exc
            if not isinstance(value, np.ndarray):
                raise DatasetError(path, f"member {key!r} is not a numpy array")
            return value

        with archive:
            return load_arrays(
                list(archive.files),
                get,
                path=path,
                format="npz",
                x_key=x_key,
                y_key=y_key,
                max_bytes=max_bytes,
            )
