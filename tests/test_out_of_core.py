"""The out-of-core path: features left in an HDF5 file score exactly as features in memory."""

from __future__ import annotations

import json
import pickle

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from poisonguard.cli.main import main

from poisonguard.dataset import Dataset, RowNumbers
from poisonguard.detectors.confident_learning import confident_learning_scores
from poisonguard.detectors.per_class import per_class_scores
from poisonguard.detectors.streaming import (
    influence_self_scores,
    knn_label_disagreement,
    out_of_sample_probabilities,
)
from poisonguard.embed import EmbedSettings, embed_dataset
from poisonguard.ondisk import BLOCK_ROWS, ArrayFile, staging_area
from poisonguard.report.json_report import build_report_json
from poisonguard.report.scores_csv import scores_csv_text
from poisonguard.results import Embedding
from poisonguard.rows import Rows, RowStore
from poisonguard.scan import ScanSettings, scan_embedding
from poisonguard.tasks import LocalTasks

N_ROWS = 3 * BLOCK_ROWS + 123  # several blocks, the last one partial


@pytest.fixture(scope="module")
def features_file(tmp_path_factory):
    """10,000+ rows of 12-d features in four classes (class 2 with a planted far group), as an
    array and as a file read 2 blocks at a time."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, N_ROWS)
    centres = rng.normal(0, 3, size=(4, 12))
    features = (centres[labels] + rng.normal(size=(N_ROWS, 12))).astype(np.float32)
    far = np.flatnonzero(labels == 2)[:200]
    features[far] += 8.0
    logits = -((features[:, None, :] - centres[None]) ** 2).sum(axis=2) / 12
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    path = tmp_path_factory.mktemp("ooc") / "features.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("features", data=features, chunks=(1000, 12), compression="lzf")
    return (
        features,
        labels,
        probabilities.astype(np.float32),
        ArrayFile(path, chunk_rows=2 * BLOCK_ROWS),
    )


def test_an_array_file_reads_like_the_array(features_file):
    features, _, _, on_disk = features_file
    assert on_disk.shape == features.shape and on_disk.dtype == np.float32
    assert np.array_equal(on_disk[5:17], features[5:17])
    assert np.array_equal(on_disk[BLOCK_ROWS * 2 - 3 : BLOCK_ROWS * 2 + 3], features[8189:8195])
    index = np.sort(np.random.default_rng(0).choice(N_ROWS, 777, replace=False))
    assert np.array_equal(on_disk.rows(index), features[index])
    assert np.array_equal(Rows(on_disk).take(index), Rows(features).take(index))
    assert on_disk.rows(np.zeros(0, dtype=np.int64)).shape == (0, 12)
    blocks = list(Rows(on_disk).blocks())
    assert [rows.start for rows, _ in blocks] == list(range(0, N_ROWS, BLOCK_ROWS))
    assert np.array_equal(np.concatenate([block for _, block in blocks]), features)
    assert Rows(on_disk).all_finite()


def test_an_array_file_refuses_what_it_cannot_read(features_file):
    on_disk = features_file[3]
    with pytest.raises(ValueError, match="strictly increasing"):
        on_disk.rows(np.array([5, 3]))
    with pytest.raises(TypeError, match="row slices, rows or sorted index arrays"):
        on_disk[[1, 2]]
    with pytest.raises(TypeError, match="row slices"):
        on_disk[0:10:2]
    with pytest.raises(ValueError, match="strictly increasing"):
        on_disk[np.array([3, 3])]
    with pytest.raises(IndexError, match="out of range"):
        on_disk[N_ROWS]
    with pytest.raises(ValueError, match=f"multiple of {BLOCK_ROWS}"):
        ArrayFile(on_disk.path, chunk_rows=1000)


def test_an_array_file_travels_without_its_cached_block(features_file):
    on_disk = features_file[3]
    on_disk[0:10]  # fills the cached block
    assert len(pickle.dumps(on_disk)) < 1000
    copy = pickle.loads(pickle.dumps(on_disk))
    assert np.array_equal(copy[0:10], features_file[0][0:10])


def test_detectors_score_a_file_exactly_as_the_array(features_file):
    features, labels, probabilities, on_disk = features_file
    assert np.array_equal(
        knn_label_disagreement(on_disk, labels), knn_label_disagreement(features, labels)
    )
    assert np.array_equal(
        out_of_sample_probabilities(on_disk, labels, seed=4),
        out_of_sample_probabilities(features, labels, seed=4),
    )
    assert np.array_equal(
        influence_self_scores(on_disk, probabilities, labels),
        influence_self_scores(features, probabilities, labels),
    )
    in_memory = per_class_scores(features, labels, seed=2, runner=LocalTasks(2))
    from_file = per_class_scores(on_disk, labels, seed=2, runner=LocalTasks(2))
    assert np.array_equal(in_memory.spectral, from_file.spectral)
    assert np.array_equal(in_memory.robust.que, from_file.robust.que)
    assert np.array_equal(in_memory.clusters[0], from_file.clusters[0])
    # the planted group is what the robust distances single out, from the file too
    far = np.flatnonzero(labels == 2)[:200]
    ratio = from_file.robust.distance_ratio
    assert np.median(ratio[far]) > 10 * np.median(ratio[labels == 2])


def _synthetic_embedding(features, labels, probabilities, on_disk=None):
    """An embedding of the fixture's features with made-up training records (the planted far
    group is learned easily), in memory or, with ``on_disk``, every array in that file."""
    rng = np.random.default_rng(3)
    margin = rng.normal(2.0, 1.0, size=(labels.size, 4)).astype(np.float32)
    margin[np.flatnonzero(labels == 2)[:200]] += 3.0
    records = {
        "features": features,
        "probabilities": probabilities,
        "loss": np.log1p(np.exp(-margin)),
        "margin": margin,
        "gradient_sq": np.square(np.log1p(np.exp(-margin))),
    }
    if on_disk is not None:
        with h5py.File(on_disk, "w") as handle:
            for name, values in records.items():
                handle[name] = values
        records = {name: ArrayFile(on_disk, name, chunk_rows=2 * BLOCK_ROWS) for name in records}
    return Embedding(
        **records,
        model={"source": "synthetic"},
        input_shape=(features.shape[1],),
        train_accuracy=1.0,
        fingerprint="synthetic",
    )


def test_a_scan_with_staging_keeps_its_results_in_files_and_reports_the_same(
    features_file, tmp_path
):
    features, labels, probabilities, _ = features_file
    dataset = Dataset(
        x=features,
        labels=labels,
        class_names=list("abcd"),
        ids=RowNumbers(labels.size),
        kind="table",
        path=tmp_path / "synthetic",
        format="synthetic",
    )
    in_memory = scan_embedding(
        dataset, _synthetic_embedding(features, labels, probabilities), ScanSettings(seed=1)
    )
    on_disk = _synthetic_embedding(features, labels, probabilities, tmp_path / "embedding.h5")
    with staging_area(tmp_path / "cache", 2 * BLOCK_ROWS) as staging:
        staged = scan_embedding(dataset, on_disk, ScanSettings(seed=1), staging=staging)
        assert staged.detector_scores.keys() == in_memory.detector_scores.keys()
        for name, scores in staged.detector_scores.items():
            assert isinstance(scores, ArrayFile) and scores.path.parent == staging.folder, name
            assert np.array_equal(scores[0 : labels.size], in_memory.detector_scores[name]), name
        assert np.array_equal(staged.flagged, in_memory.flagged)
        assert np.array_equal(staged.score, in_memory.score)
        assert np.array_equal(staged.predicted, in_memory.predicted)
        assert scores_csv_text(staged) == scores_csv_text(in_memory)
        assert build_report_json(staged)["detectors"] == build_report_json(in_memory)["detectors"]
    assert staged.target_classes == in_memory.target_classes
    assert [f.verdict for f in staged.class_findings] == [
        f.verdict for f in in_memory.class_findings
    ]
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_shared_results_written_to_staging_equal_those_in_memory(features_file, tmp_path):
    features, labels, _, on_disk = features_file
    with staging_area(tmp_path, BLOCK_ROWS) as staging:
        store = RowStore(staging)
        oos = out_of_sample_probabilities(on_disk, labels, seed=4, store=store)
        assert isinstance(oos, ArrayFile)
        expected = out_of_sample_probabilities(features, labels, seed=4)
        assert np.array_equal(oos[0 : labels.size], expected)
        assert np.array_equal(
            Rows(oos).map(confident_learning_scores, labels),
            confident_learning_scores(expected, labels),
        )
        staged = per_class_scores(on_disk, labels, seed=2, store=store)
        in_memory = per_class_scores(features, labels, seed=2)
        for got, want in [
            (staged.spectral, in_memory.spectral),
            (staged.robust.distance_ratio, in_memory.robust.distance_ratio),
            (staged.clusters[0], in_memory.clusters[0]),
        ]:
            assert isinstance(got, ArrayFile)
            assert np.array_equal(got[0 : labels.size], want)
        single = out_of_sample_probabilities(on_disk, np.zeros_like(labels), store=store)
        assert np.array_equal(single[0 : labels.size][:, 0], np.ones(labels.size))


def test_a_non_finite_feature_file_is_refused(tmp_path):
    values = np.ones((50, 3), dtype=np.float32)
    values[40, 1] = np.nan
    with h5py.File(tmp_path / "bad.h5", "w") as handle:
        handle["features"] = values
    with pytest.raises(ValueError, match="NaN or infinite"):
        knn_label_disagreement(ArrayFile(tmp_path / "bad.h5"), np.arange(50) % 2)


@pytest.fixture(scope="module")
def small_images(tmp_path_factory, synthetic):
    from poisonguard.loaders import load_dataset

    folder = synthetic.write_image_folder(
        tmp_path_factory.mktemp("ooc-images") / "images", {c: 40 for c in "abcd"}, planted={"b": 10}
    )
    return folder, load_dataset(folder)


def test_an_out_of_core_embedding_keeps_its_features_in_the_cache_file(small_images, tmp_path):
    _, dataset = small_images
    settings = EmbedSettings(epochs=2)
    in_memory = embed_dataset(dataset, settings, use_cache=False, progress=False)
    with staging_area(tmp_path / "staging-parent", BLOCK_ROWS) as staging:
        # training keeps one epoch of records in memory, the others in staging files
        streamed = embed_dataset(
            dataset,
            settings,
            cache_dir=tmp_path,
            chunk_rows=BLOCK_ROWS,
            progress=False,
            staging=staging,
        )
        assert len(list(staging.folder.glob("array-*.h5"))) == 3
    assert streamed.train_accuracy == in_memory.train_accuracy
    n = dataset.n_samples
    for name in ("features", "probabilities", "loss", "margin", "gradient_sq"):
        on_disk = getattr(streamed, name)
        assert isinstance(on_disk, ArrayFile) and on_disk.path == streamed.cache_path
        assert np.array_equal(on_disk[0:n], getattr(in_memory, name)), name
    assert streamed.cache_path.is_file()
    again = embed_dataset(
        dataset, settings, cache_dir=tmp_path, chunk_rows=BLOCK_ROWS, progress=False
    )
    assert again.from_cache
    assert all(isinstance(getattr(again, name), ArrayFile) for name in ("features", "margin"))
    assert np.array_equal(again.gradient_sq[0:n], in_memory.gradient_sq)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [streamed.cache_path.name, "staging-parent"]
    )
    with pytest.raises(ValueError, match="cannot run without it"):
        embed_dataset(dataset, settings, use_cache=False, chunk_rows=BLOCK_ROWS)


@pytest.mark.slow
def test_an_out_of_core_scan_writes_the_same_scores_csv(small_images, tmp_path):
    folder, _ = small_images
    outputs = []
    runs = (
        ("memory", ["--no-cache"]),
        ("file", ["--chunk-rows", "8192", "--cache-dir", str(tmp_path / "cache")]),
        # trained again, its inference and per-class tasks on workers that open the cache file
        ("dask", ["--chunk-rows", "4096", "--dask", "local", "--cache-dir", str(tmp_path / "c2")]),
    )
    for name, extra in runs:
        out = tmp_path / name
        arguments = ["scan", str(folder), "--epochs", "2", "--out", str(out), *extra]
        result = CliRunner().invoke(main, arguments)
        assert result.exit_code == 0, result.output + repr(result.exception)
        outputs.append((out / "scores.csv").read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]
    assert b"planted_" in outputs[0]
    execution = json.loads((tmp_path / "file" / "report.json").read_text())["execution"]
    assert execution["features"].startswith(f"file {tmp_path / 'cache'}")
    assert execution["features"].endswith("8192 rows at a time")
    assert execution["samples"].startswith("a staging file removed after the scan")
    assert not any((tmp_path / "cache").glob("staging-*"))  # and it was removed


@pytest.mark.slow
def test_an_out_of_core_scan_of_the_digits_sample_reads_the_same_scores(tmp_path):
    """The shipped digits backdoor, staged on disk: the decision's tests read samples from a
    file, which reads strictly increasing positions (the transplant test's neighbours repeat
    and come nearest first), and the scores are the in-memory scan's, byte for byte."""
    import hashlib
    from pathlib import Path

    from test_end_to_end import GOLDEN_SCORES

    folder = Path(__file__).resolve().parent.parent / "sample_data" / "digits" / "backdoor"
    out = tmp_path / "out"
    arguments = ["scan", str(folder), "--chunk-rows", "4096", "--cache-dir", str(tmp_path / "c")]
    result = CliRunner().invoke(main, [*arguments, "--out", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    digest = hashlib.sha256((out / "scores.csv").read_bytes()).hexdigest()
    assert digest == GOLDEN_SCORES["digits"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--chunk-rows", "8192", "--no-cache"], "drop --no-cache"),
        (["--chunk-rows", "5000"], "multiple of 4096"),
        (["--chunk-rows", "100"], "4096"),
    ],
)
def test_bad_chunk_rows_are_usage_errors(small_images, tmp_path, extra, message):
    folder, _ = small_images
    out = tmp_path / "report"
    result = CliRunner().invoke(main, ["scan", str(folder), "--out", str(out), *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not out.exists()


def staged_and_eager(path, tmp_path, **options):
    from poisonguard.loaders import load_dataset
    from poisonguard.ondisk import staging_area

    eager = load_dataset(path, **options)
    with staging_area(tmp_path / "cache", BLOCK_ROWS) as staging:
        staged = load_dataset(path, staging=staging, **options)
        assert isinstance(staged.x, ArrayFile) and staged.x.path.parent == staging.folder
        assert staged.x.shape == eager.x.shape and staged.x.dtype == eager.x.dtype
        values = staged.x[0 : staged.n_samples]
        assert np.array_equal(staged.x[np.array([0, staged.n_samples - 1])], eager.x[[0, -1]])
        assert np.array_equal(staged.x[1], eager.x[1])
        folder = staging.folder
    assert not folder.exists()  # the staging area is removed with its files
    assert np.array_equal(values, eager.x)
    assert np.array_equal(staged.labels, eager.labels) and staged.ids == eager.ids
    assert staged.notes == eager.notes
    return staged, eager


@pytest.mark.parametrize("widen", [False, True])
def test_hdf5_samples_staged_on_disk_equal_the_loaded_ones(tmp_path, widen):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(300, 6, 6, 3)).astype(np.int16)  # NHWC, read in layout NCHW
    if widen:
        x[250, 0, 0, 0] = 1000  # an integer beyond 0..255 late in the file: stored as float32
    with h5py.File(tmp_path / "data.h5", "w") as handle:
        handle["x"] = x
        handle["y"] = np.arange(300) % 3
    from poisonguard.loaders.array_layout import copy_chunked, plan_layout

    staged, eager = staged_and_eager(tmp_path / "data.h5", tmp_path)
    assert eager.x.dtype == (np.float32 if widen else np.uint8)
    # block by block: a staged copy made 64 samples at a time is the same
    with h5py.File(tmp_path / "data.h5", "r") as handle:
        from poisonguard.ondisk import staging_area

        with staging_area(tmp_path / "cache") as staging:
            layout = plan_layout(handle["x"].shape, path=tmp_path / "data.h5")
            small, _ = copy_chunked(
                handle["x"], layout, path="data.h5", chunk_samples=64, staging=staging
            )
            assert np.array_equal(small[0:300], eager.x)


def test_image_folder_samples_staged_on_disk_equal_the_loaded_ones(tmp_path, synthetic):
    from PIL import Image

    folder = synthetic.write_image_folder(tmp_path / "images", {c: 20 for c in "abc"})
    staged_and_eager(folder, tmp_path)
    # an unreadable image of the common size leaves its row unused at the end of the file
    image = Image.fromarray(synthetic.pattern_image(0, np.random.default_rng(0)))
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    (folder / "b" / "truncated.png").write_bytes(buffer.getvalue()[:60])
    staged, _ = staged_and_eager(folder, tmp_path, skip_bad=True)
    assert staged.x.length == 60 and [rel for rel, _ in staged.skipped] == ["b/truncated.png"]


def test_npz_and_csv_are_read_whole_even_when_staging(tmp_path, synthetic):
    from poisonguard.loaders import load_dataset
    from poisonguard.ondisk import staging_area

    np.savez(tmp_path / "data.npz", x=np.ones((20, 4), dtype=np.float32), y=np.arange(20) % 2)
    table = synthetic.write_table_csv(tmp_path / "table.csv")
    with staging_area(tmp_path / "cache") as staging:
        for path in (tmp_path / "data.npz", table):
            assert isinstance(load_dataset(path, staging=staging).x, np.ndarray)


def test_reads_of_wide_rows_are_capped_in_bytes(tmp_path):
    from poisonguard.ondisk import MAX_READ_BYTES

    rows = np.arange(40 * 3 * 64 * 64, dtype=np.uint8).reshape(40, 3, 64, 64)
    with h5py.File(tmp_path / "images.h5", "w") as handle:
        handle["x"] = rows
    images = ArrayFile(tmp_path / "images.h5", "x", chunk_rows=BLOCK_ROWS * 16)
    assert images.read_rows * rows[0].nbytes <= MAX_READ_BYTES
    assert images.read_rows % BLOCK_ROWS == 0 and images.read_rows < images.chunk_rows
    assert np.array_equal(images[3:9], rows[3:9]) and np.array_equal(images[7], rows[7])
