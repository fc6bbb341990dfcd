"""Write a changed copy of an image folder: ``<destination>/<class folder>/<image file>``.

Each kept image goes to the class folder of its (possibly new) label, under its source file name:

* an image whose pixels did not change is copied byte for byte (``shutil.copyfile``), also when it
  moves to another class folder;
* a changed image is re-encoded in the file's own format (PNG, JPEG with quality 95, BMP, GIF),
  at the file's own size and in the file's own colour mode; see :func:`encode_like`.

The folder of a class is the source folder of its first sample (the class names are the folder
names, stripped of surrounding spaces). When a moved file meets a file of the same name in its new
folder (compared without case, for case-insensitive file systems), it gets a numeric suffix
(``img_001_1.png``); files that stay in their folder keep their names. The returned ids are the
final relative paths. Only the samples are written: hidden files, files that are not images,
images left out when loading (``skip_bad``) and emptied class folders are not in the copy.

Nothing outside the source folder is read: before a file is copied or re-encoded, its path, with
every symbolic link followed, must still lie inside the source folder (the loader skipped the
links that do not; a link changed since loading stops the copy with an error).

The loader lists samples by class and file name, so a copy read back has its samples in that
order, not in ``rows`` order: match them by id.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from poisonguard.dataset import Dataset
from poisonguard.errors import DatasetError
from poisonguard.loaders.links import outside_problem, real_folder
from poisonguard.writers.arrays import to_source_dtype

__all__ = ["write_image_folder", "encode_like"]

logger = logging.getLogger(__name__)

PROGRESS_MIN_FILES = 2000
"""Show a progress bar when writing more images than this."""
JPEG_QUALITY = 95
"""Quality of re-encoded JPEG images."""

_PIL_FORMATS = ("PNG", "JPEG", "BMP", "GIF")  # JPEG also opens MPO (camera) files
_KEPT_INFO = ("icc_profile", "dpi", "exif")
_ALPHA_MODES = {"RGBA": "RGB", "LA": "L", "RGBa": "RGB", "La": "L"}


def write_image_folder(
    source: Dataset,
    target: Path,
    *,
    rows: np.ndarray,
    labels: np.ndarray,
    x: np.ndarray | None,
    x_changed: np.ndarray,
    options: dict,
) -> list[str]:
    """Write the copy of image folder ``source`` into the empty folder ``target``.

    Arguments are those of :func:`poisonguard.writers.write_like`, already validated; ``target``
    is a new folder (not atomic by itself) and ``options`` is not used.

    Returns
    -------
    list of str
        The relative path (``"<class folder>/<file>"``) of each written image, in ``rows`` order.
    """
    root = Path(source.path)
    real_root = real_folder(root)
    folder_of: dict[int, str] = {}
    for code, sample_id in zip(source.labels.tolist(), source.ids, strict=True):
        folder_of.setdefault(code, sample_id.rsplit("/", 1)[0])
    sources = [source.ids[r].rsplit("/", 1) for r in rows.tolist()]
    folders = [folder_of.get(int(c), source.class_names[int(c)]) for c in labels.tolist()]
    names = _final_names(sources, folders)

    made: set[str] = set()
    hide = None if rows.shape[0] > PROGRESS_MIN_FILES else True
    items = tqdm(range(rows.shape[0]), desc="writing images", unit="image", disable=hide)
    for i in items:
        src_file = root.joinpath(*sources[i])
        if not src_file.is_file():
            raise DatasetError(src_file, "is missing; the folder changed since it was loaded")
        problem = outside_problem(real_root, src_file)
        if problem is not None:
            raise DatasetError(
                src_file, f"is {problem} (not read); the folder changed since it was loaded"
            )
        if folders[i] not in made:
            (target / folders[i]).mkdir()
            made.add(folders[i])
        dst_file = target / folders[i] / names[i]
        if x is not None and x_changed[i]:
            encode_like(src_file, dst_file, to_source_dtype(x[i], np.dtype(np.uint8)))
        else:
            shutil.copyfile(src_file, dst_file)
    return [f"{folder}/{name}" for folder, name in zip(folders, names, strict=True)]


def _final_names(sources: list[list[str]], folders: list[str]) -> list[str]:
    """File name of each image in its destination folder.

    Images that stay in their source folder keep their names; a moved image whose name is taken
    (ignoring case) gets the first free suffix ``_1``, ``_2``, ...
    """
    names: list[str | None] = [None] * len(sources)
    taken: dict[str, set[str]] = {}
    for i, ((old_folder, name), folder) in enumerate(zip(sources, folders, strict=True)):
        if old_folder == folder:
            names[i] = name
            taken.setdefault(folder, set()).add(name.casefold())
    for i, ((_, name), folder) in enumerate(zip(sources, folders, strict=True)):
        if names[i] is not None:
            continue
        used = taken.setdefault(folder, set())
        candidate, number = name, 0
        stem, dot, suffix = name.rpartition(".")
        while candidate.casefold() in used:
            number += 1
            candidate = f"{stem}_{number}.{suffix}" if dot else f"{name}_{number}"
        used.add(candidate.casefold())
        names[i] = candidate
    return [name for name in names if name is not None]


def encode_like(original_file: Path, destination: Path, pixels: np.ndarray) -> None:
    """Save ``pixels`` to ``destination`` in the format, mode and size of ``original_file``.

    Parameters
    ----------
    original_file : Path
        The source image the new pixels replace.
    destination : Path
        The file to write.
    pixels : ndarray of uint8, shape (C, H, W)
        The new image in the :class:`Dataset` layout (``C`` is 1 or 3).

    Notes
    -----
    * Size: when ``(H, W)`` differs from the file's size (the loader resized mixed-size or large
      images), the new pixels are resized back to the file's size with bilinear filtering, so
      the file keeps its size but its detail is that of the loaded size.
    * Mode: ``L`` and ``RGB`` are written as they are; grayscale pixels of a colour dataset are
      converted to ``L`` for a file that was ``L`` (colour in them is lost), colour pixels to
      ``RGB``. ``RGBA``/``LA`` keep the file's alpha channel; ``P`` (palette) is mapped to the
      file's own palette without dithering (a new colour becomes the nearest palette colour) and
      keeps its transparent index; ``1`` is thresholded at 128; 16-bit grayscale (``I;16``,
      ``I``) gets the 8-bit values times 257 (the inverse of the loader's scaling), ``F`` the
      values as they are; ``CMYK`` and other modes go through ``Image.convert``. A mode that
      cannot be converted back is saved as ``L`` or ``RGB``, with a warning in the log.
    * Format: the file's own (PNG, JPEG, BMP, GIF; an MPO camera file is written as JPEG), with
      its ICC profile, resolution and EXIF data; JPEG at quality 95. A GIF keeps its first frame
      only (the one the loader reads).
    """
    channels = pixels.shape[0]
    array = pixels[0] if channels == 1 else pixels.transpose(1, 2, 0)
    image = Image.fromarray(np.ascontiguousarray(array))
    with Image.open(original_file, formats=_PIL_FORMATS) as original:
        original.load()
        if image.size != original.size:
            image = image.resize(original.size, Image.Resampling.BILINEAR)
        image = _to_mode(image, original)
        file_format = "JPEG" if original.format == "MPO" else original.format
        params = {key: original.info[key] for key in _KEPT_INFO if key in original.info}
        if file_format == "JPEG":
            params["quality"] = JPEG_QUALITY
        if "transparency" in original.info and image.mode == original.mode:
            params["transparency"] = original.info["transparency"]
    image.save(destination, format=file_format, **params)


def _to_mode(image: Image.Image, original: Image.Image) -> Image.Image:
    """``image`` (``L`` or ``RGB``) in the mode of ``original`` where PIL allows."""
    mode = original.mode
    if image.mode == mode:
        return image
    try:
        if mode in _ALPHA_MODES:
            converted = image.convert(_ALPHA_MODES[mode])
            converted.putalpha(original.getchannel("A"))
            return converted.convert(mode) if converted.mode != mode else converted
        if mode == "P":
            return image.convert("RGB").quantize(palette=original, dither=Image.Dither.NONE)
        if mode == "1":
            return image.convert("L").convert("1", dither=Image.Dither.NONE)
        if mode == "F":
            return Image.fromarray(np.asarray(image.convert("L")).astype(np.float32))
        if mode == "I" or mode.startswith("I;"):
            wide = np.asarray(image.convert("L")).astype(np.int32) * 257
            dtype = np.int32 if mode == "I" else np.uint16
            converted = Image.fromarray(wide.astype(dtype))
            return converted if converted.mode == mode else converted.convert(mode)
        return image.convert(mode)
    except (ValueError, OSError) as exc:
        logger.warning(
            "%s: cannot write mode %s back (%s); saved as %s",
            original.filename,
            mode,
            exc,
            image.mode,
        )
        return image
