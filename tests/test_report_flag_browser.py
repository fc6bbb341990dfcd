"""The flag browser of report.html: its data (poisonguard.report.flag_browser), the page's
Content-Security-Policy, and, in a real headless Chromium, filtering and the decisions export read
back by ``poisonguard sanitize --decisions``.

The browser tests need the ``playwright`` package (the ``dev`` extra) and a Chromium binary on
PATH (Debian's ``chromium``; .ci/run installs it); they skip, saying which is missing, otherwise.
Playwright drives that binary: no browser is downloaded.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import re
import shutil
from pathlib import Path

import h5py
import markupsafe
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from poisonguard.cli.main import main

from poisonguard import csv_safety
from poisonguard.dataset import Dataset
from poisonguard.loaders import load_dataset
from poisonguard.report import flag_browser, projection, write_report
from poisonguard.results import ClassFinding, Embedding, ScanResult

DETECTORS = ("spectre", "confident-learning", "knn")
HOSTILE_IDS = {
    1: '=HYPERLINK("http://x","y")',
    4: "'quoted",
    6: 'a,"b"\r\nc </script><!--',
    9: "-5",
    11: "@SUM(A1)",
    14: "日本語 id",
}


@pytest.fixture(autouse=True)
def fast_projection(monkeypatch):
    """Replace UMAP (numba compilation takes seconds) by a cheap deterministic layout."""
    monkeypatch.setattr(
        projection, "umap_coordinates", lambda f, *, seed: np.asarray(f, np.float64)[:, :2].copy()
    )


def make_scan(dataset: Dataset, flagged: dict[int, str]) -> ScanResult:
    """A hand-built scan of ``dataset`` flagging the samples of ``flagged`` (index -> finding,
    ``"backdoor"`` or ``"label-noise"``; a class holding a backdoor flag is a backdoor target,
    found by the separated-group test). Detectors fire by index: spectre on even flags,
    confident-learning on label-noise flags, knn on none. A model predicts the next class for
    the label-noise flags, the given one elsewhere."""
    n = dataset.n_samples
    rng = np.random.default_rng(0)
    mask = np.zeros(n, dtype=bool)
    mask[list(flagged)] = True
    score = rng.random(n) * 0.49
    score[mask] = 0.5 + 0.5 * rng.random(mask.sum())
    finding = np.array([flagged.get(i, "") for i in range(n)], dtype=object)
    fired = {name: np.zeros(n, dtype=bool) for name in DETECTORS}
    for i, kind in flagged.items():
        fired["spectre"][i] = i % 2 == 0
        fired["confident-learning"][i] = kind == "label-noise"
    names = dataset.class_names
    reasons = [""] * n
    for i, kind in flagged.items():
        label = names[int(dataset.labels[i])]
        if kind == "backdoor":
            reason = f"part of a group that stands apart from the rest of class {label!r}"
        else:
            reason = f"labelled {label!r} but a model that never saw it finds another class"
        detectors = [d for d in DETECTORS if fired[d][i]]
        if detectors:
            reason += f"; detectors that fired: {', '.join(detectors)}"
        reasons[i] = reason
    counts = dataset.class_counts()
    targets = {int(dataset.labels[i]) for i, kind in flagged.items() if kind == "backdoor"}
    findings = [
        ClassFinding(
            code=c,
            name=name,
            count=int(counts[c]),
            flagged=int(np.count_nonzero(mask & (dataset.labels == c))),
            verdict="backdoor-target" if c in targets else "noisy-labels",
            reason="",
            evidence="separated-group" if c in targets else "label-noise-spread",
        )
        for c, name in enumerate(names)
    ]
    k = len(names)
    embedding = Embedding(
        features=rng.normal(size=(n, 4)).astype(np.float32),
        probabilities=np.full((n, k), 1 / k, dtype=np.float32),
        loss=np.zeros((n, 2), dtype=np.float32),
        margin=np.zeros((n, 2), dtype=np.float32),
        gradient_sq=np.zeros((n, 2), dtype=np.float32),
        model={"source": "trained"},
        input_shape=tuple(np.asarray(dataset.x).shape[1:]),
        train_accuracy=1.0,
        fingerprint="cd" * 32,
    )
    return ScanResult(
        dataset=dataset,
        embedding=embedding,
        detector_scores={d: rng.normal(size=n).astype(np.float32) for d in DETECTORS},
        score=score,
        flagged=mask,
        threshold=0.5,
        class_findings=findings,
        settings={},
        reasons=reasons,
        fired=fired,
        finding=finding,
        predicted=np.where(finding == "label-noise", (dataset.labels + 1) % k, dataset.labels),
        predicted_probability=np.full(n, 0.9),
    )


def image_dataset(n: int = 30, ids: list[str] | None = None) -> Dataset:
    rng = np.random.default_rng(1)
    return Dataset(
        x=rng.integers(0, 256, size=(n, 1, 6, 6), dtype=np.uint8),
        labels=np.arange(n, dtype=np.int64) % 3,
        class_names=["zero", "<b>one</b>", "two"],
        ids=ids or [f"s{i:02d}" for i in range(n)],
        kind="image",
        path=Path("/data/toy.h5"),
        format="hdf5",
    )


def page_data(html: str) -> dict:
    match = re.search(r'<script type="application/json" id="fb-data">(.*?)</script>', html, re.S)
    assert match is not None
    return json.loads(match.group(1))


FLAGS = {2: "backdoor", 3: "label-noise", 5: "label-noise", 9: "backdoor", 12: "backdoor",
         13: "label-noise", 20: "label-noise", 27: "backdoor"}  # fmt: skip


# --- the data -------------------------------------------------------------------------------


def test_every_flag_is_listed_highest_score_first_with_its_finding_group_and_detectors():
    result = make_scan(image_dataset(), FLAGS)
    browser = flag_browser.build_flag_browser(result)
    rows = browser.payload["rows"]
    assert browser.n_flagged == len(FLAGS) and sorted(rows["index"]) == sorted(FLAGS)
    assert rows["score"] == sorted(rows["score"], reverse=True)
    assert rows["id"] == [result.dataset.ids[i] for i in rows["index"]]
    findings = browser.payload["findings"]
    assert findings == ["backdoor (separated-group test)", "label noise (label-noise-spread test)"]
    detectors = browser.payload["detectors"]
    for k, i in enumerate(rows["index"]):
        assert findings[rows["finding"][k]].startswith(FLAGS[i].replace("-", " "))
        assert [detectors[d] for d in rows["fired"][k]] == [
            d for d in DETECTORS if result.fired[d][i]
        ]
        # the group's reason is the sample's without the detectors, which differ within a group
        group = browser.payload["groups"][rows["group"][k]]
        assert result.reasons[i].startswith(group) and "fired" not in group
    # one group per reason: class x finding here
    assert len(browser.payload["groups"]) == len(
        {(int(result.dataset.labels[i]), kind) for i, kind in FLAGS.items()}
    )
    assert dict(browser.detectors) == {"spectre": 3, "confident-learning": 4, "knn": 0}
    assert rows["predicted"] == [int(result.predicted[i]) for i in rows["index"]]
    assert sum(count for _, count in browser.classes) == len(FLAGS)


def test_strip_fired_removes_only_the_exact_list():
    reason = "part of a group in class 'a'; detectors that fired: spectre, knn"
    assert flag_browser.strip_fired(reason, ["spectre", "knn"]) == "part of a group in class 'a'"
    assert flag_browser.strip_fired(reason, ["knn", "spectre"]) == "part of a group in class 'a'"
    assert flag_browser.strip_fired(reason, ["knn"]) == reason
    assert flag_browser.strip_fired(reason, ["knn", "spectre", "x"]) == reason
    assert flag_browser.strip_fired("plain", []) == "plain"


def sheet_pixels(uri: str) -> np.ndarray:
    png = base64.b64decode(uri.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(png)))


def test_sprite_cells_hold_the_flagged_images_in_score_order_and_stop_at_the_limit():
    dataset = image_dataset()
    browser = flag_browser.build_flag_browser(make_scan(dataset, FLAGS), max_thumbnails=5)
    sprites = browser.payload["sprites"]
    assert browser.n_thumbnails == sprites["count"] == 5 and sprites["cell"] == [6, 6]
    sheet = sheet_pixels(sprites["sheets"][0])
    for k, i in enumerate(browser.payload["rows"]["index"][:5]):
        row, column = divmod(k, sprites["columns"])
        cell = sheet[row * 6 : row * 6 + 6, column * 6 : column * 6 + 6]
        np.testing.assert_array_equal(cell, dataset.x[i, 0])


def test_sprite_sheets_stop_at_the_byte_budget_on_a_whole_sheet():
    x = np.random.default_rng(5).integers(0, 256, size=(2500, 1, 8, 8), dtype=np.uint8)
    every, _, held = flag_browser.sprite_sheets(x, np.arange(2500))
    assert len(every) == 3 and held == 2500
    budget = len(every[0]) + len(every[1])
    sheets, _, held = flag_browser.sprite_sheets(x, np.arange(2500), max_bytes=budget)
    per_sheet = flag_browser.SPRITE_COLUMNS * flag_browser.SPRITE_ROWS
    assert sheets == every[:2] and held == 2 * per_sheet
    sheets, _, held = flag_browser.sprite_sheets(x, np.arange(2500), max_bytes=1)
    assert sheets == every[:1] and held == per_sheet  # the first sheet is always kept


def test_large_float_images_are_reduced_and_scaled_per_image():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 3, 100, 200)).astype(np.float32)
    x[1] = 7.0  # constant: black
    x[2] = np.linspace(-3.0, 5.0, 200)  # a left-to-right ramp: black to white after scaling
    sheets, cell, held = flag_browser.sprite_sheets(x, np.array([2, 1, 0]))
    assert cell == (64, 32) and len(sheets) == 1 and held == 3
    sheet = sheet_pixels(flag_browser._data_uri(sheets[0]))
    assert sheet.shape == (32, 64 * flag_browser.SPRITE_COLUMNS, 3)
    assert sheet[:, 64:128].max() == 0  # the constant image, second cell
    ramp = sheet[:, :64].astype(int)
    assert ramp[:, 0].max() < 5 and ramp[:, -1].min() > 250 and (np.diff(ramp, axis=1) >= 0).all()


def test_texts_carry_an_excerpt_and_the_marked_spans():
    texts = np.array(
        ["a quiet cf review of tea", "nothing here", "long " * 100 + "then CF at the end"],
        dtype=object,
    )
    dataset = Dataset(
        x=texts, labels=np.array([0, 1, 0]), class_names=["a", "b"], ids=["t0", "t1", "t2"],
        kind="text", path=Path("/t.csv"), format="csv",
    )  # fmt: skip
    browser = flag_browser.build_flag_browser(
        make_scan(dataset, {0: "backdoor", 2: "backdoor"}), marked_terms=["cf"]
    )
    rows = browser.payload["rows"]
    for text, marks in zip(rows["text"], rows["marks"], strict=True):
        assert len(text) <= flag_browser.TEXT_EXCERPT_CHARS + 2
        assert [text[a:b].lower() for a, b in zip(marks[::2], marks[1::2], strict=True)] == ["cf"]


def test_table_rows_show_the_columns_that_set_the_group_apart_first():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 12)).astype(np.float32)
    flagged = {i: "backdoor" for i in range(0, 40, 8)}  # class 0
    x[list(flagged), 10] = 30.0  # the planted column
    dataset = Dataset(
        x=x, labels=np.arange(40) % 2, class_names=["a", "b"],
        ids=[f"r{i}" for i in range(40)], kind="table", path=Path("/t.csv"), format="csv",
        feature_names=[f"c{j}" for j in range(12)],
    )  # fmt: skip
    from poisonguard.report.group_evidence import target_group_differences

    result = make_scan(dataset, flagged)
    result.target_classes = ["a"]
    result.attack_kinds = ["backdoor"]
    browser = flag_browser.build_flag_browser(
        result, group_differences=target_group_differences(result)
    )
    columns = browser.payload["columns"]
    assert columns[0] == "c10" and len(columns) == flag_browser.TABLE_COLUMNS
    rows = browser.payload["rows"]
    for k, i in enumerate(rows["index"]):
        assert rows["values"][k] == pytest.approx([x[i, int(c[1:])] for c in columns], rel=1e-5)


# --- the page -------------------------------------------------------------------------------


def test_page_allows_only_its_own_script_by_hash_and_escapes_the_data(tmp_path):
    ids = [f"s{i:02d}" for i in range(30)]
    for i, value in HOSTILE_IDS.items():
        ids[i] = value
    ids[2] = "</script><script>alert(1)</script><!--"
    result = make_scan(image_dataset(ids=ids), FLAGS)
    html = write_report(result, tmp_path / "r", thumbnails=5).html.read_text(encoding="utf-8")
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', html).group(1)
    csp = csp.replace("&#39;", "'")
    assert csp.startswith("default-src 'none'; img-src data:; style-src 'unsafe-inline'; ")
    (hash_source,) = re.findall(r"script-src ('sha256-[A-Za-z0-9+/=]+')$", csp)
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    assert len(scripts) == 1  # the data block is application/json, not run
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode("utf-8")).digest()).decode()
    assert hash_source == f"'sha256-{digest}'"
    assert "unsafe-inline'; script" in csp and "'unsafe-inline'" not in csp.split("script-src")[1]
    assert re.search(r"https?://(?!x)", html) is None  # the only URL is inside an escaped id
    # the data block: one element, every < > & escaped, and it reads back exactly
    assert html.count("<script") == 2 and "\\u003c/script\\u003e" in html
    data = page_data(html)
    assert set(data["rows"]["id"]) == {ids[i] for i in FLAGS}
    assert data["classes"][1] == "<b>one</b>"


def test_no_flag_no_script(tmp_path):
    result = make_scan(image_dataset(), {})
    html = write_report(result, tmp_path / "r", thumbnails=5).html.read_text(encoding="utf-8")
    assert "<script" not in html and "script-src" not in html
    assert "No sample was flagged: nothing to review." in html


def test_top_list_names_each_reason_once(tmp_path):
    result = make_scan(image_dataset(), FLAGS)
    html = write_report(result, tmp_path / "r", thumbnails=30).html.read_text(encoding="utf-8")
    top = html[html.index('<section id="top">') : html.index('<section id="flags">')]
    groups = {str(markupsafe.escape(result.reasons[i].split(";")[0])) for i in FLAGS}
    for group in groups:
        assert top.count(group) == 1
    assert top.count("reason ") >= len(FLAGS)


# --- in a real browser ----------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no chromium binary on PATH (Debian: apt-get install chromium)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
    )
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


def open_page(browser, html_path: Path):
    """The page, with every console message and page error collected in ``page.problems``."""
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(10_000)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("request", lambda r: problems.append(f"request: {r.url}") if not r.url.startswith(
        ("file:", "data:", "blob:")) else None)  # fmt: skip
    page.problems = problems
    page.goto(html_path.as_uri())
    page.wait_for_selector("#flags.fb-ready #fb-list .fb-item")
    return page


def visible_indices(page) -> list[int]:
    return [int(v) for v in page.eval_on_selector_all(
        "#fb-list .fb-item", "items => items.map(item => item.dataset.index)")]  # fmt: skip


@pytest.mark.parametrize("kind", ["image", "text", "table"])
def test_page_renders_without_console_errors_and_filters(browser, tmp_path, kind):
    dataset = image_dataset(ids=[f"s{i:02d}" for i in range(30)])
    if kind == "text":
        words = np.array([f"review {i} of tea <b>cf</b>" for i in range(30)], dtype=object)
        dataset = Dataset(
            x=words, labels=dataset.labels, class_names=dataset.class_names, ids=dataset.ids,
            kind="text", path=dataset.path, format="csv",
        )  # fmt: skip
    elif kind == "table":
        x = np.random.default_rng(4).normal(size=(30, 5)).astype(np.float32)
        dataset = Dataset(
            x=x, labels=dataset.labels, class_names=dataset.class_names, ids=dataset.ids,
            kind="table", path=dataset.path, format="csv",
        )  # fmt: skip
    result = make_scan(dataset, FLAGS)
    files = write_report(result, tmp_path / "r", thumbnails=4)
    page = open_page(browser, files.html)
    assert page.problems == []
    assert sorted(visible_indices(page)) == sorted(FLAGS)
    # the reason once per group: one heading per group shown, no reason on the items
    headings = page.locator("#fb-list h3.fb-reason").all_text_contents()
    assert len(headings) == len(set(headings)) == len(page_data(files.html.read_text())["groups"])
    assert "detectors that fired" not in page.inner_text("#fb-list")
    for i in (3, 2):  # the predicted class where it is not the given one
        shown = page.locator(f'#fb-list .fb-item[data-index="{i}"] .fb-predicted')
        name = dataset.class_names[result.predicted[i]]
        expected = [] if i == 2 else [name if kind == "table" else f"predicted {name}"]
        assert shown.all_text_contents() == expected
    if kind == "image":  # thumbnails drawn: a canvas whose pixels are not all blank
        drawn = page.eval_on_selector(
            "#fb-list canvas.fb-thumb",
            "c => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)"
            ".some((v, i) => i % 4 === 3 && v > 0)",
        )
        assert drawn
    elif kind == "table":
        assert "Each row shows 5 of the 5 columns" in page.inner_text("#flags")
    elif kind == "text":
        assert page.locator("#fb-list mark").count() == 0  # no term marked: none was passed
        assert "<b>cf</b>" in page.inner_text("#fb-list")  # shown as text, not markup

    labels = dataset.labels
    page.select_option("#fb-class", "1")
    assert sorted(visible_indices(page)) == sorted(i for i in FLAGS if labels[i] == 1)
    page.select_option("#fb-class", "-1")
    findings = page_data(files.html.read_text())["findings"]
    page.select_option("#fb-finding", str(findings.index("label noise (label-noise-spread test)")))
    assert sorted(visible_indices(page)) == sorted(i for i, k in FLAGS.items() if k != "backdoor")
    page.select_option("#fb-detector", str(DETECTORS.index("spectre")))
    assert sorted(visible_indices(page)) == [i for i in sorted(FLAGS) if
                                             FLAGS[i] != "backdoor" and i % 2 == 0]  # fmt: skip
    page.select_option("#fb-finding", "-1")
    page.select_option("#fb-detector", "-1")
    page.select_option("#fb-sort", "index")
    # each group's items in index order (a page's items are grouped by reason)
    groups = page.eval_on_selector_all(
        "#fb-list .fb-group",
        "gs => gs.map(g => Array.from(g.querySelectorAll('.fb-item'), i => +i.dataset.index))",
    )
    assert sorted(sum(groups, [])) == sorted(FLAGS)
    assert all(group == sorted(group) for group in groups)
    page.select_option("#fb-size", "50")
    page.fill("#fb-query", "s2")
    assert visible_indices(page) == [20, 27]
    assert page.problems == []


def test_pages_of_flags(browser, tmp_path):
    n = 300
    dataset = image_dataset(n=n)
    flags = {i: "label-noise" for i in range(0, n, 2)}  # 150
    files = write_report(make_scan(dataset, flags), tmp_path / "r", thumbnails=0)
    page = open_page(browser, files.html)
    page.select_option("#fb-size", "50")
    seen = visible_indices(page)
    assert len(seen) == 50 and "page 1 of 3" in page.inner_text("#fb-page")
    for _ in range(2):
        page.click("#fb-next")
        seen += visible_indices(page)
    assert sorted(seen) == sorted(flags) and len(seen) == 150
    assert page.locator("#fb-next").is_disabled()
    assert page.problems == []


@pytest.fixture
def source(tmp_path) -> Path:
    """An HDF5 dataset of 30 images whose ids include hostile ones (HOSTILE_IDS)."""
    rng = np.random.default_rng(0)
    ids = [f"img-{i:02d}" for i in range(30)]
    for i, value in HOSTILE_IDS.items():
        ids[i] = value
    path = tmp_path / "src" / "data.h5"
    path.parent.mkdir()
    with h5py.File(path, "w") as handle:
        handle["x"] = rng.integers(0, 200, size=(30, 6, 6), dtype=np.uint8)
        handle["y"] = np.repeat(np.arange(3), 10)
        handle["ids"] = np.array([s.encode("utf-8") for s in ids], dtype=object)
    return path


def test_three_marked_keep_in_the_page_are_exactly_the_three_sanitize_keeps(
    browser, source, tmp_path
):
    dataset = load_dataset(source)
    assert dataset.ids[1] == HOSTILE_IDS[1]
    flags = {1: "backdoor", 4: "backdoor", 6: "backdoor", 9: "backdoor", 11: "label-noise",
             14: "label-noise", 20: "label-noise", 25: "label-noise"}  # fmt: skip
    report = tmp_path / "report"
    files = write_report(make_scan(dataset, flags), report, thumbnails=4)
    page = open_page(browser, files.html)
    kept = [1, 6, 14]  # a formula, quotes + comma + line break + </script>, non-ASCII
    notes = {1: '=HYPERLINK("http://evil","click")', 6: "looks fine, \"really\"", 14: ""}
    for i in kept:
        item = page.locator(f'#fb-list .fb-item[data-index="{i}"]')
        item.locator(".fb-note").fill(notes[i])
        item.locator('button[data-decision="keep"]').click()
        assert item.get_attribute("data-decided") == "keep"
        assert item.locator('button[aria-pressed="true"]').all_text_contents() == ["keep"]
    undone = page.locator('#fb-list .fb-item[data-index="9"] button[data-decision="keep"]')
    undone.click()
    undone.click()  # a second click takes the decision back
    page.select_option("#fb-decision", "keep")
    assert sorted(visible_indices(page)) == kept
    with page.expect_download() as download_info:
        page.click("#fb-export")
    download = download_info.value
    assert download.suggested_filename == "decisions.csv"
    decisions = tmp_path / "decisions.csv"
    download.save_as(decisions)
    assert page.problems == []

    raw = decisions.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    text = raw.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text, newline="")))  # as a spreadsheet would see it
    assert rows[0] == ["id", "decision", "note"] and len(rows) == 4
    for row in rows[1:]:
        for cell in row:  # inert: no cell starts a formula
            assert not cell or cell[0] not in "=+-@\t\r" or csv_safety._NUMBER.fullmatch(cell)
    assert csv_safety.escape_cell(HOSTILE_IDS[1]) in {row[0] for row in rows}
    read = list(csv_safety.reader(io.StringIO(text, newline="")))[1:]
    expected = sorted((dataset.ids[i], "keep", notes[i]) for i in kept)
    assert sorted(tuple(r) for r in read) == expected

    out = tmp_path / "clean"
    result = CliRunner().invoke(
        main,
        ["sanitize", str(source), "--scores", str(report), "--decisions", str(decisions),
         "--out", str(out)],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "3 flag(s) kept" in result.output
    cleaned = load_dataset(out / "data.h5")
    assert set(cleaned.ids) & {dataset.ids[i] for i in flags} == {dataset.ids[i] for i in kept}
    assert len(cleaned.ids) == dataset.n_samples - len(flags) + len(kept)
    with open(out / "quarantine.csv", newline="", encoding="utf-8") as handle:
        entries = list(csv_safety.reader(handle))
    header = entries[0]
    by_id = {row[header.index("id")]: dict(zip(header, row, strict=True)) for row in entries[1:]}
    assert {i: by_id[dataset.ids[i]]["decided_by"] for i in kept} == dict.fromkeys(
        kept, "reviewer"
    )
    assert by_id[dataset.ids[1]]["note"] == notes[1]


def test_decisions_survive_a_reload(browser, tmp_path):
    files = write_report(make_scan(image_dataset(), FLAGS), tmp_path / "r", thumbnails=4)
    page = open_page(browser, files.html)
    page.locator('#fb-list .fb-item[data-index="12"] button[data-decision="remove"]').click()
    # Chromium hands local storage writes to the browser process asynchronously: a reload at
    # once, on a busy machine, may start before the write has arrived. Loading never writes.
    for _ in range(20):
        page.reload()
        page.wait_for_selector("#flags.fb-ready #fb-list .fb-item")
        decided = page.locator('#fb-list .fb-item[data-index="12"]').get_attribute("data-decided")
        if decided:
            break
        page.wait_for_timeout(250)
    assert decided == "remove"
    assert "0 keep, 1 remove" in page.inner_text("#fb-tally")
