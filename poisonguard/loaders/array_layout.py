"""How an array file's ``x`` becomes :attr:`~poisonguard.dataset.Dataset.x`: its layout, its
dtype, and its copy chunk by chunk.

:func:`plan_layout` decides from the shape alone whether ``x`` holds images ``(N, C, H, W)`` or a
table ``(N, D)``; :func:`copy_chunked` copies it chunk by chunk into one preallocated array, so a
large file is never held twice in memory. Used by :mod:`poisonguard.loaders.arrays` (and the array
writers, which put changed rows back in the source's layout).

Accepted layouts of ``x``:

* ``(N, H, W)``: grayscale images, read as ``(N, 1, H, W)``;
* ``(N, H, W, C)`` or ``(N, C, H, W)`` with ``C`` in 1, 3 or 4: images; the channel axis is the
  one of size 1, 3 or 4 (channels-last when both could be, with a note); a fourth (alpha)
  channel is dropped, with a note;
* ``(N, D)``: a table of ``D`` numeric features.

Image values keep ``uint8`` when they are integers in ``0..255`` (``uint8`` and ``bool`` sources
always); any other numeric image becomes ``float32`` in the source's value range. Tables are
``float32``. Images are not resized here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from poisonguard.dataset import check_finite
from poisonguard.errors import DatasetError
from poisonguard.limits import declared_bytes
from poisonguard.ondisk import ArrayFile, Staging

__all__ = [
    "CHUNK_BYTES",
    "CHUNK_SAMPLES",
    "ArrayLike",
    "Layout",
    "plan_layout",
    "output_dtype",
    "copy_chunked",
    "loaded_bytes",
]

CHUNK_SAMPLES = 4096
"""Most samples copied per chunk."""
CHUNK_BYTES = 64 * 1024 * 1024
"""Rough upper bound on the memory of one chunk, so that large images use smaller chunks."""

_ACCEPTED_SHAPES = (
    "(N, H, W), (N, H, W, C) or (N, C, H, W) with C in 1, 3 or 4 for images, or (N, D) for a table"
)


class ArrayLike(Protocol):
    """What the readers need from an array: ``shape``, ``dtype`` and slicing along axis 0."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> np.dtype: ...

    def __getitem__(self, key: Any) -> Any: ...


@dataclass(frozen=True)
class Layout:
    """How a source ``x`` array maps onto :attr:`Dataset.x`.

    Attributes
    ----------
    kind : {"image", "table"}
    source : {"NHW", "NHWC", "NCHW", "ND"}
        Axis order of the source array.
    out_shape : tuple of int
        Shape of the dataset's ``x``: ``(N, C, H, W)`` or ``(N, D)``.
    drop_alpha : bool
        Whether the source has a fourth (alpha) channel that is left out.
    notes : tuple of str
        Facts for the report (a guessed layout, a dropped alpha channel).
    """

    kind: Literal["image", "table"]
    source: Literal["NHW", "NHWC", "NCHW", "ND"]
    out_shape: tuple[int, ...]
    drop_alpha: bool = False
    notes: tuple[str, ...] = ()


def plan_layout(shape: Sequence[int] | None, *, path: str | Path, name: str = "x") -> Layout:
    """Decide how an ``x`` of ``shape`` becomes images or a table (see the module docstring).

    Raises
    ------
    DatasetError
        For an empty array or a shape that is not one of the accepted ones.
    """
    if shape is None:
        raise DatasetError(path, f"{name} is an empty dataset with no shape")
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3, 4):
        raise DatasetError(
            path, f"{name} has shape {shape}; accepted shapes are {_ACCEPTED_SHAPES}"
        )
    if shape[0] == 0:
        raise DatasetError(path, f"{name} holds no samples (shape {shape})")
    if 0 in shape[1:]:
        raise DatasetError(path, f"{name} has an empty axis (shape {shape})")
    if len(shape) == 2:
        return Layout("table", "ND", shape)
    if len(shape) == 3:
        n, h, w = shape
        return Layout("image", "NHW", (n, 1, h, w))

    n, second, _, last = shape
    last_ok, second_ok = last in (1, 3, 4), second in (1, 3, 4)
    notes: list[str] = []
    if last_ok and not second_ok:
        source = "NHWC"
    elif second_ok and not last_ok:
        source = "NCHW"
    elif last_ok and second_ok:
        # Prefer a 1- or 3-channel reading over a 4-channel one, then channels-last.
        source = "NCHW" if second in (1, 3) and last == 4 else "NHWC"
        order = "(N, H, W, C)" if source == "NHWC" else "(N, C, H, W)"
        notes.append(
            f"layout guessed: {name} of shape {shape} could be channels-first or channels-last; "
            f"read as {order}"
        )
    else:
        raise DatasetError(
            path,
            f"{name} has shape {shape}; neither axis 1 nor the last axis is a channel axis of "
            f"size 1, 3 or 4; accepted shapes are {_ACCEPTED_SHAPES}",
        )
    if source == "NHWC":
        h, w, channels = shape[1], shape[2], last
    else:
        channels, h, w = second, shape[2], last
    drop_alpha = channels == 4
    if drop_alpha:
        notes.append(f"{name} has 4 channels (RGBA); the alpha channel was dropped")
    return Layout("image", source, (n, min(channels, 3), h, w), drop_alpha, tuple(notes))


