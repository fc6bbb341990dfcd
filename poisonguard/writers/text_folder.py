"""Write a changed copy of a folder of texts: ``<destination>/<class folder>/<file>.txt``.

Each kept text goes to the class folder of its (possibly new) label, under its source file name:

* a text that did not change is the source file's bytes exactly (byte-order mark and line ends
  included), also when it moves to another class folder;
* a changed text is written as UTF-8, without a byte-order mark.

Each source file is read again before it is written and must still hold the loaded text. The
folder of a class is the source folder of its first sample. A moved file whose name is taken in
its new folder (compared without case) gets a numeric suffix (``review_0001_1.txt``), as in
:mod:`poisonguard.writers.image_folder`; files that stay in their folder keep their names. The
returned ids are the final relative paths. Only the texts are written: hidden files, other files
and emptied class folders are not in the copy.

Nothing outside the source folder is read: a file's path, with every symbolic link followed,
must still lie inside the source folder.

The loader lists texts by class and file name, so a copy read back has its samples in that
order, not in ``rows`` order: match them by id.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from poisonguard.dataset import Dataset
from poisonguard.errors import DatasetError
from poisonguard.loaders.links import outside_problem, real_folder
from poisonguard.loaders.text_rows import decode_utf8
from poisonguard.writers.image_folder import _final_names
from poisonguard.writers.text_rows import changed_error, first_rows

__all__ = ["write_text_folder"]

logger = logging.getLogger(__name__)


def write_text_folder(
    source: Dataset,
    target: Path,
    *,
    rows: np.ndarray,
    labels: np.ndarray,
    x: np.ndarray | None,
    x_changed: np.ndarray,
    options: dict,
) -> list[str]:
    """Write the copy of text folder ``source`` into the empty folder ``target``.

    Arguments are those of :func:`poisonguard.writers.write_like`, already validated; ``target``
    is a new folder (not atomic by itself) and ``options`` is not used.

    Returns
    -------
    list of str
        The relative path (``"<class folder>/<file>"``) of each written text, in ``rows`` order.
    """
    root = Path(source.path)
    real_root = real_folder(root)
    folder_of = [source.ids[r].rsplit("/", 1)[0] for r in first_rows(source)]
    sources = [source.ids[r].rsplit("/", 1) for r in rows.tolist()]
    folders = [folder_of[int(c)] for c in labels.tolist()]
    names = _final_names(sources, folders)

    made: set[str] = set()
    for i, row in enumerate(rows.tolist()):
        src_file = root.joinpath(*sources[i])
        problem = outside_problem(real_root, src_file)
        if problem is not None:
            raise DatasetError(
                src_file, f"is {problem} (not read); the folder changed since it was loaded"
            )
        try:
            data = src_file.read_bytes()
        except OSError as exc:
            raise DatasetError(src_file, f"could not be read ({exc})") from exc
        if decode_utf8(src_file, data) != source.x[row]:
            raise changed_error(source)
        if x is not None and x_changed[i]:
            data = x[i].encode("utf-8")
        if folders[i] not in made:
            (target / folders[i]).mkdir()
            made.add(folders[i])
        (target / folders[i] / names[i]).write_bytes(data)
    return [f"{folder}/{name}" for folder, name in zip(folders, names, strict=True)]
