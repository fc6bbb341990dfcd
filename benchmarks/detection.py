"""Detection benchmark on Fashion-MNIST: backdoors and label flips, with no oracle.

    python benchmarks/detection.py --work /tmp/pg-detection --out docs/detection-results.json

For every run it writes the poisoned training set (60,000 images) as HDF5 with its ground truth
(:mod:`benchmarks.fashion_mnist`), scans it with ``poisonguard scan`` exactly as a user would
(never passing the poison rate or the target class), and scores the report against the ground
truth: precision, recall, F1 and AUROC of the fused flags and of each detector, the suspected
target class, and the time of each stage. Needs ``apt-get install -y dataset-fashion-mnist``.

The scan reuses the embedding cache; pass ``--no-cache`` to time the whole pipeline.
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fashion_mnist import load_fashion_mnist, make_attack, write_ground_truth, write_hdf5  # noqa: E402
from score_against_truth import detection_metrics  # noqa: E402

RUNS = [
    ("patch", 0.01, 0),
    ("patch", 0.05, 0),
    ("patch", 0.10, 0),
    ("blend", 0.01, 0),
    ("blend", 0.05, 0),
    ("blend", 0.10, 0),
    ("flip", 0.05, 0),
    ("flip", 0.10, 0),
    ("none", 0.0, 0),
    # not developed against: another pattern, position and target class
    ("checker", 0.01, 7),
    ("checker", 0.05, 7),
]


def run_name(attack: str, rate: float, target: int) -> str:
    return f"{attack}-{rate:.2f}-t{target}"


def prepare(work: Path, attack: str, rate: float, target: int) -> tuple[Path, Path]:
    data = work / f"{run_name(attack, rate, target)}.h5"
    truth = data.with_suffix(".ground_truth.csv")
    if not (data.is_file() and truth.is_file()):
        images, labels = load_fashion_mnist("train")
        poisoned, new_labels, mask = make_attack(
            attack, images, labels, rate=rate, target=target, seed=0
        )
        write_hdf5(data, poisoned, new_labels)
        write_ground_truth(truth, labels, new_labels, mask, attack)
    return data, truth


def scan(data: Path, out: Path, no_cache: bool) -> float:
    command = ["poisonguard", "scan", str(data), "--out", str(out), "--no-progress"]
    if no_cache:
        command.append("--no-cache")
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/pg-detection"))
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the results")
    parser.add_argument("--only", default=None, help="comma-separated run names to do")
    parser.add_argument("--no-cache", action="store_true")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results = []
    for attack, rate, target in RUNS:
        name = run_name(attack, rate, target)
        if args.only and name not in args.only.split(","):
            continue
        data, truth = prepare(args.work, attack, rate, target)
        out = args.work / f"report-{name}"
        wall = scan(data, out, args.no_cache)
        report = json.loads((out / "report.json").read_text())
        metrics = detection_metrics(out / "scores.csv", truth)
        row = {
            "run": name,
            "attack": attack,
            "rate": rate,
            "true_target": target if attack in ("patch", "blend", "checker") else None,
            "suspected_targets": report["findings"]["target_classes"],
            "attack_kinds": report["findings"]["attack_kinds"],
            "wall_s": round(wall, 1),
            "timings": report["timings"],
            "embedding_from_cache": report["model"]["from_cache"],
            **metrics,
        }
        results.append(row)
        print(json.dumps({k: row[k] for k in row if k != "timings"}), flush=True)
    summary = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "command": " ".join(sys.argv),
        "runs": results,
    }
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    f1 = [r["f1"] for r in results if r["poisoned"]]
    mean_f1 = np.mean(f1) if f1 else float("nan")
    print(f"{len(results)} runs; mean F1 over poisoned runs {mean_f1:.3f}")


if __name__ == "__main__":
    main()
