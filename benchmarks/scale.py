"""How the detectors and the report scale: synthetic embeddings at 10k, 100k and 1M samples.

    python benchmarks/scale.py --sizes 10000,100000,1000000 --out docs/scale-results.json
    python benchmarks/scale.py --out-of-core --out docs/scale-results-out-of-core.json
    python benchmarks/scale.py --sizes 1000000 --out-of-core --dask local

Each size runs in its own process (so its peak resident memory is its own): a synthetic embedding
of ``N x 128`` float32 features in 10 classes with a planted backdoor cluster (2 % of the data,
drawn from several source classes and relabelled to class 0), probabilities from a softmax over
distances to the class centres, and five epochs of margins and losses. The process runs every
detector, the decision and the report exactly as a scan does after embedding
(:func:`poisonguard.scan.scan_embedding`, :func:`poisonguard.report.write_report`). No model is
trained. Records time per stage, peak RSS, and precision/recall of the planted cluster.

``--out-of-core`` measures the path of ``scan --chunk-rows``: a first process writes the
embedding to an HDF5 file (as the embedding cache holds it), and in the measured process the
features, probabilities and training records stay in that file as
:class:`~poisonguard.ondisk.ArrayFile` objects (the dataset's samples are then a zero-stride
placeholder, since a scan that has embedded its data does not read the samples again for a
table). ``--dask ADDRESS`` runs the per-class detectors as tasks on a Dask cluster (``local``:
a LocalCluster on this machine; its workers' memory is not in the peak RSS).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

N_CLASSES = 10
DIM = 128
EPOCHS = 5


def synthetic(n: int, seed: int = 0):
    from poisonguard.results import Embedding

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, N_CLASSES, size=n)
    centres = rng.normal(0, 4.0, size=(N_CLASSES, DIM)).astype(np.float32)
    features = centres[labels] + rng.standard_normal(size=(n, DIM), dtype=np.float32)
    poisoned = np.zeros(n, dtype=bool)
    sources = np.flatnonzero(labels != 0)
    chosen = rng.choice(sources, size=int(0.02 * n), replace=False)
    poisoned[chosen] = True
    trigger = rng.normal(0, 3.0, size=DIM).astype(np.float32)
    # the source class's look, shifted by the trigger direction, relabelled to the target
    features[chosen] = 0.5 * features[chosen] + 0.5 * centres[0] + trigger
    labels[chosen] = 0
    # squared distances to the centres, in chunks (a full (N, 10, 128) temporary would be 5 GB)
    distances = np.concatenate(
        [
            ((features[i : i + 20_000, None, :] - centres[None]) ** 2).sum(axis=2)
            for i in range(0, n, 20_000)
        ]
    )
    logits = -distances / DIM
    logits -= logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    given = logits[rows, labels]
    others = logits.copy()
    others[rows, labels] = -np.inf
    margin_final = given - others.max(axis=1)
    ramp = np.linspace(0.2, 1.0, EPOCHS, dtype=np.float32)
    margin = (margin_final[:, None] * ramp[None]).astype(np.float32)
    # the trigger is a shortcut: poisons are learned more easily than a typical sample
    typical = float(np.median(margin_final[~poisoned]))
    margin[poisoned] = (typical + 2.0) * ramp[None]
    loss = np.log1p(np.exp(-margin)).astype(np.float32)
    embedding = Embedding(
        features=features,
        probabilities=probabilities.astype(np.float32),
        loss=loss,
        margin=margin,
        gradient_sq=np.square(loss),
        model={"source": "synthetic"},
        input_shape=(DIM,),
        train_accuracy=float(np.mean(probabilities.argmax(axis=1) == labels)),
        fingerprint="synthetic",
    )
    return _dataset(features, labels), embedding, poisoned


def _dataset(x, labels: np.ndarray):
    from poisonguard.dataset import Dataset, RowNumbers

    n = labels.shape[0]
    return Dataset(
        x=x,
        labels=labels.astype(np.int64),
        class_names=[str(c) for c in range(N_CLASSES)],
        ids=RowNumbers(n),
        kind="table",
        path=Path(f"synthetic-{n}"),
        format="synthetic",
        feature_names=[f"f{j}" for j in range(DIM)],
    )


_ARRAYS = ("probabilities", "loss", "margin", "gradient_sq")


def write_synthetic(n: int, path: Path) -> None:
    """The synthetic embedding of ``n`` samples, as an HDF5 file (features in 4,096-row blocks)."""
    import h5py

    dataset, embedding, poisoned = synthetic(n)
    with h5py.File(path, "w") as handle:
        handle.create_dataset(
            "features",
            data=embedding.features,
            chunks=(min(n, 4096), DIM),
            compression="lzf",
        )
        for name in _ARRAYS:
            handle[name] = getattr(embedding, name)
        handle["labels"] = dataset.labels
        handle["poisoned"] = poisoned
        handle.attrs["train_accuracy"] = embedding.train_accuracy


def read_synthetic(path: Path, chunk_rows: int):
    """What :func:`write_synthetic` wrote, with the per-sample arrays left in the file (as an
    out-of-core scan's embedding holds them)."""
    import h5py

    from poisonguard.ondisk import ArrayFile
    from poisonguard.results import Embedding

    with h5py.File(path, "r") as handle:
        labels, poisoned = handle["labels"][()], handle["poisoned"][()]
        accuracy = float(handle.attrs["train_accuracy"])
    n = labels.shape[0]
    embedding = Embedding(
        **{name: ArrayFile(path, name, chunk_rows) for name in ("features", *_ARRAYS)},
        model={"source": "synthetic"},
        input_shape=(DIM,),
        train_accuracy=accuracy,
        fingerprint="synthetic",
    )
    placeholder = np.broadcast_to(np.zeros((1, DIM), dtype=np.float32), (n, DIM))
    return _dataset(placeholder, labels), embedding, poisoned


def run_one(n: int, *, feature_file: Path | None, chunk_rows: int, dask: str | None) -> dict:
    from poisonguard.machine import available_cores
    from poisonguard.metrics import detection_metrics
    from poisonguard.ondisk import staging_area
    from poisonguard.report import write_report
    from poisonguard.scan import ScanSettings, scan_embedding
    from poisonguard.tasks import task_runner

    start = time.perf_counter()
    if feature_file is None:
        dataset, embedding, poisoned = synthetic(n)
    else:
        dataset, embedding, poisoned = read_synthetic(feature_file, chunk_rows)
    build = time.perf_counter() - start
    with ExitStack() as stack:
        staging = None
        if feature_file is not None:  # as `scan --chunk-rows`: per-sample results staged
            staging = stack.enter_context(staging_area(feature_file.parent, chunk_rows))
        with task_runner(dask, workers=available_cores()) as runner:
            result = scan_embedding(
                dataset, embedding, ScanSettings(), runner=runner, staging=staging
            )
        with tempfile.TemporaryDirectory() as tmp:
            write_report(result, Path(tmp) / "report")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    metrics = detection_metrics(poisoned, result.flagged, result.score)
    return {
        "n": n,
        "features": "in memory" if feature_file is None else f"file, chunk_rows={chunk_rows}",
        "tasks": runner.description,
        "build_s": round(build, 1),
        "timings": {k: round(v, 2) for k, v in result.timings.items()},
        "detect_and_report_s": round(sum(result.timings.values()), 1),
        "peak_rss_mb": round(peak_mb),
        "precision": metrics["precision"],
        "recall": metrics["recall"],
        "target_classes": result.target_classes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--out-of-core", action="store_true", help="features stay in an HDF5 file")
    parser.add_argument("--chunk-rows", type=int, default=65_536)
    parser.add_argument("--dask", default=None, help="Dask scheduler address, or 'local'")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--write", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None and args.write:
        write_synthetic(args.one, args.file)
        return
    if args.one is not None:
        options = dict(feature_file=args.file, chunk_rows=args.chunk_rows, dask=args.dask)
        print(json.dumps(run_one(args.one, **options)))
        return
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        command = [sys.executable, __file__, "--one", str(n), "--chunk-rows", str(args.chunk_rows)]
        if args.dask:
            command += ["--dask", args.dask]
        with tempfile.TemporaryDirectory() as tmp:
            if args.out_of_core:
                feature_file = Path(tmp) / "embedding.h5"
                subprocess.run([*command, "--write", "--file", str(feature_file)], check=True)
                command += ["--file", str(feature_file)]
            done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            row = {"n": n, "error": done.stderr.strip().splitlines()[-1:]}
        else:
            row = json.loads(done.stdout.strip().splitlines()[-1])
        print(json.dumps(row), flush=True)
        rows.append(row)
    if args.out is not None:
        record = {
            "date": datetime.now(timezone.utc).date().isoformat(),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
            "command": " ".join(sys.argv),
            "runs": rows,
        }
        args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
