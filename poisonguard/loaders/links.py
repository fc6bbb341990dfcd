"""Symbolic links in a dataset folder: nothing outside the folder is read.

An image folder may hold symbolic links, to a class folder or to an image. A link whose target,
with every link on the way followed, lies inside the dataset folder is read like the file it
points to. Any other link is skipped, never followed: a link that leads outside the folder (the
file is not part of the dataset: scanning it would put an outside file into the report's
thumbnails, and ``poison``/``sanitize`` would copy it), a link loop (following it never ends), or
a broken link (nothing to read). The loader lists what it skipped and why in the dataset's notes;
the image-folder writer checks again before copying a file, in case the folder changed since it
was loaded.

Only links are looked at (a plain file or folder below the dataset folder is inside it by
construction); the folder itself is taken with its links resolved, so a dataset reached through a
link is fine.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

__all__ = [
    "LEAVES_FOLDER",
    "examples",
    "real_folder",
    "link_problem",
    "outside_problem",
    "folder_notes",
    "skipped_links_text",
]

LEAVES_FOLDER = "a symbolic link that leads outside the dataset folder"
"""The reason given for a link whose target is outside the dataset folder."""

_EXAMPLES = 3


def real_folder(root: str | Path) -> str:
    """The dataset folder ``root`` with every symbolic link resolved (an absolute path)."""
    return os.path.realpath(root)


def outside_problem(real_root: str, path: str | Path) -> str | None:
    """Why ``path`` may not be read as part of the dataset folder ``real_root``, or ``None``.

    ``path`` is resolved with every link on the way followed; the problem is a link loop, a broken
    link, another error resolving it, or a target outside ``real_root`` (:data:`LEAVES_FOLDER`).
    ``real_root`` comes from :func:`real_folder`.
    """
    try:
        real = os.path.realpath(path, strict=True)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic link loop"
        if exc.errno == errno.ENOENT:
            return "a broken symbolic link"
        return f"a symbolic link that cannot be followed ({exc.strerror or exc})"
    if real != real_root and os.path.commonpath([real, real_root]) != real_root:
        return LEAVES_FOLDER
    return None


def link_problem(real_root: str, entry: os.DirEntry) -> str | None:
    """:func:`outside_problem` for a directory entry that is a symbolic link, else ``None``.

    A plain entry costs no system call (``is_symlink`` uses what ``os.scandir`` already read).
    """
    if not entry.is_symlink():
        return None
    return outside_problem(real_root, entry.path)


def examples(items: list[str]) -> str:
    """The first few of ``items``, comma-separated, with ``", ..."`` when there are more."""
    shown = ", ".join(items[:_EXAMPLES])
    return shown + (", ..." if len(items) > _EXAMPLES else "")


def skipped_links_text(links: list[tuple[str, str]]) -> str:
    """``"<n> x <reason>: <examples>; ..."`` for ``(relative path, reason)`` pairs, one part per
    reason, in sorted order (for the notes and errors of a folder loader)."""
    by_reason: dict[str, list[str]] = {}
    for rel, reason in sorted(links, key=lambda link: (link[1], link[0])):
        by_reason.setdefault(reason, []).append(rel)
    return "; ".join(
        f"{len(rels)} x {reason}: {examples(rels)}" for reason, rels in by_reason.items()
    )


def folder_notes(
    root: str | Path,
    links: list[tuple[str, str]],
    ignored: list[str],
    wanted: str,
    logger: logging.Logger,
) -> list[str]:
    """The dataset notes of a class-folder walk: the symbolic links skipped (also logged as a
    warning) and the entries ignored because they are not ``wanted`` (e.g. "images")."""
    notes: list[str] = []
    if links:
        notes.append(
            f"skipped {len(links)} symbolic link(s) that were not followed (nothing outside the "
            f"dataset folder is read): {skipped_links_text(links)}"
        )
        logger.warning("%s: %s", root, notes[-1])
    if ignored:
        notes.append(
            f"ignored {len(ignored)} entries in class folders that are not {wanted}: "
            f"{examples(ignored)}"
        )
    return notes
