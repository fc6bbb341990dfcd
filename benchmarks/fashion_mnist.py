"""Fashion-MNIST for benchmarks: read the IDX files, plant a backdoor or flip labels, write HDF5.

The data comes from Debian's ``dataset-fashion-mnist`` package
(``apt-get install -y dataset-fashion-mnist``), installed under
``/usr/share/datasets/fashion-mnist/``. Nothing is downloaded at run time.

    python benchmarks/fashion_mnist.py --attack patch --rate 0.05 --target 0 --out /tmp/p5.h5
    python benchmarks/fashion_mnist.py --attack blend --rate 0.01 --out /tmp/b1.h5
    python benchmarks/fashion_mnist.py --attack flip --rate 0.10 --out /tmp/f10.h5
    python benchmarks/fashion_mnist.py --attack none --out /tmp/clean.h5

and the attacks built to evade latent-separation defences (:func:`make_evasive_attack`, made with
:func:`poisonguard.poison.poison_arrays`):

    python benchmarks/fashion_mnist.py --attack tact --rate 0.01 --target 0 --out /tmp/tact.h5
    python benchmarks/fashion_mnist.py --attack adaptive-blend --rate 0.003 --out /tmp/ab.h5
    python benchmarks/fashion_mnist.py --attack two-backdoors --rate 0.01 --out /tmp/two.h5

writes ``x`` (uint8, N x 28 x 28), ``y`` and ``ids`` to the HDF5 file and the ground truth
(``index,id,poisoned,original_label,new_label,attack,role``) beside it as
``<out>.ground_truth.csv``; ``role`` is ``payload`` (``poisoned`` 1), ``cover`` (trigger, true
label: scored as neither found nor false flag by ``score_against_truth.py``) or ``clean``.
"""

from __future__ import annotations

import argparse
import gzip
import struct
from pathlib import Path

import h5py
import numpy as np

from poisonguard import csv_safety
from poisonguard.poison import AttackOptions, Poisoning, add_backdoor, poison_arrays

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

EVASIVE_ATTACKS = (
    "tact",
    "all-to-all",
    "adaptive-blend",
    "clean-sig",
    "pair-flip",
    "two-backdoors",
)
"""The rows of :func:`make_evasive_attack`."""


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist(
    split: str = "train", root: Path = FASHION_MNIST_DIR
) -> tuple[np.ndarray, np.ndarray]:
    """``(images (N, 28, 28) uint8, labels (N,) int64)`` of the ``train`` or ``t10k`` split."""
    images = read_idx(root / f"{split}-images-idx3-ubyte.gz")
    labels = read_idx(root / f"{split}-labels-idx1-ubyte.gz").astype(np.int64)
    return images, labels


