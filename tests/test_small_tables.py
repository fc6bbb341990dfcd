"""Label flips in a small table: scikit-learn's wine table (178 rows, 3 classes), 10 % of its
labels flipped by ``poisonguard poison``, is called noisy and the flips are flagged; the clean
table is not. Two confusions in most class pairs are the evidence there, where a large dataset
needs many (benchmarks/small_tables.py measures four tables, ten draws each, next to cleanlab).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from poisonguard.cli.main import main
from sklearn.datasets import load_wine

pytestmark = pytest.mark.slow


def write_wine(path: Path) -> None:
    wine = load_wine()
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", *wine.feature_names, "label"])
        for i, (row, label) in enumerate(zip(wine.data, wine.target, strict=True)):
            writer.writerow([f"wine_{i:03d}", *row.tolist(), wine.target_names[label]])


def scan(table: Path, out: Path) -> tuple[dict, dict[str, bool]]:
    result = CliRunner().invoke(main, ["scan", str(table), "--out", str(out), "--no-cache"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    with (out / "scores.csv").open(newline="") as handle:
        flagged = {row["id"]: row["flagged"] == "1" for row in csv.DictReader(handle)}
    return report, flagged


def test_flips_in_a_small_table_are_found_and_the_clean_table_is_left_alone(tmp_path):
    table = tmp_path / "wine.csv"
    write_wine(table)
    report, flagged = scan(table, tmp_path / "clean-report")
    assert report["findings"]["attack_kinds"] == []
    assert not any(flagged.values())

    poisoned = tmp_path / "flipped"
    result = CliRunner().invoke(
        main,
        ["poison", str(table), "--attack", "flip-random", "--rate", "0.1", "--seed", "0",
         "--out", str(poisoned)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with (poisoned / "ground_truth.csv").open(newline="") as handle:
        truth = {row["id"]: row["poisoned"] == "1" for row in csv.DictReader(handle)}
    assert sum(truth.values()) == 18

    report, flagged = scan(poisoned / "wine.csv", tmp_path / "flipped-report")
    assert report["findings"]["attack_kinds"] == ["label-noise"]
    found = sum(flagged[i] for i, flip in truth.items() if flip)
    false = sum(flagged[i] for i, flip in truth.items() if not flip)
    assert found >= 13, f"{found} of 18 flips flagged"
    assert false <= 3, f"{false} clean rows flagged"
    assert report["findings"]["flagged_count"] == found + false
