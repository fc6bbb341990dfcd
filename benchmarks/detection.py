"""Detection benchmark on Fashion-MNIST: textbook and evasive poisoning, with no oracle.

    python benchmarks/detection.py --only textbook --out docs/detection-results.json
    python benchmarks/detection.py --only evasive,held-out --retrain --out docs/evasive-results.json
    python benchmarks/detection.py --only tact-0.01-s3-t5 --retrain     # one row
    python benchmarks/detection.py --subset 3000 --epochs 2 --retrain   # a quick smoke test

For every row of :data:`detection_rows.ROWS` (``--only``: row names or the groups ``textbook``,
``evasive``, ``held-out``; ``--list`` prints them) it writes the poisoned training set (the
60,000 Fashion-MNIST training images, or a two-class subset of 12,000) as HDF5 with its ground
truth (``role``: payload, cover or clean; :mod:`fashion_mnist`) under ``--work``, scans it with
``poisonguard scan`` exactly as a user would (never passing the poison rate or the target
class) and scores the report against the ground truth (:mod:`score_against_truth`; cover
samples count neither as found nor as false flags): precision, recall, F1, AUROC of the fused
score and of each detector, false flags on clean samples (count and share), the suspected and
true target classes, the evidence each suspected class was called on
(``findings.per_class[*].evidence``) and the time of each stage.

``--retrain`` (:mod:`detection_retrain`) adds clean accuracy and attack success on the t10k
test split for a model trained on the clean data (trained once per data and seed, shared by
the rows), on the poisoned data (the scan's model) and on the sanitized data (the scan's flags
removed, as ``poisonguard sanitize --action remove`` does).

One JSON line per row is printed as it finishes; ``--out`` writes every row with the date, the
machine and the command. Needs ``apt-get install -y dataset-fashion-mnist``. Embeddings are
cached in ``<work>/cache`` (``--no-cache``: trained afresh, to time the whole pipeline).
``--subset N`` keeps N training images per dataset (the test split stays whole) and
``--epochs`` is passed to the scan and the models, for a quick end-to-end check.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detection_rows import (  # noqa: E402
    HELD_OUT,
    ROWS,
    Planted,
    Row,
    data_key,
    row_data,
    select_rows,
)
from fashion_mnist import write_ground_truth, write_hdf5  # noqa: E402
from score_against_truth import detection_metrics  # noqa: E402


def prepare(row: Row, folder: Path, subset: int | None) -> tuple[Planted, Path, Path, Path]:
    """Plant the row's poison; write the poisoned set, its ground truth and the clean set (each
    once: files already there are kept)."""
    images, labels, n_classes = row_data(row, "train", subset)
    planted = row.build(images, labels, n_classes)
    data = folder / f"{row.name}.h5"
    truth = data.with_suffix(".ground_truth.csv")
    clean = folder / f"clean-{data_key(row, None)}.h5"
    if not (data.is_file() and truth.is_file()):
        write_hdf5(data, planted.x, planted.labels)
        write_ground_truth(
            truth, labels, planted.labels, planted.payload, planted.attacks, cover=planted.cover
        )
    if not clean.is_file():
        write_hdf5(clean, images, labels)
    return planted, data, truth, clean


def scan(data: Path, out: Path, args: argparse.Namespace) -> float:
    command = ["poisonguard", "scan", str(data), "--out", str(out), "--no-progress"]
    command += ["--seed", str(args.seed), "--cache-dir", str(args.cache_dir)]
    if args.epochs is not None:
        command += ["--epochs", str(args.epochs)]
    if args.no_cache:
        command.append("--no-cache")
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def run_row(row: Row, args: argparse.Namespace, clean_embeddings: dict) -> dict:
    folder = args.work / ("full" if args.subset is None else f"subset{args.subset}")
    folder.mkdir(parents=True, exist_ok=True)
    planted, data, truth, clean = prepare(row, folder, args.subset)
    out = folder / f"report-{row.name}"
    wall = scan(data, out, args)
    report = json.loads((out / "report.json").read_text())
    findings = report["findings"]
    metrics = detection_metrics(out / "scores.csv", truth)
    result = {
        "run": row.name,
        "groups": list(row.groups),
        "held_out": row.held_out,
        "label": HELD_OUT if row.held_out else "",
        "attack": row.attack,
        "dataset": row.dataset,
        "n_train": int(len(planted.labels)),
        "rate": planted.rate,
        "n_payload": int(planted.payload.sum()),
        "n_cover": int(planted.cover.sum()),
        "precision": metrics["precision"],
        "recall": metrics["recall"],
        "f1": metrics["f1"],
        "auroc": metrics.get("auroc_score"),
        "false_flags": metrics["clean_flagged"],
        "false_flag_share": metrics["clean_flagged_fraction"],
        "true_targets": [str(t) for t in planted.targets],
        "suspected_targets": findings["target_classes"],
        "attack_kinds": findings["attack_kinds"],
        "evidence": {c["name"]: c["evidence"] for c in findings["per_class"] if c.get("evidence")},
        "wall_s": round(wall, 1),
        "embedding_from_cache": report["model"]["from_cache"],
        "detection": metrics,
        "timings": report["timings"],
    }
    if args.retrain:
        from detection_retrain import retrain  # torch is loaded only for --retrain

        test_images, test_labels, n_classes = row_data(row, "t10k")
        result.update(
            retrain(
                row_name=row.name,
                key=data_key(row, args.subset),
                clean_file=clean,
                poisoned_file=data,
                scan_dir=out,
                payload=planted.payload,
                tests=planted.tests,
                test_images=test_images,
                test_labels=test_labels,
                n_classes=n_classes,
                work=folder,
                cache_dir=args.cache_dir,
                seed=args.seed,
                epochs=args.epochs,
                use_cache=not args.no_cache,
                clean_embeddings=clean_embeddings,
            )
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/pg-detection"))
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the results")
    parser.add_argument(
        "--only", default=None, help="comma-separated rows or groups (textbook, evasive, held-out)"
    )
    parser.add_argument("--list", action="store_true", help="print the rows and exit")
    parser.add_argument("--retrain", action="store_true", help="attack success and accuracy")
    parser.add_argument("--subset", type=int, default=None, help="training images kept (N)")
    parser.add_argument("--epochs", type=int, default=None, help="passed to the scan and models")
    parser.add_argument("--seed", type=int, default=0, help="of the scan and the models")
    parser.add_argument("--cache-dir", type=Path, default=None, help="default <work>/cache")
    parser.add_argument("--no-cache", action="store_true")
    args = parser.parse_args()
    if args.list:
        for row in ROWS:
            held = f"  [{HELD_OUT}]" if row.held_out else ""
            print(f"{row.name:30} {','.join(row.groups):16} {row.attack}{held}")
        return
    try:
        rows = select_rows(args.only)
    except ValueError as exc:
        parser.error(str(exc))
    args.work.mkdir(parents=True, exist_ok=True)
    args.cache_dir = args.cache_dir or args.work / "cache"
    results, clean_embeddings = [], {}
    start = time.perf_counter()
    for row in rows:
        result = run_row(row, args, clean_embeddings)
        results.append(result)
        print(json.dumps({k: v for k, v in result.items() if k != "timings"}), flush=True)
    if args.out:
        summary = {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
            "command": " ".join(sys.argv),
            "runs": results,
        }
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{len(results)} rows in {time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
