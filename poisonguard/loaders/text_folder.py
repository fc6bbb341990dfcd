"""Read a folder of text files with one sub-folder per class: ``root/<class_name>/<name>.txt``.

Each ``.txt`` file (any case) is one sample: its whole content, UTF-8 (a byte-order mark at the
start is dropped), kept exactly, line ends included. The class of a text is the name of its
folder; the sample id is its path relative to the root with forward slashes
(``"pos/review_0001.txt"``). Samples are ordered by class (numerically for numeric folder names,
see :func:`~poisonguard.dataset.encode_labels`), then by file name.

A folder is read as text (:func:`is_text_folder`, used by
:func:`~poisonguard.loaders.detect_format`) when its class folders hold ``.txt`` files and no
images; otherwise it is an image folder (:mod:`poisonguard.loaders.image_folder`).

Ignored, as in image folders: hidden files and folders (names starting with ``.``), ``__MACOSX``
folders, files directly under the root (a README), and other files or sub-folders inside class
folders (with a note). Symbolic links are followed only when their target lies inside the root;
a link that leads outside it, a link loop or a broken link is skipped, never read, and listed in
:attr:`Dataset.notes` (:mod:`poisonguard.loaders.links`). The sizes of all the files are added up
and checked against the limit on what is held in memory before any is read.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from poisonguard.dataset import Dataset, encode_labels
from poisonguard.errors import DatasetError
from poisonguard.limits import byte_limit
from poisonguard.loaders.image_folder import IMAGE_EXTENSIONS
from poisonguard.loaders.links import (
    folder_notes,
    link_problem,
    real_folder,
    skipped_links_text,
)
from poisonguard.loaders.text_rows import TextColumns, TextRows, check_text_bytes, decode_utf8

__all__ = ["TEXT_EXTENSIONS", "is_text_folder", "load_text_folder"]

logger = logging.getLogger(__name__)

TEXT_EXTENSIONS = frozenset({".txt"})
"""File extensions read as texts (compared in lower case)."""

_IGNORED_FOLDERS = frozenset({"__MACOSX"})
_LAYOUT = "a text-folder dataset is <root>/<class_name>/<name>.txt"


def _extension(name: str) -> str:
    return os.path.splitext(name)[1].lower()


def _class_folders(root: Path, real_root: str, links: list[tuple[str, str]]) -> list[str]:
    """Names of the class folders under ``root``; skipped links are added to ``links``."""
    classes: list[str] = []
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.name.startswith(".") or entry.name in _IGNORED_FOLDERS:
                continue
            problem = link_problem(real_root, entry)
            if problem is not None:
                links.append((entry.name, problem))
            elif entry.is_dir():
                classes.append(entry.name)
    return classes


def is_text_folder(path: str | Path) -> bool:
    """Whether the folder ``path`` holds class folders with ``.txt`` files and no images."""
    root = Path(path)
    try:
        real_root = real_folder(root)
        texts = images = False
        for name in _class_folders(root, real_root, []):
            with os.scandir(root / name) as entries:
                for entry in entries:
                    if entry.name.startswith(".") or link_problem(real_root, entry):
                        continue
                    extension = _extension(entry.name)
                    texts = texts or extension in TEXT_EXTENSIONS
                    images = images or extension in IMAGE_EXTENSIONS
    except OSError:
        return False  # the image-folder loader says what is wrong with the folder
    return texts and not images


def _text_files(
    root: Path,
    class_name: str,
    real_root: str,
    links: list[tuple[str, str]],
    ignored: list[str],
) -> list[tuple[str, int]]:
    """Sorted ``(file name, size)`` of the texts in one class folder."""
    found: list[tuple[str, int]] = []
    links_before = len(links)
    with os.scandir(root / class_name) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            problem = link_problem(real_root, entry)
            if problem is not None:
                links.append((f"{class_name}/{entry.name}", problem))
            elif _extension(entry.name) in TEXT_EXTENSIONS and entry.is_file():
                found.append((entry.name, entry.stat().st_size))
            else:
                ignored.append(f"{class_name}/{entry.name}" + ("/" if entry.is_dir() else ""))
    if not found:
        skipped = links[links_before:]
        hint = f"; symbolic links skipped: {skipped_links_text(skipped)}" if skipped else ""
        raise DatasetError(
            root / class_name, f"class folder {class_name!r} has no .txt files" + hint
        )
    return sorted(found)


def load_text_folder(path: str | Path, *, max_bytes: int | None = None) -> Dataset:
    """Read a folder of class folders of ``.txt`` files.

    Parameters
    ----------
    path : str or Path
        The root folder; each sub-folder is a class and holds its texts.
    max_bytes : int, optional
        The most bytes the texts may take in memory (see :mod:`poisonguard.limits`).

    Returns
    -------
    Dataset
        ``kind="text"``, ``format="text-folder"``, ``ids`` the relative paths, ``class_names``
        the folder names.

    Raises
    ------
    DatasetError
        Naming the folder or file: no class folders, a class folder without ``.txt`` files
        (symbolic links that were skipped are listed), fewer than two classes, a file that is
        empty or only white space, not UTF-8 (with the line), or unreadable, or files that
        together take more than the limit.
    """
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(root, f"is not a folder; {_LAYOUT}")
    real_root = real_folder(root)
    links: list[tuple[str, str]] = []
    ignored: list[str] = []
    try:
        folders = _class_folders(root, real_root, links)
        if not folders:
            hint = f"; symbolic links skipped: {skipped_links_text(links)}" if links else ""
            raise DatasetError(root, f"has no class folders; {_LAYOUT}" + hint)
        files = {name: _text_files(root, name, real_root, links, ignored) for name in folders}
    except OSError as exc:
        raise DatasetError(root, f"could not be listed ({exc})") from exc
    codes, _ = encode_labels(folders, path=root)
    ordered = [
        (f"{folder}/{name}", folder, size)
        for _, folder in sorted(zip(codes.tolist(), folders, strict=True))
        for name, size in files[folder]
    ]
    total = sum(size for _, _, size in ordered)
    limit = byte_limit(max_bytes)
    check_text_bytes(root, total, limit, source=f"{len(ordered):,} files of {total:,} bytes")
    rows = TextRows(root, TextColumns("text", "label", "id"))
    for rel, folder, size in ordered:
        full = root / rel
        try:
            with open(full, "rb") as handle:
                data = handle.read(size + 1)
        except OSError as exc:
            raise DatasetError(full, f"could not be read ({exc})") from exc
        if len(data) > size:
            raise DatasetError(full, "grew while the folder was read; read it again when done")
        text = decode_utf8(full, data)
        if not text.strip():
            raise DatasetError(full, "is empty (or only white space); every text file needs a text")
        rows.add(text, folder, rel, where=rel)
    notes = folder_notes(root, links, ignored, ".txt files", logger)
    dataset = rows.dataset(format="text-folder", notes=notes)
    logger.info("%s: read %d texts in %d classes", root, dataset.n_samples, dataset.n_classes)
    return dataset
