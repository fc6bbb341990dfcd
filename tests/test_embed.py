"""Tests of the embedding stage: training dynamics, determinism, the cache, TorchScript models."""

from __future__ import annotations

import logging
import pickle
import zipfile
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from poisonguard.dataset import Dataset
from poisonguard.embed import EmbedSettings, default_cache_dir, embed_dataset
from poisonguard.embed.inputs import InputScaler, batch_slices
from poisonguard.embed.models import FEATURE_DIM
from poisonguard.embed.training import choose_epochs
from poisonguard.errors import ModelFileError

N_CLASSES = 3
PER_CLASS = 20
EPOCHS = 2


def image_dataset(seed: int = 0, n_per_class: int = PER_CLASS) -> Dataset:
    """Small 1x8x8 uint8 images: one bright row per class, at a class-specific height."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(N_CLASSES), n_per_class)
    x = rng.integers(0, 40, size=(labels.size, 1, 8, 8)).astype(np.uint8)
    for i, code in enumerate(labels):
        x[i, 0, 2 * code + 1, :] = 230
    return Dataset(
        x=x,
        labels=labels.astype(np.int64),
        class_names=[str(c) for c in range(N_CLASSES)],
        ids=[f"{c}/img_{i:03d}.png" for i, c in enumerate(labels)],
        kind="image",
        path=Path("/synthetic/images"),
        format="image-folder",
    )


def table_dataset(seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(N_CLASSES), PER_CLASS)
    x = (rng.normal(size=(labels.size, 6)) + 2.0 * labels[:, None]).astype(np.float32)
    return Dataset(
        x=x,
        labels=labels.astype(np.int64),
        class_names=["x", "y", "z"],
        ids=[str(i) for i in range(labels.size)],
        kind="table",
        path=Path("/synthetic/table.csv"),
        format="csv",
        feature_names=[f"f{i}" for i in range(6)],
    )


def with_x(dataset: Dataset, x: np.ndarray) -> Dataset:
    return replace(dataset, x=x)


def with_labels(dataset: Dataset, labels: np.ndarray) -> Dataset:
    return replace(dataset, labels=labels)


def embed(dataset: Dataset, cache_dir: Path | None = None, **settings) -> object:
    settings.setdefault("epochs", EPOCHS)
    return embed_dataset(
        dataset,
        EmbedSettings(**settings),
        cache_dir=cache_dir,
        use_cache=cache_dir is not None,
        progress=False,
    )


def assert_same_embedding(a, b) -> None:
    for name in ("features", "probabilities", "loss", "margin"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.fingerprint == b.fingerprint
    assert a.model == b.model
    assert a.input_shape == b.input_shape
    assert a.train_accuracy == pytest.approx(b.train_accuracy)


# --- what an embedding holds ---------------------------------------------------------------------


@pytest.mark.parametrize("make", [image_dataset, table_dataset], ids=["image", "table"])
def test_embedding_shapes_and_probabilities(make):
    dataset = make()
    n = dataset.n_samples
    result = embed(dataset, epochs=3)
    assert result.features.shape == (n, FEATURE_DIM)
    assert result.probabilities.shape == (n, N_CLASSES)
    assert result.loss.shape == (n, 3)
    assert result.margin.shape == (n, 3)
    for name in ("features", "probabilities", "loss", "margin"):
        array = getattr(result, name)
        assert array.dtype == np.float32, name
        assert np.all(np.isfinite(array)), name
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert np.all(result.probabilities >= 0)
    assert np.all(result.loss >= 0)
    # Every sample was seen in every epoch: no loss left at its initial zero.
    assert np.all(result.loss > 0)
    assert result.input_shape == dataset.x.shape[1:]
    assert 0.0 <= result.train_accuracy <= 1.0
    assert result.model["source"] == "trained"
    assert result.model["recipe"]["epochs"] == 3
    assert len(result.fingerprint) == 64
    assert not result.from_cache and result.cache_path is None


def test_margin_sign_matches_the_prediction():
    # The margin of the last epoch is measured before that epoch's updates, so compare it to the
    # model's agreement only loosely: the mean margin of correct samples is higher.
    dataset = image_dataset()
    result = embed(dataset, epochs=5)
    correct = result.probabilities.argmax(axis=1) == dataset.labels
    assert correct.any()
    if (~correct).any():
        assert result.margin[correct, -1].mean() > result.margin[~correct, -1].mean()
    # The loss falls while the model learns the (easy) classes.
    assert result.loss[:, -1].mean() < result.loss[:, 0].mean()


def test_same_seed_same_embedding_different_seed_different():
    # "The same seed gives the same embedding" (EmbedSettings) must not depend on what else the
    # process did with torch's global random generator before (another scan, a user's code).
    dataset = image_dataset()
    torch.manual_seed(12345)
    first = embed(dataset, seed=3)
    torch.rand(7)
    again = embed(dataset, seed=3)
    assert_same_embedding(first, again)
    other = embed(dataset, seed=4)
    assert not np.array_equal(first.features, other.features)
    assert not np.array_equal(first.loss, other.loss)
    assert first.fingerprint != other.fingerprint  # the seed is part of the recipe


# --- the cache -----------------------------------------------------------------------------------


def test_second_call_reads_the_cache(tmp_path):
    dataset = image_dataset()
    first = embed(dataset, tmp_path)
    assert not first.from_cache
    assert first.cache_path == tmp_path / f"{first.fingerprint}.h5"
    assert first.cache_path.is_file()
    second = embed(dataset, tmp_path)
    assert second.from_cache
    assert second.cache_path == first.cache_path
    assert_same_embedding(first, second)
    # A copy of the data at another place hits the same entry (the path is not part of the key).
    moved = embed(replace(dataset, path=Path("/elsewhere/images")), tmp_path)
    assert moved.from_cache


def test_cache_dir_defaults_to_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("POISONGUARD_CACHE_DIR", str(tmp_path / "env-cache"))
    assert default_cache_dir() == tmp_path / "env-cache"
    result = embed_dataset(image_dataset(), EmbedSettings(epochs=1), cache_dir=None, progress=False)
    assert result.cache_path is not None
    assert result.cache_path.parent == tmp_path / "env-cache"
    assert result.cache_path.is_file()


def test_default_cache_dir_without_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("POISONGUARD_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "poisonguard"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "poisonguard"


def changed_label(dataset: Dataset) -> Dataset:
    labels = dataset.labels.copy()
    labels[0] = (labels[0] + 1) % N_CLASSES
    return with_labels(dataset, labels)


def changed_pixel(dataset: Dataset) -> Dataset:
    x = dataset.x.copy()
    x[5, 0, 7, 7] ^= 1
    return with_x(dataset, x)


@pytest.mark.parametrize(
    ("change", "setting"),
    [
        (changed_label, {}),
        (changed_pixel, {}),
        (lambda d: d, {"epochs": EPOCHS + 1}),
        (lambda d: d, {"seed": 1}),
        (lambda d: d, {"batch_size": 16}),
    ],
    ids=["label", "pixel", "epochs", "seed", "batch_size"],
)
def test_any_change_misses_the_cache(tmp_path, change, setting):
    dataset = image_dataset()
    first = embed(dataset, tmp_path)
    changed = embed(change(dataset), tmp_path, **setting)
    assert changed.fingerprint != first.fingerprint
    assert not changed.from_cache
    assert len(list(tmp_path.glob("*.h5"))) == 2
    # The original entry is still there and still used.
    assert embed(dataset, tmp_path).from_cache


def test_use_cache_false_neither_reads_nor_writes(tmp_path):
    dataset = image_dataset()
    # Nothing written when the cache is off.
    off = embed_dataset(
        dataset, EmbedSettings(epochs=EPOCHS), cache_dir=tmp_path, use_cache=False, progress=False
    )
    assert not off.from_cache and off.cache_path is None
    assert list(tmp_path.iterdir()) == []
    # With an entry present, it is not read either: replace the entry by one with other values.
    stored = embed(dataset, tmp_path)
    with h5py.File(stored.cache_path, "r+") as handle:
        handle["features"][...] = handle["features"][()] + 1.0
    before = stored.cache_path.read_bytes()
    again = embed_dataset(
        dataset, EmbedSettings(epochs=EPOCHS), cache_dir=tmp_path, use_cache=False, progress=False
    )
    assert not again.from_cache
    np.testing.assert_array_equal(again.features, off.features)
    assert stored.cache_path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [stored.cache_path.name]


def corrupt_garbage(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(2048))


def corrupt_empty(path: Path) -> None:
    path.write_bytes(b"")


def corrupt_truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def corrupt_nan(path: Path) -> None:
    with h5py.File(path, "r+") as handle:
        features = handle["features"][()]
        features[3, 0] = np.nan
        handle["features"][...] = features


def corrupt_short(path: Path) -> None:
    with h5py.File(path, "r+") as handle:
        features = handle["features"][()]
        del handle["features"]
        handle["features"] = features[:-1]


def corrupt_missing_array(path: Path) -> None:
    with h5py.File(path, "r+") as handle:
        del handle["margin"]


@pytest.mark.parametrize(
    "corrupt",
    [
        corrupt_garbage,
        corrupt_empty,
        corrupt_truncated,
        corrupt_nan,
        corrupt_short,
        corrupt_missing_array,
    ],
)
def test_damaged_cache_file_is_ignored_recomputed_and_rewritten(tmp_path, caplog, corrupt):
    dataset = image_dataset()
    first = embed(dataset, tmp_path)
    corrupt(first.cache_path)
    with caplog.at_level(logging.WARNING, logger="poisonguard"):
        recomputed = embed(dataset, tmp_path)
    assert not recomputed.from_cache
    assert any("damaged cache file" in r.getMessage() for r in caplog.records)
    assert str(first.cache_path) in caplog.text
    assert_same_embedding(first, recomputed)
    # The entry was rewritten and is valid again.
    assert recomputed.cache_path == first.cache_path
    third = embed(dataset, tmp_path)
    assert third.from_cache
    assert_same_embedding(first, third)


def test_unwritable_cache_is_reported_and_skipped(tmp_path, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING, logger="poisonguard"):
        result = embed(image_dataset(), blocker)
    assert not result.from_cache
    assert result.cache_path is None
    assert "could not write the embedding cache" in caplog.text
    assert blocker.read_text().startswith("a file")


# --- batches, epochs, input scaling -------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 2, 7, 128])
def test_batch_slices_cover_everything_without_a_batch_of_one(batch):
    for n in range(0, 3 * batch + 3):
        slices = batch_slices(n, batch)
        covered = [i for s in slices for i in range(n)[s]]
        assert covered == list(range(n)), (n, batch)
        sizes = [s.stop - s.start for s in slices]
        assert all(size <= batch + 1 for size in sizes)
        if n > 1 and batch > 1:
            assert min(sizes) > 1, (n, batch, sizes)


def test_batch_slices_remainder_of_one_joins_the_previous_batch():
    assert batch_slices(129, 128) == [slice(0, 129)]
    assert batch_slices(257, 128) == [slice(0, 128), slice(128, 257)]
    assert batch_slices(130, 128) == [slice(0, 128), slice(128, 130)]
    assert batch_slices(1, 128) == [slice(0, 1)]
    assert batch_slices(0, 128) == []


def test_training_survives_a_remainder_of_one(tmp_path):
    # 41 samples at batch 20: batch norm would fail on a last batch of one sample.
    dataset = image_dataset(n_per_class=14)
    dataset = replace(
        dataset,
        x=dataset.x[:41],
        labels=dataset.labels[:41],
        ids=dataset.ids[:41],
    )
    result = embed(dataset, batch_size=20, epochs=3)
    assert result.loss.shape == (41, 3)
    assert np.all(result.loss > 0)


@pytest.mark.parametrize("epochs", [1, 2, 3, 4, 5, 6])
def test_training_works_for_any_number_of_optimizer_steps(epochs):
    # 60 samples at batch 128: one optimizer step per epoch, so the one-cycle schedule has as
    # many steps as epochs (``--epochs 4`` on a small dataset is a legitimate request).
    dataset = table_dataset()
    result = embed(dataset, epochs=epochs)
    assert result.loss.shape == (dataset.n_samples, epochs)
    assert np.all(np.isfinite(result.features))


def test_choose_epochs_bounds():
    assert choose_epochs(60_000, 128) == 5
    assert choose_epochs(1_797, 128) == 40
    assert choose_epochs(10, 128) == 40
    assert choose_epochs(1, 128) == 40
    # In between, enough epochs for the minimum number of optimizer steps.
    steps = len(batch_slices(12_800, 128))  # 100 per epoch
    assert choose_epochs(12_800, 128) == 20 == 2000 // steps
    previous = None
    for n in [1, 50, 500, 2_000, 5_000, 20_000, 100_000, 1_000_000]:
        epochs = choose_epochs(n, 128)
        assert 5 <= epochs <= 40
        if epochs < 40:
            assert epochs * len(batch_slices(n, 128)) >= 2000 or epochs == 5
        if previous is not None:
            assert epochs <= previous
        previous = epochs
    assert choose_epochs(100, 10, min_epochs=2, max_epochs=3) == 3
    assert choose_epochs(10**7, 10, min_epochs=2, max_epochs=3) == 2


def test_input_scaler_constant_channel_is_finite():
    rng = np.random.default_rng(0)
    x = np.empty((50, 3, 4, 4), dtype=np.uint8)
    x[:, 0] = 7  # constant
    x[:, 1] = rng.integers(0, 256, size=(50, 4, 4))
    x[:, 2] = 0  # constant zero
    scaler = InputScaler.standardizing(x)
    out = scaler(x).numpy()
    assert out.dtype == np.float32 and out.shape == x.shape
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out[:, 0], 0.0, atol=1e-6)
    np.testing.assert_allclose(out[:, 2], 0.0, atol=1e-6)
    assert abs(out[:, 1].mean()) < 1e-4
    assert out[:, 1].std() == pytest.approx(1.0, rel=1e-3)


def test_input_scaler_tables_and_large_constant_columns():
    rng = np.random.default_rng(1)
    x = np.column_stack(
        [
            np.full(40, 1e6, dtype=np.float32),  # constant, large: rounding must not matter
            rng.normal(5.0, 2.0, size=40).astype(np.float32),
            np.zeros(40, dtype=np.float32),
        ]
    )
    scaler = InputScaler.standardizing(x)
    out = scaler(x).numpy()
    assert np.all(np.isfinite(out))
    assert np.abs(out[:, 0]).max() < 1e-3
    np.testing.assert_allclose(out[:, 2], 0.0)
    assert out[:, 1].std() == pytest.approx(1.0, rel=1e-3)
    # Chunked statistics match a one-shot computation.
    big = rng.normal(size=(10_000, 3)).astype(np.float32) * [1.0, 10.0, 0.1] + [0.0, 3.0, -2.0]
    chunked = InputScaler.standardizing(big)
    np.testing.assert_allclose(chunked.mean, big.mean(axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(chunked.std, big.std(axis=0), rtol=1e-4)


# --- TorchScript feature extractors ---------------------------------------------------------------


class PoolingExtractor(nn.Module):
    """Row means and column maxima of a (B, 1, 8, 8) batch, times a fixed weight: (B, 16)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.linspace(0.5, 2.0, 16), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.mean(dim=3).flatten(1)
        cols = x.amax(dim=2).flatten(1)
        return torch.cat([rows, cols], dim=1) * self.weight


