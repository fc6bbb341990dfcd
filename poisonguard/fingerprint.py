"""Content fingerprints: the cache key of an embedding.

The fingerprint is the sha256 of the samples, the labels and the settings that change what the
embedding model computes. The same data embedded with the same settings has the same fingerprint
wherever it lives on disk; any change to a pixel, a character of a text, a label or a setting
gives a new one.
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

    ``x`` is hashed in chunks of samples so no second copy of the data is made. Texts (an
    object array of ``str``, a text dataset's ``x``) are hashed as each text's UTF-8 length
    and bytes, so that texts split differently (``["ab", "c"]``, ``["a", "bc"]``) differ.
    """
    digest = hashlib.sha256()
    digest.update(b"poisonguard-embedding-v1\0")
    for array in (x, labels):
        if array.dtype == object:
            _update_texts(digest, array)
            continue
        digest.update(f"{array.dtype.str}{array.shape}\0".encode())
        rows_per_chunk = max(1, _CHUNK_BYTES // max(1, array[:1].nbytes))
        for start in range(0, array.shape[0], rows_per_chunk):
            digest.update(np.ascontiguousarray(array[start : start + rows_per_chunk]).data)
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _update_texts(digest, texts: np.ndarray) -> None:
    """Add ``texts`` (a 1-D object array of ``str``) to ``digest``: each one's UTF-8 byte
    count (8 bytes, little-endian) and bytes."""
    if texts.ndim != 1:
        raise ValueError(f"texts must be a 1-D array, got shape {texts.shape}")
    digest.update(f"utf-8 texts({texts.shape[0]},)\0".encode())
    for text in texts.tolist():
        if not isinstance(text, str):
            raise TypeError(f"texts must be str, got {type(text).__name__}")
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)


def file_sha256(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()
