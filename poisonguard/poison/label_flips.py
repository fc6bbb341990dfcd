"""Label flips: which samples get a wrong label, and which one.

Each function returns ``(indices, new_labels)``: the flipped samples' indices (sorted, int64) and
their new labels (int64, aligned with ``indices``, always different from the old ones). The
labels passed in are not modified; the caller writes ``labels[indices] = new_labels`` on a copy.
Every function flips exactly ``round(rate * N)`` samples (see :func:`poison_count`).

* :func:`random_flips`: uniform ("symmetric") label noise, the noise model of most label-noise
  studies (Frénay & Verleysen, "Classification in the Presence of Label Noise: a Survey", IEEE
  TNNLS 2014);
* :func:`pair_flips`: class-conditional "pair" noise, every flip from class ``a`` to class ``b``
  (Han et al., "Co-teaching: Robust Training of Deep Neural Networks with Extremely Noisy
  Labels", NeurIPS 2018);
* :func:`near_boundary_flips`: the samples a model is least sure of, flipped to the class it
  finds next most likely, the hardest flips to tell from genuine ambiguity (in the spirit of the
  margin-based label-flip attacks of Biggio, Nelson & Laskov, "Support Vector Machines Under
  Adversarial Label Noise", ACML 2011).

:func:`flip_labels` runs one of them as the label-flip attack of that name (``flip-random``,
``flip-pair``, ``flip-near-boundary``) for :func:`~poisonguard.poison.poison_arrays`: it checks
what the attack needs (a source class, probabilities, no target), draws from the seed's choice
stream (:mod:`.seeds`) and returns the target too.
"""

from __future__ import annotations

import numpy as np

from poisonguard.poison.options import AttackOptions
from poisonguard.poison.seeds import CHOICE
from poisonguard.poison.targets import other_class, resolve_target

__all__ = [
    "check_labels",
    "flip_labels",
    "near_boundary_flips",
    "pair_flips",
    "poison_count",
    "random_flips",
]


def poison_count(rate: float, n_samples: int) -> int:
    """``round(rate * n_samples)``, the number of samples a rate poisons.

    Raises ``ValueError`` when ``rate`` is not in ``(0, 1)`` or poisons no sample. (Python's
    ``round`` rounds halves to even: ``round(2.5) == 2``.)
    """
    if isinstance(rate, bool) or not isinstance(rate, int | float | np.floating | np.integer):
        raise ValueError(f"rate must be a number in (0, 1); got {rate!r}")
    if not 0.0 < float(rate) < 1.0:
        raise ValueError(f"rate must be in (0, 1); got {rate!r}")
    count = round(float(rate) * n_samples)
    if count == 0:
        raise ValueError(
            f"rate {rate:g} of {n_samples} samples poisons round({rate * n_samples:g}) = 0 "
            "samples; raise the rate"
        )
    return count


