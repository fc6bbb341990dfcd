"""Read a folder of images with one sub-folder per class: ``root/<class_name>/<image>``.

Images are ``.png``, ``.jpg``, ``.jpeg``, ``.bmp`` or ``.gif`` (any case; a GIF's first frame).
The class of an image is the name of its folder; the sample id is its path relative to the root
with forward slashes (``"3/img_0001.png"``). Samples are ordered by class (numerically for
numeric folder names, see :func:`~poisonguard.dataset.encode_labels`), then by file name.

Reading takes two passes: the first reads only the image headers (size and mode) to choose one
size and one colour mode for all images, the second decodes each image straight into one
preallocated ``uint8`` array of shape ``(N, C, H, W)``:

* ``C`` is 3 if any image is in colour (palette, RGB, RGBA, CMYK...), else 1; alpha is dropped;
  16-bit grayscale is scaled to 8 bits;
* ``(H, W)`` is the most common image size, scaled down (keeping the aspect ratio) so that its
  longer side is at most ``max_image_side``; images of another size are resized to it with
  bilinear filtering. Both are stated in :attr:`Dataset.notes`.

Ignored: hidden files and folders (names starting with ``.``), ``__MACOSX`` folders, regular
files directly under the root (a README or a ground-truth CSV), and files with other extensions
or sub-folders inside class folders (with a note). Symbolic links (to a class folder or an
image) are followed only when their target lies inside the root; a link that leads outside it, a
link loop or a broken link is skipped, never read, and listed in :attr:`Dataset.notes` with the
reason (:mod:`poisonguard.loaders.links`). A corrupt, truncated or oversized image (a
possible decompression bomb) stops loading with an error naming the file, or with ``skip_bad`` is
left out and listed in :attr:`Dataset.skipped`.

Sizes are checked before anything is decoded or allocated (:mod:`poisonguard.limits`): each image
whose header declares more pixels than the limit on one decoded image (width x height x 4 bytes;
by default PIL's decompression-bomb limit of 89,478,485 pixels, else ``--max-bytes``) is refused
with its size and the limit, and so is a folder whose images together would take more than the
limit on the loaded samples.
"""

from __future__ import annotations

import logging
import os
import struct
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError
from tqdm import tqdm

from poisonguard.dataset import Dataset, encode_labels
from poisonguard.errors import DatasetError
from poisonguard.limits import (
    IMAGE_BYTES_PER_PIXEL,
    ByteLimit,
    byte_limit,
    check_declared,
    declared_bytes,
    image_limit,
)
from poisonguard.loaders.links import link_problem, real_folder
from poisonguard.ondisk import ArrayFile, Staging

__all__ = ["IMAGE_EXTENSIONS", "load_image_folder"]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif"})
"""File extensions read as images (compared in lower case)."""

PROGRESS_MIN_FILES = 2000
"""Show a progress bar when there are more image files than this."""

_PIL_FORMATS = ("PNG", "JPEG", "BMP", "GIF")  # JPEG also opens MPO (camera) files
_IGNORED_FOLDERS = frozenset({"__MACOSX"})
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
_EXAMPLES = 3


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
class _Header:
    rel: str
    full: str
    class_index: int
    size: tuple[int, int] | None = None  # (H, W)
    mode: str = ""


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _is_gray(mode: str) -> bool:
    return mode in _GRAY_MODES or mode.startswith("I;")


def _is_high_depth(mode: str) -> bool:
    return mode == "I" or mode == "F" or mode.startswith("I;")


def _bad_reason(exc: BaseException) -> str:
    if isinstance(exc, _ImageTooLarge):
        return str(exc)
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"refused as a possible decompression bomb ({exc})"
    if isinstance(exc, UnidentifiedImageError):
        return "not a readable image (not a PNG, JPEG, BMP or GIF file, or corrupt)"
    text = str(exc) or type(exc).__name__
    return f"not a readable image ({text})"


def _examples(items: list[str]) -> str:
    shown = ", ".join(items[:_EXAMPLES])
    return shown + (", ..." if len(items) > _EXAMPLES else "")


