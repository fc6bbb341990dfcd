"""Embedding a dataset: training the model on it and computing every sample's features.

:func:`embed_dataset` is the embedding stage of a scan. By default a small model suited to the
data (:class:`~poisonguard.embed.models.SmallCNN` for images,
:class:`~poisonguard.embed.models.SmallMLP` for tables,
:class:`~poisonguard.embed.models.TextBagModel` for texts, over token ids from a vocabulary built
from the texts: :mod:`poisonguard.embed.text_tokens`) is trained on the audited data itself with
a fixed recipe and seed: a backdoor lives in what that model learns. With ``model_file`` a user's
TorchScript extractor supplies the features instead, and a linear head trained on them supplies
probabilities and training dynamics. Inference runs in chunks
(:mod:`poisonguard.embed.inference`); out of core, its results go to the cache file chunk by chunk
(:mod:`poisonguard.embed.cache`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from poisonguard import __version__
from poisonguard.dataset import Dataset
from poisonguard.embed.cache import (
    append_rows,
    default_cache_dir,
    finish_streamed,
    load_cached,
    records_in_file,
    store_cached,
    streamed_cache_file,
)
from poisonguard.embed.inference import INFERENCE_CHUNK_ROWS, infer_in_chunks
from poisonguard.embed.inputs import InputScaler
from poisonguard.embed.models import LinearHead, SmallCNN, SmallMLP, TextBagModel
from poisonguard.embed.text_tokens import TokenIds, Tokenizer, TokenizerSettings
from poisonguard.embed.torchscript import load_feature_extractor
from poisonguard.embed.training import (
    TrainingRecipe,
    choose_epochs,
    run_inference,
    train_with_dynamics,
)
from poisonguard.errors import DatasetError, OutputError
from poisonguard.fingerprint import file_sha256, fingerprint_arrays
from poisonguard.machine import available_cores, torch_threads
from poisonguard.ondisk import ArrayFile, Staging
from poisonguard.results import Embedding
from poisonguard.tasks import LocalTasks, TaskRunner

__all__ = ["EmbedSettings", "embed_dataset", "TEXT_TOKENIZER"]

logger = logging.getLogger(__name__)

TEXT_TOKENIZER = TokenizerSettings()
"""How a text dataset's texts become token ids (recorded in the model description, so part of
the embedding's fingerprint)."""


@dataclass(frozen=True)
class EmbedSettings:
    """How to embed a dataset.

    Parameters
    ----------
    seed : int
        Seeds weight initialisation and batch order; the same seed gives the same embedding.
    epochs : int or None
        Training epochs; ``None`` lets :func:`~poisonguard.embed.training.choose_epochs` decide
        from the dataset size.
    batch_size : int
    model_file : Path or None
        A TorchScript feature extractor to use instead of training a model.
    """

    seed: int = 0
    epochs: int | None = None
    batch_size: int = 128
    model_file: Path | None = None


