"""Tests of the ``poisonguard`` command line, driven through click's CliRunner.

One scan of a tiny synthetic image folder is shared by the tests that only read its outputs; other
scans reuse its embedding cache where they can, so each costs a report, not a training run.
"""

from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result
from poisonguard.cli.main import main

from poisonguard import __version__
from poisonguard.detectors import DETECTORS
from poisonguard.report import REPORT_FILES

DEFAULT_DETECTORS = [d.name for d in DETECTORS.values() if not d.needs_trusted]

EPOCHS = "2"
CLASSES = ("a", "b", "c", "d")
PER_CLASS = 25


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)


def scan(dataset: Path, out: Path, cache: Path, *extra: str | Path, epochs: str = EPOCHS) -> Result:
    """``poisonguard scan DATASET --epochs E --out OUT --cache-dir CACHE EXTRA...``."""
    return run("scan", dataset, "--epochs", epochs, "--out", out, "--cache-dir", cache, *extra)


def read_scores(out: Path) -> list[dict[str, str]]:
    with (out / "scores.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def read_report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text(encoding="utf-8"))


def leftovers(folder: Path) -> list[str]:
    """Temporary entries the atomic writers would leave behind on failure."""
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def assert_ok(result: Result) -> None:
    assert result.exit_code == 0, result.output + repr(result.exception)


@pytest.fixture(scope="module")
def clean_folder(tmp_path_factory, synthetic) -> Path:
    root = tmp_path_factory.mktemp("cli-data") / "shapes"
    return synthetic.write_image_folder(root, {c: PER_CLASS for c in CLASSES})


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli-cache")


@pytest.fixture(scope="module")
def first_scan(clean_folder, cache_dir, tmp_path_factory):
    """``poisonguard scan`` of the clean folder, cache empty: (result, report folder)."""
    out = tmp_path_factory.mktemp("cli-out") / "first"
    result = scan(clean_folder, out, cache_dir)
    return result, out


# --- help and version ----------------------------------------------------------------------------


def test_version():
    result = run("--version")
    assert_ok(result)
    assert __version__ in result.output
    assert "poisonguard" in result.output


def test_main_help():
    for flag in ("--help", "-h"):
        result = run(flag)
        assert_ok(result)
        assert "scan" in result.output
        assert "--version" in result.output
        text = " ".join(result.output.split())  # help text is re-wrapped to the terminal
        assert "3 samples flagged" in text  # the documented exit codes


def test_scan_help_lists_the_options():
    result = run("scan", "--help")
    assert_ok(result)
    for option in (
        "DATASET",
        "--format",
        "--x-key",
        "--y-key",
        "--label-column",
        "--skip-bad",
        "--model",
        "--detectors",
        "--seed",
        "--epochs",
        "--min-class-size",
        "--out",
        "--cache-dir",
        "--no-cache",
        "--json",
        "--fail-on-findings",
    ):
        assert option in result.output, option


# --- a successful scan ---------------------------------------------------------------------------


def test_scan_writes_the_three_files(first_scan, clean_folder, cache_dir):
    result, out = first_scan
    assert_ok(result)
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES)
    assert leftovers(out.parent) == []
    assert "Scanned" in result.output
    assert str(out / "report.html") in result.output
    assert "trained SmallCNN for 2 epochs" in result.output
    # One cache entry was written.
    assert len(list(cache_dir.glob("*.h5"))) == 1


