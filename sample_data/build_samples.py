#!/usr/bin/env python
"""Build PoisonGuard's small real sample data, deterministically.

Run from the repository root::

    python sample_data/build_samples.py            # seed 0, writes into sample_data/
    python sample_data/build_samples.py --seed 1 --out /tmp/samples

Sources are the two datasets that ship *inside* scikit-learn (no download):
``sklearn.datasets.load_digits`` and ``sklearn.datasets.load_breast_cancer``.
See ``sample_data/README.md`` for provenance, licences and the exact layout.

What it writes under ``--out`` (and the only things it ever deletes):

* ``digits/clean/<class>/digit_<index>.png``     the 1,797 digits as 8x8 grayscale PNGs
* ``digits/backdoor/<class>/digit_<index>.png``  same, 90 of them with a BadNets patch, moved to class 0
* ``digits/backdoor_ground_truth.csv``
* ``breast_cancer/clean.csv``
* ``breast_cancer/flipped.csv``                  57 labels flipped to the other class
* ``breast_cancer/flipped_ground_truth.csv``

Only numpy, scikit-learn (bundled data), Pillow and the standard library are used. Two runs with
the same seed and the same library versions give byte-identical files: PNGs are written without
any timestamp or text chunk, CSVs with ``\\n`` line endings and ``repr`` floats (shortest text that
reads back to the exact same float64).
"""

from __future__ import annotations

import argparse
import csv
import io
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_breast_cancer, load_digits

HERE = Path(__file__).resolve().parent

# --- attack parameters (documented in README.md; change them there too) ---------------------------
DIGITS_TARGET_CLASS = 0
DIGITS_POISON_RATE = 0.05  # of the whole dataset (1,797 -> 90 images)
DIGITS_PATCH_ROWS = slice(6, 8)  # rows 6-7 of the 8x8 image: bottom
DIGITS_PATCH_COLS = slice(6, 8)  # cols 6-7: right
DIGITS_PATCH_VALUE = 255  # white
TABLE_FLIP_RATE = 0.10  # of the rows (569 -> 57 rows)

GROUND_TRUTH_COLUMNS = ["index", "id", "poisoned", "original_label", "new_label", "attack"]

# Folders/files this script owns below --out. Nothing else is ever removed.
OWNED_DIRS = [Path("digits/clean"), Path("digits/backdoor")]
OWNED_FILES = [
    Path("digits/backdoor_ground_truth.csv"),
    Path("breast_cancer/clean.csv"),
    Path("breast_cancer/flipped.csv"),
    Path("breast_cancer/flipped_ground_truth.csv"),
]


# --- helpers -------------------------------------------------------------------------------------
def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    """Write a CSV with ``\\n`` line endings (platform independent bytes)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue().encode("utf-8"))


def _write_png(path: Path, image: np.ndarray) -> None:
    """Write an (H, W) uint8 array as a grayscale PNG, no metadata (deterministic bytes)."""
    assert image.dtype == np.uint8 and image.ndim == 2
    buf = io.BytesIO()
    img = Image.fromarray(image)
    assert img.mode == "L"
    img.save(buf, format="PNG", optimize=False, compress_level=9)
    path.write_bytes(buf.getvalue())


def _check_owned_dir(folder: Path) -> None:
    """Refuse to delete a folder that does not look like this script's image-folder output."""
    for child in folder.iterdir():
        ok_dir = child.is_dir() and not child.is_symlink() and child.name in {str(c) for c in range(10)}
        if not ok_dir:
            raise SystemExit(f"refusing to delete {folder}: unexpected entry {child.name!r}")
        for f in child.iterdir():
            if not (f.is_file() and not f.is_symlink() and f.name.startswith("digit_") and f.suffix == ".png"):
                raise SystemExit(f"refusing to delete {folder}: unexpected entry {child.name}/{f.name}")


def _reset_outputs(out: Path) -> None:
    """Delete (only) this script's previous outputs below ``out``."""
    for rel in OWNED_DIRS:
        folder = out / rel
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise SystemExit(f"refusing to delete {folder}: not a plain folder")
        if folder.is_dir():
            _check_owned_dir(folder)
            shutil.rmtree(folder)
    for rel in OWNED_FILES:
        f = out / rel
        if f.is_symlink() or f.is_dir():
            raise SystemExit(f"refusing to overwrite {f}: not a plain file")
        if f.exists():
            f.unlink()


def _n_of(rate: float, n: int) -> int:
    return int(round(rate * n))


# --- digits --------------------------------------------------------------------------------------
def digits_to_uint8(data: np.ndarray) -> np.ndarray:
    """(N, 64) values 0..16 -> (N, 8, 8) uint8 with pixel = round(v * 255 / 16).

    The only exact half is v = 8 (127.5); numpy's round-half-to-even gives 128, the same as
    rounding half up, so the mapping is 0->0, 1->16, ..., 8->128, ..., 16->255.
    """
    scaled = np.round(data.astype(np.float64) * 255.0 / 16.0)
    assert scaled.min() >= 0 and scaled.max() <= 255
    return scaled.astype(np.uint8).reshape(-1, 8, 8)


