"""Running a trained embedding model: rebuilding it from its weights and chunked inference.

A model PoisonGuard trained is stored as its weights
(:attr:`~poisonguard.results.Embedding.weights`) and rebuilt here (:func:`model_from_weights`).
Inference runs as chunk tasks on a :class:`~poisonguard.tasks.TaskRunner`
(:func:`infer_in_chunks`), so that its result does not depend on where each chunk ran;
:func:`embed_with` places other samples (a trusted clean set) in the same representation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.utils.fusion import fuse_conv_bn_eval
from tqdm.auto import tqdm

from poisonguard.embed.inputs import InputScaler
from poisonguard.embed.models import LinearHead, SmallCNN, SmallMLP, TextBagModel
from poisonguard.embed.text_tokens import VOCABULARY_KEY, TokenIds, Tokenizer
from poisonguard.embed.torchscript import extract_features, load_feature_extractor
from poisonguard.embed.training import run_inference
from poisonguard.machine import torch_threads
from poisonguard.results import Embedding
from poisonguard.tasks import TaskRunner

__all__ = [
    "trained_model",
    "class_reader",
    "differentiable_features",
    "differentiable_logits",
    "model_from_weights",
    "INFERENCE_CHUNK_ROWS",
    "InferenceTask",
    "infer_chunk",
    "infer_in_chunks",
    "embed_with",
]


def trained_model(embedding: Embedding) -> tuple[torch.nn.Module, InputScaler | TokenIds]:
    """The model ``embedding``'s run trained (SmallCNN, SmallMLP or TextBagModel), rebuilt from
    its cached weights in evaluation mode with its parameters frozen, and its input scaling.

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


def differentiable_logits(embedding: Embedding) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model ``embedding``'s run trained, with its input scaling, as one torch function of
    unscaled samples (``(N, C, H, W)`` images or ``(N, D)`` rows, float32) to logits, through
    which gradients reach the input (the warp search fits a warp of the input by them).

    Raises ``ValueError`` as :func:`trained_model` does, and for a text model (its input is
    token ids, which have no gradient)."""
    model, scaled = _scaled_model(embedding)

    def logits(samples: torch.Tensor) -> torch.Tensor:
        return model(scaled(samples))

    return logits


def differentiable_features(embedding: Embedding) -> Callable[[torch.Tensor], torch.Tensor]:
    """As :func:`differentiable_logits`, to the penultimate features the embedding holds
    (:attr:`~poisonguard.results.Embedding.features`) instead of the logits."""
    model, scaled = _scaled_model(embedding)

    def features(samples: torch.Tensor) -> torch.Tensor:
        return model.features(scaled(samples))

    return features


def class_reader(embedding: Embedding) -> Callable[[np.ndarray], np.ndarray]:
    """The classes that ``embedding``'s trained model reads in samples (images or table rows,
    the audited data's shape) as a function of them: the most probable class, as
    :func:`embed_with`'s probabilities give it, on the decision's faster copy of a CNN
    (:func:`_decision_layout`), built once instead of at every call (the decision's transplant
    test asks it some fifty times a scan). Raises ``ValueError`` as :func:`trained_model`
    does."""
    model, scaler = trained_model(embedding)
    model = _decision_layout(model)
    torch.set_num_threads(torch_threads())

    def read(x: np.ndarray) -> np.ndarray:
        return run_inference(model, x, scaler, progress=False)[1].argmax(axis=1)

    return read


class _ReluMaxPool(torch.nn.Module):
    """``MaxPool2d(2)`` of ``relu(x)``, the pair every SmallCNN block but the last ends with,
    computed without torch's pooling kernel where no gradient is asked: the maximum of the
    four strided quarters of the map (its even rows and columns, their odd neighbours), then
    the ReLU on a quarter of the values. The same values bit for bit: a maximum rounds
    nothing, the ReLU is monotone so it commutes with it, and NaN propagates through both.
    (One zero's sign aside: where a window's largest value is a negative zero, this may
    pool to -0 where torch's kernel gives +0; a batch norm's or a convolution's output is -0
    only where every term summed into it is, and -0 equals +0 in every sum and comparison
    after.)
    torch's kernel on NCHW maps takes most of a forward pass on CPU (a batch of 512
    28 x 28 images, one thread: 42 and 21 ms of 140, against 4 and 2 ms). With a
    gradient asked (the warp search fits a field through the model), torch's own pooling
    and ReLU, so the backward pass routes its gradient exactly as before."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad:
            return torch.nn.functional.max_pool2d(torch.relu(x), 2)
        height, width = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
        x = x[..., :height, :width]
        rows = torch.maximum(x[..., 0::2, :], x[..., 1::2, :])
        return torch.relu(torch.maximum(rows[..., 0::2], rows[..., 1::2]))


