"""Determinism across machines (issue 14, item 7): training's torch thread count changes the last
bits of the trained model, so it is part of the embedding's fingerprint and of report.json's
``execution``, and ``POISONGUARD_TORCH_THREADS`` fixes it; the same data, seed and thread count
give the same scores."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from poisonguard.cli.main import main

import poisonguard.embed as embed
import poisonguard.machine as machine
from poisonguard.errors import PoisonGuardError
from poisonguard.loaders import load_dataset

SETTINGS = embed.EmbedSettings(epochs=2, seed=1)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, synthetic):
    folder = synthetic.write_image_folder(
        tmp_path_factory.mktemp("determinism") / "images", {c: 40 for c in "abcd"}
    )
    return load_dataset(folder)


def embedded(dataset, monkeypatch, threads: int | None, **options):
    if threads is None:
        monkeypatch.delenv(machine.TORCH_THREADS_ENV, raising=False)
    else:
        monkeypatch.setenv(machine.TORCH_THREADS_ENV, str(threads))
    return embed.embed_dataset(dataset, SETTINGS, progress=False, **options)


def test_the_thread_count_defaults_to_the_cores_and_can_be_fixed(monkeypatch):
    monkeypatch.delenv(machine.TORCH_THREADS_ENV, raising=False)
    assert machine.torch_threads() == machine.available_cores()
    monkeypatch.setenv(machine.TORCH_THREADS_ENV, " 3 ")
    assert machine.torch_threads() == 3
    for bad in ("0", "-2", "two", "1.5"):
        monkeypatch.setenv(machine.TORCH_THREADS_ENV, bad)
        with pytest.raises(PoisonGuardError, match="POISONGUARD_TORCH_THREADS must be a positive"):
            machine.torch_threads()


def test_the_same_thread_count_gives_the_same_embedding(dataset, monkeypatch):
    first = embedded(dataset, monkeypatch, 1, use_cache=False)
    second = embedded(dataset, monkeypatch, 1, use_cache=False)
    for name in ("features", "probabilities", "loss", "margin", "gradient_sq"):
        assert np.array_equal(getattr(first, name), getattr(second, name)), name
    assert first.model["training"] == {"torch_threads": 1}
    assert first.fingerprint == second.fingerprint


def test_the_thread_count_is_part_of_the_fingerprint(dataset, monkeypatch):
    one = embedded(dataset, monkeypatch, 1, use_cache=False)
    two = embedded(dataset, monkeypatch, 2, use_cache=False)
    assert one.fingerprint != two.fingerprint
    assert two.model["training"] == {"torch_threads": 2}
    # where threads split sums differently the features differ in their last bits (measured on
    # 2 cores: up to 3e-6 here, 0.17 on sample_data/digits/clean); never more than that here
    assert np.allclose(one.features, two.features, rtol=0, atol=1e-3)


def test_a_cached_embedding_is_not_reused_under_another_thread_count(dataset, monkeypatch):
    stored = embedded(dataset, monkeypatch, 2)
    assert stored.cache_path is not None
    again = embedded(dataset, monkeypatch, 2)
    assert again.cache_path == stored.cache_path  # reused
    other = embedded(dataset, monkeypatch, 1)
    assert other.fingerprint != stored.fingerprint and other.cache_path != stored.cache_path


def test_training_leaves_the_thread_count_it_was_told(dataset, monkeypatch):
    before = torch.get_num_threads()
    try:
        embedded(dataset, monkeypatch, 1, use_cache=False)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_report_json_records_the_thread_count_and_scores_repeat(tmp_path, synthetic, monkeypatch):
    folder = synthetic.write_image_folder(
        tmp_path / "images", {c: 30 for c in "abcd"}, planted={"a": 8}
    )
    monkeypatch.setenv(machine.TORCH_THREADS_ENV, "1")
    scores = []
    for name in ("first", "second"):
        out = tmp_path / name
        result = CliRunner().invoke(
            main, ["scan", str(folder), "--epochs", "2", "--no-cache", "--out", str(out)]
        )
        assert result.exit_code == 0, result.output + repr(result.exception)
        report = json.loads((out / "report.json").read_text())
        assert report["execution"]["torch_threads"] == 1
        scores.append((out / "scores.csv").read_bytes())
    assert scores[0] == scores[1]


def test_a_bad_thread_count_is_a_one_line_error(tmp_path, synthetic, monkeypatch):
    folder = synthetic.write_image_folder(tmp_path / "images", {c: 10 for c in "ab"})
    monkeypatch.setenv(machine.TORCH_THREADS_ENV, "many")
    out = tmp_path / "report"
    result = CliRunner().invoke(main, ["scan", str(folder), "--no-cache", "--out", str(out)])
    assert result.exit_code == 1
    assert "POISONGUARD_TORCH_THREADS must be a positive whole number" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()
