"""The embedding map (issue 17, item 2): flagged samples drawn last in their given label's colour,
and the page's caption computed from where they sit."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image
from test_report import make_result

from poisonguard.report import plots, projection, write_report


@pytest.fixture(autouse=True)
def fast_projection(monkeypatch):
    monkeypatch.setattr(
        projection, "umap_coordinates", lambda f, *, seed: np.asarray(f, dtype=float)[:, :2].copy()
    )


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int64)


def _near(pixels: np.ndarray, rgb, tolerance: int = 40) -> int:
    """How many pixels of the map's left part (the axes; the legend lies right) are near ``rgb``."""
    left = pixels[:, : pixels.shape[1] // 2]
    return int((np.abs(left - np.asarray(rgb)).sum(axis=-1) <= tolerance).sum())


ORANGE = (255, 127, 14)  # tab10's class 1


def test_flagged_points_are_drawn_over_the_others_in_their_given_labels_colour():
    # 300 unflagged class-0 points stacked on one flagged class-1 point at the centre; the
    # corners set the axes. Drawn last, the flagged point shows orange; drawn first, the
    # stacked faint blue dots would cover it.
    coords = np.zeros((305, 2))
    coords[1:5] = [[-1, -1], [-1, 1], [1, -1], [1, 1]]
    labels = np.zeros(305, dtype=int)
    labels[0] = 1
    flagged = np.zeros(305, dtype=bool)
    flagged[0] = True
    pixels = _pixels(plots.embedding_map_png(coords, labels, flagged, ["a", "b"]))
    assert _near(pixels, ORANGE) >= 4
    # Unflagged, the same point is hidden among the blue ones: no orange in the axes.
    covered = _pixels(plots.embedding_map_png(coords, labels, np.zeros(305, bool), ["a", "b"]))
    assert _near(covered, ORANGE) < _near(pixels, ORANGE)


def test_draw_order_is_unflagged_then_flagged_each_a_permutation():
    flagged = np.random.default_rng(0).random(500) < 0.3
    first, last = plots.map_draw_order(flagged)
    assert sorted(first.tolist()) == np.flatnonzero(~flagged).tolist()
    assert sorted(last.tolist()) == np.flatnonzero(flagged).tolist()
    assert not np.array_equal(last, np.sort(last))  # shuffled: no class always on top
    again = plots.map_draw_order(flagged)
    assert np.array_equal(first, again[0]) and np.array_equal(last, again[1])


def test_map_draws_many_classes_and_degenerate_maps():
    rng = np.random.default_rng(0)
    for n_classes, coords in (
        (50, rng.normal(size=(400, 2))),  # no class legend, no shading
        (3, np.zeros((10, 2))),  # every point on one spot
        (3, rng.normal(size=(3, 2))),  # fewer points than a class needs to be shaded
    ):
        labels = np.arange(coords.shape[0]) % n_classes
        flagged = np.arange(coords.shape[0]) % 4 == 0
        names = [f"c{i}" for i in range(n_classes)]
        picture = Image.open(io.BytesIO(plots.embedding_map_png(coords, labels, flagged, names)))
        assert picture.size == (800, 500)


def _two_clouds(n_per_class: int = 100):
    """Two classes far apart on the map; returns coords and given labels."""
    rng = np.random.default_rng(0)
    coords = np.concatenate(
        [rng.normal(0, 1, (n_per_class, 2)), rng.normal(20, 1, (n_per_class, 2))]
    )
    labels = np.repeat([0, 1], n_per_class)
    return coords, labels


def test_flags_among_other_labels_counts_the_points_whose_colour_differs_from_their_cloud():
    coords, labels = _two_clouds()
    flagged = np.zeros(200, dtype=bool)
    flagged[:10] = True  # inside cloud 0, labelled 1: flips (or poisons from class 0)
    labels[:10] = 1
    flagged[100:105] = True  # inside cloud 1, labelled 1: flagged but sitting with their class
    found = projection.flags_among_other_labels(coords, labels, flagged, k=10)
    assert found["flagged"] == 15 and found["among_other"] == 10 and found["k"] == 10
    assert found["pairs"] == [{"given": 1, "among": 0, "count": 10}]
    assert found["top_share"] == 1.0 and found["apart"] == 0
    # A tight group far from both clouds lies apart, whatever its label.
    coords[190:200] = [10.0, -10.0]
    flagged[190:200] = True
    found = projection.flags_among_other_labels(coords, labels, flagged, k=10)
    assert found["flagged"] == 25 and found["apart"] == 10 and found["among_other"] == 10
    assert projection.flags_among_other_labels(coords, labels, np.zeros(200, bool)) is None
    assert projection.flags_among_other_labels(coords, labels, np.ones(200, bool)) is None
    few = np.ones(200, dtype=bool)
    few[150] = False  # one unflagged point: k drops to 1
    assert projection.flags_among_other_labels(coords, labels, few)["k"] == 1
    with pytest.raises(ValueError, match="coordinates"):
        projection.flags_among_other_labels(coords[:5], labels, flagged)


def _map_caption(page: str) -> str:
    return re.search(r'<section id="map">(.*?)</section>', page, re.S).group(1)


def test_map_caption_says_what_to_look_for_and_reads_the_numbers(tmp_path, monkeypatch):
    coords, labels = _two_clouds(30)
    calls = {}

    def layout(features, *, seed):
        calls["n"] = len(features)
        return coords[: len(features)]

    monkeypatch.setattr(projection, "umap_coordinates", layout)
    result = make_result(n=60, tmp_path=tmp_path)
    result.dataset.labels[:] = labels
    result.flagged[:] = False
    result.flagged[:12] = True
    result.dataset.labels[:12] = 1  # twelve flagged points labelled 1 inside cloud 0
    page = write_report(result, tmp_path / "r").html.read_text(encoding="utf-8")
    caption = _map_caption(page)
    assert calls["n"] == 60
    assert "a backdoor shows as a tight cluster of one label's colour" in caption
    assert "scattered flagged points whose colour differs from the cloud they sit in" in caption
    assert "of the 12 flagged points drawn, 0 lie apart from every class's cloud" in caption
    assert "and 12 sit among another label's points" in caption
    assert "One pair holds 100.00% of those among another label" in caption
    assert "black ×" not in caption and "style=" not in caption

    # Random flips: flagged points of many labels scattered over many clouds.
    rng = np.random.default_rng(1)
    spread_coords = rng.normal(size=(60, 2)) * 0.1 + np.repeat(np.arange(3) * 10.0, 20)[:, None]
    monkeypatch.setattr(projection, "umap_coordinates", lambda f, *, seed: spread_coords)
    result = make_result(n=60, tmp_path=tmp_path)
    result.dataset.labels[:] = np.repeat(np.arange(3), 20)
    flags = np.arange(60) % 20 < 8  # 8 flagged per cloud, given a label of another cloud
    result.flagged[:] = flags
    result.dataset.labels[flags] = (
        np.repeat(np.arange(3), 20)[flags] + 1 + (np.arange(60)[flags] % 2)
    ) % 3
    caption = _map_caption(write_report(result, tmp_path / "r2").html.read_text(encoding="utf-8"))
    assert "of the 24 flagged points drawn, 0 lie apart" in caption
    assert "and 24 sit among another label's points" in caption
    assert "they spread, as random label flips do" in caption

    # A backdoor's poisons grouped apart from every cloud.
    apart_coords = spread_coords.copy()
    apart_coords[flags] = [50.0, 50.0]
    monkeypatch.setattr(projection, "umap_coordinates", lambda f, *, seed: apart_coords)
    caption = _map_caption(write_report(result, tmp_path / "r3").html.read_text(encoding="utf-8"))
    assert "of the 24 flagged points drawn, 24 lie apart" in caption
    assert "Most lie apart: a group of their own" in caption


def test_every_evidence_section_says_what_to_look_for(tmp_path):
    """The sections a reviewer reads evidence from follow one convention: a caption with
    "What to look for: <strong>…" (the privacy page does the same)."""
    result = make_result(tmp_path=tmp_path)
    page = write_report(result, tmp_path / "r").html.read_text(encoding="utf-8")
    sections = dict(re.findall(r'<section id="([a-z-]+)"[^>]*>(.*?)</section>', page, re.S))
    for name in ("label-confusion", "group-evidence", "map"):
        assert "What to look for: <strong>" in sections[name], name
    table = write_report(make_result(kind="table", tmp_path=tmp_path), tmp_path / "t")
    evidence = re.search(
        r'<section id="group-evidence">(.*?)</section>', table.html.read_text("utf-8"), re.S
    ).group(1)
    assert "What to look for: <strong>a trigger written into a few columns" in evidence
