"""Label flips in small tables (issue 13, item 4): PoisonGuard's scan next to cleanlab.

    python benchmarks/small_tables.py --work /tmp/pg-tables --draws 10 \\
        --out docs/small-tables-results.json

scikit-learn's bundled tables (breast cancer, wine, iris, and the 8x8 digits read as a table of
64 columns) are written as CSV tables (``id``, the columns, ``label``). Each draw flips 10 % of
the labels uniformly to another class with ``poisonguard poison --attack flip-random --rate 0.1
--seed D``, then:

* **PoisonGuard**: ``poisonguard scan --no-cache --seed 0``, its ``flagged`` and ``score``
  columns against the ground truth;
* **cleanlab**: ``find_label_issues`` on 5-fold out-of-fold probabilities of a logistic
  regression on standardised columns (``cross_val_predict(..., cv=5, method="predict_proba")``,
  cleanlab's documented recipe for tables; on the raw columns the breast-cancer regression does
  not converge and scores lower), AUROC of ``1 - p_y`` (the self-confidence).

The unflipped tables are scanned too: the count flagged and whether any attack is called. The
shipped ``sample_data/breast_cancer/flipped.csv`` (the issue's figure) is one more row. cleanlab
is not a PoisonGuard dependency: installed into ``<work>/site`` when missing (see
``benchmarks/text.py``). The results go to ``--out`` with the date, the machine and the command,
and are printed as a markdown table (mean over the draws, and the number of draws PoisonGuard's
F1 is at least cleanlab's).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from score_against_truth import detection_metrics  # noqa: E402
from text import cleanlab_module  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "sample_data" / "breast_cancer"
TABLES = ("breast_cancer", "wine", "iris", "digits")
FLIP_RATE = 0.1


def load_table(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    names = [str(n) for n in getattr(bunch, "target_names", np.unique(bunch.target))]
    return np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target), names


def write_table(path: Path, x: np.ndarray, y: np.ndarray, names: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", *[f"c{j}" for j in range(x.shape[1])], "label"])
        for i, (row, label) in enumerate(zip(x, y, strict=True)):
            writer.writerow([f"row_{i:05d}", *[repr(float(v)) for v in row], names[label]])


def run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")


def read_table(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = [c for c in rows[0] if c not in ("id", "label")]
    names = sorted({row["label"] for row in rows})
    x = np.array([[float(row[c]) for c in columns] for row in rows])
    return x, np.array([names.index(row["label"]) for row in rows])


def cleanlab_metrics(table: Path, truth_csv: Path, seed: int, work: Path) -> dict:
    cleanlab_module(work)
    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from poisonguard import metrics

    x, y = read_table(table)
    with open(truth_csv, newline="") as handle:
        poisoned = np.array([row["poisoned"] == "1" for row in csv.DictReader(handle)])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    probabilities = cross_val_predict(model, x, y, cv=folds, method="predict_proba")
    issues = find_label_issues(y, probabilities)
    result = metrics.detection_metrics(poisoned, issues)
    result.pop("auroc")
    result["auroc"] = round(
        float(roc_auc_score(poisoned, 1.0 - probabilities[np.arange(y.size), y])), 4
    )
    return result


def scan(table: Path, out: Path) -> dict:
    run(["poisonguard", "scan", str(table), "--out", str(out), "--no-cache", "--seed", "0"])
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return {
        "flagged": int(report["findings"]["flagged_count"]),
        "attack_kinds": report["findings"].get("attack_kinds", []),
    }


def flip_row(label: str, table: Path, truth: Path, seed: int, work: Path) -> dict:
    out = work / "scans" / label
    scanned = scan(table, out)
    ours = detection_metrics(out / "scores.csv", truth)
    ours["auroc"] = ours.pop("auroc_score")
    ours = {k: ours[k] for k in ("precision", "recall", "f1", "auroc", "flagged", "clean_flagged")}
    theirs = cleanlab_metrics(table, truth, seed, work)
    print(
        f"{label}: PoisonGuard F1 {ours['f1']:.3f} AUROC {ours['auroc']:.4f} | cleanlab F1 "
        f"{theirs['f1']:.3f} AUROC {theirs['auroc']:.4f}",
        flush=True,
    )
    return {"row": label, "poisonguard": ours, "cleanlab": theirs, "attacks": scanned}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--tables", default=",".join(TABLES))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    work = args.work.resolve()
    rows, clean = [], {}
    rows.append(
        flip_row(
            "shipped-breast-cancer",
            SHIPPED / "flipped.csv",
            SHIPPED / "flipped_ground_truth.csv",
            0,
            work,
        )
    )
    for name in args.tables.split(","):
        x, y, names = load_table(name)
        table = work / name / "clean" / f"{name}.csv"
        write_table(table, x, y, names)
        clean[name] = scan(table, work / "scans" / f"{name}-clean")
        print(f"{name} clean: {clean[name]}", flush=True)
        for draw in range(args.draws):
            poisoned = work / name / f"flip-{draw}"
            run(
                [
                    "poisonguard", "poison", str(table), "--attack", "flip-random",
                    "--rate", str(FLIP_RATE), "--seed", str(draw), "--out", str(poisoned),
                ]
            )  # fmt: skip
            row = flip_row(
                f"{name}-flip-{draw}",
                poisoned / table.name,
                poisoned / "ground_truth.csv",
                draw,
                work,
            )
            row["table"] = name
            rows.append(row)

    print("\n| table | draws | PoisonGuard F1 | cleanlab F1 | draws ours >= | PoisonGuard AUROC "
          "| cleanlab AUROC | clean table flagged |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    summary = {}
    for name in args.tables.split(","):
        mine = [r for r in rows if r.get("table") == name]
        if not mine:
            continue
        ours = np.array([[r["poisonguard"]["f1"], r["poisonguard"]["auroc"]] for r in mine])
        theirs = np.array([[r["cleanlab"]["f1"], r["cleanlab"]["auroc"]] for r in mine])
        summary[name] = {
            "draws": len(mine),
            "poisonguard_f1": round(float(ours[:, 0].mean()), 3),
            "cleanlab_f1": round(float(theirs[:, 0].mean()), 3),
            "poisonguard_auroc": round(float(ours[:, 1].mean()), 4),
            "cleanlab_auroc": round(float(theirs[:, 1].mean()), 4),
            "draws_f1_at_least_cleanlab": int(np.sum(ours[:, 0] >= theirs[:, 0])),
            "clean_flagged": clean[name]["flagged"],
            "clean_attacks": clean[name]["attack_kinds"],
        }
        s = summary[name]
        print(
            f"| {name} | {s['draws']} | {s['poisonguard_f1']:.3f} | {s['cleanlab_f1']:.3f} | "
            f"{s['draws_f1_at_least_cleanlab']} | {s['poisonguard_auroc']:.4f} | "
            f"{s['cleanlab_auroc']:.4f} | {s['clean_flagged']} |"
        )
    record = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "summary": summary,
        "rows": rows,
    }
    if args.out:
        args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