def check_labels(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Validate class codes ``0 .. n_classes-1`` and return them as an int64 array."""
    if isinstance(n_classes, bool) or not isinstance(n_classes, int | np.integer) or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2; got {n_classes!r}")
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape (N,); got {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integer class codes; got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"labels must be in 0..{n_classes - 1} for {n_classes} classes; "
            f"found {labels.min()}..{labels.max()}"
        )
    return labels.astype(np.int64)


def random_flips(
    labels: np.ndarray, n_classes: int, *, rate: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Uniform label noise: ``round(rate * N)`` samples drawn uniformly without replacement, each
    given a label drawn uniformly from the ``n_classes - 1`` other classes.

    Parameters
    ----------
    labels : ndarray of int, shape (N,)
    n_classes : int
    rate : float
        Share of all samples flipped, in ``(0, 1)``.
    rng : numpy.random.Generator
        Draws the samples, then their new labels.

    Returns
    -------
    indices : ndarray of int64, shape (round(rate * N),)
    new_labels : ndarray of int64, same shape
    """
    labels = check_labels(labels, n_classes)
    count = poison_count(rate, labels.size)
    indices = np.sort(rng.choice(labels.size, size=count, replace=False)).astype(np.int64)
    shift = rng.integers(1, n_classes, size=count)
    return indices, (labels[indices] + shift) % n_classes


def pair_flips(
    labels: np.ndarray,
    n_classes: int,
    *,
    rate: float,
    source: int,
    destination: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Class-pair flips: ``round(rate * N)`` samples of class ``source`` relabelled
    ``destination``.

    ``rate`` is a share of *all* ``N`` samples, not of the source class, so the count compares
    with the other attacks'; the source class must hold that many samples.

    Parameters
    ----------
    labels : ndarray of int, shape (N,)
    n_classes : int
    rate : float
        In ``(0, 1)``.
    source, destination : int
        Distinct classes in ``0 .. n_classes-1``.
    rng : numpy.random.Generator
        Draws the samples.

    Returns
    -------
    indices : ndarray of int64
    new_labels : ndarray of int64, all ``destination``
    """
    labels = check_labels(labels, n_classes)
    for name, code in (("source", source), ("destination", destination)):
        if isinstance(code, bool) or not isinstance(code, int | np.integer):
            raise ValueError(f"pair-flip {name} class must be an integer; got {code!r}")
        if not 0 <= code < n_classes:
            raise ValueError(
                f"pair-flip {name} class {code} is not in 0..{n_classes - 1} ({n_classes} classes)"
            )
    if source == destination:
        raise ValueError(f"pair-flip source and destination are both class {source}")
    count = poison_count(rate, labels.size)
    members = np.flatnonzero(labels == source)
    if count > members.size:
        raise ValueError(
            f"rate {rate:g} of {labels.size} samples flips {count} samples, but source class "
            f"{source} has only {members.size}"
        )
    indices = np.sort(rng.choice(members, size=count, replace=False)).astype(np.int64)
    return indices, np.full(count, destination, dtype=np.int64)


def near_boundary_flips(
    labels: np.ndarray, probabilities: np.ndarray, *, rate: float
) -> tuple[np.ndarray, np.ndarray]:
    """Flip the samples closest to the decision boundary to their runner-up class.

    The margin of a sample is ``p[given label] - max over other classes p``; the
    ``round(rate * N)`` samples with the smallest margins (ties: lower index first) are flipped,
    each to its runner-up, the most probable class other than its label (ties: lower class code).
    Deterministic: no randomness.

    Parameters
    ----------
    labels : ndarray of int, shape (N,)
    probabilities : ndarray of float, shape (N, K)
        Class probabilities from a model; use out-of-sample ones (cross-validated), else the
        model's memorisation of the training labels hides the ambiguous samples.
    rate : float
        In ``(0, 1)``.

    Returns
    -------
    indices : ndarray of int64, sorted
    new_labels : ndarray of int64
    """
    probabilities = np.asarray(probabilities)
    labels_array = np.asarray(labels)
    if probabilities.ndim != 2 or probabilities.shape[0] != labels_array.shape[0]:
        raise ValueError(
            f"probabilities must have shape (N, K) = ({labels_array.shape[0]}, K); "
            f"got {probabilities.shape}"
        )
    if not np.issubdtype(probabilities.dtype, np.number) or not np.isfinite(probabilities).all():
        raise ValueError("probabilities must be finite numbers")
    labels = check_labels(labels_array, probabilities.shape[1])
    count = poison_count(rate, labels.size)
    rows = np.arange(labels.size)
    own = probabilities[rows, labels].astype(np.float64)
    others = probabilities.astype(np.float64)  # a copy: the own-label column is masked below
    others[rows, labels] = -np.inf
    runner_up = np.argmax(others, axis=1)
    margin = own - others[rows, runner_up]
    chosen = np.argsort(margin, kind="stable")[:count]
    indices = np.sort(chosen).astype(np.int64)
    return indices, runner_up[indices].astype(np.int64)


def flip_labels(
    name: str,
    labels: np.ndarray,
    n_classes: int,
    rate: float,
    target: int | None,
    seed: int,
    options: AttackOptions,
    probabilities: np.ndarray | None,
    description: dict,
) -> tuple[int | None, np.ndarray, np.ndarray]:
    """Run one label flip; returns (target, indices, new labels) and fills ``description``."""
    choice_rng = np.random.default_rng([seed, CHOICE])
    if name == "flip-pair":
        source = options.source_class
        if source is None:
            raise ValueError("flip-pair needs options.source_class, the class to relabel")
        if not source < n_classes:
            raise ValueError(
                f"source_class {source} is not in 0..{n_classes - 1} ({n_classes} classes)"
            )
        if target is None:
            target = other_class(source, n_classes, seed)
        target = resolve_target(target, n_classes, seed)
        indices, flipped = pair_flips(
            labels, n_classes, rate=rate, source=source, destination=target, rng=choice_rng
        )
        description.update(source_class=int(source))
        return target, indices, flipped
    if target is not None:
        raise ValueError(f"{name} has no target class; leave target as None (got {target!r})")
    if name == "flip-random":
        return None, *random_flips(labels, n_classes, rate=rate, rng=choice_rng)
    if probabilities is None:
        raise ValueError("flip-near-boundary needs probabilities, shape (N, n_classes)")
    probabilities = np.asarray(probabilities)
    if probabilities.shape != (labels.size, n_classes):
        raise ValueError(
            f"flip-near-boundary needs probabilities of shape (N, n_classes) = "
            f"({labels.size}, {n_classes}); got {probabilities.shape}"
        )
    return None, *near_boundary_flips(labels, probabilities, rate=rate)
