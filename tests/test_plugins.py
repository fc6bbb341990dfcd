"""Plug-ins: a detector and a dataset format from another package, found through entry points.

The example plug-in in ``tests/plugin_example`` is the one CONTRIBUTING.md walks through; putting
its folder on ``sys.path`` installs it (its ``.dist-info`` declares the entry points).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_clean_failure, run_cli
from detector_contract import check_detector

from poisonguard import detectors, loaders
from poisonguard.errors import DatasetError

EXAMPLE = Path(__file__).parent / "plugin_example"
NAME = "class-median-distance"


def _forget_plugins() -> None:
    sys.modules.pop("poisonguard_example", None)
    detectors.load_plugins(again=True)
    loaders.load_plugins(again=True)


@pytest.fixture
def installed(monkeypatch):
    """The example plug-in, installed for one test."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    _forget_plugins()
    yield
    monkeypatch.undo()
    _forget_plugins()


def _write_plugin(folder: Path, module: str, source: str, entry_points: str) -> None:
    (folder / f"{module}.py").write_text(source, encoding="utf-8")
    info = folder / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points, encoding="utf-8")


def _table_file(path: Path) -> Path:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    rows = rng.normal(size=(labels.size, 5)) + 3.0 * labels[:, None]
    path.write_text(json.dumps({"x": rows.tolist(), "y": labels.tolist()}), encoding="utf-8")
    return path


def test_without_the_plugin_installed_its_names_are_unknown():
    assert NAME not in detectors.DETECTORS
    with pytest.raises(ValueError, match="unknown detector"):
        detectors.get_detectors(NAME)


def test_an_installed_detector_is_registered_with_where_it_comes_from(installed):
    chosen = detectors.get_detectors(None)
    assert chosen[-1].name == NAME  # after the built-ins, in the default set
    assert chosen[-1].plugin == "poisonguard-example 1.0"
    assert all(not d.plugin for d in chosen[:-1])
    assert detectors.PLUGIN_FAILURES == []


def test_an_installed_detector_keeps_the_registry_contract(installed, tmp_path):
    check_detector(detectors.DETECTORS[NAME], tmp_path)


def test_a_scan_runs_the_plugins_and_reports_them(installed, tmp_path):
    data = _table_file(tmp_path / "table.jsonarrays")  # read by the plug-in format
    result = run_cli("scan", data, "--out", tmp_path / "out", "--no-cache", "--epochs", "2")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["dataset"]["format"] == "json-arrays"
    assert NAME in report["settings"]["detectors"]
    assert report["detectors"][NAME]["plugin"] == "poisonguard-example 1.0"
    assert "plugin" not in report["detectors"]["spectre"]
    header = (tmp_path / "out" / "scores.csv").read_text().splitlines()[0].split(",")
    assert NAME in header


def test_a_plugin_format_is_offered_by_format_and_its_errors_name_the_file(installed, tmp_path):
    assert loaders.detect_format(tmp_path / "a.JSONARRAYS") == "json-arrays"
    bad = tmp_path / "bad.jsonarrays"
    bad.write_text("[1, 2", encoding="utf-8")
    with pytest.raises(DatasetError, match="bad.jsonarrays"):
        loaders.load_dataset(bad)
    assert_clean_failure(run_cli("scan", bad, "--out", tmp_path / "out"), "bad.jsonarrays")


def test_broken_plugins_are_left_out_with_the_reason(monkeypatch, tmp_path):
    _write_plugin(
        tmp_path,
        "broken_plugins",
        "from poisonguard.detectors import DETECTORS\n"
        "not_a_detector = 42\n"
        "same_name = DETECTORS['spectre']\n",
        "[poisonguard.detectors]\n"
        "missing = broken_plugins:nowhere\n"
        "wrong-kind = broken_plugins:not_a_detector\n"
        "same-name = broken_plugins:same_name\n"
        "[poisonguard.loaders]\n"
        "no-module = no_such_module:format\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        _forget_plugins()
        reasons = {f.name: f.reason for f in detectors.PLUGIN_FAILURES}
        assert set(reasons) == {"missing", "wrong-kind", "same-name"}
        assert "nowhere" in reasons["missing"]
        assert "int" in reasons["wrong-kind"]
        assert "already registered" in reasons["same-name"]
        assert [f.name for f in loaders.PLUGIN_FAILURES] == ["no-module"]
        # the built-ins still run, and asking for a broken one says why
        assert len(detectors.get_detectors(None)) == len(detectors.DETECTORS) - 1
        with pytest.raises(ValueError, match="was not loaded: .*nowhere"):
            detectors.get_detectors("missing")
    finally:
        monkeypatch.undo()
        sys.modules.pop("broken_plugins", None)
        _forget_plugins()


def test_a_per_row_array_detector_keeps_the_contract_from_blocks(monkeypatch, tmp_path):
    def mean_loss(loss: np.ndarray) -> np.ndarray:
        return np.asarray(loss, dtype=np.float64).mean(axis=1)

    detector = detectors.array_detector(
        "mean-loss",
        mean_loss,
        family=detectors.BACKDOOR,
        summary="mean loss",
        inputs=("loss",),
        per_row=True,
    )
    monkeypatch.setitem(detectors.DETECTORS, detector.name, detector)  # registered for the test
    check_detector(detector, tmp_path)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"inputs": ("features", "pixels")}, "unknown input.*pixels"),
        ({"inputs": ()}, "none given"),
        ({"family": "other"}, "family"),
    ],
)
def test_array_detector_refuses_unknown_inputs_and_families(options, message):
    arguments = {"family": detectors.BACKDOOR, "summary": "s", **options}
    with pytest.raises(ValueError, match=message):
        detectors.array_detector("x", lambda *a: a[0], **arguments)
