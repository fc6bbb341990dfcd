"""Hostile inputs (issue 14, items 2, 3 and part of 8): no live formula in a CSV the tool writes,
nothing outside the dataset read, and bad input ends in one line, exit 1, nothing half-written.

* Spreadsheet-safe CSVs: ids (HDF5 ``ids``, image file paths) and class names that would start a
  formula are written with a leading quote in ``scores.csv``, ``quarantine.csv`` and
  ``ground_truth.csv``, and read back exactly (``sanitize`` matches them to the dataset).
* Symbolic links in an image folder that leave it, loop or are broken are skipped with a note;
  ``scan``, ``sanitize`` and ``poison`` never read the file behind them.
* HDF5 datasets with external storage or virtual datasets are refused.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import json
import os
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import assert_clean_failure
from conftest import run_cli as run
from PIL import Image

from poisonguard import csv_safety
from poisonguard.errors import DatasetError
from poisonguard.loaders import load_dataset
from poisonguard.sanitize import (
    ScanDecisions,
    plan_sanitize,
    read_scan_decisions,
    write_sanitized,
)

EPOCHS = "2"
FORMULA_START = re.compile(r"[=+\-@\t\r]")
NUMBER = re.compile(r"[+-]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|inf|nan)", re.IGNORECASE)

# ids from the issue and the brief, and the cases that make the scheme reversible
HOSTILE_IDS = [
    '=HYPERLINK("http://x","y")',
    "@SUM(A1)",
    "+1",
    "-x",
    "\tfoo",
    "\rbar",
    "-5",
    "'quoted",
    "''twice",
    "-",
    "=1+2,3",
    "cmd|' /C calc'!A0",
]
WRITTEN_IDS = [
    "'" + HOSTILE_IDS[0],
    "'@SUM(A1)",
    "+1",
    "'-x",
    "'\tfoo",
    "'\rbar",
    "-5",
    "''quoted",
    "'" + "''twice",
    "'-",
    "'=1+2,3",
    "cmd|' /C calc'!A0",
]
"""How :data:`HOSTILE_IDS` must be written: a quote before each that would start a formula."""
HOSTILE_CLASSES = ["=2+5", "@cls", "plain"]


def raw_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def read_back(path: Path) -> list[dict[str, str]]:
    """A CSV the tool wrote, read as a user of the library should (cells unescaped)."""
    with path.open(newline="", encoding="utf-8") as handle:
        header, *rows = csv_safety.reader(handle)
    return [dict(zip(header, row, strict=True)) for row in rows]


def assert_inert(path: Path) -> None:
    """No cell of ``path`` would start a formula in a spreadsheet."""
    for line, row in enumerate(raw_rows(path), start=1):
        for cell in row:
            assert not FORMULA_START.match(cell) or NUMBER.fullmatch(cell), (path.name, line, cell)


def checksums(root: Path) -> dict[str, str]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def png(path: Path, rng: np.random.Generator, value: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 255, size=(8, 8), dtype=np.uint8)
    if value is not None:
        pixels[:] = value
    Image.fromarray(pixels).save(path)


# --- the escaping rule ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("-x", "'-x"),
        ("\tfoo", "'\tfoo"),
        ("\rbar", "'\rbar"),
        ("-", "'-"),
        ("+", "'+"),
        ("-2+3", "'-2+3"),
        ("'quoted", "''quoted"),  # a leading quote is doubled: reading back is unambiguous
        ("''", "'''"),
        ("+1", "+1"),  # numbers are values, not formulas: kept as they are
        ("-5", "-5"),
        ("-0.25", "-0.25"),
        ("1e-08", "1e-08"),
        ("-1E+05", "-1E+05"),
        ("-inf", "-inf"),
        ("a=b", "a=b"),
        ("", ""),
        (7, "7"),
        (-2.5, "-2.5"),
        (None, ""),
    ],
)
def test_escape_rule_and_round_trip(value, written):
    assert csv_safety.escape_cell(value) == written
    assert csv_safety.escape_row([value, value]) == [written, written]
    original = "" if value is None else str(value)
    assert csv_safety.unescape_cell(written) == original


def test_writer_and_reader_round_trip_every_id_through_csv_quoting():
    buffer = io.StringIO()
    writer = csv_safety.writer(buffer, lineterminator="\n")
    rows = [["index", "id"], *([i, sample_id] for i, sample_id in enumerate(HOSTILE_IDS))]
    writer.writerows(rows)
    text = buffer.getvalue()
    for row in csv.reader(io.StringIO(text, newline="")):
        assert not FORMULA_START.match(row[1]) or NUMBER.fullmatch(row[1])
    back = list(csv_safety.reader(io.StringIO(text, newline="")))
    assert back == [[str(cell) for cell in row] for row in rows]


# --- scores.csv, quarantine.csv, ground_truth.csv with hostile ids and class names --------------


@pytest.fixture(scope="module")
def hostile_table(tmp_path_factory) -> Path:
    """An HDF5 table whose ``ids`` and string class names would be formulas in a spreadsheet."""
    rng = np.random.default_rng(0)
    per_class = 16
    n = per_class * len(HOSTILE_CLASSES)
    ids = HOSTILE_IDS + [f"row-{i}" if i % 2 else f"={i}" for i in range(n - len(HOSTILE_IDS))]
    labels = np.repeat(HOSTILE_CLASSES, per_class)
    x = rng.normal(size=(n, 5)).astype(np.float32) + 3 * np.repeat(np.arange(3), per_class)[:, None]
    path = tmp_path_factory.mktemp("hostile-table") / "table.h5"
    with h5py.File(path, "w") as handle:
        handle["x"] = x
        handle.create_dataset("y", data=labels.astype(object), dtype=h5py.string_dtype())
        handle.create_dataset("ids", data=np.array(ids, dtype=object), dtype=h5py.string_dtype())
    return path


@pytest.fixture(scope="module")
def table_scan(hostile_table, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hostile-table-scan") / "scan"
    cache = tmp_path_factory.mktemp("hostile-cache")
    result = run("scan", hostile_table, "--epochs", EPOCHS, "--out", out, "--cache-dir", cache)
    assert result.exit_code in (0, 3), result.output
    return out


def test_scores_csv_is_inert_and_reads_back_the_dataset_ids(hostile_table, table_scan):
    dataset = load_dataset(hostile_table)
    assert dataset.ids[: len(HOSTILE_IDS)] == HOSTILE_IDS
    scores = table_scan / "scores.csv"
    assert_inert(scores)
    raw = raw_rows(scores)[1:]
    assert [row[1] for row in raw[: len(HOSTILE_IDS)]] == WRITTEN_IDS
    assert {row[2] for row in raw} == {"'=2+5", "'@cls", "plain"}
    back = read_back(scores)
    assert [row["id"] for row in back] == dataset.ids
    assert [row["label"] for row in back] == [dataset.class_names[c] for c in dataset.labels]
    # sanitize's reader matches every row to the dataset (it would refuse another dataset)
    decisions = read_scan_decisions(table_scan, dataset)
    assert decisions.flagged.shape == (dataset.n_samples,)


def flag_rows(scan: Path, rows: set[int], destination: Path) -> Path:
    """A copy of a scan's scores.csv with ``rows`` flagged as backdoor; the id and label cells
    stay as the scan wrote them."""
    table = raw_rows(scan / "scores.csv")
    header = table[0]
    flagged, finding = header.index("flagged"), header.index("finding")
    for i in rows:
        table[i + 1][flagged], table[i + 1][finding] = "1", "backdoor"
    for i in set(range(len(table) - 1)) - rows:
        table[i + 1][flagged], table[i + 1][finding] = "0", ""
    destination.mkdir(parents=True)
    with (destination / "scores.csv").open("w", newline="", encoding="utf-8") as handle:
        # "\r\n": csv.writer then quotes the cells holding a carriage return
        csv.writer(handle, lineterminator="\r\n").writerows(table)
    return destination


def test_sanitize_matches_hostile_ids_and_writes_an_inert_quarantine(
    hostile_table, table_scan, tmp_path
):
    dataset = load_dataset(hostile_table)
    removed = set(range(len(HOSTILE_IDS)))
    scan = flag_rows(table_scan, removed, tmp_path / "scan")
    out = tmp_path / "clean"
    result = run("sanitize", hostile_table, "--scores", scan, "--action", "remove", "--out", out)
    assert result.exit_code == 0, result.output
    quarantine = out / "quarantine.csv"
    assert_inert(quarantine)
    entries = read_back(quarantine)
    assert [entry["id"] for entry in entries] == HOSTILE_IDS
    assert {entry["label"] for entry in entries} == {HOSTILE_CLASSES[0]}
    cleaned = load_dataset(out / "table.h5")
    assert cleaned.ids == [i for k, i in enumerate(dataset.ids) if k not in removed]


def load_score_against_truth():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "score_against_truth.py"
    spec = importlib.util.spec_from_file_location("score_against_truth_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_poison_ground_truth_is_inert_and_joins_the_scores(hostile_table, table_scan, tmp_path):
    out = tmp_path / "poisoned"
    result = run("poison", hostile_table, "--attack", "flip-random", "--rate", "0.2", "--out", out)
    assert result.exit_code == 0, result.output
    truth = out / "ground_truth.csv"
    assert_inert(truth)
    rows = read_back(truth)
    copy = load_dataset(out / "table.h5")
    assert [row["id"] for row in rows] == copy.ids == load_dataset(hostile_table).ids
    names = {row["original_label"] for row in rows} | {row["new_label"] for row in rows}
    assert names == set(HOSTILE_CLASSES)
    # the benchmark scorer joins scores.csv and ground_truth.csv by the unescaped ids
    metrics = load_score_against_truth().detection_metrics(table_scan / "scores.csv", truth)
    assert "clean_flagged" in metrics
    # flagged samples score 0.5 or more and the rest less: the top of the score is the flags,
    # so the best cut of the score is at least as good as the scan's
    assert metrics["best_f1_score"] >= metrics["f1"]
    assert 1 <= metrics["best_k_score"] <= metrics["n"]


# --- symbolic links in image folders -------------------------------------------------------------


@pytest.fixture
def linked_folder(tmp_path) -> dict[str, Path]:
    """An image folder with hostile class names and links that leave it, loop or are broken.

    ``outside/secret.png`` is a distinctive all-white image no sample of the dataset has.
    """
    rng = np.random.default_rng(3)
    root = tmp_path / "data" / "images"
    outside = tmp_path / "outside"
    classes = ["=cmd", "@SUM(A1)", "-x", "'quoted"]
    for name in classes:
        for i in range(12):
            png(root / name / f"img_{i:02d}.png", rng)
    png(outside / "secret.png", rng, value=255)
    for i in range(12):
        png(outside / "class" / f"s_{i:02d}.png", rng, value=254)
    os.symlink(outside / "secret.png", root / "=cmd" / "leak.png")  # absolute target
    os.symlink("../../../outside/secret.png", root / "-x" / "relative_leak.png")
    os.symlink(outside / "class", root / "leaked_class")  # a class folder outside
    os.symlink("loop_b.png", root / "@SUM(A1)" / "loop_a.png")
    os.symlink("loop_a.png", root / "@SUM(A1)" / "loop_b.png")
    os.symlink("self_loop", root / "self_loop")  # a class folder that is a loop
    os.symlink("missing.png", root / "'quoted" / "broken.png")
    os.symlink("../=cmd/img_00.png", root / "-x" / "alias.png")  # inside: followed
    return {"root": root, "secret": outside / "secret.png", "outside": outside}


SKIPPED_LINKS = {
    "=cmd/leak.png",
    "-x/relative_leak.png",
    "leaked_class",
    "@SUM(A1)/loop_a.png",
    "@SUM(A1)/loop_b.png",
    "self_loop",
    "'quoted/broken.png",
}


def test_loader_skips_links_that_leave_loop_or_break_with_a_note(linked_folder, tmp_path):
    dataset = load_dataset(linked_folder["root"])
    assert set(dataset.class_names) == {"=cmd", "@SUM(A1)", "-x", "'quoted"}
    assert not SKIPPED_LINKS & set(dataset.ids)
    assert "-x/alias.png" in dataset.ids  # a link that stays inside is read
    assert dataset.n_samples == 4 * 12 + 1
    assert not (dataset.x == 255).all(axis=(1, 2, 3)).any()  # the secret image is not loaded
    note = next(n for n in dataset.notes if "symbolic link" in n)
    assert "7 symbolic link(s)" in note
    for reason in ("leads outside the dataset folder", "link loop", "broken symbolic link"):
        assert reason in note
    # the rule is relative to the folder with its links resolved: a linked root reads the same
    alias = tmp_path / "alias"
    os.symlink(linked_folder["root"], alias)
    assert load_dataset(alias).ids == dataset.ids


def test_class_with_only_outside_links_is_refused_naming_them(linked_folder, tmp_path):
    root = linked_folder["root"]
    (root / "empty").mkdir()
    os.symlink(linked_folder["secret"], root / "empty" / "only.png")
    out = tmp_path / "out"
    result = run("poison", root, "--attack", "flip-random", "--rate", "0.1", "--out", out)
    assert_clean_failure(result, "empty", "has no images", "empty/only.png", "outside")
    assert not out.exists()


def test_scan_sanitize_and_poison_never_read_outside_the_folder(linked_folder, tmp_path):
    root, secret = linked_folder["root"], linked_folder["secret"]
    secret_bytes = secret.read_bytes()
    before = checksums(linked_folder["outside"])
    scan = tmp_path / "scan"
    result = run("scan", root, "--epochs", EPOCHS, "--out", scan, "--cache-dir", tmp_path / "cache")
    assert result.exit_code in (0, 3), result.output
    assert "Traceback" not in result.output
    report = json.loads((scan / "report.json").read_text(encoding="utf-8"))
    assert any("leads outside the dataset folder" in n for n in report["dataset"]["notes"])
    assert_inert(scan / "scores.csv")
    dataset = load_dataset(root)
    ids = [row["id"] for row in read_back(scan / "scores.csv")]
    assert ids == dataset.ids

    flagged = {dataset.ids.index("=cmd/img_01.png"), dataset.ids.index("'quoted/img_02.png")}
    scores = flag_rows(scan, flagged, tmp_path / "flagged")
    out = tmp_path / "clean"
    result = run("sanitize", root, "--scores", scores, "--out", out)
    assert result.exit_code == 0, result.output
    assert_inert(out / "quarantine.csv")
    assert [e["id"] for e in read_back(out / "quarantine.csv")] == [
        dataset.ids[i] for i in sorted(flagged)
    ]
    copied = list((out / "images").rglob("*"))
    assert all(not p.is_symlink() for p in copied)
    assert all(p.read_bytes() != secret_bytes for p in copied if p.is_file())
    assert not (out / "images" / "leaked_class").exists()

    poisoned = tmp_path / "poisoned"
    result = run("poison", root, "--attack", "flip-random", "--rate", "0.2", "--out", poisoned)
    assert result.exit_code == 0, result.output
    assert_inert(poisoned / "ground_truth.csv")
    truth_ids = [row["id"] for row in read_back(poisoned / "ground_truth.csv")]
    assert truth_ids == load_dataset(poisoned / "images").ids
    files = [p for p in (poisoned / "images").rglob("*") if p.is_file()]
    assert len(files) == dataset.n_samples
    assert all(p.read_bytes() != secret_bytes for p in files)
    assert checksums(linked_folder["outside"]) == before


def test_writer_refuses_a_file_turned_into_an_outside_link_after_loading(linked_folder, tmp_path):
    root = linked_folder["root"]
    dataset = load_dataset(root)
    n = dataset.n_samples
    nothing_flagged = ScanDecisions(
        tmp_path / "scores.csv",
        score=np.zeros(n),
        flagged=np.zeros(n, dtype=bool),
        finding=np.full(n, "", dtype=object),
        predicted=np.full(n, -1),
        confidence=np.zeros(n),
    )
    plan = plan_sanitize(dataset, nothing_flagged, "remove")  # every file is copied
    victim = root / "-x" / "img_03.png"
    victim.unlink()
    os.symlink(linked_folder["secret"], victim)
    out = tmp_path / "out"
    with pytest.raises(DatasetError, match="leads outside the dataset folder"):
        write_sanitized(dataset, plan, out)
    assert not (out / "images").exists()
    assert not out.exists() or not any(out.iterdir())


# --- HDF5 data stored outside the file ------------------------------------------------------------


def h5_with_external(folder: Path, key: str = "x") -> Path:
    """An HDF5 table whose ``key`` keeps its raw data in ``outside.bin`` beside the file."""
    folder.mkdir(parents=True, exist_ok=True)
    n = 40
    x = np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)
    raw = folder / "outside.bin"
    x.tofile(raw)
    path = folder / "external.h5"
    with h5py.File(path, "w") as handle:
        if key == "x":
            handle.create_dataset(
                "x", shape=x.shape, dtype=x.dtype, external=[(str(raw), 0, x.nbytes)]
            )
        else:
            handle["x"] = x
            handle.create_dataset(
                key, shape=x.shape, dtype=x.dtype, external=[(str(raw), 0, x.nbytes)]
            )
        handle["y"] = np.arange(n) % 2
    return path


def h5_with_virtual(folder: Path) -> Path:
    """An HDF5 table whose ``x`` is a virtual dataset mapped from another file."""
    folder.mkdir(parents=True, exist_ok=True)
    n = 40
    source = folder / "elsewhere.h5"
    with h5py.File(source, "w") as handle:
        handle["data"] = np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)
    layout = h5py.VirtualLayout(shape=(n, 4), dtype=np.float32)
    layout[:] = h5py.VirtualSource(str(source), "data", shape=(n, 4))
    path = folder / "virtual.h5"
    with h5py.File(path, "w") as handle:
        handle.create_virtual_dataset("x", layout)
        handle["y"] = np.arange(n) % 2
    return path


@pytest.mark.parametrize(
    ("make", "key", "problem"),
    [
        (h5_with_external, "x", "external raw file"),
        (lambda folder: h5_with_external(folder, key="meta/extra"), "meta/extra", "external raw"),
        (h5_with_virtual, "x", "virtual dataset"),
    ],
    ids=["external-x", "external-other-dataset", "virtual-x"],
)
def test_hdf5_stored_outside_the_file_is_refused_by_every_command(tmp_path, make, key, problem):
    path = make(tmp_path / "data")
    with pytest.raises(DatasetError, match=problem) as caught:
        load_dataset(path)
    assert str(caught.value).startswith(f"{path}: dataset {key!r}")

    scan_out = tmp_path / "scan"
    result = run("scan", path, "--epochs", EPOCHS, "--out", scan_out)
    assert_clean_failure(result, str(path), f"dataset {key!r}", problem)
    assert not scan_out.exists()

    poison_out = tmp_path / "poisoned"
    result = run("poison", path, "--attack", "flip-random", "--rate", "0.1", "--out", poison_out)
    assert_clean_failure(result, str(path), problem)
    assert not poison_out.exists()

    # a previous sanitize output stays as it was
    previous = tmp_path / "clean"
    previous.mkdir()
    (previous / "quarantine.csv").write_text("index,id\n", encoding="utf-8")
    result = run("sanitize", path, "--scores", tmp_path / "scores", "--out", previous)
    assert_clean_failure(result, str(path), problem)
    assert sorted(p.name for p in previous.iterdir()) == ["quarantine.csv"]
    assert (previous / "quarantine.csv").read_text(encoding="utf-8") == "index,id\n"


# --- a malformed scores.csv ----------------------------------------------------------------------


def test_sanitize_reports_an_unparsable_scores_csv_in_one_line(hostile_table, tmp_path):
    scan = tmp_path / "scan"
    scan.mkdir()
    huge = "x" * (csv.field_size_limit() + 10)
    header = "index,id,label,score,flagged,finding,predicted_label,predicted_probability"
    (scan / "scores.csv").write_text(f"{header}\n0,{huge},a,0.1,0,,a,0.9\n", encoding="utf-8")
    previous = tmp_path / "clean"
    previous.mkdir()
    (previous / "quarantine.csv").write_text("old\n", encoding="utf-8")
    result = run("sanitize", hostile_table, "--scores", scan, "--out", previous)
    assert_clean_failure(result, "scores.csv", "not a readable CSV file")
    assert (previous / "quarantine.csv").read_text(encoding="utf-8") == "old\n"
    assert sorted(p.name for p in previous.iterdir()) == ["quarantine.csv"]