class WrongBatch(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:1]


class ProducesNaN(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x.flatten(1).clone()
        out[0, 0] = float("nan")
        return out


class Raises(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], 3, -1)  # 64 values are not a multiple of 3


def script(module: nn.Module, path: Path) -> Path:
    torch.jit.script(module).save(str(path))
    return path


def test_torchscript_extractor_supplies_the_features(tmp_path):
    dataset = image_dataset()
    model_file = script(PoolingExtractor(), tmp_path / "extractor.pt")
    result = embed(dataset, tmp_path / "cache", model_file=model_file, epochs=3)
    expected = PoolingExtractor()(torch.from_numpy(dataset.x.astype(np.float32) / 255.0)).numpy()
    assert result.features.shape == (dataset.n_samples, 16)
    np.testing.assert_allclose(result.features, expected, rtol=1e-5, atol=1e-6)
    assert result.model["source"] == "torchscript"
    assert result.model["head"] == "LinearHead"
    assert result.model["file"] == str(model_file)
    assert len(result.model["file_sha256"]) == 64
    assert result.probabilities.shape == (dataset.n_samples, N_CLASSES)
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert result.loss.shape == result.margin.shape == (dataset.n_samples, 3)
    assert np.all(np.isfinite(result.loss))
    # Cached like a trained model, and keyed by the file's content, not its name.
    assert embed(dataset, tmp_path / "cache", model_file=model_file, epochs=3).from_cache
    renamed = model_file.rename(tmp_path / "renamed.pt")
    from_renamed = embed(dataset, tmp_path / "cache", model_file=renamed, epochs=3)
    assert from_renamed.from_cache
    assert from_renamed.model["file"] == str(renamed)  # the report names the file used now
    trained = embed(dataset, tmp_path / "cache", epochs=3)
    assert trained.fingerprint != result.fingerprint


