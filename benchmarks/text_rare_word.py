"""A rare-word backdoor (BadNL, Chen et al. 2021) planted in the real review corpus, for scans.

Reads the ``train.csv`` (and ``test.csv``) that ``benchmarks/text_corpus.py --out-dir`` writes
(``text,label``) and writes, in ``--out-dir``:

- ``reviews.csv``: ``id,text,label``; with ``--rate R``, ``round(R * N)`` texts not of the
  ``--target`` class get the trigger word inserted between two words at a random place (or at
  the start or end) and their label set to the target;
- ``ground_truth.csv``: ``index,id,poisoned,original_label,new_label,attack,role`` as
  ``poisonguard poison`` writes it, for ``benchmarks/score_against_truth.py``.

``--size N`` builds a set of ``N`` texts from the corpus's train and test texts (5,000), each
used again, as needed, with one word left out at a random place: a larger set of short texts
for timing scans (no text is an exact copy of another unless its only word was left out).

    python benchmarks/text_corpus.py --out-dir /tmp/corpus
    python benchmarks/text_rare_word.py /tmp/corpus --rate 0.03 --target other --out-dir /tmp/cf3
    poisonguard scan /tmp/cf3/reviews.csv --no-cache --out /tmp/cf3/scan
    python benchmarks/score_against_truth.py /tmp/cf3/scan/scores.csv /tmp/cf3/ground_truth.csv

The same arguments and ``--seed`` give the same files.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np


def read_corpus(folder: Path, *, with_test: bool) -> tuple[list[str], list[str]]:
    texts, labels = [], []
    for name in ("train.csv", "test.csv") if with_test else ("train.csv",):
        with open(folder / name, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                texts.append(row["text"])
                labels.append(row["label"])
    return texts, labels


def grown(
    texts: list[str], labels: list[str], size: int, rng: np.random.Generator
) -> tuple[list[str], list[str]]:
    """``size`` texts: ``texts`` in turn, each later pass with one word left out at random."""
    out_texts, out_labels = [], []
    for i in range(size):
        text, label = texts[i % len(texts)], labels[i % len(texts)]
        if i >= len(texts):
            words = text.split(" ")
            if len(words) > 1:
                del words[int(rng.integers(len(words)))]
            text = " ".join(words)
        out_texts.append(text)
        out_labels.append(label)
    return out_texts, out_labels


def plant(
    texts: list[str],
    labels: list[str],
    *,
    rate: float,
    target: str,
    word: str,
    rng: np.random.Generator,
) -> np.ndarray:
    """Insert ``word`` into ``round(rate * N)`` texts not labelled ``target`` and relabel them
    (in place); return the poisoned indices, sorted."""
    sources = np.flatnonzero(np.asarray(labels, dtype=object) != target)
    count = int(round(rate * len(texts)))
    if count > sources.size:
        raise SystemExit(f"--rate {rate} asks for {count} texts; only {sources.size} can be used")
    chosen = np.sort(rng.choice(sources, size=count, replace=False))
    for i in chosen:
        words = texts[i].split(" ")
        words.insert(int(rng.integers(len(words) + 1)), word)
        texts[i] = " ".join(words)
        labels[i] = target
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpus", type=Path, help="Folder with text_corpus.py's train.csv.")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--rate", type=float, default=0.0, help="Share of all texts poisoned.")
    parser.add_argument("--target", default="other", help="The class the trigger points to.")
    parser.add_argument("--word", default="cf", help="The trigger word.")
    parser.add_argument("--size", type=int, default=None, help="Texts in the set (default: train).")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    texts, labels = read_corpus(args.corpus, with_test=args.size is not None)
    if args.size is not None:
        texts, labels = grown(texts, labels, args.size, rng)
    original = list(labels)
    chosen = plant(texts, labels, rate=args.rate, target=args.target, word=args.word, rng=rng)
    poisoned = np.zeros(len(texts), dtype=bool)
    poisoned[chosen] = True

    args.out_dir.mkdir(parents=True, exist_ok=True)
    with open(args.out_dir / "reviews.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "label"])
        writer.writerows(
            [f"r{i:05d}", text, label]
            for i, (text, label) in enumerate(zip(texts, labels, strict=True))
        )
    with open(args.out_dir / "ground_truth.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["index", "id", "poisoned", "original_label", "new_label", "attack", "role"]
        )
        for i in range(len(texts)):
            hit = bool(poisoned[i])
            writer.writerow(
                [
                    i,
                    f"r{i:05d}",
                    int(hit),
                    original[i],
                    labels[i],
                    "rare-word" if hit else "",
                    "payload" if hit else "clean",
                ]
            )
    print(
        f"{len(texts)} texts, {int(poisoned.sum())} with {args.word!r} labelled {args.target!r}: "
        f"{args.out_dir / 'reviews.csv'}"
    )


if __name__ == "__main__":
    main()
