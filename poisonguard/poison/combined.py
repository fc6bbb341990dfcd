"""Several backdoors in one dataset: one :class:`Poisoning` from poisonings of disjoint samples.

A dataset can hide more than one backdoor, each with its own trigger and target (multi-trigger
and multi-target backdoors: Xue, He, Wang & Liu, "One-to-N & N-to-One: Two Advanced Backdoor
Attacks Against Deep Learning Models", IEEE TDSC 2022). A detector should find all of them; the
ground truth of the combined copy marks each sample with the backdoor that poisoned it.

:func:`merge_poisonings` only combines; :func:`poisonguard.poison.add_backdoor` plants the next
backdoor on samples the earlier ones left untouched and merges.
"""

from __future__ import annotations

import numpy as np

from poisonguard.poison.result import Poisoning

__all__ = ["merge_poisonings"]


def merge_poisonings(first: Poisoning, second: Poisoning) -> Poisoning:
    """``second`` (made from ``first.x`` and ``first.labels``) on top of ``first``.

    ``second`` must not touch a payload or cover sample of ``first``. The result's ``attack`` is
    the names joined by ``+`` (``"patch+blend"``), its ``target`` ``None`` (see ``targets``),
    its ``parts`` every single-attack poisoning in order, its ``seed`` and ``options`` those of
    the first part.
    """
    if first.x.shape != second.x.shape:
        raise ValueError(f"shapes differ: {first.x.shape} and {second.x.shape}")
    used = first.poisoned | first.cover
    if ((second.poisoned | second.cover) & used).any():
        raise ValueError("the second poisoning touches samples of the first")
    if not np.array_equal(second.original_labels, first.labels):
        raise ValueError("the second poisoning must start from the first one's labels")
    parts = (*(first.parts or (first,)), *(second.parts or (second,)))
    taken_second = second.poisoned | second.cover
    poisoned = first.poisoned | second.poisoned
    cover = first.cover | second.cover
    attack = "+".join(part.attack for part in parts)
    return Poisoning(
        x=second.x,
        labels=second.labels,
        poisoned=poisoned,
        original_labels=first.original_labels.copy(),
        attack=attack,
        target=None,
        description={
            "attack": attack,
            "n_poisoned": int(poisoned.sum()),
            "n_cover": int(cover.sum()),
        },
        seed=parts[0].seed,
        options=parts[0].options,
        cover=cover,
        targets=np.where(taken_second, second.targets, first.targets),
        sample_attacks=np.where(taken_second, second.sample_attacks, first.sample_attacks),
        parts=parts,
    )