def digit_name(index: int) -> str:
    return f"digit_{index:04d}.png"


def build_digits(out: Path, seed: int) -> dict[str, int]:
    bunch = load_digits()
    images = digits_to_uint8(bunch.data)
    labels = bunch.target.astype(np.int64)
    n = len(labels)

    # clean copy
    clean_root = out / "digits" / "clean"
    for i in range(n):
        folder = clean_root / str(int(labels[i]))
        folder.mkdir(parents=True, exist_ok=True)
        _write_png(folder / digit_name(i), images[i])

    # BadNets-style patch backdoor (Gu et al., 2017): 5 % of the dataset, chosen among images
    # whose true class is not the target, get a white 2x2 patch and the target label.
    rng = np.random.default_rng(seed)
    n_poison = _n_of(DIGITS_POISON_RATE, n)
    candidates = np.flatnonzero(labels != DIGITS_TARGET_CLASS)
    poisoned_idx = np.sort(rng.choice(candidates, size=n_poison, replace=False))
    poisoned = np.zeros(n, dtype=bool)
    poisoned[poisoned_idx] = True

    bd_images = images.copy()
    bd_labels = labels.copy()
    bd_images[poisoned_idx, DIGITS_PATCH_ROWS, DIGITS_PATCH_COLS] = DIGITS_PATCH_VALUE
    bd_labels[poisoned_idx] = DIGITS_TARGET_CLASS

    bd_root = out / "digits" / "backdoor"
    for i in range(n):
        folder = bd_root / str(int(bd_labels[i]))
        folder.mkdir(parents=True, exist_ok=True)
        _write_png(folder / digit_name(i), bd_images[i])

    # Ground truth in the order a reader sees the folder: class folders "0".."9" (single
    # characters, so lexicographic == numeric), then file names sorted within each folder.
    # File names are zero-padded original indices, so name order == original index order.
    order = sorted(range(n), key=lambda i: (int(bd_labels[i]), digit_name(i)))
    rows = []
    for position, i in enumerate(order):
        rows.append(
            [
                position,
                f"{int(bd_labels[i])}/{digit_name(i)}",
                int(poisoned[i]),
                int(labels[i]),
                int(bd_labels[i]),
                "patch" if poisoned[i] else "",
            ]
        )
    _write_csv(out / "digits" / "backdoor_ground_truth.csv", GROUND_TRUTH_COLUMNS, rows)
    return {"digits": n, "digits_poisoned": int(poisoned.sum())}


# --- breast cancer -------------------------------------------------------------------------------
def snake_case(name: str) -> str:
    return "_".join(str(name).strip().lower().split())


def build_breast_cancer(out: Path, seed: int) -> dict[str, int]:
    bunch = load_breast_cancer()
    x = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target, dtype=np.int64)
    class_names = [str(c) for c in bunch.target_names]  # ["malignant", "benign"]
    assert len(class_names) == 2
    features = [snake_case(f) for f in bunch.feature_names]
    assert len(set(features)) == len(features)
    n = len(y)
    ids = [f"patient_{i:04d}" for i in range(n)]

    # An independent generator (same seed) so the table does not depend on the digits draw.
    rng = np.random.default_rng(seed)
    n_flip = _n_of(TABLE_FLIP_RATE, n)
    flip_idx = np.sort(rng.choice(n, size=n_flip, replace=False))
    flipped = np.zeros(n, dtype=bool)
    flipped[flip_idx] = True
    y_new = y.copy()
    y_new[flip_idx] = 1 - y[flip_idx]

    header = ["id", *features, "label"]

    def table_rows(labels: np.ndarray) -> list[list[object]]:
        return [[ids[i], *(repr(float(v)) for v in x[i]), class_names[int(labels[i])]] for i in range(n)]

    _write_csv(out / "breast_cancer" / "clean.csv", header, table_rows(y))
    _write_csv(out / "breast_cancer" / "flipped.csv", header, table_rows(y_new))

    gt = [
        [
            i,
            ids[i],
            int(flipped[i]),
            class_names[int(y[i])],
            class_names[int(y_new[i])],
            "label_flip" if flipped[i] else "",
        ]
        for i in range(n)
    ]
    _write_csv(out / "breast_cancer" / "flipped_ground_truth.csv", GROUND_TRUTH_COLUMNS, gt)
    return {"rows": n, "rows_flipped": int(flipped.sum())}


# --- main ----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="seed of numpy's default_rng (default 0)")
    parser.add_argument(
        "--out", type=Path, default=HERE, help=f"output folder (default: {HERE})"
    )
    args = parser.parse_args(argv)

    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    _reset_outputs(out)
    stats = build_digits(out, args.seed)
    stats.update(build_breast_cancer(out, args.seed))
    print(
        f"seed {args.seed}: digits {stats['digits']} images, {stats['digits_poisoned']} patched -> class "
        f"{DIGITS_TARGET_CLASS}; breast cancer {stats['rows']} rows, {stats['rows_flipped']} labels flipped; "
        f"written under {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
