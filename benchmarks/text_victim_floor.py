"""How far apart two clean models' attack success lies: the noise floor of issue 16's bar.

    python benchmarks/text_corpus.py --out-dir /tmp/corpus
    python benchmarks/text_victim_floor.py --corpus /tmp/corpus \\
        --out docs/text-victim-floor-results.json

Issue 16 asks that attack success after sanitizing be within 2 points of a model trained on the
clean corpus. Nothing is poisoned here: the text model of ``poisonguard evaluate`` is trained on
the clean training reviews of ``benchmarks/text_corpus.py`` with seeds ``0`` to ``2 * models - 1``,
and each trigger of ``benchmarks/text.py``'s backdoor rows is inserted into the test reviews
not of its target class, as ``evaluate`` measures attack success. Per trigger: the share read
as the target by each single model (its smallest and largest), and by two averages of
``models`` models each (seeds ``0..models-1`` and ``models..2*models-1``, probabilities
averaged, as ``evaluate --models`` does), with their difference in points. Where two clean
averages already differ by more than 2 points, the bar cannot tell a sanitized set from the
clean one with that model.

The models are cached (``--cache-dir``), so ``benchmarks/text.py`` with the same cache reuses
them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import text as rows_of  # noqa: E402  (the backdoor rows' triggers)


def _success(probabilities: np.ndarray, counted: np.ndarray, target: int) -> float:
    """The share of the counted test texts read as ``target``."""
    return round(float(np.mean(probabilities.argmax(axis=1)[counted] == target)), 4)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=rows_of.DEFAULT_CORPUS)
    parser.add_argument("--cache-dir", type=Path, default=rows_of.DEFAULT_OUT / "cache")
    parser.add_argument("--models", type=int, default=rows_of.MODELS)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    from poisonguard.embed import EmbedSettings, embed_dataset, embed_with
    from poisonguard.poisoned_copy import class_code, poison_dataset, trigger_dataset

    train = rows_of._load(args.corpus / "train.csv")
    test = rows_of._load(args.corpus / "test.csv")
    seeds = range(2 * args.models)
    models = {
        seed: embed_dataset(
            train,
            EmbedSettings(seed=seed),
            cache_dir=args.cache_dir,
            use_cache=True,
            progress=False,
        )  # fmt: skip
        for seed in seeds
    }
    clean = {seed: embed_with(model, test.x)[1] for seed, model in models.items()}
    first, second = list(seeds[: args.models]), list(seeds[args.models :])

    def accuracy(probabilities: np.ndarray) -> float:
        return round(float(np.mean(probabilities.argmax(axis=1) == test.labels)), 4)

    results, seen = [], set()
    for row in rows_of.select_rows("backdoors"):
        key = (row.attack, tuple(sorted(row.options.items())), row.target)
        if key in seen:
            continue
        seen.add(key)
        target = class_code(train, row.target)
        options = rows_of._options(row, train)
        poisoning = poison_dataset(
            train, attack=row.attack, rate=row.rate, target=target, seed=row.seed, options=options
        )
        stamped = trigger_dataset(
            test, attack=row.attack, target=target, seed=row.seed, options=poisoning.options
        )
        counted = test.labels != target
        read = {seed: embed_with(models[seed], stamped.x)[1] for seed in seeds}

        single = [_success(read[seed], counted, target) for seed in seeds]
        a = _success(sum(read[seed] for seed in first), counted, target)
        b = _success(sum(read[seed] for seed in second), counted, target)
        record = {
            "trigger": row.describe(),
            "first_row": row.name,
            "single_models": {"min": min(single), "max": max(single)},
            f"average_seeds_{first[0]}_{first[-1]}": a,
            f"average_seeds_{second[0]}_{second[-1]}": b,
            "difference_points": round(100 * (b - a), 1),
        }
        results.append(record)
        print(json.dumps(record), flush=True)
    record = {
        **rows_of.run_header(),
        "models_per_average": args.models,
        "clean_accuracy": {
            "first_average": accuracy(sum(clean[seed] for seed in first)),
            "second_average": accuracy(sum(clean[seed] for seed in second)),
        },
        "triggers": results,
    }
    text = json.dumps(record, indent=1) + "\n"
    if args.out is not None:
        args.out.write_text(text)
    print(json.dumps(record["clean_accuracy"]))


if __name__ == "__main__":
    main()
