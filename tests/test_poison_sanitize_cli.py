"""`poisonguard poison`, `sanitize` and `evaluate`: counts, ground truth, untouched sources."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from poisonguard.cli.main import main

from poisonguard.loaders import load_dataset
from poisonguard.sanitize import plan_sanitize, read_scan_decisions

N_PER_CLASS = 40
N_CLASSES = 5
SIDE = 16


def checksums(root: Path) -> dict[str, str]:
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def hdf5_source(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    n = N_PER_CLASS * N_CLASSES
    x = rng.integers(0, 200, size=(n, SIDE, SIDE), dtype=np.uint8)
    y = np.repeat(np.arange(N_CLASSES), N_PER_CLASS)
    path = tmp_path / "src" / "data.h5"
    path.parent.mkdir()
    with h5py.File(path, "w") as handle:
        handle["x"] = x
        handle["y"] = y
    return path


@pytest.fixture
def folder_source(tmp_path) -> Path:
    rng = np.random.default_rng(1)
    root = tmp_path / "src" / "images"
    for code in range(4):
        (root / f"c{code}").mkdir(parents=True)
        for i in range(15):
            mode = "RGB" if i % 3 == 0 else "L"
            shape = (SIDE, SIDE, 3) if mode == "RGB" else (SIDE, SIDE)
            pixels = rng.integers(0, 200, size=shape, dtype=np.uint8)
            Image.fromarray(pixels, mode=mode).save(root / f"c{code}" / f"img_{i:02d}.png")
    return root


def read_truth(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("rate", [0.05, 0.1])
def test_poison_hdf5_exact_count_and_truth_matches_changes(hdf5_source, tmp_path, rate):
    before = checksums(hdf5_source.parent)
    out = tmp_path / "out"
    result = run(
        "poison", hdf5_source, "--attack", "patch", "--rate", rate, "--target", "0", "--out", out
    )
    assert result.exit_code == 0, result.output
    assert checksums(hdf5_source.parent) == before
    source, copy = load_dataset(hdf5_source), load_dataset(out / "data.h5")
    truth = read_truth(out / "ground_truth.csv")
    poisoned = np.array([row["poisoned"] == "1" for row in truth])
    assert poisoned.sum() == round(rate * source.n_samples)
    changed = np.any((copy.x != source.x).reshape(source.n_samples, -1), axis=1) | (
        np.array(copy.class_names)[copy.labels] != np.array(source.class_names)[source.labels]
    )
    np.testing.assert_array_equal(changed, poisoned)
    assert [row["id"] for row in truth] == copy.ids
    assert all(row["new_label"] == "0" for row in truth if row["poisoned"] == "1")
    assert all(row["original_label"] != "0" for row in truth if row["poisoned"] == "1")
    assert {row["attack"] for row in truth} == {"patch", ""}
    assert [row["role"] == "payload" for row in truth] == list(poisoned)
    assert {row["role"] for row in truth} == {"payload", "clean"}
    assert sorted(p.name for p in out.iterdir()) == ["data.h5", "ground_truth.csv", "poison.json"]


def test_poison_same_seed_same_copy_and_rerun_is_safe(hdf5_source, tmp_path):
    outputs = []
    for name, seed in [("a", 3), ("b", 3), ("c", 4)]:
        out = tmp_path / name
        assert (
            run(
                "poison",
                hdf5_source,
                "--attack",
                "blend",
                "--rate",
                "0.1",
                "--seed",
                seed,
                "--out",
                out,
            ).exit_code
            == 0
        )
        outputs.append((out / "ground_truth.csv").read_text())
    assert outputs[0] == outputs[1] != outputs[2]
    # the same command again replaces its own earlier output
    again = run(
        "poison",
        hdf5_source,
        "--attack",
        "blend",
        "--rate",
        "0.1",
        "--seed",
        3,
        "--out",
        tmp_path / "a",
    )
    assert again.exit_code == 0 and (tmp_path / "a" / "ground_truth.csv").read_text() == outputs[0]


def test_poison_writes_nothing_outside_out(hdf5_source, tmp_path):
    before = listing(tmp_path)
    assert (
        run(
            "poison",
            hdf5_source,
            "--attack",
            "flip-random",
            "--rate",
            "0.1",
            "--out",
            tmp_path / "out",
        ).exit_code
        == 0
    )
    after = listing(tmp_path)
    assert [p for p in after if p not in before and not p.startswith("out")] == []


def test_poison_image_folder_keeps_size_and_mode(folder_source, tmp_path):
    before = checksums(folder_source)
    out = tmp_path / "out"
    result = run(
        "poison",
        folder_source,
        "--attack",
        "patch",
        "--rate",
        "0.2",
        "--target",
        "c1",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    assert checksums(folder_source) == before
    truth = read_truth(out / "ground_truth.csv")
    copy = load_dataset(out / "images")
    assert [row["id"] for row in truth] == copy.ids
    assert [int(row["index"]) for row in truth] == list(range(copy.n_samples))
    moved = [row for row in truth if row["poisoned"] == "1"]
    assert len(moved) == round(0.2 * 60)
    for row in moved:
        assert row["id"].startswith("c1/") and row["new_label"] == "c1"
        # a moved file keeps its name, with a numeric suffix where c1 already has that name
        stem = re.sub(r"_\d+$", "", Path(row["id"]).stem)
        original = Image.open(folder_source / row["original_label"] / f"{stem}.png")
        written = Image.open(out / "images" / row["id"])
        assert written.size == original.size and written.mode == original.mode
        assert np.asarray(written).tolist() != np.asarray(original).tolist()
    assert any(row["id"].endswith("_1.png") for row in moved)


def test_triggered_test_copy_keeps_labels_and_spares_the_target(hdf5_source, tmp_path):
    out = tmp_path / "out"
    assert (
        run(
            "poison",
            hdf5_source,
            "--attack",
            "patch",
            "--apply-trigger",
            "--target",
            "2",
            "--out",
            out,
        ).exit_code
        == 0
    )
    source, copy = load_dataset(hdf5_source), load_dataset(out / "data.h5")
    np.testing.assert_array_equal(copy.labels, source.labels)
    changed = np.any((copy.x != source.x).reshape(source.n_samples, -1), axis=1)
    assert not changed[source.labels == 2].any()
    assert changed[source.labels != 2].mean() > 0.9  # a white corner may already be white


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--attack", "nope", "--rate", "0.1"], 2, "nope"),
        (["--attack", "patch"], 2, "--rate is required"),
        (["--attack", "patch", "--rate", "1.5"], 2, "rate"),
        (["--attack", "patch", "--rate", "0.1", "--target", "99"], 2, "no class '99'"),
        (["--attack", "table-trigger", "--rate", "0.1"], 2, "table"),
        (["--attack", "flip-random", "--apply-trigger"], 2, "backdoor"),
        (
            ["--attack", "flip-random", "--rate", "0.1", "--cover-rate", "0.05"],
            2,
            "flip-random changes labels only",
        ),
        (
            ["--attack", "patch", "--rate", "0.1", "--cover-rate", "0.05"],
            2,
            "go with a source-specific backdoor",
        ),
        (["--attack", "patch", "--rate", "0.1", "--cover-rate", "1.5"], 2, "cover_rate"),
        (
            ["--attack", "patch", "--rate", "0.1", "--all-to-all", "--target", "1"],
            2,
            "it takes no target (got 1)",
        ),
        (
            ["--attack", "patch", "--apply-trigger", "--all-to-all", "--target", "1"],
            2,
            "leave the target out",
        ),
        (["--attack", "clean-label", "--rate", "0.1", "--all-to-all"], 2, "that relabel"),
        (
            ["--attack", "patch", "--rate", "0.1", "--source-class", "1", "--target", "1"],
            2,
            "source_class 1 is the target class",
        ),
        (["--attack", "patch", "--rate", "0.1", "--source-class", "9"], 2, "no class '9'"),
        (
            ["--attack", "patch", "--rate", "0.3", "--source-class", "1", "--target", "0"],
            2,
            "source class 1 has only 40",
        ),
        (["--attack", "patch", "--rate", "0.1", "--also", "blend:9:0.1"], 2, "no class '9'"),
        (["--attack", "patch", "--rate", "0.1", "--also", "blend"], 2, "ATTACK:TARGET:RATE"),
        (["--attack", "patch", "--rate", "0.1", "--also", "blend:1:x"], 2, "rate 'x'"),
        (["--attack", "patch", "--rate", "0.1", "--also", "patch:1:0.1"], 2, "already planted"),
        (
            ["--attack", "patch", "--rate", "0.1", "--also", "flip-random:1:0.1"],
            2,
            "changes labels only",
        ),
        (["--attack", "patch", "--rate", "0.1", "--also", "trojan:1:0.1"], 2, "unknown attack"),
        (["--attack", "patch", "--apply-trigger", "--also", "blend:1:0.1"], 2, "--also"),
    ],
)
def test_poison_usage_errors(hdf5_source, tmp_path, args, code, message):
    result = run("poison", hdf5_source, *args, "--out", tmp_path / "out")
    assert result.exit_code == code
    assert message in result.output
    assert not (tmp_path / "out").exists()


def changed_rows(copy, source) -> np.ndarray:
    return np.any((copy.x != source.x).reshape(source.n_samples, -1), axis=1)


def test_poison_source_specific_with_cover_samples(hdf5_source, tmp_path):
    out = tmp_path / "out"
    result = run(
        "poison",
        hdf5_source,
        "--attack",
        "patch",
        "--rate",
        "0.1",
        "--source-class",
        "1",
        "--target",
        "0",
        "--cover-rate",
        "0.05",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    assert "20 with patch, target '0' from source '1' only (and 10 cover samples)" in result.output
    source, copy = load_dataset(hdf5_source), load_dataset(out / "data.h5")
    truth = read_truth(out / "ground_truth.csv")
    roles = np.array([row["role"] for row in truth])
    changed = changed_rows(copy, source)
    payload = [row for row in truth if row["role"] == "payload"]
    cover = [row for row in truth if row["role"] == "cover"]
    assert len(payload) == 20 and len(cover) == 10
    # exactly the chosen source-class samples got the target label
    assert all(
        (r["original_label"], r["new_label"], r["poisoned"]) == ("1", "0", "1") for r in payload
    )
    relabelled = [r["original_label"] != r["new_label"] for r in truth]
    assert relabelled == list(roles == "payload")
    # cover samples keep their labels, come from neither class 0 nor 1, and carry the patch
    for row in cover:
        assert row["original_label"] == row["new_label"] not in ("0", "1")
        assert row["poisoned"] == "0" and row["attack"] == "patch"
        assert (copy.x[int(row["index"])][..., 12:15, 12:15] == 255).all()
    np.testing.assert_array_equal(changed, roles != "clean")
    record = json.loads((out / "poison.json").read_text())
    assert record["n_poisoned"] == 20 and record["n_cover"] == 10
    assert record["options"]["source_class"] == 1 and record["options"]["cover_rate"] == 0.05


def test_poison_all_to_all_and_its_test_copy(hdf5_source, tmp_path):
    out = tmp_path / "out"
    args = ["poison", hdf5_source, "--attack", "blend", "--all-to-all"]
    result = run(*args, "--rate", "0.25", "--out", out)
    assert result.exit_code == 0, result.output
    payload = [row for row in read_truth(out / "ground_truth.csv") if row["role"] == "payload"]
    assert len(payload) == 50
    assert {row["original_label"] for row in payload} == {"0", "1", "2", "3", "4"}
    assert all(int(r["new_label"]) == (int(r["original_label"]) + 1) % 5 for r in payload)
    assert json.loads((out / "poison.json").read_text())["target"] is None

    test_out = tmp_path / "test"
    assert run(*args, "--apply-trigger", "--out", test_out).exit_code == 0
    source, copy = load_dataset(hdf5_source), load_dataset(test_out / "data.h5")
    np.testing.assert_array_equal(copy.labels, source.labels)
    assert changed_rows(copy, source).all()  # every class is a source of an all-to-all backdoor


def test_poison_adaptive_blend_with_conservatism_and_test_alpha(hdf5_source, tmp_path):
    from poisonguard.poison import AttackOptions, apply_trigger, blend_trigger

    out = tmp_path / "out"
    args = ["poison", hdf5_source, "--attack", "adaptive-blend", "--target", "3", "--seed", "2"]
    result = run(*args, "--rate", "0.05", "--cover-rate", "0.05", "--out", out)
    assert result.exit_code == 0, result.output
    source, copy = load_dataset(hdf5_source), load_dataset(out / "data.h5")
    truth = read_truth(out / "ground_truth.csv")
    cover = [row for row in truth if row["role"] == "cover"]
    payload = [row for row in truth if row["role"] == "payload"]
    assert len(cover) == len(payload) == 10
    assert all(r["original_label"] == r["new_label"] != "3" for r in cover)
    assert all(r["new_label"] == "3" != r["original_label"] for r in payload)
    full = blend_trigger(source.x, alpha=0.15, rng=np.random.default_rng([2, 1]))
    for row in cover + payload:
        i = int(row["index"])
        differs = copy.x[i] != source.x[i]
        assert 0.25 < differs.mean() <= 0.5  # half the pieces at most (a pixel may not move)
        np.testing.assert_array_equal(copy.x[i][differs], full[i][differs])

    test_out = tmp_path / "test"
    result = run(*args, "--apply-trigger", "--test-alpha", "0.3", "--out", test_out)
    assert result.exit_code == 0, result.output
    triggered = load_dataset(test_out / "data.h5").x
    expected = apply_trigger(
        source.x, attack="adaptive-blend", seed=2, options=AttackOptions(test_alpha=0.3)
    )
    others = source.labels != source.class_names.index("3")
    np.testing.assert_array_equal(triggered[others], expected[others])
    assert (triggered[others] != source.x[others]).mean() > 0.9  # the whole pattern


def test_clean_label_sig_without_perturbation_keeps_labels(hdf5_source, tmp_path):
    """The documented clean-label SIG: --clean-label-trigger sig --clean-label-epsilon 0."""
    from poisonguard.poison import sig_trigger

    out = tmp_path / "out"
    result = run(
        "poison",
        hdf5_source,
        "--attack",
        "clean-label",
        "--clean-label-trigger",
        "sig",
        "--clean-label-epsilon",
        "0",
        "--target",
        "2",
        "--rate",
        "0.1",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    source, copy = load_dataset(hdf5_source), load_dataset(out / "data.h5")
    np.testing.assert_array_equal(copy.labels, source.labels)
    changed = changed_rows(copy, source)
    assert changed.sum() == 20 == (source.labels == 2).sum() // 2
    assert (source.labels[changed] == source.class_names.index("2")).all()
    np.testing.assert_array_equal(copy.x[changed], sig_trigger(source.x[changed]))
    truth = read_truth(out / "ground_truth.csv")
    assert [row["role"] == "payload" for row in truth] == list(changed)


def test_poison_two_backdoors_with_different_targets(hdf5_source, tmp_path):
    out = tmp_path / "out"
    result = run(
        "poison",
        hdf5_source,
        "--attack",
        "patch",
        "--target",
        "1",
        "--rate",
        "0.05",
        "--also",
        "blend:3:0.1",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    assert "Poisoned 30 of 200 samples: 10 with patch, target '1'; 20 with blend" in result.output
    source, copy = load_dataset(hdf5_source), load_dataset(out / "data.h5")
    truth = read_truth(out / "ground_truth.csv")
    patch = [row for row in truth if row["attack"] == "patch"]
    blend = [row for row in truth if row["attack"] == "blend"]
    assert len(patch) == 10 and len(blend) == 20
    assert all(
        r["new_label"] == "1" != r["original_label"] and r["role"] == "payload" for r in patch
    )
    assert all(
        r["new_label"] == "3" != r["original_label"] and r["role"] == "payload" for r in blend
    )
    assert not {r["index"] for r in patch} & {r["index"] for r in blend}
    for row in patch:  # the blend never touched a patched sample
        i = int(row["index"])
        away = copy.x[i] != source.x[i]
        assert away.any() and not away[..., :12, :].any() and not away[..., :, :12].any()
    record = json.loads((out / "poison.json").read_text())
    assert record["attack"] == "patch+blend" and record["n_poisoned"] == 30
    parts = [(b["attack"], b["target"], b["seed"], b["n_poisoned"]) for b in record["backdoors"]]
    assert parts == [("patch", "1", 0, 10), ("blend", "3", 1, 20)]


def test_poison_refuses_to_write_into_the_source(folder_source):
    before = checksums(folder_source)
    result = run(
        "poison",
        folder_source,
        "--attack",
        "patch",
        "--rate",
        "0.1",
        "--out",
        folder_source / "inside",
    )
    assert result.exit_code == 1
    assert "inside" in result.output or str(folder_source) in result.output
    assert checksums(folder_source) == before
    assert not (folder_source / "inside").exists()


def write_scores(path: Path, dataset, rows: dict[int, tuple]) -> Path:
    """A scores.csv for ``dataset``: ``rows`` maps an index to (finding, predicted class) or
    (finding, predicted class, its probability); the probability defaults to 0.95."""
    path.mkdir(parents=True, exist_ok=True)
    with open(path / "scores.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        header = ["index", "id", "label", "score", "flagged", "spectral", "finding"]
        writer.writerow([*header, "predicted_label", "predicted_probability"])
        for i in range(dataset.n_samples):
            label = dataset.class_names[dataset.labels[i]]
            finding, predicted, *rest = rows.get(i, ("", label))
            probability = rest[0] if rest else 0.95
            writer.writerow(
                [
                    i,
                    dataset.ids[i],
                    label,
                    0.9 if finding else 0.1,
                    int(bool(finding)),
                    1.0,
                    finding,
                    predicted,
                    probability,
                ]
            )
    return path


def test_sanitize_remove_and_relabel(hdf5_source, tmp_path):
    dataset = load_dataset(hdf5_source)
    scan = write_scores(
        tmp_path / "scan",
        dataset,
        {3: ("backdoor", "0"), 50: ("label-noise", "3"), 51: ("label-noise", "4")},
    )
    before = checksums(hdf5_source.parent)

    out = tmp_path / "removed"
    result = run(
        "sanitize", hdf5_source, "--scores", tmp_path / "scan", "--action", "remove", "--out", out
    )
    assert result.exit_code == 0, result.output
    cleaned = load_dataset(out / "data.h5")
    assert cleaned.n_samples == dataset.n_samples - 3
    kept = [i for i in range(dataset.n_samples) if i not in (3, 50, 51)]
    np.testing.assert_array_equal(cleaned.x, dataset.x[kept])
    assert cleaned.ids == [dataset.ids[i] for i in kept]  # the source ids stay traceable
    quarantine = read_truth(out / "quarantine.csv")
    assert [(q["index"], q["action"]) for q in quarantine] == [
        ("3", "removed"),
        ("50", "removed"),
        ("51", "removed"),
    ]

    out = tmp_path / "relabelled"
    assert (
        run(
            "sanitize", hdf5_source, "--scores", scan, "--action", "relabel", "--out", out
        ).exit_code
        == 0
    )
    cleaned = load_dataset(out / "data.h5")
    assert cleaned.n_samples == dataset.n_samples - 1  # only the backdoor sample goes
    names = np.array(cleaned.class_names)[cleaned.labels]
    assert names[cleaned.ids.index(dataset.ids[50])] == "3"
    assert names[cleaned.ids.index(dataset.ids[51])] == "4"
    quarantine = {q["index"]: q for q in read_truth(out / "quarantine.csv")}
    assert quarantine["3"]["action"] == "removed" and "backdoor" in quarantine["3"]["reason"]
    assert quarantine["50"]["action"] == "relabelled" and quarantine["50"]["new_label"] == "3"
    assert checksums(hdf5_source.parent) == before


def test_sanitize_relabel_needs_a_confident_prediction(hdf5_source, tmp_path):
    dataset = load_dataset(hdf5_source)
    scan = write_scores(
        tmp_path / "scan", dataset, {50: ("label-noise", "3", 0.6), 51: ("label-noise", "4", 0.97)}
    )
    decisions = read_scan_decisions(scan, dataset)
    plan = plan_sanitize(dataset, decisions, "relabel")
    assert 50 not in plan.rows and 51 in plan.rows
    reasons = {q["index"]: q["reason"] for q in plan.quarantine}
    assert "0.60, below 0.9" in reasons["50"]
    lenient = plan_sanitize(dataset, decisions, "relabel", min_confidence=0.5)
    assert lenient.n_relabelled == 2 and lenient.n_removed == 0
    out = tmp_path / "out"
    result = run(
        "sanitize",
        hdf5_source,
        "--scores",
        scan,
        "--action",
        "relabel",
        "--min-confidence",
        "0.5",
        "--out",
        out,
    )
    assert result.exit_code == 0 and "0 removed, 2 relabelled" in result.output


def test_sanitize_relabel_removes_a_label_noise_sample_predicted_as_its_own_label(
    hdf5_source, tmp_path
):
    dataset = load_dataset(hdf5_source)
    own = dataset.class_names[dataset.labels[60]]
    decisions = read_scan_decisions(
        write_scores(tmp_path / "scan", dataset, {60: ("label-noise", own)}), dataset
    )
    plan = plan_sanitize(dataset, decisions, "relabel")
    assert 60 not in plan.rows and plan.n_removed == 1 and plan.n_relabelled == 0


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda rows: rows[:-1], "rows"),
        (lambda rows: [rows[0], rows[2], rows[1], *rows[3:]], "index"),
        (lambda rows: [rows[0], [*rows[1][:1], "other-id", *rows[1][2:]], *rows[2:]], "id"),
        (lambda rows: [rows[0], [*rows[1][:3], "high", *rows[1][4:]], *rows[2:]], "score"),
        (lambda rows: [rows[0], [*rows[1][:4], "2", *rows[1][5:]], *rows[2:]], "flagged"),
        (lambda rows: [rows[0], [*rows[1][:6], "evil", *rows[1][7:]], *rows[2:]], "finding"),
        (lambda rows: [[c for c in rows[0] if c != "finding"], *rows[1:]], "finding"),
    ],
)
def test_sanitize_rejects_scores_that_do_not_fit(hdf5_source, tmp_path, mutate, message):
    dataset = load_dataset(hdf5_source)
    scan = write_scores(tmp_path / "scan", dataset, {})
    with open(scan / "scores.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    with open(scan / "scores.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(mutate(rows))
    result = run("sanitize", hdf5_source, "--scores", scan, "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert "scores.csv" in result.output and message in result.output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_sanitize_missing_scores_and_output_inside_source(hdf5_source, folder_source, tmp_path):
    result = run(
        "sanitize", hdf5_source, "--scores", tmp_path / "nowhere", "--out", tmp_path / "out"
    )
    assert result.exit_code == 1 and "no scores.csv" in result.output
    dataset = load_dataset(folder_source)
    scan = write_scores(tmp_path / "scan", dataset, {0: ("backdoor", "c0")})
    before = checksums(folder_source)
    result = run("sanitize", folder_source, "--scores", scan, "--out", folder_source)
    assert result.exit_code == 1
    assert checksums(folder_source) == before


def test_sanitize_image_folder_end_to_end(folder_source, tmp_path):
    dataset = load_dataset(folder_source)
    scan = write_scores(
        tmp_path / "scan", dataset, {0: ("backdoor", "c0"), 20: ("label-noise", "c3")}
    )
    before = checksums(folder_source)
    out = tmp_path / "clean"
    result = run("sanitize", folder_source, "--scores", scan, "--action", "relabel", "--out", out)
    assert result.exit_code == 0, result.output
    assert checksums(folder_source) == before
    cleaned = load_dataset(out / "images")
    assert cleaned.n_samples == dataset.n_samples - 1
    assert dataset.ids[0] not in cleaned.ids
    moved = "c3/" + Path(dataset.ids[20]).name
    assert moved in cleaned.ids
    # unchanged files are byte-for-byte copies
    same = dataset.ids[5]
    assert (out / "images" / same).read_bytes() == (folder_source / same).read_bytes()


def test_model_driven_attacks_on_a_small_folder(folder_source, tmp_path):
    """clean-label perturbs target images within epsilon; near-boundary flips to runner-ups."""
    out = tmp_path / "clean-label"
    result = run(
        "poison",
        folder_source,
        "--attack",
        "clean-label",
        "--rate",
        "0.1",
        "--target",
        "c2",
        "--clean-label-epsilon",
        "8",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    source, copy = load_dataset(folder_source), load_dataset(out / "images")
    truth = read_truth(out / "ground_truth.csv")
    poisoned = [row for row in truth if row["poisoned"] == "1"]
    assert len(poisoned) == 6
    assert all(row["original_label"] == row["new_label"] == "c2" for row in poisoned)
    for row in poisoned:
        before = source.x[source.ids.index(row["id"])].astype(int)
        after = copy.x[copy.ids.index(row["id"])].astype(int)
        away_from_patch = np.abs(after - before)[..., : SIDE - 5, : SIDE - 5]
        assert 0 < away_from_patch.max() <= 8

    out = tmp_path / "near"
    assert (
        run(
            "poison", folder_source, "--attack", "flip-near-boundary", "--rate", "0.1", "--out", out
        ).exit_code
        == 0
    )
    flipped = [row for row in read_truth(out / "ground_truth.csv") if row["poisoned"] == "1"]
    assert len(flipped) == 6
    assert all(row["original_label"] != row["new_label"] for row in flipped)


def test_evaluate_reports_three_models(hdf5_source, tmp_path):
    out = tmp_path / "report"
    result = run(
        "evaluate",
        hdf5_source,
        "--attack",
        "patch",
        "--rate",
        "0.1",
        "--target",
        "0",
        "--epochs",
        "2",
        "--holdout",
        "0.25",
        "--cache-dir",
        tmp_path / "cache",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    evaluation = report["evaluation"]
    assert evaluation["n_train"] == 150 and evaluation["n_test"] == 50
    assert evaluation["n_poisoned"] == 15 and evaluation["target"] == "0"
    models = {m["training_set"]: m for m in evaluation["models"]}
    assert list(models) == ["clean", "poisoned", "sanitized"]
    assert models["clean"]["n_train"] == models["poisoned"]["n_train"] == 150
    sanitized = evaluation["sanitized"]
    assert models["sanitized"]["n_train"] == sanitized["kept"] == 150 - sanitized["removed"]
    assert sanitized["poisoned_removed"] + sanitized["poisoned_left"] == 15
    for model in models.values():
        assert 0 <= model["clean_accuracy"] <= 1 and 0 <= model["attack_success"] <= 1
    assert set(evaluation["detection"]) >= {"precision", "recall", "f1", "auroc"}
    assert "attack success" in result.output and "sanitized" in result.output
    html = (out / "report.html").read_text()
    assert 'id="evaluation"' in html and "patch" in html
    # the scan report is of the poisoned training set
    assert report["dataset"]["n_samples"] == 150


@pytest.mark.parametrize(
    ("args", "n_cover"),
    [(["--all-to-all"], 0), (["--target", "0", "--source-class", "1", "--cover-rate", "0.1"], 15)],
    ids=["all-to-all", "tact"],
)
def test_evaluate_source_specific_and_all_to_all(hdf5_source, tmp_path, args, n_cover):
    out = tmp_path / "report"
    result = run(
        "evaluate",
        hdf5_source,
        "--attack",
        "patch",
        "--rate",
        "0.1",
        *args,
        "--epochs",
        "2",
        "--holdout",
        "0.25",
        "--cache-dir",
        tmp_path / "cache",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    evaluation = json.loads((out / "report.json").read_text())["evaluation"]
    assert evaluation["n_poisoned"] == 15
    # cover samples are neither poison to find nor clean samples to spare
    assert evaluation["detection"]["n"] == 150 - n_cover
    assert evaluation["detection"]["poisoned"] == 15
    for model in evaluation["models"]:
        assert 0 <= model["attack_success"] <= 1


def test_evaluate_averages_several_seeds_of_each_model(hdf5_source, tmp_path):
    out = tmp_path / "report"
    result = run(
        "evaluate", hdf5_source, "--attack", "patch", "--rate", "0.1", "--target", "0",
        "--seed", "3", "--models", "2", "--epochs", "2", "--holdout", "0.25",
        "--cache-dir", tmp_path / "cache", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "averaged probabilities of 2 models (seeds 3-4)" in result.output
    evaluation = json.loads((out / "report.json").read_text())["evaluation"]
    for model in evaluation["models"]:
        assert model["models_averaged"] == 2
        assert [s["seed"] for s in model["per_seed"]] == [3, 4]
        for seed in model["per_seed"]:
            assert 0 <= seed["clean_accuracy"] <= 1 and 0 <= seed["attack_success"] <= 1
    html = (out / "report.html").read_text()
    assert "2 seeds each, their probabilities averaged" in html
    result = run("evaluate", hdf5_source, "--attack", "patch", "--rate", "0.1", "--models", "0")
    assert result.exit_code == 2 and "--models" in result.output


def test_measure_reads_the_averaged_probabilities(monkeypatch):
    # two models that disagree: right on 2 and 3 of the 4 test samples, their average on all
    from poisonguard import evaluate as evaluation

    test = type("Test", (), {"x": np.zeros((4, 1)), "labels": np.array([0, 0, 1, 1])})()
    confident = {
        "a": np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.55, 0.45]]),
        "b": np.array([[0.45, 0.55], [0.9, 0.1], [0.4, 0.6], [0.3, 0.7]]),
    }
    monkeypatch.setattr(evaluation, "embed_with", lambda e, x: (None, confident[e.name]))
    models = [type("E", (), {"name": n, "stage_seconds": {"train": 1.0}})() for n in "ab"]
    training_set = type("Train", (), {"n_samples": 10})()
    outcome = evaluation._measure("clean", training_set, models, 7, test, None, None)
    assert outcome.clean_accuracy == 1.0 and outcome.attack_success is None
    assert outcome.per_seed == ((7, 0.5, None), (8, 0.75, None))
    assert outcome.train_seconds == 2.0
    one = evaluation._measure("clean", training_set, models[:1], 7, test, None, None)
    assert one.clean_accuracy == 0.5 and one.per_seed == ()
    assert one.as_dict()["models_averaged"] == 1 and "per_seed" not in one.as_dict()


def test_evaluate_label_flips_have_no_attack_success(hdf5_source, tmp_path):
    out = tmp_path / "report"
    result = run(
        "evaluate",
        hdf5_source,
        "--attack",
        "flip-random",
        "--rate",
        "0.1",
        "--epochs",
        "2",
        "--cache-dir",
        tmp_path / "cache",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    evaluation = json.loads((out / "report.json").read_text())["evaluation"]
    assert evaluation["target"] is None
    assert all(m["attack_success"] is None for m in evaluation["models"])


def test_evaluate_rejects_a_test_set_with_other_classes(hdf5_source, tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as handle:
        handle["x"] = np.zeros((10, SIDE, SIDE), dtype=np.uint8)
        handle["y"] = np.arange(10) + 100
    result = run(
        "evaluate",
        hdf5_source,
        "--attack",
        "patch",
        "--rate",
        "0.1",
        "--test",
        other,
        "--out",
        tmp_path / "report",
    )
    assert result.exit_code == 1 and "classes" in result.output
    assert not (tmp_path / "report").exists()


def test_poison_csv_table_trigger_and_npz_pair_flips(tmp_path):
    from conftest import write_table_csv

    source = write_table_csv(tmp_path / "table.csv", per_class=40)
    out = tmp_path / "out"
    result = run(
        "poison",
        source,
        "--attack",
        "table-trigger",
        "--rate",
        "0.1",
        "--target",
        "setosa",
        "--columns",
        "0,2",
        "--values",
        "99,-99",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    original, copy = load_dataset(source), load_dataset(out / "table.csv")
    truth = read_truth(out / "ground_truth.csv")
    poisoned = np.array([row["poisoned"] == "1" for row in truth])
    assert poisoned.sum() == 12 and copy.ids == original.ids
    np.testing.assert_array_equal(copy.x[poisoned][:, [0, 2]], np.tile([99.0, -99.0], (12, 1)))
    np.testing.assert_array_equal(copy.x[~poisoned], original.x[~poisoned])
    assert {copy.class_names[c] for c in copy.labels[poisoned]} == {"setosa"}
    # the header and every untouched line are kept as written
    source_lines = source.read_text().splitlines()
    copy_lines = (out / "table.csv").read_text().splitlines()
    assert copy_lines[0] == source_lines[0]
    kept = np.flatnonzero(~poisoned) + 1
    assert [copy_lines[i] for i in kept] == [source_lines[i] for i in kept]

    npz = tmp_path / "arrays.npz"
    np.savez(npz, x=original.x, y=np.array(original.class_names)[original.labels])
    out = tmp_path / "npz-out"
    result = run(
        "poison",
        npz,
        "--attack",
        "flip-pair",
        "--rate",
        "0.1",
        "--source-class",
        "virginica",
        "--target",
        "versicolor",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    flipped = [row for row in read_truth(out / "ground_truth.csv") if row["poisoned"] == "1"]
    assert len(flipped) == 12
    assert {(row["original_label"], row["new_label"]) for row in flipped} == {
        ("virginica", "versicolor")
    }
    with np.load(out / "arrays.npz", allow_pickle=False) as written:
        assert written["y"].dtype.kind == "U"