def test_scores_csv_has_one_row_per_sample(first_scan, clean_folder):
    _, out = first_scan
    header = (out / "scores.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header.startswith("index,id,label,score,flagged")
    assert header.split(",")[5:] == [
        *DEFAULT_DETECTORS,
        "finding",
        "predicted_label",
        "predicted_probability",
    ]
    rows = read_scores(out)
    on_disk = {str(p.relative_to(clean_folder).as_posix()) for p in clean_folder.glob("*/*.png")}
    assert len(rows) == len(on_disk) == len(CLASSES) * PER_CLASS
    assert [int(r["index"]) for r in rows] == list(range(len(rows)))
    assert {r["id"] for r in rows} == on_disk
    for row in rows:
        assert row["label"] == row["id"].split("/")[0]
        assert row["flagged"] in ("0", "1")
        assert np.isfinite(float(row["score"])) and float(row["score"]) >= 0
        for name in DEFAULT_DETECTORS:
            assert np.isfinite(float(row[name]))


def test_report_json_describes_the_scan(first_scan, clean_folder):
    _, out = first_scan
    report = read_report(out)
    assert report["poisonguard_version"] == __version__
    assert report["dataset"]["n_samples"] == len(CLASSES) * PER_CLASS
    assert report["dataset"]["format"] == "image-folder"
    assert report["dataset"]["kind"] == "image"
    assert report["dataset"]["input_shape"] == [1, 8, 8]
    assert [c["name"] for c in report["dataset"]["classes"]] == list(CLASSES)
    assert [c["count"] for c in report["dataset"]["classes"]] == [PER_CLASS] * len(CLASSES)
    assert {"load", "embed", "report"} <= set(report["timings"])
    assert all(v >= 0 for v in report["timings"].values())
    assert report["settings"]["epochs"] == 2
    assert report["settings"]["detectors"] == DEFAULT_DETECTORS
    assert report["model"]["source"] == "trained"
    assert report["model"]["from_cache"] is False
    flagged = sum(int(r["flagged"]) for r in read_scores(out))
    assert report["findings"]["flagged_count"] == flagged
    per_class = report["findings"]["per_class"]
    assert [f["name"] for f in per_class] == list(CLASSES)
    assert sum(f["flagged"] for f in per_class) == flagged
    assert all(f["verdict"] in ("clean", "suspicious") for f in per_class)


def test_report_html_is_a_page(first_scan):
    _, out = first_scan
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<html" in html.lower()
    assert "data:image/png;base64," in html
    assert "shapes" in html  # the dataset's name


def test_second_run_reads_the_cache_and_gives_the_same_scores(first_scan, clean_folder, cache_dir):
    _, first_out = first_scan
    out = first_out.parent / "second"
    result = scan(clean_folder, out, cache_dir)
    assert_ok(result)
    assert "reused from cache" in result.output
    assert (out / "scores.csv").read_bytes() == (first_out / "scores.csv").read_bytes()
    report = read_report(out)
    assert report["model"]["from_cache"] is True
    assert report["dataset"]["fingerprint"] == read_report(first_out)["dataset"]["fingerprint"]
    assert len(list(cache_dir.glob("*.h5"))) == 1
    # Writing to the same --out again replaces the earlier report.
    again = scan(clean_folder, out, cache_dir)
    assert_ok(again)
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES)
    assert leftovers(out.parent) == []


def test_no_cache_run_gives_the_same_scores(first_scan, clean_folder, cache_dir):
    # Recomputing the embedding in the same process, with torch's global random state moved on
    # by unrelated work, must give the same report: the seed fixes everything.
    _, first_out = first_scan
    out = first_out.parent / "no-cache"
    entries = sorted(cache_dir.iterdir())
    torch.manual_seed(987)
    torch.rand(5)
    result = scan(clean_folder, out, cache_dir, "--no-cache")
    assert_ok(result)
    assert "reused from cache" not in result.output
    assert sorted(cache_dir.iterdir()) == entries
    assert read_report(out)["model"]["from_cache"] is False
    assert (out / "scores.csv").read_bytes() == (first_out / "scores.csv").read_bytes()


