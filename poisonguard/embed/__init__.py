"""Embedding: the only place PoisonGuard trains or runs torch models.

By default a small model suited to the data (:class:`~poisonguard.embed.models.SmallCNN` for
images, :class:`~poisonguard.embed.models.SmallMLP` for tables) is trained on the audited data
itself with a fixed recipe and seed: a backdoor lives in what that model learns. With
``model_file`` a user's TorchScript extractor supplies the features instead, and a linear head
trained on them supplies probabilities and training dynamics.

Results are cached by fingerprint (see :mod:`poisonguard.embed.cache`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

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
from poisonguard.embed.inputs import InputScaler
from poisonguard.embed.models import LinearHead, SmallCNN, SmallMLP
from poisonguard.embed.torchscript import extract_features, load_feature_extractor
from poisonguard.embed.training import (
    TrainingRecipe,
    choose_epochs,
    run_inference,
    train_with_dynamics,
)
from poisonguard.errors import OutputError, PoisonGuardError
from poisonguard.fingerprint import file_sha256, fingerprint_arrays
from poisonguard.ondisk import ArrayFile, Staging
from poisonguard.results import Embedding
from poisonguard.tasks import LocalTasks, TaskRunner

__all__ = [
    "EmbedSettings",
    "embed_dataset",
    "embed_with",
    "adversarial_perturbation",
    "trained_model",
    "model_from_weights",
    "infer_in_chunks",
    "default_cache_dir",
    "available_cores",
    "torch_threads",
    "TORCH_THREADS_ENV",
]

logger = logging.getLogger(__name__)


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


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


TORCH_THREADS_ENV = "POISONGUARD_TORCH_THREADS"
"""Environment variable that fixes the torch thread count of training (default: one per core)."""


def torch_threads() -> int:
    """Torch threads for training (and for :func:`embed_with` and
    :func:`adversarial_perturbation`): ``$POISONGUARD_TORCH_THREADS`` when set, else one per core.

    The thread count changes how sums are split, so the trained model's last bits, which training
    amplifies (measured on sample_data/digits/clean: features differ by up to 0.17 between one and
    two threads). It is part of the embedding's fingerprint and of report.json's ``execution``:
    two machines give the same ``scores.csv`` for the same data and seed when it is the same.
    Raises :class:`~poisonguard.errors.PoisonGuardError` for a value that is not a positive
    integer.
    """
    value = os.environ.get(TORCH_THREADS_ENV, "").strip()
    if not value:
        return available_cores()
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        raise PoisonGuardError(
            f"{TORCH_THREADS_ENV} must be a positive whole number of threads, got {value!r}"
        )
    return threads


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
        torch.manual_seed(settings.seed)  # weight initialisation
        model = _build_model(dataset)
        scaler = InputScaler.standardizing(dataset.x)
        dynamics = train_with_dynamics(
            model,
            dataset.x,
            dataset.labels,
            scaler,
            recipe,
            progress=progress,
            description=f"Training {type(model).__name__}",
            staging=staging if chunk_rows is not None else None,
        )
        seconds["train"] = time.perf_counter() - start
        weights = _weights(model, scaler)
        if chunk_rows is not None:
            return _embed_out_of_core(
                dataset,
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
            runner, dataset.x, weights=weights, n_classes=dataset.n_classes, progress=progress
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
    """Inference of a trained model whose features and probabilities go to the cache file chunk
    by chunk."""
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
                dataset.x,
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


def trained_model(embedding: Embedding) -> tuple[torch.nn.Module, InputScaler]:
    """The model ``embedding``'s run trained (SmallCNN or SmallMLP), rebuilt from its cached
    weights in evaluation mode with its parameters frozen, and its input scaling.

    Raises ``ValueError`` for an embedding of a user's TorchScript extractor (only its linear
    head was trained) or one without weights.
    """
    if embedding.model.get("source") == "torchscript":
        raise ValueError(
            "this needs a model PoisonGuard trained itself; the embedding used a TorchScript "
            "feature extractor"
        )
    if not embedding.weights:
        raise ValueError("the embedding carries no trained weights")
    return model_from_weights(
        embedding.weights, embedding.input_shape, int(embedding.probabilities.shape[1])
    )


def model_from_weights(
    weights: dict[str, np.ndarray], input_shape: tuple[int, ...], n_classes: int
) -> tuple[torch.nn.Module, InputScaler]:
    """A SmallCNN (``(C, H, W)`` inputs) or SmallMLP (``(D,)`` inputs) with ``weights`` (as
    :attr:`~poisonguard.results.Embedding.weights` holds them), frozen, and its input scaling."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) not in (1, 3):
        raise ValueError(f"trained models take (C, H, W) images or (D,) rows, not {shape}")
    weights = dict(weights)
    scaler = InputScaler(weights.pop("scaler.mean"), weights.pop("scaler.std"))
    if len(shape) == 3:
        model: torch.nn.Module = SmallCNN(shape[0], n_classes, (shape[1], shape[2]))
    else:
        model = SmallMLP(shape[0], n_classes)
    model.load_state_dict({name: torch.as_tensor(np.asarray(v)) for name, v in weights.items()})
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model, scaler


