"""Tasks: the per-class detectors and the embedding inference give the same results one class or
chunk at a time as over the whole dataset, on a thread pool, and on a Dask LocalCluster."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from poisonguard.cli.main import main

import poisonguard.embed as embed
import poisonguard.embed.inference as inference
import poisonguard.tasks as tasks
from poisonguard.detectors.class_rows import (
    activation_clustering,
    robust_class_fits,
    spectral_signature_scores,
)
from poisonguard.detectors.per_class import per_class_scores
from poisonguard.embed.training import run_inference
from poisonguard.errors import PoisonGuardError
from poisonguard.tasks import DaskTasks, LocalTasks, single_threaded, task_runner

SEED = 3
DIGITS = Path(__file__).resolve().parents[1] / "sample_data" / "digits" / "backdoor"


@pytest.fixture(scope="module")
def features_and_labels() -> tuple[np.ndarray, np.ndarray]:
    """Three classes of 16-d float32 features; class 1 holds a far group of 30 (a planted
    cluster), class 2 has fewer rows than activation clustering's fit subset."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(700, 16)).astype(np.float32)
    labels = np.repeat([0, 1, 2], [300, 300, 100])
    features[300:330] += 6.0
    order = rng.permutation(labels.size)
    return features[order], labels[order]


@contextmanager
def local_dask_tasks(n_workers: int, **config) -> Iterator[DaskTasks]:
    """A LocalCluster of single-threaded worker processes (with dask ``config`` set) as tasks."""
    distributed = pytest.importorskip("distributed")
    import dask

    with (
        dask.config.set(config),
        distributed.LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.CRITICAL,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield DaskTasks(client, "test cluster")


@pytest.fixture(scope="module")
def dask_tasks():
    with local_dask_tasks(2) as runner:
        yield runner


def assert_same_per_class(a, b) -> None:
    assert np.array_equal(a.spectral, b.spectral)
    for name in ("que", "distance", "distance_ratio", "scored"):
        assert np.array_equal(getattr(a.robust, name), getattr(b.robust, name)), name
    assert np.array_equal(a.clusters[0], b.clusters[0])
    assert [(s.code, s.size, s.separation) for s in a.clusters[1]] == [
        (s.code, s.size, s.separation) for s in b.clusters[1]
    ]
    for left, right in zip(a.clusters[1], b.clusters[1], strict=True):
        assert np.array_equal(left.minority, right.minority)


def test_per_class_tasks_equal_the_whole_dataset_functions(features_and_labels):
    features, labels = features_and_labels
    result = per_class_scores(features, labels, seed=SEED, min_class_size=10)
    with single_threaded():  # as every task runs (thread counts change the last bits)
        spectral = spectral_signature_scores(features, labels)
        whole = robust_class_fits(features, labels, seed=SEED)
        scores, splits = activation_clustering(features, labels, seed=SEED)

    assert np.array_equal(result.spectral, spectral)
    for name in ("que", "distance", "distance_ratio", "scored"):
        assert np.array_equal(getattr(result.robust, name), getattr(whole, name)), name
    assert np.array_equal(result.clusters[0], scores)
    assert [s.code for s in result.clusters[1]] == [s.code for s in splits]
    # and the planted group is what class 1's split and the robust distances single out
    planted = np.flatnonzero((labels == 1) & (np.abs(features).mean(axis=1) > 3))
    split_1 = next(s for s in result.clusters[1] if s.code == 1)
    assert set(split_1.minority) == set(planted)
    assert result.robust.distance_ratio[planted].min() > np.median(result.robust.distance_ratio)


def test_a_class_result_does_not_depend_on_the_other_classes(features_and_labels):
    features, labels = features_and_labels
    both = per_class_scores(features, labels, seed=SEED)
    alone = labels == 1
    only_1 = per_class_scores(features[alone], labels[alone], seed=SEED)
    assert np.array_equal(both.robust.que[alone], only_1.robust.que)
    assert np.array_equal(both.clusters[0][alone], only_1.clusters[0])


def test_per_class_scores_on_a_thread_pool_and_on_dask_equal_one_after_another(
    features_and_labels, dask_tasks
):
    features, labels = features_and_labels
    sequential = per_class_scores(features, labels, seed=SEED, runner=LocalTasks(1))
    assert_same_per_class(
        sequential, per_class_scores(features, labels, seed=SEED, runner=LocalTasks(2))
    )
    assert_same_per_class(
        sequential, per_class_scores(features, labels, seed=SEED, runner=dask_tasks)
    )


@pytest.fixture(scope="module")
def trained_embedding(tmp_path_factory, synthetic):
    from poisonguard.loaders import load_dataset

    folder = synthetic.write_image_folder(
        tmp_path_factory.mktemp("tasks") / "images", {c: 300 for c in "abcd"}
    )
    dataset = load_dataset(folder)
    return dataset, embed.embed_dataset(
        dataset, embed.EmbedSettings(epochs=1), use_cache=False, progress=False
    )


def test_chunked_inference_equals_one_pass_and_runs_anywhere(trained_embedding, dask_tasks):
    dataset, embedding = trained_embedding
    model, scaler = inference.trained_model(embedding)
    with single_threaded():
        one_pass = run_inference(model, dataset.x, scaler, progress=False)
    assert dataset.n_samples == 1200  # three chunks of 512 rows, the last one partial
    options = dict(weights=embedding.weights, n_classes=4, chunk_rows=512)
    for runner in (LocalTasks(1), LocalTasks(2), dask_tasks):
        features, probabilities = inference.infer_in_chunks(runner, dataset.x, **options)
        assert np.array_equal(features, one_pass[0]), runner.description
        assert np.array_equal(probabilities, one_pass[1]), runner.description
    # embed_dataset itself stores what the chunked inference gives
    assert np.array_equal(embedding.features, one_pass[0])


def test_a_task_that_cannot_read_its_file_on_a_worker_is_a_clear_error(dask_tasks, tmp_path):
    missing = str(tmp_path / "not-on-this-worker.h5")
    with pytest.raises(PoisonGuardError, match="a task failed on the test cluster.*not-on-this"):
        dask_tasks.map(open, [missing])


def test_local_tasks_keep_order_and_restore_threads():
    import torch

    before = torch.get_num_threads()
    assert LocalTasks(2).map(lambda value: value * value, [3, 1, 2]) == [9, 1, 4]
    assert LocalTasks(1).map(lambda value: torch.get_num_threads(), [0]) == [1]
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="workers must be >= 1"):
        LocalTasks(0)


