"""The embedding cache: one HDF5 file per fingerprint.

Training the embedding model is the slow part of a scan. Its outputs (features, probabilities,
training dynamics) are stored under ``<cache dir>/<fingerprint>.h5``; a later scan of the same data
with the same settings reads them back. Files are written atomically and fsynced. A damaged cache
file is reported, ignored and rewritten, never trusted.

Whoever can write the cache can plant clean-looking features for a poisoned data set, so a cache
folder or file that another user could have written is **neither read nor written**
(:func:`cache_trouble`): one writable by group or others (mode ``& 0o022``), owned by another
user, or (a file) a symbolic link. :func:`load_cached` then warns and returns None (the embedding
is recomputed); :func:`store_cached` and :func:`streamed_cache_file` raise
:class:`UntrustedCacheError` (a :class:`PermissionError`, handled as an unwritable cache).
PoisonGuard creates the folder ``0o700`` and its files ``0o600``, whatever the umask.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from poisonguard.atomic import atomic_path
from poisonguard.ondisk import ArrayFile
from poisonguard.results import Embedding
from poisonguard.rows import as_rows

__all__ = [
    "default_cache_dir",
    "load_cached",
    "store_cached",
    "streamed_cache_file",
    "append_rows",
    "finish_streamed",
    "records_in_file",
    "cache_trouble",
    "trusted_cache_dir",
    "UntrustedCacheError",
]

logger = logging.getLogger(__name__)

_ARRAYS = ("features", "probabilities", "loss", "margin", "gradient_sq")
_FORMAT = 2


def default_cache_dir() -> Path:
    """The default cache folder.

    ``$POISONGUARD_CACHE_DIR``, else ``$XDG_CACHE_HOME/poisonguard``, else ``~/.cache/poisonguard``.
    """
    if os.environ.get("POISONGUARD_CACHE_DIR"):
        return Path(os.environ["POISONGUARD_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "poisonguard"


def cache_file(cache_dir: Path, fingerprint: str) -> Path:
    return Path(cache_dir) / f"{fingerprint}.h5"


class UntrustedCacheError(PermissionError):
    """The cache folder could be written by another user; it is not used. A
    :class:`PermissionError`, so that callers treat it as an unwritable cache: a warning in
    memory, an error (exit 1) out of core."""


def cache_trouble(path: str | Path, *, folder: bool = False) -> str | None:
    """Why the cache folder (``folder=True``) or cache file ``path`` cannot be trusted, or None
    if it can (or does not exist).

    Not trusted: writable by group or others (``st_mode & 0o022``), owned by another user than
    this process's effective user, or, for a file, a symbolic link. A folder's link is followed
    (``~/.cache`` is often one); what it points to is checked.
    """
    path = Path(path)
    try:
        info = os.stat(path) if folder else os.lstat(path)
    except FileNotFoundError:
        return None
    if not folder and stat.S_ISLNK(info.st_mode):
        return "is a symbolic link"
    if info.st_mode & 0o022:
        return f"is writable by other users (mode {stat.S_IMODE(info.st_mode):o})"
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        return f"is owned by another user (uid {info.st_uid}, not {os.geteuid()})"
    return None


def trusted_cache_dir(cache_dir: Path) -> Path:
    """Create ``cache_dir`` (``0o700``) if missing and return it; raise
    :class:`UntrustedCacheError` if it cannot be trusted (:func:`cache_trouble`)."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    trouble = cache_trouble(cache_dir, folder=True)
    if trouble is not None:
        raise UntrustedCacheError(
            errno.EACCES,
            f"cache folder {trouble}; anyone who can write it could plant features, so it is "
            "not used (chmod go-w it, or choose another --cache-dir)",
            str(cache_dir),
        )
    return cache_dir


