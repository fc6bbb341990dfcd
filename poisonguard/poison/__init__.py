"""Poison generation: poisoned copies of a dataset's arrays, with the ground truth.

PoisonGuard audits data for poisoning; this package makes the poison it is measured against.
The attacks are plain functions over arrays (:mod:`.triggers`, :mod:`.table_trigger`,
:mod:`.adaptive`, :mod:`.label_flips`), registered by name in :data:`ATTACKS`, with the
variants that make a backdoor harder to separate in a model's latent space in modules of their
own (:mod:`.targets`: all-to-all and source-specific; :mod:`.cover`: cover samples;
:mod:`.combined`: several backdoors). The entry points:

* :func:`poison_arrays` poisons ``round(rate * N)`` samples of a training set and returns a
  :class:`Poisoning`: the new arrays, the masks of poisoned (payload) and cover samples and the
  parameters used;
* :func:`add_backdoor` plants another backdoor on samples an earlier poisoning left untouched;
* :func:`apply_trigger` stamps the same trigger on every sample of another array (the triggered
  test copy on which an attack's success rate is measured).

Randomness comes only from ``seed``, through separate streams, so that changing how many samples
are poisoned never changes the trigger:

* ``np.random.default_rng([seed, 0])`` chooses the poisoned samples (and draws flipped labels);
* ``np.random.default_rng([seed, 1])`` draws the trigger pattern (blend and adaptive-blend noise,
  WaNet field, default table columns): the same seed gives the same pattern in
  :func:`poison_arrays` and in :func:`apply_trigger`;
* ``np.random.default_rng([seed, 2])`` draws the per-image corners of a ``"random"`` patch;
* ``np.random.default_rng([seed, 3])`` draws the target class when none is given;
* ``np.random.default_rng([seed, 4])`` chooses the cover samples (so adding cover samples never
  changes which payload samples are drawn);
* ``np.random.default_rng([seed, 5])`` draws each adaptive-blend sample's trigger pieces
  (payload samples first, then cover samples).

Same inputs and seed give bitwise identical outputs; the inputs are never modified.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import numpy as np

from poisonguard.poison.adaptive import adaptive_blend_trigger
from poisonguard.poison.combined import merge_poisonings
from poisonguard.poison.cover import choose_cover, cover_count
from poisonguard.poison.label_flips import (
    check_labels,
    near_boundary_flips,
    pair_flips,
    poison_count,
    random_flips,
)
from poisonguard.poison.options import IMAGE_TRIGGERS, AttackOptions
from poisonguard.poison.registry import ATTACKS, BACKDOOR, LABEL_FLIP, Attack
from poisonguard.poison.result import ROLES, Poisoning
from poisonguard.poison.table_trigger import default_table_trigger, table_trigger
from poisonguard.poison.targets import NO_TARGET, trigger_targets
from poisonguard.poison.triggers import (
    blend_trigger,
    image_value_max,
    patch_trigger,
    sig_trigger,
    wanet_trigger,
)

__all__ = [
    "ATTACKS",
    "Attack",
    "AttackOptions",
    "IMAGE_TRIGGERS",
    "NO_TARGET",
    "Poisoning",
    "ROLES",
    "add_backdoor",
    "apply_trigger",
    "blend_trigger",
    "default_table_trigger",
    "image_value_max",
    "near_boundary_flips",
    "pair_flips",
    "patch_trigger",
    "poison_arrays",
    "poison_count",
    "random_flips",
    "sig_trigger",
    "table_trigger",
    "trigger_targets",
    "wanet_trigger",
]

logger = logging.getLogger(__name__)

# Seed streams (see the module docstring).
_CHOICE, _PATTERN, _POSITION, _TARGET, _COVER, _PIECES = 0, 1, 2, 3, 4, 5


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
    * ``options.cover_rate`` (with ``source_class``, or with ``adaptive-blend``):
      ``round(cover_rate * N)`` more samples, from classes other than the target and the
      source, get the trigger (adaptive-blend: a partial one) and keep their labels; they are
      marked in :attr:`Poisoning.cover`, not in ``poisoned``. See :mod:`.cover`.
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
    spec = _get_attack(attack)
    options = AttackOptions() if options is None else options
    x = np.asarray(x)
    labels = check_labels(labels, n_classes)
    n_classes = int(n_classes)
    seed = _check_seed(seed)
    _check_layout(spec, x)
    if x.shape[0] != labels.size:
        raise ValueError(f"x has {x.shape[0]} samples but labels {labels.size}")
    _check_variant(spec, options, target, n_classes)
    count = poison_count(rate, labels.size)
    description: dict = {"attack": spec.name, "rate": float(rate), "seed": seed}

    new_x = x.copy()
    new_labels = labels.copy()
    cover = np.empty(0, dtype=np.int64)
    wanted = np.full(labels.size, NO_TARGET, dtype=np.int64)
    if spec.kind == LABEL_FLIP:
        if exclude is not None:
            raise ValueError(f"exclude is for backdoors; {spec.name} draws from every sample")
        target, payload, flipped = _flip(
            spec.name, labels, n_classes, rate, target, seed, options, probabilities, description
        )
        new_labels[payload] = wanted[payload] = flipped
    else:
        target = _backdoor_target(spec, target, n_classes, seed, options)
        payload, cover, wanted = _choose_backdoor_samples(
            spec, labels, n_classes, count, rate, target, seed, options, exclude
        )
        rows = np.concatenate([payload, cover])  # payload first: the cover never moves its draws
        options, new_x[rows] = _stamp(spec, x, rows, labels, seed, options, perturb, description)
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
    spec = _get_attack(attack)
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


def apply_trigger(
    x: np.ndarray, *, attack: str, seed: int = 0, options: AttackOptions | None = None
) -> np.ndarray:
    """Stamp the trigger of ``attack`` on every sample: the triggered test copy.

    With the same ``seed`` and ``options`` as :func:`poison_arrays`, the trigger pattern is the
    one in the poisoned training samples (same blend noise, SIG signal, WaNet field, patch). The
    exceptions, by design:

    * ``patch`` with position ``"random"`` draws a new corner per sample;
    * ``adaptive-blend`` stamps the *whole* pattern (every piece) with ``options.test_alpha``;
    * ``clean-label`` stamps ``options.clean_label_trigger`` without the perturbation;
    * float images: ``value_max`` is inferred from ``x`` when ``options.value_max`` is None; pass
      :attr:`Poisoning.options` so the test copy gets the training ``value_max``;
    * ``table-trigger`` needs ``options.table_columns`` and ``table_values``, which default
      ones depend on the training data: pass :attr:`Poisoning.options`.

    Which triggered sample counts as a success for which class (all-to-one, all-to-all,
    source-specific) is :func:`trigger_targets`.

    Parameters
    ----------
    x : ndarray
        Images ``(N, C, H, W)`` or a table ``(N, D)``, as for :func:`poison_arrays`.
    attack : str
        A backdoor in :data:`ATTACKS`; label flips have no trigger (``ValueError``).
    seed : int
    options : AttackOptions or None

    Returns
    -------
    ndarray, same shape and dtype as ``x``
    """
    spec = _get_attack(attack)
    options = AttackOptions() if options is None else options
    if spec.kind == LABEL_FLIP:
        raise ValueError(f"{spec.name} changes labels only; it has no trigger to apply")
    x = np.asarray(x)
    seed = _check_seed(seed)
    _check_layout(spec, x)
    if spec.name == "table-trigger":
        if options.table_columns is None:
            raise ValueError(
                "apply_trigger for table-trigger needs options.table_columns and table_values "
                "(pass Poisoning.options): default ones depend on the training data"
            )
        return table_trigger(x, columns=options.table_columns, values=options.table_values)
    trigger = options.clean_label_trigger if spec.name == "clean-label" else spec.name
    return _image_trigger(trigger, x, options, seed=seed, test=True)


def _check_variant(
    spec: Attack, options: AttackOptions, target: int | None, n_classes: int
) -> None:
    """Refuse the options that do not fit the attack (all-to-all, source class, cover)."""
    relabels = [name for name, a in ATTACKS.items() if a.kind == BACKDOOR and name != "clean-label"]
    if options.all_to_all:
        if spec.name not in relabels:
            raise ValueError(
                f"all_to_all is for the backdoors that relabel ({', '.join(relabels)}); "
                f"not {spec.name}"
            )
        if target is not None:
            raise ValueError(
                f"an all-to-all backdoor relabels class c as (c + 1) mod {n_classes}; it takes "
                f"no target (got {target})"
            )
        if options.cover_rate > 0:
            raise ValueError("cover samples keep their label against one target; not all-to-all")
    source = options.source_class
    if source is not None and spec.name in ("flip-random", "flip-near-boundary"):
        raise ValueError(f"{spec.name} chooses its own classes; it takes no source_class")
    if source is not None and spec.kind == BACKDOOR:
        if spec.name == "clean-label":
            raise ValueError("clean-label draws from the target class; it takes no source_class")
        if not source < n_classes:
            raise ValueError(
                f"source_class {source} is not in 0..{n_classes - 1} ({n_classes} classes)"
            )
        if target is not None and target == source:
            raise ValueError(
                f"source_class {source} is the target class; a source-specific backdoor moves "
                "the source class to another class"
            )
    if options.cover_rate > 0:
        if spec.name not in relabels:
            kind = "changes labels only" if spec.kind == LABEL_FLIP else "keeps every label"
            raise ValueError(
                f"cover samples (cover_rate) go with a backdoor that relabels; {spec.name} {kind}"
            )
        if source is None and spec.name != "adaptive-blend":
            raise ValueError(
                "cover samples (cover_rate) go with a source-specific backdoor (source_class, "
                f"TaCT) or adaptive-blend; an all-to-one {spec.name} trigger on samples that "
                "keep their label would contradict its payload"
            )


def _backdoor_target(
    spec: Attack, target: int | None, n_classes: int, seed: int, options: AttackOptions
) -> int | None:
    if options.all_to_all:
        return None
    if target is None and options.source_class is not None:
        return _other_class(options.source_class, n_classes, seed)
    return _resolve_target(target, n_classes, seed)


def _choose_backdoor_samples(
    spec: Attack,
    labels: np.ndarray,
    n_classes: int,
    count: int,
    rate: float,
    target: int | None,
    seed: int,
    options: AttackOptions,
    exclude: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The payload and cover indices (sorted) and the class each sample is wanted as."""
    if exclude is None:
        exclude = np.zeros(labels.size, dtype=bool)
    exclude = np.asarray(exclude)
    if exclude.shape != labels.shape or exclude.dtype != bool:
        raise ValueError(f"exclude must be a boolean mask of shape ({labels.size},)")
    if spec.name == "clean-label":
        wanted = np.where(labels == target, target, NO_TARGET)
    else:
        wanted = trigger_targets(
            labels,
            n_classes,
            target=target,
            all_to_all=options.all_to_all,
            source_class=options.source_class,
        )
    pool = np.flatnonzero((wanted != NO_TARGET) & ~exclude)
    if count > pool.size:
        if spec.name == "clean-label":
            where = f"target class {target} has only {pool.size}"
        elif options.source_class is not None:
            where = f"source class {options.source_class} has only {pool.size}"
        elif options.all_to_all:
            where = f"only {pool.size} samples are available"
        else:
            where = f"only {pool.size} samples are outside target class {target}"
        if exclude.any():
            where += f" not taken by the earlier poisoning ({int(exclude.sum())} samples)"
        raise ValueError(
            f"rate {rate:g} of {labels.size} samples poisons {count} samples, but {where}"
        )
    choice_rng = np.random.default_rng([seed, _CHOICE])
    payload = np.sort(choice_rng.choice(pool, size=count, replace=False)).astype(np.int64)
    taken = exclude.copy()
    taken[payload] = True
    source = options.source_class
    cover = choose_cover(
        labels,
        count=cover_count(options.cover_rate, labels.size),
        excluded_classes=(target,) if source is None else (target, source),
        taken=taken,
        rng=np.random.default_rng([seed, _COVER]),
    )
    wanted = wanted.copy()
    wanted[cover] = target if target is not None else NO_TARGET
    return payload, cover, wanted


