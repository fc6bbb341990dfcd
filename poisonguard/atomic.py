"""Atomic, durable writes: a reader sees the old output or the whole new one, never half of it.

The one place outputs are put in place (the report folder, the privacy report, ``poison`` and
``sanitize`` copies, their manifests, the embedding cache):

* :func:`atomic_path` -- a file is written to a temporary name in the destination folder
  (``.<name>.<random>.tmp``), fsynced, renamed into place (``os.replace`` is atomic on POSIX
  within one file system), and the folder is fsynced so that the rename survives a crash.
* :func:`atomic_directory` -- a folder is filled under a temporary name beside the destination,
  every file and folder in it is fsynced, and it is swapped with the old one. On Linux the swap
  is one ``renameat2(RENAME_EXCHANGE)``, so at no moment is there no output; elsewhere (or on a
  file system without it) the old folder is renamed aside, the new one renamed in and, if that
  second rename fails, the old one is renamed back. The old output is deleted last.

If the block raises (a full disk, a killed run: ``KeyboardInterrupt``) the temporary is removed
and the destination is untouched. An :class:`OSError` without a file name gets the destination's,
so the command line can say which path failed (``Error: <path>: No space left on device``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from poisonguard.errors import OutputError

__all__ = ["atomic_path", "atomic_directory", "fsync_tree", "describe_os_error"]

_RENAME_EXCHANGE = 2
_WRITE_ERRORS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES, errno.EPERM}
)


@contextlib.contextmanager
def atomic_path(
    destination: str | Path, *, suffix: str = "", mode: int | None = None
) -> Iterator[Path]:
    """Yield a temporary path beside ``destination``; fsync it and rename it into place if the
    block succeeds.

    The temporary file is removed if the block raises, so no half-written file is left behind.
    ``mode`` (default ``0o666`` less the umask) is the final file's permission bits.
    """
    destination = Path(destination)
    with _naming(destination):
        destination.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{destination.name}.", suffix=f"{suffix}.tmp", dir=destination.parent
        )
        os.close(fd)
    tmp = Path(tmp_name)
    try:
        with _naming(destination):
            os.chmod(tmp, (0o666 & ~_umask()) if mode is None else mode)
        with _naming(destination, _WRITE_ERRORS):
            yield tmp
        with _naming(destination):
            if tmp.exists():  # the block may have written it under another name and moved it
                _fsync_file(tmp)
            os.replace(tmp, destination)
            _fsync_dir(destination.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_directory(
    destination: str | Path, *, replaceable: Iterable[str] | None = ()
) -> Iterator[Path]:
    """Build a directory under a temporary name, then swap it in as ``destination``.

    If the block raises, the temporary directory is deleted and ``destination`` is untouched.
    An existing ``destination`` is replaced only if it holds nothing but files named in
    ``replaceable`` (the outputs of an earlier run); otherwise :class:`OutputError` is raised
    before anything is written, so a user's own files are never deleted. ``replaceable=None``
    replaces whatever is there (a dataset copy the caller has already checked).
    """
    destination = Path(destination)
    if replaceable is not None and destination.exists():
        if not destination.is_dir():
            raise OutputError(f"{destination}: exists and is not a directory")
        allowed = set(replaceable)
        foreign = sorted(p.name for p in destination.iterdir() if p.name not in allowed)
        if foreign:
            listed = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
            raise OutputError(
                f"{destination}: already exists and holds files this command did not write "
                f"({listed}); choose another --out"
            )
    with _naming(destination):
        destination.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(
            tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent)
        )
    try:
        with _naming(destination):
            os.chmod(tmp, 0o777 & ~_umask())
        with _naming(destination, _WRITE_ERRORS), _final_names(tmp, destination):
            yield tmp
        with _naming(destination):
            fsync_tree(tmp)
            _swap_in(tmp, destination)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(new: Path, destination: Path) -> None:
    """Put the folder ``new`` at ``destination``, deleting what was there; restore it on failure."""
    parent = destination.parent
    if not (destination.exists() or destination.is_symlink()):
        os.replace(new, destination)
        _fsync_dir(parent)
        return
    if _exchange(new, destination):  # new now holds the old output
        _fsync_dir(parent)
        _remove(new)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".old", dir=parent))
    previous = old / "previous"
    os.replace(destination, previous)
    try:
        os.replace(new, destination)
    except BaseException:
        os.replace(previous, destination)
        old.rmdir()
        raise
    _fsync_dir(parent)
    _remove(previous)
    shutil.rmtree(old, ignore_errors=True)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where that is not
    available (another system, an old C library, a file system without it)."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    at_cwd = -100
    result = renameat2(at_cwd, os.fsencode(first), at_cwd, os.fsencode(second), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))


def _renameat2():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    function.restype = ctypes.c_int
    return function


def _remove(path: Path) -> None:
    """Delete a replaced output: a folder with everything in it, a file or a link."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def fsync_tree(folder: Path) -> None:
    """fsync every file and folder under ``folder`` (links are not followed), then ``folder``."""
    for root, dirs, files in os.walk(folder):
        for name in files:
            path = Path(root) / name
            if not path.is_symlink():
                _fsync_file(path)
        for name in dirs:
            path = Path(root) / name
            if not path.is_symlink():
                _fsync_dir(path)
    _fsync_dir(folder)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    """fsync a folder so that renames in it are durable (not possible everywhere: skipped then)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def _naming(destination: Path, errnos: frozenset[int] | None = None) -> Iterator[None]:
    """Give an :class:`OSError` raised without a file name the name of ``destination`` (only
    one whose errno is in ``errnos``, when given: a failed write, not a failed read)."""
    try:
        yield
    except OSError as exc:
        if (
            exc.filename is None
            and exc.errno is not None
            and (errnos is None or exc.errno in errnos)
        ):
            raise OSError(
                exc.errno, exc.strerror or os.strerror(exc.errno), str(destination)
            ) from exc
        raise


@contextlib.contextmanager
def _final_names(tmp: Path, destination: Path) -> Iterator[None]:
    """Name ``destination``, not the temporary folder ``tmp``, in an error raised while it is
    filled (a user knows the path they asked for, not ``.<name>.<random>.tmp``)."""
    try:
        yield
    except OSError as exc:
        for attribute in ("filename", "filename2"):
            name = getattr(exc, attribute)
            if isinstance(name, str) and name.startswith(str(tmp)):
                setattr(exc, attribute, str(destination) + name[len(str(tmp)) :])
        raise
    except OutputError as exc:
        if str(tmp) in str(exc):
            raise OutputError(str(exc).replace(str(tmp), str(destination))) from exc
        raise


def describe_os_error(exc: OSError) -> str:
    """One line for an operating-system error: ``<path>: <problem>`` (``No space left on
    device``, ``Permission denied``, ``Read-only file system``)."""
    problem = exc.strerror or (os.strerror(exc.errno) if exc.errno else str(exc)) or repr(exc)
    where = exc.filename
    text = f"{os.fsdecode(where)}: {problem}" if where is not None else str(exc) or problem
    return " ".join(text.split())


def _umask() -> int:
    """The process umask (temporary files are created private; final files get normal modes)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
