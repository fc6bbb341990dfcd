"""The report's UMAP layout keeps numba's compiled code on disk, and reads it back unchanged."""

import json
import os
import subprocess
import sys

import numpy as np

LAYOUT = """
import json, sys
import numpy as np
from poisonguard.report.projection import umap_coordinates
features = np.random.default_rng(0).normal(size=(40, 5)).astype(np.float32)
print(json.dumps(umap_coordinates(features, seed=1).tolist()))
"""


def _layout(cache_dir) -> np.ndarray:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    done = subprocess.run(
        [sys.executable, "-c", LAYOUT], env=env, capture_output=True, text=True, check=True
    )
    return np.asarray(json.loads(done.stdout.strip().splitlines()[-1]))


def test_compiled_layout_is_cached_and_gives_the_same_map(tmp_path):
    first = _layout(tmp_path)  # compiles, writes the cache
    cached = {p.name.split("-")[0] for p in tmp_path.rglob("*.nbi")}
    assert {
        "umap_.smooth_knn_dist",
        "umap_.compute_membership_strengths",
        "layouts._optimize_layout_euclidean_single_epoch",
    } <= cached
    second = _layout(tmp_path)  # loads the compiled code
    assert first.shape == (40, 2) and np.isfinite(first).all()
    assert np.array_equal(first, second)
