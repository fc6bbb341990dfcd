"""The common-pattern test's counts, per class, on the benchmark's Fashion-MNIST sets.

    python benchmarks/common_pattern_counts.py --work /tmp/pg-detection \
        --sets none-0.00-t0,held-adaptive-blend-0.003-t6 [--seeds 0,1,2] \
        [--cache-dir /tmp/fcache] --out counts.json

Scans each ``WORK/full/SET.h5`` (made by ``benchmarks/detection.py``) with the seeds given and
records, for every class the mislabel-like-group test asked (:mod:`poisonguard.decision`):
the members queried whose agreement lies above ``AGREEING_Z`` (``common_pattern_share``),
those beyond the group's bar each way (``pattern_agreeing``, ``pattern_disagreeing``;
:func:`~poisonguard.detectors.common_pattern.beyond_both_ways`), the binomial p-value of the
two, the test that called the class, and whether the ground truth
(``WORK/full/SET.ground_truth.csv``) poisoned it (a payload sample labelled with it). The
summary gives, over the classes no payload was put in, the most members beyond the bar either
way: what a natural group reaches.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from pathlib import Path

import poisonguard.scan as scan_module
from poisonguard.scan import ScanSettings, scan_path


def poisoned_classes(truth: Path, class_names: list[str]) -> set[int]:
    """The class codes a payload sample of the ground truth is labelled with."""
    with open(truth, newline="") as handle:
        labels = {
            row["new_label"]
            for row in csv.DictReader(handle)
            if row.get("role", "payload" if row["poisoned"] == "1" else "clean") == "payload"
        }
    return {code for code, name in enumerate(class_names) if name in labels}


def class_counts(data: Path, truth: Path, seed: int, cache_dir: str | None) -> list[dict]:
    decisions = []
    decide = scan_module.decide

    def recording(*args, **kwargs):
        decisions.append(decide(*args, **kwargs))
        return decisions[-1]

    scan_module.decide = recording
    try:
        result = scan_path(data, ScanSettings(seed=seed), progress=False, cache_dir=cache_dir)
    finally:
        scan_module.decide = decide
    poisoned = poisoned_classes(truth, list(result.dataset.class_names))
    rows = []
    for item in decisions[-1].evidence:
        if not math.isfinite(item.common_pattern_share):
            continue  # not asked
        rows.append(
            {
                "class": result.dataset.class_names[item.code],
                "poisoned": item.code in poisoned,
                "agreeing_share": round(item.common_pattern_share, 4),
                "beyond_agreeing": item.pattern_agreeing,
                "beyond_disagreeing": item.pattern_disagreeing,
                "p": float(f"{item.pattern_p:.3g}"),
                "called_by": item.rule,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--sets", required=True, help="comma-separated set names")
    parser.add_argument("--seeds", default="0", help="comma-separated scan seeds")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--out", type=Path, required=True)
    options = parser.parse_args()
    runs = []
    for name in options.sets.split(","):
        for seed in (int(s) for s in options.seeds.split(",")):
            start = time.perf_counter()
            rows = class_counts(
                options.work / "full" / f"{name}.h5",
                options.work / "full" / f"{name}.ground_truth.csv",
                seed,
                options.cache_dir,
            )
            runs.append({"set": name, "seed": seed, "classes": rows})
            called = [r["class"] for r in rows if r["called_by"]]
            print(
                f"{name} seed {seed}: {len(rows)} classes asked, called {called or 'none'} "
                f"({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    natural = [row for run in runs for row in run["classes"] if not row["poisoned"]]
    summary = {
        "natural_groups": len(natural),
        "most_beyond_agreeing": max((r["beyond_agreeing"] for r in natural), default=0),
        "most_beyond_disagreeing": max((r["beyond_disagreeing"] for r in natural), default=0),
        "natural_called": [r for r in natural if r["called_by"]],
        "smallest_natural_p": min((r["p"] for r in natural), default=float("nan")),
    }
    print(json.dumps(summary, indent=1))
    options.out.write_text(
        json.dumps(
            {
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "command": "python benchmarks/common_pattern_counts.py "
                f"--sets {options.sets} --seeds {options.seeds}",
                "summary": summary,
                "runs": runs,
            },
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
