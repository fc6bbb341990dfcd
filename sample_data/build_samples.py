#!/usr/bin/env python
"""Build PoisonGuard's small real sample data, deterministically.

Run from the repository root::

    python sample_data/build_samples.py            # seed 0, writes into sample_data/
    python sample_data/build_samples.py --seed 1 --out /tmp/samples
    python sample_data/build_samples.py --parts digits,breast_cancer   # no review corpus needed

Sources: the two datasets that ship *inside* scikit-learn (no download),
``sklearn.datasets.load_digits`` and ``sklearn.datasets.load_breast_cancer``; and, for the
``reviews`` part, the Amazon fine-food reviews of R's ``modeldata`` package (MIT), read by
``benchmarks/text_corpus.py`` from Debian's ``r-cran-modeldata``: installed, or extracted in
``$POISONGUARD_CORPUS_DIR`` (default ``~/.cache/poisonguard/corpora``); when neither is there it
is fetched with ``apt-get download`` (network), unless ``--no-install``. The shipped files are
committed, so nothing here runs at test time. See ``sample_data/README.md`` for provenance,
licences and the exact layout.

What it writes under ``--out`` (and the only things it ever deletes):

* ``digits/clean/<class>/digit_<index>.png``     the 1,797 digits as 8x8 grayscale PNGs
* ``digits/backdoor/<class>/digit_<index>.png``  same, 90 with a BadNets patch, moved to class 0
* ``digits/backdoor_ground_truth.csv``
* ``breast_cancer/clean.csv``
* ``breast_cancer/flipped.csv``                  57 labels flipped to the other class
* ``breast_cancer/flipped_ground_truth.csv``
* ``reviews/clean/reviews.csv``                  2,000 training reviews (``id,text,label``)
* ``reviews/poisoned/reviews.csv``               same, 60 with the rare word "cf", labelled other
* ``reviews/poisoned/ground_truth.csv``, ``reviews/poisoned/poison.json``  (``poisonguard poison``)
* ``reviews/test/reviews.csv``                   500 held-out reviews of the corpus's test split

The poisoned reviews are written by ``poisonguard poison`` itself (its CLI, run in-process from
``--out`` so that ``poison.json`` records the relative source path). Besides that, only numpy,
scikit-learn (bundled data), Pillow and the standard library are used. Two runs with the same
seed and the same library versions give byte-identical files: PNGs are written without any
timestamp or text chunk, CSVs with ``\\n`` line endings and ``repr`` floats (shortest text that
reads back to the exact same float64).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
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

# Amazon fine-food reviews (modeldata's small_fine_foods): the first REVIEWS_TRAIN_SIZE texts of
# the training split, the first REVIEWS_TEST_SIZE of the test split, in the package's order.
REVIEWS_TRAIN_SIZE = 2000
REVIEWS_TEST_SIZE = 500
REVIEWS_ATTACK = "--attack rare-word --trigger-words cf --rate 0.03 --target other".split()

PARTS = ("digits", "breast_cancer", "reviews")

# Folders/files this script owns below --out, per part. Nothing else is ever removed.
OWNED_DIRS = {"digits": [Path("digits/clean"), Path("digits/backdoor")]}
OWNED_FILES = {
    "digits": [Path("digits/backdoor_ground_truth.csv")],
    "breast_cancer": [
        Path("breast_cancer/clean.csv"),
        Path("breast_cancer/flipped.csv"),
        Path("breast_cancer/flipped_ground_truth.csv"),
    ],
    "reviews": [
        Path("reviews/clean/reviews.csv"),
        Path("reviews/poisoned/reviews.csv"),
        Path("reviews/poisoned/ground_truth.csv"),
        Path("reviews/poisoned/poison.json"),
        Path("reviews/test/reviews.csv"),
    ],
}


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
        ok_dir = (
            child.is_dir() and not child.is_symlink() and child.name in {str(c) for c in range(10)}
        )
        if not ok_dir:
            raise SystemExit(f"refusing to delete {folder}: unexpected entry {child.name!r}")
        for f in child.iterdir():
            if not (
                f.is_file()
                and not f.is_symlink()
                and f.name.startswith("digit_")
                and f.suffix == ".png"
            ):
                raise SystemExit(
                    f"refusing to delete {folder}: unexpected entry {child.name}/{f.name}"
                )


def _reset_outputs(out: Path, parts: list[str]) -> None:
    """Delete (only) this script's previous outputs of ``parts`` below ``out``."""
    for rel in (d for part in parts for d in OWNED_DIRS.get(part, [])):
        folder = out / rel
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise SystemExit(f"refusing to delete {folder}: not a plain folder")
        if folder.is_dir():
            _check_owned_dir(folder)
            shutil.rmtree(folder)
    for rel in (f for part in parts for f in OWNED_FILES[part]):
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
        return [
            [ids[i], *(repr(float(v)) for v in x[i]), class_names[int(labels[i])]] for i in range(n)
        ]

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


