"""Hostile and degenerate data (issue 14, items 1 and 4): degenerate but valid data scans, with a
warning that says what could not be judged; a file that declares sizes it does not hold is
refused before anything is allocated, with one line naming the file, the size and the limit.

* Degenerate data: a class of identical images (blank placeholders), a class most of whose
  samples are copies of one, near-identical images, constant and rank-deficient table columns, a
  class of a dozen, a class of two, 1,000 samples against 12, features of a tiny scale. Every
  scan ends with exit 0, a report, no traceback, and a warning (stdout, stderr, report.json)
  naming the classes the detectors could not judge; those classes are ``not-cleared``.
* Size bombs: an NPZ member whose ``.npy`` header declares 72.8 TiB, one whose labels do, a
  chunked and compressed HDF5 dataset of a few KB that declares terabytes (in memory and out of
  core), a PNG header that declares 100,000 x 100,000 pixels, a CSV whose wide header over many
  blank lines declares terabytes. Each ends with exit 1, a message naming the file, the declared
  size and the limit (and ``--max-bytes``), no traceback and no output folder. ``--max-bytes``
  lowers and raises the limit on every command that loads a dataset.
"""

from __future__ import annotations

import csv
import io
import json
import struct
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner, Result
from numpy.lib import format as npy
from PIL import Image
from poisonguard.cli.main import main

from poisonguard import limits
from poisonguard.dataset import Dataset
from poisonguard.detectors.class_rows import robust_class_fit
from poisonguard.detectors.per_class import per_class_scores
from poisonguard.errors import DatasetError
from poisonguard.loaders import load_dataset
from poisonguard.report import REPORT_FILES
from poisonguard.results import Embedding
from poisonguard.scan import ScanSettings, scan_embedding

EPOCHS = "1"
SIDE = 8
COULD_NOT_JUDGE = "could not judge this class"


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)


def scan(dataset: Path, out: Path, cache: Path, *extra: str | Path) -> Result:
    return run("scan", dataset, "--epochs", EPOCHS, "--out", out, "--cache-dir", cache, *extra)


def read_report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text(encoding="utf-8"))


def verdicts(report: dict) -> dict[str, str]:
    return {f["name"]: f["verdict"] for f in report["findings"]["per_class"]}


def assert_scanned(result: Result, out: Path) -> dict:
    """Exit 0, no traceback, exactly the report files, nothing half-written; the report."""
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert result.exception is None
    assert "Traceback" not in result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES)
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".")]
    return read_report(out)


def assert_refused(result: Result, named: Path, *phrases: str, out: Path | None = None) -> None:
    """Exit 1 with one clean message naming ``named`` and each phrase; nothing written."""
    assert result.exit_code == 1, result.output + repr(result.exception)
    assert isinstance(result.exception, SystemExit)  # a message, not a crash
    assert "Traceback" not in result.output
    assert "Error:" in result.output
    message = result.output[result.output.index("Error:") :]
    assert str(named) in message
    for phrase in phrases:
        assert phrase in message, (phrase, message)
    if out is not None:
        assert not out.exists()
        assert not out.parent.exists() or not [
            p.name for p in out.parent.iterdir() if p.name.startswith(".")
        ]


def save_png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


