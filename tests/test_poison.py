"""Tests of the poison-generation library: counts, determinism, ground truth, triggers, errors."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from poisonguard.poison import (
    ATTACKS,
    AttackOptions,
    apply_trigger,
    blend_trigger,
    default_table_trigger,
    near_boundary_flips,
    pair_flips,
    patch_trigger,
    poison_arrays,
    random_flips,
    sig_trigger,
    table_trigger,
    wanet_trigger,
)

N, K = 200, 4
IMAGE_ATTACKS = ["patch", "blend", "sig", "wanet", "adaptive-blend", "clean-label"]
BACKDOORS = ["patch", "blend", "sig", "wanet", "adaptive-blend", "table-trigger"]
ALL_ATTACKS = [*IMAGE_ATTACKS, "table-trigger", "flip-random", "flip-pair", "flip-near-boundary"]
TEXT_ATTACKS = ["rare-word", "sentence"]  # on texts: tests/test_text_poison.py


def _labels() -> np.ndarray:
    """Balanced classes (50 each), shuffled."""
    return np.random.default_rng(1).permutation(np.arange(N) % K).astype(np.int64)


def _images_u8() -> np.ndarray:
    # 5..200: a white patch always changes a pixel, and SIG never saturates every pixel.
    return np.random.default_rng(2).integers(5, 200, size=(N, 1, 16, 16)).astype(np.uint8)


def _images_f32() -> np.ndarray:
    return np.random.default_rng(3).random((N, 3, 14, 14)).astype(np.float32)


def _table() -> np.ndarray:
    return np.random.default_rng(4).normal(size=(N, 6)).astype(np.float32)


def _probabilities() -> np.ndarray:
    return np.random.default_rng(5).dirichlet(np.ones(K), size=N)


def _case(attack: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """Data and keyword arguments that ``poison_arrays`` accepts for ``attack``."""
    labels = _labels()
    if attack == "table-trigger":
        return _table(), labels, {"target": 2}
    if attack == "flip-random":
        return _images_u8(), labels, {}
    if attack == "flip-pair":
        return _images_u8(), labels, {"target": 2, "options": AttackOptions(source_class=1)}
    if attack == "flip-near-boundary":
        return _table(), labels, {"probabilities": _probabilities()}
    return _images_u8(), labels, {"target": 2}


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a != b).reshape(a.shape[0], -1).any(axis=1)


def test_registry_lists_every_attack():
    assert list(ATTACKS) == [*ALL_ATTACKS[:7], *TEXT_ATTACKS, *ALL_ATTACKS[7:]]
    for attack in ATTACKS.values():
        assert attack.kind in ("backdoor", "label-flip")
        assert attack.data in ("image", "table", "text", "any")
        assert attack.needs in ("", "probabilities", "perturbation")
        assert attack.summary and attack.paper


@pytest.mark.parametrize("attack", ALL_ATTACKS)
@pytest.mark.parametrize("rate", [0.1, 0.123])
def test_poisons_exactly_round_rate_n(attack, rate):
    x, labels, kwargs = _case(attack)
    result = poison_arrays(x, labels, K, attack=attack, rate=rate, seed=0, **kwargs)
    assert result.poisoned.sum() == round(rate * N)
    assert result.n_poisoned == result.description["n_poisoned"] == round(rate * N)


@pytest.mark.parametrize("attack", ALL_ATTACKS)
def test_mask_is_exactly_what_changed_and_inputs_are_untouched(attack):
    x, labels, kwargs = _case(attack)
    x_before, labels_before = x.copy(), labels.copy()
    result = poison_arrays(x, labels, K, attack=attack, rate=0.1, seed=3, **kwargs)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(labels, labels_before)
    assert result.x is not x and result.labels is not labels
    expected = _changed(result.x, x) | (result.labels != labels)
    np.testing.assert_array_equal(result.poisoned, expected)
    np.testing.assert_array_equal(result.original_labels, labels)
    assert result.x.shape == x.shape and result.x.dtype == x.dtype
    assert result.labels.dtype == np.int64 and result.poisoned.dtype == bool
    json.dumps(result.description)  # JSON-able


@pytest.mark.parametrize("attack", ALL_ATTACKS)
def test_same_seed_gives_identical_arrays(attack):
    x, labels, kwargs = _case(attack)
    first = poison_arrays(x, labels, K, attack=attack, rate=0.1, seed=7, **kwargs)
    second = poison_arrays(x, labels, K, attack=attack, rate=0.1, seed=7, **kwargs)
    assert first.x.tobytes() == second.x.tobytes()
    np.testing.assert_array_equal(first.labels, second.labels)
    np.testing.assert_array_equal(first.poisoned, second.poisoned)
    assert first.description == second.description


@pytest.mark.parametrize("attack", [a for a in ALL_ATTACKS if a != "flip-near-boundary"])
def test_different_seed_chooses_different_samples(attack):
    x, labels, kwargs = _case(attack)
    first = poison_arrays(x, labels, K, attack=attack, rate=0.1, seed=0, **kwargs)
    second = poison_arrays(x, labels, K, attack=attack, rate=0.1, seed=1, **kwargs)
    assert not np.array_equal(first.poisoned, second.poisoned)


@pytest.mark.parametrize("attack", BACKDOORS)
def test_backdoor_relabels_non_target_samples_to_target(attack):
    x, labels, kwargs = _case(attack)
    result = poison_arrays(x, labels, K, attack=attack, rate=0.2, seed=0, **kwargs)
    assert result.target == 2
    assert (result.labels[result.poisoned] == 2).all()
    assert (labels[result.poisoned] != 2).all()
    np.testing.assert_array_equal(result.labels[~result.poisoned], labels[~result.poisoned])
    np.testing.assert_array_equal(result.x[~result.poisoned], x[~result.poisoned])
    # Every poisoned sample carries the trigger, not just a new label.
    assert _changed(result.x, x)[result.poisoned].all()


def test_backdoor_target_none_is_drawn_from_the_seed():
    x, labels = _images_u8(), _labels()
    targets = set()
    for seed in range(8):
        result = poison_arrays(x, labels, K, attack="patch", rate=0.1, seed=seed)
        again = poison_arrays(x, labels, K, attack="patch", rate=0.1, seed=seed)
        assert result.target == again.target == result.description["target"]
        assert (result.labels[result.poisoned] == result.target).all()
        targets.add(result.target)
    assert len(targets) > 1


def test_clean_label_keeps_labels_and_touches_only_target_class():
    x, labels = _images_u8(), _labels()
    result = poison_arrays(x, labels, K, attack="clean-label", rate=0.1, target=3, seed=0)
    np.testing.assert_array_equal(result.labels, labels)
    assert result.poisoned.sum() == 20
    assert (labels[result.poisoned] == 3).all()
    assert not _changed(result.x, x)[labels != 3].any()
    assert result.description["trigger"] == "patch" and result.description["perturbed"] is False


def test_clean_label_applies_the_perturbation_before_the_trigger():
    x, labels = _images_u8(), _labels()
    seen = {}

    def perturb(images, subset_labels):
        seen["labels"] = subset_labels
        return images.astype(np.float64) + 100.0  # exceeds 255 somewhere: must be clipped

    options = AttackOptions(clean_label_trigger="blend")
    result = poison_arrays(
        x, labels, K, attack="clean-label", rate=0.1, target=1, options=options, perturb=perturb
    )
    assert (seen["labels"] == 1).all() and seen["labels"].size == 20
    originals = x[result.poisoned]
    perturbed = np.clip(originals.astype(np.float64) + 100.0, 0, 255).astype(np.uint8)
    expected = blend_trigger(perturbed, alpha=0.15, rng=np.random.default_rng([0, 1]))
    np.testing.assert_array_equal(result.x[result.poisoned], expected)
    assert result.description["perturbed"] is True
    # The test copy gets the trigger without the perturbation.
    triggered = apply_trigger(originals, attack="clean-label", seed=0, options=options)
    expected_plain = blend_trigger(originals, alpha=0.15, rng=np.random.default_rng([0, 1]))
    np.testing.assert_array_equal(triggered, expected_plain)


@pytest.mark.parametrize("attack", ["patch", "blend", "sig", "wanet", "clean-label"])
@pytest.mark.parametrize("make_images", [_images_u8, _images_f32])
def test_apply_trigger_reproduces_the_training_trigger(attack, make_images):
    x, labels = make_images(), _labels()
    result = poison_arrays(x, labels, K, attack=attack, rate=0.1, target=0, seed=11)
    triggered = apply_trigger(x, attack=attack, seed=11, options=result.options)
    assert triggered.dtype == x.dtype and triggered.shape == x.shape
    assert triggered[result.poisoned].tobytes() == result.x[result.poisoned].tobytes()
    assert _changed(triggered, x).all()


def test_apply_trigger_pattern_depends_on_the_seed_only():
    x = _images_u8()
    same = apply_trigger(x[:10], attack="blend", seed=4)
    # A different number of samples or their order does not change the noise.
    np.testing.assert_array_equal(apply_trigger(x[:50], attack="blend", seed=4)[:10], same)
    assert not np.array_equal(apply_trigger(x[:10], attack="blend", seed=5), same)
    assert not np.array_equal(
        apply_trigger(x[:10], attack="wanet", seed=4), apply_trigger(x[:10], attack="wanet", seed=5)
    )


def test_apply_trigger_table_uses_the_recorded_trigger():
    x, labels = _table(), _labels()
    result = poison_arrays(x, labels, K, attack="table-trigger", rate=0.1, target=0, seed=2)
    columns, values = result.description["columns"], result.description["values"]
    assert len(columns) == 3 and result.options.table_columns == tuple(columns)
    poisoned_rows = result.x[result.poisoned]
    np.testing.assert_array_equal(poisoned_rows[:, columns], np.tile(values, (20, 1)))
    assert (np.asarray(values) > x[:, columns].max(axis=0)).all()
    triggered = apply_trigger(x, attack="table-trigger", options=result.options)
    np.testing.assert_array_equal(triggered[result.poisoned], poisoned_rows)
    with pytest.raises(ValueError, match="table_columns"):
        apply_trigger(x, attack="table-trigger", seed=2)


def test_table_trigger_options_are_used_as_given():
    x, labels = _table(), _labels()
    options = AttackOptions(table_columns=[0, 5], table_values=[9.5, -7.25])
    result = poison_arrays(
        x, labels, K, attack="table-trigger", rate=0.1, target=1, options=options
    )
    assert result.description["columns"] == [0, 5]
    assert result.description["values"] == [9.5, -7.25]
    np.testing.assert_array_equal(result.x[result.poisoned][:, [0, 5]], [[9.5, -7.25]] * 20)
    np.testing.assert_array_equal(result.x[:, 1:5], x[:, 1:5])


def test_default_table_trigger_is_outside_the_clean_range():
    x = _table()
    x[:, 1] = 3.0  # a constant column gets max + 1
    columns, values = default_table_trigger(x, n_columns=6, rng=np.random.default_rng(0))
    assert columns == (0, 1, 2, 3, 4, 5)
    assert values[1] == 4.0
    expected = x.max(axis=0) + x.astype(np.float64).std(axis=0)
    np.testing.assert_allclose(np.delete(values, 1), np.delete(expected, 1), rtol=1e-6)
    triggered = table_trigger(x, columns=columns, values=values)
    assert triggered.dtype == np.float32
    np.testing.assert_array_equal(triggered[:, 1], 4.0)


@pytest.mark.parametrize(
    ("position", "rows", "cols"),
    [
        ("bottom-right", slice(8, 11), slice(8, 11)),
        ("bottom-left", slice(8, 11), slice(1, 4)),
        ("top-right", slice(1, 4), slice(8, 11)),
        ("top-left", slice(1, 4), slice(1, 4)),
    ],
)
def test_patch_corners_keep_a_one_pixel_margin(position, rows, cols):
    images = np.full((5, 3, 12, 12), 7, dtype=np.uint8)
    out = patch_trigger(images, size=3, position=position)
    expected = images.copy()
    expected[:, :, rows, cols] = 255
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(images, 7)  # input untouched


def test_patch_patterns_on_float_images():
    images = np.full((2, 1, 12, 12), 0.5, dtype=np.float32)
    black = patch_trigger(images, size=4, position="top-left", pattern="black")
    np.testing.assert_array_equal(black[:, 0, 1:5, 1:5], 0.0)
    checker = patch_trigger(images, size=4, position="top-left", pattern="checkerboard")
    cell = checker[0, 0, 1:5, 1:5]
    np.testing.assert_array_equal(cell, [[1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1]])
    assert checker.dtype == np.float32
    assert (checker[:, :, 5:, :] == 0.5).all()


def test_patch_random_positions_differ_and_stay_inside():
    images = np.zeros((60, 3, 12, 12), dtype=np.uint8)
    out = patch_trigger(images, size=3, position="random", rng=np.random.default_rng(0))
    corners = set()
    for image in out:
        assert (image == image[0]).all()  # same patch in every channel
        rows, cols = np.nonzero(image[0])
        assert rows.size == 9  # the whole 3x3 patch, nothing cut off
        assert rows.max() - rows.min() == 2 and cols.max() - cols.min() == 2
        corners.add((rows.min(), cols.min()))
    assert len(corners) > 20
    assert min(r for r, _ in corners) >= 0 and max(r for r, _ in corners) <= 9


def test_sig_adds_a_horizontal_sinusoid():
    images = np.full((3, 2, 5, 16), 0.5, dtype=np.float32)
    out = sig_trigger(images, delta=20.0, frequency=6, value_max=1.0)
    signal = 20.0 / 255.0 * np.sin(2 * np.pi * np.arange(16) * 6 / 16)
    np.testing.assert_allclose(out - images, np.broadcast_to(signal, out.shape), atol=1e-6)
    assert np.abs(out - images).max() > 0.07


def test_sig_clips_uint8_without_wrapping():
    images = np.full((1, 1, 4, 10), 250, dtype=np.uint8)
    out = sig_trigger(images, delta=20.0, frequency=2)
    expected = np.clip(np.rint(250 + 20 * np.sin(2 * np.pi * np.arange(10) * 2 / 10)), 0, 255)
    np.testing.assert_array_equal(out[0, 0, 0], expected)
    assert out.max() == 255 and out.min() >= 230


@pytest.mark.parametrize("make_images", [_images_u8, _images_f32])
def test_wanet_changes_images_but_keeps_their_mean(make_images):
    images = make_images()[:50]
    out = wanet_trigger(images, rng=np.random.default_rng(0))
    assert out.dtype == images.dtype and out.shape == images.shape
    assert _changed(out, images).all()
    value_max = 255.0 if images.dtype == np.uint8 else 1.0
    mean_shift = np.abs(out.mean(axis=(1, 2, 3)) - images.mean(axis=(1, 2, 3))) / value_max
    assert mean_shift.max() < 0.05


def papers_trigger_grid():
    """Nguyen & Tran's training script, step by step, for 16x16 images, k 4, s 0.5, the field's
    uniforms drawn from seed 9: the sampling grid before the clamp, ``(1, 16, 16, 2)``."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    ins = torch.from_numpy(np.random.default_rng(9).uniform(-1, 1, size=(1, 2, 4, 4)))
    ins = ins / torch.mean(torch.abs(ins))
    noise_grid = F.interpolate(ins, size=16, mode="bicubic", align_corners=True)
    noise_grid = noise_grid.permute(0, 2, 3, 1)
    array1d = torch.linspace(-1, 1, steps=16, dtype=torch.float64)
    x, y = torch.meshgrid(array1d, array1d, indexing="ij")
    identity_grid = torch.stack((y, x), 2)[None, ...]
    return identity_grid + 0.5 * noise_grid / 16


