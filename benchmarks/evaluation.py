"""Does cleaning remove the attack? ``poisonguard evaluate`` on Fashion-MNIST (issue 4).

    python benchmarks/evaluation.py --work /tmp/pg-evaluation --out docs/evaluation-results.json
    python benchmarks/evaluation.py --only patch --no-cache      # time one run end to end

Writes Fashion-MNIST train (60,000) and test (10,000) as HDF5 under ``--work`` (needs
``apt-get install -y dataset-fashion-mnist``), then runs ``poisonguard evaluate`` exactly as a
user would for each attack: it poisons the training set, scans it (never told the rate or the
target), sanitizes it, trains the same model on the clean, poisoned and sanitized sets and
measures clean test accuracy and attack success on the 10,000 test images. The embedding cache
is used unless ``--no-cache`` (then the wall time includes training all three models).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import h5py

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fashion_mnist import load_fashion_mnist  # noqa: E402

RUNS = {
    "patch": ["--attack", "patch", "--rate", "0.05", "--target", "0"],
    "blend": ["--attack", "blend", "--rate", "0.05", "--target", "0"],
    "sig": ["--attack", "sig", "--rate", "0.05", "--target", "0"],
    "flip": ["--attack", "flip-random", "--rate", "0.10", "--action", "relabel"],
}


def write_split(path: Path, split: str) -> Path:
    if not path.is_file():
        images, labels = load_fashion_mnist(split)
        with h5py.File(path, "w") as handle:
            handle.create_dataset("x", data=images, chunks=(1024, *images.shape[1:]))
            handle.create_dataset("y", data=labels)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/pg-evaluation"))
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the results")
    parser.add_argument("--only", default=None, help=f"comma-separated runs of {list(RUNS)}")
    parser.add_argument("--no-cache", action="store_true")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    train = write_split(args.work / "fashion_mnist_train.h5", "train")
    test = write_split(args.work / "fashion_mnist_test.h5", "t10k")
    names = list(RUNS) if args.only is None else args.only.split(",")
    results = []
    for name in names:
        out = args.work / f"report-{name}"
        command = [
            "poisonguard",
            "evaluate",
            str(train),
            "--test",
            str(test),
            *RUNS[name],
            "--out",
            str(out),
            "--no-progress",
        ]
        if args.no_cache:
            command.append("--no-cache")
        start = time.perf_counter()
        subprocess.run(command, check=True)
        wall = time.perf_counter() - start
        report = json.loads((out / "report.json").read_text())
        evaluation = report["evaluation"]
        row = {
            "run": name,
            "command": " ".join(command),
            "wall_s": round(wall, 1),
            "no_cache": args.no_cache,
            **{k: evaluation[k] for k in ("attack", "rate", "target", "action", "n_poisoned")},
            "detection": evaluation["detection"],
            "sanitized": evaluation["sanitized"],
            "models": evaluation["models"],
        }
        print(json.dumps(row), flush=True)
        results.append(row)
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