def test_json_prints_the_report(first_scan, clean_folder, cache_dir):
    _, first_out = first_scan
    out = first_out.parent / "json"
    result = scan(clean_folder, out, cache_dir, "--json")
    assert_ok(result)
    printed = json.loads(result.stdout)
    written = read_report(out)
    first = read_report(first_out)
    assert printed["findings"]["flagged_count"] == first["findings"]["flagged_count"]
    assert printed["findings"]["flagged_count"] == written["findings"]["flagged_count"]
    assert printed["dataset"]["n_samples"] == len(CLASSES) * PER_CLASS
    assert printed["dataset"]["fingerprint"] == written["dataset"]["fingerprint"]


def test_detectors_option_selects_the_columns(first_scan, clean_folder, cache_dir):
    _, first_out = first_scan
    name = list(DETECTORS)[-1]
    out = first_out.parent / "one-detector"
    result = scan(clean_folder, out, cache_dir, "--detectors", name)
    assert_ok(result)
    header = (out / "scores.csv").read_text(encoding="utf-8").splitlines()[0]
    assert (
        header
        == f"index,id,label,score,flagged,{name},finding,predicted_label,predicted_probability"
    )
    assert read_report(out)["settings"]["detectors"] == [name]
    # The detector's raw scores are the same as in the full run.
    full = {r["id"]: r[name] for r in read_scores(first_out)}
    assert {r["id"]: r[name] for r in read_scores(out)} == full


# --- --detectors that turn a flagging rule off ---------------------------------------------------


def test_no_rule_off_with_every_detector(first_scan):
    result, out = first_scan
    assert "did not run" not in result.stderr and "did not run" not in result.stdout
    assert read_report(out)["findings"]["rules_off"] == []


def test_detectors_without_spectre_say_the_backdoor_tests_did_not_run(
    first_scan, clean_folder, cache_dir
):
    _, first_out = first_scan
    out = first_out.parent / "no-spectre"
    result = scan(
        clean_folder,
        out,
        cache_dir,
        "--detectors",
        "spectral,confident-learning,activation-clustering",
    )
    assert_ok(result)
    # a warning line on stderr naming the missing detector and the rule that is off
    warnings = [line for line in result.stderr.splitlines() if "did not run" in line]
    assert len(warnings) == 1, result.stderr
    assert warnings[0].startswith("poisonguard: WARNING: the backdoor tests")
    assert "spectre" in warnings[0] and "--detectors" in warnings[0]
    # the summary never reads as "no attack found"
    report = read_report(out)
    assert "No attack found" not in result.stdout
    if report["findings"]["flagged_count"] == 0:
        assert (
            "No samples flagged — but the backdoor tests did not run (spectre not selected)."
            in result.stdout
        )
    else:
        assert "Not every rule ran: the backdoor tests did not run" in result.stdout
    (off,) = report["findings"]["rules_off"]
    assert (off["rule"], off["detector"]) == ("backdoor", "spectre")
    assert off["message"] in warnings[0]
    assert any("backdoor rule off" in w for w in report["warnings"])
    assert "backdoor-target" not in {c["verdict"] for c in report["findings"]["per_class"]}
    assert "clean" not in {c["verdict"] for c in report["findings"]["per_class"]}
    html = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="rules-off"' in html and "spectre not selected" in html


def test_json_output_keeps_the_rule_off_warning_on_stderr(first_scan, clean_folder, cache_dir):
    _, first_out = first_scan
    out = first_out.parent / "no-rules-json"
    result = scan(clean_folder, out, cache_dir, "--detectors", "spectral", "--json")
    assert_ok(result)
    printed = json.loads(result.stdout)  # stdout stays pure JSON
    assert [r["detector"] for r in printed["findings"]["rules_off"]] == [
        "spectre",
        "confident-learning",
        "activation-clustering",
    ]
    assert printed["findings"]["flagged_count"] == 0  # every rule off: nothing can be flagged
    warnings = [line for line in result.stderr.splitlines() if "did not run" in line]
    assert len(warnings) == 3
    assert "spectre" in warnings[0] and "confident-learning" in warnings[1]
    assert "label-noise rule" in warnings[1]
    assert "cluster tests" in warnings[2] and "activation-clustering" in warnings[2]
    verdicts = {c["verdict"] for c in printed["findings"]["per_class"]}
    assert verdicts == {"not-cleared"}


