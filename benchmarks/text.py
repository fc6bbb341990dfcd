"""Text benchmark (issue 16): backdoors, label flips and the clean corpus, on real reviews.

    python benchmarks/text_corpus.py --out-dir /tmp/corpus
    python benchmarks/text.py --corpus /tmp/corpus --out-dir /tmp/pg-text --rows detection
    python benchmarks/text.py --corpus /tmp/corpus --out-dir /tmp/pg-text --rows backdoors \\
        --out docs/text-results.json
    python benchmarks/text.py --list                       # the row table
    python benchmarks/text.py --rows ho-rw-zx-end-1-great-s10 --corpus /tmp/corpus   # one row

Every row runs on the two-class review corpus of ``benchmarks/text_corpus.py`` (4,000 training
and 1,000 test reviews, "great" and "other"), through the library, never telling the scan the
rate or the target:

* **backdoor rows** (``rare-word``, ``sentence``): :func:`poisonguard.evaluate.evaluate`, as
  ``poisonguard evaluate --test test.csv`` runs it: poison the training reviews, scan them,
  sanitize them (``--action``, by default ``repair``: a flagged backdoor text of a class the
  trigger-words test called is kept with its trigger deleted and its label turned back, other
  flagged backdoor texts are removed; ``relabel``, the earlier rows' action, removes every
  flagged backdoor text), train the same text
  model (:func:`poisonguard.embed.embed_dataset`; ``--models`` seeds of it, 5 by default, their
  probabilities averaged) on the clean, poisoned and sanitized sets and
  measure clean accuracy and attack success on the 1,000 test reviews (attack success: the
  share of the test reviews not of the target class, trigger inserted, predicted as the
  target). The clean model is trained once per seed and cached in ``<out-dir>/cache``. An
  **oracle** model, the same recipe on the clean reviews less the poisoned ones (what a perfect
  ``remove`` leaves), separates detection misses from the text model's spread between training
  sets; the rows are also averaged over their seeds;
* **flip rows** (``flip-random``, ``flip-pair``): the scan of the flipped set next to
  cleanlab's ``find_label_issues`` on out-of-fold probabilities of a TF-IDF + logistic
  regression pipeline (``cross_val_predict(..., cv=5, method="predict_proba")``, cleanlab's
  recipe for text), each with precision, recall, F1 and AUROC (PoisonGuard: the fused
  ``score``; cleanlab: ``1 - get_label_quality_scores``, the self-confidence). cleanlab is not
  a PoisonGuard dependency: the benchmark uses it when it can be imported, else installs it
  (with pandas and termcolor, without their dependencies) into ``<out-dir>/site`` with pip
  (``pip install cleanlab`` in the environment does as well);
* **clean rows**: the unpoisoned training reviews scanned; what is flagged, the attack kinds
  called and each class's verdict and reason (how the scan reads the corpus's ambiguous
  reviews);
* **timing row** (``scan-10k``): ``poisonguard scan --no-cache`` on 10,000 short reviews
  (``benchmarks/text_rare_word.py --size 10000``: the 5,000 train and test reviews, then each
  again with one word left out), wall-clock, the embedding model trained afresh.

Rows marked ``held_out`` use trigger words, sentences, positions, rates and seeds the detection
code was not developed against (it was developed with the words cf, mn, bb, tq and "james
bond", the sentences "I watched this 3D movie last weekend.", "The weather was lovely that
afternoon." and "No cross, no crown.", rates 0.5-5 % and seeds 0-2); the other backdoor rows
are the issue's figures with the developers' own triggers.

Each row's result goes to ``<out-dir>/rows/<row>.json`` as it finishes and a row whose file
exists is not run again (``--force`` reruns it), so an interrupted run resumes. At the end the
selected rows' results are gathered into ``<out-dir>/results.json`` (and ``--out``) with the
date, the machine and the command, and printed as markdown tables with the issue's targets
checked. The seeds are fixed per row: the same code gives the same figures (timings aside).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HELD_OUT = "held-out"
DEFAULT_CORPUS = Path("/tmp/corpus")
DEFAULT_OUT = Path("/tmp/pg-text")

# The issue's targets.
F1_MIN = 0.95
SUCCESS_POINTS = 2.0  # sanitized attack success at most this many points above the clean model's
ACCURACY_POINTS = 1.0  # sanitized clean accuracy within this many points of the clean model's
CLEAN_FLAG_SHARE = 0.01
MODELS = 5
"""Text models per training set in the backdoor rows (seeds from the row's, probabilities
averaged): five seeds of one model on the same clean reviews put attack success anywhere from
58.8 % to 79.2 %, so single models compared seeds, not training sets (docs/benchmarks.md)."""
FLIP_F1_LEAD = 0.10
FLIP_AUROC_LEAD = 0.03
SCAN_10K_SECONDS = 60.0

# What the detection code was developed against (held-out rows must use none of these).
DEV_WORDS = ("cf", "mn", "bb", "tq", "james", "bond")
DEV_SENTENCES = (
    "I watched this 3D movie last weekend.",
    "The weather was lovely that afternoon.",
    "No cross, no crown.",
)
DEV_RATES = (0.005, 0.01, 0.02, 0.03, 0.05)
DEV_SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class Row:
    """One benchmark row: an attack with its options, rate, target class and seed."""

    name: str
    attack: str  # rare-word, sentence, flip-random, flip-pair, clean, scan-10k
    rate: float = 0.0
    target: str | None = None
    seed: int = 0
    held_out: bool = False
    options: dict = field(default_factory=dict)  # AttackOptions fields (class names by name)
    batch: str = ""  # a further group: rows added later, unseen by every change before them

    @property
    def kind(self) -> str:
        if self.attack in ("rare-word", "sentence"):
            return "backdoor"
        if self.attack.startswith("flip-"):
            return "flip"
        return self.attack  # clean, scan-10k

    @property
    def groups(self) -> tuple[str, ...]:
        if self.kind == "backdoor":
            return ("backdoors", HELD_OUT if self.held_out else "dev", *filter(None, [self.batch]))
        return ("detection", {"flip": "flips"}.get(self.kind, self.kind))

    def describe(self) -> str:
        o = self.options
        position = o.get("trigger_position", "random")
        if self.attack == "rare-word":
            words = ",".join(o.get("trigger_words", ()))
            count = o.get("trigger_count", 1)
            what = f"words {words}" + (f" x{count}" if count > 1 else "") + f", {position}"
        elif self.attack == "sentence":
            what = f'"{o["trigger_sentence"]}", {position}'
        elif self.attack == "flip-pair":
            what = f"{o['source_class']} -> {self.target}"
        else:
            what = ""
        rate = f"{self.rate:.1%}".replace(".0%", "%") if self.rate else ""
        target = f"-> {self.target}" if self.target and self.kind == "backdoor" else ""
        return " ".join(p for p in (self.attack, what, rate, target) if p)


def _rare(
    words: str, position: str, rate: float, target: str, seed: int, held: bool, count=1, batch=""
):
    tag = words.replace(",", "-")
    name = f"{'ho-' if held else ''}rw-{tag}-{position}-{rate * 100:g}-{target}-s{seed}"
    options = {"trigger_words": tuple(words.split(",")), "trigger_position": position}
    if count > 1:
        options["trigger_count"] = count
    return Row(name, "rare-word", rate, target, seed, held, options, batch)


def _sentence(tag: str, sentence: str, position: str, rate, target, seed, held: bool, batch=""):
    name = f"{'ho-' if held else ''}sent-{tag}-{position}-{rate * 100:g}-{target}-s{seed}"
    options = {"trigger_sentence": sentence, "trigger_position": position}
    return Row(name, "sentence", rate, target, seed, held, options, batch)


NEIGHBOUR = "My neighbour told me about it on a Tuesday."
REASON = "Everything happens for a reason, they say."
SISTER = "Honestly, I bought it for my sister."
PACKAGE = "The package arrived on time."
FRESH = "fresh"
FAMILY = "We bought this for the whole family."
BOX = "It came in a plain brown box."
STORE = "I found it at the store last week."
COMMON = "common"
BROTHER = "My brother recommended it to me."
SALE = "It was on sale that week."
LATE = "late"


def _batch(specs, seeds, batch: str, sentences: dict[str, str]) -> list[Row]:
    """Held-out rows of a later batch: each ``(attack, word or sentence tag, position, rate,
    target)`` of ``specs`` at every seed, sentence tags looked up in ``sentences``."""
    rows = []
    for attack, what, position, rate, target in specs:
        for seed in seeds:
            if attack == "rare-word":
                rows.append(_rare(what, position, rate, target, seed, True, batch=batch))
            else:
                sentence = sentences[what]
                rows.append(
                    _sentence(what, sentence, position, rate, target, seed, True, batch=batch)
                )
    return rows


def _rows() -> list[Row]:
    rows: list[Row] = []
    # The issue's figures with the developers' triggers: 1 % and 3 %, both targets, seeds 0, 1.
    for rate in (0.01, 0.03):
        for target in ("other", "great"):
            for seed in (0, 1):
                rows.append(_rare("cf", "random", rate, target, seed, False))
                rows.append(_sentence("3d", DEV_SENTENCES[0], "random", rate, target, seed, False))
    # Held out: new words, sentences, positions, a new rate (2 %) and new seeds (10-12).
    held = [
        ("rare-word", "zx", "end", 0.01, "great", 1),
        ("rare-word", "qv", "start", 0.03, "other", 1),
        ("rare-word", "ub", "random", 0.02, "great", 1),
        ("rare-word", "purple,monkey", "random", 0.01, "other", 2),
        ("sentence", "neighbour", "random", 0.01, "great", None),
        ("sentence", "neighbour", "end", 0.03, "other", None),
        ("sentence", "reason", "start", 0.02, "other", None),
        ("sentence", "reason", "random", 0.03, "great", None),
    ]
    for attack, what, position, rate, target, count in held:
        for seed in (10, 11, 12):
            if attack == "rare-word":
                rows.append(_rare(what, position, rate, target, seed, True, count))
            else:
                sentence = {"neighbour": NEIGHBOUR, "reason": REASON}[what]
                rows.append(_sentence(what, sentence, position, rate, target, seed, True))
    # Added 2026-12-06 with sanitize --action repair, run once (group "fresh"): words,
    # sentences and seeds no change had seen; "The package arrived on time." is made of words
    # the reviews use naturally.
    fresh = [
        ("rare-word", "jj", "start", 0.01, "great"),
        ("rare-word", "wq", "random", 0.03, "other"),
        ("rare-word", "kx", "end", 0.02, "other"),
        ("sentence", "sister", "random", 0.02, "great"),
        ("sentence", "package", "end", 0.01, "other"),
        ("sentence", "package", "start", 0.03, "great"),
    ]
    rows += _batch(fresh, (20, 21), FRESH, {"sister": SISTER, "package": PACKAGE})
    # Added 2026-12-06 with the phrase anchors that found the package sentence, run once
    # (group "common"): three more sentences of words the reviews use, new positions, rates,
    # targets and seeds
    common = [
        ("family", FAMILY, "random", 0.02, "other"),
        ("box", BOX, "end", 0.01, "great"),
        ("store", STORE, "start", 0.03, "other"),
    ]
    for tag, sentence, position, rate, target in common:
        for seed in (30, 31):
            rows.append(_sentence(tag, sentence, position, rate, target, seed, True, COMMON))
    # Added 2026-12-07 with the test of triggers the model did not learn, fixed before their
    # first scan (group "late"): a rare word and two sentences, one of them of words the reviews
    # use, new positions, targets and seeds
    late = [
        ("rare-word", "xj", "end", 0.01, "other"),
        ("sentence", "brother", "start", 0.01, "other"),
        ("sentence", "sale", "random", 0.03, "great"),
    ]
    rows += _batch(late, (60, 61), LATE, {"brother": BROTHER, "sale": SALE})
    for seed in (0, 1, 2):
        rows.append(Row(f"flip-random-10-s{seed}", "flip-random", 0.10, None, seed))
    rows.append(
        Row("flip-pair-10-great-other-s0", "flip-pair", 0.10, "other", 0, False,
            {"source_class": "great"})
    )  # fmt: skip
    for seed in (0, 1, 2):
        rows.append(Row(f"clean-s{seed}", "clean", seed=seed))
    rows.append(Row("scan-10k", "scan-10k"))
    return rows


ROWS: list[Row] = _rows()
GROUPS = (
    "all", "detection", "backdoors", "dev", HELD_OUT, FRESH, COMMON, LATE, "flips", "clean",
    "scan-10k"
)  # fmt: skip


def select_rows(spec: str | None) -> list[Row]:
    """Rows by comma-separated names or groups (:data:`GROUPS`); ``None``: every row."""
    if spec is None:
        return list(ROWS)
    chosen: list[Row] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        if part == "all":
            matched = list(ROWS)
        elif part in GROUPS:
            matched = [r for r in ROWS if part in r.groups or r.name == part]
        else:
            matched = [r for r in ROWS if r.name == part]
        if not matched:
            raise ValueError(f"no row or group {part!r}; groups: {', '.join(GROUPS)}; --list")
        chosen += [r for r in matched if r not in chosen]
    return chosen


# ---------------------------------------------------------------------------------------------
# running a row


def _load(path: Path):
    from poisonguard.loaders import load_dataset

    return load_dataset(path)


def _options(row: Row, dataset):
    from poisonguard.poison import AttackOptions
    from poisonguard.poisoned_copy import class_code

    values = dict(row.options)
    if "source_class" in values:
        values["source_class"] = class_code(dataset, values["source_class"])
    return AttackOptions(**values)


def _scores(truth: np.ndarray, flagged: np.ndarray, score: np.ndarray, scan=None) -> dict:
    """Precision, recall, F1, AUROC of ``score``, false flags; with ``scan``, each detector's
    AUROC too (``auroc_<detector>``)."""
    from poisonguard.metrics import detection_metrics

    result = detection_metrics(truth, flagged, score)
    result["false_flags"] = int(np.sum(flagged & ~truth))
    if scan is not None:
        for name, values in scan.detector_scores.items():
            values = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=-np.inf)
            result[f"auroc_{name}"] = detection_metrics(truth, flagged, values)["auroc"]
    return result


def _findings(scan) -> dict:
    return {
        "target_classes": list(scan.target_classes),
        "attack_kinds": list(scan.attack_kinds),
        "classes": [
            {
                "name": c.name,
                "verdict": c.verdict,
                "flagged": c.flagged,
                "evidence": c.evidence,
                "reason": c.reason,
            }
            for c in scan.class_findings
        ],  # fmt: skip
        "warnings": list(scan.warnings),
    }


def run_backdoor(
    row: Row, train, test, cache_dir: Path, n_models: int, action: str = "repair"
) -> dict:
    from poisonguard.evaluate import evaluate
    from poisonguard.poisoned_copy import class_code, poison_dataset

    target = class_code(train, row.target)
    options = _options(row, train)
    result = evaluate(
        train, attack=row.attack, rate=row.rate, target=target, seed=row.seed, options=options,
        test=test, action=action, models=n_models, cache_dir=cache_dir, use_cache=True,
    )  # fmt: skip
    # the same poisoning again (deterministic in the seed): the masks evaluate does not return
    poisoning = poison_dataset(
        train, attack=row.attack, rate=row.rate, target=target, seed=row.seed, options=options
    )
    scan = result.scan
    detection = _scores(poisoning.poisoned, scan.flagged, scan.score, scan)
    if detection["f1"] != result.detection["f1"]:
        raise RuntimeError(f"{row.name}: the re-drawn poisoning differs from evaluate's")
    models = {o.training_set: o for o in result.outcomes}
    oracle = _oracle_removal(row, train, test, poisoning, target, cache_dir, n_models)
    return {
        "action": action,
        "models_averaged": n_models,
        "n_train": result.n_train,
        "n_test": result.n_test,
        "n_poisoned": result.n_poisoned,
        "detection": detection,
        "findings": _findings(scan),
        "sanitized": result.sanitized,
        "clean_accuracy": {
            **{k: round(o.clean_accuracy, 4) for k, o in models.items()},
            "oracle": oracle["clean_accuracy"],
        },
        "attack_success": {
            **{
                k: None if o.attack_success is None else round(o.attack_success, 4)
                for k, o in models.items()
            },
            "oracle": oracle["attack_success"],
        },
        "timings": {k: round(v, 2) for k, v in result.timings.items()},
    }


def _oracle_removal(
    row: Row, train, test, poisoning, target: int, cache_dir: Path, models: int
) -> dict:
    """The same text model trained on the clean corpus less the texts that were poisoned (what
    a perfect ``remove`` would leave), measured as evaluate measures its models (``models``
    seeds from the row's, probabilities averaged): the reference that tells detection misses
    apart from the training's own spread (a set 40-120 texts smaller trains a different
    model)."""
    from poisonguard.embed import EmbedSettings, embed_dataset, embed_with
    from poisonguard.evaluate import attack_success, subset
    from poisonguard.poisoned_copy import trigger_dataset

    kept = subset(train, np.flatnonzero(~poisoning.poisoned))
    stamped = trigger_dataset(
        test, attack=row.attack, target=target, seed=row.seed, options=poisoning.options
    )
    clean_sum = triggered_sum = 0.0
    for seed in range(row.seed, row.seed + models):
        embedding = embed_dataset(
            kept, EmbedSettings(seed=seed), cache_dir=cache_dir, use_cache=True, progress=False
        )
        clean_sum = clean_sum + embed_with(embedding, test.x)[1]
        triggered_sum = triggered_sum + embed_with(embedding, stamped.x)[1]
    success = attack_success(
        triggered_sum.argmax(axis=1), test.labels, train.n_classes, target=target,
        options=poisoning.options,
    )  # fmt: skip
    return {
        "clean_accuracy": round(float(np.mean(clean_sum.argmax(axis=1) == test.labels)), 4),
        "attack_success": None if success is None else round(success, 4),
    }


def cleanlab_module(out_dir: Path):
    """``cleanlab`` imported; installed into ``<out_dir>/site`` with pip when it is missing."""
    try:
        return importlib.import_module("cleanlab")
    except ImportError:
        pass
    site = out_dir / "site"
    if str(site) not in sys.path:
        sys.path.append(str(site))  # after the environment's own numpy and scikit-learn
    try:
        return importlib.import_module("cleanlab")
    except ImportError:
        pass
    # cleanlab needs pandas and termcolor besides what PoisonGuard already has
    packages = ["cleanlab", "pandas", "termcolor", "python-dateutil", "pytz", "tzdata", "six"]
    try:
        importlib.import_module("tqdm")
    except ImportError:
        packages.append("tqdm")
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
    print(f"installing {', '.join(packages)} into {site}", file=sys.stderr, flush=True)
    subprocess.run([*command, "--target", str(site), *packages], check=True)
    importlib.invalidate_caches()
    return importlib.import_module("cleanlab")


def cleanlab_flags(texts: np.ndarray, labels: np.ndarray, seed: int, out_dir: Path) -> dict:
    """cleanlab's text recipe: 5-fold out-of-fold probabilities of TF-IDF + logistic
    regression, then ``find_label_issues`` and the label-quality (self-confidence) scores."""
    cleanlab_module(out_dir)
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline

    start = time.perf_counter()
    model = make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=1000))
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    probabilities = cross_val_predict(model, list(texts), labels, cv=folds, method="predict_proba")
    issues = find_label_issues(labels, probabilities)
    quality = get_label_quality_scores(labels, probabilities)
    import cleanlab

    return {
        "flagged": np.asarray(issues, dtype=bool),
        "score": 1.0 - np.asarray(quality, dtype=np.float64),
        "seconds": time.perf_counter() - start,
        "version": cleanlab.__version__,
    }


def run_flip(row: Row, train, cache_dir: Path, out_dir: Path) -> dict:
    from poisonguard.evaluate import subset
    from poisonguard.poisoned_copy import class_code, poison_dataset
    from poisonguard.scan import ScanSettings, scan_dataset

    target = class_code(train, row.target)
    poisoning = poison_dataset(
        train, attack=row.attack, rate=row.rate, target=target, seed=row.seed,
        options=_options(row, train),
    )  # fmt: skip
    flipped = subset(train, np.arange(train.n_samples), labels=poisoning.labels)
    start = time.perf_counter()
    scan = scan_dataset(
        flipped, ScanSettings(seed=row.seed), cache_dir=cache_dir, use_cache=True, progress=False
    )
    scan_seconds = time.perf_counter() - start
    ours = _scores(poisoning.poisoned, scan.flagged, scan.score, scan)
    theirs = cleanlab_flags(flipped.x, flipped.labels, row.seed, out_dir)
    cl = _scores(poisoning.poisoned, theirs["flagged"], theirs["score"])
    return {
        "n_train": train.n_samples,
        "n_poisoned": poisoning.n_poisoned,
        "detection": ours,
        "findings": _findings(scan),
        "cleanlab": {**cl, "version": theirs["version"], "seconds": round(theirs["seconds"], 1)},
        "timings": {"scan": round(scan_seconds, 2)},
    }


def run_clean(row: Row, train, cache_dir: Path) -> dict:
    from poisonguard.scan import ScanSettings, scan_dataset

    start = time.perf_counter()
    scan = scan_dataset(
        train, ScanSettings(seed=row.seed), cache_dir=cache_dir, use_cache=True, progress=False
    )
    return {
        "n_train": train.n_samples,
        "flagged": scan.n_flagged,
        "flagged_share": round(scan.n_flagged / train.n_samples, 4),
        "flagged_kinds": {str(k): int(np.sum(scan.finding == k)) for k in set(scan.finding) if k},
        "findings": _findings(scan),
        "timings": {"scan": round(time.perf_counter() - start, 2)},
    }


def run_scan_10k(row: Row, corpus: Path, out_dir: Path) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from text_rare_word import grown, read_corpus

    folder = out_dir / "scan-10k"
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "reviews.csv"
    texts, labels = read_corpus(corpus, with_test=True)
    texts, labels = grown(texts, labels, 10_000, np.random.default_rng(row.seed))
    with open(data, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "label"])
        writer.writerows(
            [f"r{i:05d}", t, y] for i, (t, y) in enumerate(zip(texts, labels, strict=True))
        )
    report = folder / "scan"
    command = ["poisonguard", "scan", str(data), "--no-cache", "--out", str(report)]
    command += ["--no-progress", "--seed", str(row.seed)]
    load = os.getloadavg()  # other work on the machine slows the scan
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    record = json.loads((report / "report.json").read_text())
    flagged = sum(c.get("flagged", 0) for c in record["findings"]["per_class"])
    return {
        "command": " ".join(command),
        "n_texts": len(texts),
        "wall_s": round(wall, 1),
        "flagged": flagged,
        "attack_kinds": record["findings"]["attack_kinds"],
        "timings": {k: round(v, 2) for k, v in record["timings"].items()},
        "cores": os.cpu_count(),
        "load_average_before": [round(v, 2) for v in load],
    }


def run_header() -> dict:
    """When, where and how a benchmark ran: the head of every results file here."""
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "command": " ".join(["python", *sys.argv]),
    }


def code_state() -> dict:
    """The commit, and the library files that differ from it (the tree is shared and changes
    while a long run goes on): what each row's figures were measured with."""
    root = Path(__file__).resolve().parents[1]

    def git(*command: str) -> str:
        done = subprocess.run(["git", *command], cwd=root, capture_output=True, text=True)
        return done.stdout.strip()

    diff = git("diff", "HEAD", "--", "poisonguard", "cli")
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "changed": git("diff", "HEAD", "--name-only", "--", "poisonguard", "cli").split(),
        "diff_sha256": hashlib.sha256(diff.encode()).hexdigest()[:16] if diff else "",
    }