def _stamp(
    spec: Attack,
    x: np.ndarray,
    rows: np.ndarray,
    labels: np.ndarray,
    seed: int,
    options: AttackOptions,
    perturb: Callable[[np.ndarray, np.ndarray], np.ndarray] | None,
    description: dict,
) -> tuple[AttackOptions, np.ndarray]:
    """The triggered ``x[rows]``, with the options completed (value_max, table trigger)."""
    if spec.name == "table-trigger":
        options = _resolve_table_trigger(x, options, seed)
        description.update(columns=list(options.table_columns), values=list(options.table_values))
        triggered = table_trigger(
            x[rows], columns=options.table_columns, values=options.table_values
        )
        return options, triggered
    value_max = float(image_value_max(x) if options.value_max is None else options.value_max)
    options = dataclasses.replace(options, value_max=value_max)
    subset = x[rows]
    trigger = spec.name
    if spec.name == "clean-label":
        trigger = options.clean_label_trigger
        if perturb is not None:
            subset = _perturbed(perturb, subset, labels[rows], value_max)
        description.update(trigger=trigger, perturbed=perturb is not None)
    description.update(_trigger_description(trigger, options))
    return options, _image_trigger(trigger, subset, options, seed=seed)


def _mask(indices: np.ndarray, n: int) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[indices] = True
    return mask