def test_default_out_is_under_reports(first_scan, clean_folder, cache_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("scan", clean_folder, "--epochs", EPOCHS, "--cache-dir", cache_dir)
    assert_ok(result)
    made = list((tmp_path / "reports").iterdir())
    assert len(made) == 1
    assert made[0].name.startswith("shapes-")
    assert sorted(p.name for p in made[0].iterdir()) == sorted(REPORT_FILES)


# --- --fail-on-findings --------------------------------------------------------------------------


MOVED_PER_PAIR = 4


@pytest.fixture(scope="module")
def planted_folder(tmp_path_factory, synthetic) -> Path:
    """100 shapes per class, then ``MOVED_PER_PAIR`` images of every class moved into every other
    class's folder: label noise spread over all class pairs (12 % of the data)."""
    root = tmp_path_factory.mktemp("cli-planted") / "planted"
    synthetic.write_image_folder(root, {c: 100 for c in CLASSES})
    for source in CLASSES:
        others = [c for c in CLASSES if c != source]
        files = sorted((root / source).glob("*.png"))
        for j, target in enumerate(others):
            for path in files[j * MOVED_PER_PAIR : (j + 1) * MOVED_PER_PAIR]:
                path.rename(root / target / f"moved_{source}_{path.name}")
    return root


def test_fail_on_findings_exits_3_on_planted_label_noise(planted_folder, cache_dir, tmp_path):
    out = tmp_path / "out"
    result = scan(planted_folder, out, cache_dir, "--fail-on-findings", epochs="3")
    assert result.exit_code == 3, result.output + repr(result.exception)
    # The report is still written, and the moved images are the flagged samples.
    rows = read_scores(out)
    flagged = {r["id"] for r in rows if r["flagged"] == "1"}
    moved = {r["id"] for r in rows if "/moved_" in r["id"]}
    assert len(moved) == len(CLASSES) * (len(CLASSES) - 1) * MOVED_PER_PAIR
    assert len(flagged & moved) >= 0.8 * len(moved)
    assert len(flagged - moved) <= 2
    report = read_report(out)
    assert report["findings"]["flagged_count"] == len(flagged)
    assert report["findings"]["attack_kinds"] == ["label-noise"]


@pytest.mark.parametrize("which", ["clean", "planted"])
def test_fail_on_findings_exit_code_follows_the_report(
    which, clean_folder, planted_folder, cache_dir, tmp_path
):
    folder, epochs = (clean_folder, EPOCHS) if which == "clean" else (planted_folder, "3")
    out = tmp_path / "out"
    result = scan(folder, out, cache_dir, "--fail-on-findings", epochs=epochs)
    flagged = read_report(out)["findings"]["flagged_count"]
    assert result.exit_code == (3 if flagged else 0), result.output
    # Without the flag, the same scan succeeds whatever it found.
    plain = scan(folder, out, cache_dir, epochs=epochs)
    assert_ok(plain)


@pytest.mark.parametrize("flag_first", [False, True])
def test_fail_on_findings_exit_code(flag_first, clean_folder, cache_dir, tmp_path, monkeypatch):
    # Control the decision exactly: run the real scan, then override its flags.
    import poisonguard.cli.scan as cli_scan

    real = cli_scan.scan_path

    def scan_path(*args, **kwargs):
        result = real(*args, **kwargs)
        result.flagged = np.zeros(result.dataset.n_samples, dtype=bool)
        result.flagged[0] = flag_first
        return result

    monkeypatch.setattr(cli_scan, "scan_path", scan_path)
    out = tmp_path / "out"
    result = scan(clean_folder, out, cache_dir, "--fail-on-findings")
    assert result.exit_code == (3 if flag_first else 0), result.output
    assert read_report(out)["findings"]["flagged_count"] == int(flag_first)


# --- usage errors (exit 2) -----------------------------------------------------------------------


def test_unknown_detector_is_a_usage_error(clean_folder, tmp_path):
    out = tmp_path / "reports" / "out"
    result = run("scan", clean_folder, "--detectors", "nope", "--out", out)
    assert result.exit_code == 2, result.output
    assert "nope" in result.output
    for name in DETECTORS:
        assert name in result.output
    assert not out.parent.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--epochs", "0"],
        ["--epochs", "many"],
        ["--seed", "1.5"],
        ["--min-class-size", "1"],
        ["--format", "feather"],
        ["--detectors", ","],
        ["--no-such-option"],
    ],
)
def test_bad_option_values_are_usage_errors(args, clean_folder, tmp_path):
    out = tmp_path / "reports" / "out"
    result = run("scan", clean_folder, "--out", out, *args)
    assert result.exit_code == 2, result.output
    assert not out.parent.exists()


