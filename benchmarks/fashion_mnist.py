"""Fashion-MNIST for benchmarks: read the IDX files, plant a patch backdoor, write HDF5.

The data comes from Debian's ``dataset-fashion-mnist`` package
(``apt-get install -y dataset-fashion-mnist``), installed under
``/usr/share/datasets/fashion-mnist/``. Nothing is downloaded at run time.

    python benchmarks/fashion_mnist.py --rate 0.05 --target 0 --out /tmp/fmnist-patch5.h5

writes ``x`` (uint8, N x 28 x 28), ``y`` and ``ids`` to the HDF5 file and the ground truth
(``index,id,poisoned,original_label,new_label,attack``) beside it as ``<out>.ground_truth.csv``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import struct
from pathlib import Path

import h5py
import numpy as np

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


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


def write_hdf5(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    with h5py.File(path, "w") as handle:
        handle.create_dataset("x", data=images, chunks=(1024, *images.shape[1:]))
        handle.create_dataset("y", data=labels)


def write_ground_truth(
    path: Path, original: np.ndarray, new: np.ndarray, mask: np.ndarray, attack: str
) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "id", "poisoned", "original_label", "new_label", "attack"])
        for i in range(len(new)):
            writer.writerow([i, i, int(mask[i]), original[i], new[i], attack if mask[i] else ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=0.05)
    parser.add_argument("--target", type=int, default=0)
    parser.add_argument("--size", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    images, labels = load_fashion_mnist("train")
    poisoned, new_labels, mask = plant_patch(
        images, labels, rate=args.rate, target=args.target, size=args.size, seed=args.seed
    )
    write_hdf5(args.out, poisoned, new_labels)
    write_ground_truth(args.out.with_suffix(".ground_truth.csv"), labels, new_labels, mask, "patch")
    print(f"wrote {args.out}: {len(labels)} images, {mask.sum()} poisoned -> class {args.target}")


if __name__ == "__main__":
    main()