def _get_attack(name: str) -> Attack:
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; valid: {', '.join(ATTACKS)}")
    return ATTACKS[name]


def _check_layout(spec: Attack, x: np.ndarray) -> None:
    if spec.data == "image" and x.ndim != 4:
        raise ValueError(
            f"attack {spec.name!r} needs images of shape (N, C, H, W); got x of shape {x.shape}"
        )
    if spec.data == "table" and x.ndim != 2:
        raise ValueError(
            f"attack {spec.name!r} needs a table of shape (N, D); got x of shape {x.shape}"
        )
    if x.ndim == 0:
        raise ValueError(f"x must have one row per sample; got shape {x.shape}")


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    return int(seed)


def _resolve_target(target: int | None, n_classes: int, seed: int) -> int:
    if target is None:
        return int(np.random.default_rng([seed, _TARGET]).integers(n_classes))
    if isinstance(target, bool) or not isinstance(target, int | np.integer):
        raise ValueError(f"target must be a class code; got {target!r}")
    if not 0 <= target < n_classes:
        raise ValueError(f"target {target} is not in 0..{n_classes - 1} ({n_classes} classes)")
    return int(target)


def _other_class(source: int, n_classes: int, seed: int) -> int:
    """A target drawn from the seed among the classes other than ``source``."""
    others = np.array([c for c in range(n_classes) if c != source])
    return int(others[np.random.default_rng([seed, _TARGET]).integers(others.size)])