def test_missing_dataset_argument_is_a_usage_error():
    result = run("scan")
    assert result.exit_code == 2
    assert "DATASET" in result.output


# --- bad inputs (exit 1, the file named, nothing written) ----------------------------------------


def _missing(root: Path, synthetic) -> tuple[Path, list[str], Path]:
    path = root / "no-such-dataset"
    return path, [], path


def _empty_folder(root: Path, synthetic) -> tuple[Path, list[str], Path]:
    path = root / "empty"
    path.mkdir()
    return path, [], path


def _class_without_images(root: Path, synthetic) -> tuple[Path, list[str], Path]:
    path = synthetic.write_image_folder(root / "data", {"a": 5, "b": 5})
    (path / "c").mkdir()
    (path / "c" / "notes.txt").write_text("no images here")
    return path, [], path / "c"


def _corrupt_image(root: Path, synthetic) -> tuple[Path, list[str], Path]:
    path = synthetic.write_image_folder(root / "data", {"a": 5, "b": 5})
    bad = path / "b" / "img_003.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    return path, [], bad


def _single_class(root: Path, synthetic) -> tuple[Path, list[str], Path]:
    path = synthetic.write_image_folder(root / "data", {"only": 12})
    return path, [], path


def _hdf5_without_keys(root: Path, synthetic) -> tuple[Path, list[str], Path]:
    path = root / "data.h5"
    with h5py.File(path, "w") as handle:
        handle["foo"] = np.zeros((10, 4), dtype=np.float32)
        handle["bar"] = np.arange(10) % 2
    return path, [], path


def _hdf5_wrong_key_option(root: Path, synthetic) -> tuple[Path, list[str], Path]:
    path = root / "data.h5"
    with h5py.File(path, "w") as handle:
        handle["x"] = np.zeros((10, 4), dtype=np.float32)
        handle["y"] = np.arange(10) % 2
    return path, ["--x-key", "pixels"], path


def _npz_length_mismatch(root: Path, synthetic) -> tuple[Path, list[str], Path]:
    path = root / "data.npz"
    np.savez(path, x=np.zeros((10, 4), dtype=np.float32), y=np.arange(9) % 2)
    return path, [], path


def _hdf5_length_mismatch(root: Path, synthetic) -> tuple[Path, list[str], Path]:
    path = root / "data.h5"
    with h5py.File(path, "w") as handle:
        handle["x"] = np.zeros((12, 1, 4, 4), dtype=np.uint8)
        handle["y"] = np.arange(11) % 2
    return path, [], path


def _npz_nan(root: Path, synthetic) -> tuple[Path, list[str], Path]:
    path = root / "data.npz"
    x = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    x[13, 2] = np.nan
    np.savez(path, x=x, y=np.arange(20) % 2)
    return path, [], path


def _csv_non_numeric(root: Path, synthetic) -> tuple[Path, list[str], Path]:
    path = root / "table.csv"
    rows = ["f1,f2,label"] + [f"{i},{i * 2},{'ab'[i % 2]}" for i in range(20)]
    rows[7] = "6,twelve,a"
    path.write_text("\n".join(rows) + "\n")
    return path, [], path