def _inference_layout(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` (frozen, in evaluation mode) with each SmallCNN block's ReLU and 2 x 2
    max-pooling computed as :class:`_ReluMaxPool` computes them: the same features and
    probabilities bit for bit, the embedding's inference about twice as fast (60,000
    Fashion-MNIST images, two threads: see docs/benchmarks.md). Other models unchanged."""
    if not isinstance(model, SmallCNN):
        return model
    layers = list(model.body)
    for position in range(len(layers) - 1):
        pool = layers[position + 1]
        if (
            isinstance(layers[position], torch.nn.ReLU)
            and isinstance(pool, torch.nn.MaxPool2d)
            and _pairs(pool.kernel_size) == (2, 2)
            and _pairs(pool.stride) == (2, 2)
            and _pairs(pool.padding) == (0, 0)
            and _pairs(pool.dilation) == (1, 1)
            and not pool.ceil_mode
            and not pool.return_indices
        ):
            layers[position], layers[position + 1] = torch.nn.Identity(), _ReluMaxPool()
    model.body = torch.nn.Sequential(*layers)
    return model


def _pairs(value: int | tuple[int, ...]) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, tuple) else (value, value)


def _decision_layout(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` (frozen, in evaluation mode) made faster to run for the decision's model calls
    (the warp search, the transplant test's readings): a CNN's batch norms folded into the
    convolutions before them (torch's ``fuse_conv_bn_eval``: in evaluation a batch norm is an
    affine map per channel) and its weights in channels-last layout, where a CPU runs
    convolution and max-pooling faster. 450 Fashion-MNIST images: a forward pass 46 -> 13 ms,
    the warp search 0.34 -> 0.19 s; the logits move by about 1e-5. The embedding's features
    keep the model as trained, so that the scores do not move (the detectors that read them
    amplify such a difference: the digits' spectre scores by up to 28)."""
    if not isinstance(model, SmallCNN):
        return model
    layers = list(model.body)
    for position, layer in enumerate(layers):
        if isinstance(layer, torch.nn.BatchNorm2d):
            layers[position - 1] = fuse_conv_bn_eval(layers[position - 1], layer)
            layers[position] = torch.nn.Identity()
    model.body = torch.nn.Sequential(*layers)  # the fused weights stay frozen, as they were
    # and its ReLUs and poolings as the inference computes them (the same values)
    return _inference_layout(model).to(memory_format=torch.channels_last)


def _scaled_model(embedding: Embedding):
    model, scaler = trained_model(embedding)
    model = _decision_layout(model)
    if not isinstance(scaler, InputScaler):
        raise ValueError("a text model's input (token ids) has no gradient")
    mean = torch.from_numpy(np.asarray(scaler.mean, dtype=np.float32))
    std = torch.from_numpy(np.asarray(scaler.std, dtype=np.float32))

    def scaled(samples: torch.Tensor) -> torch.Tensor:
        return (samples - mean) / std

    return model, scaled


def model_from_weights(
    weights: dict[str, np.ndarray], input_shape: tuple[int, ...], n_classes: int
) -> tuple[torch.nn.Module, InputScaler | TokenIds]:
    """A SmallCNN (``(C, H, W)`` inputs) or SmallMLP (``(D,)`` inputs) with ``weights`` (as
    :attr:`~poisonguard.results.Embedding.weights` holds them), frozen, and its input scaling;
    a TextBagModel and :class:`~poisonguard.embed.text_tokens.TokenIds` when the weights carry
    a vocabulary (a text model reads rows of token ids of any width)."""
    shape = tuple(int(s) for s in input_shape)
    weights = dict(weights)
    if VOCABULARY_KEY in weights:
        del weights[VOCABULARY_KEY]
        vocabulary_size = int(np.shape(weights["embedding.weight"])[0])
        return _loaded(TextBagModel(vocabulary_size, n_classes), weights), TokenIds()
    if len(shape) not in (1, 3):
        raise ValueError(f"trained models take (C, H, W) images or (D,) rows, not {shape}")
    scaler = InputScaler(weights.pop("scaler.mean"), weights.pop("scaler.std"))
    if len(shape) == 3:
        model: torch.nn.Module = SmallCNN(shape[0], n_classes, (shape[1], shape[2]))
    else:
        model = SmallMLP(shape[0], n_classes)
    return _loaded(model, weights), scaler


def _loaded(model: torch.nn.Module, weights: dict[str, np.ndarray]) -> torch.nn.Module:
    """``model`` with ``weights`` (its state dict), in evaluation mode, parameters frozen."""
    model.load_state_dict({name: torch.as_tensor(np.asarray(v)) for name, v in weights.items()})
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


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
    return run_inference(_inference_layout(model), x, scaler, progress=False)


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
    must have the audited data's sample shape (texts: a 1-D array of ``str``, encoded with the
    model's vocabulary); with a user's extractor, ``model_file`` is that extractor. Raises
    ``ValueError`` when the shapes do not match or the weights are missing.
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
    if embedding.model.get("source") == "torchscript":
        if model_file is None:
            raise ValueError("this embedding used a TorchScript extractor: pass model_file")
        weights = dict(embedding.weights)
        scaler = InputScaler(weights.pop("scaler.mean"), weights.pop("scaler.std"))
        extractor = load_feature_extractor(Path(model_file))
        inputs = extract_features(extractor, x, path=model_file, progress=progress)
        model: torch.nn.Module = LinearHead(inputs.shape[1], n_classes)
        model.load_state_dict({name: torch.as_tensor(np.asarray(v)) for name, v in weights.items()})
    elif VOCABULARY_KEY in embedding.weights:
        tokenizer = Tokenizer.from_weights(embedding.weights, embedding.model.get("tokenizer"))
        inputs = tokenizer.encode(x.tolist())
        model, scaler = trained_model(embedding)
    else:
        inputs = x
        model, scaler = trained_model(embedding)
        model = _inference_layout(model)
    features, probabilities = run_inference(model, inputs, scaler, progress=progress)
    if embedding.model.get("source") == "torchscript":
        features = inputs  # the head's own "features" are the standardized extractor outputs
    return features, probabilities
