"""How large report.html gets and how fast it opens with many flags (issue 17): the flag browser.

A hand-built scan of Fashion-MNIST's 60,000 training images (Debian's ``dataset-fashion-mnist``,
see ``fashion_mnist.py``) flags a random ``--flags`` of them as label noise, with reasons and
fired detectors as a scan writes them; ``write_report`` writes the real page (the map's UMAP is
replaced by the first two features, which does not change the page's size or the browser). The
page is then opened ``--runs`` times in headless Chromium (the system's ``chromium``, driven by
playwright), each in a fresh browser context, and timed:

* ``rendered_ms``: from the navigation's start to the flag browser's first page of cards on
  screen (the script's ``flag-browser-rendered`` performance mark): when the page is usable;
* ``load_ms``: the navigation's load event end (the whole document parsed, images decoded);
* ``filter_ms``, ``next_page_ms``, ``sort_ms``: one class chosen in the filter, the next page,
  sorting by index, each measured inside the page around the synchronous re-render;
* ``heap_mb``: the page's JavaScript heap after loading.

    python benchmarks/report_page.py --flags 6000 60000 --json docs/report-page-results.json

The page's size (bytes) and the time ``write_report`` took are recorded beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fashion_mnist import load_fashion_mnist  # noqa: E402

from poisonguard.dataset import Dataset  # noqa: E402
from poisonguard.report import flag_browser, projection, write_report  # noqa: E402
from poisonguard.results import ClassFinding, Embedding, ScanResult  # noqa: E402

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot"]  # fmt: skip
DETECTORS = ("spectre", "confident-learning", "knn-labels", "loss-dynamics", "influence")


def flip_scan(n_flags: int, *, seed: int = 0) -> ScanResult:
    """A scan of Fashion-MNIST's training set flagging ``n_flags`` random samples as label noise."""
    images, labels = load_fashion_mnist("train")
    n = images.shape[0]
    rng = np.random.default_rng(seed)
    flagged = np.zeros(n, dtype=bool)
    flagged[rng.choice(n, size=min(n_flags, n), replace=False)] = True
    score = np.where(flagged, 0.5 + 0.5 * rng.random(n), 0.49 * rng.random(n))
    fired = {d: flagged & (rng.random(n) < p) for d, p in zip(DETECTORS, (0.3, 0.9, 0.6, 0.4, 0.2),
                                                               strict=True)}  # fmt: skip
    reasons = [""] * n
    for i in np.flatnonzero(flagged):
        names = [d for d in DETECTORS if fired[d][i]]
        reasons[i] = (
            f"labelled {CLASSES[labels[i]]!r} but a model that never saw it finds another class "
            "over 2 times more likely" + (f"; detectors that fired: {', '.join(names)}" if names
                                          else "")
        )  # fmt: skip
    dataset = Dataset(
        x=images[:, None],
        labels=labels,
        class_names=list(CLASSES),
        ids=[f"train-{i:05d}" for i in range(n)],
        kind="image",
        path=Path("/usr/share/datasets/fashion-mnist/train"),
        format="hdf5",
    )
    counts = dataset.class_counts()
    findings = [
        ClassFinding(c, name, int(counts[c]), int((flagged & (labels == c)).sum()),
                     "noisy-labels", "", "label-noise-spread")
        for c, name in enumerate(CLASSES)
    ]  # fmt: skip
    embedding = Embedding(
        features=rng.normal(size=(n, 8)).astype(np.float32),
        probabilities=np.full((n, 10), 0.1, dtype=np.float32),
        loss=np.zeros((n, 1), dtype=np.float32),
        margin=np.zeros((n, 1), dtype=np.float32),
        gradient_sq=np.zeros((n, 1), dtype=np.float32),
        model={"source": "benchmark"},
        input_shape=(1, 28, 28),
        train_accuracy=1.0,
        fingerprint="0" * 64,
    )
    predicted = np.where(flagged, (labels + 1 + rng.integers(0, 9, n)) % 10, labels)
    return ScanResult(
        dataset=dataset, embedding=embedding,
        detector_scores={d: rng.normal(size=n).astype(np.float32) for d in DETECTORS},
        score=score, flagged=flagged, threshold=0.5, class_findings=findings, settings={},
        reasons=reasons, fired=fired, target_classes=[], attack_kinds=["label-noise"],
        finding=np.where(flagged, "label-noise", "").astype(object), predicted=predicted,
        predicted_probability=np.full(n, 0.9),
    )  # fmt: skip


IN_PAGE = """(args) => {
  const [selector, value] = args;
  const control = document.querySelector(selector);
  const start = performance.now();
  if (control.tagName === "BUTTON") { control.click(); }
  else { control.value = value; control.dispatchEvent(new Event("change")); }
  return performance.now() - start;
}"""

