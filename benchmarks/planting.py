"""What a detection-benchmark row plants (:mod:`detection_rows`): the poisoned arrays with
their payload and cover masks (:class:`Planted`), and for each backdoor or targeted flip an
:class:`AttackTest`, how to stamp its trigger on test images and which class each test image is
then wanted as. The builders make them from the textbook, evasive and held-out attacks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from fashion_mnist import (
    blend_images,
    blend_noise,
    make_attack,
    make_evasive_attack,
)

from poisonguard.poison import (
    ATTACKS,
    NO_TARGET,
    AttackOptions,
    Poisoning,
    add_backdoor,
    apply_trigger,
    poison_arrays,
    trigger_targets,
)


@dataclass(frozen=True)
class AttackTest:
    """How one attack's success is measured on test images ``(N, 28, 28)`` uint8.

    ``stamp`` returns the triggered copy (a targeted flip has no trigger: the images as they
    are); ``goals`` maps the true labels to the class each image is wanted as, ``NO_TARGET``
    (-1) where the attack makes no claim. Attack success: the share of counted images the model
    predicts as their goal.
    """

    name: str
    stamp: Callable[[np.ndarray], np.ndarray]
    goals: Callable[[np.ndarray], np.ndarray]


@dataclass
class Planted:
    """A poisoned training set and its ground truth (``x`` is ``(N, 28, 28)`` uint8)."""

    x: np.ndarray
    labels: np.ndarray
    original: np.ndarray
    payload: np.ndarray
    attacks: np.ndarray | str
    rate: float
    targets: tuple[int, ...] = ()
    tests: tuple[AttackTest, ...] = ()
    cover: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.cover is None:
            self.cover = np.zeros(len(self.labels), dtype=bool)

    @property
    def roles(self) -> np.ndarray:
        return np.where(self.payload, "payload", np.where(self.cover, "cover", "clean"))


def _all_to_one(target: int, n_classes: int) -> Callable[[np.ndarray], np.ndarray]:
    return lambda y: trigger_targets(y, n_classes, target=target)


def _poisoning_tests(poisoning: Poisoning, n_classes: int) -> tuple[AttackTest, ...]:
    """One test per backdoor (its own seed and options) or targeted flip of ``poisoning``."""
    tests = []
    for part in poisoning.parts or (poisoning,):
        options = part.options
        if part.attack == "flip-pair":
            source, target = options.source_class, part.target

            def goals(y, source=source, target=target):
                return np.where(y == source, target, NO_TARGET).astype(np.int64)

            tests.append(AttackTest(f"flip {source}->{target}", lambda x: x, goals))
            continue
        if ATTACKS[part.attack].kind != "backdoor":
            continue

        def stamp(x, part=part):
            return apply_trigger(
                x[:, None], attack=part.attack, seed=part.seed, options=part.options
            )[:, 0]

        if part.attack == "clean-label":
            goals = _all_to_one(part.target, n_classes)
        else:

            def goals(y, part=part):
                return trigger_targets(
                    y,
                    n_classes,
                    target=part.target,
                    all_to_all=part.options.all_to_all,
                    source_class=part.options.source_class,
                )

        to = "c+1" if part.options.all_to_all else str(part.target)
        tests.append(AttackTest(f"{part.attack}->{to}", stamp, goals))
    return tuple(tests)


def from_poisoning(poisoning: Poisoning, n_classes: int) -> Planted:
    """A :class:`Planted` from a :class:`~poisonguard.poison.Poisoning` of ``(N, 28, 28)``
    images (as :func:`fashion_mnist.make_evasive_attack` returns) or ``(N, 1, 28, 28)``."""
    x = poisoning.x[:, 0] if poisoning.x.ndim == 4 else poisoning.x
    parts = poisoning.parts or (poisoning,)
    targets = sorted({p.target for p in parts if p.target is not None})
    if not targets and any(p.options.all_to_all for p in parts):
        targets = list(range(n_classes))
    return Planted(
        x=x,
        labels=poisoning.labels,
        original=poisoning.original_labels,
        payload=poisoning.poisoned,
        cover=poisoning.cover,
        attacks=poisoning.sample_attacks,
        rate=float(poisoning.description.get("rate", sum(p.description["rate"] for p in parts))),
        targets=tuple(int(t) for t in targets),
        tests=_poisoning_tests(poisoning, n_classes),
    )


# --- builders ----------------------------------------------------------------------------------


def textbook(attack: str, rate: float, target: int) -> Callable[..., Planted]:
    """A row of :func:`fashion_mnist.make_attack` (``patch``, ``checker``, ``blend``, ``flip``,
    ``none``), seed 0."""

    def build(images: np.ndarray, labels: np.ndarray, n_classes: int) -> Planted:
        x, new, mask = make_attack(attack, images, labels, rate=rate, target=target, seed=0)
        tests: tuple[AttackTest, ...] = ()
        goals = _all_to_one(target, n_classes)
        if attack in ("patch", "checker"):
            options = (
                AttackOptions()
                if attack == "patch"
                else AttackOptions(
                    patch_size=4, patch_position="top-left", patch_pattern="checkerboard"
                )
            )

            def stamp(t):
                return apply_trigger(t[:, None], attack="patch", options=options)[:, 0]

            tests = (AttackTest(f"{attack}->{target}", stamp, goals),)
        elif attack == "blend":
            noise = blend_noise(labels, images.shape[1:], rate=rate, target=target, seed=0)
            tests = (AttackTest(f"blend->{target}", lambda t: blend_images(t, noise), goals),)
        backdoor = attack in ("patch", "checker", "blend")
        return Planted(
            x=x,
            labels=new,
            original=labels,
            payload=mask,
            attacks=attack,
            rate=rate,
            targets=(target,) if backdoor else (),
            tests=tests,
        )

    return build


def evasive(name: str, **kwargs) -> Callable[..., Planted]:
    """A row of :func:`fashion_mnist.make_evasive_attack` (seed 0)."""

    def build(images: np.ndarray, labels: np.ndarray, n_classes: int) -> Planted:
        poisoning = make_evasive_attack(name, images, labels, n_classes=n_classes, **kwargs)
        return from_poisoning(poisoning, n_classes)

    return build


def pair_flip(source: int, target: int, share: float = 0.3, **kwargs) -> Callable[..., Planted]:
    """Targeted flips of ``share`` of the ``source`` class to ``target``: the rate is
    ``round(share * class size) / N``."""

    def build(images: np.ndarray, labels: np.ndarray, n_classes: int) -> Planted:
        rate = round(share * int(np.sum(labels == source))) / len(labels)
        poisoning = make_evasive_attack(
            "pair-flip",
            images,
            labels,
            rate=rate,
            target=target,
            source_class=source,
            n_classes=n_classes,
            **kwargs,
        )
        return from_poisoning(poisoning, n_classes)

    return build


def poisoned(attack: str, rate: float, *, seed: int, target: int | None = None, **options):
    """A row of :func:`poisonguard.poison.poison_arrays` with ``AttackOptions(**options)``."""

    def build(images: np.ndarray, labels: np.ndarray, n_classes: int) -> Planted:
        poisoning = poison_arrays(
            images[:, None],
            labels,
            n_classes,
            attack=attack,
            rate=rate,
            target=target,
            seed=seed,
            options=AttackOptions(**options),
        )
        return from_poisoning(poisoning, n_classes)

    return build


def sig_then_patch(images: np.ndarray, labels: np.ndarray, n_classes: int) -> Planted:
    """Held out: dirty-label SIG 1 % -> 8 (seed 6), then a 3x3 patch 1 % -> 3 (seed 7)."""
    first = poison_arrays(
        images[:, None], labels, n_classes, attack="sig", rate=0.01, target=8, seed=6
    )
    both = add_backdoor(first, n_classes, attack="patch", rate=0.01, target=3)
    return from_poisoning(both, n_classes)
