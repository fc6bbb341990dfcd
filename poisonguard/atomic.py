"""Atomic writes: a reader sees the old file or the whole new one, never half of it.

Files are written to a temporary name in the destination folder and renamed into place
(``os.replace`` is atomic on POSIX within one file system). A report directory is built the same
way: filled under a temporary name beside the destination, then swapped in.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from poisonguard.errors import OutputError

__all__ = ["atomic_path", "atomic_directory"]


@contextlib.contextmanager
def atomic_path(destination: str | Path, *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``destination``; rename it into place if the block succeeds.

    The temporary file is removed if the block raises, so no half-written file is left behind.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=f"{suffix}.tmp", dir=destination.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield tmp
        os.replace(tmp, destination)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process umask (temporary files are created private; final files get normal modes)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_directory(destination: str | Path, *, replaceable: Iterable[str] = ()) -> Iterator[Path]:
    """Build a directory under a temporary name, then move it to ``destination``.

    If the block raises, the temporary directory is deleted and ``destination`` is untouched.
    An existing ``destination`` is replaced only if it holds nothing but files named in
    ``replaceable`` (the outputs of an earlier run); otherwise :class:`OutputError` is raised
    before anything is written, so a user's own files are never deleted.
    """
    destination = Path(destination)
    allowed = set(replaceable)
    if destination.exists():
        if not destination.is_dir():
            raise OutputError(f"{destination}: exists and is not a directory")
        foreign = sorted(p.name for p in destination.iterdir() if p.name not in allowed)
        if foreign:
            listed = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
            raise OutputError(
                f"{destination}: already exists and holds files this command did not write "
                f"({listed}); choose another --out"
            )
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(
        tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent)
    )
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if destination.exists():
            old = Path(
                tempfile.mkdtemp(
                    prefix=f".{destination.name}.", suffix=".old", dir=destination.parent
                )
            )
            os.replace(destination, old / "previous")
            os.replace(tmp, destination)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, destination)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