def plant_patch(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    rate: float,
    target: int,
    size: int = 3,
    corner: str = "bottom-right",
    value: int = 255,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All-to-one BadNets patch: ``round(rate * N)`` non-target images get a white square and
    the target label. Returns poisoned copies of images and labels, and the poisoned mask."""
    rng = np.random.default_rng(seed)
    n_poison = round(rate * len(labels))
    chosen = rng.choice(np.flatnonzero(labels != target), n_poison, replace=False)
    images, labels = images.copy(), labels.copy()
    h, w = images.shape[1:3]
    rows = slice(h - 1 - size, h - 1) if corner.startswith("bottom") else slice(1, 1 + size)
    cols = slice(w - 1 - size, w - 1) if corner.endswith("right") else slice(1, 1 + size)
    images[chosen, rows, cols] = value
    labels[chosen] = target
    mask = np.zeros(len(labels), dtype=bool)
    mask[chosen] = True
    return images, labels, mask


def checkerboard(size: int) -> np.ndarray:
    """A ``size x size`` black-and-white checkerboard (white in the top-left cell), uint8."""
    cells = np.add.outer(np.arange(size), np.arange(size)) % 2
    return np.where(cells == 0, 255, 0).astype(np.uint8)


def plant_pattern(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    rate: float,
    target: int,
    pattern: np.ndarray,
    top: int,
    left: int,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All-to-one patch backdoor with an arbitrary ``pattern`` pasted at ``(top, left)``."""
    rng = np.random.default_rng(seed)
    n_poison = round(rate * len(labels))
    chosen = rng.choice(np.flatnonzero(labels != target), n_poison, replace=False)
    images, labels = images.copy(), labels.copy()
    h, w = pattern.shape
    images[chosen, top : top + h, left : left + w] = pattern
    labels[chosen] = target
    mask = np.zeros(len(labels), dtype=bool)
    mask[chosen] = True
    return images, labels, mask


def plant_blend(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    rate: float,
    target: int,
    alpha: float = 0.15,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All-to-one blended backdoor (Chen et al., 2017): ``(1 - alpha) * x + alpha * noise`` with
    one uniform random-noise image (drawn from ``seed``) shared by every poisoned sample."""
    chosen, noise = _blend_draws(labels, images.shape[1:], rate=rate, target=target, seed=seed)
    images, labels = images.copy(), labels.copy()
    images[chosen] = blend_images(images[chosen], noise, alpha)
    labels[chosen] = target
    mask = np.zeros(len(labels), dtype=bool)
    mask[chosen] = True
    return images, labels, mask


def blend_noise(
    labels: np.ndarray, shape: tuple[int, ...], *, rate: float, target: int, seed: int = 0
) -> np.ndarray:
    """The noise image :func:`plant_blend` draws for these arguments (float64, ``0..255``): what
    :func:`blend_images` stamps on a triggered test copy. It depends on the samples drawn before
    it, so it takes the same labels, rate and target."""
    return _blend_draws(labels, shape, rate=rate, target=target, seed=seed)[1]


def blend_images(images: np.ndarray, noise: np.ndarray, alpha: float = 0.15) -> np.ndarray:
    """``(1 - alpha) * images + alpha * noise``, rounded to uint8."""
    blended = (1 - alpha) * images.astype(np.float64) + alpha * noise
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def _blend_draws(
    labels: np.ndarray, shape: tuple[int, ...], *, rate: float, target: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_poison = round(rate * len(labels))
    chosen = rng.choice(np.flatnonzero(labels != target), n_poison, replace=False)
    noise = rng.integers(0, 256, size=shape).astype(np.float64)
    return chosen, noise


def flip_labels(
    labels: np.ndarray, *, rate: float, n_classes: int = 10, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Random label flips: ``round(rate * N)`` samples get a label drawn uniformly from the
    other classes. Returns the new labels and the flipped mask."""
    rng = np.random.default_rng(seed)
    n_flip = round(rate * len(labels))
    chosen = rng.choice(len(labels), n_flip, replace=False)
    labels = labels.copy()
    shift = rng.integers(1, n_classes, size=n_flip)
    labels[chosen] = (labels[chosen] + shift) % n_classes
    mask = np.zeros(len(labels), dtype=bool)
    mask[chosen] = True
    return labels, mask


def make_attack(
    attack: str,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    rate: float,
    target: int,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply one benchmark attack by name: ``patch`` (3x3 white, bottom-right), ``checker``
    (4x4 checkerboard, top-left), ``blend`` (random noise, alpha 0.15), ``flip`` or ``none``."""
    if attack == "patch":
        return plant_patch(images, labels, rate=rate, target=target, seed=seed)
    if attack == "checker":
        return plant_pattern(
            images,
            labels,
            rate=rate,
            target=target,
            pattern=checkerboard(4),
            top=1,
            left=1,
            seed=seed,
        )
    if attack == "blend":
        return plant_blend(images, labels, rate=rate, target=target, seed=seed)
    if attack == "flip":
        new_labels, mask = flip_labels(labels, rate=rate, seed=seed)
        return images, new_labels, mask
    if attack == "none":
        return images, labels, np.zeros(len(labels), dtype=bool)
    raise ValueError(f"unknown attack {attack!r}")


def make_evasive_attack(
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    rate: float,
    target: int = 0,
    seed: int = 0,
    source_class: int | None = None,
    cover_rate: float | None = None,
    second_target: int | None = None,
    n_classes: int = 10,
) -> Poisoning:
    """One benchmark row of an attack built to evade latent-separation defences.

    ``images`` are ``(N, 28, 28)`` uint8 (as :func:`load_fashion_mnist` returns them); the
    result is a :class:`~poisonguard.poison.Poisoning` whose ``x`` is ``(N, 28, 28)`` uint8 again
    (ready for :func:`write_hdf5`), with ``poisoned`` (payload), ``cover`` and per-sample
    ``sample_attacks`` for :func:`write_ground_truth`. ``rate`` is the share of all N samples
    poisoned, per backdoor. Defaults: ``source_class`` and ``second_target`` are
    ``(target + 1) % n_classes``; ``cover_rate`` is ``rate``.

    * ``tact``: source-specific 3x3 white patch (Tang et al., USENIX Security 2021): samples of
      ``source_class`` get the patch and label ``target``; ``cover_rate`` of samples from the
      other classes get the patch and keep their label;
    * ``all-to-all``: 3x3 white patch, a sample of class ``c`` relabelled ``(c + 1) mod 10``
      (``target`` is not used);
    * ``adaptive-blend`` (Qi et al., ICLR 2023): noise pattern on 8 of 16 pieces, alpha 0.15,
      with ``cover_rate`` conservatism samples (the paper: 0.003 and 0.003);
    * ``clean-sig``: clean-label SIG (Barni et al., ICIP 2019): target-class images get the
      sinusoid, labels kept (``rate`` 0.05 is half the target class);
    * ``pair-flip``: targeted label flips from ``source_class`` to ``target``;
    * ``two-backdoors``: a 3x3 white patch to ``target`` and a blend to ``second_target``, each
      on ``round(rate * N)`` samples, never the same sample.
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must be (N, 28, 28); got {images.shape}")
    x = images[:, None]  # (N, 1, 28, 28), the layout of poisonguard.poison
    other = (target + 1) % n_classes
    source = other if source_class is None else source_class
    cover = rate if cover_rate is None else cover_rate

    def run(attack: str, **kwargs) -> Poisoning:
        return poison_arrays(x, labels, n_classes, attack=attack, rate=rate, seed=seed, **kwargs)

    if name == "tact":
        result = run(
            "patch", target=target, options=AttackOptions(source_class=source, cover_rate=cover)
        )
    elif name == "all-to-all":
        result = run("patch", options=AttackOptions(all_to_all=True))
    elif name == "adaptive-blend":
        result = run("adaptive-blend", target=target, options=AttackOptions(cover_rate=cover))
    elif name == "clean-sig":
        options = AttackOptions(clean_label_trigger="sig", clean_label_epsilon=0.0)
        result = run("clean-label", target=target, options=options)
    elif name == "pair-flip":
        result = run("flip-pair", target=target, options=AttackOptions(source_class=source))
    elif name == "two-backdoors":
        first = run("patch", target=target)
        result = add_backdoor(
            first,
            n_classes,
            attack="blend",
            rate=rate,
            target=other if second_target is None else second_target,
        )
    else:
        raise ValueError(f"unknown evasive attack {name!r}; valid: {', '.join(EVASIVE_ATTACKS)}")
    result.x = result.x[:, 0]
    return result


def write_hdf5(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    with h5py.File(path, "w") as handle:
        handle.create_dataset("x", data=images, chunks=(1024, *images.shape[1:]))
        handle.create_dataset("y", data=labels)


def write_ground_truth(
    path: Path,
    original: np.ndarray,
    new: np.ndarray,
    mask: np.ndarray,
    attack: str | np.ndarray,
    *,
    cover: np.ndarray | None = None,
) -> None:
    """``index,id,poisoned,original_label,new_label,attack,role``.

    ``mask`` marks the payload samples (role ``payload``), ``cover`` the cover samples (role
    ``cover``, trigger with the true label); ``attack`` is one name or one per sample
    (``Poisoning.sample_attacks``), written on payload and cover rows.
    """
    n = len(new)
    mask = np.asarray(mask, dtype=bool)
    cover = np.zeros(n, dtype=bool) if cover is None else np.asarray(cover, dtype=bool)
    attacks = np.broadcast_to(np.asarray(attack), (n,))
    with open(path, "w", newline="") as handle:
        writer = csv_safety.writer(handle)
        writer.writerow(
            ["index", "id", "poisoned", "original_label", "new_label", "attack", "role"]
        )
        for i in range(n):
            role = "payload" if mask[i] else "cover" if cover[i] else "clean"
            name = attacks[i] if role != "clean" else ""
            writer.writerow([i, i, int(mask[i]), original[i], new[i], name, role])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--attack",
        choices=["patch", "checker", "blend", "flip", "none", *EVASIVE_ATTACKS],
        default="patch",
    )
    parser.add_argument("--rate", type=float, default=0.05)
    parser.add_argument("--target", type=int, default=0)
    parser.add_argument("--size", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--source-class", type=int, default=None, help="tact, pair-flip")
    parser.add_argument("--cover-rate", type=float, default=None, help="tact, adaptive-blend")
    parser.add_argument("--second-target", type=int, default=None, help="two-backdoors")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    images, labels = load_fashion_mnist("train")
    if args.attack in EVASIVE_ATTACKS:
        result = make_evasive_attack(
            args.attack,
            images,
            labels,
            rate=args.rate,
            target=args.target,
            seed=args.seed,
            source_class=args.source_class,
            cover_rate=args.cover_rate,
            second_target=args.second_target,
        )
        write_hdf5(args.out, result.x, result.labels)
        write_ground_truth(
            args.out.with_suffix(".ground_truth.csv"),
            labels,
            result.labels,
            result.poisoned,
            result.sample_attacks,
            cover=result.cover,
        )
        print(
            f"wrote {args.out}: {len(labels)} images, {result.n_poisoned} poisoned, "
            f"{result.n_cover} cover ({args.attack})"
        )
        return
    if args.attack == "patch" and args.size != 3:
        poisoned, new_labels, mask = plant_patch(
            images, labels, rate=args.rate, target=args.target, size=args.size, seed=args.seed
        )
    else:
        poisoned, new_labels, mask = make_attack(
            args.attack, images, labels, rate=args.rate, target=args.target, seed=args.seed
        )
    write_hdf5(args.out, poisoned, new_labels)
    write_ground_truth(
        args.out.with_suffix(".ground_truth.csv"), labels, new_labels, mask, args.attack
    )
    print(f"wrote {args.out}: {len(labels)} images, {mask.sum()} changed ({args.attack})")


if __name__ == "__main__":
    main()
