"""Poison generation: poisoned copies of a dataset's arrays, with the ground truth.

PoisonGuard audits data for poisoning; this package makes the poison it is measured against.
The attacks are plain functions over arrays (:mod:`.triggers`, :mod:`.table_trigger`,
:mod:`.label_flips`), registered by name in :data:`ATTACKS`, and two entry points:

* :func:`poison_arrays` poisons ``round(rate * N)`` samples of a training set and returns a
  :class:`Poisoning`: the new arrays, the mask of poisoned samples and the parameters used;
* :func:`apply_trigger` stamps the same trigger on every sample of another array (the triggered
  test copy on which an attack's success rate is measured).

Randomness comes only from ``seed``, through separate streams, so that changing how many samples
are poisoned never changes the trigger:

* ``np.random.default_rng([seed, 0])`` chooses the poisoned samples (and draws flipped labels);
* ``np.random.default_rng([seed, 1])`` draws the trigger pattern (blend noise, WaNet field,
  default table columns): the same seed gives the same pattern in :func:`poison_arrays` and in
  :func:`apply_trigger`;
* ``np.random.default_rng([seed, 2])`` draws the per-image corners of a ``"random"`` patch;
* ``np.random.default_rng([seed, 3])`` draws the target class when none is given.

Same inputs and seed give bitwise identical outputs; the inputs are never modified.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from poisonguard.poison.label_flips import (
    check_labels,
    near_boundary_flips,
    pair_flips,
    poison_count,
    random_flips,
)
from poisonguard.poison.table_trigger import default_table_trigger, table_trigger
from poisonguard.poison.triggers import (
    PATCH_PATTERNS,
    PATCH_POSITIONS,
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
    "Poisoning",
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
    "wanet_trigger",
]

logger = logging.getLogger(__name__)

BACKDOOR = "backdoor"
LABEL_FLIP = "label-flip"

# Seed streams (see the module docstring).
_CHOICE, _PATTERN, _POSITION, _TARGET = 0, 1, 2, 3

IMAGE_TRIGGERS = ("patch", "blend", "sig", "wanet")
"""The image triggers, usable alone (dirty-label) or as ``AttackOptions.clean_label_trigger``."""


@dataclass(frozen=True)
class Attack:
    """A registered attack.

    ``kind`` is ``"backdoor"`` (a trigger in the input, read by the model as the target class)
    or ``"label-flip"`` (wrong labels, inputs untouched). ``data`` is the layout it applies to:
    ``"image"`` (``(N, C, H, W)``), ``"table"`` (``(N, D)``) or ``"any"`` (label flips ignore
    ``x``). ``needs`` names the extra input :func:`poison_arrays` takes: ``"probabilities"``
    (required), ``"perturbation"`` (optional but what makes the attack work, see
    ``clean-label``) or ``""``.
    """

    name: str
    kind: str
    data: str
    summary: str
    paper: str
    needs: str = ""


ATTACKS: dict[str, Attack] = {
    attack.name: attack
    for attack in [
        Attack(
            "patch",
            BACKDOOR,
            "image",
            "square patch in a corner (or at random), label set to the target",
            'Gu, Dolan-Gavitt & Garg, "BadNets: Identifying Vulnerabilities in the Machine '
            'Learning Model Supply Chain", 2017 (arXiv:1708.06733)',
        ),
        Attack(
            "blend",
            BACKDOOR,
            "image",
            "blended with one random-noise image, label set to the target",
            'Chen, Liu, Li, Lu & Song, "Targeted Backdoor Attacks on Deep Learning Systems '
            'Using Data Poisoning", 2017 (arXiv:1712.05526)',
        ),
        Attack(
            "sig",
            BACKDOOR,
            "image",
            "horizontal sinusoid added, label set to the target (the paper's clean-label "
            "form is clean-label with the sig trigger)",
            'Barni, Kallas & Tondi, "A New Backdoor Attack in CNNs by Training Set Corruption '
            'Without Label Poisoning", ICIP 2019',
        ),
        Attack(
            "wanet",
            BACKDOOR,
            "image",
            "smooth random warp of the image, label set to the target (no noise-mode samples)",
            'Nguyen & Tran, "WaNet - Imperceptible Warping-based Backdoor Attack", ICLR 2021',
        ),
        Attack(
            "clean-label",
            BACKDOOR,
            "image",
            "target-class images, optionally perturbed, get a trigger; labels kept",
            'Turner, Tsipras & Madry, "Label-Consistent Backdoor Attacks", 2019 (arXiv:1912.02771)',
            needs="perturbation",
        ),
        Attack(
            "table-trigger",
            BACKDOOR,
            "table",
            "a few columns set to out-of-range values, label set to the target",
            "tabular form of BadNets (Gu, Dolan-Gavitt & Garg, 2017), as in Joe, Mehra, Shin "
            '& Hamm, "Machine Learning with Electronic Health Records is Vulnerable to '
            'Backdoor Trigger Attacks", 2021',
        ),
        Attack(
            "flip-random",
            LABEL_FLIP,
            "any",
            "random samples relabelled uniformly to another class",
            'Frénay & Verleysen, "Classification in the Presence of Label Noise: a Survey", '
            "IEEE TNNLS 2014",
        ),
        Attack(
            "flip-pair",
            LABEL_FLIP,
            "any",
            "samples of the source class relabelled as the target class",
            'Han et al., "Co-teaching: Robust Training of Deep Neural Networks with Extremely '
            'Noisy Labels", NeurIPS 2018',
        ),
        Attack(
            "flip-near-boundary",
            LABEL_FLIP,
            "any",
            "smallest-margin samples relabelled to their runner-up class",
            'margin-based flips after Biggio, Nelson & Laskov, "Support Vector Machines Under '
            'Adversarial Label Noise", ACML 2011',
            needs="probabilities",
        ),
    ]
}


@dataclass(frozen=True)
class AttackOptions:
    """Every tunable of every attack, with the papers' defaults; each attack reads its own.

    Attributes
    ----------
    patch_size : int
        Side of the BadNets square, in pixels.
    patch_position : {"bottom-right", "bottom-left", "top-right", "top-left", "random"}
    patch_pattern : {"white", "black", "checkerboard"}
    blend_alpha : float
        Blend ratio in ``(0, 1]``.
    sig_delta : float
        SIG amplitude in ``0..255`` units (scaled to the image range).
    sig_frequency : int
        SIG periods across the image width.
    wanet_grid : int
        WaNet control-grid side ``k`` (>= 2).
    wanet_strength : float
        WaNet warping strength ``s``.
    table_columns, table_values : tuple or None
        The table trigger; both ``None`` (default) picks them from the clean data with
        :func:`default_table_trigger`.
    source_class : int or None
        The class ``flip-pair`` relabels (required by it).
    clean_label_trigger : {"patch", "blend", "sig", "wanet"}
        The trigger ``clean-label`` stamps.
    clean_label_epsilon : float
        Largest per-pixel change of ``clean-label``'s adversarial perturbation, in ``0..255``
        units (scaled to the image range); 0 stamps the trigger on unperturbed images. The
        perturbation itself is made by the caller (``perturb``), see
        :func:`poisonguard.poisoned_copy.poison_dataset`.
    value_max : float or None
        Brightest value of the image range; ``None`` takes :func:`image_value_max` of the images
        being poisoned. :attr:`Poisoning.options` holds the value used.
    """

    patch_size: int = 3
    patch_position: str = "bottom-right"
    patch_pattern: str = "white"
    blend_alpha: float = 0.15
    sig_delta: float = 20.0
    sig_frequency: int = 6
    wanet_grid: int = 4
    wanet_strength: float = 0.5
    table_columns: tuple[int, ...] | None = None
    table_values: tuple[float, ...] | None = None
    source_class: int | None = None
    clean_label_trigger: str = "patch"
    clean_label_epsilon: float = 16.0
    value_max: float | None = None

    def __post_init__(self) -> None:
        if not _is_number(self.clean_label_epsilon) or not 0 <= self.clean_label_epsilon <= 255:
            raise ValueError(
                f"clean_label_epsilon must be in [0, 255]; got {self.clean_label_epsilon!r}"
            )
        _require_int("patch_size", self.patch_size, minimum=1)
        if self.patch_position not in PATCH_POSITIONS:
            raise ValueError(
                f"unknown patch_position {self.patch_position!r}; "
                f"valid: {', '.join(PATCH_POSITIONS)}"
            )
        if self.patch_pattern not in PATCH_PATTERNS:
            raise ValueError(
                f"unknown patch_pattern {self.patch_pattern!r}; valid: {', '.join(PATCH_PATTERNS)}"
            )
        if not _is_number(self.blend_alpha) or not 0.0 < self.blend_alpha <= 1.0:
            raise ValueError(f"blend_alpha must be in (0, 1]; got {self.blend_alpha!r}")
        if not _is_number(self.sig_delta) or not 0.0 < self.sig_delta < np.inf:
            raise ValueError(f"sig_delta must be a positive number; got {self.sig_delta!r}")
        _require_int("sig_frequency", self.sig_frequency, minimum=1)
        _require_int("wanet_grid", self.wanet_grid, minimum=2)
        if not _is_number(self.wanet_strength) or not 0.0 < self.wanet_strength < np.inf:
            raise ValueError(
                f"wanet_strength must be a positive number; got {self.wanet_strength!r}"
            )
        if (self.table_columns is None) != (self.table_values is None):
            raise ValueError("give table_columns and table_values together, or neither")
        if self.table_columns is not None:
            columns = tuple(self.table_columns)
            values = tuple(self.table_values)
            if not columns:
                raise ValueError("table_columns is empty")
            for column in columns:
                _require_int("each of table_columns", column, minimum=0)
            if len(set(columns)) != len(columns):
                raise ValueError(f"table_columns {list(columns)} repeat a column")
            if len(values) != len(columns):
                raise ValueError(
                    f"table_columns has {len(columns)} entries but table_values {len(values)}"
                )
            if not all(_is_number(v) and np.isfinite(v) for v in values):
                raise ValueError(f"table_values must be finite numbers; got {list(values)}")
            # Lists become tuples, so the options stay hashable and compare by value.
            object.__setattr__(self, "table_columns", tuple(int(c) for c in columns))
            object.__setattr__(self, "table_values", tuple(float(v) for v in values))
        if self.source_class is not None:
            _require_int("source_class", self.source_class, minimum=0)
        if self.clean_label_trigger not in IMAGE_TRIGGERS:
            raise ValueError(
                f"unknown clean_label_trigger {self.clean_label_trigger!r}; "
                f"valid: {', '.join(IMAGE_TRIGGERS)}"
            )
        if self.value_max is not None and (
            not _is_number(self.value_max) or not 0.0 < self.value_max < np.inf
        ):
            raise ValueError(f"value_max must be a positive number; got {self.value_max!r}")


@dataclass
class Poisoning:
    """A poisoned copy of a dataset's arrays and the ground truth of what changed.

    Attributes
    ----------
    x : ndarray
        Same shape and dtype as the input; a copy even when unchanged (label flips).
    labels : ndarray of int64, shape (N,)
    poisoned : ndarray of bool, shape (N,)
        True exactly where ``x`` or the label differs from the input.
    original_labels : ndarray of int64, shape (N,)
    attack : str
    target : int or None
        The target class of a backdoor, the destination of ``flip-pair``; ``None`` for the
        other flips.
    description : dict
        JSON-able record of the parameters used (attack, rate, seed, target, count, and the
        attack's own: position, alpha, columns and values, ...).
    seed : int
    options : AttackOptions
        The options actually used, with ``value_max`` (images) or ``table_columns`` and
        ``table_values`` (tables) filled in: ``apply_trigger(x_test, attack=p.attack,
        seed=p.seed, options=p.options)`` stamps exactly the training trigger.
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

    @property
    def n_poisoned(self) -> int:
        return int(self.poisoned.sum())


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
) -> Poisoning:
    """Poison ``round(rate * N)`` samples with one attack of :data:`ATTACKS`.

    * Backdoors (``patch``, ``blend``, ``sig``, ``wanet``, ``table-trigger``), all-to-one: the
      samples are drawn from the classes other than ``target``, get the trigger and the label
      ``target``.
    * ``clean-label``: the samples are drawn from the target class only and keep their labels;
      ``perturb(x_subset, labels_subset)``, when given, is applied before the trigger
      (``options.clean_label_trigger``). Turner et al. make the target-class images hard to
      classify (an adversarial perturbation or a GAN interpolation) so the network must rely on
      the trigger; without ``perturb`` the attack is much weaker. The result is clipped to the
      image range and cast to the input dtype.
    * ``flip-random``, ``flip-pair`` (from ``options.source_class`` to ``target``),
      ``flip-near-boundary`` (needs ``probabilities``): see :mod:`.label_flips`.

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
        Share of *all* N samples poisoned, in ``(0, 1)``, for every attack (``clean-label`` and
        ``flip-pair`` too, whose samples come from one class).
    target : int or None
        Target class of a backdoor, destination of ``flip-pair``. ``None`` draws it from the
        seed (uniform over the classes; for ``flip-pair`` over the classes other than the
        source). Must be ``None`` for ``flip-random`` and ``flip-near-boundary``.
    seed : int
        Non-negative; see the module docstring for its streams.
    options : AttackOptions or None
        ``None`` uses the defaults.
    probabilities : ndarray, shape (N, n_classes), optional
        Out-of-sample class probabilities, for ``flip-near-boundary``.
    perturb : callable, optional
        For ``clean-label``.

    Returns
    -------
    Poisoning
        ``poisoned.sum() == round(rate * N)``, except for ``clean-label`` samples the trigger
        leaves unchanged (a white patch on a white corner), which are not marked and are logged.

    Raises
    ------
    ValueError
        Unknown attack, data of the wrong layout, a rate outside ``(0, 1)`` or poisoning no
        sample or more samples than the pool it draws from, a bad target, missing
        ``probabilities`` or ``source_class``.
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
    count = poison_count(rate, labels.size)
    choice_rng = np.random.default_rng([seed, _CHOICE])
    description: dict = {"attack": spec.name, "rate": float(rate), "seed": seed}

    new_x = x.copy()
    new_labels = labels.copy()
    if spec.kind == LABEL_FLIP:
        target, indices, flipped = _flip(
            spec.name, labels, n_classes, rate, target, seed, options, probabilities, description
        )
        new_labels[indices] = flipped
    else:
        target = _resolve_target(target, n_classes, seed)
        if spec.name == "clean-label":
            pool = np.flatnonzero(labels == target)
            where = f"target class {target} has only {pool.size}"
        else:
            pool = np.flatnonzero(labels != target)
            where = f"only {pool.size} samples are outside target class {target}"
        if count > pool.size:
            raise ValueError(
                f"rate {rate:g} of {labels.size} samples poisons {count} samples, but {where}"
            )
        indices = np.sort(choice_rng.choice(pool, size=count, replace=False))
        if spec.name == "table-trigger":
            options = _resolve_table_trigger(x, options, seed)
            new_x[indices] = table_trigger(
                x[indices], columns=options.table_columns, values=options.table_values
            )
            description.update(
                columns=list(options.table_columns), values=list(options.table_values)
            )
        else:
            value_max = float(
                image_value_max(x) if options.value_max is None else options.value_max
            )
            options = dataclasses.replace(options, value_max=value_max)
            subset = x[indices]
            trigger = spec.name
            if spec.name == "clean-label":
                trigger = options.clean_label_trigger
                if perturb is not None:
                    subset = _perturbed(perturb, subset, labels[indices], value_max)
                description.update(trigger=trigger, perturbed=perturb is not None)
            new_x[indices] = _image_trigger(trigger, subset, options, seed=seed)
            description.update(_trigger_description(trigger, options))
        if spec.name != "clean-label":
            new_labels[indices] = target

    changed = new_labels != labels
    if new_x.size:
        changed |= (new_x != x).reshape(labels.size, -1).any(axis=1)
    if changed.sum() < count:
        logger.warning(
            "%d of the %d samples chosen for %s were left unchanged by the trigger; "
            "they are not marked poisoned",
            count - int(changed.sum()),
            count,
            spec.name,
        )
    description.update(target=target, n_poisoned=int(changed.sum()))
    logger.info("%s: poisoned %d of %d samples", spec.name, int(changed.sum()), labels.size)
    return Poisoning(
        x=new_x,
        labels=new_labels,
        poisoned=changed,
        original_labels=labels.copy(),
        attack=spec.name,
        target=target,
        description=description,
        seed=seed,
        options=options,
    )


def apply_trigger(
    x: np.ndarray, *, attack: str, seed: int = 0, options: AttackOptions | None = None
) -> np.ndarray:
    """Stamp the trigger of ``attack`` on every sample: the triggered test copy.

    With the same ``seed`` and ``options`` as :func:`poison_arrays`, the trigger pattern is the
    one in the poisoned training samples (same blend noise, SIG signal, WaNet field, patch). The
    exceptions, by design:

    * ``patch`` with position ``"random"`` draws a new corner per sample;
    * ``clean-label`` stamps ``options.clean_label_trigger`` without the perturbation;
    * float images: ``value_max`` is inferred from ``x`` when ``options.value_max`` is None; pass
      :attr:`Poisoning.options` so the test copy gets the training ``value_max``;
    * ``table-trigger`` needs ``options.table_columns`` and ``table_values``, which default
      ones depend on the training data: pass :attr:`Poisoning.options`.

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
    return _image_trigger(trigger, x, options, seed=seed)


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
            others = np.array([c for c in range(n_classes) if c != source])
            target = int(others[np.random.default_rng([seed, _TARGET]).integers(others.size)])
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


def _image_trigger(name: str, images: np.ndarray, options: AttackOptions, *, seed: int):
    """One image trigger with its seed streams: the same call in poison and in test copies."""
    pattern_rng = np.random.default_rng([seed, _PATTERN])
    value_max = options.value_max
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


def _require_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")


def _is_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float | np.integer | np.floating)