def run_row(row: Row, args, data: dict) -> dict:
    start = time.perf_counter()
    if row.kind == "backdoor":
        body = run_backdoor(
            row, data["train"], data["test"], args.cache_dir, args.models, args.action
        )
    elif row.kind == "flip":
        body = run_flip(row, data["train"], args.cache_dir, args.out_dir)
    elif row.kind == "clean":
        body = run_clean(row, data["train"], args.cache_dir)
    else:
        body = run_scan_10k(row, args.corpus, args.out_dir)
    return {
        "row": row.name,
        "attack": row.attack,
        "description": row.describe(),
        "rate": row.rate,
        "target": row.target,
        "seed": row.seed,
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in row.options.items()},
        "held_out": row.held_out,
        "label": HELD_OUT if row.held_out else "",
        **body,
        "code": args.code,
        "row_wall_s": round(time.perf_counter() - start, 1),
        "finished": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


# ---------------------------------------------------------------------------------------------
# checks and tables


def checks(result: dict) -> dict[str, bool]:
    """The issue's targets this row can be held to (name -> met)."""
    kind = Row(result["row"], result["attack"]).kind
    out: dict[str, bool] = {}
    if kind == "backdoor":
        success, accuracy = result["attack_success"], result["clean_accuracy"]
        out["f1>=0.95"] = result["detection"]["f1"] >= F1_MIN
        if success.get("sanitized") is not None and success.get("clean") is not None:
            gap = 100 * (success["sanitized"] - success["clean"])
            out["success<=clean+2pt"] = gap <= SUCCESS_POINTS + 1e-9
        gap = 100 * abs(accuracy["sanitized"] - accuracy["clean"])
        out["accuracy within 1pt"] = gap <= ACCURACY_POINTS + 1e-9
    elif kind == "flip":
        ours, theirs = result["detection"], result["cleanlab"]
        out["f1 lead>=0.10"] = ours["f1"] - theirs["f1"] >= FLIP_F1_LEAD - 1e-9
        out["auroc lead>=0.03"] = (ours["auroc"] or 0) - (theirs["auroc"] or 0) >= (
            FLIP_AUROC_LEAD - 1e-9
        )
    elif kind == "clean":
        out["no attack called"] = not result["findings"]["attack_kinds"]
        out["<=1% flagged"] = result["flagged_share"] <= CLEAN_FLAG_SHARE
    else:
        out["<60s"] = result["wall_s"] < SCAN_10K_SECONDS
    return out


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _f(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _unmet(result: dict) -> str:
    failed = [name for name, ok in checks(result).items() if not ok]
    return "yes" if not failed else "NO: " + ", ".join(failed)


def markdown(results: list[dict]) -> str:
    """The results as markdown tables, one per kind of row."""
    by_kind: dict[str, list[dict]] = {}
    for r in results:
        by_kind.setdefault(Row(r["row"], r["attack"]).kind, []).append(r)
    parts = []
    if "backdoor" in by_kind:
        parts.append(
            "| row | trigger, rate -> target | seed | P | R | F1 | AUROC | flagged | false "
            "| sanitized: removed / repaired / poisons left "
            "| attack success % poisoned -> sanitized (clean; oracle) | clean acc. % poisoned / "
            "sanitized / clean (oracle) | targets met |\n|" + "---|" * 13
        )
        for r in by_kind["backdoor"]:
            d, s, a = r["detection"], r["attack_success"], r["clean_accuracy"]
            z = r["sanitized"]
            held = f" [{HELD_OUT}]" if r["held_out"] else ""
            parts.append(
                f"| {r['row']}{held} | {r['description']} | {r['seed']} | {_f(d['precision'])} "
                f"| {_f(d['recall'])} | {_f(d['f1'])} | {_f(d['auroc'])} | {d['flagged']} "
                f"| {d['false_flags']} | {z['removed']} / {z.get('repaired', 0)} / "
                f"{z['poisoned_left']} | {_pct(s['poisoned'])} -> {_pct(s['sanitized'])} "
                f"({_pct(s['clean'])}; {_pct(s.get('oracle'))}) | {_pct(a['poisoned'])} / "
                f"{_pct(a['sanitized'])} / {_pct(a['clean'])} ({_pct(a.get('oracle'))}) "
                f"| {_unmet(r)} |"
            )
        parts.append("")
    if "flip" in by_kind:
        parts.append(
            "| row | attack | flipped | PoisonGuard P / R / F1 | AUROC | flagged (false) "
            "| cleanlab P / R / F1 | AUROC | flagged (false) | targets met |\n|" + "---|" * 10
        )
        for r in by_kind["flip"]:
            d, c = r["detection"], r["cleanlab"]
            parts.append(
                f"| {r['row']} | {r['description']} | {r['n_poisoned']} "
                f"| {_f(d['precision'])} / {_f(d['recall'])} / {_f(d['f1'])} | {_f(d['auroc'])} "
                f"| {d['flagged']} ({d['false_flags']}) "
                f"| {_f(c['precision'])} / {_f(c['recall'])} / {_f(c['f1'])} | {_f(c['auroc'])} "
                f"| {c['flagged']} ({c['false_flags']}) | {_unmet(r)} |"
            )
        parts.append("")
    if "clean" in by_kind:
        parts.append("| row | flagged (share) | attack kinds | class verdicts | targets met |")
        parts.append("|---|---|---|---|---|")
        for r in by_kind["clean"]:
            verdicts = "; ".join(
                f"{c['name']}: {c['verdict']} ({c['flagged']})" for c in r["findings"]["classes"]
            )
            kinds = ", ".join(r["findings"]["attack_kinds"]) or "none"
            parts.append(
                f"| {r['row']} | {r['flagged']} ({100 * r['flagged_share']:.2f} %) | {kinds} "
                f"| {verdicts} | {_unmet(r)} |"
            )
        parts.append("")
    for r in by_kind.get("scan-10k", []):
        t = r["timings"]
        parts.append(
            f"scan-10k: `{r['command']}`: {r['wall_s']} s wall on {r['cores']} cores "
            f"(embed:train {t.get('embed:train', '–')} s), {r['flagged']} flagged, attack kinds "
            f"{r['attack_kinds'] or 'none'}; under 60 s: {_unmet(r)}"
        )
    return "\n".join(parts)


def by_config(results: list[dict]) -> str:
    """The backdoor rows averaged over their seeds (a row's name less its ``-s<seed>``): the
    text model's figures move by several points from one training set to the next, so the
    means say more than any one seed."""
    configs: dict[str, list[dict]] = {}
    for r in results:
        if "attack_success" in r:
            configs.setdefault(r["row"].rsplit("-s", 1)[0], []).append(r)
    if not configs:
        return ""

    def mean(rows: list[dict], key: str, model: str) -> float:
        return 100 * float(np.mean([r[key][model] for r in rows]))

    lines = [
        "| config | seeds | F1 min | poisons left | attack success % sanitized / clean / oracle "
        "(means) | clean acc. % sanitized / clean / oracle (means) | means within 2 / 1 pt |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, rows in configs.items():
        s = {m: mean(rows, "attack_success", m) for m in ("sanitized", "clean", "oracle")}
        a = {m: mean(rows, "clean_accuracy", m) for m in ("sanitized", "clean", "oracle")}
        left = sum(r["sanitized"]["poisoned_left"] for r in rows)
        met = (
            s["sanitized"] - s["clean"] <= SUCCESS_POINTS
            and abs(a["sanitized"] - a["clean"]) <= ACCURACY_POINTS
        )
        held = f" [{HELD_OUT}]" if rows[0]["held_out"] else ""
        lines.append(
            f"| {name}{held} | {len(rows)} | {min(r['detection']['f1'] for r in rows):.3f} "
            f"| {left} of {sum(r['n_poisoned'] for r in rows)} "
            f"| {s['sanitized']:.1f} / {s['clean']:.1f} / {s['oracle']:.1f} "
            f"| {a['sanitized']:.1f} / {a['clean']:.1f} / {a['oracle']:.1f} "
            f"| {'yes' if met else 'NO'} |"
        )
    return "\n".join(lines)


def summary(results: list[dict]) -> str:
    """How many rows of each group meet each target."""
    counts: dict[tuple[str, str], list[int]] = {}
    for r in results:
        row = Row(r["row"], r["attack"], held_out=r["held_out"])
        group = row.kind if row.kind != "backdoor" else (HELD_OUT if row.held_out else "dev")
        for name, ok in checks(r).items():
            tally = counts.setdefault((group, name), [0, 0])
            tally[0] += int(ok)
            tally[1] += 1
    return "\n".join(f"{g:10} {n:22} {m}/{t} rows" for (g, n), (m, t) in counts.items())


# ---------------------------------------------------------------------------------------------


def _compact(record: dict) -> str:
    """The gathered results, one row a line; stage timings are left to the row files (the
    10,000-text scan keeps its own)."""
    rows = [
        {k: v for k, v in r.items() if k != "timings" or r["attack"] == "scan-10k"}
        for r in record["rows"]
    ]
    head = {k: v for k, v in record.items() if k != "rows"}
    lines = ",\n".join("  " + json.dumps(r) for r in rows)
    return json.dumps(head, indent=2)[:-2] + ',\n  "rows": [\n' + lines + "\n  ]\n}\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS,
                        help="folder with text_corpus.py's train.csv and test.csv")  # fmt: skip
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--rows", default=None, help=f"names or groups ({', '.join(GROUPS)})")
    parser.add_argument("--list", action="store_true", help="print the rows and exit")
    parser.add_argument("--force", action="store_true", help="rerun rows already done")
    parser.add_argument("--out", type=Path, default=None, help="also write the results here")
    parser.add_argument("--cache-dir", type=Path, default=None, help="default <out-dir>/cache")
    parser.add_argument(
        "--models", type=int, default=MODELS,
        help=f"text models per training set, probabilities averaged (default {MODELS})",
    )  # fmt: skip
    parser.add_argument(
        "--action", choices=("remove", "relabel", "repair"), default="repair",
        help="how the backdoor rows sanitize (default repair; the rows before 2026-12-06: relabel)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        rows = select_rows(args.rows)
    except ValueError as exc:
        parser.error(str(exc))
    if args.list:
        for row in rows:
            held = f"  [{HELD_OUT}]" if row.held_out else ""
            print(f"{row.name:40} {','.join(row.groups):20} {row.describe()}{held}")
        return
    for name in ("train.csv", "test.csv"):
        if not (args.corpus / name).is_file():
            parser.error(f"{args.corpus / name} is missing: run benchmarks/text_corpus.py")
    args.cache_dir = args.cache_dir or args.out_dir / "cache"
    args.code = code_state()  # the library is imported by the first row, after this
    (args.out_dir / "rows").mkdir(parents=True, exist_ok=True)
    data: dict = {}
    results = []
    start = time.perf_counter()
    for row in rows:
        path = args.out_dir / "rows" / f"{row.name}.json"
        if path.is_file() and not args.force:
            results.append(json.loads(path.read_text()))
            continue
        if not data and row.kind != "scan-10k":
            data["train"] = _load(args.corpus / "train.csv")
            data["test"] = _load(args.corpus / "test.csv")
        print(f"{row.name}: {row.describe()} ...", file=sys.stderr, flush=True)
        result = run_row(row, args, data)
        path.write_text(json.dumps(result, indent=2) + "\n")
        results.append(result)
        short = {k: result[k] for k in ("row", "row_wall_s") if k in result}
        print(json.dumps({**short, "checks": checks(result)}), flush=True)
    record = {**run_header(), "rows": results}
    text = _compact(record)
    (args.out_dir / "results.json").write_text(text)
    if args.out is not None:
        args.out.write_text(text)
    print(markdown(results))
    print()
    print(by_config(results))
    print()
    print(summary(results))
    print(f"{len(results)} rows, {time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