INFERENCE_CHUNK_ROWS = 8192
"""Rows per inference task; a multiple of the inference batch sizes (512 for trained models,
256 for TorchScript extractors), so that every sample sees the same batches wherever its chunk
runs."""


@dataclass(frozen=True)
class InferenceTask:
    """One chunk of the embedding inference: the model (trained weights, or the path of a
    TorchScript extractor) and the chunk's samples.

    ``x`` holds the chunk, or, when ``rows`` is given, the whole dataset whose ``rows`` are the
    chunk (for tasks that run in this process: no copy).
    """

    x: np.ndarray
    rows: slice | None
    weights: dict[str, np.ndarray] | None = None
    input_shape: tuple[int, ...] = ()
    n_classes: int = 0
    model_file: Path | None = None


def infer_chunk(task: InferenceTask) -> tuple[np.ndarray, np.ndarray | None]:
    """Features and probabilities of one chunk (probabilities None for a TorchScript
    extractor, whose head is trained afterwards on all features)."""
    x = task.x if task.rows is None else task.x[task.rows]
    if task.model_file is not None:
        extractor = load_feature_extractor(task.model_file)
        return extract_features(extractor, x, path=task.model_file, progress=False), None
    model, scaler = model_from_weights(task.weights, task.input_shape, task.n_classes)
    return run_inference(model, x, scaler, progress=False)


def infer_in_chunks(
    runner: TaskRunner,
    x: np.ndarray,
    *,
    weights: dict[str, np.ndarray] | None = None,
    n_classes: int = 0,
    model_file: Path | None = None,
    chunk_rows: int | None = None,
    progress: bool = False,
    sink: Callable[[slice, np.ndarray, np.ndarray | None], None] | None = None,
) -> tuple[np.ndarray, np.ndarray | None] | None:
    """Embed ``x`` chunk by chunk as tasks on ``runner``: with a trained model's ``weights``,
    its features and probabilities; with a TorchScript ``model_file``, the extractor's features
    (and None). Each chunk is ``chunk_rows`` rows (default :data:`INFERENCE_CHUNK_ROWS`; keep it
    a multiple of 512); the result does not depend on the runner (see :mod:`poisonguard.tasks`).

    With ``sink``, each chunk's ``(rows, features, probabilities)`` is handed to it in order as
    soon as its group of tasks is done, and nothing is returned: memory holds a few chunks, not
    all of them (the out-of-core path).
    """
    chunk_rows = chunk_rows or INFERENCE_CHUNK_ROWS
    chunks = [
        slice(start, min(start + chunk_rows, x.shape[0]))
        for start in range(0, x.shape[0], chunk_rows)
    ]
    window = len(chunks) if sink is None else max(1, 2 * runner.parallelism)
    kept = []
    bar = tqdm(total=len(chunks), desc="Embedding", unit="chunk", disable=not progress, leave=False)
    with bar:
        for first in range(0, len(chunks), window):
            group = chunks[first : first + window]
            tasks = [
                InferenceTask(
                    *((x, rows) if runner.shares_memory else (np.ascontiguousarray(x[rows]), None)),
                    weights=weights,
                    input_shape=tuple(int(s) for s in x.shape[1:]),
                    n_classes=n_classes,
                    model_file=model_file,
                )
                for rows in group
            ]
            results = runner.map(infer_chunk, tasks)
            bar.update(len(group))
            if sink is None:
                kept.extend(results)
                continue
            for rows, (features, probabilities) in zip(group, results, strict=True):
                sink(rows, features, probabilities)
    if sink is not None:
        return None
    features = np.concatenate([features for features, _ in kept])
    if model_file is not None:
        return features, None
    return features, np.concatenate([probabilities for _, probabilities in kept])


