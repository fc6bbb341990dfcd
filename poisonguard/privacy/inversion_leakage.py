"""How much a model inversion reveals about the training records.

A reconstruction from :func:`poisonguard.privacy.model_inversion.invert_classes` (MI-Face,
Fredrikson, Jha & Ristenpart, CCS 2015) leaks training data when it resembles particular
training records more than records of the same class the model never saw. Per inverted class:

* **distance ratio**: Euclidean distance (data scaled by ``value_max``, flattened) to the nearest
  *training* sample of the class divided by the distance to the nearest *held-out* sample of the
  class. Well below 1: the model reproduces training records. About 1: it learned what the class
  looks like in general. Above 1: the reconstruction is nearer unseen data (no sign of
  memorisation).
* **SSIM** (Wang, Bovik, Sheikh & Simoncelli, IEEE TIP 2004) between the reconstruction and its
  nearest training image: 1 for an identical image. Images only.
* **evaluation hit**: whether an independent classifier, trained on data disjoint from the target
  model's, assigns the reconstruction to its class (the attack-accuracy measure of the MI
  literature): a reconstruction only the target model recognises is adversarial noise, not
  information about the class.

Numbers only, no torch: the caller passes the reconstructions and the evaluation classifier's
probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["nearest_distances", "ssim", "inversion_leakage", "summarise_inversion"]

#: Rows of the reference data compared with a reconstruction at a time (about 25 MB of float64
#: for 784-pixel images).
CHUNK_ROWS = 4096


def nearest_distances(
    reconstructions: np.ndarray,
    recon_classes: Sequence[int] | np.ndarray,
    train_x: np.ndarray,
    train_labels: np.ndarray,
    heldout_x: np.ndarray,
    heldout_labels: np.ndarray,
    *,
    value_max: float = 1.0,
) -> dict[int, dict[str, Any]]:
    """Distance from each reconstruction to the nearest training and held-out sample of its class.

    Parameters
    ----------
    reconstructions : ndarray, shape (K, ...)
        One reconstruction per class, with the samples' shape, in data units.
    recon_classes : sequence of int, length K
        The class code of each reconstruction; each code at most once.
    train_x, heldout_x : ndarray, shape (N, ...)
        The target model's training samples and samples it never saw.
    train_labels, heldout_labels : ndarray of int, shape (N,)
    value_max : float
        Distances are computed on data divided by this (255 for ``uint8`` images), so they are
        comparable across datasets.

    Returns
    -------
    dict
        Class code -> ``{"nearest_train_distance", "nearest_heldout_distance",
        "distance_ratio", "nearest_train_index", "note"}``. ``nearest_train_index`` indexes
        ``train_x``. ``distance_ratio`` is train / held-out: ``inf`` when only the held-out
        distance is 0 (the reconstruction *is* a held-out record), 1.0 when both are 0 (the same
        record sits in both sets). When the class has no training (or no held-out) sample, that
        side's distance (and index) and the ratio are ``None`` and ``note`` says why; otherwise
        ``note`` is ``None``. Exact: the differences are computed directly, in chunks of
        :data:`CHUNK_ROWS` rows.
    """
    classes = np.asarray(recon_classes, dtype=np.int64).reshape(-1)
    reconstructions = np.asarray(reconstructions)
    if reconstructions.shape[0] != classes.size:
        raise ValueError(
            f"{reconstructions.shape[0]} reconstructions but {classes.size} class codes"
        )
    if np.unique(classes).size != classes.size:
        raise ValueError(f"each class may be reconstructed once, got {classes.tolist()}")
    for name, x, labels in (
        ("train", train_x, train_labels),
        ("heldout", heldout_x, heldout_labels),
    ):
        if x.shape[1:] != reconstructions.shape[1:]:
            raise ValueError(
                f"{name}_x samples have shape {x.shape[1:]}, the reconstructions "
                f"{reconstructions.shape[1:]}"
            )
        if len(labels) != x.shape[0]:
            raise ValueError(f"{name}_x has {x.shape[0]} samples but {len(labels)} labels")
    if not value_max > 0:
        raise ValueError(f"value_max must be > 0, got {value_max}")

    result: dict[int, dict[str, Any]] = {}
    for reconstruction, code in zip(reconstructions, classes, strict=True):
        query = reconstruction.reshape(-1).astype(np.float64) / value_max
        train_index, train_distance = _nearest(query, train_x, train_labels, int(code), value_max)
        _, heldout_distance = _nearest(query, heldout_x, heldout_labels, int(code), value_max)
        missing = [
            side
            for side, distance in (("training", train_distance), ("held-out", heldout_distance))
            if distance is None
        ]
        result[int(code)] = {
            "nearest_train_distance": train_distance,
            "nearest_heldout_distance": heldout_distance,
            "distance_ratio": _ratio(train_distance, heldout_distance),
            "nearest_train_index": train_index,
            "note": f"no {' or '.join(missing)} sample of this class" if missing else None,
        }
    return result


def _nearest(
    query: np.ndarray, x: np.ndarray, labels: np.ndarray, code: int, value_max: float
) -> tuple[int | None, float | None]:
    """Index (into ``x``) and distance of the sample of class ``code`` nearest ``query``."""
    rows = np.flatnonzero(np.asarray(labels) == code)
    if rows.size == 0:
        return None, None
    best_index, best_sq = -1, math.inf
    for start in range(0, rows.size, CHUNK_ROWS):
        part = rows[start : start + CHUNK_ROWS]
        block = x[part].reshape(part.size, -1).astype(np.float64) / value_max
        squared = np.square(block - query).sum(axis=1)
        position = int(np.argmin(squared))
        if squared[position] < best_sq:
            best_index, best_sq = int(part[position]), float(squared[position])
    return best_index, math.sqrt(best_sq)


def _ratio(train: float | None, heldout: float | None) -> float | None:
    if train is None or heldout is None:
        return None
    if heldout == 0.0:
        return 1.0 if train == 0.0 else math.inf
    return train / heldout


def ssim(a: np.ndarray, b: np.ndarray, *, value_max: float) -> float:
    """Structural similarity of two images (1 = identical; lower = less alike; can be < 0).

    Wang, Bovik, Sheikh & Simoncelli, "Image Quality Assessment: From Error Visibility to
    Structural Similarity", IEEE TIP 2004, computed by scikit-image's
    ``skimage.metrics.structural_similarity`` with its defaults (a uniform 7x7 window) and
    ``data_range=value_max``. Images smaller than 7 pixels on a side use the largest odd window
    that fits (at least 3). ``a`` and ``b`` are ``(H, W)`` or ``(C, H, W)``; one channel is
    squeezed, several are averaged (``channel_axis=0``).

    Raises ``ImportError`` when scikit-image is not installed and ``ValueError`` for images of
    different shapes or smaller than 3x3.
    """
    try:
        from skimage.metrics import structural_similarity
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "SSIM needs scikit-image: pip install scikit-image (or install poisonguard's "
            "privacy extra)"
        ) from exc
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"SSIM of images of different shapes {a.shape} and {b.shape}")
    if a.ndim == 3 and a.shape[0] == 1:
        a, b = a[0], b[0]
    if a.ndim not in (2, 3):
        raise ValueError(f"SSIM needs (H, W) or (C, H, W) images, got shape {a.shape}")
    side = min(a.shape[-2:])
    if side < 3:
        raise ValueError(f"SSIM needs images of at least 3x3 pixels, got {a.shape[-2:]}")
    window = min(7, side if side % 2 == 1 else side - 1)
    return float(
        structural_similarity(
            a,
            b,
            data_range=float(value_max),
            win_size=window,
            channel_axis=0 if a.ndim == 3 else None,
        )
    )


def inversion_leakage(
    inversion: Any,
    classes: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
    *,
    train_x: np.ndarray,
    train_labels: np.ndarray,
    heldout_x: np.ndarray,
    heldout_labels: np.ndarray,
    evaluation_probabilities: np.ndarray | None,
    value_max: float,
) -> list[dict[str, Any]]:
    """Leakage measures of one model inversion, one record per inverted class.

    Parameters
    ----------
    inversion : Inversion
        From :func:`poisonguard.privacy.model_inversion.invert_classes` (its ``images`` and
        ``confidence`` are read; images ``(K, C, H, W)`` or table rows ``(K, D)``).
    classes : sequence of int, length K
        The class code of each reconstruction (the order ``invert_classes`` was given).
    class_names : sequence of str
        Names of all class codes.
    train_x, train_labels, heldout_x, heldout_labels
        The target model's training data and data it never saw (see :func:`nearest_distances`).
    evaluation_probabilities : ndarray, shape (K, n_classes), or None
        An independent classifier's probabilities for the reconstructions (trained on data
        disjoint from the target model's). ``None``: the evaluation fields are ``None``.
    value_max : float
        Top of the data's value range (255 for ``uint8`` images); scales distances and SSIM.

    Returns
    -------
    list of dict
        Per class, in the order of ``classes``: ``class`` (name), ``code``, ``confidence`` (the
        target model's probability of the class for its reconstruction),
        ``evaluation_accuracy_hit`` (the evaluation classifier's top class is the class),
        ``evaluation_confidence`` (its probability of the class), ``nearest_train_distance``,
        ``nearest_heldout_distance``, ``distance_ratio`` (see :func:`nearest_distances`; lower
        = more leakage), ``ssim_to_nearest_train`` (``None`` for tables or a class without
        training samples; higher = more leakage), ``nearest_train_index`` and ``note``.
    """
    images = np.asarray(inversion.images)
    codes = np.asarray(classes, dtype=np.int64).reshape(-1)
    if images.shape[0] != codes.size:
        raise ValueError(f"{images.shape[0]} reconstructions but {codes.size} class codes")
    if evaluation_probabilities is not None:
        evaluation_probabilities = np.asarray(evaluation_probabilities, dtype=np.float64)
        if evaluation_probabilities.ndim != 2 or evaluation_probabilities.shape[0] != codes.size:
            raise ValueError(
                f"evaluation_probabilities must have shape ({codes.size}, n_classes), got "
                f"{evaluation_probabilities.shape}"
            )
        if codes.max(initial=-1) >= evaluation_probabilities.shape[1]:
            raise ValueError(
                f"evaluation_probabilities has {evaluation_probabilities.shape[1]} classes, "
                f"too few for class code {int(codes.max())}"
            )
    nearest = nearest_distances(
        images, codes, train_x, train_labels, heldout_x, heldout_labels, value_max=value_max
    )
    is_image = images.ndim == 4
    per_class = []
    for k, code in enumerate(codes):
        found = nearest[int(code)]
        index = found["nearest_train_index"]
        similarity = None
        if is_image and index is not None:
            similarity = ssim(images[k], train_x[index], value_max=value_max)
        hit = evaluation_confidence = None
        if evaluation_probabilities is not None:
            hit = bool(int(np.argmax(evaluation_probabilities[k])) == int(code))
            evaluation_confidence = float(evaluation_probabilities[k, code])
        per_class.append(
            {
                "class": str(class_names[int(code)]),
                "code": int(code),
                "confidence": float(inversion.confidence[k]),
                "evaluation_accuracy_hit": hit,
                "evaluation_confidence": evaluation_confidence,
                "nearest_train_distance": found["nearest_train_distance"],
                "nearest_heldout_distance": found["nearest_heldout_distance"],
                "distance_ratio": found["distance_ratio"],
                "ssim_to_nearest_train": similarity,
                "nearest_train_index": index,
                "note": found["note"],
            }
        )
    return per_class


def summarise_inversion(per_class: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The figures of :func:`inversion_leakage` over all classes.

    Returns ``evaluation_accuracy`` (share of classes whose reconstruction the evaluation
    classifier recognises: higher = the inversion reveals more about the classes),
    ``median_distance_ratio`` (lower = more leakage; ``inf`` ratios count as large values) and
    ``max_ssim`` (higher = more leakage), each over the classes where it is defined and
    ``None`` where it is defined for none; and ``n_classes``.
    """
    hits = [r["evaluation_accuracy_hit"] for r in per_class]
    hits = [h for h in hits if h is not None]
    ratios = [r["distance_ratio"] for r in per_class if r["distance_ratio"] is not None]
    similarities = [r["ssim_to_nearest_train"] for r in per_class]
    similarities = [s for s in similarities if s is not None]
    return {
        "n_classes": len(per_class),
        "evaluation_accuracy": float(np.mean(hits)) if hits else None,
        "median_distance_ratio": float(np.median(ratios)) if ratios else None,
        "max_ssim": float(max(similarities)) if similarities else None,
    }
