"""The rows of the detection benchmark (:mod:`detection`): what each one plants, and how its
attack success is measured.

A :class:`Row` names one poisoned training set: the data it starts from (Fashion-MNIST train, or
a two-class subset of it), the poison it plants (:class:`planting.Planted`: the new arrays, the
payload and cover masks for the ground truth) and, for each backdoor or targeted flip in it, an
:class:`planting.AttackTest`: how to stamp its trigger on test images and which class each test
image is then wanted as. Three groups:

* ``textbook`` (issue 3): all-to-one patch and blend at 1/5/10 %, random label flips at 5/10 %,
  no poison, and two checkerboard rows held out then; made with
  :func:`fashion_mnist.make_attack`, exactly as before;
* ``evasive`` (issue 13): attacks built to evade latent-separation defences, made with
  :func:`fashion_mnist.make_evasive_attack` (:mod:`poisonguard.poison`), and the all-to-one
  patch at 0.1 %, 0.3 %, 1 % and 5 % (``make_attack``'s patch; the last two are textbook rows
  too);
* ``held-out`` (issue 13): other triggers, targets, source classes and seeds, labelled
  "held out: not used in development", made with :func:`poisonguard.poison.poison_arrays`.

Every row is deterministic: the same images and labels give the same poisoning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from fashion_mnist import load_fashion_mnist
from planting import (  # noqa: F401 (AttackTest, Planted: re-exported for detection.py)
    AttackTest,
    Planted,
    evasive,
    pair_flip,
    poisoned,
    sig_then_patch,
    textbook,
)

GROUPS = ("textbook", "evasive", "held-out")
HELD_OUT = "held out: not used in development"
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
"""Fashion-MNIST's classes, by label."""


@dataclass(frozen=True)
class Row:
    """One benchmark row. ``build(images, labels, n_classes)`` plants its poison on the training
    data of ``classes`` (``None``: all ten; two classes: relabelled 0 and 1 in that order).
    ``held_out``: never used to develop or tune the scan (:data:`HELD_OUT`)."""

    name: str
    groups: tuple[str, ...]
    attack: str
    build: Callable[[np.ndarray, np.ndarray, int], Planted] = field(repr=False)
    classes: tuple[int, ...] | None = None
    held_out: bool = False

    @property
    def dataset(self) -> str:
        if self.classes is None:
            return "Fashion-MNIST train"
        named = " and ".join(f"{c} ({CLASS_NAMES[c]})" for c in self.classes)
        return f"Fashion-MNIST train, classes {named} as 0 and 1"


# --- data --------------------------------------------------------------------------------------


def select_classes(
    images: np.ndarray, labels: np.ndarray, classes: tuple[int, ...] | None
) -> tuple[np.ndarray, np.ndarray]:
    """The samples of ``classes``, relabelled ``0 .. len(classes) - 1`` in that order."""
    if classes is None:
        return images, labels
    keep = np.isin(labels, classes)
    codes = np.full(int(labels.max()) + 1, -1, dtype=np.int64)
    codes[list(classes)] = np.arange(len(classes))
    return images[keep], codes[labels[keep]]