def test_wanet_follows_the_papers_reference_code():
    """Nguyen & Tran's training script, step by step, on the same uniform draws."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    images = np.random.default_rng(0).random((3, 2, 16, 16))
    grid = torch.clamp(papers_trigger_grid(), -1, 1)
    expected = F.grid_sample(torch.from_numpy(images), grid.repeat(3, 1, 1, 1), align_corners=True)
    out = wanet_trigger(images, grid_size=4, strength=0.5, rng=np.random.default_rng(9))
    np.testing.assert_allclose(out, np.clip(expected.numpy(), 0, 1), atol=1e-12)


def test_wanet_noise_mode_follows_the_papers_reference_code():
    """The paper's "cross" samples: the trigger grid plus ``(rand * 2 - 1) / H`` per sample."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    images = np.random.default_rng(0).random((3, 2, 16, 16))
    grid_temps = papers_trigger_grid()
    cross = torch.from_numpy(np.random.default_rng(3).uniform(-1, 1, size=(3, 16, 16, 2)))
    grid_temps2 = torch.clamp(grid_temps.repeat(3, 1, 1, 1) + cross / 16, -1, 1)
    expected = F.grid_sample(torch.from_numpy(images), grid_temps2, align_corners=True)
    out = wanet_trigger(
        images,
        grid_size=4,
        strength=0.5,
        rng=np.random.default_rng(9),
        noise_rng=np.random.default_rng(3),
    )
    np.testing.assert_allclose(out, np.clip(expected.numpy(), 0, 1), atol=1e-12)
    exact = wanet_trigger(images, grid_size=4, strength=0.5, rng=np.random.default_rng(9))
    assert _changed(out, exact).all()