def embed_dataset(
    dataset: Dataset,
    settings: EmbedSettings,
    *,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    progress: bool = True,
    runner: TaskRunner | None = None,
    chunk_rows: int | None = None,
    staging: Staging | None = None,
) -> Embedding:
    """Embed every sample of ``dataset``: features, probabilities and training dynamics.

    Reads the cache when ``use_cache`` and a matching entry exists; otherwise computes and
    stores the result (a cache that cannot be written is reported and skipped). Training runs
    here; inference runs as chunk tasks on ``runner`` (default: a pool of one thread per core).

    With ``chunk_rows`` (the out-of-core path) the features and probabilities are written to
    the cache file chunk by chunk as inference produces them and stay there, with the training
    records: the embedding's per-sample arrays are :class:`~poisonguard.ondisk.ArrayFile`
    objects read ``chunk_rows`` rows at a time. It needs the cache (``use_cache``); a cache that
    cannot be written is then an error. With ``staging`` too, training keeps one epoch of its
    per-sample records in memory and the others in staging files.
    """
    if chunk_rows is not None and not use_cache:
        raise ValueError(
            "out-of-core scans (chunk_rows) keep the features in the embedding cache; "
            "they cannot run without it"
        )
    threads = torch_threads()
    torch.set_num_threads(threads)
    model_file = None if settings.model_file is None else Path(settings.model_file)
    if model_file is not None and dataset.kind == "text":
        raise DatasetError(
            dataset.path,
            "is a text dataset: a TorchScript extractor (--model) takes image or table samples; "
            "leave --model out to train the default text model",
        )
    extractor = load_feature_extractor(model_file) if model_file is not None else None
    recipe = _recipe(dataset, settings, extractor is not None)
    description = _model_description(dataset, recipe, model_file, threads)
    fingerprint = fingerprint_arrays(
        dataset.x,
        dataset.labels,
        {**{k: v for k, v in description.items() if k != "file"}, "version": __version__},
    )
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()

    if use_cache:
        cached = load_cached(cache_dir, fingerprint, dataset.n_samples, chunk_rows=chunk_rows)
        if cached is not None:
            cached.model = description  # the same but for where the model file lies now
            logger.info("reusing cached embedding %s", cached.cache_path)
            return cached

    runner = runner or LocalTasks(available_cores())
    seconds: dict[str, float] = {}
    if extractor is not None:
        start = time.perf_counter()
        features, _ = infer_in_chunks(runner, dataset.x, model_file=model_file, progress=progress)
        seconds["inference"] = time.perf_counter() - start
        start = time.perf_counter()
        torch.manual_seed(settings.seed)  # weight initialisation
        head = LinearHead(features.shape[1], dataset.n_classes)
        scaler = InputScaler.standardizing(features)
        dynamics = train_with_dynamics(
            head,
            features,
            dataset.labels,
            scaler,
            recipe,
            progress=progress,
            description="Training linear head",
        )
        seconds["train"] = time.perf_counter() - start
        _, probabilities = run_inference(head, features, scaler, progress=progress)
        weights = _weights(head, scaler)
    else:
        start = time.perf_counter()
        x, scaler, tokenizer = _model_inputs(dataset)
        torch.manual_seed(settings.seed)  # weight initialisation
        model = _build_model(dataset, tokenizer)
        dynamics = train_with_dynamics(
            model,
            x,
            dataset.labels,
            scaler,
            recipe,
            progress=progress,
            description=f"Training {type(model).__name__}",
            staging=staging if chunk_rows is not None else None,
            fused=tokenizer is not None,  # see _model_description
        )
        seconds["train"] = time.perf_counter() - start
        weights = _weights(model, scaler)
        if tokenizer is not None:  # texts are encoded with the vocabulary the model learned
            weights.update(tokenizer.as_weights())
        if chunk_rows is not None:
            return _embed_out_of_core(
                dataset,
                x,
                runner,
                weights,
                dynamics,
                description=description,
                fingerprint=fingerprint,
                cache_dir=cache_dir,
                chunk_rows=chunk_rows,
                seconds=seconds,
                progress=progress,
            )
        start = time.perf_counter()
        features, probabilities = infer_in_chunks(
            runner, x, weights=weights, n_classes=dataset.n_classes, progress=progress
        )
        seconds["inference"] = time.perf_counter() - start

    embedding = _assembled(
        dataset, features, probabilities, dynamics, description, fingerprint, weights, seconds
    )
    if chunk_rows is not None:  # a user's extractor: its head trained on features in memory
        try:
            embedding.cache_path = store_cached(cache_dir, embedding)
        except OSError as exc:
            raise OutputError(f"cannot write the embedding cache in {cache_dir}: {exc}") from exc
        _records_in_file(embedding, chunk_rows)
    elif use_cache:
        try:
            embedding.cache_path = store_cached(cache_dir, embedding)
        except OSError as exc:
            logger.warning("could not write the embedding cache in %s (%s)", cache_dir, exc)
    return embedding


def _assembled(
    dataset: Dataset,
    features: np.ndarray | ArrayFile,
    probabilities: np.ndarray,
    dynamics,
    description: dict[str, Any],
    fingerprint: str,
    weights: dict[str, np.ndarray],
    seconds: dict[str, float],
    train_accuracy: float | None = None,
) -> Embedding:
    if train_accuracy is None:
        train_accuracy = float(np.mean(probabilities.argmax(axis=1) == dataset.labels))
    return Embedding(
        features=features,
        probabilities=probabilities,
        loss=dynamics.loss,
        margin=dynamics.margin,
        gradient_sq=dynamics.gradient_sq,
        model=description,
        input_shape=tuple(int(s) for s in dataset.x.shape[1:]),
        train_accuracy=train_accuracy,
        fingerprint=fingerprint,
        weights=weights,
        stage_seconds=seconds,
    )


def _embed_out_of_core(
    dataset: Dataset,
    x: np.ndarray,
    runner: TaskRunner,
    weights: dict[str, np.ndarray],
    dynamics,
    *,
    description: dict[str, Any],
    fingerprint: str,
    cache_dir: Path,
    chunk_rows: int,
    seconds: dict[str, float],
    progress: bool,
) -> Embedding:
    """Inference of a trained model on its inputs ``x`` (the samples, or a text dataset's token
    ids) whose features and probabilities go to the cache file chunk by chunk."""
    start = time.perf_counter()
    n = dataset.n_samples
    correct = 0
    try:
        with streamed_cache_file(cache_dir, fingerprint) as (path, handle):

            def keep(rows: slice, features: np.ndarray, chunk_probabilities) -> None:
                nonlocal correct
                append_rows(handle, n, rows, features)
                append_rows(handle, n, rows, chunk_probabilities, name="probabilities")
                given = dataset.labels[rows]
                correct += int(np.count_nonzero(chunk_probabilities.argmax(axis=1) == given))

            infer_in_chunks(
                runner,
                x,
                weights=weights,
                n_classes=dataset.n_classes,
                progress=progress,
                sink=keep,
            )
            seconds["inference"] = time.perf_counter() - start
            embedding = _assembled(
                dataset,
                ArrayFile(path, "features", chunk_rows),
                ArrayFile(path, "probabilities", chunk_rows),  # read once the file is complete
                dynamics,
                description,
                fingerprint,
                weights,
                seconds,
                train_accuracy=correct / n if n else float("nan"),
            )
            embedding.cache_path = path
            finish_streamed(handle, embedding)
    except OSError as exc:
        raise OutputError(f"cannot write the embedding cache in {cache_dir}: {exc}") from exc
    return _records_in_file(embedding, chunk_rows)


