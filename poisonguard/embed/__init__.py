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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from poisonguard import __version__
from poisonguard.dataset import Dataset
from poisonguard.embed.cache import default_cache_dir, load_cached, store_cached
from poisonguard.embed.inputs import InputScaler
from poisonguard.embed.models import LinearHead, SmallCNN, SmallMLP
from poisonguard.embed.torchscript import extract_features, load_feature_extractor
from poisonguard.embed.training import (
    TrainingRecipe,
    choose_epochs,
    run_inference,
    train_with_dynamics,
)
from poisonguard.fingerprint import file_sha256, fingerprint_arrays
from poisonguard.results import Embedding

__all__ = [
    "EmbedSettings",
    "embed_dataset",
    "embed_with",
    "adversarial_perturbation",
    "trained_model",
    "default_cache_dir",
    "available_cores",
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


def embed_dataset(
    dataset: Dataset,
    settings: EmbedSettings,
    *,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    progress: bool = True,
) -> Embedding:
    """Embed every sample of ``dataset``: features, probabilities and training dynamics.

    Reads the cache when ``use_cache`` and a matching entry exists; otherwise computes and
    stores the result (a cache that cannot be written is reported and skipped).
    """
    torch.set_num_threads(available_cores())
    model_file = None if settings.model_file is None else Path(settings.model_file)
    extractor = load_feature_extractor(model_file) if model_file is not None else None
    recipe = _recipe(dataset, settings, extractor is not None)
    description = _model_description(dataset, recipe, model_file)
    fingerprint = fingerprint_arrays(
        dataset.x,
        dataset.labels,
        {**{k: v for k, v in description.items() if k != "file"}, "version": __version__},
    )
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()

    if use_cache:
        cached = load_cached(cache_dir, fingerprint, dataset.n_samples)
        if cached is not None:
            cached.model = description  # the same but for where the model file lies now
            logger.info("reusing cached embedding %s", cached.cache_path)
            return cached

    seconds: dict[str, float] = {}
    if extractor is not None:
        start = time.perf_counter()
        features = extract_features(extractor, dataset.x, path=model_file, progress=progress)
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
        )
        seconds["train"] = time.perf_counter() - start
        start = time.perf_counter()
        features, probabilities = run_inference(model, dataset.x, scaler, progress=progress)
        seconds["inference"] = time.perf_counter() - start
        weights = _weights(model, scaler)

    accuracy = float(np.mean(probabilities.argmax(axis=1) == dataset.labels))
    embedding = Embedding(
        features=features,
        probabilities=probabilities,
        loss=dynamics.loss,
        margin=dynamics.margin,
        gradient_sq=dynamics.gradient_sq,
        model=description,
        input_shape=tuple(int(s) for s in dataset.x.shape[1:]),
        train_accuracy=accuracy,
        fingerprint=fingerprint,
        weights=weights,
        stage_seconds=seconds,
    )
    if use_cache:
        try:
            embedding.cache_path = store_cached(cache_dir, embedding)
        except OSError as exc:
            logger.warning("could not write the embedding cache in %s (%s)", cache_dir, exc)
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
    shape = tuple(int(s) for s in embedding.input_shape)
    if len(shape) not in (1, 3):
        raise ValueError(f"trained models take (C, H, W) images or (D,) rows, not {shape}")
    n_classes = int(embedding.probabilities.shape[1])
    weights = dict(embedding.weights)
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
    torch.set_num_threads(available_cores())
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
    dataset: Dataset, recipe: TrainingRecipe, model_file: Path | None
) -> dict[str, Any]:
    """JSON-able description of the model; it is part of the fingerprint."""
    if model_file is not None:
        return {
            "source": "torchscript",
            "file": str(model_file),
            "file_sha256": file_sha256(model_file),
            "head": "LinearHead",
            "recipe": recipe.as_dict(),
        }
    architecture = "SmallCNN" if dataset.kind == "image" else "SmallMLP"
    return {
        "source": "trained",
        "architecture": architecture,
        "recipe": recipe.as_dict(),
        "input_scaling": "per-channel standardization"
        if dataset.kind == "image"
        else "per-column standardization",
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
    torch.set_num_threads(available_cores())
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