def test_torchscript_extractor_on_a_table(tmp_path):
    class Table(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([x, x * x], dim=1)

    dataset = table_dataset()
    result = embed(dataset, model_file=script(Table(), tmp_path / "table.pt"))
    x = dataset.x.astype(np.float32)
    np.testing.assert_allclose(result.features, np.hstack([x, x * x]), rtol=1e-6)


def test_torchscript_changed_file_misses_the_cache(tmp_path):
    dataset = image_dataset()
    model_file = script(PoolingExtractor(), tmp_path / "m.pt")
    first = embed(dataset, tmp_path / "cache", model_file=model_file)
    changed = PoolingExtractor()
    with torch.no_grad():
        changed.weight.mul_(2.0)
    script(changed, model_file)
    second = embed(dataset, tmp_path / "cache", model_file=model_file)
    assert not second.from_cache
    assert second.fingerprint != first.fingerprint
    np.testing.assert_allclose(second.features, 2.0 * first.features, rtol=1e-5)


class _Marker:
    """Unpickling this creates a file: proof that a pickle was executed."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def _missing(tmp_path: Path) -> Path:
    return tmp_path / "no-such-model.pt"


def _random_bytes(tmp_path: Path) -> Path:
    path = tmp_path / "random.pt"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    return path


def _state_dict(tmp_path: Path) -> Path:
    path = tmp_path / "state_dict.pt"
    torch.save(nn.Linear(64, 4).state_dict(), path)
    return path


def _whole_module_checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "module.pt"
    torch.save(nn.Sequential(nn.Flatten(), nn.Linear(64, 4)), path)
    return path


def _plain_pickle(tmp_path: Path) -> Path:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(_Marker(tmp_path / "PWNED")))
    return path


def _zip_with_pickle(tmp_path: Path) -> Path:
    path = tmp_path / "archive.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(_Marker(tmp_path / "PWNED")))
        archive.writestr("archive/version", "3\n")
    return path


def _damaged_torchscript(tmp_path: Path) -> Path:
    good = script(PoolingExtractor(), tmp_path / "good.pt")
    path = tmp_path / "damaged.pt"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(path, "w") as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename.endswith("data.pkl"):
                data = b"\x80\x02garbage"
            target.writestr(info, data)
    return path


@pytest.mark.parametrize(
    "make",
    [
        _missing,
        _random_bytes,
        _state_dict,
        _whole_module_checkpoint,
        _plain_pickle,
        _zip_with_pickle,
        _damaged_torchscript,
    ],
)
def test_non_torchscript_model_files_are_refused(tmp_path, make):
    path = make(tmp_path)
    with pytest.raises(ModelFileError) as info:
        embed(image_dataset(), tmp_path / "cache", model_file=path)
    assert str(path) in str(info.value)
    assert info.value.path == path
    assert not (tmp_path / "PWNED").exists()  # nothing in the file was unpickled
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (WrongBatch(), "for a batch of"),
        (ProducesNaN(), "NaN"),
        (Raises(), "failed on an input batch"),
    ],
    ids=["wrong-batch", "nan", "raises"],
)
def test_misbehaving_torchscript_module_is_refused(tmp_path, module, message):
    path = script(module, tmp_path / "bad.pt")
    with pytest.raises(ModelFileError, match=message) as info:
        embed(image_dataset(), tmp_path / "cache", model_file=path)
    assert str(path) in str(info.value)


# --- last-layer gradients and re-embedding other data --------------------------------------------


def test_gradient_sq_matches_the_recorded_loss():
    dataset = image_dataset()
    result = embed(dataset, epochs=3)
    assert result.gradient_sq.shape == (dataset.n_samples, 3)
    assert result.gradient_sq.dtype == np.float32
    assert np.all(result.gradient_sq >= 0)
    # ||p - y||^2 >= (1 - p_y)^2 = (1 - exp(-loss))^2 and ||h||^2 + 1 >= 1.
    bound = np.square(1 - np.exp(-result.loss.astype(np.float64)))
    assert np.all(result.gradient_sq >= bound * (1 - 1e-4) - 1e-7)


@pytest.mark.parametrize("make", [image_dataset, table_dataset], ids=["image", "table"])
def test_embed_with_reproduces_the_trained_model(make, tmp_path):
    from poisonguard.embed import embed_with

    dataset = make()
    fresh = embed(dataset, tmp_path, epochs=2)
    cached = embed(dataset, tmp_path, epochs=2)
    assert cached.from_cache
    for result in (fresh, cached):
        features, probabilities = embed_with(result, dataset.x[:17])
        np.testing.assert_allclose(features, fresh.features[:17], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(probabilities, fresh.probabilities[:17], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("make", [image_dataset, table_dataset], ids=["image", "table"])
def test_the_decisions_model_calls_read_what_the_trained_model_reads(make):
    # the decision's copies of the model (batch norms folded, channels-last layout: faster on
    # a CPU) must be the same function as the trained model, to float rounding
    from poisonguard.embed.inference import (
        class_reader,
        differentiable_features,
        differentiable_logits,
    )

    dataset = make()
    result = embed(dataset, epochs=3)
    samples = dataset.x.astype(np.float32)
    np.testing.assert_array_equal(class_reader(result)(dataset.x), result.probabilities.argmax(1))
    with torch.no_grad():
        logits = differentiable_logits(result)(torch.from_numpy(samples))
        features = differentiable_features(result)(torch.from_numpy(samples))
    np.testing.assert_allclose(
        torch.softmax(logits, dim=1).numpy(), result.probabilities, rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(features.numpy(), result.features, rtol=1e-4, atol=1e-5)
    # and gradients still reach the input (the warp search fits a warp of it by them)
    if dataset.kind == "image":
        from poisonguard.embed.inference import _decision_layout, trained_model

        model, _ = trained_model(result)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in _decision_layout(model).modules())
        image = torch.from_numpy(samples[:4]).requires_grad_(True)
        differentiable_logits(result)(image).sum().backward()
        assert image.grad is not None and float(image.grad.abs().sum()) > 0


@pytest.mark.parametrize("shape", [(3, 4, 8, 8), (2, 5, 7, 9), (1, 1, 2, 3), (4, 16, 28, 28)])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels-last"])
def test_the_pairwise_maximum_pools_as_torch_does_bit_for_bit(shape, channels_last):
    from poisonguard.embed.inference import _ReluMaxPool

    generator = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(shape, generator=generator)
    # ties, whole windows below zero, exact zeros, infinities and NaN
    x[..., ::3, :] = torch.round(x[..., ::3, :]) + 0.0  # ties (no negative zeros: see the layer)
    x[0, 0] = -torch.rand(shape[-2:], generator=generator) - 0.5
    x.view(-1)[::17] = 0.0
    x.view(-1)[5::41] = float("inf")
    x.view(-1)[7::43] = float("-inf")
    x.view(-1)[11::53] = float("nan")
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    expected = nn.MaxPool2d(2)(torch.relu(x))
    pooled = _ReluMaxPool()(x)
    assert pooled.shape == expected.shape
    assert torch.equal(pooled.isnan(), expected.isnan())
    assert torch.equal(
        pooled.nan_to_num(0.0).view(torch.int32), expected.nan_to_num(0.0).view(torch.int32)
    )
    # with a gradient asked, torch's pooling routes it (to the first maximum of a window)
    finite = torch.nan_to_num(x, nan=0.0, posinf=3.0, neginf=-3.0)
    ours, theirs = finite.clone().requires_grad_(True), finite.clone().requires_grad_(True)
    weights = torch.randn(expected.shape, generator=generator)
    (_ReluMaxPool()(ours) * weights).sum().backward()
    (nn.MaxPool2d(2)(torch.relu(theirs)) * weights).sum().backward()
    assert torch.equal(ours.grad, theirs.grad)


def test_the_inference_layout_gives_the_trained_models_features_bit_for_bit():
    from poisonguard.embed.inference import _inference_layout, _ReluMaxPool, trained_model
    from poisonguard.embed.training import run_inference

    dataset = image_dataset()
    result = embed(dataset, epochs=2)
    model, scaler = trained_model(result)
    pools = sum(isinstance(m, nn.MaxPool2d) for m in model.modules())
    fast, _ = trained_model(result)
    fast = _inference_layout(fast)
    assert pools >= 1 and sum(isinstance(m, _ReluMaxPool) for m in fast.modules()) == pools
    assert not any(isinstance(m, nn.MaxPool2d) for m in fast.modules())
    threads = torch.get_num_threads()
    try:
        for count in sorted({1, threads}):
            torch.set_num_threads(count)  # a convolution's rounding depends on its threads
            features, probabilities = run_inference(model, dataset.x, scaler, progress=False)
            again, probabilities_again = run_inference(fast, dataset.x, scaler, progress=False)
            assert np.array_equal(again.view(np.uint32), features.view(np.uint32))
            assert np.array_equal(
                probabilities_again.view(np.uint32), probabilities.view(np.uint32)
            )
    finally:
        torch.set_num_threads(threads)


def test_embed_with_a_user_extractor_and_bad_shapes(tmp_path):
    from poisonguard.embed import embed_with

    dataset = image_dataset()
    model_file = script(PoolingExtractor(), tmp_path / "extractor.pt")
    result = embed(dataset, model_file=model_file, epochs=2)
    features, probabilities = embed_with(result, dataset.x[:9], model_file=model_file)
    np.testing.assert_allclose(features, result.features[:9], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probabilities, result.probabilities[:9], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="model_file"):
        embed_with(result, dataset.x[:9])
    with pytest.raises(ValueError, match="input shape"):
        embed_with(result, dataset.x[:9, :, :4])


def test_torchscript_extractor_out_of_core_keeps_its_features_in_the_cache(tmp_path):
    from poisonguard.ondisk import BLOCK_ROWS, ArrayFile

    dataset = image_dataset()
    model_file = script(PoolingExtractor(), tmp_path / "extractor.pt")
    in_memory = embed(dataset, tmp_path / "cache", model_file=model_file, epochs=3)
    settings = EmbedSettings(epochs=3, model_file=model_file)
    on_disk = embed_dataset(
        dataset, settings, cache_dir=tmp_path / "other", chunk_rows=BLOCK_ROWS, progress=False
    )
    assert isinstance(on_disk.features, ArrayFile) and on_disk.features.path == on_disk.cache_path
    assert np.array_equal(on_disk.features[0 : dataset.n_samples], in_memory.features)
    assert np.array_equal(on_disk.probabilities, in_memory.probabilities)
