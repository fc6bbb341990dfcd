"""The tunables of every attack: :class:`AttackOptions`, validated on construction."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from poisonguard.poison.text_triggers import (
    DEFAULT_TRIGGER_SENTENCE,
    DEFAULT_TRIGGER_WORDS,
    TEXT_POSITIONS,
    check_trigger_sentence,
    check_trigger_words,
)
from poisonguard.poison.triggers import PATCH_PATTERNS, PATCH_POSITIONS

__all__ = ["IMAGE_TRIGGERS", "AttackOptions"]

IMAGE_TRIGGERS = ("patch", "blend", "sig", "wanet")
"""The image triggers, usable alone (dirty-label) or as ``AttackOptions.clean_label_trigger``."""


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
        Blend ratio in ``(0, 1]`` of ``blend``, and of ``adaptive-blend``'s training samples.
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
        :func:`~poisonguard.poison.default_table_trigger`.
    source_class : int or None
        The class ``flip-pair`` relabels (required by it); with a dirty-label backdoor, the only
        class whose samples get the trigger and the target label (source-specific, TaCT).
    clean_label_trigger : {"patch", "blend", "sig", "wanet"}
        The trigger ``clean-label`` stamps.
    clean_label_epsilon : float
        Largest per-pixel change of ``clean-label``'s adversarial perturbation, in ``0..255``
        units (scaled to the image range); 0 stamps the trigger on unperturbed images. The
        perturbation itself is made by the caller (``perturb``), see
        :func:`poisonguard.poisoned_copy.poison_dataset`.
    value_max : float or None
        Brightest value of the image range; ``None`` takes
        :func:`~poisonguard.poison.image_value_max` of the images being poisoned.
        :attr:`Poisoning.options` holds the value used.
    all_to_all : bool
        Dirty-label backdoors: poisoned samples of class ``c`` (drawn from every class) get the
        label ``(c + 1) mod K`` instead of one target.
    cover_rate : float
        Share of all N samples, in ``[0, 1)``, that get the trigger but keep their true label
        (cover samples): TaCT's cover with ``source_class``, ``adaptive-blend``'s conservatism
        samples, ``wanet``'s noise-mode samples (the warp plus noise of their own). 0: none.
    adaptive_grid : int
        ``adaptive-blend``: the trigger is cut into ``adaptive_grid x adaptive_grid`` pieces.
    adaptive_pieces : int or None
        ``adaptive-blend``: how many pieces each training sample carries (chosen per sample);
        ``None`` is half of them, rounded down (8 of 16).
    test_alpha : float
        ``adaptive-blend``: blend ratio of the whole trigger in the test copy
        (:func:`~poisonguard.poison.apply_trigger`); Qi et al. test with a slightly higher
        alpha than they train with.
    trigger_words : tuple of str
        ``rare-word``: the trigger words, one drawn per insertion (default "cf", "mn", "bb",
        "tq"); each one word without spaces.
    trigger_count : int
        ``rare-word``: insertions per text.
    trigger_position : {"random", "start", "end"}
        ``rare-word`` and ``sentence``: where the trigger goes (random: a slot between words, or
        a sentence boundary, drawn per text).
    trigger_sentence : str
        ``sentence``: the inserted sentence (default Dai et al.'s "I watched this 3D movie last
        weekend.").
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
    all_to_all: bool = False
    cover_rate: float = 0.0
    adaptive_grid: int = 4
    adaptive_pieces: int | None = None
    test_alpha: float = 0.2
    trigger_words: tuple[str, ...] = DEFAULT_TRIGGER_WORDS
    trigger_count: int = 1
    trigger_position: str = "random"
    trigger_sentence: str = DEFAULT_TRIGGER_SENTENCE

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
        for name in ("blend_alpha", "test_alpha"):
            value = getattr(self, name)
            if not _is_number(value) or not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be in (0, 1]; got {value!r}")
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
        if not isinstance(self.all_to_all, bool | np.bool_):
            raise ValueError(f"all_to_all must be True or False; got {self.all_to_all!r}")
        if self.all_to_all and self.source_class is not None:
            raise ValueError(
                "all_to_all draws from every class and has no source class; "
                f"got source_class {self.source_class}"
            )
        if not _is_number(self.cover_rate) or not 0.0 <= self.cover_rate < 1.0:
            raise ValueError(f"cover_rate must be in [0, 1); got {self.cover_rate!r}")
        _require_int("adaptive_grid", self.adaptive_grid, minimum=2)
        if self.adaptive_pieces is not None:
            _require_int("adaptive_pieces", self.adaptive_pieces, minimum=1)
            if self.adaptive_pieces > self.adaptive_grid**2:
                raise ValueError(
                    f"adaptive_pieces {self.adaptive_pieces} is more than the "
                    f"{self.adaptive_grid}x{self.adaptive_grid} = {self.adaptive_grid**2} pieces"
                )
        # A list becomes a tuple and the sentence loses surrounding spaces, as used.
        object.__setattr__(self, "trigger_words", check_trigger_words(self.trigger_words))
        _require_int("trigger_count", self.trigger_count, minimum=1)
        if self.trigger_position not in TEXT_POSITIONS:
            raise ValueError(
                f"unknown trigger_position {self.trigger_position!r}; "
                f"valid: {', '.join(TEXT_POSITIONS)}"
            )
        object.__setattr__(self, "trigger_sentence", check_trigger_sentence(self.trigger_sentence))

    @property
    def pieces_shown(self) -> int:
        """``adaptive_pieces``, or half the ``adaptive_grid ** 2`` pieces when it is ``None``."""
        if self.adaptive_pieces is not None:
            return int(self.adaptive_pieces)
        return max(1, self.adaptive_grid**2 // 2)


def _require_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")


def _is_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float | np.integer | np.floating)