TIMES = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const mark = performance.getEntriesByName("flag-browser-rendered")[0];
  return {rendered_ms: mark ? mark.startTime : null, load_ms: nav.loadEventEnd,
          heap_mb: performance.memory ? performance.memory.usedJSHeapSize / 1048576 : null};
}"""


def measure(html: Path, runs: int, chromium: str) -> list[dict]:
    from playwright.sync_api import sync_playwright

    results = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium)
        for _ in range(runs):
            context = browser.new_context()
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
            page.on("console", lambda m, errors=errors: errors.append(m.text)
                    if m.type == "error" else None)  # fmt: skip
            start = time.perf_counter()
            page.goto(html.as_uri(), wait_until="load", timeout=300_000)
            page.wait_for_selector("#flags.fb-ready #fb-list .fb-item", timeout=300_000)
            wall = time.perf_counter() - start
            row = page.evaluate(TIMES)
            row["wall_s"] = wall
            row["filter_ms"] = page.evaluate(IN_PAGE, ["#fb-class", "3"])
            row["next_page_ms"] = page.evaluate(IN_PAGE, ["#fb-next", ""])
            row["sort_ms"] = page.evaluate(IN_PAGE, ["#fb-sort", "index"])
            row["errors"] = errors
            results.append(row)
            context.close()
        browser.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flags", type=int, nargs="+", default=[6000, 60000])
    parser.add_argument("--thumbnails", type=int, default=flag_browser.MAX_THUMBNAILS,
                        help="flags given a thumbnail (the report's default)")  # fmt: skip
    parser.add_argument("--sprite-mb", type=float, default=flag_browser.MAX_SPRITE_BYTES / 2**20,
                        help="the sprite sheets' budget in MiB (the report's default; 0: none)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="write the pages into this folder")
    parser.add_argument("--json", type=Path, help="append the results to this JSON file")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("no chromium on PATH (Debian: apt-get install chromium)")
    projection.umap_coordinates = lambda f, *, seed: np.asarray(f, np.float64)[:, :2].copy()
    build = flag_browser.build_flag_browser
    limits = {
        "max_thumbnails": args.thumbnails,
        "max_sprite_bytes": None if args.sprite_mb == 0 else int(args.sprite_mb * (1 << 20)),
    }
    flag_browser.build_flag_browser = lambda result, **kw: build(result, **{**kw, **limits})

    rows = []
    for n_flags in args.flags:
        result = flip_scan(n_flags)
        with tempfile.TemporaryDirectory() as tmp:
            folder = (args.keep or Path(tmp)) / f"flags-{n_flags}"
            start = time.perf_counter()
            files = write_report(result, folder)
            write_s = time.perf_counter() - start
            size = files.html.stat().st_size
            html = files.html.read_text(encoding="utf-8")
            thumbnails = json.loads(
                html.split('id="fb-data">', 1)[1].split("</script>", 1)[0]
            )["sprites"]["count"]
            runs = measure(files.html, args.runs, chromium)
        row = {
            "flags": n_flags,
            "samples": result.dataset.n_samples,
            "thumbnails": thumbnails,
            "sprite_budget_mb": args.sprite_mb,
            "page_bytes": size,
            "write_report_s": round(write_s, 2),
            "rendered_ms": [round(r["rendered_ms"]) for r in runs],
            "load_ms": [round(r["load_ms"]) for r in runs],
            "wall_s": [round(r["wall_s"], 2) for r in runs],
            "filter_ms": [round(r["filter_ms"], 1) for r in runs],
            "next_page_ms": [round(r["next_page_ms"], 1) for r in runs],
            "sort_ms": [round(r["sort_ms"], 1) for r in runs],
            "heap_mb": [round(r["heap_mb"], 1) for r in runs if r["heap_mb"] is not None],
            "errors": sorted({e for r in runs for e in r["errors"]}),
        }
        rows.append(row)
        print(
            f"{n_flags:>6} flags, {row['thumbnails']:>6} thumbnails: {size / 1e6:6.1f} MB, "
            f"written in {write_s:.1f} s; usable after {statistics.median(row['rendered_ms'])} ms "
            f"(load {statistics.median(row['load_ms'])} ms, runs {row['rendered_ms']}); filter "
            f"{statistics.median(row['filter_ms'])} ms, next page "
            f"{statistics.median(row['next_page_ms'])} ms, sort {statistics.median(row['sort_ms'])}"
            f" ms; heap {row['heap_mb']} MB; errors {row['errors']}",
            flush=True,
        )
    if args.json:
        record = {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "command": "python benchmarks/report_page.py " + " ".join(sys.argv[1:]),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "chromium": chromium,
            "load_average_1_5_15_min": [round(v, 2) for v in os.getloadavg()],
            "rows": rows,
        }
        existing = json.loads(args.json.read_text()) if args.json.exists() else []
        args.json.write_text(json.dumps(existing + [record], indent=1) + "\n")


if __name__ == "__main__":
    main()