def _skipped_links_text(links: list[tuple[str, str]]) -> str:
    """``"<reason>: <examples>; ..."``, one part per reason, in sorted order."""
    by_reason: dict[str, list[str]] = {}
    for rel, reason in sorted(links, key=lambda link: (link[1], link[0])):
        by_reason.setdefault(reason, []).append(rel)
    return "; ".join(
        f"{len(rels)} x {reason}: {_examples(rels)}" for reason, rels in by_reason.items()
    )


def _list_classes(root: Path, real_root: str, links: list[tuple[str, str]]) -> list[str]:
    """Names of the class folders under ``root``, unsorted; skipped links are added to
    ``links`` as ``(relative path, reason)``."""
    classes: list[str] = []
    loose_images = 0
    with os.scandir(root) as entries:
        for entry in entries:
            if _is_hidden(entry.name):
                continue
            problem = link_problem(real_root, entry)
            if problem is not None:
                links.append((entry.name, problem))
                continue
            if entry.is_dir():
                if entry.name in _IGNORED_FOLDERS:
                    logger.debug("%s: ignoring folder %s", root, entry.name)
                    continue
                classes.append(entry.name)
            else:
                logger.debug("%s: ignoring file %s (not in a class folder)", root, entry.name)
                loose_images += os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS
    if not classes:
        hint = (
            f"; its {loose_images} image(s) must be moved into one folder per class"
            if loose_images
            else ""
        )
        if links:
            hint += f"; symbolic links skipped: {_skipped_links_text(links)}"
        raise DatasetError(
            root,
            "has no class folders; an image-folder dataset is <root>/<class_name>/<image files>"
            + hint,
        )
    return classes


def _list_images(
    root: Path,
    class_name: str,
    ignored: list[str],
    real_root: str,
    links: list[tuple[str, str]],
) -> list[str]:
    """Sorted image file names in one class folder; other entries are added to ``ignored``, and
    skipped symbolic links to ``links``."""
    names: list[str] = []
    links_before = len(links)
    with os.scandir(root / class_name) as entries:
        for entry in entries:
            if _is_hidden(entry.name):
                continue
            problem = link_problem(real_root, entry)
            if problem is not None:
                links.append((f"{class_name}/{entry.name}", problem))
                continue
            is_image = os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS
            if is_image and entry.is_file():
                names.append(entry.name)
            else:
                ignored.append(f"{class_name}/{entry.name}" + ("/" if entry.is_dir() else ""))
    if not names:
        skipped = links[links_before:]
        hint = f"; symbolic links skipped: {_skipped_links_text(skipped)}" if skipped else ""
        raise DatasetError(
            root / class_name,
            f"class folder {class_name!r} has no images ({', '.join(sorted(IMAGE_EXTENSIONS))})"
            + hint,
        )
    return sorted(names)


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


