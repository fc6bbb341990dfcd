"""Tests of poisonguard.report.group_evidence: what sets a flagged group apart from its class."""

from __future__ import annotations

import io
import json

import h5py
import numpy as np
import pytest
from PIL import Image

from poisonguard.ondisk import ArrayFile
from poisonguard.report import group_evidence
from poisonguard.report.group_evidence import (
    bounding_box,
    difference_png,
    group_difference,
    peak_region,
    summarize,
    top_columns,
)
from poisonguard.report.json_report import jsonable

SIDE = 12
PATCH_ROWS = slice(1, 4)  # a 3x3 white patch at rows 1-3, columns 7-9
PATCH_COLS = slice(7, 10)


@pytest.fixture(scope="module")
def patched(synthetic):
    """Pattern images of three classes (40 each); 12 of class 1 carry a 3x3 white patch."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    x = np.stack([synthetic.pattern_image(int(c), rng, side=SIDE) for c in labels])[:, None]
    group = np.zeros(labels.size, dtype=bool)
    group[np.flatnonzero(labels == 1)[::3][:12]] = True
    x[group, 0, PATCH_ROWS, PATCH_COLS] = 255
    return x, labels, group


def test_means_are_the_group_and_core_means(patched):
    x, labels, group = patched
    gd = group_difference(x, labels, group, 1)
    core = (labels == 1) & ~group
    assert (gd.code, gd.group_size, gd.core_size) == (1, 12, 28)
    np.testing.assert_allclose(gd.group_mean, x[group].mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(gd.core_mean, x[core].mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(gd.core_std, x[core].astype(float).std(axis=0), rtol=1e-9)
    # samples of other classes are ignored, whatever the mask says about them
    assert group_difference(x, labels, group | (labels == 0), 1).group_size == 12
    # a core mask leaves samples out of the core only
    keep = np.ones(labels.size, dtype=bool)
    keep[np.flatnonzero(core)[:8]] = False
    assert group_difference(x, labels, group, 1, core_mask=keep).core_size == 20


def test_blocks_and_files_give_the_same_means(patched, tmp_path, monkeypatch):
    x, labels, group = patched
    whole = group_difference(x, labels, group, 1)
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("x", data=x)
    # blocks of 5 rows: the class's 40 rows are read in 8 blocks, from a file
    monkeypatch.setattr(group_evidence, "BLOCK_BYTES", 5 * 8 * SIDE * SIDE)
    blocked = group_difference(ArrayFile(path, "x", 4096), labels, group, 1)
    assert (blocked.group_size, blocked.core_size) == (whole.group_size, whole.core_size)
    for name in ("group_mean", "core_mean", "core_std"):
        np.testing.assert_allclose(getattr(blocked, name), getattr(whole, name), rtol=1e-9)


def test_planted_patch_is_located(patched):
    x, labels, group = patched
    gd = group_difference(x, labels, group, 1)
    expected = {"row_min": 1, "row_max": 3, "col_min": 7, "col_max": 9, "pixels": 9}
    assert bounding_box(gd.difference) == expected
    assert peak_region(gd.difference) == expected
    summary = summarize(gd, "image", "b")
    assert summary["bounding_box"] == expected and summary["group_size"] == 12
    assert summary["max_abs_difference"] > 200
    assert summary["difference_l2"] == pytest.approx(np.linalg.norm(gd.difference))
    json.dumps(jsonable(summary), allow_nan=False)


def test_peak_region_leaves_out_a_separate_shadow():
    diff = np.zeros((1, 8, 8))
    diff[0, 6:8, 6:8] = 200  # the patch
    diff[0, 2:4, 2:4] = -150  # the shadow of another class's shape
    assert bounding_box(diff) == {
        "row_min": 2,
        "row_max": 7,
        "col_min": 2,
        "col_max": 7,
        "pixels": 8,
    }
    assert peak_region(diff) == {
        "row_min": 6,
        "row_max": 7,
        "col_min": 6,
        "col_max": 7,
        "pixels": 4,
    }
    assert bounding_box(np.zeros((1, 4, 4))) is None and peak_region(np.zeros((1, 4, 4))) is None


def test_colour_channels_do_not_cancel():
    # a red patch on grey: red up, green and blue down; the channel mean would be about zero
    diff = np.zeros((3, 6, 6))
    diff[:, 1:3, 1:3] = np.array([120.0, -60.0, -60.0])[:, None, None]
    assert bounding_box(diff) == {
        "row_min": 1,
        "row_max": 2,
        "col_min": 1,
        "col_max": 2,
        "pixels": 4,
    }


def test_difference_png_is_a_diverging_map():
    diff = np.zeros((1, 8, 8))
    diff[0, 1, 1] = 100.0
    diff[0, 5, 5] = -100.0
    diff[0, 6, 6] = 50.0
    picture = Image.open(io.BytesIO(difference_png(diff)))
    assert picture.mode == "RGB" and picture.size == (64, 64)  # 8x enlarged, pixels square
    pixels = np.asarray(picture)
    assert tuple(pixels[1 * 8, 1 * 8]) == (255, 0, 0)  # +max: red
    assert tuple(pixels[5 * 8, 5 * 8]) == (0, 0, 255)  # -max: blue
    assert tuple(pixels[0, 0]) == (255, 255, 255)  # zero: white
    assert tuple(pixels[6 * 8, 6 * 8]) == (255, 128, 128)  # half the max: light red


def test_table_planted_column_ranks_first():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), 100)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    x[:, 5] *= 10  # a wide column: raw differences would rank it first
    group = np.zeros(300, dtype=bool)
    group[np.flatnonzero(labels == 2)[:15]] = True
    x[group, 3] += 6.0  # the trigger column, six standard deviations out
    names = [f"col_{i}" for i in range(8)]
    gd = group_difference(x, labels, group, 2)
    rows = top_columns(gd, names)
    assert len(rows) == 8 and rows[0]["column"] == "col_3" and rows[0]["index"] == 3
    assert 4.5 < rows[0]["standardized_difference"] < 7.5
    assert all(abs(r["standardized_difference"]) < 2 for r in rows[1:])
    assert rows[0]["group_mean"] == pytest.approx(float(x[group, 3].mean()), rel=1e-5)
    assert [r["index"] for r in top_columns(gd, None, count=3)] == [r["index"] for r in rows[:3]]
    assert top_columns(gd, None)[0]["column"] == "column 3"
    summary = summarize(gd, "table", "c", names)
    assert summary["top_columns"][0]["column"] == "col_3" and "bounding_box" not in summary


def test_table_column_constant_in_the_core_ranks_first():
    labels = np.zeros(30, dtype=np.int64)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(30, 4))
    x[:, 1] = 0.0
    group = np.arange(30) < 5
    x[group, 1] = 1.0  # constant in the core, set in the group: an infinite difference
    x[group, 2] += 50.0
    rows = top_columns(group_difference(x, labels, group, 0))
    assert rows[0]["index"] == 1 and rows[0]["standardized_difference"] == np.inf
    assert rows[1]["index"] == 2
    encoded = jsonable(rows)
    assert encoded[0]["standardized_difference"] is None and encoded[0]["core_std"] == 0.0
    json.dumps(encoded, allow_nan=False)


def test_mismatched_lengths_are_refused(patched):
    x, labels, group = patched
    with pytest.raises(ValueError, match="the same"):
        group_difference(x, labels[:-1], group, 1)
