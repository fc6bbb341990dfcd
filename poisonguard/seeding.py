"""How random generators are derived from the user's seed.

Work done class by class draws from a generator of its own, seeded by the scan's seed *and* the
class code, so that a class's result does not depend on which other classes ran before it, in
which order, or on which machine: the per-class detectors give the same scores whether they run
in one loop, on a thread pool or as tasks on a Dask cluster.
"""

from __future__ import annotations

import numpy as np

__all__ = ["class_rng"]


def class_rng(seed: int, code: int) -> np.random.Generator:
    """The random generator of class ``code``'s work under ``seed``."""
    return np.random.default_rng([int(seed), int(code)])