def load_image_folder(
    path: str | Path,
    *,
    skip_bad: bool = False,
    max_image_side: int = 64,
    staging: Staging | None = None,
    max_bytes: int | None = None,
) -> Dataset:
    """Read a folder of class folders of images.

    Parameters
    ----------
    path : str or Path
        The root folder; each sub-folder is a class and holds its images.
    skip_bad : bool, default False
        Leave out unreadable images (listed in :attr:`Dataset.skipped` with the reason) instead
        of raising.
    max_image_side : int, default 64
        Longest side of the loaded images; larger images are scaled down.
    staging : Staging, optional
        Decode the images into a staging file instead of memory (an out-of-core scan).
    max_bytes : int, optional
        The most bytes one decoded image, and all the loaded images together, may take (see
        :mod:`poisonguard.limits`; by default ``--max-bytes``, else PIL's decompression-bomb
        limit for one image and half the memory, or 64 GiB staged, for all of them).

    Returns
    -------
    Dataset
        ``kind="image"``, ``format="image-folder"``, ``x`` of dtype ``uint8`` and shape
        ``(N, C, H, W)``, ``ids`` the relative paths, ``class_names`` the folder names.

    Raises
    ------
    DatasetError
        Naming the folder or file: no class folders, a class folder without images (symbolic
        links that were skipped are listed), fewer than two classes, an unreadable image or one
        whose header declares a size over the limit (without ``skip_bad``), a class all of whose
        images are unreadable, or images that together take more than the limit.
    """
    if max_image_side < 1:
        raise ValueError(f"max_image_side must be at least 1, got {max_image_side}")
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(
            root, "is not a folder; an image-folder dataset is <root>/<class_name>/<image files>"
        )

    real_root = real_folder(root)
    links: list[tuple[str, str]] = []
    folders = _list_classes(root, real_root, links)
    ignored: list[str] = []
    files_per_class = {
        name: _list_images(root, name, ignored, real_root, links) for name in folders
    }
    codes, class_names = encode_labels(folders, path=root)
    headers = [
        _Header(rel=f"{folder}/{name}", full=os.path.join(root, folder, name), class_index=code)
        for code, folder in sorted(zip(codes.tolist(), folders, strict=True))
        for name in files_per_class[folder]
    ]
    notes: list[str] = []
    if links:
        notes.append(
            f"skipped {len(links)} symbolic link(s) that were not followed (nothing outside the "
            f"dataset folder is read): {_skipped_links_text(links)}"
        )
        logger.warning("%s: %s", root, notes[-1])
    if ignored:
        notes.append(
            f"ignored {len(ignored)} entries in class folders that are not images: "
            f"{_examples(ignored)}"
        )
    skipped: list[tuple[str, str]] = []

    def reject(header: _Header, exc: BaseException) -> None:
        reason = _bad_reason(exc)
        if not skip_bad:
            raise DatasetError(
                header.full, f"{reason}; use --skip-bad to leave out unreadable images"
            ) from exc
        logger.warning("%s: skipped: %s", header.full, reason)
        skipped.append((header.rel, reason))

    hide_progress = None if len(headers) > PROGRESS_MIN_FILES else True
    load_truncated = ImageFile.LOAD_TRUNCATED_IMAGES
    pil_pixels = Image.MAX_IMAGE_PIXELS
    limits = (image_limit(max_bytes), byte_limit(max_bytes, staged=staging is not None))
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated image is an error, never padded
        # each image's declared size is checked here against the limit, with its own message
        Image.MAX_IMAGE_PIXELS = None
        try:
            x, labels, ids, notes_decoding = _read_images(
                root,
                headers,
                class_names,
                reject=reject,
                max_image_side=max_image_side,
                hide_progress=hide_progress,
                staging=staging,
                limits=limits,
            )
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = load_truncated
            Image.MAX_IMAGE_PIXELS = pil_pixels
    notes.extend(notes_decoding)

    if skipped:
        notes.append(
            f"skipped {len(skipped)} unreadable image(s): "
            f"{_examples([rel for rel, _ in skipped])} (see the skipped list)"
        )
    logger.info(
        "%s: read %d images of shape %s in %d classes",
        root,
        len(ids),
        x.shape[1:],
        len(class_names),
    )
    return Dataset(
        x=x,
        labels=labels,
        class_names=class_names,
        ids=ids,
        kind="image",
        path=root,
        format="image-folder",
        notes=notes,
        skipped=skipped,
    )


def _check_classes_left(
    root: Path, class_names: list[str], present: set[int], n_read: int, total: int
) -> None:
    """Raise if skipping bad images left a class, or the whole dataset, without images."""
    if n_read == 0:
        raise DatasetError(root, f"none of the {total} images could be read")
    for code, name in enumerate(class_names):
        if code not in present:
            raise DatasetError(root / name, f"none of the images of class {name!r} could be read")


def _read_images(
    root: Path,
    headers: list[_Header],
    class_names: list[str],
    *,
    reject: Callable[[_Header, BaseException], None],
    max_image_side: int,
    hide_progress: bool | None,
    staging: Staging | None = None,
    limits: tuple[ByteLimit, ByteLimit] | None = None,
) -> tuple[np.ndarray | ArrayFile, np.ndarray, list[str], list[str]]:
    """The two reading passes; returns ``x``, ``labels``, ``ids`` and notes. ``limits``: on one
    decoded image and on all the loaded images (default: :mod:`poisonguard.limits`')."""
    each, whole = limits or (image_limit(), byte_limit(staged=staging is not None))
    # Pass 1: sizes and modes from the headers only.
    readable: list[_Header] = []
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


def _decode_all(
    headers: list[_Header],
    *,
    reject: Callable[[_Header, BaseException], None],
    rgb: bool,
    size: tuple[int, int],
    hide_progress: bool | None,
    allocate: Callable = np.empty,
    limit: ByteLimit | None = None,
) -> tuple[np.ndarray, np.ndarray, list[_Header]]:
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
    decoded: list[_Header] = []
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
