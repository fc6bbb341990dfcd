"""Read a folder of images with one sub-folder per class: ``root/<class_name>/<image>``.

Images are ``.png``, ``.jpg``, ``.jpeg``, ``.bmp`` or ``.gif`` (any case; a GIF's first frame).
The class of an image is the name of its folder; the sample id is its path relative to the root
with forward slashes (``"3/img_0001.png"``). Samples are ordered by class (numerically for
numeric folder names, see :func:`~poisonguard.dataset.encode_labels`), then by file name.

The images are decoded into one ``uint8`` array ``(N, C, H, W)`` of one colour mode and one size
(the most common one, scaled down to ``max_image_side``), in two passes that check every declared
size first: :mod:`poisonguard.loaders.image_decoding`. This module walks the folder and builds
the :class:`~poisonguard.dataset.Dataset`.

Ignored: hidden files and folders (names starting with ``.``), ``__MACOSX`` folders, regular
files directly under the root (a README or a ground-truth CSV), and files with other extensions
or sub-folders inside class folders (with a note). Symbolic links (to a class folder or an
image) are followed only when their target lies inside the root; a link that leads outside it, a
link loop or a broken link is skipped, never read, and listed in :attr:`Dataset.notes` with the
reason (:mod:`poisonguard.loaders.links`). A corrupt, truncated or oversized image (a
possible decompression bomb) stops loading with an error naming the file, or with ``skip_bad`` is
left out and listed in :attr:`Dataset.skipped`.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from PIL import Image, ImageFile

from poisonguard.dataset import Dataset, encode_labels
from poisonguard.errors import DatasetError
from poisonguard.limits import byte_limit, image_limit
from poisonguard.loaders.image_decoding import ImageHeader, bad_reason, read_images
from poisonguard.loaders.links import (
    examples,
    folder_notes,
    link_problem,
    real_folder,
    skipped_links_text,
)
from poisonguard.ondisk import Staging

__all__ = ["IMAGE_EXTENSIONS", "load_image_folder"]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif"})
"""File extensions read as images (compared in lower case)."""

PROGRESS_MIN_FILES = 2000
"""Show a progress bar when there are more image files than this."""

_IGNORED_FOLDERS = frozenset({"__MACOSX"})


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


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
            hint += f"; symbolic links skipped: {skipped_links_text(links)}"
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
        hint = f"; symbolic links skipped: {skipped_links_text(skipped)}" if skipped else ""
        raise DatasetError(
            root / class_name,
            f"class folder {class_name!r} has no images ({', '.join(sorted(IMAGE_EXTENSIONS))})"
            + hint,
        )
    return sorted(names)


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
        ImageHeader(rel=f"{folder}/{name}", full=os.path.join(root, folder, name), class_index=code)
        for code, folder in sorted(zip(codes.tolist(), folders, strict=True))
        for name in files_per_class[folder]
    ]
    notes = folder_notes(root, links, ignored, "images", logger)
    skipped: list[tuple[str, str]] = []

    def reject(header: ImageHeader, exc: BaseException) -> None:
        reason = bad_reason(exc)
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
            x, labels, ids, notes_decoding = read_images(
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
            f"{examples([rel for rel, _ in skipped])} (see the skipped list)"
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