# --- degenerate images ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def degenerate_folder(tmp_path_factory, synthetic) -> Path:
    """An image folder with every degenerate class at once (8x8 grayscale PNGs):

    ``blank``: 14 identical black images (placeholders); ``copies``: 22 copies of one image and
    8 others; ``near``: 30 images of one grey that differ in one pixel by one level; ``bars``
    and ``boxes``: 30 ordinary images each; ``dozen``: 12 ordinary images; ``pair``: 2 images.
    """
    root = tmp_path_factory.mktemp("degenerate") / "images"
    rng = np.random.default_rng(0)
    for j in range(14):
        save_png(root / "blank" / f"img_{j:03d}.png", np.zeros((SIDE, SIDE), np.uint8))
    original = synthetic.pattern_image(2, rng)
    for j in range(30):
        pixels = original if j < 22 else synthetic.pattern_image(2, rng)
        save_png(root / "copies" / f"img_{j:03d}.png", pixels)
    for j in range(30):
        pixels = np.full((SIDE, SIDE), 128, np.uint8)
        pixels[0, 0] += j % 2
        save_png(root / "near" / f"img_{j:03d}.png", pixels)
    for name, kind, count in (("bars", 0, 30), ("boxes", 3, 30), ("dozen", 1, 12), ("pair", 1, 2)):
        for j in range(count):
            save_png(root / name / f"img_{j:03d}.png", synthetic.pattern_image(kind, rng))
    return root


@pytest.fixture(scope="module")
def degenerate_scan(degenerate_folder, tmp_path_factory) -> tuple[Result, Path]:
    work = tmp_path_factory.mktemp("degenerate-scan")
    out = work / "reports" / "scan"
    return scan(degenerate_folder, out, work / "cache"), out


def test_degenerate_image_folder_scans_with_a_warning_for_each_class_it_cannot_judge(
    degenerate_scan,
):
    result, out = degenerate_scan
    report = assert_scanned(result, out)
    warnings = report["warnings"]
    blank = [w for w in warnings if w.startswith("class 'blank'")]
    assert len(blank) == 1
    assert "same features" in blank[0] and COULD_NOT_JUDGE in blank[0]
    # said on stdout (the summary) and on stderr (the log) as well
    assert f"Warning: {blank[0]}" in result.output
    assert f"poisonguard: WARNING: {blank[0]}" in result.output
    found = verdicts(report)
    assert found["blank"] == "not-cleared"
    reason = next(f["reason"] for f in report["findings"]["per_class"] if f["name"] == "blank")
    assert COULD_NOT_JUDGE in reason
    assert found["pair"] == "skipped"
    assert any("'pair' has 2 samples" in w for w in warnings)
    for name in ("bars", "boxes", "dozen"):
        assert found[name] in ("clean", "backdoor-target", "noisy-labels"), (name, found)


def test_degenerate_classes_score_zero_where_they_cannot_be_ranked(degenerate_scan):
    result, out = degenerate_scan
    assert_scanned(result, out)
    with (out / "scores.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 14 + 30 + 30 + 30 + 30 + 12 + 2
    blank = [r for r in rows if r["label"] == "blank"]
    for detector in ("spectral", "spectre", "activation-clustering"):
        assert {float(r[detector]) for r in blank} == {0.0}, detector
    for row in rows:  # every score is a number
        assert np.isfinite(float(row["score"]))


def test_class_of_copies_gets_its_core_from_the_distinct_samples_or_says_why_not(degenerate_scan):
    # 22 of 30 samples are one image: FastMCD's half is copies, which scikit-learn refuses
    # ("The covariance matrix of the support data is equal to 0"): a traceback before the fix
    result, out = degenerate_scan
    report = assert_scanned(result, out)
    copies = [w for w in report["warnings"] if w.startswith("class 'copies'")]
    assert len(copies) == 1, report["warnings"]
    assert "spectre" in copies[0]
    fitted = "fitted on the" in copies[0] and "distinct ones" in copies[0]
    assert fitted or COULD_NOT_JUDGE in copies[0]
    assert (verdicts(report)["copies"] == "not-cleared") == (not fitted)


@pytest.mark.parametrize("fmt", ["npz", "hdf5"])
def test_array_file_of_placeholders_and_copies_scans(fmt, tmp_path, synthetic):
    """The same through the array loaders: a class of identical images and a class that is
    two thirds copies of one image (the traceback of the issue)."""
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(4), 24)
    x = np.stack([synthetic.pattern_image(int(c) % 4, rng) for c in labels])
    x[labels == 0] = 7
    copies = np.flatnonzero(labels == 1)[:16]
    x[copies] = x[copies[0]]
    path = tmp_path / ("data.npz" if fmt == "npz" else "data.h5")
    if fmt == "npz":
        np.savez(path, x=x, y=labels)
    else:
        with h5py.File(path, "w") as handle:
            handle["x"], handle["y"] = x, labels
    out = tmp_path / "reports" / "scan"
    report = assert_scanned(scan(path, out, tmp_path / "cache"), out)
    assert any(w.startswith("class '0'") and COULD_NOT_JUDGE in w for w in report["warnings"])
    assert verdicts(report)["0"] == "not-cleared"
    assert any(w.startswith("class '1'") and "spectre" in w for w in report["warnings"])