def test_wanet_with_vanishing_strength_is_the_identity_on_non_square_images():
    images = np.random.default_rng(0).random((4, 2, 8, 13))
    out = wanet_trigger(images, strength=1e-12, rng=np.random.default_rng(0), value_max=1.0)
    np.testing.assert_allclose(out, images, atol=1e-9)


@pytest.mark.parametrize(
    "trigger",
    [
        lambda im: patch_trigger(im, position="random", rng=np.random.default_rng(0)),
        lambda im: blend_trigger(im, alpha=0.5, rng=np.random.default_rng(0)),
        lambda im: sig_trigger(im, delta=60.0),
        lambda im: wanet_trigger(im, strength=2.0, rng=np.random.default_rng(0)),
    ],
    ids=["patch", "blend", "sig", "wanet"],
)
def test_float_images_stay_in_range_and_keep_dtype(trigger):
    images = _images_f32()[:40]
    images[:, :, :, :3] = 1.0  # bright pixels, where SIG would overshoot
    out = trigger(images)
    assert out.dtype == np.float32 and out.shape == images.shape
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert not np.array_equal(out, images)


def test_float_images_in_0_255_use_their_own_range():
    images = _images_f32() * 255.0
    out = patch_trigger(images, size=2)
    assert out.max() == pytest.approx(images.max())
    result = poison_arrays(images, _labels(), K, attack="blend", rate=0.1, target=0)
    assert result.options.value_max == pytest.approx(float(images.max()))