def test_threaded_in_order_keeps_order_and_draws_a_few_items_ahead():
    drawn = []

    def items():
        for value in range(20):
            drawn.append(value)
            yield value

    results = tasks.threaded_in_order(lambda value: value * value, items(), 2)
    assert [next(results) for _ in range(3)] == [0, 1, 4]
    # at most 2 x workers items in flight beyond those taken
    assert len(drawn) <= 3 + 4
    assert list(results) == [value * value for value in range(3, 20)]
    assert list(tasks.threaded_in_order(str, iter([1, 2]), 1)) == ["1", "2"]
    assert list(tasks.threaded_in_order(str, [], 3)) == []
    with pytest.raises(ValueError, match="workers must be >= 1"):
        list(tasks.threaded_in_order(str, [1], 0))

    def fails(value):
        if value == 5:
            raise RuntimeError("item 5")
        return value

    with pytest.raises(RuntimeError, match="item 5"):
        list(tasks.threaded_in_order(fails, range(10), 2))


def test_an_unreachable_scheduler_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(tasks, "CONNECT_TIMEOUT_S", 1)
    with pytest.raises(PoisonGuardError, match="cannot use the Dask scheduler 'tcp://127.0.0.1:9'"):
        with task_runner("tcp://127.0.0.1:9"):
            pass


@pytest.mark.slow
def test_scan_with_dask_local_writes_the_same_scores_csv(tmp_path, synthetic, monkeypatch):
    monkeypatch.setattr(inference, "INFERENCE_CHUNK_ROWS", 64)  # several inference tasks
    folder = synthetic.write_image_folder(
        tmp_path / "images", {c: 40 for c in "abcd"}, planted={"a": 12}
    )
    outputs = {}
    for name, extra in (("local", []), ("dask", ["--dask", "local"])):
        out = tmp_path / name
        result = CliRunner().invoke(
            main,
            ["scan", str(folder), "--epochs", "3", "--no-cache", "--out", str(out), *extra],
        )
        assert result.exit_code == 0, result.output + repr(result.exception)
        outputs[name] = out
    local, dask = (outputs[name] / "scores.csv" for name in ("local", "dask"))
    assert local.read_bytes() == dask.read_bytes()
    assert "planted_" in local.read_text()
    execution = json.loads((outputs["dask"] / "report.json").read_text())["execution"]
    assert (
        execution["tasks"].startswith("dask LocalCluster") and execution["features"] == "in memory"
    )


