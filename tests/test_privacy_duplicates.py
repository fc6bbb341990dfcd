"""The duplicate search: exact and near duplicates, within one set and across two."""

from __future__ import annotations

import hashlib
import itertools

import numpy as np
import pytest
from sklearn.datasets import load_digits

from poisonguard.privacy import duplicates
from poisonguard.privacy.duplicates import exact_duplicates, near_duplicates


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    """sklearn's 8x8 digits (bundled) as uint8 images ``(1797, 1, 8, 8)``; none is duplicated."""
    images = load_digits().images
    return np.clip(np.rint(images * (255 / 16)), 0, 255).astype(np.uint8)[:, None]


def _noisy(images: np.ndarray, rng: np.random.Generator, sd: float = 2.0) -> np.ndarray:
    """Copies with Gaussian noise of ``sd`` grey levels (0.8 % of the range)."""
    noisy = images.astype(np.float64) + rng.normal(0.0, sd, images.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _shift(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Copies moved by ``(dy, dx)`` pixels, the uncovered border set to zero."""
    out = np.zeros_like(images)
    h, w = images.shape[2:]
    out[:, :, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = images[
        :, :, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def _pair_set(result) -> set[tuple[int, int]]:
    return {(p.i, p.j) for p in result.pairs}


# --- exact duplicates --------------------------------------------------------------------------


def test_exact_duplicates_finds_planted_groups(digits):
    x = np.concatenate([digits[:300], digits[[5, 5, 17, 250]]])  # rows 300..303
    assert exact_duplicates(x) == [[5, 300, 301], [17, 302], [250, 303]]
    assert exact_duplicates(digits) == []


def test_exact_duplicates_on_a_float_table_and_ids_length():
    rng = np.random.default_rng(0)
    table = rng.normal(size=(50, 4)).astype(np.float32)
    table[40] = table[3]
    table[41] = table[3] + np.float32(1e-6)  # close but not identical
    assert exact_duplicates(table, [str(i) for i in range(50)]) == [[3, 40]]
    with pytest.raises(ValueError, match="ids has 49"):
        exact_duplicates(table, [str(i) for i in range(49)])


def test_exact_duplicates_survives_hash_collisions(digits, monkeypatch):
    """With every row hashing alike, the byte comparison must still split the groups."""

    class Colliding:
        def __init__(self, *args, **kwargs):
            pass

        def digest(self) -> bytes:
            return b"same"

    x = np.concatenate([digits[:20], digits[[2, 7, 7]]])  # rows 20, 21, 22
    monkeypatch.setattr(duplicates.hashlib, "blake2b", Colliding)
    assert exact_duplicates(x) == [[2, 20], [7, 21, 22]]
    monkeypatch.setattr(duplicates.hashlib, "blake2b", hashlib.blake2b)


def test_exact_duplicates_finds_one_copy_among_60000_mnist_sized_rows():
    # its speed is measured in benchmarks/privacy.py, not asserted here
    x = np.random.default_rng(0).integers(0, 256, size=(60_000, 784), dtype=np.uint8)
    x[59_999] = x[12]
    assert exact_duplicates(x) == [[12, 59_999]]


# --- near duplicates ---------------------------------------------------------------------------


def test_near_duplicates_none_on_clean_digits(digits):
    result = near_duplicates(digits)
    assert result.n_pairs == 0, result.pairs[:5]  # false positives on natural digits: 0
    assert result.factor == duplicates.NEAR_DUPLICATE_FACTOR
    assert result.threshold == pytest.approx(result.factor * result.median_nn_distance)
    # uint8 scaled to [0, 1]: an 8x8 digit's nearest neighbour is about 1 away.
    assert 0.5 < result.median_nn_distance < 2.0


def test_near_duplicates_finds_noisy_and_shifted_copies(digits):
    rng = np.random.default_rng(1)
    source = rng.choice(len(digits), 33, replace=False)
    n = len(digits)
    planted = [
        _noisy(digits[source[:10]], rng),  # rows n .. n+9
        _shift(digits[source[10:20]], 0, 1),  # n+10 .. n+19: one pixel right
        _shift(digits[source[20:30]], -1, 0),  # n+20 .. n+29: one pixel up
        digits[source[30:33]],  # n+30 .. n+32: exact copies
    ]
    x = np.concatenate([digits, *planted])
    result = near_duplicates(x)

    expected = {(int(source[k]), n + k) for k in range(30)}
    assert _pair_set(result) == expected  # every copy found, nothing else, no exact copies
    by_pair = {(p.i, p.j): p for p in result.pairs}
    for k in range(10):
        pair = by_pair[(int(source[k]), n + k)]
        assert 0 < pair.distance <= result.threshold and pair.shift == (0, 0)
    for k in range(10, 30):
        pair = by_pair[(int(source[k]), n + k)]
        assert pair.distance == pytest.approx(0.0, abs=1e-6)
        assert pair.shift == ((0, 1) if k < 20 else (-1, 0))
    assert not any(p.exact for p in result.pairs)
    assert exact_duplicates(x) == sorted(
        [[int(source[k]), n + k] for k in range(30, 33)], key=lambda g: g[0]
    )

    capped = near_duplicates(x, max_pairs=5)
    assert capped.n_pairs == 30 and len(capped.pairs) == 5
    assert [p.distance for p in capped.pairs] == sorted(p.distance for p in result.pairs)[:5]


def test_one_pixel_shift_is_not_near_without_shift_tolerance(digits):
    """Why images are compared over shifts: a shifted 8x8 digit is far from its original."""
    x = np.concatenate([digits[:400], _shift(digits[:10], 0, 1)])
    assert near_duplicates(x, max_shift=0).n_pairs == 0
    assert len(_pair_set(near_duplicates(x, max_shift=1)) & {(k, 400 + k) for k in range(10)}) == 10


def test_default_threshold_is_relative_to_the_data(digits):
    rng = np.random.default_rng(2)
    floats = digits[:500].astype(np.float32) / 255  # floats are used as given
    floats = np.concatenate([floats, floats[:5] + rng.normal(0, 0.008, (5, 1, 8, 8))])
    small = near_duplicates(floats.astype(np.float32))
    large = near_duplicates((floats * 100).astype(np.float32))
    assert _pair_set(small) == _pair_set(large) == {(k, 500 + k) for k in range(5)}
    assert large.median_nn_distance == pytest.approx(100 * small.median_nn_distance, rel=1e-3)
    assert large.threshold == pytest.approx(100 * small.threshold, rel=1e-3)


def test_near_duplicates_across_sets(digits):
    rng = np.random.default_rng(3)
    train, heldout = digits[:1200], digits[1200:].copy()
    heldout[0] = train[10]  # exact copy
    heldout[1] = _noisy(train[[20]], rng)[0]
    heldout[2] = _shift(train[[30]], 1, 0)[0]
    result = near_duplicates(train, other=heldout)
    assert result.cross
    assert {(p.i, p.j, p.exact) for p in result.pairs} == {
        (10, 0, True),
        (20, 1, False),
        (30, 2, False),
    }
    exact = next(p for p in result.pairs if p.exact)
    assert exact.distance == 0.0
    # Reusing the within-set threshold gives the same pairs without measuring the median again.
    reused = near_duplicates(train, other=heldout, threshold=result.threshold)
    assert _pair_set(reused) == _pair_set(result)
    assert np.isnan(reused.median_nn_distance) and reused.factor is None


def test_candidate_search_misses_no_pair_within_the_threshold():
    """The projected radius search must return exactly the pairs of an all-pairs computation.

    The images vary along 8 directions only, so the projection keeps pair distances almost whole
    (no slack from projecting the differences away): a search radius even slightly short of the
    threshold would lose the copies just inside it.
    """
    rng = np.random.default_rng(4)
    directions = rng.normal(0, 1, (8, 81))
    latent = rng.normal(0, 1, (120, 8))
    steps = rng.normal(0, 1, (40, 8))
    steps *= (np.linspace(0.05, 0.6, 40) / np.linalg.norm(steps, axis=1))[:, None]

    def render(z: np.ndarray) -> np.ndarray:
        pixels = np.rint(128 + 12 * z @ directions)
        return np.clip(pixels, 0, 255).astype(np.uint8).reshape(-1, 1, 9, 9)

    base = render(latent)
    x = np.concatenate([base, render(latent[:40] + steps), _shift(base[40:50], 1, -1)])
    threshold = 0.15
    result = near_duplicates(x, threshold=threshold, max_pairs=10_000)
    assert "principal components" in result.search  # 81 features: the projection is used

    a = x.astype(np.float64) / 255
    brute = set()
    for i, j in itertools.combinations(range(len(x)), 2):
        best = np.inf
        for dy, dx in itertools.product((-1, 0, 1), repeat=2):
            left = a[i, :, max(0, -dy) : 9 - max(0, dy), max(0, -dx) : 9 - max(0, dx)]
            right = a[j, :, max(0, dy) : 9 - max(0, -dy), max(0, dx) : 9 - max(0, -dx)]
            scale = np.sqrt(81 / ((9 - abs(dy)) * (9 - abs(dx))))
            best = min(best, scale * np.linalg.norm(left - right))
        if best <= threshold:
            brute.add((i, j))
    copies = {(k, 120 + k) for k in range(40)}
    assert 10 < len(brute & copies) < 40  # some noisy copies are inside, some outside
    assert {(40 + k, 160 + k) for k in range(10)} <= brute  # the shifted copies
    assert _pair_set(result) == brute


def test_near_duplicates_on_tables():
    rng = np.random.default_rng(5)
    table = rng.normal(size=(300, 6)).astype(np.float32)
    table[299] = table[7] + rng.normal(0, 0.01, 6).astype(np.float32)
    result = near_duplicates(table)
    assert result.max_shift == 0 and _pair_set(result) == {(7, 299)}
    with pytest.raises(ValueError, match="tables"):
        near_duplicates(table, max_shift=1)
    with pytest.raises(ValueError, match="must match"):
        near_duplicates(table, other=table[:, :5])