def embed_with(
    embedding: Embedding,
    x: np.ndarray,
    *,
    model_file: str | Path | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Features and probabilities of other samples ``x`` under ``embedding``'s trained model.

    Used to place a trusted clean set in the same representation as the audited data. ``x``
    must have the audited data's sample shape; with a user's extractor, ``model_file`` is that
    extractor. Raises ``ValueError`` when the shapes do not match or the weights are missing.
    """
    if not embedding.weights:
        raise ValueError("the embedding carries no trained weights")
    if tuple(x.shape[1:]) != tuple(embedding.input_shape):
        raise ValueError(
            f"samples of shape {tuple(x.shape[1:])} do not match the model's input shape "
            f"{tuple(embedding.input_shape)}"
        )
    torch.set_num_threads(torch_threads())
    n_classes = embedding.probabilities.shape[1]
    weights = dict(embedding.weights)
    scaler = InputScaler(weights.pop("scaler.mean"), weights.pop("scaler.std"))
    if embedding.model.get("source") == "torchscript":
        if model_file is None:
            raise ValueError("this embedding used a TorchScript extractor: pass model_file")
        extractor = load_feature_extractor(Path(model_file))
        inputs = extract_features(extractor, x, path=model_file, progress=progress)
        model: torch.nn.Module = LinearHead(inputs.shape[1], n_classes)
        model.load_state_dict({name: torch.as_tensor(np.asarray(v)) for name, v in weights.items()})
    else:
        inputs = x
        model, scaler = trained_model(embedding)
    features, probabilities = run_inference(model, inputs, scaler, progress=progress)
    if embedding.model.get("source") == "torchscript":
        features = inputs  # the head's own "features" are the standardized extractor outputs
    return features, probabilities


def _weights(model: torch.nn.Module, scaler: InputScaler) -> dict[str, np.ndarray]:
    state = {name: value.detach().numpy().copy() for name, value in model.state_dict().items()}
    state["scaler.mean"] = np.asarray(scaler.mean)
    state["scaler.std"] = np.asarray(scaler.std)
    return state


def _recipe(dataset: Dataset, settings: EmbedSettings, head_only: bool) -> TrainingRecipe:
    epochs = settings.epochs or choose_epochs(dataset.n_samples, settings.batch_size)
    return TrainingRecipe(
        epochs=epochs,
        batch_size=settings.batch_size,
        max_learning_rate=1e-2 if head_only else 3e-3,
        seed=settings.seed,
    )


def _build_model(dataset: Dataset) -> torch.nn.Module:
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
    threads training ran on (see :func:`torch_threads`), which change the trained model.
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


def adversarial_perturbation(
    embedding: Embedding,
    x: np.ndarray,
    labels: np.ndarray,
    *,
    epsilon: float,
    steps: int = 10,
    batch_size: int = 256,
) -> np.ndarray:
    """Projected-gradient (PGD, L-infinity) perturbations that make ``x`` harder to classify.

    Madry et al., ICLR 2018, as used by Turner, Tsipras & Madry (2019) for clean-label backdoors:
    each image moves by at most ``epsilon`` (in the data's own value units) per pixel, in
    ``steps`` signed-gradient steps of ``2.5 * epsilon / steps`` that raise the trained model's
    loss on the true label, so that the model has to lean on the trigger to fit them. The model is
    the one ``embedding`` trained (its cached weights); only trained models, not TorchScript
    extractors, are supported. Returns float64 images in the range ``[0, x.max()]``.
    """
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(embedding.input_shape):
        raise ValueError(f"images of shape {x.shape[1:]} do not match {embedding.input_shape}")
    if not epsilon > 0 or steps < 1:
        raise ValueError(f"epsilon must be > 0 and steps >= 1, got {epsilon} and {steps}")
    model, scaler = trained_model(embedding)
    torch.set_num_threads(torch_threads())
    mean = torch.as_tensor(np.asarray(scaler.mean, dtype=np.float32))
    std = torch.as_tensor(np.asarray(scaler.std, dtype=np.float32))
    top = float(max(1.0, np.max(x))) if x.dtype != np.uint8 else 255.0
    step = 2.5 * epsilon / steps
    result = np.empty(x.shape, dtype=np.float64)
    targets = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    for start in range(0, x.shape[0], batch_size):
        part = slice(start, start + batch_size)
        original = torch.as_tensor(x[part].astype(np.float32))
        adversarial = original.clone()
        for _ in range(steps):
            adversarial.requires_grad_(True)
            logits = model.head(model.features((adversarial - mean) / std))
            loss = torch.nn.functional.cross_entropy(logits, targets[part])
            (gradient,) = torch.autograd.grad(loss, adversarial)
            with torch.no_grad():
                adversarial = adversarial + step * gradient.sign()
                adversarial = torch.minimum(
                    torch.maximum(adversarial, original - epsilon), original + epsilon
                ).clamp(0.0, top)
        result[part] = adversarial.detach().numpy()
    return result
