"""The privacy probe on real data (issue 5): leaky against well-regularised, duplicates, ID columns.

    python benchmarks/privacy.py --work /tmp/pg-privacy --out docs/privacy-results.json

Runs ``poisonguard privacy`` as a user would, each in its own process, and records the figures:

* ``overfit``: 2,000 Fashion-MNIST training images, half held out, so the model trains on 1,000
  images for 100 epochs with no regularisation (the model memorises them); 8 shadow models;
* ``regularised``: all 60,000 Fashion-MNIST training images, half held out, the default recipe
  (5 epochs over 30,000 images); 4 shadow models;
* ``fmnist-10k``: 10,000 Fashion-MNIST images, default settings (the timing bar);
* ``digits``: the shipped ``sample_data/digits/clean``, default settings (the timing bar);
* ``duplicates``: the digits with 20 exact and 20 near copies planted (8 inside the training
  half, the rest across the split, by the seed of the split), to see the checklist catch them;
* ``id-column``: the shipped breast-cancer table with a ``patient_number`` column added.

Needs ``apt-get install -y dataset-fashion-mnist``; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fashion_mnist import load_fashion_mnist  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def write_fmnist(path: Path, n: int | None) -> Path:
    if not path.is_file():
        images, labels = load_fashion_mnist("train")
        if n is not None:
            images, labels = images[:n], labels[:n]
        with h5py.File(path, "w") as handle:
            handle.create_dataset("x", data=images, chunks=(1024, *images.shape[1:]))
            handle.create_dataset("y", data=labels)
    return path


def write_digits_with_duplicates(root: Path, seed: int = 0) -> tuple[Path, dict]:
    """Copy the clean digits and plant 20 exact and 20 near (noise + 1-pixel shift) copies."""
    source = REPO / "sample_data" / "digits" / "clean"
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(source, root)
    files = sorted(root.rglob("*.png"))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(files), size=40, replace=False)
    planted = {"exact": [], "near": []}
    for k, index in enumerate(chosen):
        original = files[index]
        pixels = np.asarray(Image.open(original))
        if k < 20:
            copy = pixels
            kind = "exact"
        else:
            shifted = np.roll(pixels, 1, axis=1)
            noise = rng.integers(-6, 7, size=pixels.shape)
            copy = np.clip(shifted.astype(int) + noise, 0, 255).astype(np.uint8)
            kind = "near"
        target = original.with_name(f"{original.stem}_copy.png")
        Image.fromarray(copy).save(target)
        planted[kind].append([str(original.relative_to(root)), str(target.relative_to(root))])
    return root, planted


def write_table_with_id(path: Path) -> Path:
    source = REPO / "sample_data" / "breast_cancer" / "clean.csv"
    with open(source, newline="") as handle:
        rows = list(csv.reader(handle))
    rng = np.random.default_rng(0)
    numbers = rng.permutation(len(rows) - 1) + 100_000
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["patient_number", *rows[0]])
        for number, row in zip(numbers, rows[1:], strict=True):
            writer.writerow([int(number), *row])
    return path


def run(name: str, args: list[str], out: Path) -> dict:
    command = ["poisonguard", "privacy", *args, "--out", str(out), "--no-progress"]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - start
    report = json.loads((out / "report.json").read_text())
    privacy = report["privacy"]
    membership = privacy["membership"]
    row = {
        "run": name,
        "command": " ".join(command),
        "wall_s": round(wall, 1),
        "n_members": privacy["n_members"],
        "n_nonmembers": privacy["n_nonmembers"],
        "train_accuracy": privacy["train_accuracy"],
        "heldout_accuracy": privacy["heldout_accuracy"],
        "membership": {
            name: {k: v for k, v in values.items() if k != "roc"}
            for name, values in membership["attacks"].items()
        },
        "headline_attack": membership["attack"],
        "inversion": privacy["inversion"]["summary"],
        "checklist": [
            {k: item[k] for k in ("item", "status", "evidence")} for item in privacy["checklist"]
        ],
        "timings": report["timings"],
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/pg-privacy"))
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the results")
    parser.add_argument("--only", default=None, help="comma-separated run names")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    only = None if args.only is None else set(args.only.split(","))
    runs = {
        "overfit": lambda: [
            str(write_fmnist(args.work / "fmnist_2k.h5", 2000)),
            *("--epochs", "100", "--shadow-models", "8"),
        ],
        "regularised": lambda: [
            str(write_fmnist(args.work / "fmnist_60k.h5", None)),
            *("--shadow-models", "4"),
        ],
        "fmnist-10k": lambda: [str(write_fmnist(args.work / "fmnist_10k.h5", 10_000))],
        "digits": lambda: [str(REPO / "sample_data" / "digits" / "clean")],
        "duplicates": lambda: [str(write_digits_with_duplicates(args.work / "digits_dup")[0])],
        "id-column": lambda: [str(write_table_with_id(args.work / "breast_cancer_id.csv"))],
    }
    results = []
    for name, make_args in runs.items():
        if only is not None and name not in only:
            continue
        results.append(run(name, make_args(), args.work / f"report-{name}"))
    if args.out is not None:
        record = {
            "date": datetime.now(timezone.utc).date().isoformat(),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
            "command": " ".join(sys.argv),
            "runs": results,
        }
        args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
