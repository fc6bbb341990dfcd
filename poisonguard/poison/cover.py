"""Cover samples: the trigger on samples that keep their true label.

A backdoor detector that separates the poisoned samples from the target class in the model's
latent space relies on the trigger being a shortcut to the target everywhere. Cover samples break
that: they carry the trigger (or a part of it) with their own, correct label, so the model must
learn the trigger *together with* the source class (TaCT) or a specific combination of trigger
pieces (adaptive attacks), and the payload's representations stay close to clean ones.

* TaCT (Tang, Wang, Tang & Zhang, "Demon in the Variant: Statistical Analysis of DNNs for Robust
  Backdoor Contamination Detection", USENIX Security 2021): cover samples come from classes other
  than the source and the target and carry the full trigger.
* Adaptive attacks (Qi, Xie, Li, Mahloujifar & Mittal, "Revisiting the Assumption of Latent
  Separability for Backdoor Defenses", ICLR 2023) call them conservatism (regularization)
  samples: non-target samples with a partial trigger and their true label.

Cover samples are not the poison a detector should find, nor clean samples it may not flag: in a
benchmark they count as neither.
"""

from __future__ import annotations

import numpy as np

__all__ = ["choose_cover", "cover_count"]


def cover_count(cover_rate: float, n_samples: int) -> int:
    """``round(cover_rate * n_samples)``; ``ValueError`` when a positive rate gives none."""
    count = round(float(cover_rate) * n_samples)
    if cover_rate > 0 and count == 0:
        raise ValueError(
            f"cover rate {cover_rate:g} of {n_samples} samples gives round"
            f"({cover_rate * n_samples:g}) = 0 cover samples; raise it or leave it at 0"
        )
    return count


def choose_cover(
    labels: np.ndarray,
    *,
    count: int,
    excluded_classes: tuple[int, ...],
    taken: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Draw ``count`` cover samples, uniformly without replacement.

    Parameters
    ----------
    labels : ndarray of int, shape (N,)
    count : int
    excluded_classes : tuple of int
        Classes no cover sample comes from: the target, and for TaCT the source.
    taken : ndarray of bool, shape (N,)
        Samples already used (the payload, another backdoor's samples).
    rng : numpy.random.Generator
        A stream of its own, so that the cover never changes which payload samples are drawn.

    Returns
    -------
    ndarray of int64, sorted
    """
    labels = np.asarray(labels)
    pool = np.flatnonzero(~np.isin(labels, excluded_classes) & ~np.asarray(taken, dtype=bool))
    if count > pool.size:
        classes = ", ".join(str(c) for c in excluded_classes)
        raise ValueError(
            f"{count} cover samples are asked for, but only {pool.size} samples are left "
            f"outside classes {classes}"
        )
    if count == 0:
        return np.empty(0, dtype=np.int64)
    return np.sort(rng.choice(pool, size=count, replace=False)).astype(np.int64)