def test_extreme_imbalance_with_a_near_identical_small_class_scans(tmp_path, synthetic):
    rng = np.random.default_rng(2)
    labels = np.repeat([0, 1], [1000, 12])
    x = np.stack([synthetic.pattern_image(0, rng) for _ in range(1000)] + [np.zeros((8, 8))] * 12)
    x = x.astype(np.uint8)
    x[1000:, 0, 0] = np.arange(12) % 2  # 12 samples, two distinct images
    path = tmp_path / "imbalanced.npz"
    np.savez(path, x=x, y=labels)
    out = tmp_path / "reports" / "scan"
    report = assert_scanned(scan(path, out, tmp_path / "cache"), out)
    assert report["dataset"]["n_samples"] == 1012
    assert set(verdicts(report)) == {"0", "1"}


# --- degenerate tables ----------------------------------------------------------------------------


def write_csv(path: Path, x: np.ndarray, labels: list[str]) -> Path:
    lines = [",".join([f"f{i}" for i in range(x.shape[1])] + ["label"])]
    lines += [
        ",".join([*(repr(float(v)) for v in row), name])
        for row, name in zip(x, labels, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_table_with_constant_columns_copies_rank_deficiency_and_a_class_of_two_scans(tmp_path):
    rng = np.random.default_rng(3)
    names = ["copied"] * 40 + ["flat"] * 40 + ["line"] * 40 + ["ok"] * 40 + ["two"] * 2
    x = rng.normal(size=(len(names), 6)) + np.repeat(np.arange(5), [40, 40, 40, 40, 2])[:, None]
    x[:, 4:] = 3.25  # two constant columns
    x[:28] = x[0]  # 'copied': 28 of 40 rows are one row
    x[40:80, :4] = 1.5  # 'flat': every row the same
    x[80:120, :4] = np.outer(rng.normal(size=40), [1.0, -2.0, 0.5, 3.0])  # 'line': rank 1
    path = write_csv(tmp_path / "table.csv", x, names)
    out = tmp_path / "reports" / "scan"
    result = scan(path, out, tmp_path / "cache", "--min-class-size", "2")
    report = assert_scanned(result, out)
    warnings = report["warnings"]
    assert any(w.startswith("class 'flat'") and COULD_NOT_JUDGE in w for w in warnings)
    assert any(w.startswith("class 'copied'") and "spectre" in w for w in warnings)
    found = verdicts(report)
    assert found["flat"] == "not-cleared"
    assert found["two"] != "skipped"  # scored with --min-class-size 2


# --- the detectors on degenerate features (no training) -------------------------------------------


def test_robust_fit_of_a_core_of_copies_is_made_on_the_distinct_rows():
    rng = np.random.default_rng(4)
    rows = rng.normal(size=(60, 6))
    rows[:40] = rows[0]
    notes: list[str] = []
    fitted = robust_class_fit(rows, np.random.default_rng(0), notes=notes)
    assert fitted is not None
    que, distance, ratio = fitted
    assert np.isfinite(que).all() and np.isfinite(ratio).all()
    assert np.ptp(ratio[40:]) > 0  # the distinct rows are ranked
    assert len(notes) == 1 and "39 of the 60" in notes[0] and "21 distinct" in notes[0]


def test_robust_fit_of_too_few_distinct_rows_says_why_not():
    rows = np.zeros((30, 4))
    rows[::10] = [1.0, 2.0, 0.0, 1.0]  # two distinct rows, 27 copies of one
    notes: list[str] = []
    assert robust_class_fit(rows, np.random.default_rng(0), notes=notes) is None
    assert len(notes) == 1 and "too few for a robust core" in notes[0]


def test_robust_fit_of_features_of_a_tiny_scale_matches_the_unit_scale():
    # scikit-learn's zero-covariance test has an absolute tolerance (1e-8): a class whose
    # features vary by 1e-5 was refused as "equal to 0" although it spreads
    rows = np.random.default_rng(5).normal(size=(80, 5))
    unit = robust_class_fit(rows, np.random.default_rng(0))
    tiny = robust_class_fit(rows * 2.0**-17, np.random.default_rng(0))
    assert unit is not None and tiny is not None
    np.testing.assert_allclose(tiny[2], unit[2], rtol=1e-6)


def test_per_class_scores_give_identical_classes_zero_and_a_note():
    rng = np.random.default_rng(6)
    labels = np.repeat([0, 1], 50)
    features = rng.normal(size=(100, 8))
    features[labels == 1] = 0.25
    result = per_class_scores(features, labels)
    same = labels == 1
    assert not np.any(np.asarray(result.spectral)[same])
    assert not np.any(np.asarray(result.robust.que)[same])
    assert not np.any(np.asarray(result.clusters[0])[same])
    assert [split.code for split in result.clusters[1]] == [0]
    assert result.unfitted == frozenset({1})
    assert set(result.notes) == {1} and "same features" in result.notes[1][0]
    assert np.any(np.asarray(result.robust.que)[~same])


def embedding_of(features: np.ndarray, labels: np.ndarray) -> Embedding:
    n, k = labels.size, int(labels.max()) + 1
    probabilities = np.full((n, k), 0.1 / max(k - 1, 1), dtype=np.float32)
    probabilities[np.arange(n), labels] = 0.9
    records = np.tile(np.linspace(1.0, 0.1, 3, dtype=np.float32), (n, 1))
    return Embedding(
        features=features.astype(np.float32),
        probabilities=probabilities,
        loss=records,
        margin=records[:, ::-1].copy(),
        gradient_sq=records,
        model={"source": "test"},
        input_shape=(features.shape[1],),
        train_accuracy=1.0,
        fingerprint="0" * 64,
    )


@pytest.mark.parametrize(
    "shape",
    ["all-identical", "all-zero", "two-values", "tiny-scale", "copies", "class-of-two"],
)
def test_scan_embedding_copes_with_degenerate_features(shape):
    rng = np.random.default_rng(7)
    sizes = [60, 60, 60, 60] if shape != "class-of-two" else [60, 60, 60, 2]
    labels = np.repeat(np.arange(4), sizes)
    features = rng.normal(size=(labels.size, 12)) + 4.0 * labels[:, None]
    first = labels == 0
    if shape == "all-identical":
        features[:] = 2.0
    elif shape == "all-zero":
        features[:] = 0.0
    elif shape == "two-values":
        features[first] = np.where((np.arange(60) % 5 == 0)[:, None], 1.0, 0.0)
    elif shape == "tiny-scale":
        features[first] = 1e-6 * rng.normal(size=(60, 12))
    elif shape == "copies":
        features[np.flatnonzero(first)[:45]] = features[0]
    dataset = Dataset(
        x=features.astype(np.float32),
        labels=labels,
        class_names=list("abcd"),
        ids=[str(i) for i in range(labels.size)],
        kind="table",
        path=Path("memory"),
        format="npz",
    )
    settings = ScanSettings(min_class_size=2 if shape == "class-of-two" else 10)
    result = scan_embedding(dataset, embedding_of(features, labels), settings)
    assert np.isfinite(result.score).all()
    found = {f.name: f.verdict for f in result.class_findings}
    if shape in ("all-identical", "all-zero"):
        assert set(found.values()) == {"not-cleared"}
        assert sum(COULD_NOT_JUDGE in w for w in result.warnings) == 4
    if shape == "class-of-two":
        assert found["d"] != "skipped"


# --- size bombs -----------------------------------------------------------------------------------


def npy_member(shape: tuple[int, ...], dtype: str, payload: bytes = b"") -> bytes:
    """A ``.npy`` file: a header declaring ``shape`` and ``dtype``, then only ``payload``."""
    buffer = io.BytesIO()
    header = {"descr": npy.dtype_to_descr(np.dtype(dtype)), "fortran_order": False}
    npy.write_array_header_1_0(buffer, {**header, "shape": shape})
    return buffer.getvalue() + payload


def npy_of(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def write_npz(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(f"{name}.npy", data)
    return path


def huge_png(path: Path, width: int, height: int) -> Path:
    """A PNG of a few bytes whose header declares ``width`` x ``height`` grayscale pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + data)
    return path


def small_arrays(n: int = 20) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(8)
    return rng.integers(0, 255, size=(n, SIDE, SIDE), dtype=np.uint8), np.arange(n) % 2


def npz_declaring_huge_x(root: Path) -> tuple[Path, list[str]]:
    path = write_npz(
        root / "bomb.npz",
        {"x": npy_member((10**7, 10**6), "<f8", b"\0" * 4096), "y": npy_of(np.arange(10) % 2)},
    )
    assert path.stat().st_size < 10_000
    return path, ["'x'", "(10000000, 1000000)", "80,000,000,000,000 bytes"]


def npz_declaring_huge_labels(root: Path) -> tuple[Path, list[str]]:
    x, _ = small_arrays()
    path = write_npz(
        root / "labels.npz", {"x": npy_of(x), "y": npy_member((20, 10**12), "<i8", b"\0" * 64)}
    )
    return path, ["'y'", "(20, 1000000000000)", "160,000,000,000,000 bytes"]


def hdf5_declaring_huge_x(root: Path) -> tuple[Path, list[str]]:
    path = root / "bomb.h5"
    with h5py.File(path, "w") as handle:
        x = handle.create_dataset(
            "x", shape=(10**9, 64, 64), dtype="uint8", chunks=(1, 64, 64), compression="gzip"
        )
        x[0] = 1  # one chunk written; the rest is only declared
        handle["y"] = np.arange(10) % 2
    assert path.stat().st_size < 100_000
    return path, ["'x'", "(1000000000, 64, 64)", "4,096,000,000,000 bytes", "in memory"]


def hdf5_declaring_huge_labels(root: Path) -> tuple[Path, list[str]]:
    x, _ = small_arrays()
    path = root / "labels.h5"
    with h5py.File(path, "w") as handle:
        handle["x"] = x
        handle.create_dataset(
            "y", shape=(20, 10**11), dtype="uint8", chunks=(1, 4096), compression="gzip"
        )
    return path, ["'y'", "(20, 100000000000)", "2,000,000,000,000 bytes"]


def png_declaring_huge_size(root: Path) -> tuple[Path, list[str]]:
    folder = root / "images"
    for name in ("a", "b"):
        for j in range(3):
            save_png(folder / name / f"{j}.png", np.zeros((SIDE, SIDE), np.uint8))
    huge = huge_png(folder / "a" / "huge.png", 100_000, 100_000)
    return huge, ["100000 x 100000 pixels", "40,000,000,000 bytes", "89,478,485 pixels"]


def csv_declaring_huge_table(root: Path) -> tuple[Path, list[str]]:
    # 200,000 feature columns in the header and 5 million blank lines: 6.6 MB on disk that
    # the loader would size at 5,000,002 x 200,000 float32 values
    path = root / "wide.csv"
    header = ",".join(f"c{i}" for i in range(200_000)) + ",label\n"
    path.write_bytes(header.encode() + b"\n" * 5_000_000)
    return path, ["200,000 feature columns", "4,000,001,600,000 bytes"]


BOMBS = [
    npz_declaring_huge_x,
    npz_declaring_huge_labels,
    hdf5_declaring_huge_x,
    hdf5_declaring_huge_labels,
    png_declaring_huge_size,
    csv_declaring_huge_table,
]


@pytest.mark.parametrize("make", BOMBS, ids=[f.__name__ for f in BOMBS])
def test_size_bomb_is_refused_before_anything_is_allocated(make, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    named, phrases = make(inputs)
    dataset = named.parent.parent if named.suffix == ".png" else named
    out = tmp_path / "reports" / "scan"
    cache = tmp_path / "cache"
    result = scan(dataset, out, cache)
    assert_refused(result, named, *phrases, "more than the limit of", "--max-bytes", out=out)
    assert not cache.exists() or not any(cache.iterdir())


def test_hdf5_bomb_is_refused_out_of_core_against_the_staging_limit(tmp_path):
    named, _ = hdf5_declaring_huge_x(tmp_path)
    out = tmp_path / "reports" / "scan"
    cache = tmp_path / "cache"
    result = scan(named, out, cache, "--chunk-rows", "4096")
    assert_refused(
        result,
        named,
        "4,096,000,000,000 bytes",
        "in a staging file",
        "68,719,476,736 bytes (64.0 GiB)",
        "--max-bytes",
        out=out,
    )
    # the staging area lives in the cache folder: nothing is left there
    assert not cache.exists() or not any(p for p in cache.rglob("*") if p.is_file())


@pytest.mark.parametrize("command", ["poison", "sanitize", "evaluate", "privacy"])
def test_every_command_that_loads_a_dataset_refuses_a_bomb(command, tmp_path):
    named, phrases = npz_declaring_huge_x(tmp_path)
    out = tmp_path / "out"
    extra = {
        "poison": ["--attack", "flip-random", "--rate", "0.1", "--out", out],
        "sanitize": ["--scores", tmp_path / "no-scan", "--out", out],
        "evaluate": ["--attack", "flip-random", "--rate", "0.1", "--out", out],
        "privacy": ["--out", out],
    }[command]
    result = run(command, named, *extra)
    assert_refused(result, named, *phrases, "--max-bytes", out=out)


def test_a_second_dataset_is_held_to_the_same_limit(tmp_path):
    x, y = small_arrays(40)
    good = tmp_path / "good.npz"
    np.savez(good, x=x, y=y)
    named, phrases = npz_declaring_huge_x(tmp_path)
    out = tmp_path / "out"
    result = run("privacy", good, "--holdout", named, "--out", out)
    assert_refused(result, named, *phrases, out=out)


def test_max_bytes_lowers_and_raises_the_limit(tmp_path):
    x, y = small_arrays(40)  # x: 40 x 8 x 8 uint8 = 2,560 bytes
    path = tmp_path / "data.npz"
    np.savez(path, x=x, y=y)
    out = tmp_path / "copy"
    args = ["poison", path, "--attack", "flip-random", "--rate", "0.1", "--out", out]
    refused = run(*args, "--max-bytes", "2000")
    assert_refused(
        refused, path, "2,560 bytes", "limit of 2,000 bytes", "set with --max-bytes", out=out
    )
    written = run(*args, "--max-bytes", "1M")
    assert written.exit_code == 0, written.output
    assert (out / "data.npz").exists()


def test_max_bytes_applies_to_each_image_and_raising_it_lets_the_writer_read_it(tmp_path):
    folder = tmp_path / "images"
    rng = np.random.default_rng(9)
    for name in ("a", "b"):
        for j in range(6):
            save_png(folder / name / f"{j}.png", rng.integers(0, 255, (32, 32), dtype=np.uint8))
    out = tmp_path / "copy"
    args = ["poison", folder, "--attack", "patch", "--target", "a", "--rate", "0.2"]
    refused = run(*args, "--out", out, "--max-bytes", "4000")
    # 32 x 32 pixels at 4 bytes each: 4,096 bytes decoded
    assert_refused(refused, folder / "a" / "0.png", "32 x 32 pixels", "4,096 bytes", out=out)
    assert "set with --max-bytes" in refused.output
    written = run(*args, "--out", out, "--max-bytes", "64K")
    assert written.exit_code == 0, written.output
    assert len(list((out / "images").rglob("*.png"))) == 12
    assert Image.MAX_IMAGE_PIXELS == limits.IMAGE_PIXELS  # restored after the command


def test_skip_bad_leaves_out_an_image_that_declares_too_many_pixels(tmp_path, synthetic):
    folder = synthetic.write_image_folder(tmp_path / "images", {"a": 12, "b": 12})
    huge_png(folder / "b" / "huge.png", 50_000, 50_000)
    out = tmp_path / "reports" / "scan"
    report = assert_scanned(scan(folder, out, tmp_path / "cache", "--skip-bad"), out)
    skipped = report["dataset"]["skipped"]
    assert [s["file"] for s in skipped] == ["b/huge.png"]
    assert "50000 x 50000 pixels" in skipped[0]["reason"]
    assert "limit" in skipped[0]["reason"]


def test_bad_max_bytes_is_a_usage_error(tmp_path):
    x, y = small_arrays()
    path = tmp_path / "data.npz"
    np.savez(path, x=x, y=y)
    for value in ("lots", "0", "-5", "12X"):
        result = run("scan", path, "--max-bytes", value, "--out", tmp_path / "out")
        assert result.exit_code == 2, (value, result.output)
        assert "Invalid value for '--max-bytes'" in result.output
        assert "is not a size" in result.output
    assert not (tmp_path / "out").exists()


def test_loaders_take_max_bytes_directly(tmp_path):
    x, y = small_arrays(40)
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as handle:
        handle["x"], handle["y"] = x, y
    with pytest.raises(DatasetError, match="limit of 1,000 bytes"):
        load_dataset(path, max_bytes=1000)
    assert load_dataset(path, max_bytes=2560).n_samples == 40
    with limits.max_bytes_setting(1000), pytest.raises(DatasetError, match="set with --max"):
        load_dataset(path)


# --- the limits themselves ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("68719476736", 64 << 30),
        ("64G", 64 << 30),
        ("64GiB", 64 << 30),
        ("64gb", 64 * 10**9),
        ("500MB", 500 * 10**6),
        ("1.5K", 1536),
        ("1e12", 10**12),
        ("7", 7),
    ],
)
def test_parse_bytes(text, expected):
    assert limits.parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "0", "-1", "12X", "GiB", "1iB", "0.1"])
def test_parse_bytes_refuses(text):
    with pytest.raises(ValueError):
        limits.parse_bytes(text)


def test_default_limits_follow_the_memory(monkeypatch):
    monkeypatch.setattr(limits, "memory_bytes", lambda: 16 << 30)
    assert limits.byte_limit().bytes == 8 << 30
    assert "half of this machine's 16.0 GiB" in limits.byte_limit().source
    assert limits.byte_limit(staged=True).bytes == 64 << 30
    monkeypatch.setattr(limits, "memory_bytes", lambda: 512 << 30)
    assert limits.byte_limit(staged=True).bytes == 256 << 30
    assert limits.image_limit().bytes == limits.IMAGE_PIXELS * 4
    assert limits.byte_limit(123).bytes == 123 and limits.image_limit(123).bytes == 123


def test_memory_bytes_is_positive():
    assert limits.memory_bytes() > 0
