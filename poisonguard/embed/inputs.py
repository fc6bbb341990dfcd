"""Turning raw samples into model inputs, one batch at a time.

The dataset stays in its compact source dtype (``uint8`` images stay bytes); each batch is
converted to float32 and standardized when it is fed to the model, so no float copy of the whole
dataset is ever held.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["InputScaler", "batch_slices", "CHUNK_SAMPLES"]

CHUNK_SAMPLES = 4096


@dataclass(frozen=True)
class InputScaler:
    """Affine map ``(x - mean) / std`` with one mean/std per image channel or table column.

    ``mean`` and ``std`` have the broadcast shape of one sample (``(C, 1, 1)`` or ``(D,)``).
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def standardizing(cls, x: np.ndarray) -> InputScaler:
        """Fit per-channel (images ``(N, C, H, W)``) or per-column (tables ``(N, D)``) statistics.

        Computed in chunks with float64 accumulators; constant channels or columns get ``std=1``.
        """
        axes = (0, 2, 3) if x.ndim == 4 else (0,)
        total = np.zeros(x.shape[1], dtype=np.float64)
        total_sq = np.zeros(x.shape[1], dtype=np.float64)
        count = 0
        for start in range(0, x.shape[0], CHUNK_SAMPLES):
            chunk = x[start : start + CHUNK_SAMPLES].astype(np.float64)
            total += chunk.sum(axis=axes)
            total_sq += np.square(chunk).sum(axis=axes)
            count += chunk.size // x.shape[1]
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
        std[std < 1e-8 * max(1.0, float(np.abs(mean).max(initial=0.0)))] = 1.0
        return cls(_sample_shape(mean, x.ndim), _sample_shape(std, x.ndim))

    @classmethod
    def unit_range(cls, x: np.ndarray) -> InputScaler:
        """Scale ``uint8`` data to [0, 1], leave other dtypes unchanged (for user models)."""
        scale = 255.0 if x.dtype == np.uint8 else 1.0
        ones = np.ones(x.shape[1], dtype=np.float64)
        return cls(_sample_shape(0 * ones, x.ndim), _sample_shape(scale * ones, x.ndim))

    def __call__(self, batch: np.ndarray) -> torch.Tensor:
        scaled = (batch.astype(np.float32) - self.mean) / self.std
        return torch.from_numpy(np.ascontiguousarray(scaled, dtype=np.float32))


def _sample_shape(values: np.ndarray, ndim: int) -> np.ndarray:
    values = values.astype(np.float32)
    return values.reshape(-1, 1, 1) if ndim == 4 else values


def batch_slices(n: int, batch_size: int) -> list[slice]:
    """Consecutive batches covering ``range(n)``; a last batch of one sample joins the one before.

    Batch normalization cannot train on a batch of one sample, and dropping it would leave that
    sample without training dynamics for the epoch.
    """
    bounds = list(range(0, n, batch_size)) + [n]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] == 1:
        del bounds[-2]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
