"""Which samples a dirty-label backdoor poisons, and which class it wants each one read as.

One mapping serves both sides of an attack: in training, the samples it maps are the ones the
payload is drawn from and their new label is the mapped class; in testing, a triggered test
sample counts as an attack success when the model predicts its mapped class.

* **all-to-one** (the default; Gu, Dolan-Gavitt & Garg, "BadNets: Identifying Vulnerabilities
  in the Machine Learning Model Supply Chain", 2017): every class but the target maps to the
  target;
* **all-to-all** (BadNets' second MNIST attack): class ``c`` maps to ``(c + 1) mod K``, every
  class included;
* **source-specific** (TaCT: Tang, Wang, Tang & Zhang, "Demon in the Variant: Statistical
  Analysis of DNNs for Robust Backdoor Contamination Detection", USENIX Security 2021): only the
  source class maps to the target; a trigger on any other class should change nothing, which
  TaCT teaches the model with cover samples (:mod:`.cover`) and which makes the poisoned
  samples' representations hard to separate from the target class's.

The target class itself is the one given, else drawn from the seed's target stream
(:func:`resolve_target`; among the classes other than the source when there is one,
:func:`other_class`); an all-to-all backdoor has none (:func:`backdoor_target`).
"""

from __future__ import annotations

import numpy as np

from poisonguard.poison.options import AttackOptions
from poisonguard.poison.registry import Attack
from poisonguard.poison.seeds import TARGET

__all__ = ["NO_TARGET", "backdoor_target", "other_class", "resolve_target", "trigger_targets"]

NO_TARGET = -1
"""The mapped class of a sample the attack makes no claim about."""


def trigger_targets(
    labels: np.ndarray,
    n_classes: int,
    *,
    target: int | None,
    all_to_all: bool = False,
    source_class: int | None = None,
) -> np.ndarray:
    """The class each sample should be read as once triggered, :data:`NO_TARGET` where none.

    Parameters
    ----------
    labels : ndarray of int, shape (N,)
        True class codes ``0 .. n_classes-1``.
    n_classes : int
    target : int or None
        The target class; ``None`` exactly when ``all_to_all``.
    all_to_all : bool
    source_class : int or None
        Source-specific: only this class maps to ``target``. Not with ``all_to_all``.

    Returns
    -------
    ndarray of int64, shape (N,)
    """
    labels = np.asarray(labels, dtype=np.int64)
    if all_to_all:
        if target is not None or source_class is not None:
            raise ValueError("an all-to-all backdoor has neither a target nor a source class")
        return (labels + 1) % int(n_classes)
    if target is None:
        raise ValueError("an all-to-one or source-specific backdoor needs a target class")
    if source_class is not None:
        return np.where(labels == source_class, target, NO_TARGET).astype(np.int64)
    return np.where(labels != target, target, NO_TARGET).astype(np.int64)


def resolve_target(target: int | None, n_classes: int, seed: int) -> int:
    """``target`` checked as a class code, or drawn from the seed when ``None``."""
    if target is None:
        return int(np.random.default_rng([seed, TARGET]).integers(n_classes))
    if isinstance(target, bool) or not isinstance(target, int | np.integer):
        raise ValueError(f"target must be a class code; got {target!r}")
    if not 0 <= target < n_classes:
        raise ValueError(f"target {target} is not in 0..{n_classes - 1} ({n_classes} classes)")
    return int(target)


def other_class(source: int, n_classes: int, seed: int) -> int:
    """A target drawn from the seed among the classes other than ``source``."""
    others = np.array([c for c in range(n_classes) if c != source])
    return int(others[np.random.default_rng([seed, TARGET]).integers(others.size)])


def backdoor_target(
    spec: Attack, target: int | None, n_classes: int, seed: int, options: AttackOptions
) -> int | None:
    """The target class of a backdoor: ``None`` for all-to-all, else given or drawn."""
    if options.all_to_all:
        return None
    if target is None and options.source_class is not None:
        return other_class(options.source_class, n_classes, seed)
    return resolve_target(target, n_classes, seed)