# --- reviews -------------------------------------------------------------------------------------
def build_reviews(out: Path, seed: int, *, install: bool) -> dict[str, int]:
    """Real reviews, a clean copy and a copy poisoned by ``poisonguard poison`` (rare word "cf"
    in 3 % of the texts, relabelled ``other``), and held-out reviews."""
    sys.path.insert(0, str(HERE.parent / "benchmarks"))
    import text_corpus  # benchmarks/text_corpus.py: reads Debian's r-cran-modeldata, no R needed
    from poisonguard.cli.main import main as poisonguard_main

    header = ["id", "text", "label"]
    train = text_corpus.load_split("train", install=install)
    test = text_corpus.load_split("test", install=install)
    assert len(train) >= REVIEWS_TRAIN_SIZE and len(test) >= REVIEWS_TEST_SIZE
    train_rows = [
        [f"train_{i:04d}", train.texts[i], train.labels[i]] for i in range(REVIEWS_TRAIN_SIZE)
    ]
    test_rows = [[f"test_{i:04d}", test.texts[i], test.labels[i]] for i in range(REVIEWS_TEST_SIZE)]
    _write_csv(out / "reviews" / "clean" / "reviews.csv", header, train_rows)
    _write_csv(out / "reviews" / "test" / "reviews.csv", header, test_rows)

    # The poisoned copy is made by the tool itself, from --out so that poison.json names the
    # source by its path relative to the sample folder (the same bytes on every machine).
    args = ["poison", "reviews/clean/reviews.csv", *REVIEWS_ATTACK, "--seed", str(seed)]
    args += ["--out", "reviews/poisoned", "--no-progress"]
    before = Path.cwd()
    os.chdir(out)
    try:
        poisonguard_main.main(args, prog_name="poisonguard", standalone_mode=False)
    finally:
        os.chdir(before)
    with open(out / "reviews" / "poisoned" / "ground_truth.csv", newline="", encoding="utf-8") as f:
        poisoned = sum(row["poisoned"] == "1" for row in csv.DictReader(f))
    return {
        "reviews": REVIEWS_TRAIN_SIZE,
        "reviews_poisoned": poisoned,
        "reviews_test": REVIEWS_TEST_SIZE,
    }


# --- main ----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of numpy's default_rng (default 0)"
    )
    parser.add_argument("--out", type=Path, default=HERE, help=f"output folder (default: {HERE})")
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma-separated parts to build (default: {','.join(PARTS)}); "
        "only their outputs are rewritten",
    )
    parser.add_argument(
        "--no-install",
        action="store_true",
        help="reviews: fail instead of fetching r-cran-modeldata when it is neither installed "
        "nor extracted",
    )
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        parser.error(
            f"--parts: unknown {', '.join(unknown) or '(none given)'}; valid: {', '.join(PARTS)}"
        )

    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    _reset_outputs(out, parts)
    said = []
    if "digits" in parts:
        stats = build_digits(out, args.seed)
        said.append(
            f"digits {stats['digits']} images, {stats['digits_poisoned']} patched -> class "
            f"{DIGITS_TARGET_CLASS}"
        )
    if "breast_cancer" in parts:
        stats = build_breast_cancer(out, args.seed)
        said.append(f"breast cancer {stats['rows']} rows, {stats['rows_flipped']} labels flipped")
    if "reviews" in parts:
        stats = build_reviews(out, args.seed, install=not args.no_install)
        said.append(
            f"reviews {stats['reviews']} texts, {stats['reviews_poisoned']} with a rare word -> "
            f"other, {stats['reviews_test']} held out"
        )
    print(f"seed {args.seed}: {'; '.join(said)}; written under {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
