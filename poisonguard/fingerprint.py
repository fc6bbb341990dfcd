"""Content fingerprints: the cache key of an embedding.

The fingerprint is the sha256 of the samples, the labels and the settings that change what the
embedding model computes. The same data embedded with the same settings has the same fingerprint
wherever it lives on disk; any change to a pixel, a label or a setting gives a new one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["fingerprint_arrays", "file_sha256"]

_CHUNK_BYTES = 1 << 24


def fingerprint_arrays(x: np.ndarray, labels: np.ndarray, settings: dict[str, Any]) -> str:
    """sha256 (hex) of ``x``, ``labels`` and ``settings`` (JSON with sorted keys).

    ``x`` is hashed in chunks of samples so no second copy of the data is made.
    """
    digest = hashlib.sha256()
    digest.update(b"poisonguard-embedding-v1\0")
    for array in (x, labels):
        digest.update(f"{array.dtype.str}{array.shape}\0".encode())
        rows_per_chunk = max(1, _CHUNK_BYTES // max(1, array[:1].nbytes))
        for start in range(0, array.shape[0], rows_per_chunk):
            digest.update(np.ascontiguousarray(array[start : start + rows_per_chunk]).data)
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()