def _records_in_file(embedding: Embedding, chunk_rows: int) -> Embedding:
    """Swap the embedding's per-sample arrays for the copies in its cache file, as a cached
    out-of-core embedding holds them (:func:`~poisonguard.embed.cache.records_in_file`)."""
    for name, array in records_in_file(embedding.cache_path, chunk_rows).items():
        setattr(embedding, name, array)
    return embedding


def _weights(model: torch.nn.Module, scaler: InputScaler | TokenIds) -> dict[str, np.ndarray]:
    state = {name: value.detach().numpy().copy() for name, value in model.state_dict().items()}
    if isinstance(scaler, InputScaler):  # token ids need no scaling
        state["scaler.mean"] = np.asarray(scaler.mean)
        state["scaler.std"] = np.asarray(scaler.std)
    return state


def _model_inputs(
    dataset: Dataset,
) -> tuple[np.ndarray, InputScaler | TokenIds, Tokenizer | None]:
    """What the trained model reads: the samples and their standardization, or for texts the
    rows of token ids (:mod:`poisonguard.embed.text_tokens`), :class:`TokenIds` and the
    tokenizer, whose vocabulary joins the model's weights."""
    if dataset.kind != "text":
        return dataset.x, InputScaler.standardizing(dataset.x), None
    tokenizer = Tokenizer.fit(dataset.x, TEXT_TOKENIZER)
    logger.info(
        "text vocabulary: %d tokens in at least %d texts",
        len(tokenizer.tokens),
        TEXT_TOKENIZER.min_texts,
    )
    return tokenizer.encode(dataset.x), TokenIds(), tokenizer


def _recipe(dataset: Dataset, settings: EmbedSettings, head_only: bool) -> TrainingRecipe:
    epochs = settings.epochs or choose_epochs(dataset.n_samples, settings.batch_size)
    return TrainingRecipe(
        epochs=epochs,
        batch_size=settings.batch_size,
        max_learning_rate=1e-2 if head_only else 3e-3,
        seed=settings.seed,
    )


def _build_model(dataset: Dataset, tokenizer: Tokenizer | None) -> torch.nn.Module:
    if tokenizer is not None:
        return TextBagModel(tokenizer.vocabulary_size, dataset.n_classes)
    if dataset.kind == "image":
        _, channels, height, width = dataset.x.shape
        return SmallCNN(channels, dataset.n_classes, (height, width))
    return SmallMLP(dataset.x.shape[1], dataset.n_classes)


def _model_description(
    dataset: Dataset, recipe: TrainingRecipe, model_file: Path | None, threads: int
) -> dict[str, Any]:
    """JSON-able description of the model; it is part of the fingerprint.

    ``inference`` names how features are computed (chunks of rows, one thread each, see
    :mod:`poisonguard.tasks`): embeddings cached before it was so, by threads that change the
    last bits, get another fingerprint and are not reused. ``training`` names the torch
    threads training ran on (see :func:`~poisonguard.machine.torch_threads`), which change the
    trained model.
    """
    inference = {"chunk_rows": INFERENCE_CHUNK_ROWS, "threads_per_task": 1}
    training = {"torch_threads": int(threads)}
    if model_file is not None:
        return {
            "source": "torchscript",
            "file": str(model_file),
            "file_sha256": file_sha256(model_file),
            "head": "LinearHead",
            "recipe": recipe.as_dict(),
            "training": training,
            "inference": inference,
        }
    if dataset.kind == "text":
        return {
            "source": "trained",
            "architecture": "TextBagModel",
            "recipe": recipe.as_dict(),
            "tokenizer": TEXT_TOKENIZER.as_dict(),
            "optimizer": "Adam, torch's fused kernel (the word table is large)",
            "training": training,
            "inference": inference,
        }
    architecture = "SmallCNN" if dataset.kind == "image" else "SmallMLP"
    return {
        "source": "trained",
        "architecture": architecture,
        "recipe": recipe.as_dict(),
        "input_scaling": "per-channel standardization"
        if dataset.kind == "image"
        else "per-column standardization",
        "training": training,
        "inference": inference,
    }
