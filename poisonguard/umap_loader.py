"""UMAP, imported with numba's on-disk cache on for the compiled functions a layout runs.

umap-learn compiles its numba functions the first time a process calls them and, for most of
them, keeps the machine code in memory only (they are declared without ``cache=True``), so
every scan paid the compilation again: on the report's map of 6,000 points, about 5 s of a
7.5 s layout were spent compiling two functions that then run for 6 ms (``smooth_knn_dist``,
``compute_membership_strengths``) and the layout's epoch function. With numba's cache on
(``Dispatcher.enable_caching``, what ``cache=True`` does), the first scan writes the compiled
code next to umap's sources (or under ``NUMBA_CACHE_DIR``) and later scans load it: 2.8 s for
the same map, the same coordinates (numba checks the source file's time stamp before using a
cached entry). Where no cache folder can be written, the functions compile as before.
"""

from __future__ import annotations

import logging
from types import ModuleType

__all__ = ["CACHED_FUNCTIONS", "load_umap"]

logger = logging.getLogger(__name__)

CACHED_FUNCTIONS = {
    "umap.umap_": ("smooth_knn_dist", "compute_membership_strengths"),
    "umap.layouts": ("_nb_optimize_layout_euclidean_single_epoch",),
}
"""The numba functions of umap-learn that a Euclidean layout compiles, by module."""

_loaded: ModuleType | None = None


def load_umap() -> ModuleType:
    """The ``umap`` module, its layout's numba functions cached on disk where possible."""
    global _loaded
    if _loaded is not None:
        return _loaded
    import importlib

    import umap  # slow to import (numba); imported where a layout is asked for

    for module_name, names in CACHED_FUNCTIONS.items():
        module = importlib.import_module(module_name)
        for name in names:
            function = getattr(module, name, None)
            enable = getattr(function, "enable_caching", None)
            if enable is None:  # another umap-learn version: that function compiles as before
                continue
            try:
                enable()
            except (RuntimeError, OSError) as error:  # no cache folder can be written
                logger.debug("numba cache off for %s.%s: %s", module_name, name, error)
    _loaded = umap
    return umap