def test_random_flips_change_every_chosen_label():
    labels = _labels()
    indices, new = random_flips(labels, K, rate=0.25, rng=np.random.default_rng(0))
    assert indices.size == 50 and (np.diff(indices) > 0).all()
    assert (new != labels[indices]).all()
    assert set(new) == set(range(K))


def test_pair_flips_only_from_the_source_class():
    labels = _labels()
    indices, new = pair_flips(
        labels, K, rate=0.2, source=1, destination=3, rng=np.random.default_rng(0)
    )
    assert indices.size == 40
    assert (labels[indices] == 1).all() and (new == 3).all()
    x = _images_u8()
    result = poison_arrays(
        x, labels, K, attack="flip-pair", rate=0.2, options=AttackOptions(source_class=1)
    )
    assert result.target != 1
    assert (labels[result.poisoned] == 1).all()
    assert (result.labels[result.poisoned] == result.target).all()
    assert result.description["source_class"] == 1
    np.testing.assert_array_equal(result.x, x)


def test_near_boundary_picks_the_smallest_margins_and_the_runner_up():
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    probabilities = np.array(
        [
            # Dyadic values: the margins below are exact, so the ties are real ties.
            [0.875, 0.0625, 0.0625],  # margin 0.8125
            [0.25, 0.5, 0.25],  # margin 0.25 (tie with 4), runner-up tie 0/2: lower code 0
            [0.5, 0.25, 0.25],  # margin -0.25, runner-up 0
            [0.25, 0.75, 0.0],  # margin -0.5, runner-up 1
            [0.0, 0.625, 0.375],  # margin 0.25, runner-up 2
            [0.125, 0.125, 0.75],  # margin 0.625
            [0.5, 0.0, 0.5],  # margin 0.0, runner-up 2
            [0.375, 0.25, 0.375],  # margin -0.125, runner-up tie 0/2: lower code 0
        ]
    )
    indices, new = near_boundary_flips(labels, probabilities, rate=0.5)
    # Margins ascending: 3 (-0.5), 2 (-0.25), 7 (-0.125), 6 (0); then 1 and 4 tie at 0.25.
    np.testing.assert_array_equal(indices, [2, 3, 6, 7])
    np.testing.assert_array_equal(new, [0, 1, 2, 0])
    indices, new = near_boundary_flips(labels, probabilities, rate=0.6)  # round(4.8) = 5
    np.testing.assert_array_equal(indices, [1, 2, 3, 6, 7])  # the tie goes to the lower index
    np.testing.assert_array_equal(new, [0, 0, 1, 2, 0])
    result = poison_arrays(
        np.zeros((8, 2), np.float32),
        labels,
        3,
        attack="flip-near-boundary",
        rate=0.5,
        probabilities=probabilities,
    )
    np.testing.assert_array_equal(np.flatnonzero(result.poisoned), [2, 3, 6, 7])
    assert result.target is None


