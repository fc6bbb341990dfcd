"""What sets a flagged group apart from the rest of its class: the evidence a reviewer looks at.

For each class the scan calls a backdoor target, the report compares the flagged group (the
class's samples flagged ``"backdoor"``) with the class's *core* (its unflagged samples):

- **images**: the group's mean image minus the core's. Poisons share a trigger, which survives
  the averaging while the varied content of the images cancels out, so a patch shows as a
  compact bright square and a blended pattern or sinusoid as a texture. Summarised by the L2
  norm of the difference, the bounding box of the pixels whose absolute difference exceeds
  half the largest (which locates a patch) and the box of those of them connected to the
  largest (the patch alone, without the shadows of poisons' source classes), and drawn as a
  diverging-colour map
  (:func:`difference_png`);
- **tables**: the columns whose means differ most, in standard deviations of the core
  (:func:`top_columns`): a trigger written into a few columns stands out by tens of them;
- **texts**: no mean; the words and short phrases found in far more of the group's texts than
  of the dataset's other texts, with a test that says how sure that is
  (:mod:`poisonguard.report.text_evidence`): a rare-word trigger or an inserted sentence tops
  the list.

:func:`group_difference` streams over the class's rows in blocks (the samples may stay in a
staging file on an out-of-core scan), so a class is never held whole: memory is one block plus
a few arrays of one sample's shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from poisonguard.embed.text_tokens import TokenizerSettings
from poisonguard.report import text_evidence
from poisonguard.report.thumbnails import image_thumbnail_png
from poisonguard.results import ScanResult
from poisonguard.rows import RowsLike, as_rows

__all__ = [
    "BLOCK_BYTES",
    "TOP_COLUMNS",
    "GroupDifference",
    "bounding_box",
    "difference_png",
    "group_difference",
    "mean_images_png",
    "peak_region",
    "signed_pixel_map",
    "summarize",
    "target_group_differences",
    "top_columns",
]

BLOCK_BYTES = 32 << 20
"""Most bytes of one float64 block of rows read by :func:`group_difference`."""

TOP_COLUMNS = 10
"""How many columns of a table the report lists."""


@dataclass
class GroupDifference:
    """Means of a flagged group and of its class's core, computed by :func:`group_difference`.

    Attributes
    ----------
    code : int
        The class.
    group_size, core_size : int
        Samples in the flagged group and in the core.
    group_mean, core_mean : ndarray, shape of one sample (C, H, W) or (D,), float64
        NaN where the group or the core is empty.
    core_std : ndarray, same shape
        Standard deviation of the core (population; NaN for an empty core).
    terms : dict or None
        For texts (whose means are empty arrays), the terms over-represented in the group
        against every other text of the dataset
        (:func:`~poisonguard.report.text_evidence.over_represented_terms`); None otherwise.
    """

    code: int
    group_size: int
    core_size: int
    group_mean: np.ndarray
    core_mean: np.ndarray
    core_std: np.ndarray
    terms: dict[str, Any] | None = None

    @property
    def difference(self) -> np.ndarray:
        """``group_mean - core_mean``."""
        return self.group_mean - self.core_mean


class _Moments:
    """Count, mean and sum of squared deviations, merged block by block (Chan et al. 1979), so
    that a mean over many blocks of large values does not lose precision."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.count = 0
        self.mean = np.zeros(shape, dtype=np.float64)
        self.m2 = np.zeros(shape, dtype=np.float64)

    def add(self, block: np.ndarray) -> None:
        n = block.shape[0]
        if n == 0:
            return
        mean = block.mean(axis=0)
        m2 = ((block - mean) ** 2).sum(axis=0)
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * (n / total)
        self.m2 += m2 + delta**2 * (self.count * n / total)
        self.count = total

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        if self.count == 0:
            nan = np.full(self.mean.shape, np.nan)
            return nan, nan.copy()
        return self.mean.copy(), np.sqrt(self.m2 / self.count)


