"""The embedding cache: one HDF5 file per fingerprint.

Training the embedding model is the slow part of a scan. Its outputs (features, probabilities,
training dynamics) are stored under ``<cache dir>/<fingerprint>.h5``; a later scan of the same data
with the same settings reads them back. Files are written atomically. A damaged cache file is
reported, ignored and rewritten, never trusted.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import h5py
import numpy as np

from poisonguard.atomic import atomic_path
from poisonguard.results import Embedding

__all__ = ["default_cache_dir", "load_cached", "store_cached"]

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


def load_cached(cache_dir: Path, fingerprint: str, n_samples: int) -> Embedding | None:
    """Return the cached embedding for ``fingerprint``, or None if absent or unusable."""
    path = cache_file(cache_dir, fingerprint)
    if not path.is_file():
        return None
    try:
        with h5py.File(path, "r") as handle:
            if (
                handle.attrs.get("fingerprint") != fingerprint
                or handle.attrs.get("format") != _FORMAT
            ):
                raise ValueError("fingerprint or format does not match")
            arrays = {name: handle[name][()] for name in _ARRAYS}
            weights = {name: handle["weights"][name][()] for name in handle["weights"]}
            model = json.loads(handle.attrs["model"])
            input_shape = tuple(int(v) for v in handle.attrs["input_shape"])
            accuracy = float(handle.attrs["train_accuracy"])
        if any(a.shape[0] != n_samples or not np.all(np.isfinite(a)) for a in arrays.values()):
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


def store_cached(cache_dir: Path, embedding: Embedding) -> Path:
    """Write ``embedding`` to its cache file atomically; return the path."""
    path = cache_file(cache_dir, embedding.fingerprint)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as handle:
            for name in _ARRAYS:
                handle.create_dataset(name, data=getattr(embedding, name), compression="lzf")
            group = handle.create_group("weights")
            for name, value in embedding.weights.items():
                group.create_dataset(name, data=value)
            handle.attrs["fingerprint"] = embedding.fingerprint
            handle.attrs["format"] = _FORMAT
            handle.attrs["model"] = json.dumps(embedding.model, sort_keys=True)
            handle.attrs["input_shape"] = np.asarray(embedding.input_shape, dtype=np.int64)
            handle.attrs["train_accuracy"] = embedding.train_accuracy
    return path
