"""Small PNG thumbnails of image samples for the report's "most suspicious" gallery."""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

__all__ = ["image_thumbnail_png", "MIN_THUMBNAIL_SIDE", "MAX_THUMBNAIL_SIDE"]

MIN_THUMBNAIL_SIDE = 64
"""Small images are enlarged (nearest neighbour, so pixels stay visible) to at least this short
side."""

MAX_THUMBNAIL_SIDE = 128
"""No side of a thumbnail is longer than this."""


def image_thumbnail_png(image: np.ndarray) -> bytes:
    """Encode one image sample as a PNG thumbnail.

    Parameters
    ----------
    image : ndarray, shape (C, H, W) or (H, W)
        ``C`` is 1 (grayscale) or 3 (RGB). ``uint8`` values are used as they are; any other
        dtype is min-max scaled to 0..255 per image (a constant image becomes black; NaN is
        treated as the minimum).

    Returns
    -------
    bytes
        PNG data. Images whose short side is below :data:`MIN_THUMBNAIL_SIDE` are enlarged with
        nearest-neighbour resampling (by a whole factor where that fits), and no side exceeds
        :data:`MAX_THUMBNAIL_SIDE` (larger images are reduced with area averaging).
    """
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] not in (1, 3) or min(arr.shape[1:]) < 1:
        raise ValueError(f"expected an image of shape (C, H, W) with C 1 or 3, got {arr.shape}")
    pixels = _to_uint8(arr)
    if pixels.shape[0] == 1:
        picture = Image.fromarray(pixels[0])  # 2-D uint8 -> "L"
    else:
        picture = Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0)))  # -> "RGB"

    width, height = picture.size
    size, resample = _thumbnail_size(width, height)
    if size != (width, height):
        picture = picture.resize(size, resample=resample)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    values = np.asarray(arr, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(arr.shape, dtype=np.uint8)
    low = values[finite].min()
    high = values[finite].max()
    values = np.where(finite, values, low)
    if high <= low:
        return np.zeros(arr.shape, dtype=np.uint8)
    scaled = (values - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _thumbnail_size(width: int, height: int) -> tuple[tuple[int, int], Image.Resampling]:
    """Target size and resampling filter for a ``width`` x ``height`` image."""
    short, long = min(width, height), max(width, height)
    if short < MIN_THUMBNAIL_SIDE:
        factor = math.ceil(MIN_THUMBNAIL_SIDE / short)
        if long * factor <= MAX_THUMBNAIL_SIDE:
            return (width * factor, height * factor), Image.Resampling.NEAREST
        scale = MAX_THUMBNAIL_SIDE / long
    elif long > MAX_THUMBNAIL_SIDE:
        scale = MAX_THUMBNAIL_SIDE / long
    else:
        return (width, height), Image.Resampling.NEAREST
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BOX
    return size, resample
