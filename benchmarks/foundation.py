"""Measure ``poisonguard scan`` as a user runs it: wall time, peak memory and detection quality.

    python benchmarks/foundation.py                       # digits sample + Fashion-MNIST, 5 % patch
    python benchmarks/foundation.py --skip-fashion-mnist  # only the shipped digits sample

Each scan runs as a separate ``poisonguard`` process with the embedding cache disabled, so the
time includes training the embedding model; peak memory is that process's maximum resident set
size. Fashion-MNIST needs Debian's ``dataset-fashion-mnist`` package (see fashion_mnist.py). The
scan is never told the poison rate or the target class.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fashion_mnist  # noqa: E402
from score_against_truth import detection_metrics  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def timed_scan(dataset: Path, out: Path, *extra: str) -> dict:
    """Run one scan in a child process; return wall seconds, peak RSS (MB) and report timings."""
    start = time.perf_counter()
    command = ["poisonguard", "scan", str(dataset), "--no-cache", "--no-progress"]
    child = subprocess.Popen([*command, "--out", str(out), *extra], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)  # this child's own peak memory
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"scan of {dataset} failed")
    report = json.loads((out / "report.json").read_text())
    return {
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "stage_s": report["timings"],
        "target_classes": report["findings"]["target_classes"],
        "attack_kinds": report["findings"]["attack_kinds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-fashion-mnist", action="store_true")
    parser.add_argument("--rate", type=float, default=0.05)
    parser.add_argument("--target", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    results = {"machine": f"{os.cpu_count()} cores", "command": " ".join(sys.argv)}
    with tempfile.TemporaryDirectory(prefix="pg-bench-") as tmp:
        work = Path(tmp)
        if not args.skip_fashion_mnist:
            images, labels = fashion_mnist.load_fashion_mnist("train")
            poisoned, new_labels, mask = fashion_mnist.plant_patch(
                images, labels, rate=args.rate, target=args.target, seed=args.seed
            )
            data = work / "fashion-mnist-patch.h5"
            fashion_mnist.write_hdf5(data, poisoned, new_labels)
            truth = work / "fashion-mnist-patch.ground_truth.csv"
            fashion_mnist.write_ground_truth(truth, labels, new_labels, mask, "patch")
            del images, poisoned
            run = timed_scan(data, work / "fm-report")
            run.update(detection_metrics(work / "fm-report" / "scores.csv", truth))
            results["fashion_mnist_patch"] = run
        digits = REPO / "sample_data" / "digits" / "backdoor"
        run = timed_scan(digits, work / "digits-report")
        run.update(
            detection_metrics(
                work / "digits-report" / "scores.csv",
                REPO / "sample_data" / "digits" / "backdoor_ground_truth.csv",
            )
        )
        results["digits_backdoor"] = run
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
