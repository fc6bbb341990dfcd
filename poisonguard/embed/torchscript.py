"""User-supplied feature extractors, as TorchScript files.

Only TorchScript archives are accepted: they are loaded by ``torch.jit.load``, which runs the
TorchScript interpreter and never Python's unpickler on arbitrary objects. A plain pickle, a
``torch.save`` checkpoint or a state dict is refused before anything in it is read, because
loading those can execute arbitrary code.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from poisonguard.embed.inputs import InputScaler, batch_slices
from poisonguard.errors import ModelFileError

__all__ = ["load_feature_extractor", "extract_features"]


def load_feature_extractor(path: str | Path) -> torch.jit.ScriptModule:
    """Load a TorchScript feature extractor on the CPU, in eval mode.

    Raises :class:`ModelFileError` naming the file if it is missing, not a zip archive, a zip
    archive without TorchScript code (e.g. a ``torch.save`` checkpoint), or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(path, "model file does not exist")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(
            path,
            "is not a TorchScript file (not a zip archive); save the model with "
            "torch.jit.script(model).save(path) or torch.jit.trace(...).save(path)",
        )
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelFileError(path, f"is not a readable zip archive ({exc})") from exc
    if not any("/code/" in name for name in names):
        raise ModelFileError(
            path,
            "is a PyTorch archive without TorchScript code (a torch.save checkpoint or "
            "state dict?); only TorchScript files are accepted, since loading pickled "
            "checkpoints can run arbitrary code",
        )
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # torch raises RuntimeError and others for damaged archives
        raise ModelFileError(path, f"could not be loaded as TorchScript ({exc})") from exc
    module.eval()
    return module


@torch.no_grad()
def extract_features(
    module: torch.jit.ScriptModule,
    x: np.ndarray,
    *,
    path: str | Path,
    batch_size: int = 256,
    progress: bool = True,
) -> np.ndarray:
    """Run the extractor over ``x`` in batches; return flattened float32 features ``(N, F)``.

    Inputs are float32: images ``(B, C, H, W)`` scaled to [0, 1] when stored as bytes, tables
    ``(B, D)`` as stored. The module must return one tensor whose first axis is the batch.
    """
    scaler = InputScaler.unit_range(x)
    outputs = []
    for part in tqdm(
        batch_slices(x.shape[0], batch_size),
        desc="Embedding (user model)",
        unit="batch",
        disable=not progress,
        leave=False,
    ):
        batch = scaler(x[part])
        try:
            result = module(batch)
        except Exception as exc:
            raise ModelFileError(
                path, f"failed on an input batch of shape {tuple(batch.shape)}: {exc}"
            ) from exc
        if not isinstance(result, torch.Tensor):
            raise ModelFileError(path, f"returned {type(result).__name__}, expected one tensor")
        if result.ndim == 0 or result.shape[0] != batch.shape[0]:
            raise ModelFileError(
                path, f"returned shape {tuple(result.shape)} for a batch of {batch.shape[0]}"
            )
        outputs.append(result.reshape(result.shape[0], -1).float().numpy())
    features = np.concatenate(outputs)
    if not np.all(np.isfinite(features)):
        raise ModelFileError(path, "produced NaN or infinite features")
    return features