def test_options_replace_round_trips():
    options = AttackOptions(table_columns=[1, 2], table_values=[0.5, 1])
    assert options.table_columns == (1, 2) and options.table_values == (0.5, 1.0)
    assert dataclasses.replace(options, blend_alpha=0.3) != options


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"patch_size": 0}, "patch_size must be an integer >= 1"),
        ({"patch_position": "middle"}, "unknown patch_position 'middle'; valid: bottom-right"),
        ({"patch_pattern": "red"}, "unknown patch_pattern 'red'; valid: white"),
        ({"blend_alpha": 0.0}, r"blend_alpha must be in \(0, 1\]"),
        ({"blend_alpha": 1.5}, r"blend_alpha must be in \(0, 1\]"),
        ({"sig_delta": -1.0}, "sig_delta must be a positive number"),
        ({"sig_frequency": 2.5}, "sig_frequency must be an integer"),
        ({"wanet_grid": 1}, "wanet_grid must be an integer >= 2"),
        ({"wanet_strength": 0}, "wanet_strength must be a positive number"),
        ({"table_columns": (1, 2)}, "table_columns and table_values together"),
        ({"table_columns": (1, 1), "table_values": (0, 0)}, "repeat a column"),
        ({"table_columns": (1, 2), "table_values": (0,)}, "2 entries but table_values 1"),
        ({"table_columns": (1,), "table_values": (np.nan,)}, "finite"),
        ({"source_class": -1}, "source_class must be an integer >= 0"),
        ({"clean_label_trigger": "flip"}, "unknown clean_label_trigger 'flip'; valid: patch"),
        ({"value_max": 0.0}, "value_max must be a positive number"),
    ],
)
def test_invalid_options_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AttackOptions(**kwargs)


