"""The detection benchmark's row table (benchmarks/detection_rows.py) on a tiny synthetic set.

Every row is planted on 1,000 random 28x28 images (100 per class; two-class rows: 500 per
class), and its ground truth is written and read back: payload and cover counts, roles, which
samples changed, and that each row's test trigger and goals match what it planted. No
Fashion-MNIST needed.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

N = 1000

# (payload, cover) on N = 1000 samples
EXPECTED = {
    "patch-0.01-t0": (10, 0),
    "patch-0.05-t0": (50, 0),
    "patch-0.10-t0": (100, 0),
    "blend-0.01-t0": (10, 0),
    "blend-0.05-t0": (50, 0),
    "blend-0.10-t0": (100, 0),
    "flip-0.05-t0": (50, 0),
    "flip-0.10-t0": (100, 0),
    "none-0.00-t0": (0, 0),
    "checker-0.01-t7": (10, 0),
    "checker-0.05-t7": (50, 0),
    "patch-0.001-t0": (1, 0),
    "patch-0.003-t0": (3, 0),
    "tact-0.01-s3-t5": (10, 10),
    "all-to-all-0.05": (50, 0),
    "adaptive-blend-0.003-t0": (3, 3),
    "clean-sig-0.05-t0": (50, 0),  # half of the target class
    "pair-flip-s2-t4": (30, 0),  # 30 % of the source class
    "two-backdoors-0.01-t0-t1": (20, 0),
    "two-class-1-7-patch-0.05": (50, 0),
    "blend-0.10-t6": (100, 0),
    "held-tact-blend-0.01-s7-t1": (10, 10),
    "held-all-to-all-checker-0.05": (50, 0),
    "held-checker-0.003-t4": (3, 0),
    "held-two-backdoors-0.01-t8-t3": (20, 0),
    "held-two-class-0-9-blend-0.05": (50, 0),
    "held-tact-patch-0.003-s5-t9": (3, 3),
    "held-adaptive-blend-0.003-t8": (3, 3),
    "held-clean-sig-0.05-t6": (50, 0),
    "held-pair-flip-s9-t7": (30, 0),
    "held-checker-0.001-t2": (1, 0),
    "held-blend-0.001-t5": (1, 0),
    "held-wanet-0.01-t3": (10, 0),
    "held-adaptive-blend-0.003-t3": (3, 3),
    "held-adaptive-blend-0.003-t6": (3, 3),
    "held-adaptive-blend-0.01-t9": (10, 10),
    "held-adaptive-blend-0.01-t2": (10, 10),
    "held-adaptive-blend-0.003-t7": (3, 3),
    "held-adaptive-blend-0.003-t4": (3, 3),
    "held-adaptive-blend-0.003-t1": (3, 3),
    "held-wanet-noise-0.01-t7": (10, 20),
    "held-wanet-0.003-t0": (3, 0),
    "held-wanet-0.05-t5": (50, 0),
    "held-wanet-s1-0.01-t9": (10, 0),
    "held-wanet-k8-0.01-t2": (10, 0),
    "held-wanet-0.001-t8": (1, 0),
    "held-two-class-2-8-wanet-0.05": (50, 0),
    "held-wanet-noise-0.05-t1": (50, 100),
    "held-wanet-0.01-t4": (10, 0),
    "held-wanet-noise-0.01-t6": (10, 20),
    "held-wanet-s075-k6-0.05-t4": (50, 0),
    "held-two-class-4-6-wanet-0.05": (50, 0),
    "held-tact-wanet-0.01-s0-t8": (10, 10),
    "held-tact-wanet-0.01-s2-t4": (10, 10),
    "held-tact-wanet-0.003-s7-t5": (3, 3),
}
CLEAN_LABEL = {"clean-sig-0.05-t0", "held-clean-sig-0.05-t6"}


@pytest.fixture(scope="module")
def bench():
    import sys

    folder = str(Path(__file__).resolve().parents[1] / "benchmarks")
    sys.path.insert(0, folder)
    try:
        import detection_rows
        import fashion_mnist

        yield detection_rows, fashion_mnist
    finally:
        sys.path.remove(folder)


def synthetic(n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    labels = np.repeat(np.arange(n_classes), N // n_classes)
    images = np.random.default_rng(0).integers(5, 200, size=(N, 28, 28)).astype(np.uint8)
    return images, labels


def test_every_row_is_expected_and_named_once(bench):
    rows, _ = bench
    names = [row.name for row in rows.ROWS]
    assert len(names) == len(set(names))
    assert set(names) == set(EXPECTED)
    for row in rows.ROWS:
        assert set(row.groups) <= set(rows.GROUPS)
        assert row.held_out == ("held-out" in row.groups or row.name.startswith("checker-"))
        assert row.held_out == row.name.startswith(("held-", "checker-"))


def test_select_rows(bench):
    rows, _ = bench
    assert rows.select_rows(None) == list(rows.ROWS)
    evasive = [row.name for row in rows.select_rows("evasive")]
    assert evasive[:2] == ["patch-0.01-t0", "patch-0.05-t0"]  # the patch series 0.1-5 %
    assert {"patch-0.001-t0", "patch-0.003-t0", "two-class-1-7-patch-0.05"} <= set(evasive)
    held = rows.select_rows("held-out")
    assert held and all(row.held_out for row in held)
    assert [row.name for row in rows.select_rows("all-to-all-0.05,none-0.00-t0")] == [
        "none-0.00-t0",
        "all-to-all-0.05",
    ]
    with pytest.raises(ValueError, match="unknown row"):
        rows.select_rows("patch-0.5")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_row_ground_truth(bench, name, tmp_path):
    rows, fashion_mnist = bench
    row = next(row for row in rows.ROWS if row.name == name)
    n_classes = 10 if row.classes is None else len(row.classes)
    images, labels = synthetic(n_classes)
    planted = row.build(images, labels, n_classes)
    again = row.build(images, labels, n_classes)
    assert planted.x.tobytes() == again.x.tobytes()  # deterministic
    np.testing.assert_array_equal(planted.labels, again.labels)

    # ground truth written and read back
    truth = tmp_path / "truth.csv"
    fashion_mnist.write_ground_truth(
        truth, labels, planted.labels, planted.payload, planted.attacks, cover=planted.cover
    )
    with open(truth, newline="") as handle:
        table = list(csv.DictReader(handle))
    roles = np.array([r["role"] for r in table])
    n_payload, n_cover = EXPECTED[name]
    assert (roles == "payload").sum() == n_payload
    assert (roles == "cover").sum() == n_cover
    np.testing.assert_array_equal(roles, planted.roles)
    assert all(r["attack"] for r in table if r["role"] != "clean")
    assert [int(r["poisoned"]) for r in table] == list(planted.payload.astype(int))

    # what changed: clean samples untouched; cover keeps its label; payload changed
    x_changed = (planted.x != images).reshape(N, -1).any(axis=1)
    label_changed = planted.labels != labels
    clean = roles == "clean"
    assert not (x_changed | label_changed)[clean].any()
    assert not label_changed[planted.cover].any() and x_changed[planted.cover].all()
    if name in CLEAN_LABEL:
        assert not label_changed.any() and x_changed[planted.payload].all()
        assert (labels[planted.payload] == planted.targets[0]).all()
    else:
        assert label_changed[planted.payload].all()
    if planted.tests:
        assert planted.targets

    # each test: its goals on the training labels are what the payload was relabelled to, and
    # its trigger on the clean images is what the payload carries (adaptive blend trains on
    # pieces, tests on the whole pattern)
    attacks = np.broadcast_to(np.asarray(planted.attacks), (N,))
    for test in planted.tests:
        mine = planted.payload.copy()
        if len(planted.tests) > 1:
            mine &= attacks == test.name.split("->")[0]
        assert mine.any()
        goals = test.goals(labels)
        if name in CLEAN_LABEL:
            assert (goals[labels != planted.targets[0]] == planted.targets[0]).all()
        else:
            np.testing.assert_array_equal(goals[mine], planted.labels[mine])
        if "adaptive-blend" not in test.name:
            np.testing.assert_array_equal(test.stamp(images[mine]), planted.x[mine])
        stamped = test.stamp(images[:5])
        assert stamped.shape == (5, 28, 28) and stamped.dtype == np.uint8


def test_two_class_selection_and_subset(bench):
    rows, _ = bench
    images = np.arange(12 * 4, dtype=np.uint8).reshape(12, 2, 2)
    labels = np.array([0, 1, 7, 9, 1, 7, 3, 7, 1, 0, 9, 1])
    x, y = rows.select_classes(images, labels, (1, 7))
    np.testing.assert_array_equal(y, [0, 1, 0, 1, 1, 0, 0])
    np.testing.assert_array_equal(x, images[[1, 2, 4, 5, 7, 8, 11]])
    picked = rows.subset_rows(100, 30)
    assert len(picked) == 30 and (np.diff(picked) > 0).all()
    np.testing.assert_array_equal(rows.subset_rows(100, None), np.arange(100))


def test_triggered_test_sets_count_what_each_attack_claims(bench):
    rows, _ = bench
    from detection_retrain import triggered_sets

    images, labels = synthetic(10)
    by_name = {row.name: row for row in rows.ROWS}

    def sets(name):
        planted = by_name[name].build(images, labels, 10)
        return triggered_sets(planted.tests, images, labels)

    [(_, x, goals)] = sets("pair-flip-s2-t4")  # source-class images, wanted as the target
    assert len(goals) == 100 and (goals == 4).all() and x.shape == (100, 1, 28, 28)
    np.testing.assert_array_equal(x[:, 0], images[labels == 2])
    [(_, _, goals)] = sets("tact-0.01-s3-t5")  # only the source class counts
    assert len(goals) == 100 and (goals == 5).all()
    [(_, _, goals)] = sets("all-to-all-0.05")  # every image, wanted as its class + 1
    np.testing.assert_array_equal(goals, (labels + 1) % 10)
    [(_, _, goals)] = sets("clean-sig-0.05-t0")  # images not of the target class
    assert len(goals) == 900 and (goals == 0).all()
    first, second = sets("two-backdoors-0.01-t0-t1")
    assert (first[2] == 0).all() and (second[2] == 1).all() and len(second[2]) == 900
    assert sets("flip-0.10-t0") == [] and sets("none-0.00-t0") == []
