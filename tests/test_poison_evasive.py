"""Attacks built to evade latent-separation defences: source-specific (TaCT) with cover samples,
all-to-all, adaptive-blend, clean-label SIG, several backdoors in one dataset; the ground-truth
roles; attack success per sample target."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from poisonguard.evaluate import attack_success
from poisonguard.poison import (
    AttackOptions,
    Poisoning,
    add_backdoor,
    apply_trigger,
    blend_trigger,
    poison_arrays,
    sig_trigger,
    trigger_targets,
)
from poisonguard.poison.adaptive import piece_masks

N, K = 200, 4
SIDE = 16
GRID = 4  # 4x4 pieces of 4x4 pixels on 16x16 images
RELABELLING = ["patch", "blend", "sig", "wanet", "adaptive-blend", "table-trigger"]


def _labels(n_classes: int = K, n: int = N) -> np.ndarray:
    """Balanced classes, shuffled."""
    return np.random.default_rng(1).permutation(np.arange(n) % n_classes).astype(np.int64)


def _images(n: int = N) -> np.ndarray:
    # 5..200: a white patch always changes a pixel, and SIG never saturates every pixel.
    return np.random.default_rng(2).integers(5, 200, size=(n, 1, SIDE, SIDE)).astype(np.uint8)


def _table() -> np.ndarray:
    return np.random.default_rng(4).normal(size=(N, 6)).astype(np.float32)


def _data(attack: str) -> np.ndarray:
    return _table() if attack == "table-trigger" else _images()


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a != b).reshape(a.shape[0], -1).any(axis=1)


def _pieces(image: np.ndarray) -> np.ndarray:
    """(GRID * GRID, C, 4, 4): the pieces of one (C, 16, 16) image, row band by row band."""
    c = image.shape[0]
    step = SIDE // GRID
    return image.reshape(c, GRID, step, GRID, step).transpose(1, 3, 0, 2, 4).reshape(-1, c, 4, 4)


# --- source-specific (TaCT) and cover samples ---------------------------------------------------


@pytest.mark.parametrize("attack", RELABELLING)
def test_source_specific_poisons_only_the_source_class(attack):
    x, labels = _data(attack), _labels()
    options = AttackOptions(source_class=1)
    result = poison_arrays(x, labels, K, attack=attack, rate=0.1, target=2, options=options)
    assert result.n_poisoned == 20 and result.n_cover == 0
    # exactly the chosen source-class samples got the target label, and nothing else changed
    assert (labels[result.poisoned] == 1).all()
    np.testing.assert_array_equal(result.labels != labels, result.poisoned)
    assert (result.labels[result.poisoned] == 2).all()
    np.testing.assert_array_equal(_changed(result.x, x), result.poisoned)
    assert result.description["source_class"] == 1 and result.target == 2


def test_source_specific_target_is_drawn_among_the_other_classes():
    x, labels = _images(), _labels()
    targets = set()
    for seed in range(12):
        result = poison_arrays(
            x,
            labels,
            K,
            attack="patch",
            rate=0.05,
            seed=seed,
            options=AttackOptions(source_class=3),
        )
        assert result.target != 3
        assert (result.labels[result.poisoned] == result.target).all()
        targets.add(result.target)
    assert targets == {0, 1, 2}


@pytest.mark.parametrize("attack", ["patch", "blend", "sig", "wanet", "table-trigger"])
def test_tact_cover_samples_carry_the_trigger_and_keep_their_labels(attack):
    x, labels = _data(attack), _labels()
    options = AttackOptions(source_class=1, cover_rate=0.05)
    result = poison_arrays(x, labels, K, attack=attack, rate=0.1, target=2, options=options)
    assert result.n_poisoned == 20 and result.n_cover == 10
    assert not (result.cover & result.poisoned).any()
    # cover samples come from neither the source nor the target, and keep their labels
    assert not np.isin(labels[result.cover], [1, 2]).any()
    np.testing.assert_array_equal(result.labels[result.cover], labels[result.cover])
    # ... and carry the very trigger the payload carries
    stamped = apply_trigger(x, attack=attack, seed=0, options=result.options)
    touched = result.poisoned | result.cover
    np.testing.assert_array_equal(result.x[touched], stamped[touched])
    np.testing.assert_array_equal(result.x[~touched], x[~touched])
    # ground truth
    assert (result.targets[result.cover] == 2).all() and (
        result.targets[result.poisoned] == 2
    ).all()
    assert (result.targets[~touched] == -1).all()
    roles = result.roles
    assert (roles == "cover").sum() == 10 and (roles == "payload").sum() == 20
    assert set(result.sample_attacks[touched]) == {attack} and set(
        result.sample_attacks[~touched]
    ) == {""}
    assert result.description["n_cover"] == 10 and result.description["cover_rate"] == 0.05
    json.dumps(result.description)


def test_wanet_cover_samples_are_noise_mode_warps_that_keep_their_labels():
    x, labels = _images(), _labels()
    options = AttackOptions(cover_rate=0.1)
    result = poison_arrays(x, labels, K, attack="wanet", rate=0.05, target=2, options=options)
    assert result.n_poisoned == 10 and result.n_cover == 20
    assert not (result.cover & result.poisoned).any()
    assert not (labels[result.cover] == 2).any()
    np.testing.assert_array_equal(result.labels[result.cover], labels[result.cover])
    assert (result.labels[result.poisoned] == 2).all()
    exact = apply_trigger(x, attack="wanet", seed=0, options=result.options)
    # the payload carries the exact warp, the cover samples the warp with noise of their own
    np.testing.assert_array_equal(result.x[result.poisoned], exact[result.poisoned])
    assert _changed(result.x[result.cover], exact[result.cover]).all()
    assert _changed(result.x[result.cover], x[result.cover]).all()
    # noise of at most half a pixel: the cover stays nearer the warped image than the original
    near = np.abs(result.x[result.cover].astype(float) - exact[result.cover]).mean()
    far = np.abs(result.x[result.cover].astype(float) - x[result.cover]).mean()
    assert near < far
    # same seed, same samples bit for bit; the payload is the one drawn without cover
    again = poison_arrays(x, labels, K, attack="wanet", rate=0.05, target=2, options=options)
    np.testing.assert_array_equal(again.x, result.x)
    plain = poison_arrays(x, labels, K, attack="wanet", rate=0.05, target=2)
    np.testing.assert_array_equal(plain.x[plain.poisoned], result.x[result.poisoned])
    assert (result.roles == "cover").sum() == 20


def test_cover_samples_never_change_which_payload_samples_are_drawn():
    x, labels = _images(), _labels()
    plain = poison_arrays(
        x, labels, K, attack="patch", rate=0.1, target=2, options=AttackOptions(source_class=1)
    )
    covered = poison_arrays(
        x,
        labels,
        K,
        attack="patch",
        rate=0.1,
        target=2,
        options=AttackOptions(source_class=1, cover_rate=0.1),
    )
    np.testing.assert_array_equal(plain.poisoned, covered.poisoned)
    np.testing.assert_array_equal(plain.x[plain.poisoned], covered.x[covered.poisoned])
    assert covered.n_cover == 20


# --- all-to-all ---------------------------------------------------------------------------------


@pytest.mark.parametrize("attack", RELABELLING)
def test_all_to_all_relabels_class_c_as_the_next_class(attack):
    x, labels = _data(attack), _labels()
    options = AttackOptions(all_to_all=True)
    result = poison_arrays(x, labels, K, attack=attack, rate=0.2, seed=3, options=options)
    assert result.n_poisoned == 40 and result.target is None
    assert set(labels[result.poisoned]) == set(range(K))  # drawn from every class
    np.testing.assert_array_equal(result.labels[result.poisoned], (labels[result.poisoned] + 1) % K)
    np.testing.assert_array_equal(result.labels[~result.poisoned], labels[~result.poisoned])
    np.testing.assert_array_equal(result.targets[result.poisoned], result.labels[result.poisoned])
    assert _changed(result.x, x)[result.poisoned].all()
    assert result.description["all_to_all"] is True and result.description["target"] is None


def test_all_to_all_test_copy_is_the_training_trigger():
    x, labels = _images(), _labels()
    options = AttackOptions(all_to_all=True)
    result = poison_arrays(x, labels, K, attack="blend", rate=0.1, seed=5, options=options)
    stamped = apply_trigger(x, attack="blend", seed=5, options=result.options)
    np.testing.assert_array_equal(stamped[result.poisoned], result.x[result.poisoned])


def test_trigger_targets_maps_each_kind():
    labels = np.array([0, 1, 2, 3, 1])
    np.testing.assert_array_equal(trigger_targets(labels, 4, target=2), [2, 2, -1, 2, 2])
    np.testing.assert_array_equal(
        trigger_targets(labels, 4, target=None, all_to_all=True), [1, 2, 3, 0, 2]
    )
    np.testing.assert_array_equal(
        trigger_targets(labels, 4, target=0, source_class=1), [-1, 0, -1, -1, 0]
    )
    with pytest.raises(ValueError, match="neither a target nor a source"):
        trigger_targets(labels, 4, target=1, all_to_all=True)


def test_attack_success_counts_each_sample_against_its_own_target():
    labels = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    predicted = np.array([1, 2, 3, 0, 1, 0, 0, 3])
    # all-to-one, target 0: the six samples of classes 1-3 count; indices 3, 5, 6 predicted 0
    one = attack_success(predicted, labels, 4, target=0, options=AttackOptions())
    assert one == pytest.approx(3 / 6)
    # all-to-all: class c succeeds when predicted (c + 1) mod 4: indices 0-4, not 5-7
    every = attack_success(
        predicted, labels, 4, target=None, options=AttackOptions(all_to_all=True)
    )
    assert every == pytest.approx(5 / 8)
    # source-specific, 1 -> 0: only the two class-1 samples count, index 5 predicted 0
    source = attack_success(predicted, labels, 4, target=0, options=AttackOptions(source_class=1))
    assert source == pytest.approx(1 / 2)
    assert attack_success(predicted[:1], labels[:1], 4, target=0, options=AttackOptions()) is None


# --- adaptive-blend ------------------------------------------------------------------------------


def test_adaptive_blend_payloads_carry_the_blend_on_half_the_pieces_only():
    x, labels = _images(), _labels()
    result = poison_arrays(x, labels, K, attack="adaptive-blend", rate=0.1, target=2, seed=4)
    rows = np.flatnonzero(result.poisoned)
    assert rows.size == 20 and (result.labels[rows] == 2).all() and (labels[rows] != 2).all()
    full = blend_trigger(x[rows], alpha=0.15, rng=np.random.default_rng([4, 1]))
    chosen_sets = set()
    for image, original, whole in zip(result.x[rows], x[rows], full, strict=True):
        chosen = []
        for k, (piece, clean, triggered) in enumerate(
            zip(_pieces(image), _pieces(original), _pieces(whole), strict=True)
        ):
            # each piece is either the full-trigger piece or untouched
            if np.array_equal(piece, triggered) and not np.array_equal(piece, clean):
                chosen.append(k)
            else:
                np.testing.assert_array_equal(piece, clean)
        assert len(chosen) == 8
        chosen_sets.add(tuple(chosen))
    assert len(chosen_sets) > 10  # chosen per sample
    assert result.description["pieces"] == 8 and result.description["grid"] == 4


def test_adaptive_blend_test_copy_is_the_whole_pattern_with_the_test_alpha():
    x, labels = _images(), _labels()
    result = poison_arrays(x, labels, K, attack="adaptive-blend", rate=0.1, target=2, seed=4)
    test = apply_trigger(x, attack="adaptive-blend", seed=4, options=result.options)
    np.testing.assert_array_equal(
        test, blend_trigger(x, alpha=0.2, rng=np.random.default_rng([4, 1]))
    )
    # the same noise: with the training alpha, the whole pattern matches every triggered piece
    same_alpha = dataclasses.replace(result.options, test_alpha=0.15)
    whole = apply_trigger(x, attack="adaptive-blend", seed=4, options=same_alpha)
    rows = result.poisoned
    triggered = result.x[rows] != x[rows]
    assert triggered.mean() > 0.4
    np.testing.assert_array_equal(result.x[rows][triggered], whole[rows][triggered])


def test_adaptive_blend_conservatism_samples_and_piece_count():
    x, labels = _images(), _labels()
    options = AttackOptions(cover_rate=0.05, adaptive_pieces=3)
    result = poison_arrays(
        x, labels, K, attack="adaptive-blend", rate=0.05, target=0, seed=2, options=options
    )
    assert result.n_poisoned == 10 and result.n_cover == 10
    assert (labels[result.cover] != 0).all()
    np.testing.assert_array_equal(result.labels[result.cover], labels[result.cover])
    full = blend_trigger(x, alpha=0.15, rng=np.random.default_rng([2, 1]))
    for i in np.flatnonzero(result.poisoned | result.cover):
        differs = [
            not np.array_equal(p, c)
            for p, c in zip(_pieces(result.x[i]), _pieces(x[i]), strict=True)
        ]
        assert sum(differs) == 3
        assert np.isin(result.x[i], [x[i], full[i]]).all()
        np.testing.assert_array_equal(np.where(result.x[i] != x[i], full[i], x[i]), result.x[i])


def test_piece_masks_cover_every_pixel_once_on_uneven_sizes():
    chosen = np.ones((1, 16), dtype=bool)
    every = piece_masks(chosen, height=14, width=15, grid=4)
    assert every.all()
    single = np.eye(16, dtype=bool)
    masks = piece_masks(single, height=14, width=15, grid=4)
    np.testing.assert_array_equal(masks.sum(axis=0), 1)
    assert masks.sum(axis=(1, 2)).min() >= 3 * 3


# --- clean-label SIG -----------------------------------------------------------------------------


def test_clean_label_sig_without_perturbation_is_barni_et_al():
    """Half the target class of a balanced 10-class set is rate 0.05; labels stay as they are."""
    labels = _labels(n_classes=10)
    x = _images()
    options = AttackOptions(clean_label_trigger="sig", clean_label_epsilon=0.0)
    result = poison_arrays(
        x, labels, 10, attack="clean-label", rate=0.05, target=7, options=options
    )
    assert result.n_poisoned == 10 == (labels == 7).sum() // 2
    np.testing.assert_array_equal(result.labels, labels)
    changed = _changed(result.x, x)
    np.testing.assert_array_equal(changed, result.poisoned)
    assert (labels[changed] == 7).all()
    np.testing.assert_array_equal(result.x[changed], sig_trigger(x[changed]))
    assert set(result.roles) == {"payload", "clean"}


# --- several backdoors ---------------------------------------------------------------------------


def test_add_backdoor_plants_a_second_backdoor_on_untouched_samples():
    x, labels = _images(), _labels()
    first = poison_arrays(x, labels, K, attack="patch", rate=0.1, target=1, seed=6)
    both = add_backdoor(first, K, attack="blend", rate=0.1, target=3)
    patch, blend = both.sample_attacks == "patch", both.sample_attacks == "blend"
    np.testing.assert_array_equal(patch, first.poisoned)
    assert blend.sum() == 20 and not (patch & blend).any()
    np.testing.assert_array_equal(both.poisoned, patch | blend)
    assert (both.labels[patch] == 1).all() and (both.labels[blend] == 3).all()
    assert (labels[blend] != 3).all()
    np.testing.assert_array_equal(both.targets[blend], 3)
    np.testing.assert_array_equal(both.original_labels, labels)
    # the patch samples are left exactly as the first backdoor made them
    np.testing.assert_array_equal(both.x[patch], first.x[patch])
    # the second backdoor's own seed (seed + 1) gives its noise and its test copy
    assert [p.seed for p in both.parts] == [6, 7] and [p.target for p in both.parts] == [1, 3]
    expected = blend_trigger(x[blend], alpha=0.15, rng=np.random.default_rng([7, 1]))
    np.testing.assert_array_equal(both.x[blend], expected)
    stamped = apply_trigger(
        x, attack="blend", seed=both.parts[1].seed, options=both.parts[1].options
    )
    np.testing.assert_array_equal(stamped[blend], both.x[blend])
    assert both.attack == "patch+blend" and both.target is None
    untouched = ~(patch | blend)
    np.testing.assert_array_equal(both.x[untouched], x[untouched])
    np.testing.assert_array_equal(both.labels[untouched], labels[untouched])


def test_add_backdoor_never_reuses_payload_or_cover_samples():
    x, labels = _images(), _labels()
    options = AttackOptions(source_class=0, cover_rate=0.3)
    first = poison_arrays(x, labels, K, attack="patch", rate=0.2, target=1, options=options)
    assert first.n_cover == 60
    both = add_backdoor(first, K, attack="sig", rate=0.2, target=3)
    second = both.parts[1]
    assert not ((second.poisoned | second.cover) & (first.poisoned | first.cover)).any()
    np.testing.assert_array_equal(both.cover, first.cover)
    assert set(both.roles[both.sample_attacks == "sig"]) == {"payload"}
    # 150 samples are outside class 3; the first backdoor holds 40 + 60 of all: too few are left
    with pytest.raises(ValueError, match="not taken by the earlier poisoning"):
        add_backdoor(first, K, attack="blend", rate=0.45, target=3)


@pytest.mark.parametrize(
    ("attack", "match"),
    [("patch", "patch is already planted"), ("flip-random", "changes labels only")],
)
def test_add_backdoor_errors(attack, match):
    first = poison_arrays(_images(), _labels(), K, attack="patch", rate=0.1, target=1)
    with pytest.raises(ValueError, match=match):
        add_backdoor(first, K, attack=attack, rate=0.1, target=2)


# --- determinism and the result type ------------------------------------------------------------


@pytest.mark.parametrize(
    ("attack", "kwargs"),
    [
        ("patch", {"target": 2, "options": AttackOptions(source_class=1, cover_rate=0.05)}),
        ("wanet", {"options": AttackOptions(all_to_all=True)}),
        ("adaptive-blend", {"target": 2, "options": AttackOptions(cover_rate=0.05)}),
    ],
)
def test_same_seed_gives_identical_output(attack, kwargs):
    x, labels = _images(), _labels()
    first = poison_arrays(x, labels, K, attack=attack, rate=0.1, seed=9, **kwargs)
    second = poison_arrays(x, labels, K, attack=attack, rate=0.1, seed=9, **kwargs)
    other = poison_arrays(x, labels, K, attack=attack, rate=0.1, seed=10, **kwargs)
    assert first.x.tobytes() == second.x.tobytes()
    for name in ("labels", "poisoned", "cover", "targets", "sample_attacks"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    assert first.description == second.description
    assert first.x.tobytes() != other.x.tobytes()


def test_two_backdoors_same_seed_identical():
    x, labels = _images(), _labels()
    runs = [
        add_backdoor(
            poison_arrays(x, labels, K, attack="patch", rate=0.1, target=0, seed=s),
            K,
            attack="adaptive-blend",
            rate=0.1,
            target=1,
        )
        for s in (3, 3)
    ]
    assert runs[0].x.tobytes() == runs[1].x.tobytes()
    np.testing.assert_array_equal(runs[0].sample_attacks, runs[1].sample_attacks)


def test_poisoning_without_the_new_fields_keeps_its_old_meaning():
    labels = np.array([0, 1, 2])
    poisoned = np.array([False, True, False])
    old = Poisoning(
        x=np.zeros((3, 2)),
        labels=np.array([0, 2, 2]),
        poisoned=poisoned,
        original_labels=labels,
        attack="flip-random",
        target=None,
        description={},
    )
    assert not old.cover.any() and old.n_cover == 0
    np.testing.assert_array_equal(old.targets, [-1, 2, -1])
    np.testing.assert_array_equal(old.sample_attacks, ["", "flip-random", ""])
    np.testing.assert_array_equal(old.roles, ["clean", "payload", "clean"])
    with pytest.raises(ValueError, match="disjoint"):
        dataclasses.replace(old, cover=poisoned)


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attack", "kwargs", "match"),
    [
        (
            "flip-random",
            {"options": AttackOptions(cover_rate=0.05)},
            "cover samples .* go with a backdoor that relabels; flip-random changes labels only",
        ),
        (
            "clean-label",
            {"target": 1, "options": AttackOptions(cover_rate=0.05)},
            "clean-label keeps every label",
        ),
        (
            "patch",
            {"target": 1, "options": AttackOptions(cover_rate=0.05)},
            r"go with a source-specific backdoor \(source_class, TaCT\), adaptive-blend or wanet",
        ),
        (
            "patch",
            {"target": 1, "options": AttackOptions(all_to_all=True)},
            r"relabels class c as \(c \+ 1\) mod 4; it takes no target \(got 1\)",
        ),
        (
            "flip-pair",
            {"options": AttackOptions(all_to_all=True, source_class=None)},
            "all_to_all is for the backdoors that relabel",
        ),
        (
            "clean-label",
            {"options": AttackOptions(all_to_all=True)},
            "all_to_all is for the backdoors that relabel",
        ),
        (
            "adaptive-blend",
            {"options": AttackOptions(all_to_all=True, cover_rate=0.05)},
            "not all-to-all",
        ),
        (
            "patch",
            {"target": 2, "options": AttackOptions(source_class=2)},
            "source_class 2 is the target class",
        ),
        (
            "blend",
            {"target": 2, "options": AttackOptions(source_class=7)},
            r"source_class 7 is not in 0..3 \(4 classes\)",
        ),
        (
            "clean-label",
            {"target": 2, "options": AttackOptions(source_class=1)},
            "clean-label draws from the target class; it takes no source_class",
        ),
        (
            "patch",
            {"target": 2, "rate": 0.3, "options": AttackOptions(source_class=1)},
            "poisons 60 samples, but source class 1 has only 50",
        ),
        (
            "patch",
            {"target": 2, "options": AttackOptions(source_class=1, cover_rate=0.6)},
            "120 cover samples are asked for, but only 100 samples are left outside classes 2, 1",
        ),
        (
            "adaptive-blend",
            {"target": 2, "options": AttackOptions(cover_rate=0.001)},
            r"cover rate 0.001 of 200 samples gives round\(0.2\) = 0 cover samples",
        ),
        (
            "adaptive-blend",
            {"target": 2, "options": AttackOptions(adaptive_grid=17)},
            "a 17x17 grid of trigger pieces does not fit 16x16 images",
        ),
        (
            "flip-random",
            {"exclude": np.zeros(N, dtype=bool)},
            "exclude is for backdoors",
        ),
        (
            "flip-random",
            {"options": AttackOptions(source_class=1)},
            "flip-random chooses its own classes; it takes no source_class",
        ),
    ],
)
def test_bad_combinations_are_errors(attack, kwargs, match):
    arguments = {"rate": 0.1, **kwargs}
    with pytest.raises(ValueError, match=match):
        poison_arrays(_images(), _labels(), K, attack=attack, **arguments)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cover_rate": 1.0}, r"cover_rate must be in \[0, 1\)"),
        ({"cover_rate": -0.1}, r"cover_rate must be in \[0, 1\)"),
        ({"all_to_all": 1}, "all_to_all must be True or False"),
        ({"all_to_all": True, "source_class": 1}, "all_to_all draws from every class"),
        ({"adaptive_grid": 1}, "adaptive_grid must be an integer >= 2"),
        ({"adaptive_pieces": 0}, "adaptive_pieces must be an integer >= 1"),
        ({"adaptive_pieces": 17}, "adaptive_pieces 17 is more than the 4x4 = 16 pieces"),
        ({"test_alpha": 0.0}, r"test_alpha must be in \(0, 1\]"),
    ],
)
def test_invalid_new_options_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AttackOptions(**kwargs)


# --- benchmarks: Fashion-MNIST rows, ground truth with roles, scoring without cover samples ------


@pytest.fixture
def benchmarks(monkeypatch):
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import fashion_mnist
    import score_against_truth

    return fashion_mnist, score_against_truth


def test_benchmark_evasive_rows(benchmarks):
    fashion_mnist, _ = benchmarks
    labels = np.repeat(np.arange(10), 40)
    images = np.random.default_rng(0).integers(5, 200, size=(400, 28, 28)).astype(np.uint8)
    rows = {
        name: fashion_mnist.make_evasive_attack(name, images, labels, rate=0.05, target=0)
        for name in fashion_mnist.EVASIVE_ATTACKS
    }
    for result in rows.values():
        assert result.x.shape == (400, 28, 28) and result.x.dtype == np.uint8
        np.testing.assert_array_equal(result.original_labels, labels)
    tact = rows["tact"]
    assert tact.n_poisoned == tact.n_cover == 20 and (labels[tact.poisoned] == 1).all()
    assert (tact.labels[tact.poisoned] == 0).all() and (tact.labels[tact.cover] != 0).all()
    every = rows["all-to-all"]
    np.testing.assert_array_equal(every.labels[every.poisoned], (labels[every.poisoned] + 1) % 10)
    adaptive = rows["adaptive-blend"]
    assert adaptive.attack == "adaptive-blend" and adaptive.n_cover == 20
    sig = rows["clean-sig"]
    np.testing.assert_array_equal(sig.labels, labels)
    assert sig.n_poisoned == 20 == (labels == 0).sum() // 2 and (labels[sig.poisoned] == 0).all()
    flips = rows["pair-flip"]
    assert (labels[flips.poisoned] == 1).all() and (flips.labels[flips.poisoned] == 0).all()
    np.testing.assert_array_equal(flips.x, images)
    two = rows["two-backdoors"]
    assert (two.labels[two.sample_attacks == "patch"] == 0).all()
    assert (two.labels[two.sample_attacks == "blend"] == 1).all()
    assert two.n_poisoned == 40
    again = fashion_mnist.make_evasive_attack("tact", images, labels, rate=0.05, target=0)
    assert again.x.tobytes() == tact.x.tobytes()
    with pytest.raises(ValueError, match="unknown evasive attack 'badnets'"):
        fashion_mnist.make_evasive_attack("badnets", images, labels, rate=0.05)


def test_benchmark_truth_roles_and_scoring_without_cover(benchmarks, tmp_path):
    import csv

    from poisonguard.report.scores_csv import SCORES_HEADER, TRAILING_COLUMNS

    fashion_mnist, score_against_truth = benchmarks
    labels = np.array([0, 1, 2, 3, 0, 1])
    new = np.array([0, 0, 2, 3, 0, 1])
    payload = np.array([False, True, False, False, False, False])
    cover = np.array([False, False, True, False, False, False])
    attacks = np.array(["", "patch", "patch", "", "", ""])
    truth = tmp_path / "truth.csv"
    fashion_mnist.write_ground_truth(truth, labels, new, payload, attacks, cover=cover)
    with open(truth, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["role"] for r in rows] == ["clean", "payload", "cover", "clean", "clean", "clean"]
    assert [r["attack"] for r in rows] == ["", "patch", "patch", "", "", ""]
    assert [r["poisoned"] for r in rows] == ["0", "1", "0", "0", "0", "0"]

    # the scan flags the payload and the cover sample, and scores the cover sample highest
    scores = tmp_path / "scores.csv"
    with open(scores, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*SCORES_HEADER, "spectral", *TRAILING_COLUMNS])
        for i, score in enumerate([0.1, 0.8, 0.9, 0.2, 0.3, 0.4]):
            writer.writerow([i, i, labels[i], score, int(i in (1, 2)), score, "", labels[i], 0.9])
    with_roles = score_against_truth.detection_metrics(scores, truth)
    assert with_roles["n"] == 5 and with_roles["cover_excluded"] == 1
    assert with_roles["precision"] == 1.0 and with_roles["recall"] == 1.0
    assert with_roles["auroc_score"] == 1.0
    # an old file without the role column: the cover sample counts as a false flag
    old = tmp_path / "old.csv"
    fashion_mnist.write_ground_truth(old, labels, new, payload, "patch")
    lines = old.read_text().splitlines()
    old.write_text("\n".join(line.rsplit(",", 1)[0] for line in lines) + "\n")
    without = score_against_truth.detection_metrics(scores, old)
    assert without["n"] == 6 and "cover_excluded" not in without
    assert without["precision"] == 0.5 and without["auroc_score"] == 0.8
