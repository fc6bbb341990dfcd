"""Decoding the images of an image folder into one ``uint8`` array ``(N, C, H, W)``.

Reading takes two passes: the first reads only the image headers (size and mode) to choose one
size and one colour mode for all images, the second decodes each image straight into one
preallocated ``uint8`` array of shape ``(N, C, H, W)``:

* ``C`` is 3 if any image is in colour (palette, RGB, RGBA, CMYK...), else 1; alpha is dropped;
  16-bit grayscale is scaled to 8 bits;
* ``(H, W)`` is the most common image size, scaled down (keeping the aspect ratio) so that its
  longer side is at most ``max_image_side``; images of another size are resized to it with
  bilinear filtering. Both are stated in :attr:`Dataset.notes`.

Sizes are checked before anything is decoded or allocated (:mod:`poisonguard.limits`): each image
whose header declares more pixels than the limit on one decoded image (width x height x 4 bytes;
by default PIL's decompression-bomb limit of 89,478,485 pixels, else ``--max-bytes``) is refused
with its size and the limit, and so is a folder whose images together would take more than the
limit on the loaded samples.

An image that cannot be read (corrupt, truncated, or over the limit) is handed to the caller's
``reject``, which raises or leaves it out (``skip_bad``, :mod:`poisonguard.loaders.image_folder`).
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from poisonguard.errors import DatasetError
from poisonguard.limits import (
    IMAGE_BYTES_PER_PIXEL,
    ByteLimit,
    byte_limit,
    check_declared,
    declared_bytes,
    image_limit,
)
from poisonguard.ondisk import ArrayFile, Staging

__all__ = ["ImageHeader", "bad_reason", "read_images"]

_PIL_FORMATS = ("PNG", "JPEG", "BMP", "GIF")  # JPEG also opens MPO (camera) files
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "F"})
_BAD_IMAGE_ERRORS = (
    OSError,  # includes PIL.UnidentifiedImageError and "image file is truncated"
    SyntaxError,  # PIL's plugins raise it for broken files ("broken PNG file")
    ValueError,
    EOFError,
    IndexError,
    struct.error,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)


class _ImageTooLarge(ValueError):
    """An image whose header declares more pixels than the limit; the message says both."""


def _check_image_size(image: Image.Image, limit: ByteLimit) -> None:
    """Raise :class:`_ImageTooLarge` when the opened (not yet decoded) ``image`` declares more
    decoded bytes than ``limit``."""
    width, height = image.size
    try:
        check_declared(
            None,
            f"declares {width} x {height} pixels ({width * height:,} pixels), which would take up "
            "to",
            width * height * IMAGE_BYTES_PER_PIXEL,
            limit,
            place=" decoded",
            hint=" (a possible decompression bomb)",
        )
    except DatasetError as exc:
        raise _ImageTooLarge(exc.problem) from None


@dataclass
class ImageHeader:
    """One image file: its path relative to the root and in full, its class code, and (once its
    header is read) its size and colour mode."""

    rel: str
    full: str
    class_index: int
    size: tuple[int, int] | None = None  # (H, W)
    mode: str = ""


def _is_gray(mode: str) -> bool:
    return mode in _GRAY_MODES or mode.startswith("I;")


def _is_high_depth(mode: str) -> bool:
    return mode == "I" or mode == "F" or mode.startswith("I;")


def bad_reason(exc: BaseException) -> str:
    """Why an image could not be read, for the error message or the skipped list."""
    if isinstance(exc, _ImageTooLarge):
        return str(exc)
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"refused as a possible decompression bomb ({exc})"
    if isinstance(exc, UnidentifiedImageError):
        return "not a readable image (not a PNG, JPEG, BMP or GIF file, or corrupt)"
    text = str(exc) or type(exc).__name__
    return f"not a readable image ({text})"


def _target_size(
    sizes: Counter[tuple[int, int]], max_side: int
) -> tuple[tuple[int, int], list[str]]:
    """The most common (H, W), scaled down to ``max_side``, and notes saying what was done."""
    notes: list[str] = []
    (h, w), _ = sizes.most_common(1)[0]
    target = (h, w)
    if max(h, w) > max_side:
        scale = max_side / max(h, w)
        target = (max(1, round(h * scale)), max(1, round(w * scale)))
        notes.append(
            f"images downscaled from {h}x{w} to {target[0]}x{target[1]} (H x W) "
            f"so that the longer side is at most {max_side} pixels"
        )
    if len(sizes) > 1:
        notes.append(
            f"images had {len(sizes)} different sizes; all resized to {target[0]}x{target[1]} "
            "(H x W) for the model"
        )
    return target, notes


def _to_8bit(image: Image.Image) -> Image.Image:
    """A 16-bit or 32-bit grayscale image as 8-bit ``L`` (16-bit range scaled to 0..255)."""
    values = np.asarray(image)
    if image.mode == "F":
        scaled = np.clip(values, 0, 255)
    else:
        scaled = np.clip(values.astype(np.float64), 0, 65535) / 257.0
    return Image.fromarray(np.rint(scaled).astype(np.uint8))


def _decode(image: Image.Image, *, rgb: bool, size: tuple[int, int]) -> np.ndarray:
    """Pixels of a loaded image as ``(H, W)`` or ``(H, W, 3)`` uint8 of ``size`` (H, W)."""
    if _is_high_depth(image.mode):
        image = _to_8bit(image)
    elif image.mode in ("P", "PA"):
        # Through RGBA so that palette transparency is handled without a warning.
        image = image.convert("RGBA")
    target_mode = "RGB" if rgb else "L"
    if image.mode != target_mode:
        image = image.convert(target_mode)
    if image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(image)


def read_images(
    root: Path,
    headers: list[ImageHeader],
    class_names: list[str],
    *,
    reject: Callable[[ImageHeader, BaseException], None],
    max_image_side: int,
    hide_progress: bool | None,
    staging: Staging | None = None,
    limits: tuple[ByteLimit, ByteLimit] | None = None,
) -> tuple[np.ndarray | ArrayFile, np.ndarray, list[str], list[str]]:
    """The two reading passes; returns ``x``, ``labels``, ``ids`` and notes. ``limits``: on one
    decoded image and on all the loaded images (default: :mod:`poisonguard.limits`')."""
    each, whole = limits or (image_limit(), byte_limit(staged=staging is not None))
    # Pass 1: sizes and modes from the headers only.
    readable: list[ImageHeader] = []
    for header in tqdm(headers, desc="reading image headers", unit="file", disable=hide_progress):
        try:
            with Image.open(header.full, formats=_PIL_FORMATS) as image:
                _check_image_size(image, each)
                header.size = (image.height, image.width)
                header.mode = image.mode
        except _BAD_IMAGE_ERRORS as exc:
            reject(header, exc)
            continue
        readable.append(header)
    _check_classes_left(
        root, class_names, {h.class_index for h in readable}, len(readable), len(headers)
    )

    # Pass 2. An image whose header read fine can still fail to decode (truncated); if leaving
    # it out changes the common size or the colour mode, decode the others again without it.
    while True:
        rgb = any(not _is_gray(h.mode) for h in readable)
        sizes = Counter(h.size for h in readable if h.size is not None)
        target, notes = _target_size(sizes, max_image_side)
        shape = (len(readable), 3 if rgb else 1, *target)
        check_declared(
            root,
            f"its {len(readable)} images, loaded as {shape[1]} x {target[0]} x {target[1]} "
            "uint8 each, would take",
            declared_bytes(shape, 1),
            whole,
            place=" in memory" if staging is None else " in a staging file",
        )
        x, labels, decoded = _decode_all(
            readable,
            reject=reject,
            rgb=rgb,
            size=target,
            hide_progress=hide_progress,
            allocate=np.empty if staging is None else staging.allocate,
            limit=each,
        )
        if len(decoded) == len(readable):
            x = x if staging is None else staging.finish(x)
            break
        _check_classes_left(
            root, class_names, {h.class_index for h in decoded}, len(decoded), len(headers)
        )
        same_rgb = rgb == any(not _is_gray(h.mode) for h in decoded)
        same_size = target == _target_size(Counter(h.size for h in decoded), max_image_side)[0]
        sizes_left = len({h.size for h in decoded})
        if same_rgb and same_size and sizes_left == len(sizes):
            # Rows of images that failed to decode are left unused at the end.
            x = x[: len(decoded)] if staging is None else staging.finish(x, len(decoded))
            labels = labels[: len(decoded)]
            break
        if staging is not None:
            staging.finish(x)  # closes the file; its folder is removed with the staging folder
        readable = decoded

    n_gray_to_rgb = sum(_is_gray(h.mode) for h in decoded) if rgb else 0
    if n_gray_to_rgb:
        notes.append(
            f"{n_gray_to_rgb} grayscale images converted to RGB because others are in colour"
        )
    n_deep = sum(_is_high_depth(h.mode) for h in decoded)
    if n_deep:
        notes.append(f"{n_deep} images with 16-bit values scaled to 8 bits")
    return x, labels, [h.rel for h in decoded], notes


def _check_classes_left(
    root: Path, class_names: list[str], present: set[int], n_read: int, total: int
) -> None:
    """Raise if skipping bad images left a class, or the whole dataset, without images."""
    if n_read == 0:
        raise DatasetError(root, f"none of the {total} images could be read")
    for code, name in enumerate(class_names):
        if code not in present:
            raise DatasetError(root / name, f"none of the images of class {name!r} could be read")


def _decode_all(
    headers: list[ImageHeader],
    *,
    reject: Callable[[ImageHeader, BaseException], None],
    rgb: bool,
    size: tuple[int, int],
    hide_progress: bool | None,
    allocate: Callable = np.empty,
    limit: ByteLimit | None = None,
) -> tuple[np.ndarray, np.ndarray, list[ImageHeader]]:
    """Decode each image straight into its row of one preallocated array (``allocate(shape,
    dtype)``: ``np.empty``, or a staging file's).

    Returns ``x`` and ``labels`` with one row per header (rows past the decoded ones unused) and
    the headers of the images that decoded. Each image's declared size is checked again against
    ``limit`` before it is decoded (the file may have changed since its header was read).
    """
    limit = limit or image_limit()
    height, width = size
    x = allocate((len(headers), 3 if rgb else 1, height, width), np.dtype(np.uint8))
    labels = np.empty(len(headers), dtype=np.int64)
    decoded: list[ImageHeader] = []
    for header in tqdm(headers, desc="decoding images", unit="image", disable=hide_progress):
        try:
            with Image.open(header.full, formats=_PIL_FORMATS) as image:
                _check_image_size(image, limit)
                if image.format in ("JPEG", "MPO") and header.size != size:
                    # Let libjpeg decode at a reduced scale (never below the target size).
                    image.draft("RGB" if rgb else "L", (width, height))
                image.load()
                pixels = _decode(image, rgb=rgb, size=size)
        except _BAD_IMAGE_ERRORS as exc:
            reject(header, exc)
            continue
        row = len(decoded)
        if rgb:
            x[row] = pixels.transpose(2, 0, 1)
        else:
            x[row, 0] = pixels
        labels[row] = header.class_index
        decoded.append(header)
    return x, labels, decoded
