"""Poisoning a training set: one attack on a copy of the arrays, with the ground truth.

:func:`poison_arrays` checks the inputs (:mod:`.validation`), runs the attack (a backdoor,
:mod:`.backdoor`, or a label flip, :mod:`.label_flips`) and marks the samples it actually changed
in a :class:`~poisonguard.poison.result.Poisoning`; :func:`add_backdoor` plants one more backdoor
on the samples an earlier poisoning left untouched (:mod:`.combined`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from poisonguard.poison.backdoor import choose_backdoor_samples, stamp
from poisonguard.poison.combined import merge_poisonings
from poisonguard.poison.label_flips import check_labels, flip_labels, poison_count
from poisonguard.poison.options import AttackOptions
from poisonguard.poison.registry import BACKDOOR, LABEL_FLIP
from poisonguard.poison.result import Poisoning
from poisonguard.poison.seeds import check_seed
from poisonguard.poison.targets import NO_TARGET, backdoor_target
from poisonguard.poison.validation import check_layout, check_variant, get_attack

__all__ = ["add_backdoor", "poison_arrays"]

logger = logging.getLogger(__name__)


def poison_arrays(
    x: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    *,
    attack: str,
    rate: float,
    target: int | None = None,
    seed: int = 0,
    options: AttackOptions | None = None,
    probabilities: np.ndarray | None = None,
    perturb: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    exclude: np.ndarray | None = None,
) -> Poisoning:
    """Poison ``round(rate * N)`` samples with one attack of :data:`ATTACKS`.

    * Backdoors that relabel (``patch``, ``blend``, ``sig``, ``wanet``, ``adaptive-blend``,
      ``table-trigger``) are all-to-one by default: the samples are drawn from the classes
      other than ``target``, get the trigger and the label ``target``. With
      ``options.source_class`` they are drawn from that class only (source-specific, TaCT); with
      ``options.all_to_all`` from every class, a sample of class ``c`` getting the label
      ``(c + 1) mod n_classes`` (``target`` must then be ``None``). See :mod:`.targets`.
    * ``options.cover_rate`` (with ``source_class``, or with ``adaptive-blend`` or ``wanet``):
      ``round(cover_rate * N)`` more samples, from classes other than the target and the
      source, get the trigger (adaptive-blend: a partial one; all-to-one wanet: the warp
      with noise of its own, the paper's noise mode) and keep their labels; they are marked in
      :attr:`Poisoning.cover`, not in ``poisoned``. See :mod:`.cover`.
    * ``adaptive-blend``: the ``blend`` noise pattern with ``options.blend_alpha``, on
      ``options.pieces_shown`` of its ``adaptive_grid x adaptive_grid`` pieces, chosen per
      sample (:mod:`.adaptive`).
    * ``clean-label``: the samples are drawn from the target class only and keep their labels;
      ``perturb(x_subset, labels_subset)``, when given, is applied before the trigger
      (``options.clean_label_trigger``). Turner et al. make the target-class images hard to
      classify (an adversarial perturbation or a GAN interpolation) so the network must rely on
      the trigger; without ``perturb`` the attack is much weaker. The result is clipped to the
      image range and cast to the input dtype. With the ``sig`` trigger and no ``perturb`` it is
      Barni et al.'s clean-label SIG attack.
    * ``flip-random``, ``flip-pair`` (targeted flips from ``options.source_class`` to
      ``target``), ``flip-near-boundary`` (needs ``probabilities``): see :mod:`.label_flips`.

    Parameters
    ----------
    x : ndarray
        Images ``(N, C, H, W)`` (uint8, or float in ``0..value_max``) or a table ``(N, D)``.
    labels : ndarray of int, shape (N,)
        Class codes ``0 .. n_classes-1``.
    n_classes : int
    attack : str
        A name in :data:`ATTACKS`.
    rate : float
        Share of *all* N samples poisoned (payload samples), in ``(0, 1)``, for every attack
        (``clean-label``, source-specific backdoors and ``flip-pair`` too, whose samples come
        from one class).
    target : int or None
        Target class of a backdoor, destination of ``flip-pair``. ``None`` draws it from the
        seed (uniform over the classes; over the classes other than the source when there is
        one). Must be ``None`` for ``flip-random``, ``flip-near-boundary`` and all-to-all.
    seed : int
        Non-negative; see the module docstring for its streams.
    options : AttackOptions or None
        ``None`` uses the defaults.
    probabilities : ndarray, shape (N, n_classes), optional
        Out-of-sample class probabilities, for ``flip-near-boundary``.
    perturb : callable, optional
        For ``clean-label``.
    exclude : ndarray of bool, shape (N,), optional
        Backdoors only: samples never chosen, as payload or as cover (the samples of an earlier
        backdoor, see :func:`add_backdoor`).

    Returns
    -------
    Poisoning
        ``poisoned.sum() == round(rate * N)`` and ``cover.sum() == round(cover_rate * N)``,
        except for samples the trigger leaves unchanged (a white patch on a white corner of a
        clean-label or cover sample), which are not marked and are logged.

    Raises
    ------
    ValueError
        Unknown attack, data of the wrong layout, a rate outside ``(0, 1)`` or poisoning no
        sample or more samples than the pool it draws from, a bad target, missing
        ``probabilities`` or ``source_class``, options that do not fit the attack (all-to-all
        with a target, a source class equal to the target, cover samples without a
        source-specific backdoor or adaptive-blend, ...).
    """
    spec = get_attack(attack)
    options = AttackOptions() if options is None else options
    x = np.asarray(x)
    labels = check_labels(labels, n_classes)
    n_classes = int(n_classes)
    seed = check_seed(seed)
    check_layout(spec, x)
    if x.shape[0] != labels.size:
        raise ValueError(f"x has {x.shape[0]} samples but labels {labels.size}")
    check_variant(spec, options, target, n_classes)
    count = poison_count(rate, labels.size)
    description: dict = {"attack": spec.name, "rate": float(rate), "seed": seed}

    new_x = x.copy()
    new_labels = labels.copy()
    cover = np.empty(0, dtype=np.int64)
    wanted = np.full(labels.size, NO_TARGET, dtype=np.int64)
    if spec.kind == LABEL_FLIP:
        if exclude is not None:
            raise ValueError(f"exclude is for backdoors; {spec.name} draws from every sample")
        target, payload, flipped = flip_labels(
            spec.name, labels, n_classes, rate, target, seed, options, probabilities, description
        )
        new_labels[payload] = wanted[payload] = flipped
    else:
        target = backdoor_target(spec, target, n_classes, seed, options)
        payload, cover, wanted = choose_backdoor_samples(
            spec, labels, n_classes, count, rate, target, seed, options, exclude
        )
        rows = np.concatenate([payload, cover])  # payload first: the cover never moves its draws
        options, new_x[rows] = stamp(
            spec, x, rows, labels, seed, options, perturb, description, n_payload=payload.size
        )
        if spec.name != "clean-label":
            new_labels[payload] = wanted[payload]
        if options.source_class is not None:
            description.update(source_class=int(options.source_class))
        if options.all_to_all:
            description.update(all_to_all=True)
        if options.cover_rate > 0:
            description.update(cover_rate=float(options.cover_rate))

    changed = new_labels != labels
    if new_x.size:
        changed |= (new_x != x).reshape(labels.size, -1).any(axis=1)
    poisoned = _mask(payload, labels.size) & changed
    covered = _mask(cover, labels.size) & changed
    for what, chosen, kept in (("samples", payload, poisoned), ("cover samples", cover, covered)):
        if kept.sum() < chosen.size:
            logger.warning(
                "%d of the %d %s chosen for %s were left unchanged by the trigger; "
                "they are not marked",
                chosen.size - int(kept.sum()),
                chosen.size,
                what,
                spec.name,
            )
    description.update(target=target, n_poisoned=int(poisoned.sum()))
    if spec.kind == BACKDOOR:
        description.update(n_cover=int(covered.sum()))
    logger.info("%s: poisoned %d of %d samples", spec.name, int(poisoned.sum()), labels.size)
    return Poisoning(
        x=new_x,
        labels=new_labels,
        poisoned=poisoned,
        original_labels=labels.copy(),
        attack=spec.name,
        target=target,
        description=description,
        seed=seed,
        options=options,
        cover=covered,
        targets=np.where(poisoned | covered, wanted, NO_TARGET),
    )


def add_backdoor(
    poisoning: Poisoning,
    n_classes: int,
    *,
    attack: str,
    rate: float,
    target: int | None = None,
    seed: int | None = None,
    options: AttackOptions | None = None,
    perturb: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> Poisoning:
    """Plant one more backdoor in a poisoned copy: several backdoors in one dataset.

    The new backdoor (``poison_arrays`` on ``poisoning.x`` and ``poisoning.labels``) draws only
    from samples ``poisoning`` left untouched, neither its payload nor its cover samples, so no
    sample is poisoned twice. The result (:func:`.combined.merge_poisonings`) marks every
    payload and cover sample of both; ``sample_attacks`` and ``targets`` tell them apart and
    ``parts`` holds each backdoor's own poisoning (its seed and options make its test copy).

    Parameters
    ----------
    poisoning : Poisoning
        From :func:`poison_arrays` or an earlier :func:`add_backdoor`.
    n_classes : int
    attack : str
        A backdoor not planted yet (two of the same kind would share their trigger).
    rate : float
        Share of all N samples this backdoor poisons.
    target : int or None
    seed : int or None
        ``None``: ``poisoning.seed`` plus the number of backdoors already planted, so that the
        new backdoor's samples and pattern are drawn independently of the earlier ones.
    options : AttackOptions or None
    perturb : callable, optional
        For ``clean-label``.
    """
    spec = get_attack(attack)
    if spec.kind != BACKDOOR:
        raise ValueError(f"add_backdoor plants backdoors; {spec.name} changes labels only")
    planted = [part.attack for part in (poisoning.parts or (poisoning,))]
    if spec.name in planted:
        raise ValueError(
            f"{spec.name} is already planted; a second {spec.name} backdoor would share its "
            "trigger with the first"
        )
    second = poison_arrays(
        poisoning.x,
        poisoning.labels,
        n_classes,
        attack=spec.name,
        rate=rate,
        target=target,
        seed=poisoning.seed + len(planted) if seed is None else seed,
        options=options,
        perturb=perturb,
        exclude=poisoning.poisoned | poisoning.cover,
    )
    return merge_poisonings(poisoning, second)


def _mask(indices: np.ndarray, n: int) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[indices] = True
    return mask
