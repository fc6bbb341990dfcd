"""Shared fixtures: an isolated embedding cache and small synthetic datasets written to disk."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner, Result
from PIL import Image
from poisonguard.cli.main import main

SIDE = 8


@pytest.fixture(autouse=True)
def isolated_cache(monkeypatch, tmp_path_factory) -> Path:
    """Point the default embedding cache at a temporary folder, so no test writes ~/.cache.

    Tests still pass their own cache folder explicitly; this is the safety net.
    """
    cache = tmp_path_factory.mktemp("default-cache")
    monkeypatch.setenv("POISONGUARD_CACHE_DIR", str(cache))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache / "xdg"))
    return cache


@pytest.fixture(autouse=True)
def restore_logging():
    """``poisonguard`` reconfigures the root logger on every CLI call, pointing it at CliRunner's
    temporary stderr; put the handlers back afterwards so later tests log to a live stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def pattern_image(kind: int, rng: np.random.Generator, side: int = SIDE) -> np.ndarray:
    """An ``side x side`` uint8 image of one simple pattern plus a little noise.

    Kinds: 0 horizontal bar, 1 vertical bar, 2 diagonal, 3 hollow box, 4 full bright square (an
    outlier look that no clean class has).
    """
    image = np.zeros((side, side), dtype=np.float64)
    mid = side // 2
    if kind == 0:
        image[mid - 1 : mid + 1, :] = 220
    elif kind == 1:
        image[:, mid - 1 : mid + 1] = 220
    elif kind == 2:
        np.fill_diagonal(image, 220)
    elif kind == 3:
        image[[0, -1], :] = 220
        image[:, [0, -1]] = 220
    elif kind == 4:
        image[:, :] = 250
    else:
        raise ValueError(kind)
    image += rng.normal(0, 12, size=image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def write_image_folder(
    root: Path,
    counts: dict[str, int],
    *,
    seed: int = 0,
    planted: dict[str, int] | None = None,
) -> Path:
    """Write ``root/<class>/img_NNN.png`` with ``counts[class]`` pattern images per class.

    Class ``i`` (in the order of ``counts``) uses pattern ``i % 4``. ``planted`` adds that many
    backdoor poisons to a class, named ``planted_NNN.png``: images of the *other* classes'
    patterns, taken in turn, with a bright 2x2 trigger in the bottom-right corner.
    """
    rng = np.random.default_rng(seed)
    planted = planted or {}
    for i, (name, count) in enumerate(counts.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(count):
            Image.fromarray(pattern_image(i % 4, rng)).save(folder / f"img_{j:03d}.png")
        sources = [k % 4 for k in range(len(counts)) if k % 4 != i % 4] or [4]
        for j in range(planted.get(name, 0)):
            image = pattern_image(sources[j % len(sources)], rng)
            image[-3:-1, -3:-1] = 255
            Image.fromarray(image).save(folder / f"planted_{j:03d}.png")
    return root


@pytest.fixture
def make_image_folder(tmp_path) -> Callable[..., Path]:
    """Factory: ``make_image_folder(counts=None, name="images", **kwargs)`` -> folder path."""

    def make(counts: dict[str, int] | None = None, name: str = "images", **kwargs) -> Path:
        counts = counts or {c: 25 for c in ("a", "b", "c", "d")}
        return write_image_folder(tmp_path / name, counts, **kwargs)

    return make


def write_table_csv(path: Path, *, per_class: int = 30, seed: int = 0) -> Path:
    """A CSV table with an ``id`` column, 4 numeric features and string labels."""
    rng = np.random.default_rng(seed)
    names = ["setosa", "versicolor", "virginica"]
    lines = ["id,f1,f2,f3,f4,label"]
    for code, name in enumerate(names):
        centre = np.full(4, 3.0 * code)
        for j in range(per_class):
            values = centre + rng.normal(size=4)
            cells = ",".join(repr(float(v)) for v in values)
            lines.append(f"{name}_{j:02d},{cells},{name}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def synthetic() -> SimpleNamespace:
    """The dataset writers, for session-scoped fixtures (which cannot use function fixtures)."""
    return SimpleNamespace(
        pattern_image=pattern_image,
        write_image_folder=write_image_folder,
        write_table_csv=write_table_csv,
    )


def run_cli(*args: str | Path) -> Result:
    """``poisonguard ARGS...`` through click's test runner, exceptions caught."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)


def assert_clean_failure(result: Result, *fragments: str) -> None:
    """Exit 1 with a one-line message holding every fragment, and no traceback."""
    assert result.exit_code == 1, result.output
    assert result.exc_info is None or result.exc_info[0] is SystemExit, result.exc_info
    assert "Traceback" not in result.output
    message = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(message) == 1, result.output
    for fragment in fragments:
        assert fragment in message[0], (fragment, message[0])
