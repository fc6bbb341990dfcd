"""The machine the scan runs on: its CPU cores and the torch thread count of training.

Training, :func:`~poisonguard.embed.embed_with`, the clean-label attack and model inversion all
run torch on :func:`torch_threads` threads; the task runners (:mod:`poisonguard.tasks`) size
their pools by :func:`available_cores`.
"""

from __future__ import annotations

import os

from poisonguard.errors import PoisonGuardError

__all__ = ["available_cores", "torch_threads", "TORCH_THREADS_ENV"]


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


TORCH_THREADS_ENV = "POISONGUARD_TORCH_THREADS"
"""Environment variable that fixes the torch thread count of training (default: one per core)."""


def torch_threads() -> int:
    """Torch threads for training (and for :func:`~poisonguard.embed.embed_with` and
    :func:`~poisonguard.poison.clean_label.adversarial_perturbation`):
    ``$POISONGUARD_TORCH_THREADS`` when set, else one per core.

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
