"""`poisonguard sanitize --decisions`: a reviewer's keep/remove decisions over the scan's flags.

The scan is a hand-written scores.csv (as in tests/test_poison_sanitize_cli.py), so no model runs.
"""

from __future__ import annotations

import io
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from poisonguard.cli.main import main

from poisonguard import csv_safety
from poisonguard.loaders import load_dataset
from poisonguard.reviewer_decisions import MAX_BYTES, read_reviewer_decisions
from poisonguard.sanitize import QUARANTINE_COLUMNS, plan_sanitize, read_scan_decisions

N_PER_CLASS = 10
N_CLASSES = 3
FLAGGED = {
    2: ("backdoor", "0"),
    5: ("backdoor", "0"),
    12: ("label-noise", "2"),
    13: ("label-noise", "0"),
    25: ("label-noise", "1"),
}


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def source(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    n = N_PER_CLASS * N_CLASSES
    path = tmp_path / "src" / "data.h5"
    path.parent.mkdir()
    with h5py.File(path, "w") as handle:
        handle["x"] = rng.integers(0, 200, size=(n, 6, 6), dtype=np.uint8)
        handle["y"] = np.repeat(np.arange(N_CLASSES), N_PER_CLASS)
    return path


@pytest.fixture
def scan(source, tmp_path) -> Path:
    """A scan folder whose scores.csv flags the samples of FLAGGED (predicted with 0.95)."""
    dataset = load_dataset(source)
    folder = tmp_path / "scan"
    folder.mkdir()
    with open(folder / "scores.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv_safety.writer(handle)
        writer.writerow(
            ["index", "id", "label", "score", "flagged", "finding"]
            + ["predicted_label", "predicted_probability"]
        )
        for i in range(dataset.n_samples):
            label = dataset.class_names[dataset.labels[i]]
            finding, predicted = FLAGGED.get(i, ("", label))
            writer.writerow(
                [i, dataset.ids[i], label, 0.9 if finding else 0.1, int(bool(finding))]
                + [finding, predicted, 0.95]
            )
    return folder


def write_decisions(path: Path, rows, header=("id", "decision", "note")) -> Path:
    buffer = io.StringIO()
    writer = csv_safety.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def read_quarantine(folder: Path) -> dict[str, dict[str, str]]:
    with open(folder / "quarantine.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv_safety.reader(handle))
    assert tuple(rows[0]) == QUARANTINE_COLUMNS
    return {row[1]: dict(zip(rows[0], row, strict=True)) for row in rows[1:]}


def test_three_flagged_samples_marked_keep_are_exactly_the_three_kept(source, scan, tmp_path):
    dataset = load_dataset(source)
    ids = dataset.ids
    decisions = write_decisions(
        tmp_path / "decisions.csv",
        [(ids[2], "keep", "clean, checked"), (ids[12], "KEEP ", ""), (ids[25], "keep", "ok")],
    )
    out = tmp_path / "out"
    result = run("sanitize", source, "--scores", scan, "--decisions", decisions, "--out", out)
    assert result.exit_code == 0, result.output
    assert "3 flag(s) kept" in result.output
    cleaned = load_dataset(out / "data.h5")
    flagged = set(FLAGGED)
    expected = [i for i in range(dataset.n_samples) if i not in flagged or i in (2, 12, 25)]
    assert cleaned.ids == [ids[i] for i in expected]
    assert set(cleaned.ids) & {ids[i] for i in flagged} == {ids[2], ids[12], ids[25]}
    np.testing.assert_array_equal(cleaned.x, dataset.x[expected])
    np.testing.assert_array_equal(cleaned.labels, dataset.labels[expected])  # own labels

    quarantine = read_quarantine(out)
    assert {q["id"]: (q["action"], q["decided_by"]) for q in quarantine.values()} == {
        ids[2]: ("kept", "reviewer"),
        ids[5]: ("removed", "scan"),
        ids[12]: ("kept", "reviewer"),
        ids[13]: ("removed", "scan"),
        ids[25]: ("kept", "reviewer"),
    }
    assert quarantine[ids[2]]["note"] == "clean, checked"
    assert quarantine[ids[5]]["note"] == ""
    assert "a reviewer kept it" in quarantine[ids[2]]["reason"]


def test_quarantine_records_reviewer_and_scan_decisions_under_relabel(source, scan, tmp_path):
    dataset = load_dataset(source)
    ids = dataset.ids
    decisions = write_decisions(
        tmp_path / "decisions.csv",
        [
            (ids[12], "keep", "label is right"),  # the scan would relabel it
            (ids[13], "remove", '=HYPERLINK("http://x","y")'),  # would be relabelled too
            (ids[7], "remove", "blurry"),  # not flagged by the scan
            (ids[8], "keep", "fine"),  # not flagged: nothing changes, nothing recorded
        ],
    )
    out = tmp_path / "out"
    result = run(
        "sanitize", source, "--scores", scan, "--action", "relabel", "--decisions", decisions,
        "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    quarantine = read_quarantine(out)
    summary = {q["id"]: (q["action"], q["decided_by"], q["new_label"]) for q in quarantine.values()}
    assert summary == {
        ids[2]: ("removed", "scan", ""),  # backdoor
        ids[5]: ("removed", "scan", ""),
        ids[7]: ("removed", "reviewer", ""),
        ids[12]: ("kept", "reviewer", ""),
        ids[13]: ("removed", "reviewer", ""),
        ids[25]: ("relabelled", "scan", "1"),
    }
    assert quarantine[ids[7]]["reason"] == "removed by a reviewer (the scan did not flag it)"
    assert quarantine[ids[13]]["note"] == '=HYPERLINK("http://x","y")'
    raw = (out / "quarantine.csv").read_text(encoding="utf-8")
    assert "'=HYPERLINK" in raw  # the note is spreadsheet-safe on disk
    cleaned = load_dataset(out / "data.h5")
    names = np.array(cleaned.class_names)[cleaned.labels]
    assert names[cleaned.ids.index(ids[12])] == "1"  # kept with its own label, not "2"
    assert names[cleaned.ids.index(ids[25])] == "1"  # relabelled by the scan
    assert ids[7] not in cleaned.ids and ids[13] not in cleaned.ids and ids[8] in cleaned.ids


def test_without_decisions_every_entry_is_the_scans(source, scan):
    dataset = load_dataset(source)
    plan = plan_sanitize(dataset, read_scan_decisions(scan, dataset), "remove")
    assert {q["decided_by"] for q in plan.quarantine} == {"scan"}
    assert {q["note"] for q in plan.quarantine} == {""}
    assert plan.n_removed == len(FLAGGED) and plan.n_kept == 0


def test_decisions_read_through_csv_safety_and_with_a_byte_order_mark(source, tmp_path):
    dataset = load_dataset(source)
    path = tmp_path / "decisions.csv"
    path.write_text(f"\ufeffid,decision,note\n{dataset.ids[0]},remove,'=1+1\n", encoding="utf-8")
    decided = read_reviewer_decisions(path, dataset)
    assert decided.remove[0] and decided.remove.sum() == 1 and not decided.keep.any()
    assert decided.note[0] == "=1+1"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("id,decision,note\n{id0},keep,\nno-such-id,keep,\n", "line 3: id 'no-such-id' is not"),
        (
            "id,decision,note\n{id0},keep,\n{id1},keep,\n{id0},remove,\n",
            "is repeated (first on line 2)",
        ),
        ("id,decision,note\n{id0},drop,\n", "line 2: decision 'drop' is not keep or remove"),
        ("id,decision,note\n{id0},,\n", "line 2: decision '' is not keep or remove"),
        ("id,note\n{id0},x\n", "lacks the column(s) decision"),
        ("identifier,decision\n{id0},keep\n", "lacks the column(s) id, note"),
        ("", "is empty"),
        ("id,decision,note\n{id0},keep\n", "line 2 has 2 fields, the header 3"),
        ("id,decision,note\n{id0},keep,{big}\n", "not a readable CSV"),  # csv's field limit
    ],
)
def test_bad_decisions_exit_non_zero_and_write_nothing(source, scan, tmp_path, content, message):
    dataset = load_dataset(source)
    path = tmp_path / "decisions.csv"
    path.write_text(
        content.format(id0=dataset.ids[0], id1=dataset.ids[1], big="x" * 200_000), encoding="utf-8"
    )
    out = tmp_path / "out"
    result = run("sanitize", source, "--scores", scan, "--decisions", path, "--out", out)
    assert result.exit_code == 1, result.output
    assert "decisions.csv" in result.output and message in result.output, result.output
    assert not out.exists()


def test_missing_too_large_and_non_utf8_decisions(source, scan, tmp_path, monkeypatch):
    out = tmp_path / "out"
    result = run("sanitize", source, "--scores", scan, "--decisions", tmp_path / "none.csv",
                 "--out", out)  # fmt: skip
    assert result.exit_code == 1 and "no decisions file" in result.output
    path = tmp_path / "decisions.csv"
    path.write_bytes(b"id,decision,note\n\xff\xfe,keep,\n")
    result = run("sanitize", source, "--scores", scan, "--decisions", path, "--out", out)
    assert result.exit_code == 1 and "not UTF-8" in result.output
    dataset = load_dataset(source)
    path.write_text(f"id,decision,note\n{dataset.ids[0]},keep,{'x' * 200}\n", encoding="utf-8")
    monkeypatch.setattr("poisonguard.reviewer_decisions.MAX_BYTES", 100)
    result = run("sanitize", source, "--scores", scan, "--decisions", path, "--out", out)
    assert result.exit_code == 1 and "is larger than" in result.output
    assert not out.exists()
    assert MAX_BYTES >= 1 << 20  # the real cap leaves room for a million short decisions
