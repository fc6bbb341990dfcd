"""The result of a poisoning: the new arrays and the ground truth of what changed.

Every sample of a poisoned copy has one of three roles:

* **payload**: a poisoned sample a detector should find (a triggered sample with the target
  label, a clean-label sample with the trigger, a flipped label); ``Poisoning.poisoned``;
* **cover**: a sample that carries a (possibly partial) trigger but keeps its true label, placed
  so that the payload hides (TaCT's cover samples, Tang et al. 2021; the conservatism samples of
  Qi et al. 2023); ``Poisoning.cover``. In a benchmark it counts neither as found nor as a false
  flag;
* **clean**: everything else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from poisonguard.poison.options import AttackOptions

__all__ = ["ROLES", "Poisoning"]

ROLES = ("payload", "cover", "clean")


@dataclass
class Poisoning:
    """A poisoned copy of a dataset's arrays and the ground truth of what changed.

    Attributes
    ----------
    x : ndarray
        Same shape and dtype as the input; a copy even when unchanged (label flips).
    labels : ndarray of int64, shape (N,)
    poisoned : ndarray of bool, shape (N,)
        The payload samples: true exactly where ``x`` or the label differs from the input, except
        on cover samples.
    original_labels : ndarray of int64, shape (N,)
    attack : str
        The attack's name; ``"patch+blend"`` for several backdoors planted together (``parts``).
    target : int or None
        The target class of a backdoor, the destination of ``flip-pair``; ``None`` for the
        other flips, for all-to-all backdoors and for several backdoors (see ``targets``).
    description : dict
        JSON-able record of the parameters used (attack, rate, seed, target, count, and the
        attack's own: position, alpha, columns and values, ...).
    seed : int
    options : AttackOptions
        The options actually used, with ``value_max`` (images) or ``table_columns`` and
        ``table_values`` (tables) filled in: ``apply_trigger(x_test, attack=p.attack,
        seed=p.seed, options=p.options)`` stamps exactly the training trigger.
    cover : ndarray of bool, shape (N,)
        The cover samples: trigger stamped, label kept (default: none). Disjoint from
        ``poisoned``.
    targets : ndarray of int64, shape (N,)
        Per sample, the class the attacker wants it read as: the new label of a payload sample
        (for a clean-label sample its own label), the backdoor's target for a cover sample, -1
        for a clean sample. Default: ``labels`` where ``poisoned``, else -1.
    sample_attacks : ndarray of str, shape (N,)
        Per sample, the attack that made it a payload or cover sample, ``""`` for a clean one.
        Default: ``attack`` on payload and cover samples.
    parts : tuple of Poisoning
        For several backdoors planted together, each one's own poisoning (its seed, target and
        options give its test copy); empty otherwise.
    """

    x: np.ndarray
    labels: np.ndarray
    poisoned: np.ndarray
    original_labels: np.ndarray
    attack: str
    target: int | None
    description: dict
    seed: int = 0
    options: AttackOptions = field(default_factory=AttackOptions)
    cover: np.ndarray | None = None
    targets: np.ndarray | None = None
    sample_attacks: np.ndarray | None = None
    parts: tuple[Poisoning, ...] = ()

    def __post_init__(self) -> None:
        self.poisoned = np.asarray(self.poisoned, dtype=bool)
        n = self.poisoned.shape[0]
        if self.cover is None:
            self.cover = np.zeros(n, dtype=bool)
        self.cover = np.asarray(self.cover, dtype=bool)
        if self.cover.shape != (n,) or (self.cover & self.poisoned).any():
            raise ValueError("cover must be a boolean mask of shape (N,), disjoint from poisoned")
        if self.targets is None:
            self.targets = np.where(self.poisoned, self.labels, -1).astype(np.int64)
        if self.sample_attacks is None:
            self.sample_attacks = np.where(self.poisoned | self.cover, self.attack, "")

    @property
    def n_poisoned(self) -> int:
        return int(self.poisoned.sum())

    @property
    def n_cover(self) -> int:
        return int(self.cover.sum())

    @property
    def roles(self) -> np.ndarray:
        """Per sample ``"payload"``, ``"cover"`` or ``"clean"`` (see the module docstring)."""
        return np.where(self.poisoned, "payload", np.where(self.cover, "cover", "clean"))
