"""The seed of an attack: its check, and the numbered streams every random draw comes from.

Each random draw of :mod:`poisonguard.poison` uses ``np.random.default_rng([seed, STREAM])``
with its own stream number below, so that changing how many samples are poisoned never changes
the trigger; the package docstring lists what each stream draws.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CHOICE", "COVER", "NOISE", "PATTERN", "PIECES", "POSITION", "TARGET", "check_seed"]

# Seed streams (see the package docstring).
CHOICE, PATTERN, POSITION, TARGET, COVER, PIECES, NOISE = 0, 1, 2, 3, 4, 5, 6


def check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    return int(seed)
