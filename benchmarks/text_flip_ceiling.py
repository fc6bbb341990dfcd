"""How well can any ranking find random label flips in the review corpus? The ceiling of issue 16.

    python benchmarks/text_corpus.py --out-dir /tmp/corpus
    python benchmarks/text_flip_ceiling.py --corpus /tmp/corpus \\
        --out docs/text-flip-ceiling-results.json

Issue 16 asks the scan to beat cleanlab on 10 % random flips by 0.10 F1 and 0.03 AUROC. This
script asks what is possible on ``benchmarks/text.py``'s flip rows (the same flips, seeds 0-2,
and the pair flip "great" -> "other"): for the scan's fused score, the out-of-sample heads on
the texts' words that the scan reads (``poisonguard.detectors.text_columns``), and several text
classifiers' 5-fold out-of-fold ``1 - p(given label)`` (cleanlab's recipe, TF-IDF + logistic
regression; word 1-2 grams with C = 3; character 2-5 grams; naive Bayes; the average rank of
the best three), the AUROC and **the best F1 any threshold on the ranking reaches** (the
threshold chosen knowing the flips: an upper bound for any rule that flags the top of that
ranking). cleanlab's own ``find_label_issues`` flags as in ``benchmarks/text.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import text as rows_of  # noqa: E402  (the flip rows and cleanlab's recipe)


def best_f1(truth: np.ndarray, score: np.ndarray) -> dict:
    """The largest F1 of flagging the top ``k`` of ``score`` (``best_f1``), and that ``k``."""
    order = np.argsort(-score, kind="stable")
    hits = np.cumsum(truth[order])
    k = np.arange(1, truth.size + 1)
    f1 = 2 * hits / (k + truth.sum())
    best = int(np.argmax(f1))
    return {"best_f1": round(float(f1[best]), 4), "best_k": best + 1}


def rankers(seed: int) -> dict:
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.pipeline import make_pipeline

    return {
        "cleanlab recipe (TF-IDF + LR)": make_pipeline(
            TfidfVectorizer(), LogisticRegression(max_iter=1000)
        ),
        "word 1-2 grams, LR C=3": make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2),
            LogisticRegression(C=3, max_iter=2000),
        ),
        "char 2-5 grams, LR C=3": make_pipeline(
            TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2),
            LogisticRegression(C=3, max_iter=2000),
        ),
        "naive Bayes, words 1-2": make_pipeline(
            CountVectorizer(ngram_range=(1, 2), binary=True), MultinomialNB(alpha=0.5)
        ),
    }


def run(row, train, cache_dir: Path, out_dir: Path) -> dict:
    from scipy.stats import rankdata
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from poisonguard.detectors.streaming import out_of_sample_probabilities
    from poisonguard.detectors.text_columns import word_columns
    from poisonguard.evaluate import subset
    from poisonguard.poisoned_copy import class_code, poison_dataset
    from poisonguard.scan import ScanSettings, scan_dataset

    poisoning = poison_dataset(
        train, attack=row.attack, rate=row.rate, target=class_code(train, row.target),
        seed=row.seed, options=rows_of._options(row, train),
    )  # fmt: skip
    flipped = subset(train, np.arange(train.n_samples), labels=poisoning.labels)
    truth, labels, n = poisoning.poisoned, flipped.labels, flipped.n_samples
    scores = {}
    scan = scan_dataset(
        flipped, ScanSettings(seed=row.seed), cache_dir=cache_dir, use_cache=True, progress=False
    )
    scores["PoisonGuard fused score"] = scan.score
    heads = np.asarray(
        out_of_sample_probabilities(
            word_columns(flipped.x, seed=row.seed), labels, n_classes=2, seed=row.seed
        )
    )
    scores["PoisonGuard word heads, 1 - p(given)"] = 1.0 - heads[np.arange(n), labels]
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=row.seed)
    for name, model in rankers(row.seed).items():
        start = time.perf_counter()
        p = cross_val_predict(model, list(flipped.x), labels, cv=folds, method="predict_proba")
        scores[name] = 1.0 - p[np.arange(n), labels]
        print(f"  {name}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    best_three = ["word 1-2 grams, LR C=3", "char 2-5 grams, LR C=3", "naive Bayes, words 1-2"]
    scores["average rank of the three above"] = sum(rankdata(scores[k]) for k in best_three)
    theirs = rows_of.cleanlab_flags(flipped.x, labels, row.seed, out_dir)
    found = theirs["flagged"]
    tp = int(np.sum(found & truth))
    precision, recall = tp / max(int(found.sum()), 1), tp / int(truth.sum())
    return {
        "row": row.name,
        "flipped": int(truth.sum()),
        "scan_flagged": int(scan.flagged.sum()),
        "cleanlab_find_label_issues": {
            "flagged": int(found.sum()),
            "f1": round(2 * precision * recall / max(precision + recall, 1e-12), 4),
        },
        "rankings": {
            name: {
                "auroc": round(float(roc_auc_score(truth, s)), 4),
                **best_f1(truth, np.asarray(s, dtype=np.float64)),
            }
            for name, s in scores.items()
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=rows_of.DEFAULT_CORPUS)
    parser.add_argument("--out-dir", type=Path, default=rows_of.DEFAULT_OUT)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    train = rows_of._load(args.corpus / "train.csv")
    results = []
    for row in rows_of.select_rows("flips"):
        print(f"{row.name} ...", file=sys.stderr, flush=True)
        result = run(row, train, args.cache_dir or args.out_dir / "cache", args.out_dir)
        results.append(result)
        print(json.dumps(result), flush=True)
    record = {
        **rows_of.run_header(),
        "rows": results,
    }
    if args.out is not None:
        args.out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
