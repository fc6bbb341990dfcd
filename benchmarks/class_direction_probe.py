"""Probe, not a detector: does half a class carry one fixed pattern (clean-label SIG)?

    python benchmarks/detection.py --work /tmp/pg-detection --only evasive,held-out ...  # the sets
    python benchmarks/class_direction_probe.py --work /tmp/pg-detection \\
        --sets none-0.00-t0,clean-sig-0.05-t0,held-clean-sig-0.05-t6 --digits \\
        --out docs/class-direction-probe-results.json

The measurement behind "Clean-label SIG: half a class carrying one pattern" in
docs/benchmarks.md (issue 13). A clean-label backdoor adds a pattern to a random part of its target
class and keeps the labels; the scan's tests look for samples of foreign origin or far from the
class's core and miss it. In the input, two properties set such a part apart, each probed here
for every class of the given sets (the benchmark's HDF5 files, inputs scaled to [0, 1]; the
digits with ``--digits``):

1. **A direction only this class varies along**: the top generalized eigenvector of the class's
   scatter against the other classes' pooled scatter; the class's projections on it and their
   strongest empty stretch (:func:`middle_gap`: the sorted projections' spacings as local
   exponentials, as ``poisonguard.tail_gap`` models a tail; Bonferroni over the split points).
2. **The two sides differ by one pattern alone** (:func:`shift_mixing`): the upper side
   shifted by the sides' mean difference, pooled with the lower, and the share of each sample's
   nearest neighbours from its own side (chance about 0.5; Schilling, JASA 1986), with a
   permutation p-value, at 200 and 1,000 samples a side, for the classes whose gap is
   significant at the decision's level (1e-3 over the classes).

The scan's pattern-split test (``poisonguard.detectors.pattern_split``) grew out of this probe:
it takes the gap test from here (``middle_gap``, imported from it), estimates the scatter from
a sample of each class, and replaces the permutation test of the mixing with the share of the
separation the shift leaves; this probe keeps its own measurement, as recorded in
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from scipy.linalg import eigh
from sklearn.neighbors import NearestNeighbors

from poisonguard.detectors.pattern_split import middle_gap

MAX_WIDTH = 1024
"""Samples up to this many values are used as they are (a 28x28 or 32x32 grey image)."""
REDUCED_WIDTH = 256
"""Wider samples are projected on this many leading principal components first."""
NEIGHBOURS = 5
"""Nearest neighbours per sample in the mixing test."""
_PERMUTATIONS = 200
_RIDGE = 1e-3  # of the mean variance, so that a direction no other class varies along is finite


@dataclass(frozen=True)
class ClassSplit:
    """One class's projections on its own direction and their strongest gap: ``low`` holds the
    class's samples (positions in the dataset) below the gap, ``high`` those above it."""

    code: int
    eigenvalue_ratio: float
    low: np.ndarray
    high: np.ndarray
    p_value: float
    statistic: float


def _flat(block: np.ndarray) -> np.ndarray:
    return np.asarray(block, dtype=np.float64).reshape(block.shape[0], -1)


def class_directions(
    take: Callable[[np.ndarray], np.ndarray],
    labels: np.ndarray,
    codes: np.ndarray,
    *,
    min_group_size: int,
    seed: int = 0,
    block_rows: int = 8192,
) -> list[ClassSplit]:
    """Each class in ``codes``: its top generalized eigenvector against the other classes'
    pooled scatter, its samples' projections on it and their strongest gap (see the module
    docstring). ``take(rows)`` reads samples (flattened here); every class of ``labels`` counts
    in the pooled scatter."""
    labels = np.asarray(labels)
    n = labels.size
    classes = np.unique(labels)
    width = _flat(take(np.arange(min(n, 1)))).shape[1]
    basis = None
    if width > MAX_WIDTH:
        # the leading principal components of a row sample: a pattern that sets half a class
        # apart carries much variance, so it survives the reduction
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(n, size=min(n, 20 * REDUCED_WIDTH), replace=False))
        rows = _flat(take(sample))
        rows -= rows.mean(axis=0)
        _, _, vt = np.linalg.svd(rows, full_matrices=False)
        basis = vt[:REDUCED_WIDTH].T
        width = basis.shape[1]
    sums = {int(c): np.zeros(width) for c in classes}
    squares = {int(c): np.zeros((width, width)) for c in classes}
    counts = {int(c): int(np.sum(labels == c)) for c in classes}
    for start in range(0, n, block_rows):
        rows = np.arange(start, min(n, start + block_rows))
        block = _flat(take(rows))
        if basis is not None:
            block = block @ basis
        for c in np.unique(labels[rows]):
            part = block[labels[rows] == c]
            sums[int(c)] += part.sum(axis=0)
            squares[int(c)] += part.T @ part
    scatter = {c: squares[c] - np.outer(sums[c], sums[c]) / max(counts[c], 1) for c in squares}
    pooled = sum(scatter.values())
    splits = []
    for code in codes:
        code = int(code)
        members = np.flatnonzero(labels == code)
        others = n - members.size
        if members.size < 2 * min_group_size or others < 2:
            continue
        within = scatter[code] / members.size
        rest = (pooled - scatter[code]) / others
        rest = rest + _RIDGE * np.trace(rest) / width * np.eye(width)
        values, vectors = eigh(within, rest)
        direction = vectors[:, -1]
        block = _flat(take(members))
        if basis is not None:
            block = block @ basis
        projection = (block - sums[code] / members.size) @ direction
        p_value, size, statistic = middle_gap(projection, min_group_size=min_group_size)
        order = np.argsort(projection, kind="stable")
        ratio = float(values[-1] / values[-2]) if values.size > 1 and values[-2] > 0 else np.inf
        splits.append(
            ClassSplit(
                code=code,
                eigenvalue_ratio=ratio,
                low=np.sort(members[order[:size]]),
                high=np.sort(members[order[size:]]),
                p_value=p_value,
                statistic=statistic,
            )
        )
    return splits


