"""Compare a scan's ``scores.csv`` with a ground-truth file: precision, recall, F1, AUROC, and
the clean samples flagged (``clean_flagged``, ``clean_flagged_fraction``); ``best_f1_score`` is
the largest F1 that flagging the top ``best_k_score`` samples by ``score`` reaches, the cut chosen
knowing the truth: what no rule that flags the top of that ranking can beat.

    python benchmarks/score_against_truth.py REPORT_DIR/scores.csv GROUND_TRUTH.csv

Rows are joined by sample ``id``; AUROC uses the ``score`` column and each detector's column.
When the ground truth has a ``role`` column (``payload``, ``cover``, ``clean``), the cover samples
(a trigger with their true label: TaCT's cover, adaptive-blend's conservatism samples) are left
out of every measure: they are neither poison to find nor clean samples to spare. Files without
the column score every row, as before. Both files are read back through
``poisonguard.csv_safety`` (ids that would start a spreadsheet formula are written with a leading
quote), so ids are compared as the dataset holds them.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from poisonguard import csv_safety, metrics
from poisonguard.report.scores_csv import SCORES_HEADER, TRAILING_COLUMNS


def _unescaped(row: dict[str, str]) -> dict[str, str]:
    return {
        key: csv_safety.unescape_cell(value) if isinstance(value, str) else value
        for key, value in row.items()
    }


def detection_metrics(scores_csv: Path, truth_csv: Path) -> dict:
    with open(truth_csv, newline="") as handle:
        truth_rows = [_unescaped(row) for row in csv.DictReader(handle)]
    truth = {row["id"]: row["poisoned"] == "1" for row in truth_rows}
    cover = {row["id"] for row in truth_rows if row.get("role") == "cover"}
    with open(scores_csv, newline="") as handle:
        reader = csv.DictReader(handle)
        detector_columns = [
            name for name in reader.fieldnames[len(SCORES_HEADER) :] if name not in TRAILING_COLUMNS
        ]
        rows = [_unescaped(row) for row in reader]
    if {r["id"] for r in rows} != set(truth):
        raise SystemExit("scores.csv and the ground truth do not hold the same ids")
    rows = [r for r in rows if r["id"] not in cover]
    poisoned = np.array([truth[r["id"]] for r in rows])
    flagged = np.array([r["flagged"] == "1" for r in rows])
    result = metrics.detection_metrics(poisoned, flagged)
    result.pop("auroc")
    result["clean_flagged"] = int(np.sum(flagged & ~poisoned))
    if cover:
        result["cover_excluded"] = len(cover)
    if 0 < poisoned.sum() < len(rows):
        for column in ["score", *detector_columns]:
            values = np.array([float(r[column]) for r in rows])
            result[f"auroc_{column}"] = round(float(roc_auc_score(poisoned, values)), 4)
        score = np.array([float(r["score"]) for r in rows])
        hits = np.cumsum(poisoned[np.argsort(-score, kind="stable")])
        f1 = 2 * hits / (np.arange(1, len(rows) + 1) + poisoned.sum())
        result["best_f1_score"] = round(float(f1.max()), 4)
        result["best_k_score"] = int(np.argmax(f1)) + 1
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scores", type=Path)
    parser.add_argument("truth", type=Path)
    args = parser.parse_args()
    print(json.dumps(detection_metrics(args.scores, args.truth), indent=2))


if __name__ == "__main__":
    main()
