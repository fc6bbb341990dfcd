"""Replay the decision on a scan's saved arrays: change the rule, not the scan.

    python benchmarks/decision_replay.py dump DATA.h5 GROUND_TRUTH.csv OUT.npz [--seed S]
    python benchmarks/decision_replay.py replay OUT.npz [OUT2.npz ...]

``dump`` scans ``DATA`` (default settings, the embedding cache as usual) and saves what
:func:`poisonguard.decision.decide` reads (labels, distance ratios, per-epoch margins, the
model's and the out-of-sample probabilities) with each sample's ground-truth role
(``payload``, ``cover`` or ``clean``, from the ``role`` column of the ground truth; files
without it count ``poisoned`` rows as payload). ``replay`` applies the current ``decide`` to
saved arrays and prints, per file, precision, recall, F1 and AUROC of the fused score (cover
samples count neither way), the classes called and the test that called each, and the
separated-group p-value of every class with a gap. A decision change measured this way costs
seconds instead of a scan per dataset; docs/benchmarks.md says which figures came from it.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from poisonguard.decision import decide
from poisonguard.detectors import DetectorInputs
from poisonguard.scan import ScanSettings, scan_path

ROLE_CODES = {"clean": 0, "payload": 1, "cover": 2}


def read_roles(path: Path) -> np.ndarray:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and "role" in rows[0]:
        return np.array([ROLE_CODES[row["role"]] for row in rows], dtype=np.int8)
    return np.array([int(row["poisoned"] == "1") for row in rows], dtype=np.int8)


def dump(data: Path, truth: Path, out: Path, seed: int) -> None:
    result = scan_path(data, ScanSettings(seed=seed), progress=False)
    inputs = DetectorInputs(result.embedding, result.dataset.labels, seed=seed)
    np.savez(
        out,
        labels=result.dataset.labels,
        role=read_roles(truth),
        ratio=np.asarray(inputs.robust_fits.distance_ratio),
        margin=np.asarray(result.embedding.margin),
        probabilities=np.asarray(result.embedding.probabilities),
        oos=np.asarray(inputs.out_of_sample_probabilities),
    )


def replay(path: Path) -> None:
    saved = np.load(path)
    labels, role = saved["labels"], saved["role"]
    n_classes = saved["probabilities"].shape[1]
    decision = decide(
        labels,
        n_classes,
        np.bincount(labels, minlength=n_classes) >= 10,
        {},
        distance_ratio=saved["ratio"],
        margin=saved["margin"],
        probabilities=saved["probabilities"],
        oos_probabilities=saved["oos"],
    )
    counted, payload, flagged = role != 2, role == 1, decision.flagged
    tp = int(np.sum(flagged & payload))
    fp = int(np.sum(flagged & counted & ~payload))
    precision = tp / max(int(np.sum(flagged & counted)), 1)
    recall = tp / max(int(payload.sum()), 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    auroc = (
        roc_auc_score(payload[counted], decision.score[counted])
        if 0 < payload.sum() < counted.sum()
        else float("nan")
    )
    calls = ", ".join(f"{e.code} ({e.rule})" for e in decision.evidence if e.backdoor) or "none"
    print(
        f"{path.name}: flagged {int(flagged.sum())} (false {fp}), precision {precision:.3f}, "
        f"recall {recall:.3f}, F1 {f1:.3f}, AUROC {auroc:.3f}; backdoor targets: {calls}; "
        f"noisy labels: {decision.noisy_labels}"
    )
    for item in decision.evidence:
        if item.gap is not None:
            print(
                f"  class {item.code}: gap above {item.gap.size} samples, p {item.gap.p_value:.1e}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    dumping = commands.add_parser("dump")
    dumping.add_argument("data", type=Path)
    dumping.add_argument("truth", type=Path)
    dumping.add_argument("out", type=Path)
    dumping.add_argument("--seed", type=int, default=0)
    replaying = commands.add_parser("replay")
    replaying.add_argument("saved", type=Path, nargs="+")
    args = parser.parse_args()
    if args.command == "dump":
        dump(args.data, args.truth, args.out, args.seed)
    else:
        for path in args.saved:
            replay(path)


if __name__ == "__main__":
    main()