def shift_mixing(
    first: np.ndarray,
    second: np.ndarray,
    *,
    low: float,
    high: float,
    sample: int,
    seed: int = 0,
) -> tuple[float, float]:
    """Whether ``second`` shifted by the two sets' mean difference is alike ``first``:
    ``(same_share, p_value)``.

    Up to ``sample`` samples of each (flattened rows), ``second + mean(first) - mean(second)``
    clipped to ``[low, high]``; ``same_share`` is the share of each pooled sample's
    :data:`NEIGHBOURS` nearest neighbours from its own set (about 0.5 when the sets are alike),
    ``p_value`` the share of :data:`_PERMUTATIONS` permutations of the set labels on the same
    neighbour graph with a share at least as large (plus one, over the count plus one).
    """
    rng = np.random.default_rng(seed)
    size = min(len(first), len(second), sample)
    a = _flat(first)[rng.choice(len(first), size=size, replace=False)]
    b = _flat(second)[rng.choice(len(second), size=size, replace=False)]
    shifted = np.clip(b + (a.mean(axis=0) - b.mean(axis=0)), low, high)
    pooled = np.vstack([a, shifted])
    side = np.repeat([True, False], size)
    k = min(NEIGHBOURS, 2 * size - 1)
    _, neighbours = NearestNeighbors(n_neighbors=k + 1).fit(pooled).kneighbors(pooled)
    neighbours = neighbours[:, 1:]

    def same(labels: np.ndarray) -> float:
        return float(np.mean(labels[neighbours] == labels[:, None]))

    observed = same(side)
    exceed = sum(same(rng.permutation(side)) >= observed for _ in range(_PERMUTATIONS))
    return observed, (1 + exceed) / (1 + _PERMUTATIONS)


def _load(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import csv

    import h5py

    with h5py.File(path, "r") as handle:
        x = handle["x"][:].astype(np.float64) / 255.0
        labels = handle["y"][:].astype(np.int64)
    truth = path.with_suffix(".ground_truth.csv")
    poisoned = np.zeros(labels.size, dtype=bool)
    if truth.is_file():
        with truth.open() as handle:
            poisoned = np.array([r["poisoned"] == "1" for r in csv.DictReader(handle)])
    return x, labels, poisoned


def probe(name: str, x: np.ndarray, labels: np.ndarray, poisoned: np.ndarray) -> list[dict]:
    codes = np.unique(labels)
    level = 1e-3 / codes.size
    rows = []
    for split in class_directions(lambda r: x[r], labels, codes, min_group_size=5):
        record = {
            "set": name,
            "class": split.code,
            "eigenvalue_ratio": round(split.eigenvalue_ratio, 3),
            "gap_p": float(f"{split.p_value:.3g}"),
            "gap_statistic": round(split.statistic, 1),
            "low": int(split.low.size),
            "high": int(split.high.size),
            "poisons_low": int(poisoned[split.low].sum()),
            "poisons_high": int(poisoned[split.high].sum()),
        }
        if split.p_value < level:
            for sample in (200, 1000):
                draws = [
                    shift_mixing(x[split.high], x[split.low], low=0.0, high=1.0, sample=sample,
                                 seed=seed)
                    for seed in range(5)
                ]  # fmt: skip
                record[f"mixing_{sample}"] = [[round(s, 3), round(p, 3)] for s, p in draws]
        rows.append(record)
        print(json.dumps(record), flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/pg-detection"))
    parser.add_argument("--sets", default="none-0.00-t0,clean-sig-0.05-t0,held-clean-sig-0.05-t6")
    parser.add_argument("--digits", action="store_true", help="also scikit-learn's digits")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = []
    for name in [s for s in args.sets.split(",") if s]:
        x, labels, poisoned = _load(args.work / "full" / f"{name}.h5")
        rows += probe(name, x, labels, poisoned)
    if args.digits:
        from sklearn.datasets import load_digits

        digits = load_digits()
        rows += probe("digits", digits.images / 16.0, digits.target, np.zeros(1797, dtype=bool))
    record = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "command": " ".join(["python", *sys.argv]),
        "classes": rows,
    }
    if args.out is not None:
        args.out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