def _unknown_extension(root: Path, synthetic) -> tuple[Path, list[str], Path]:
    path = root / "data.feather"
    path.write_bytes(b"PAR1")
    return path, [], path


def _model_not_torchscript(root: Path, synthetic) -> tuple[Path, list[str], Path]:
    path = synthetic.write_image_folder(root / "data", {"a": 12, "b": 12})
    model = root / "weights.pt"
    torch.save(torch.nn.Linear(64, 2).state_dict(), model)
    return path, ["--model", str(model)], model


def _model_missing(root: Path, synthetic) -> tuple[Path, list[str], Path]:
    path = synthetic.write_image_folder(root / "data", {"a": 12, "b": 12})
    model = root / "missing.pt"
    return path, ["--model", str(model)], model


def _model_pickle(root: Path, synthetic) -> tuple[Path, list[str], Path]:
    path = synthetic.write_image_folder(root / "data", {"a": 12, "b": 12})
    model = root / "model.pkl"
    model.write_bytes(pickle.dumps({"weights": [0.5, 1.5]}))
    return path, ["--model", str(model)], model


BAD_INPUTS = [
    _missing,
    _empty_folder,
    _class_without_images,
    _corrupt_image,
    _single_class,
    _hdf5_without_keys,
    _hdf5_wrong_key_option,
    _npz_length_mismatch,
    _hdf5_length_mismatch,
    _npz_nan,
    _csv_non_numeric,
    _unknown_extension,
    _model_not_torchscript,
    _model_missing,
    _model_pickle,
]


@pytest.mark.parametrize("make", BAD_INPUTS, ids=[f.__name__.strip("_") for f in BAD_INPUTS])
def test_bad_input_exits_1_naming_the_file_and_writes_nothing(make, tmp_path, synthetic):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    dataset, extra, named = make(inputs, synthetic)
    reports = tmp_path / "reports"
    out = reports / "out"
    cache = tmp_path / "cache"
    result = scan(dataset, out, cache, *extra, epochs="1")
    assert result.exit_code == 1, result.output + repr(result.exception)
    assert isinstance(result.exception, SystemExit)  # a message, not a crash
    assert "Traceback" not in result.output
    assert "Error:" in result.output
    assert str(named) in result.output
    assert not out.exists()
    assert not reports.exists() or leftovers(reports) == []
    assert not cache.exists() or not any(cache.iterdir())


def test_skip_bad_leaves_out_the_corrupt_image(tmp_path, synthetic):
    folder = synthetic.write_image_folder(tmp_path / "data", {"a": 15, "b": 15})
    bad = folder / "b" / "img_003.png"
    bad.write_bytes(b"not an image at all")
    out = tmp_path / "out"
    failed = scan(folder, out, tmp_path / "c", epochs="1")
    assert failed.exit_code == 1
    assert "--skip-bad" in failed.output
    result = scan(folder, out, tmp_path / "c", "--skip-bad", epochs="1")
    assert_ok(result)
    report = read_report(out)
    assert report["dataset"]["n_samples"] == 29
    assert [s["file"] for s in report["dataset"]["skipped"]] == ["b/img_003.png"]
    assert report["dataset"]["skipped"][0]["reason"]
    ids = {r["id"] for r in read_scores(out)}
    assert len(ids) == 29 and "b/img_003.png" not in ids


