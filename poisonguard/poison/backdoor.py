"""Backdoor samples: which samples a backdoor poisons, and the trigger stamped on them.

* :func:`choose_backdoor_samples` draws the payload samples (from the classes
  :func:`~poisonguard.poison.targets.trigger_targets` maps to a target) and the cover samples
  (:mod:`.cover`);
* :func:`stamp` puts the trigger on them (an image trigger of :mod:`.triggers` or
  :mod:`.adaptive`, :mod:`.table_trigger`, or a text trigger of :mod:`.text_triggers`), after
  ``clean-label``'s perturbation, and completes the options (``value_max``, a default table
  trigger) so that a test copy repeats it;
* :func:`apply_trigger` stamps the same trigger on every sample of another array, the triggered
  test copy.

Both draw the trigger from the same seed streams (:mod:`.seeds`), so the training samples and the
test copy carry the same pattern.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from poisonguard.poison.adaptive import adaptive_blend_trigger
from poisonguard.poison.cover import choose_cover, cover_count
from poisonguard.poison.options import AttackOptions
from poisonguard.poison.registry import LABEL_FLIP, Attack
from poisonguard.poison.seeds import CHOICE, COVER, NOISE, PATTERN, PIECES, POSITION, check_seed
from poisonguard.poison.table_trigger import default_table_trigger, table_trigger
from poisonguard.poison.targets import NO_TARGET, trigger_targets
from poisonguard.poison.text_triggers import rare_word_trigger, sentence_trigger
from poisonguard.poison.triggers import (
    blend_trigger,
    image_value_max,
    patch_trigger,
    sig_trigger,
    wanet_trigger,
)
from poisonguard.poison.validation import check_layout, get_attack

__all__ = ["apply_trigger", "choose_backdoor_samples", "stamp"]


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
      ones depend on the training data: pass :attr:`Poisoning.options`;
    * ``rare-word`` and ``sentence`` insert the same words or sentence at the same kind of
      position (``options.trigger_position``); a random position (and, from a list of several
      trigger words, the word) is drawn per text, so it differs from the training texts'.

    Which triggered sample counts as a success for which class (all-to-one, all-to-all,
    source-specific) is :func:`trigger_targets`.

    Parameters
    ----------
    x : ndarray
        Images ``(N, C, H, W)``, a table ``(N, D)`` or texts ``(N,)``, as for
        :func:`poison_arrays`.
    attack : str
        A backdoor in :data:`ATTACKS`; label flips have no trigger (``ValueError``).
    seed : int
    options : AttackOptions or None

    Returns
    -------
    ndarray, same shape and dtype as ``x``
    """
    spec = get_attack(attack)
    options = AttackOptions() if options is None else options
    if spec.kind == LABEL_FLIP:
        raise ValueError(f"{spec.name} changes labels only; it has no trigger to apply")
    x = np.asarray(x)
    seed = check_seed(seed)
    check_layout(spec, x)
    if spec.name == "table-trigger":
        if options.table_columns is None:
            raise ValueError(
                "apply_trigger for table-trigger needs options.table_columns and table_values "
                "(pass Poisoning.options): default ones depend on the training data"
            )
        return table_trigger(x, columns=options.table_columns, values=options.table_values)
    if spec.data == "text":
        return _text_trigger(spec.name, x, options, seed=seed)
    trigger = options.clean_label_trigger if spec.name == "clean-label" else spec.name
    return _image_trigger(trigger, x, options, seed=seed, test=True)


