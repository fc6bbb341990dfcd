"""Write a changed copy of an ``.npz`` archive, member by member.

The copy has the source's members in the source's order, each with the source's zip compression
(stored or deflated), date and attributes:

* the samples ``x`` and labels ``y`` (found as the loader finds them) hold the kept rows, built as
  described in :mod:`poisonguard.writers.arrays`;
* every other array whose first axis has the source's ``N`` rows is subset to the kept rows;
* every other member is copied as it is, without being decoded (so an array of pickled objects
  that is not about the samples is carried over without unpickling it);
* when the source has no ``ids`` array and the copy is not all rows in order, an ``ids`` member
  (``int64``) of the source row numbers is added at the end, deflated if any source member is
  (as :func:`numpy.savez_compressed` would), else stored (as :func:`numpy.savez`).

A member that is unchanged (all rows kept in order, and for ``x``/``y`` no sample or label
changed) is copied without decoding. Arrays are read with ``allow_pickle=False``; a per-sample
array of pickled objects can only be carried over when all rows are kept in order, otherwise the
copy is refused. Each rewritten array is decompressed whole (the zip format has no partial reads).
"""

from __future__ import annotations

import logging
import shutil
import time
import zipfile
import zlib
from pathlib import Path
from typing import IO, NamedTuple

import numpy as np

from poisonguard.dataset import Dataset
from poisonguard.errors import DatasetError
from poisonguard.loaders.arrays import IDS_KEY
from poisonguard.writers.arrays import is_all_rows, new_labels, plan_arrays, replace_samples

__all__ = ["write_npz"]

logger = logging.getLogger(__name__)

_NPY_SUFFIX = ".npy"
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, ValueError)
_COPY_BUFFER = 1 << 20


class _Header(NamedTuple):
    shape: tuple[int, ...]
    dtype: np.dtype


def write_npz(
    source: Dataset,
    target: Path,
    *,
    rows: np.ndarray,
    labels: np.ndarray,
    x: np.ndarray | None,
    x_changed: np.ndarray,
    options: dict,
) -> list[str]:
    """Write the copy of ``.npz`` ``source`` to ``target`` (a new path; not atomic by itself).

    Arguments are those of :func:`poisonguard.writers.write_like`, already validated;
    ``options`` holds ``x_key``/``y_key``.

    Returns
    -------
    list of str
        The source id of each kept row (what the loader will report for the copy).
    """
    path = Path(source.path)
    with path.open("rb") as handle:
        try:
            archive = zipfile.ZipFile(handle)
        except _READ_ERRORS as exc:
            raise DatasetError(path, f"is not a readable .npz archive ({exc})") from exc
        with archive:
            try:
                return _write(archive, source, target, rows, labels, x, x_changed, options)
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                raise DatasetError(path, f"could not be read ({exc})") from exc


def _write(
    archive: zipfile.ZipFile,
    source: Dataset,
    target: Path,
    rows: np.ndarray,
    labels: np.ndarray,
    x: np.ndarray | None,
    x_changed: np.ndarray,
    options: dict,
) -> list[str]:
    path = Path(source.path)
    members = {info.filename.removesuffix(_NPY_SUFFIX): info for info in archive.infolist()}
    headers = {key: _read_header(archive, info) for key, info in members.items()}

    def get(key: str) -> _Header:
        header = headers[key]
        if header is None:
            raise DatasetError(path, f"member {key!r} is not a numpy array")
        return header

    plan = plan_arrays(list(members), get, source, rows, options)
    all_rows = is_all_rows(rows, plan.n)
    y_raw = _read_array(archive, members[plan.y_key], path)
    y_new = new_labels(y_raw, source, rows, labels, name=plan.y_key)
    labels_same = all_rows and bool(np.array_equal(labels, source.labels))
    x_same = all_rows and not x_changed.any()
    deflated = any(info.compress_type != zipfile.ZIP_STORED for info in members.values())

    with target.open("wb") as out_file, zipfile.ZipFile(out_file, "w", allowZip64=True) as out:
        out.comment = archive.comment
        for key, info in members.items():
            header = headers[key]
            per_sample = header is not None and header.shape[:1] == (plan.n,)
            if key == plan.y_key and not labels_same:
                _write_array(out, _info_like(info), y_new)
            elif key == plan.x_key and not x_same:
                stored = _read_array(archive, info, path)[rows]
                if x is not None and x_changed.any():
                    stored[x_changed] = replace_samples(
                        stored[x_changed], x[x_changed], plan.layout
                    )
                _write_array(out, _info_like(info), stored)
            elif per_sample and not all_rows and key not in (plan.x_key, plan.y_key):
                if header.dtype.hasobject:
                    raise DatasetError(
                        path,
                        f"array {key!r} has one entry per sample but holds pickled Python "
                        "objects, which are not unpickled; it cannot be subset",
                    )
                _write_array(out, _info_like(info), _read_array(archive, info, path)[rows])
            else:
                _copy_member(archive, info, out)
        if plan.add_ids:
            info = zipfile.ZipInfo(IDS_KEY + _NPY_SUFFIX, date_time=time.localtime()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED if deflated else zipfile.ZIP_STORED
            _write_array(out, info, rows.astype(np.int64))
    return [source.ids[r] for r in rows.tolist()]


def _read_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> _Header | None:
    """Shape and dtype of a ``.npy`` member from its header (nothing unpickled); else None."""
    if not info.filename.endswith(_NPY_SUFFIX) or info.is_dir():
        return None
    with archive.open(info) as stream:
        try:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
            else:
                stream.seek(0)
                array = np.lib.format.read_array(stream, allow_pickle=False)
                shape, dtype = array.shape, array.dtype
        except ValueError:
            return None
    return _Header(tuple(int(s) for s in shape), np.dtype(dtype))


def _read_array(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> np.ndarray:
    with archive.open(info) as stream:
        try:
            return np.lib.format.read_array(stream, allow_pickle=False)
        except ValueError as exc:
            raise DatasetError(path, f"array {info.filename!r} could not be read ({exc})") from exc


def _info_like(info: zipfile.ZipInfo) -> zipfile.ZipInfo:
    """A fresh entry with the name, date, compression and attributes of ``info``."""
    new = zipfile.ZipInfo(info.filename, date_time=info.date_time)
    new.compress_type = info.compress_type
    new.external_attr = info.external_attr
    new.comment = info.comment
    return new


def _write_array(out: zipfile.ZipFile, info: zipfile.ZipInfo, array: np.ndarray) -> None:
    with out.open(info, "w", force_zip64=True) as stream:
        np.lib.format.write_array(stream, np.asanyarray(array), allow_pickle=False)


def _copy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, out: zipfile.ZipFile) -> None:
    """Copy one member's content unchanged (decompressed and compressed again)."""
    new = _info_like(info)
    if info.is_dir():
        out.writestr(new, b"")
        return
    with archive.open(info) as stream_in, out.open(new, "w", force_zip64=True) as stream_out:
        _copy(stream_in, stream_out)


def _copy(stream_in: IO[bytes], stream_out: IO[bytes]) -> None:
    shutil.copyfileobj(stream_in, stream_out, _COPY_BUFFER)