def test_class_too_small_is_skipped_with_a_warning(tmp_path, synthetic):
    folder = synthetic.write_image_folder(tmp_path / "data", {"a": 20, "b": 20, "tiny": 3})
    out = tmp_path / "out"
    result = scan(folder, out, tmp_path / "c", "--min-class-size", "10", epochs="1")
    assert_ok(result)
    assert "Warning" in result.output
    assert "'tiny'" in result.output
    report = read_report(out)
    verdicts = {f["name"]: f["verdict"] for f in report["findings"]["per_class"]}
    assert verdicts["tiny"] == "skipped"
    assert verdicts["a"] != "skipped" and verdicts["b"] != "skipped"
    assert any("tiny" in w for w in report["warnings"])
    tiny_rows = [r for r in read_scores(out) if r["label"] == "tiny"]
    assert len(tiny_rows) == 3
    assert all(r["flagged"] == "0" and float(r["score"]) == 0 for r in tiny_rows)


def test_out_folder_with_a_foreign_file_is_refused(first_scan, clean_folder, cache_dir, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = scan(clean_folder, out, cache_dir)
    assert result.exit_code == 1, result.output
    assert "notes.txt" in result.output
    assert str(out) in result.output
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "keep me"
    assert leftovers(tmp_path) == []


def test_out_that_is_a_file_is_refused(clean_folder, cache_dir, tmp_path):
    out = tmp_path / "report.txt"
    out.write_text("a file")
    result = scan(clean_folder, out, cache_dir)
    assert result.exit_code == 1
    assert str(out) in result.output
    assert out.read_text() == "a file"


# --- tables --------------------------------------------------------------------------------------


def test_csv_table_scan_keeps_string_labels(tmp_path, synthetic):
    table = synthetic.write_table_csv(tmp_path / "flowers.csv", per_class=30)
    out = tmp_path / "out"
    result = scan(table, out, tmp_path / "c", epochs="2")
    assert_ok(result)
    assert "SmallMLP" in result.output
    with table.open(newline="") as handle:
        source = {row["id"]: row["label"] for row in csv.DictReader(handle)}
    rows = read_scores(out)
    assert len(rows) == len(source) == 90
    assert {r["id"]: r["label"] for r in rows} == source
    assert {r["label"] for r in rows} == {"setosa", "versicolor", "virginica"}
    report = read_report(out)
    assert report["dataset"]["kind"] == "table"
    assert report["dataset"]["format"] == "csv"
    assert report["dataset"]["input_shape"] == [4]
    assert [c["name"] for c in report["dataset"]["classes"]] == [
        "setosa",
        "versicolor",
        "virginica",
    ]


def test_csv_scan_with_named_label_and_id_columns(tmp_path, synthetic):
    table = synthetic.write_table_csv(tmp_path / "flowers.csv", per_class=30)
    renamed = tmp_path / "renamed.csv"
    text = table.read_text(encoding="utf-8")
    renamed.write_text(text.replace("id,", "sample,", 1).replace(",label", ",species", 1))
    out = tmp_path / "out"
    result = scan(
        renamed,
        out,
        tmp_path / "c",
        "--label-column",
        "species",
        "--id-column",
        "sample",
        epochs="1",
    )
    assert_ok(result)
    rows = read_scores(out)
    assert rows[0]["id"] == "setosa_00"
    assert {r["label"] for r in rows} == {"setosa", "versicolor", "virginica"}
    assert read_report(out)["dataset"]["input_shape"] == [4]  # the id column is not a feature


def test_npz_scan_with_key_options(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 20)
    pixels = rng.integers(0, 255, size=(40, 6, 6, 1), dtype=np.uint8)
    path = tmp_path / "arrays.npz"
    np.savez(path, pixels=pixels, targets=labels)
    out = tmp_path / "out"
    result = scan(path, out, tmp_path / "c", "--x-key", "pixels", "--y-key", "targets", epochs="1")
    assert_ok(result)
    report = read_report(out)
    assert report["dataset"]["format"] == "npz"
    assert report["dataset"]["input_shape"] == [1, 6, 6]
    assert len(read_scores(out)) == 40


def test_report_json_is_strict_json(first_scan):
    _, out = first_scan
    text = (out / "report.json").read_text(encoding="utf-8")
    # NaN and Infinity are not JSON; the report must not contain them.
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
