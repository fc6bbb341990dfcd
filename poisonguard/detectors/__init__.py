"""Detectors: plain functions over arrays, registered by name.

Each detector maps what the embedding model learned (features, probabilities, training
dynamics) and the given labels to one suspicion score per sample, **higher = more suspicious**.
Scores are comparable within a class, not across detectors; :mod:`poisonguard.decision` turns
them into p-values and flags.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from poisonguard.detectors.robust_spectral import robust_spectral_scores
from poisonguard.detectors.spectral import spectral_signature_scores
from poisonguard.results import Embedding

__all__ = [
    "Detector",
    "DETECTORS",
    "get_detectors",
    "robust_spectral_scores",
    "spectral_signature_scores",
]


@dataclass(frozen=True)
class Detector:
    """A registered detector.

    ``run(embedding, labels, min_class_size=..., seed=...)`` returns the scores; within a clean
    class they follow a scaled ``chi2(null_df)`` distribution, which calibrates them
    (see :func:`poisonguard.decision.class_pvalues`); ``summary`` is one line for reports.
    """

    name: str
    run: Callable[..., np.ndarray]
    null_df: int
    summary: str


def _spectral(
    embedding: Embedding, labels: np.ndarray, *, min_class_size: int, seed: int
) -> np.ndarray:
    return spectral_signature_scores(embedding.features, labels, min_class_size=min_class_size)


def _robust_spectral(
    embedding: Embedding, labels: np.ndarray, *, min_class_size: int, seed: int
) -> np.ndarray:
    return robust_spectral_scores(
        embedding.features,
        labels,
        min_class_size=min_class_size,
        n_components=ROBUST_COMPONENTS,
        seed=seed,
    )


ROBUST_COMPONENTS = 10


DETECTORS: dict[str, Detector] = {
    "spectral": Detector(
        name="spectral",
        run=_spectral,
        null_df=1,
        summary="squared projection on the class's top singular direction (Tran et al., 2018)",
    ),
    "robust-spectral": Detector(
        name="robust-spectral",
        run=_robust_spectral,
        null_df=ROBUST_COMPONENTS,
        summary="robust Mahalanobis distance in the class's top principal subspace "
        "(SPECTRE's robust covariance and whitening; Hayase et al., 2021)",
    ),
}


def get_detectors(names: str | list[str] | tuple[str, ...] | None) -> list[Detector]:
    """Detectors by name (a list or a comma-separated string); ``None`` or ``"all"`` gives all.

    Raises ``ValueError`` listing the valid names for an unknown one.
    """
    if names is None or names == "all":
        return list(DETECTORS.values())
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in names if n not in DETECTORS]
    if unknown or not names:
        raise ValueError(
            f"unknown detector(s) {', '.join(unknown) or '(none given)'}; "
            f"valid: {', '.join(DETECTORS)}"
        )
    return [DETECTORS[n] for n in dict.fromkeys(names)]