def subset_rows(n: int, size: int | None, seed: int = 0) -> np.ndarray:
    """``size`` sample indices of ``n`` drawn with ``seed``, ascending (all when ``None``)."""
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def row_data(row: Row, split: str, subset: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """``(images, labels, n_classes)`` of ``split`` (``train`` or ``t10k``) for ``row``;
    ``subset`` keeps that many training images (drawn with seed 0; the test split is whole)."""
    images, labels = select_classes(*load_fashion_mnist(split), row.classes)
    if split == "train":
        rows = subset_rows(len(labels), subset)
        images, labels = images[rows], labels[rows]
    return images, labels, 10 if row.classes is None else len(row.classes)


def data_key(row: Row, subset: int | None) -> str:
    """Names the training set a row starts from (clean models are shared per key)."""
    classes = "all" if row.classes is None else "c" + "-".join(map(str, row.classes))
    return classes if subset is None else f"{classes}-subset{subset}"


# --- tests (attack success) --------------------------------------------------------------------


CHECKER = {"patch_pattern": "checkerboard", "patch_size": 4}
SIG_4 = {
    "clean_label_trigger": "sig",
    "clean_label_epsilon": 0.0,
    "sig_delta": 25.0,
    "sig_frequency": 4,
}


def _row(name: str, groups: str, attack: str, build, classes=None, held_out=None) -> Row:
    """``groups``: space-separated (a row may belong to two)."""
    held = "held-out" in groups.split() if held_out is None else held_out
    return Row(name, tuple(groups.split()), attack, build, classes, held)


ROWS: tuple[Row, ...] = (
    # issue 3's rows, unchanged
    _row(
        "patch-0.01-t0",
        "textbook evasive",
        "patch 3x3 white, bottom-right, 1 % -> 0",
        textbook("patch", 0.01, 0),
    ),
    _row(
        "patch-0.05-t0",
        "textbook evasive",
        "patch 3x3 white, bottom-right, 5 % -> 0",
        textbook("patch", 0.05, 0),
    ),
    _row(
        "patch-0.10-t0",
        "textbook",
        "patch 3x3 white, bottom-right, 10 % -> 0",
        textbook("patch", 0.10, 0),
    ),
    _row(
        "blend-0.01-t0", "textbook", "blend noise alpha 0.15, 1 % -> 0", textbook("blend", 0.01, 0)
    ),
    _row(
        "blend-0.05-t0", "textbook", "blend noise alpha 0.15, 5 % -> 0", textbook("blend", 0.05, 0)
    ),
    _row(
        "blend-0.10-t0", "textbook", "blend noise alpha 0.15, 10 % -> 0", textbook("blend", 0.10, 0)
    ),
    _row("flip-0.05-t0", "textbook", "random label flips 5 %", textbook("flip", 0.05, 0)),
    _row("flip-0.10-t0", "textbook", "random label flips 10 %", textbook("flip", 0.10, 0)),
    _row("none-0.00-t0", "textbook", "no poison", textbook("none", 0.0, 0)),
    _row(
        "checker-0.01-t7",
        "textbook",
        "4x4 checkerboard, top-left, 1 % -> 7",
        textbook("checker", 0.01, 7),
        held_out=True,
    ),
    _row(
        "checker-0.05-t7",
        "textbook",
        "4x4 checkerboard, top-left, 5 % -> 7",
        textbook("checker", 0.05, 7),
        held_out=True,
    ),
    # issue 13: attacks built to evade latent-separation defences
    _row(
        "patch-0.001-t0",
        "evasive",
        "patch 3x3 white, bottom-right, 0.1 % -> 0",
        textbook("patch", 0.001, 0),
    ),
    _row(
        "patch-0.003-t0",
        "evasive",
        "patch 3x3 white, bottom-right, 0.3 % -> 0",
        textbook("patch", 0.003, 0),
    ),
    _row(
        "tact-0.01-s3-t5",
        "evasive",
        "source-specific (TaCT) patch 3 -> 5, 1 % + 1 % cover",
        evasive("tact", rate=0.01, target=5, source_class=3, cover_rate=0.01),
    ),
    _row(
        "all-to-all-0.05",
        "evasive",
        "all-to-all patch (c -> c+1), 5 %",
        evasive("all-to-all", rate=0.05),
    ),
    _row(
        "adaptive-blend-0.003-t0",
        "evasive",
        "adaptive blend (8 of 4x4 pieces, alpha 0.15) -> 0, 0.3 % + 0.3 % conservatism",
        evasive("adaptive-blend", rate=0.003, target=0, cover_rate=0.003),
    ),
    _row(
        "clean-sig-0.05-t0",
        "evasive",
        "clean-label SIG (delta 20, f 6) on half of class 0 (rate 0.05)",
        evasive("clean-sig", rate=0.05, target=0),
    ),
    _row(
        "pair-flip-s2-t4", "evasive", "targeted flip: 30 % of class 2 labelled 4", pair_flip(2, 4)
    ),
    _row(
        "two-backdoors-0.01-t0-t1",
        "evasive",
        "two backdoors, 1 % each: patch -> 0, blend -> 1",
        evasive("two-backdoors", rate=0.01, target=0, second_target=1),
    ),
    _row(
        "two-class-1-7-patch-0.05",
        "evasive",
        "two classes (1 Trouser, 7 Sneaker as 0, 1): patch 5 % -> 0",
        textbook("patch", 0.05, 0),
        classes=(1, 7),
    ),
    _row(
        "blend-0.10-t6",
        "evasive",
        "blend noise alpha 0.15, 10 % -> 6 (as many poisons as clean shirts)",
        poisoned("blend", 0.10, target=6, seed=8),
    ),
    # issue 13, held out: not used in development (other triggers, targets, sources and seeds)
    _row(
        "held-tact-blend-0.01-s7-t1",
        "held-out",
        "source-specific blend 7 -> 1, 1 % + 1 % cover",
        poisoned("blend", 0.01, target=1, seed=3, source_class=7, cover_rate=0.01),
    ),
    _row(
        "held-all-to-all-checker-0.05",
        "held-out",
        "all-to-all 4x4 checkerboard top-left (c -> c+1), 5 %",
        poisoned("patch", 0.05, seed=4, all_to_all=True, patch_position="top-left", **CHECKER),
    ),
    _row(
        "held-checker-0.003-t4",
        "held-out",
        "4x4 checkerboard top-right, 0.3 % -> 4",
        poisoned("patch", 0.003, target=4, seed=5, patch_position="top-right", **CHECKER),
    ),
    _row(
        "held-two-backdoors-0.01-t8-t3",
        "held-out",
        "two backdoors, 1 % each: SIG -> 8, patch -> 3",
        sig_then_patch,
    ),
    _row(
        "held-two-class-0-9-blend-0.05",
        "held-out",
        "two classes (0 T-shirt, 9 Ankle boot as 0, 1): blend 5 % -> 1",
        poisoned("blend", 0.05, target=1, seed=7),
        classes=(0, 9),
    ),
    _row(
        "held-tact-patch-0.003-s5-t9",
        "held-out",
        "source-specific 2x2 patch bottom-left 5 -> 9, 0.3 % + 0.3 % cover",
        poisoned(
            "patch",
            0.003,
            target=9,
            seed=8,
            source_class=5,
            cover_rate=0.003,
            patch_position="bottom-left",
            patch_size=2,
        ),
    ),
    _row(
        "held-adaptive-blend-0.003-t8",
        "held-out",
        "adaptive blend (5 of 3x3 pieces, alpha 0.15) -> 8, 0.3 % + 0.3 % conservatism",
        poisoned(
            "adaptive-blend",
            0.003,
            target=8,
            seed=9,
            cover_rate=0.003,
            adaptive_grid=3,
            adaptive_pieces=5,
        ),
    ),
    _row(
        "held-clean-sig-0.05-t6",
        "held-out",
        "clean-label SIG (delta 25, f 4) on half of class 6 (rate 0.05)",
        poisoned("clean-label", 0.05, target=6, seed=10, **SIG_4),
    ),
    _row(
        "held-pair-flip-s9-t7",
        "held-out",
        "targeted flip: 30 % of class 9 labelled 7",
        pair_flip(9, 7, seed=11),
    ),
    # added with the farthest-samples test (0.1 %), which was developed on patch-0.001-t0 alone
    _row(
        "held-checker-0.001-t2",
        "held-out",
        "4x4 checkerboard bottom-left, 0.1 % -> 2",
        poisoned("patch", 0.001, target=2, seed=12, patch_position="bottom-left", **CHECKER),
    ),
    _row(
        "held-blend-0.001-t5",
        "held-out",
        "blend noise alpha 0.15, 0.1 % -> 5",
        poisoned("blend", 0.001, target=5, seed=13),
    ),
    # added 2026-12-06: the first WaNet row (a warp, no pattern added); no detection change
    # was made with it in view
    _row(
        "held-wanet-0.01-t3",
        "held-out",
        "WaNet warp (grid 4, strength 0.5), 1 % -> 3",
        poisoned("wanet", 0.01, target=3, seed=41),
    ),
    # added 2026-12-07 (nineteenth session) after the warp search, first scanned with it: other
    # seeds, targets, rates, grids and strengths, the paper's noise mode (cover samples warped
    # with noise of their own, labels kept) and a two-class subset; no detection change was
    # made with them in view
    _row(
        "held-wanet-noise-0.01-t7",
        "held-out",
        "WaNet warp (grid 4, strength 0.5), 1 % -> 7 + 2 % noise mode (labels kept)",
        poisoned("wanet", 0.01, target=7, seed=61, cover_rate=0.02),
    ),
    _row(
        "held-wanet-0.003-t0",
        "held-out",
        "WaNet warp (grid 4, strength 0.5), 0.3 % -> 0",
        poisoned("wanet", 0.003, target=0, seed=62),
    ),
    _row(
        "held-wanet-0.05-t5",
        "held-out",
        "WaNet warp (grid 4, strength 0.5), 5 % -> 5",
        poisoned("wanet", 0.05, target=5, seed=63),
    ),
    _row(
        "held-wanet-s1-0.01-t9",
        "held-out",
        "WaNet warp (grid 4, strength 1), 1 % -> 9",
        poisoned("wanet", 0.01, target=9, seed=64, wanet_strength=1.0),
    ),
    _row(
        "held-wanet-k8-0.01-t2",
        "held-out",
        "WaNet warp (grid 8, strength 0.5), 1 % -> 2",
        poisoned("wanet", 0.01, target=2, seed=65, wanet_grid=8),
    ),
    _row(
        "held-wanet-0.001-t8",
        "held-out",
        "WaNet warp (grid 4, strength 0.5), 0.1 % -> 8",
        poisoned("wanet", 0.001, target=8, seed=66),
    ),
    _row(
        "held-two-class-2-8-wanet-0.05",
        "held-out",
        "two classes (2 Pullover, 8 Bag as 0, 1): WaNet warp (grid 4, strength 0.5) 5 % -> 1",
        poisoned("wanet", 0.05, target=1, seed=67),
        classes=(2, 8),
    ),
    _row(
        "held-wanet-noise-0.05-t1",
        "held-out",
        "WaNet warp (grid 4, strength 0.5), 5 % -> 1 + 10 % noise mode (labels kept)",
        poisoned("wanet", 0.05, target=1, seed=68, cover_rate=0.10),
    ),
    # added 2026-12-07 (twentieth session) before their first scan, after the anchors of the
    # nineteenth: targets no WaNet row had (coats, shirts), another grid and strength, a
    # source-specific warp with cover, a two-class subset of the two most confused classes;
    # no detection change was made with them in view
    _row(
        "held-wanet-0.01-t4",
        "held-out",
        "WaNet warp (grid 4, strength 0.5), 1 % -> 4",
        poisoned("wanet", 0.01, target=4, seed=71),
    ),
    _row(
        "held-wanet-noise-0.01-t6",
        "held-out",
        "WaNet warp (grid 4, strength 0.5), 1 % -> 6 + 2 % noise mode (labels kept)",
        poisoned("wanet", 0.01, target=6, seed=72, cover_rate=0.02),
    ),
    _row(
        "held-wanet-s075-k6-0.05-t4",
        "held-out",
        "WaNet warp (grid 6, strength 0.75), 5 % -> 4",
        poisoned("wanet", 0.05, target=4, seed=73, wanet_grid=6, wanet_strength=0.75),
    ),
    _row(
        "held-two-class-4-6-wanet-0.05",
        "held-out",
        "two classes (4 Coat, 6 Shirt as 0, 1): WaNet warp (grid 4, strength 0.5) 5 % -> 0",
        poisoned("wanet", 0.05, target=0, seed=74),
        classes=(4, 6),
    ),
    _row(
        "held-tact-wanet-0.01-s0-t8",
        "held-out",
        "source-specific WaNet warp (grid 4, strength 0.5) 0 -> 8, 1 % + 1 % cover",
        poisoned("wanet", 0.01, target=8, seed=75, source_class=0, cover_rate=0.01),
    ),
    # added 2026-12-07 (twentieth session) after the warp was asked with one source's probes,
    # before their first scan: source-specific warps between the two most alike classes
    # (pullovers into the coats) and at 0.3 % (sneakers into the sandals)
    _row(
        "held-tact-wanet-0.01-s2-t4",
        "held-out",
        "source-specific WaNet warp (grid 4, strength 0.5) 2 -> 4, 1 % + 1 % cover",
        poisoned("wanet", 0.01, target=4, seed=76, source_class=2, cover_rate=0.01),
    ),
    _row(
        "held-tact-wanet-0.003-s7-t5",
        "held-out",
        "source-specific WaNet warp (grid 4, strength 0.5) 7 -> 5, 0.3 % + 0.3 % cover",
        poisoned("wanet", 0.003, target=5, seed=77, source_class=7, cover_rate=0.003),
    ),
    # added 2026-12-06 (fourteenth session): adaptive blends poisoned after the common-pattern
    # test was written (its fresh rows, `poisonguard poison --seed 51/52/53`); the erasure fix
    # and the completion by pattern were then made with them in view: development data now
    _row(
        "held-adaptive-blend-0.003-t3",
        "held-out",
        "adaptive blend (8 of 4x4 pieces, alpha 0.15) -> 3, 0.3 % + 0.3 % conservatism",
        poisoned("adaptive-blend", 0.003, target=3, seed=51, cover_rate=0.003),
    ),
    _row(
        "held-adaptive-blend-0.003-t6",
        "held-out",
        "adaptive blend (8 of 4x4 pieces, alpha 0.15) -> 6, 0.3 % + 0.3 % conservatism",
        poisoned("adaptive-blend", 0.003, target=6, seed=52, cover_rate=0.003),
    ),
    _row(
        "held-adaptive-blend-0.01-t9",
        "held-out",
        "adaptive blend (8 of 4x4 pieces, alpha 0.15) -> 9, 1 % + 1 % conservatism",
        poisoned("adaptive-blend", 0.01, target=9, seed=53, cover_rate=0.01),
    ),
    # added 2026-12-06 after the completion by pattern, first scanned with the code of 1e4d8d6:
    # no detection change was made with them in view
    _row(
        "held-adaptive-blend-0.01-t2",
        "held-out",
        "adaptive blend (8 of 4x4 pieces, alpha 0.15) -> 2, 1 % + 1 % conservatism",
        poisoned("adaptive-blend", 0.01, target=2, seed=54, cover_rate=0.01),
    ),
    _row(
        "held-adaptive-blend-0.003-t7",
        "held-out",
        "adaptive blend (5 of 3x3 pieces, alpha 0.15) -> 7, 0.3 % + 0.3 % conservatism",
        poisoned(
            "adaptive-blend",
            0.003,
            target=7,
            seed=55,
            cover_rate=0.003,
            adaptive_grid=3,
            adaptive_pieces=5,
        ),
    ),
    # added 2026-12-06 (sixteenth session) after the common-pattern test's second bar, first
    # scanned with it: no detection change was made with them in view
    _row(
        "held-adaptive-blend-0.003-t4",
        "held-out",
        "adaptive blend (8 of 4x4 pieces, alpha 0.15) -> 4, 0.3 % + 0.3 % conservatism",
        poisoned("adaptive-blend", 0.003, target=4, seed=56, cover_rate=0.003),
    ),
    _row(
        "held-adaptive-blend-0.003-t1",
        "held-out",
        "adaptive blend (5 of 3x3 pieces, alpha 0.15) -> 1, 0.3 % + 0.3 % conservatism",
        poisoned(
            "adaptive-blend",
            0.003,
            target=1,
            seed=57,
            cover_rate=0.003,
            adaptive_grid=3,
            adaptive_pieces=5,
        ),
    ),
)
"""Every row, in the order they run."""


def select_rows(only: str | None) -> list[Row]:
    """The rows named in ``only`` (comma-separated row names or groups: ``textbook``,
    ``evasive``, ``held-out``), in table order; every row when ``None``."""
    if not only:
        return list(ROWS)
    wanted = {name.strip() for name in only.split(",") if name.strip()}
    known = {row.name for row in ROWS} | set(GROUPS)
    unknown = sorted(wanted - known)
    if unknown:
        raise ValueError(
            f"unknown row(s) {', '.join(unknown)}; valid: {', '.join(GROUPS)}, "
            + ", ".join(row.name for row in ROWS)
        )
    return [row for row in ROWS if row.name in wanted or wanted.intersection(row.groups)]