def _flip(
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
    choice_rng = np.random.default_rng([seed, _CHOICE])
    if name == "flip-pair":
        source = options.source_class
        if source is None:
            raise ValueError("flip-pair needs options.source_class, the class to relabel")
        if not source < n_classes:
            raise ValueError(
                f"source_class {source} is not in 0..{n_classes - 1} ({n_classes} classes)"
            )
        if target is None:
            target = _other_class(source, n_classes, seed)
        target = _resolve_target(target, n_classes, seed)
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


def _resolve_table_trigger(x: np.ndarray, options: AttackOptions, seed: int) -> AttackOptions:
    if options.table_columns is not None:
        # Round the values to x's dtype, so the recorded trigger reproduces bit for bit.
        values = np.asarray(options.table_values, dtype=np.float64).astype(x.dtype)
        return dataclasses.replace(options, table_values=tuple(float(v) for v in values))
    columns, values = default_table_trigger(
        x, n_columns=min(3, x.shape[1]), rng=np.random.default_rng([seed, _PATTERN])
    )
    return dataclasses.replace(options, table_columns=columns, table_values=values)


def _image_trigger(
    name: str, images: np.ndarray, options: AttackOptions, *, seed: int, test: bool = False
) -> np.ndarray:
    """One image trigger with its seed streams: the same call in poison and in test copies
    (``test``: adaptive-blend's whole pattern with the test alpha)."""
    pattern_rng = np.random.default_rng([seed, _PATTERN])
    value_max = options.value_max
    if name == "adaptive-blend" and test:
        return blend_trigger(images, alpha=options.test_alpha, rng=pattern_rng, value_max=value_max)
    if name == "adaptive-blend":
        return adaptive_blend_trigger(
            images,
            alpha=options.blend_alpha,
            grid=options.adaptive_grid,
            pieces=options.pieces_shown,
            pattern_rng=pattern_rng,
            pieces_rng=np.random.default_rng([seed, _PIECES]),
            value_max=value_max,
        )
    if name == "patch":
        return patch_trigger(
            images,
            size=options.patch_size,
            position=options.patch_position,
            pattern=options.patch_pattern,
            rng=np.random.default_rng([seed, _POSITION]),
            value_max=value_max,
        )
    if name == "blend":
        return blend_trigger(
            images, alpha=options.blend_alpha, rng=pattern_rng, value_max=value_max
        )
    if name == "sig":
        return sig_trigger(
            images,
            delta=options.sig_delta,
            frequency=options.sig_frequency,
            value_max=value_max,
        )
    return wanet_trigger(
        images,
        grid_size=options.wanet_grid,
        strength=options.wanet_strength,
        rng=pattern_rng,
        value_max=value_max,
    )


def _trigger_description(name: str, options: AttackOptions) -> dict:
    described = {
        "patch": {
            "size": int(options.patch_size),
            "position": options.patch_position,
            "pattern": options.patch_pattern,
        },
        "blend": {"alpha": float(options.blend_alpha)},
        "adaptive-blend": {
            "alpha": float(options.blend_alpha),
            "test_alpha": float(options.test_alpha),
            "grid": int(options.adaptive_grid),
            "pieces": options.pieces_shown,
        },
        "sig": {"delta": float(options.sig_delta), "frequency": int(options.sig_frequency)},
        "wanet": {"grid_size": int(options.wanet_grid), "strength": float(options.wanet_strength)},
    }[name]
    return {**described, "value_max": float(options.value_max)}


def _perturbed(
    perturb: Callable[[np.ndarray, np.ndarray], np.ndarray],
    subset: np.ndarray,
    labels: np.ndarray,
    value_max: float,
) -> np.ndarray:
    result = np.asarray(perturb(subset.copy(), labels.copy()))
    if result.shape != subset.shape:
        raise ValueError(
            f"perturb returned shape {result.shape} for images of shape {subset.shape}"
        )
    if not np.issubdtype(result.dtype, np.number) or not np.isfinite(result).all():
        raise ValueError("perturb returned non-finite or non-numeric values")
    if subset.dtype == np.uint8:
        return np.clip(np.rint(result), 0, 255).astype(np.uint8)
    return np.clip(result, 0.0, value_max).astype(subset.dtype)
