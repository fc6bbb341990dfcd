"""An example PoisonGuard plug-in: one detector and one dataset format (see CONTRIBUTING.md).

Installed packages register them through entry points (``entry_points.txt`` of the
``poisonguard_example-1.0.dist-info`` folder next to this file; a real package declares them in
its ``pyproject.toml``). The tests put this folder on ``sys.path`` to install it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from poisonguard.dataset import Dataset, RowNumbers, encode_labels
from poisonguard.detectors import BACKDOOR, array_detector
from poisonguard.errors import DatasetError
from poisonguard.loaders import LoaderFormat


def class_median_distance(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Distance of each sample's features to its class's median, in units of the class's
    median distance: a sample far from every other member of its class scores high."""
    scores = np.zeros(labels.shape[0])
    for code in np.unique(labels):
        members = np.flatnonzero(labels == code)
        rows = np.asarray(features[members], dtype=np.float64)
        distance = np.linalg.norm(rows - np.median(rows, axis=0), axis=1)
        scale = np.median(distance)
        scores[members] = distance / scale if scale > 0 else 0.0
    return scores


detector = array_detector(
    "class-median-distance",
    class_median_distance,
    family=BACKDOOR,
    summary="distance to the class's median feature vector, in units of its median distance",
    inputs=("features", "labels"),
)


def load_json_arrays(path: Path, *, max_bytes: int | None = None) -> Dataset:
    """A table in a JSON file ``{"x": [[...], ...], "y": [...]}``."""
    path = Path(path)
    if max_bytes is not None and path.stat().st_size > max_bytes:
        raise DatasetError(path, f"is larger than the limit of {max_bytes} bytes")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
        x = np.asarray(content["x"], dtype=np.float32)
        y = content["y"]
    except (ValueError, KeyError, TypeError) as exc:
        expected = '{"x": rows, "y": labels}'
        raise DatasetError(path, f"is not a JSON object {expected} ({exc})") from exc
    if x.ndim != 2 or len(y) != x.shape[0]:
        raise DatasetError(path, "needs x as rows of numbers and one label per row")
    labels, class_names = encode_labels(np.asarray(y), path=path)
    return Dataset(x, labels, class_names, RowNumbers(len(y)), "table", path, "json-arrays")


json_arrays = LoaderFormat("json-arrays", (".jsonarrays",), load_json_arrays)