def choose_backdoor_samples(
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
    choice_rng = np.random.default_rng([seed, CHOICE])
    payload = np.sort(choice_rng.choice(pool, size=count, replace=False)).astype(np.int64)
    taken = exclude.copy()
    taken[payload] = True
    source = options.source_class
    cover = choose_cover(
        labels,
        count=cover_count(options.cover_rate, labels.size),
        excluded_classes=(target,) if source is None else (target, source),
        taken=taken,
        rng=np.random.default_rng([seed, COVER]),
    )
    wanted = wanted.copy()
    wanted[cover] = target if target is not None else NO_TARGET
    return payload, cover, wanted


def stamp(
    spec: Attack,
    x: np.ndarray,
    rows: np.ndarray,
    labels: np.ndarray,
    seed: int,
    options: AttackOptions,
    perturb: Callable[[np.ndarray, np.ndarray], np.ndarray] | None,
    description: dict,
    n_payload: int | None = None,
) -> tuple[AttackOptions, np.ndarray]:
    """The triggered ``x[rows]``, with the options completed (value_max, table trigger).

    ``rows[n_payload:]`` are cover samples (all of ``rows`` are payload when ``None``); only
    an all-to-one ``wanet`` stamps them differently, in its noise mode."""
    if spec.name == "table-trigger":
        options = _resolve_table_trigger(x, options, seed)
        description.update(columns=list(options.table_columns), values=list(options.table_values))
        triggered = table_trigger(
            x[rows], columns=options.table_columns, values=options.table_values
        )
        return options, triggered
    if spec.data == "text":
        description.update(_text_description(spec.name, options))
        return options, _text_trigger(spec.name, x[rows], options, seed=seed)
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
    return options, _image_trigger(trigger, subset, options, seed=seed, n_payload=n_payload)


def _resolve_table_trigger(x: np.ndarray, options: AttackOptions, seed: int) -> AttackOptions:
    if options.table_columns is not None:
        # Round the values to x's dtype, so the recorded trigger reproduces bit for bit.
        values = np.asarray(options.table_values, dtype=np.float64).astype(x.dtype)
        return dataclasses.replace(options, table_values=tuple(float(v) for v in values))
    columns, values = default_table_trigger(
        x, n_columns=min(3, x.shape[1]), rng=np.random.default_rng([seed, PATTERN])
    )
    return dataclasses.replace(options, table_columns=columns, table_values=values)


def _image_trigger(
    name: str,
    images: np.ndarray,
    options: AttackOptions,
    *,
    seed: int,
    test: bool = False,
    n_payload: int | None = None,
) -> np.ndarray:
    """One image trigger with its seed streams: the same call in poison and in test copies
    (``test``: adaptive-blend's whole pattern with the test alpha; ``images[n_payload:]``:
    cover samples, which an all-to-one ``wanet`` warps in its noise mode)."""
    pattern_rng = np.random.default_rng([seed, PATTERN])
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
            pieces_rng=np.random.default_rng([seed, PIECES]),
            value_max=value_max,
        )
    if name == "patch":
        return patch_trigger(
            images,
            size=options.patch_size,
            position=options.patch_position,
            pattern=options.patch_pattern,
            rng=np.random.default_rng([seed, POSITION]),
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
    # TaCT's cover (a source class) carries the exact trigger; an all-to-one WaNet's cover
    # is the paper's noise mode
    noise_mode = n_payload is not None and options.source_class is None
    payload = n_payload if noise_mode else images.shape[0]

    def warp(part: np.ndarray, noise_rng: np.random.Generator | None) -> np.ndarray:
        return wanet_trigger(
            part,
            grid_size=options.wanet_grid,
            strength=options.wanet_strength,
            # a fresh stream each call: the payload and the cover share the field
            rng=np.random.default_rng([seed, PATTERN]),
            noise_rng=noise_rng,
            value_max=value_max,
        )

    if payload >= images.shape[0]:
        return warp(images, None)
    cover = warp(images[payload:], np.random.default_rng([seed, NOISE]))
    return np.concatenate([warp(images[:payload], None), cover])


def _text_trigger(name: str, texts: np.ndarray, options: AttackOptions, *, seed: int) -> np.ndarray:
    """A text trigger with its seed streams: the words from ``PATTERN``, the places from
    ``POSITION``, the same call in poison and in test copies."""
    position_rng = np.random.default_rng([seed, POSITION])
    if name == "sentence":
        return sentence_trigger(
            texts,
            sentence=options.trigger_sentence,
            position=options.trigger_position,
            position_rng=position_rng,
        )
    return rare_word_trigger(
        texts,
        words=options.trigger_words,
        count=options.trigger_count,
        position=options.trigger_position,
        word_rng=np.random.default_rng([seed, PATTERN]),
        position_rng=position_rng,
    )


def _text_description(name: str, options: AttackOptions) -> dict:
    if name == "sentence":
        return {"sentence": options.trigger_sentence, "position": options.trigger_position}
    return {
        "words": list(options.trigger_words),
        "count": int(options.trigger_count),
        "position": options.trigger_position,
    }


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