def group_difference(
    x: RowsLike,
    labels: np.ndarray,
    flagged_mask: np.ndarray,
    code: int,
    *,
    core_mask: np.ndarray | None = None,
) -> GroupDifference:
    """Mean of the flagged group of class ``code`` and mean and spread of the class's core.

    Parameters
    ----------
    x : ndarray or ArrayFile, shape (N, ...)
        The samples: images (N, C, H, W) or table rows (N, D). Read in blocks of the class's
        rows (at most :data:`BLOCK_BYTES` as float64), never whole.
    labels : ndarray of int, shape (N,)
    flagged_mask : ndarray of bool, shape (N,)
        The flagged group: samples of class ``code`` where this is true (samples of other
        classes are ignored).
    code : int
        The class.
    core_mask : ndarray of bool, shape (N,), optional
        The core: samples of class ``code`` outside ``flagged_mask`` where this is true.
        Default: all the class's samples outside ``flagged_mask``; the report passes the
        scan's unflagged samples, which leaves out samples flagged for another reason.

    Returns
    -------
    GroupDifference
    """
    x = as_rows(x)
    labels = np.asarray(labels).reshape(-1)
    flagged_mask = np.asarray(flagged_mask, dtype=bool).reshape(-1)
    if labels.shape[0] != x.shape[0] or flagged_mask.shape[0] != x.shape[0]:
        raise ValueError(
            f"x has {x.shape[0]} rows, labels {labels.shape[0]} and the mask "
            f"{flagged_mask.shape[0]}; they must be the same"
        )
    in_class = labels == code
    group = in_class & flagged_mask
    core = in_class & ~flagged_mask
    if core_mask is not None:
        core = in_class & np.asarray(core_mask, dtype=bool).reshape(-1) & ~flagged_mask
    members = np.flatnonzero(group | core)  # sorted: a file reads them block by block
    shape = tuple(int(s) for s in x.shape[1:])
    width = max(1, math.prod(shape))
    step = max(1, min(members.size, BLOCK_BYTES // (8 * width)))
    moments = {"group": _Moments(shape), "core": _Moments(shape)}
    for start in range(0, members.size, step):
        rows = members[start : start + step]
        block = x.take(rows, np.float64)
        in_group = group[rows]
        moments["group"].add(block[in_group])
        moments["core"].add(block[core[rows]])
    group_mean, _ = moments["group"].result()
    core_mean, core_std = moments["core"].result()
    return GroupDifference(
        code=int(code),
        group_size=moments["group"].count,
        core_size=moments["core"].count,
        group_mean=group_mean,
        core_mean=core_mean,
        core_std=core_std,
    )


# --- images ----------------------------------------------------------------------------------


def signed_pixel_map(difference: np.ndarray) -> np.ndarray:
    """One signed value per pixel of a (C, H, W) difference: the value of the channel whose
    difference is largest in magnitude (a grayscale image's own value). Unlike a mean over the
    channels, a colour change whose channels move in opposite directions does not cancel."""
    diff = np.nan_to_num(np.asarray(difference, dtype=np.float64))
    if diff.ndim == 2:
        return diff
    strongest = np.abs(diff).argmax(axis=0)
    return np.take_along_axis(diff, strongest[None], axis=0)[0]


def _strong_pixels(difference: np.ndarray) -> np.ndarray | None:
    """Pixels whose absolute difference (the largest over the channels) exceeds half the largest
    of all; ``None`` when the difference is zero everywhere."""
    magnitude = np.abs(signed_pixel_map(difference))
    top = float(magnitude.max()) if magnitude.size else 0.0
    if not top > 0:
        return None
    return magnitude > 0.5 * top


def _box(mask: np.ndarray) -> dict[str, int]:
    rows, cols = np.nonzero(mask)
    return {
        "row_min": int(rows.min()),
        "row_max": int(rows.max()),
        "col_min": int(cols.min()),
        "col_max": int(cols.max()),
        "pixels": int(rows.size),
    }


def bounding_box(difference: np.ndarray) -> dict[str, int] | None:
    """Rows and columns (0-based, inclusive) that bound the pixels whose absolute difference
    (the largest over the channels) exceeds half the largest of all, with their count
    (``pixels``); ``None`` when the difference is zero everywhere."""
    strong = _strong_pixels(difference)
    return None if strong is None else _box(strong)


def peak_region(difference: np.ndarray) -> dict[str, int] | None:
    """Like :func:`bounding_box`, but only for the strong pixels connected (8-neighbours) to the
    largest difference: the spot of a patch, without the shadows that poisons taken from other
    classes leave elsewhere in the image."""
    strong = _strong_pixels(difference)
    if strong is None:
        return None
    regions, _ = ndimage.label(strong, structure=np.ones((3, 3), dtype=bool))
    magnitude = np.abs(signed_pixel_map(difference))
    peak = np.unravel_index(int(np.argmax(magnitude)), magnitude.shape)
    return _box(regions == regions[peak])


def difference_png(difference: np.ndarray) -> bytes:
    """The signed pixel map (:func:`signed_pixel_map`) as a diverging-colour PNG: blue where the
    group is darker than the core, white where they agree, red where it is brighter, scaled
    symmetrically so that full blue and full red are minus and plus the largest absolute
    difference. Small images are enlarged like the thumbnails (pixels stay square)."""
    signed = signed_pixel_map(difference)
    top = float(np.abs(signed).max()) if signed.size else 0.0
    scaled = signed / top if top > 0 else np.zeros_like(signed)
    positive = np.clip(scaled, 0.0, 1.0)
    negative = np.clip(-scaled, 0.0, 1.0)
    # white (1, 1, 1) fades to red (1, 0, 0) above zero and to blue (0, 0, 1) below it
    red = 1.0 - negative
    green = 1.0 - positive - negative
    blue = 1.0 - positive
    rgb = np.stack([red, green, blue])
    return image_thumbnail_png(np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8))


def mean_images_png(
    group_mean: np.ndarray,
    core_mean: np.ndarray,
    value_range: tuple[float, float] | None = None,
) -> tuple[bytes, bytes]:
    """The two mean images as PNGs on one shared grey scale, so that their brightness can be
    compared: ``value_range`` (low, high) maps to black and white (pass ``(0, 255)`` for
    ``uint8`` data); by default the lowest and highest value of either image."""
    group = np.nan_to_num(np.asarray(group_mean, dtype=np.float64))
    core = np.nan_to_num(np.asarray(core_mean, dtype=np.float64))
    if value_range is None:
        both = np.concatenate([group.ravel(), core.ravel()])
        value_range = (float(both.min()), float(both.max())) if both.size else (0.0, 1.0)
    low, high = value_range
    if not high > low:
        high = low + 1.0

    def encode(image: np.ndarray) -> bytes:
        pixels = np.clip(np.rint((image - low) * (255.0 / (high - low))), 0, 255)
        return image_thumbnail_png(pixels.astype(np.uint8))

    return encode(group), encode(core)


# --- tables ----------------------------------------------------------------------------------


def top_columns(
    gd: GroupDifference, names: list[str] | None = None, count: int = TOP_COLUMNS
) -> list[dict[str, Any]]:
    """The ``count`` columns whose group and core means differ most in core standard
    deviations, largest first.

    Each entry: ``column`` (its name, else ``"column <index>"``), ``index``, ``group_mean``,
    ``core_mean``, ``core_std`` and ``standardized_difference`` (``(group_mean - core_mean) /
    core_std``). A column that is constant in the core (``core_std`` 0) but not in the group
    ranks first, with an infinite standardized difference; ties keep the column order.
    """
    diff = np.asarray(gd.difference, dtype=np.float64).reshape(-1)
    std = np.asarray(gd.core_std, dtype=np.float64).reshape(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        standardized = np.where(std > 0, diff / np.where(std > 0, std, 1.0), np.sign(diff) * np.inf)
    standardized = np.where(np.isnan(diff), np.nan, standardized)
    key = np.abs(standardized)
    key = np.where(np.isnan(key), -1.0, key)
    order = np.argsort(-key, kind="stable")[: max(0, count)]
    group_mean = gd.group_mean.reshape(-1)
    core_mean = gd.core_mean.reshape(-1)
    rows = []
    for index in order:
        index = int(index)
        name = names[index] if names is not None and index < len(names) else f"column {index}"
        rows.append(
            {
                "column": name,
                "index": index,
                "group_mean": float(group_mean[index]),
                "core_mean": float(core_mean[index]),
                "core_std": float(std[index]),
                "standardized_difference": float(standardized[index]),
            }
        )
    return rows


# --- the report --------------------------------------------------------------------------------


def summarize(
    gd: GroupDifference, kind: str, class_name: str, feature_names: list[str] | None = None
) -> dict[str, Any]:
    """A JSON-able summary of ``gd`` (``report.json``'s ``findings.group_differences``).

    Keys ``class``, ``code``, ``group_size``, ``core_size``; for images also
    ``difference_l2`` (L2 norm of the mean difference over all pixels and channels, in the
    data's units), ``max_abs_difference``, ``bounding_box`` (:func:`bounding_box`) and
    ``peak_region`` (:func:`peak_region`); for
    tables ``top_columns`` (:func:`top_columns`); for texts ``over_represented``
    (:func:`~poisonguard.report.text_evidence.over_represented_terms`: ``others_size``,
    ``tested``, ``alpha``, ``max_words`` and ``terms``, the strongest first).
    """
    summary: dict[str, Any] = {
        "class": class_name,
        "code": gd.code,
        "group_size": gd.group_size,
        "core_size": gd.core_size,
    }
    diff = gd.difference
    if kind == "image":
        finite = np.nan_to_num(diff)
        summary["difference_l2"] = float(np.linalg.norm(finite))
        summary["max_abs_difference"] = float(np.abs(finite).max()) if finite.size else 0.0
        summary["bounding_box"] = bounding_box(diff)
        summary["peak_region"] = peak_region(diff)
    elif kind == "text":
        summary["over_represented"] = gd.terms
    else:
        summary["top_columns"] = top_columns(gd, feature_names)
    return summary


def target_group_differences(result: ScanResult) -> list[GroupDifference]:
    """One :class:`GroupDifference` per class the scan calls a backdoor target, in class order:
    its samples flagged ``"backdoor"`` against its unflagged samples. Classes whose group or
    core is empty are left out. Texts have no mean: theirs carry the terms over-represented in
    the group instead (:attr:`GroupDifference.terms`; the dataset's texts are read into one
    :class:`~poisonguard.report.text_evidence.TermIndex` for all the classes, with the scan's
    tokenizer limit)."""
    dataset = result.dataset
    flagged = np.asarray(result.flagged, dtype=bool).reshape(-1)
    if result.finding is not None:
        backdoor = np.asarray(result.finding, dtype=object) == "backdoor"
    else:
        backdoor = flagged
    targets = [f.code for f in result.class_findings if f.verdict == "backdoor-target"]
    if dataset.kind == "text":
        return _text_groups(result, targets, backdoor, flagged)
    out = []
    for code in targets:
        gd = group_difference(dataset.x, dataset.labels, backdoor, code, core_mask=~flagged)
        if gd.group_size and gd.core_size:
            out.append(gd)
    return out


def _text_groups(
    result: ScanResult, targets: list[int], backdoor: np.ndarray, flagged: np.ndarray
) -> list[GroupDifference]:
    dataset = result.dataset
    labels = np.asarray(dataset.labels).reshape(-1)
    groups = [(code, labels == code) for code in targets]
    groups = [
        (code, in_class & backdoor, in_class & ~flagged & ~backdoor) for code, in_class in groups
    ]
    groups = [g for g in groups if g[1].any() and g[2].any()]
    if not groups:
        return []
    tokenizer = dict(result.embedding.model.get("tokenizer") or {})
    max_tokens = int(tokenizer.get("max_tokens", TokenizerSettings().max_tokens))
    index = text_evidence.TermIndex(dataset.x, max_tokens=max_tokens)
    empty = np.zeros(0)
    return [
        GroupDifference(
            code=int(code),
            group_size=int(group.sum()),
            core_size=int(core.sum()),
            group_mean=empty,
            core_mean=empty,
            core_std=empty,
            terms=text_evidence.over_represented_terms(index, group),
        )
        for code, group, core in groups
    ]