@pytest.mark.parametrize(
    ("attack", "data", "kwargs", "match"),
    [
        ("trojan", "image", {}, "unknown attack 'trojan'; valid: patch, blend, sig, wanet"),
        ("patch", "image", {"rate": 0.0}, r"rate must be in \(0, 1\); got 0.0"),
        ("patch", "image", {"rate": 1.0}, r"rate must be in \(0, 1\)"),
        ("patch", "image", {"rate": 0.001}, r"rate 0.001 of 200 samples poisons .* = 0"),
        ("patch", "image", {"rate": 0.9}, "poisons 180 samples, but only 150 samples are outside"),
        ("clean-label", "image", {"rate": 0.5}, "poisons 100 samples, but target class 0 has only"),
        ("patch", "image", {"target": 4}, r"target 4 is not in 0..3 \(4 classes\)"),
        ("patch", "image", {"seed": -1}, "seed must be a non-negative integer"),
        ("patch", "table", {}, r"'patch' needs images of shape \(N, C, H, W\); got x of shape"),
        ("wanet", "table", {}, r"got x of shape \(200, 6\)"),
        ("table-trigger", "image", {}, r"needs a table of shape \(N, D\); got x of shape"),
        ("flip-random", "image", {"target": 1}, "flip-random has no target class"),
        ("flip-pair", "image", {}, "flip-pair needs options.source_class"),
        (
            "flip-pair",
            "image",
            {"options": AttackOptions(source_class=0), "target": 0},
            "source and destination are both class 0",
        ),
        (
            "flip-pair",
            "image",
            {"options": AttackOptions(source_class=1), "rate": 0.3, "target": 2},
            "flips 60 samples, but source class 1 has only 50",
        ),
        (
            "flip-pair",
            "image",
            {"options": AttackOptions(source_class=7), "target": 2},
            "source_class 7 is not in 0..3",
        ),
        ("flip-near-boundary", "table", {}, "flip-near-boundary needs probabilities"),
        (
            "flip-near-boundary",
            "table",
            {"probabilities": np.ones((N, 3)) / 3},
            r"shape \(N, n_classes\) = \(200, 4\); got \(200, 3\)",
        ),
        (
            "patch",
            "image",
            {"options": AttackOptions(patch_size=15)},
            "a 15x15 patch at 'bottom-right' does not fit 16x16 images",
        ),
        (
            "clean-label",
            "image",
            {"perturb": lambda images, labels: images[:, :, :5]},
            r"perturb returned shape \(20, 1, 5, 16\)",
        ),
        (
            "table-trigger",
            "table",
            {"options": AttackOptions(table_columns=(6,), table_values=(1.0,))},
            r"columns \[6\] out of range for 6 columns",
        ),
    ],
)
def test_poison_arrays_errors(attack, data, kwargs, match):
    x = _images_u8() if data == "image" else _table()
    arguments = {"rate": 0.1, "target": 0 if "flip" not in attack else None, **kwargs}
    with pytest.raises(ValueError, match=match):
        poison_arrays(x, _labels(), K, attack=attack, **arguments)


