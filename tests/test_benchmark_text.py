"""The text benchmark's row table (benchmarks/text.py): well formed, held-out rows really held out,
``--list`` and ``--rows`` work. Nothing is scanned and no corpus is needed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from poisonguard.poison import ATTACKS

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "text.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmark_text", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["benchmark_text"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("benchmark_text", None)


def test_rows_are_well_formed(bench):
    names = [row.name for row in bench.ROWS]
    assert len(names) == len(set(names))
    for row in bench.ROWS:
        assert row.kind in ("backdoor", "flip", "clean", "scan-10k")
        if row.kind in ("backdoor", "flip"):
            assert row.attack in ATTACKS
            assert 0 < row.rate < 1
            bench._options(row, _TwoClasses())  # AttackOptions accept the row's options
        if row.kind == "backdoor":
            assert row.target in ("great", "other")


def test_held_out_rows_use_nothing_developed_against(bench):
    held = [row for row in bench.ROWS if row.held_out]
    assert held and all(row.kind == "backdoor" for row in held)
    for row in held:
        assert not set(row.options.get("trigger_words", ())) & set(bench.DEV_WORDS)
        assert row.options.get("trigger_sentence") not in bench.DEV_SENTENCES
        assert row.seed not in bench.DEV_SEEDS
    # every position, and 2 %, between the two rates
    assert {row.options["trigger_position"] for row in held} == {"start", "end", "random"}
    assert any(row.rate == 0.02 for row in held)
    # both targets and both text backdoors, at 1 % and 3 %
    assert {(row.attack, row.rate) for row in held} >= {
        ("rare-word", 0.01),
        ("rare-word", 0.03),
        ("sentence", 0.01),
        ("sentence", 0.03),
    }
    assert {row.target for row in held} == {"great", "other"}


@pytest.mark.parametrize("batch", ["fresh", "common", "late"])
def test_later_rows_use_no_trigger_or_seed_of_the_other_rows(bench, batch):
    fresh = [row for row in bench.ROWS if batch in row.groups]
    earlier = [row for row in bench.ROWS if row.kind == "backdoor" and row not in fresh]
    assert fresh and all(row.held_out and row.kind == "backdoor" for row in fresh)
    words = {word for row in earlier for word in row.options.get("trigger_words", ())}
    sentences = {row.options["trigger_sentence"] for row in earlier if row.attack == "sentence"}
    for row in fresh:
        assert not set(row.options.get("trigger_words", ())) & words
        assert row.options.get("trigger_sentence") not in sentences
        assert row.seed not in {r.seed for r in earlier}
    assert bench.select_rows(batch) == fresh


def test_list_and_select(bench, capsys):
    bench.main(["--list"])
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(bench.ROWS)
    assert sum("[held-out]" in line for line in out) == sum(r.held_out for r in bench.ROWS)
    bench.main(["--list", "--rows", "detection"])
    out = capsys.readouterr().out.splitlines()
    assert out and all("detection" in line for line in out)
    chosen = bench.select_rows("clean-s0,flips")
    assert chosen[0].name == "clean-s0" and all(r.kind == "flip" for r in chosen[1:])
    with pytest.raises(SystemExit):
        bench.main(["--list", "--rows", "no-such-row"])


def test_checks_read_a_result(bench):
    result = {
        "row": "x",
        "attack": "rare-word",
        "detection": {"f1": 0.96},
        "attack_success": {"clean": 0.02, "poisoned": 0.9, "sanitized": 0.045},
        "clean_accuracy": {"clean": 0.85, "poisoned": 0.85, "sanitized": 0.842},
    }
    assert bench.checks(result) == {
        "f1>=0.95": True,
        "success<=clean+2pt": False,
        "accuracy within 1pt": True,
    }


class _TwoClasses:
    class_names = ["great", "other"]
    path = Path("corpus")


def test_the_corpora_s_unseen_plants_use_no_trigger_of_any_other_row(bench):
    # benchmarks/text_backdoor_corpora.py: UNSEEN_PLANTS, fixed before their first scan, share
    # no trigger with its earlier plants or with benchmarks/text.py's rows, and no seed
    spec = importlib.util.spec_from_file_location(
        "benchmark_corpora", PATH.parent / "text_backdoor_corpora.py"
    )
    corpora = importlib.util.module_from_spec(spec)
    loaded = set(sys.modules)
    sys.path.insert(0, str(PATH.parent))
    try:
        spec.loader.exec_module(corpora)  # imports text.py and text_flip_corpora.py by name
    finally:
        sys.path.remove(str(PATH.parent))
        for name in {"text", "text_flip_corpora"} - loaded:
            sys.modules.pop(name, None)
    earlier = [(a, o) for a, o, _, _ in corpora.PLANTS + corpora.FRESH_PLANTS]
    earlier += [(row.attack, row.options) for row in bench.ROWS if row.kind == "backdoor"]
    words = {word for _, options in earlier for word in options.get("trigger_words", ())}
    sentences = {options.get("trigger_sentence") for _, options in earlier} - {None}
    seeds = set(range(40, 40 + len(corpora.PLANTS))) | set(
        range(50, 50 + len(corpora.FRESH_PLANTS))
    )
    seeds |= {row.seed for row in bench.ROWS}
    for k, (attack, options, rate, target) in enumerate(corpora.UNSEEN_PLANTS):
        assert attack in ATTACKS and 0 < rate < 1 and target in (0, 1)
        assert not set(options.get("trigger_words", ())) & words
        assert options.get("trigger_sentence") not in sentences
        assert 70 + k not in seeds
    assert {o["trigger_position"] for _, o, _, _ in corpora.UNSEEN_PLANTS} == {
        "start",
        "end",
        "random",
    }
