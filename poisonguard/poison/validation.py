"""Checks of an attack's inputs, made before anything is drawn: the attack's name, the layout
of ``x``, and whether the options fit the attack (all-to-all, source class, cover samples)."""

from __future__ import annotations

import numpy as np

from poisonguard.poison.options import AttackOptions
from poisonguard.poison.registry import ATTACKS, BACKDOOR, LABEL_FLIP, Attack

__all__ = ["check_layout", "check_variant", "get_attack"]


def get_attack(name: str) -> Attack:
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; valid: {', '.join(ATTACKS)}")
    return ATTACKS[name]


def check_layout(spec: Attack, x: np.ndarray) -> None:
    if x.ndim == 0:
        raise ValueError(f"x must have one row per sample; got shape {x.shape}")
    is_text = x.ndim == 1 and x.dtype == object
    if spec.data in ("image", "table") and is_text:
        texts = ", ".join(n for n, a in ATTACKS.items() if a.data in ("text", "any"))
        raise ValueError(
            f"attack {spec.name!r} is for {spec.data}s; this is a text dataset (attacks for "
            f"text: {texts})"
        )
    if spec.data == "text" and not is_text:
        raise ValueError(
            f"attack {spec.name!r} is for text datasets (a 1-D object array of str); got x of "
            f"shape {x.shape} and dtype {x.dtype}"
        )
    if spec.data == "image" and x.ndim != 4:
        raise ValueError(
            f"attack {spec.name!r} needs images of shape (N, C, H, W); got x of shape {x.shape}"
        )
    if spec.data == "table" and x.ndim != 2:
        raise ValueError(
            f"attack {spec.name!r} needs a table of shape (N, D); got x of shape {x.shape}"
        )


def check_variant(spec: Attack, options: AttackOptions, target: int | None, n_classes: int) -> None:
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
        if source is None and spec.name not in ("adaptive-blend", "wanet"):
            raise ValueError(
                "cover samples (cover_rate) go with a source-specific backdoor (source_class, "
                f"TaCT), adaptive-blend or wanet (noise mode); an all-to-one {spec.name} "
                "trigger on samples that keep their label would contradict its payload"
            )