def test_label_and_shape_errors():
    x, labels = _images_u8(), _labels()
    with pytest.raises(ValueError, match=r"labels must be in 0..3 for 4 classes; found 0..4"):
        poison_arrays(x, np.where(labels == 3, 4, labels), K, attack="patch", rate=0.1)
    with pytest.raises(ValueError, match="x has 199 samples but labels 200"):
        poison_arrays(x[:-1], labels, K, attack="patch", rate=0.1)
    with pytest.raises(ValueError, match="n_classes must be an integer >= 2"):
        poison_arrays(x, labels * 0, 1, attack="flip-random", rate=0.1)


def test_trigger_errors():
    images = _images_f32()
    with pytest.raises(ValueError, match="no trigger"):
        apply_trigger(images, attack="flip-random")
    with pytest.raises(ValueError, match="needs an rng"):
        patch_trigger(images, position="random")
    with pytest.raises(ValueError, match="above value_max=0.5"):
        sig_trigger(images, value_max=0.5)
    with pytest.raises(ValueError, match="rescale normalised images"):
        blend_trigger(images - 0.5, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="uint8 images have value_max 255"):
        sig_trigger(_images_u8(), value_max=1.0)
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\); got \(200, 6\)"):
        wanet_trigger(_table(), rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="SIG frequency 6 needs images more than 12 columns"):
        sig_trigger(images[:, :, :, :12])  # zero on every pixel column: no trigger at all
    with pytest.raises(ValueError, match="2 columns but 1 values"):
        table_trigger(_table(), columns=[0, 1], values=[1.0])
