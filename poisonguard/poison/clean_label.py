"""Clean-label poisoning's perturbation: PGD against the model PoisonGuard trained.

The clean-label backdoor (Turner, Tsipras & Madry, 2019) keeps every poisoned sample's true label
and first makes the sample hard to classify, so that the model has to lean on the trigger to fit
it; :func:`adversarial_perturbation` is that first step.
"""

from __future__ import annotations

import numpy as np
import torch

from poisonguard.embed.inference import trained_model
from poisonguard.machine import torch_threads
from poisonguard.results import Embedding

__all__ = ["adversarial_perturbation"]


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