def test_scan_with_an_unreachable_scheduler_exits_1_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(tasks, "CONNECT_TIMEOUT_S", 1)
    out = tmp_path / "report"
    result = CliRunner().invoke(
        main,
        ["scan", str(DIGITS), "--dask", "tcp://127.0.0.1:9", "--out", str(out)],
    )
    assert result.exit_code == 1
    assert "cannot use the Dask scheduler 'tcp://127.0.0.1:9'" in result.output
    assert not out.exists()


# --- security: dask's own TLS configuration is honoured (issue 14, item 6) ---


def test_a_tcp_address_is_refused_when_dask_requires_encryption(tmp_path):
    dask = pytest.importorskip("dask")
    out = tmp_path / "report"
    with dask.config.set({"distributed.comm.require-encryption": True}):
        for address in ("tcp://127.0.0.1:8786", "127.0.0.1:8786", "local"):
            with pytest.raises(PoisonGuardError, match="requires encryption"):
                with task_runner(address):
                    pass
        result = CliRunner().invoke(
            main, ["scan", str(DIGITS), "--dask", "tcp://127.0.0.1:8786", "--out", str(out)]
        )
    assert result.exit_code == 1
    message = [line for line in result.output.splitlines() if "requires encryption" in line]
    assert len(message) == 1 and "'tcp://127.0.0.1:8786' is not a tls:// address" in message[0]
    assert "Traceback" not in result.output
    assert not out.exists()


class RecordingClient:
    """Stands in for distributed.Client: records how it was built."""

    calls: list[tuple[tuple, dict]] = []

    def __init__(self, *args, **kwargs) -> None:
        RecordingClient.calls.append((args, kwargs))

    def close(self) -> None:
        pass


def test_the_client_gets_the_security_of_dask_s_configuration(tmp_path, monkeypatch):
    dask = pytest.importorskip("dask")
    distributed = pytest.importorskip("distributed")
    monkeypatch.setattr(distributed, "Client", RecordingClient)
    RecordingClient.calls = []
    files = {}
    for name in ("ca.pem", "client.pem", "client.key"):
        files[name] = tmp_path / name
        files[name].write_text("not read until a connection is made\n")
    config = {
        "distributed.comm.require-encryption": True,
        "distributed.comm.tls.ca-file": str(files["ca.pem"]),
        "distributed.comm.tls.client.cert": str(files["client.pem"]),
        "distributed.comm.tls.client.key": str(files["client.key"]),
    }
    with dask.config.set(config):
        with task_runner("tls://scheduler.example:8786") as runner:
            assert runner.description == "dask cluster at tls://scheduler.example:8786"
    (args, kwargs), *_ = RecordingClient.calls
    assert args == ("tls://scheduler.example:8786",)
    security = kwargs["security"]
    assert isinstance(security, distributed.security.Security)
    assert security.require_encryption is True
    assert security.tls_ca_file == str(files["ca.pem"])
    assert security.tls_client_cert == str(files["client.pem"])
    assert security.tls_client_key == str(files["client.key"])
    # without TLS settings a tcp:// address still connects, with the configuration's defaults
    RecordingClient.calls = []
    with task_runner("tcp://127.0.0.1:8786"):
        pass
    security = RecordingClient.calls[0][1]["security"]
    assert security.require_encryption in (False, None) and security.tls_ca_file is None


def test_a_configured_security_loader_is_left_to_the_client(monkeypatch):
    dask = pytest.importorskip("dask")
    distributed = pytest.importorskip("distributed")
    monkeypatch.setattr(distributed, "Client", RecordingClient)
    RecordingClient.calls = []
    with dask.config.set({"distributed.client.security-loader": "my_site.load_security"}):
        with task_runner("tls://scheduler.example:8786"):
            pass
    assert RecordingClient.calls[0][1]["security"] is None  # distributed calls the loader


def test_a_worker_killed_during_a_task_is_a_clear_error():
    """An interrupted worker (here one that exits in the middle of its task) ends the scan with
    one line naming the cluster, not a traceback or a hang."""
    with local_dask_tasks(1, **{"distributed.scheduler.allowed-failures": 0}) as runner:
        with pytest.raises(PoisonGuardError, match="a task failed on the test cluster"):
            runner.map(os._exit, [3])