def load_cached(
    cache_dir: Path, fingerprint: str, n_samples: int, *, chunk_rows: int | None = None
) -> Embedding | None:
    """Return the cached embedding for ``fingerprint``, or None if absent or unusable.

    With ``chunk_rows`` the per-sample arrays stay in the file (:func:`records_in_file`; checked
    block by block here).
    """
    path = cache_file(cache_dir, fingerprint)
    if not path.is_file():
        return None
    for where, trouble in (
        (Path(cache_dir), cache_trouble(cache_dir, folder=True)),
        (path, cache_trouble(path)),
    ):
        if trouble is not None:
            logger.warning(
                "not reading the embedding cache: %s %s (anyone who can write it could plant "
                "features); recomputing",
                where,
                trouble,
            )
            return None
    names = _ARRAYS if chunk_rows is None else ()
    try:
        with h5py.File(path, "r") as handle:
            if (
                handle.attrs.get("fingerprint") != fingerprint
                or handle.attrs.get("format") != _FORMAT
            ):
                raise ValueError("fingerprint or format does not match")
            arrays: dict = {name: handle[name][()] for name in names}
            weights = {name: handle["weights"][name][()] for name in handle["weights"]}
            model = json.loads(handle.attrs["model"])
            input_shape = tuple(int(v) for v in handle.attrs["input_shape"])
            accuracy = float(handle.attrs["train_accuracy"])
            on_disk = handle["features"]
            if on_disk.ndim != 2 or on_disk.dtype.kind != "f":
                raise ValueError("features are not a 2-D float array")
        if chunk_rows is not None:
            arrays = records_in_file(path, chunk_rows)
            if any(
                array.shape[0] != n_samples or not as_rows(array).all_finite()
                for array in arrays.values()
            ):
                raise ValueError("array lengths or values do not match the dataset")
        if any(
            arrays[name].shape[0] != n_samples or not np.all(np.isfinite(arrays[name]))
            for name in names
        ):
            raise ValueError("array lengths or values do not match the dataset")
        if not all(np.all(np.isfinite(w)) for w in weights.values()):
            raise ValueError("weights are not finite")
    except (OSError, KeyError, ValueError, TypeError) as exc:
        logger.warning("ignoring damaged cache file %s (%s); recomputing", path, exc)
        return None
    return Embedding(
        **arrays,
        model=model,
        input_shape=input_shape,
        train_accuracy=accuracy,
        fingerprint=fingerprint,
        from_cache=True,
        cache_path=path,
        weights=weights,
    )


def records_in_file(path: Path, chunk_rows: int) -> dict[str, ArrayFile]:
    """The per-sample arrays of the cache file ``path`` (features, probabilities and the
    training records), each an :class:`~poisonguard.ondisk.ArrayFile` read ``chunk_rows`` rows at
    a time: what an out-of-core :class:`~poisonguard.results.Embedding` holds."""
    return {name: ArrayFile(path, name, chunk_rows) for name in _ARRAYS}


def store_cached(cache_dir: Path, embedding: Embedding) -> Path:
    """Write ``embedding`` to its cache file atomically; return the path.

    Raises :class:`UntrustedCacheError` if the folder cannot be trusted, :class:`OSError` if
    writing fails."""
    path = cache_file(trusted_cache_dir(cache_dir), embedding.fingerprint)
    with atomic_path(path, mode=0o600) as tmp:
        with h5py.File(tmp, "w") as handle:
            handle.create_dataset("features", data=embedding.features, compression="lzf")
            finish_streamed(handle, embedding)
    return path


@contextmanager
def streamed_cache_file(cache_dir: Path, fingerprint: str) -> Iterator[tuple[Path, h5py.File]]:
    """Open a new cache file to be filled while the embedding is computed (the out-of-core
    path): yields its final path and the open file; the caller writes the ``features``
    dataset block by block (:func:`append_rows`) and then :func:`finish_streamed`. The file
    appears under its name only when the block succeeds. Raises :class:`UntrustedCacheError`
    if the folder cannot be trusted."""
    path = cache_file(trusted_cache_dir(cache_dir), fingerprint)
    with atomic_path(path, mode=0o600) as tmp:
        with h5py.File(tmp, "w") as handle:
            yield path, handle


def append_rows(
    handle: h5py.File, n_rows: int, rows: slice, block: np.ndarray, *, name: str = "features"
) -> None:
    """Write ``block`` as rows ``rows`` of the ``(n_rows, F)`` dataset ``name`` (created, in
    compressed blocks of at most 4,096 rows, on the first call)."""
    if name not in handle:
        width = block.shape[1]
        handle.create_dataset(
            name,
            shape=(n_rows, width),
            dtype=block.dtype,
            chunks=(max(1, min(4096, n_rows)), width),
            compression="lzf",
        )
    handle[name][rows] = block


def finish_streamed(handle: h5py.File, embedding: Embedding) -> None:
    """Write what is not written yet of ``embedding``'s arrays (the streamed features and
    probabilities are), its weights and its description. An array in a staging file (training
    records of an out-of-core scan) is copied a block of rows at a time."""
    for name in _ARRAYS:
        if name in handle:
            continue
        values = as_rows(getattr(embedding, name))
        if values.in_memory:
            handle.create_dataset(name, data=values.whole(), compression="lzf")
        else:
            for rows, block in values.blocks():
                append_rows(handle, values.shape[0], rows, block, name=name)
    group = handle.create_group("weights")
    for name, value in embedding.weights.items():
        group.create_dataset(name, data=value)
    handle.attrs["fingerprint"] = embedding.fingerprint
    handle.attrs["format"] = _FORMAT
    handle.attrs["model"] = json.dumps(embedding.model, sort_keys=True)
    handle.attrs["input_shape"] = np.asarray(embedding.input_shape, dtype=np.int64)
    handle.attrs["train_accuracy"] = embedding.train_accuracy
