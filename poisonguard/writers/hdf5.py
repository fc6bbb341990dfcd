"""Write a changed copy of an HDF5 dataset with the source's structure.

The copy has the source's groups, links, attributes and datasets, in the same places:

* the samples ``x`` and labels ``y`` (found as the loader finds them) hold the kept rows, built as
  described in :mod:`poisonguard.writers.arrays` (stored dtype and axis order, changed samples
  rounded/clipped or cast back, labels in the stored representation);
* every other dataset whose first axis has the source's ``N`` rows is subset to the kept rows;
* other datasets are copied unchanged (``H5Ocopy``, with their filters and attributes);
* soft and external links are recreated as they are, hard-linked aliases stay aliases;
* when the source has no ``ids`` dataset and the copy is not all rows in order, a top-level
  ``ids`` dataset (``int64``) of the source row numbers is added.

Datasets that are rewritten keep their dtype, compression (gzip, lzf), shuffle, fletcher32 and
scale-offset filters and are written chunked along the sample axis (about 1 MiB per chunk). The
source is read a block of rows at a time (about 64 MiB), so a large file is never held whole.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from poisonguard.dataset import Dataset
from poisonguard.errors import DatasetError
from poisonguard.loaders.arrays import IDS_KEY
from poisonguard.loaders.hdf5 import list_datasets, refuse_outside_storage
from poisonguard.writers.arrays import (
    ArrayPlan,
    new_labels,
    plan_arrays,
    replace_samples,
    rows_per_chunk,
)

__all__ = ["write_hdf5"]

logger = logging.getLogger(__name__)

CHUNK_TARGET_BYTES = 1 << 20
"""Aim for HDF5 chunks of about this many bytes."""
SLICE_SLACK_ROWS = 64
"""Rows wanted in a block are read as one slice when it spans at most twice their number plus
this many rows; more scattered rows are read with a point selection."""


def write_hdf5(
    source: Dataset,
    target: Path,
    *,
    rows: np.ndarray,
    labels: np.ndarray,
    x: np.ndarray | None,
    x_changed: np.ndarray,
    options: dict,
) -> list[str]:
    """Write the copy of HDF5 ``source`` to ``target`` (a new path; not atomic by itself).

    Arguments are those of :func:`poisonguard.writers.write_like`, already validated;
    ``options`` holds ``x_key``/``y_key``.

    Returns
    -------
    list of str
        The source id of each kept row (what the loader will report for the copy).
    """
    path = Path(source.path)
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise DatasetError(path, f"is not a readable HDF5 file ({exc})") from exc
    with handle:
        datasets = list_datasets(handle)
        refuse_outside_storage(path, datasets)  # checked at loading too; the file may have changed
        plan = plan_arrays(list(datasets), datasets.__getitem__, source, rows, options)
        if plan.add_ids and IDS_KEY in handle:
            raise DatasetError(
                path, f"cannot add an {IDS_KEY!r} dataset of source ids: the name is in use"
            )
        y_new = new_labels(handle[plan.y_key][()], source, rows, labels, name=plan.y_key)
        with h5py.File(target, "w", track_order=_tracks_order(handle["/"])) as out:
            copier = _Copier(handle, plan, rows, y_new, x, x_changed)
            copier.copy_group(handle, out)
            if plan.add_ids:
                out.create_dataset(
                    IDS_KEY, data=rows.astype(np.int64), chunks=(min(rows.shape[0], 1 << 17),)
                )
    return [source.ids[r] for r in rows.tolist()]


def _tracks_order(group: h5py.Group) -> bool:
    return bool(group.id.get_create_plist().get_link_creation_order())


def _copy_attrs(src: Any, dst: Any) -> None:
    """Copy every attribute of ``src`` to ``dst`` with its stored dtype.

    Attributes holding object or region references (such as HDF5 dimension-scale lists) point
    into the source file and are left out, with a warning in the log.
    """
    for key in src.attrs:
        dtype = src.attrs.get_id(key).dtype
        if h5py.check_dtype(ref=dtype) is not None:
            logger.warning("%s: attribute %r holds HDF5 references; not copied", src.name, key)
            continue
        dst.attrs.create(key, src.attrs[key], dtype=dtype)


def _read_rows(dataset: h5py.Dataset, index: np.ndarray) -> np.ndarray:
    """``dataset[index]`` for distinct row indices in any order.

    Rows close together are read as one slice; scattered rows with an increasing point selection.
    """
    order = np.argsort(index, kind="stable")
    wanted = index[order]
    low, high = int(wanted[0]), int(wanted[-1]) + 1
    if high - low <= 2 * wanted.shape[0] + SLICE_SLACK_ROWS:
        taken = dataset[low:high][wanted - low]
    else:
        taken = dataset[wanted]
    if np.array_equal(order, np.arange(order.shape[0])):
        return taken
    out = np.empty_like(taken)
    out[order] = taken
    return out


class _Copier:
    """Recursively copies the source file into the output, rewriting the per-sample datasets."""

    def __init__(
        self,
        handle: h5py.File,
        plan: ArrayPlan,
        rows: np.ndarray,
        y_new: np.ndarray,
        x: np.ndarray | None,
        x_changed: np.ndarray,
    ) -> None:
        self.plan = plan
        self.rows = rows
        self.y_new = y_new
        self.x = x
        self.x_changed = x_changed
        self.roles = {handle[plan.x_key].id: "x", handle[plan.y_key].id: "y"}
        self.done: dict[Any, Any] = {}  # source object id -> output object (hard-link aliases)

    def copy_group(self, src: h5py.Group, dst: h5py.Group) -> None:
        _copy_attrs(src, dst)
        for name in src:
            link = src.get(name, getlink=True)
            if isinstance(link, h5py.SoftLink):
                dst[name] = h5py.SoftLink(link.path)
                continue
            if isinstance(link, h5py.ExternalLink):
                dst[name] = h5py.ExternalLink(link.filename, link.path)
                continue
            obj = src[name]
            if obj.id in self.done:
                dst[name] = self.done[obj.id]
                continue
            if isinstance(obj, h5py.Group):
                child = dst.create_group(name, track_order=_tracks_order(obj))
                self.done[obj.id] = child
                self.copy_group(obj, child)
            elif isinstance(obj, h5py.Dataset):
                self.done[obj.id] = self.copy_dataset(obj, dst, name)
            else:  # a committed datatype
                src.copy(obj, dst, name=name)
                self.done[obj.id] = dst[name]

    def copy_dataset(self, src: h5py.Dataset, dst: h5py.Group, name: str) -> h5py.Dataset:
        role = self.roles.get(src.id)
        n_rows = self.rows.shape[0]
        if role == "y":
            out = _create_like(src, dst, name, n_rows)
            out[...] = self.y_new
            return out
        if role != "x" and not (src.shape and src.shape[0] == self.plan.n):
            src.parent.copy(src, dst, name=name)
            return dst[name]
        out = _create_like(src, dst, name, n_rows)
        if out.size == 0:
            return out
        row_bytes = int(np.prod(src.shape[1:], dtype=np.int64)) * src.dtype.itemsize
        step = rows_per_chunk(row_bytes)
        for start in range(0, n_rows, step):
            stop = min(n_rows, start + step)
            block = _read_rows(src, self.rows[start:stop])
            if role == "x" and self.x is not None:
                changed = self.x_changed[start:stop]
                if changed.any():
                    new = self.x[start:stop][changed]
                    block[changed] = replace_samples(block[changed], new, self.plan.layout)
            out[start:stop] = block
        return out


def _create_like(src: h5py.Dataset, dst: h5py.Group, name: str, n_rows: int) -> h5py.Dataset:
    """An empty dataset of ``n_rows`` rows with the dtype, filters and attributes of ``src``."""
    shape = (n_rows, *src.shape[1:])
    kwargs: dict[str, Any] = {}
    if 0 not in shape:
        row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * src.dtype.itemsize
        kwargs["chunks"] = (
            max(1, min(n_rows, CHUNK_TARGET_BYTES // max(row_bytes, 1))),
            *shape[1:],
        )
        if src.compression is not None:
            kwargs["compression"] = src.compression
            kwargs["compression_opts"] = src.compression_opts
        if src.shuffle:
            kwargs["shuffle"] = True
        if src.fletcher32:
            kwargs["fletcher32"] = True
        if src.scaleoffset is not None:
            kwargs["scaleoffset"] = src.scaleoffset
    out = dst.create_dataset(name, shape=shape, dtype=src.dtype, **kwargs)
    _copy_attrs(src, out)
    return out