def output_dtype(dtype: np.dtype, layout: Layout, *, path: str | Path, name: str) -> np.dtype:
    """``uint8`` for integer images (widened later if needed), else ``float32``."""
    if dtype.kind not in "biuf":
        raise DatasetError(
            path,
            f"{name} has dtype {dtype}; it must hold real numbers (integers or floats), "
            "not text, objects or complex values",
        )
    if layout.kind == "image" and dtype.kind in "biu":
        return np.dtype(np.uint8)
    return np.dtype(np.float32)


def _chunk_size(out_shape: tuple[int, ...], itemsize: int) -> int:
    per_sample = int(np.prod(out_shape[1:])) * max(itemsize, 4)
    return int(min(CHUNK_SAMPLES, max(1, CHUNK_BYTES // max(per_sample, 1))))


def _to_layout(block: np.ndarray, layout: Layout) -> np.ndarray:
    """One chunk of the source in the dataset's axis order (a view where possible)."""
    if layout.source == "NHW":
        return block[:, None]
    if layout.source == "NHWC":
        if layout.drop_alpha:
            block = block[..., :3]
        return block.transpose(0, 3, 1, 2)
    if layout.source == "NCHW" and layout.drop_alpha:
        return block[:, :3]
    return block


def copy_chunked(
    source: ArrayLike,
    layout: Layout,
    *,
    path: str | Path,
    name: str = "x",
    chunk_samples: int | None = None,
    staging: Staging | None = None,
) -> tuple[np.ndarray | ArrayFile, list[str]]:
    """Copy ``source`` into one array of ``layout.out_shape``, a chunk of samples at a time.

    Each chunk is read with ``source[start:stop]`` (so an ``h5py.Dataset`` is read from disk
    piecewise), put in the dataset's axis order, checked for NaN and infinity and written into
    the output, which is allocated once. Integer images are stored as ``uint8`` while their values
    fit ``0..255``; at the first chunk that does not, the output is widened to ``float32``. A numpy
    source that already has the final layout and dtype is checked and returned without a copy.

    Parameters
    ----------
    source : ArrayLike
        ``h5py.Dataset`` or numpy array with the shape ``layout`` was planned for.
    layout : Layout
        From :func:`plan_layout`.
    path, name
        File and array named in error messages.
    chunk_samples : int, optional
        Samples per chunk; by default at most 4096 and about 64 MiB.
    staging : Staging, optional
        Write the output to a staging file instead of memory (an out-of-core scan).

    Returns
    -------
    x : ndarray or ArrayFile
        ``uint8`` or ``float32`` array of shape ``layout.out_shape`` (in a file with
        ``staging``).
    notes : list of str
        Facts for the report (integer images widened to ``float32``).

    Raises
    ------
    DatasetError
        For a non-numeric dtype, NaN or infinity (naming the first bad sample), or float values
        too large for ``float32``.
    """
    src_dtype = np.dtype(source.dtype)
    dtype = output_dtype(src_dtype, layout, path=path, name=name)
    n = layout.out_shape[0]
    step = chunk_samples or _chunk_size(layout.out_shape, src_dtype.itemsize)

    if (
        staging is None
        and isinstance(source, np.ndarray)
        and src_dtype == dtype
        and layout.source in ("NHW", "NCHW", "ND")
        and not layout.drop_alpha
    ):
        out = source.reshape(layout.out_shape)
        for start in range(0, n, step):
            check_finite(out[start : start + step], path=path, offset=start, what=name)
        return np.ascontiguousarray(out), []

    notes: list[str] = []
    allocate = np.empty if staging is None else staging.allocate
    out = allocate(layout.out_shape, dtype)
    for start in range(0, n, step):
        stop = min(n, start + step)
        block = _to_layout(np.asarray(source[start:stop]), layout)
        check_finite(block, path=path, offset=start, what=name)
        if out.dtype == np.uint8 and block.dtype.kind in "iu" and block.dtype != np.uint8:
            low, high = block.min(), block.max()
            if low < 0 or high > 255:
                widened = allocate(layout.out_shape, np.dtype(np.float32))
                for done in range(0, start, step):
                    widened[done : min(start, done + step)] = out[done : min(start, done + step)]
                out = widened
                value = low if low < 0 else high
                notes.append(
                    f"{name} holds integer values outside 0..255 (e.g. {value}); "
                    "stored as float32 in the original value range"
                )
        with np.errstate(over="ignore", invalid="ignore"):
            out[start:stop] = block
        if block.dtype.kind == "f" and block.dtype.itemsize > out.dtype.itemsize:
            finite = np.isfinite(out[start:stop])
            if not finite.all():
                index = start + int(np.argwhere(~finite)[0][0])
                raise DatasetError(
                    path, f"{name} holds a value too large for float32 at sample {index}"
                )
    return (out if staging is None else staging.finish(out)), notes


def loaded_bytes(shape: tuple[int, ...], source: np.dtype, out: np.dtype) -> int:
    """Bytes of ``x`` once loaded: ``out`` per value, or ``float32`` for integer images from a
    source wider than ``uint8`` (widened when a value leaves 0..255)."""
    itemsize = out.itemsize
    if out == np.uint8 and source.kind in "iu" and source.itemsize > 1:
        itemsize = np.dtype(np.float32).itemsize
    return declared_bytes(shape, itemsize)
