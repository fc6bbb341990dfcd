"""Backdoors into every class of the small digits set (issue 13, item 4): ``poisonguard evaluate``.

    python benchmarks/digits_targets.py --work /tmp/pg-digits --out docs/digits-targets-results.json
    python benchmarks/digits_targets.py --work /tmp/pg-digits --attacks patch --targets 4,6
    python benchmarks/digits_targets.py --work /tmp/pg-digits-6 --seed-offset 6 --out F

The issue's figure is one target: ``poisonguard evaluate sample_data/digits/clean --attack patch
--rate 0.05 --target 0`` (and ``--attack blend``). A decision that works for class 0 only is not
what the README claims, so this runs the same command for every target class, each with its own
seed (``target mod 3``: seeds and targets the detection was not developed against, beside the
shipped target 0 at seed 0; ``--seed-offset k`` adds ``k`` to each, for seeds a change was not
developed against), exactly as a user would: poison 5 % of the 1,437 training images
(a stratified 80 % of the 1,797), scan them (never told the rate or the target), sanitize
(``--action relabel``: flagged backdoor samples are removed) and train the same model on the
clean, poisoned and sanitized sets; attack success on the 360 held-out images of the other
classes, trigger applied. Each run's report goes to ``<work>/<attack>-<target>-<seed>``; its
``report.json`` ``evaluation`` section is read back. The results go to ``--out`` with the date,
the machine and the command, and are printed as a markdown table with the issue's bars checked
(F1 >= 0.90; attack success after sanitizing within 2 points of the clean model's; clean
accuracy within 1 point).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

DIGITS = Path(__file__).resolve().parent.parent / "sample_data" / "digits" / "clean"
RATE = 0.05
F1_MIN = 0.90
SUCCESS_POINTS = 2.0
ACCURACY_POINTS = 1.0


def evaluate(attack: str, target: int, seed: int, out: Path) -> dict:
    command = [
        "poisonguard", "evaluate", str(DIGITS), "--attack", attack, "--rate", str(RATE),
        "--target", str(target), "--seed", str(seed), "--out", str(out),
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, text=True)
    evaluation = json.loads((out / "report.json").read_text(encoding="utf-8"))["evaluation"]
    models = {m["training_set"]: m for m in evaluation["models"]}
    detection = evaluation["detection"]
    success = {k: 100 * m["attack_success"] for k, m in models.items()}
    accuracy = {k: 100 * m["clean_accuracy"] for k, m in models.items()}
    return {
        "attack": attack,
        "target": target,
        "seed": seed,
        "f1": detection["f1"],
        "precision": detection["precision"],
        "recall": detection["recall"],
        "auroc": detection["auroc"],
        "poisoned_left": evaluation["sanitized"]["poisoned_left"],
        "attack_success": success,
        "clean_accuracy": accuracy,
        "meets": {
            "f1": detection["f1"] >= F1_MIN,
            "success": success["sanitized"] - success["clean"] <= SUCCESS_POINTS,
            "accuracy": abs(accuracy["sanitized"] - accuracy["clean"]) <= ACCURACY_POINTS,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--attacks", default="patch,blend")
    parser.add_argument("--targets", default=",".join(str(t) for t in range(10)))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--seed-offset", type=int, default=0, help="added to each seed")
    args = parser.parse_args()
    rows = []
    for attack in args.attacks.split(","):
        for target in (int(t) for t in args.targets.split(",")):
            seed = target % 3 + args.seed_offset
            out = args.work.resolve() / f"{attack}-{target}-{seed}"
            rows.append(evaluate(attack, target, seed, out))
            print(json.dumps(rows[-1]), flush=True)
    print("\n| attack -> target (seed) | F1 | poisons left | attack success % sanitized / clean "
          "| accuracy % sanitized / clean | bars met |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for r in rows:
        met = [name for name, ok in r["meets"].items() if ok]
        print(
            f"| {r['attack']} -> {r['target']} ({r['seed']}) | {r['f1']:.3f} | "
            f"{r['poisoned_left']} | {r['attack_success']['sanitized']:.1f} / "
            f"{r['attack_success']['clean']:.1f} | {r['clean_accuracy']['sanitized']:.1f} / "
            f"{r['clean_accuracy']['clean']:.1f} | {', '.join(met) or 'none'} |"
        )
    record = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "rows": rows,
    }
    if args.out:
        args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
