"""Where the scan's independent pieces of work run: in this process, or on a Dask cluster.

Two stages are split into tasks: embedding inference (one task per chunk of rows, see
:func:`poisonguard.embed.inference.infer_in_chunks`) and the per-class detectors (one task per
class, see :mod:`poisonguard.detectors.per_class`). A task is a module-level function of one
argument, so that it can be shipped to a Dask worker.

Every task runs with one BLAS/OpenMP thread and one torch thread, wherever it runs. The number of
threads changes how sums are split, and so the last bits of floating-point results (measured:
SmallCNN features differ by up to 6e-6 between one and two torch threads). With the thread count
fixed, a task's result does not depend on where it ran, and the same seed gives the same
``scores.csv`` in one process or on a cluster of machines with the same kind of CPU.
:class:`LocalTasks` gets its parallelism back by running tasks on a pool of threads instead.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from typing import Any, Protocol, TypeVar

import torch
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from poisonguard.errors import PoisonGuardError
from poisonguard.machine import available_cores

__all__ = [
    "TaskRunner",
    "LocalTasks",
    "DaskTasks",
    "task_runner",
    "dask_security",
    "single_threaded",
    "threaded_in_order",
]

logger = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")

CONNECT_TIMEOUT_S = 15
"""How long to try to reach a Dask scheduler before giving up."""

LOCAL_CLUSTER = "local"
"""``--dask local`` starts a :class:`distributed.LocalCluster` on this machine."""


class TaskRunner(Protocol):
    """Runs ``function`` on every item and returns the results in the items' order."""

    description: str
    shares_memory: bool
    """True when tasks run in this process and may read its arrays without a copy."""
    parallelism: int
    """How many tasks run at once."""

    def map(
        self,
        function: Callable[[Item], Result],
        items: Sequence[Item],
        *,
        label: str = "",
        progress: bool = False,
    ) -> list[Result]: ...


@contextmanager
def single_threaded() -> Iterator[None]:
    """One BLAS/OpenMP thread and one torch thread inside the block (see the module docstring)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(previous)


def threaded_in_order(
    function: Callable[[Item], Result], items: Iterable[Item], workers: int
) -> Iterator[Result]:
    """``function(item)`` for each of ``items``, in their order, on ``workers`` threads of this
    process (1: here, one after another). ``items`` is drawn lazily, in the caller's thread, at
    most ``2 * workers`` ahead of the results taken: a generator that reads each item from a
    file is read from one thread, and memory holds a few items, not all of them. For work that
    releases the GIL (NumPy's matrix products, partitions and sorts), with the BLAS threads the
    caller set: the results are those of the loop, whatever the thread count."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1:
        yield from map(function, items)
        return
    pending: deque[Future[Result]] = deque()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        try:
            for item in items:
                pending.append(pool.submit(function, item))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:  # a result not taken (an error, or the caller stopped)
                future.cancel()


def _call_single_threaded(function: Callable[[Item], Result], item: Item) -> Result:
    with single_threaded():
        return function(item)


class LocalTasks:
    """Tasks in this process, on a pool of ``workers`` threads (1: one after another)."""

    def __init__(self, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.shares_memory = True
        self.parallelism = workers
        self.description = "local" if workers == 1 else f"local, {workers} threads"

    def map(
        self,
        function: Callable[[Item], Result],
        items: Sequence[Item],
        *,
        label: str = "",
        progress: bool = False,
    ) -> list[Result]:
        bar = tqdm(total=len(items), desc=label, unit="task", disable=not progress, leave=False)
        with bar, single_threaded():
            if self.workers == 1 or len(items) < 2:
                results = []
                for item in items:
                    results.append(function(item))
                    bar.update()
                return results
            # each thread sets its own limits too: OpenMP thread counts are per thread
            call = partial(_call_single_threaded, function)
            with ThreadPoolExecutor(max_workers=min(self.workers, len(items))) as pool:
                results = list(pool.map(call, items))
            bar.update(len(items))
            return results


class DaskTasks:
    """Tasks on a dask.distributed cluster, through ``client``."""

    def __init__(self, client: Any, description: str) -> None:
        self.client = client
        self.description = description
        self.shares_memory = False

    @property
    def parallelism(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    def map(
        self,
        function: Callable[[Item], Result],
        items: Sequence[Item],
        *,
        label: str = "",
        progress: bool = False,
    ) -> list[Result]:
        from distributed import KilledWorker, as_completed

        if not items:
            return []
        # scattered first: items travel to the workers as data, not inside the task graph
        data = self.client.scatter(list(items))
        futures = self.client.map(_call_single_threaded, [function] * len(items), data, pure=False)
        bar = tqdm(total=len(items), desc=label, unit="task", disable=not progress, leave=False)
        try:
            with bar:
                for _ in as_completed(futures):
                    bar.update()
            return self.client.gather(futures)
        except (OSError, TimeoutError, KilledWorker) as exc:
            # a worker that cannot read a file the task names (the cache folder must be at the
            # same path on every worker), lost its connection, or died
            raise PoisonGuardError(
                f"a task failed on the {self.description}: {type(exc).__name__}: {exc}"
            ) from exc


def dask_security(address: str) -> Any:
    """The :class:`distributed.security.Security` to connect to ``address`` with: the one dask's
    configuration describes (``distributed.comm.tls.*``, ``distributed.comm.require-encryption``,
    also set by ``DASK_DISTRIBUTED__COMM__...`` environment variables), as
    :class:`distributed.Client` builds it by default; None when a
    ``distributed.client.security-loader`` is configured, so that the Client calls it.

    Raises :class:`~poisonguard.errors.PoisonGuardError` when the configuration requires
    encryption and ``address`` is not a ``tls://`` one (or is ``local``: the LocalCluster that
    ``--dask local`` starts is not encrypted).
    """
    import dask.config
    from distributed.security import Security

    if dask.config.get("distributed.client.security-loader", None):
        security = None
        required = bool(dask.config.get("distributed.comm.require-encryption", None))
    else:
        security = Security()
        required = bool(security.require_encryption)
    if address == LOCAL_CLUSTER:
        scheme = "local"
    elif "://" in address:
        scheme = address.split("://", 1)[0].lower()
    else:
        scheme = str(dask.config.get("distributed.comm.default-scheme", "tcp")).lower()
    if required and scheme != "tls":
        where = (
            "--dask local starts an unencrypted LocalCluster"
            if scheme == "local"
            else f"{address!r} is not a tls:// address"
        )
        raise PoisonGuardError(
            "dask's configuration requires encryption (distributed.comm.require-encryption) "
            f"and {where}; use the scheduler's tls:// address"
        )
    return security


@contextmanager
def task_runner(dask: str | None = None, *, workers: int = 1) -> Iterator[TaskRunner]:
    """The runner for ``--dask``: None runs tasks here (on ``workers`` threads); ``"local"``
    starts a LocalCluster with one single-threaded worker process per core; anything else is the
    address of a running scheduler (``tls://host:8786``, or ``tcp://host:8786``: unencrypted
    and unauthenticated), whose workers must have the same PoisonGuard installed. The connection
    uses dask's own security configuration (:func:`dask_security`).

    Raises :class:`~poisonguard.errors.PoisonGuardError` when the scheduler cannot be reached.
    """
    if dask is None:
        yield LocalTasks(workers)
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise PoisonGuardError(f"--dask needs dask.distributed ({exc})") from exc

    # before anything else (and so before any data is read): an address the configuration
    # forbids is refused here
    security = dask_security(dask)
    # the cluster's own INFO lines (scheduler and worker start-up) are not the scan's news
    logging.getLogger("distributed").setLevel(logging.WARNING)
    cluster = None
    try:
        if dask == LOCAL_CLUSTER:
            cluster = LocalCluster(
                n_workers=available_cores(),
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
                silence_logs=logging.ERROR,
            )
            client = Client(cluster)
            description = f"dask LocalCluster, {len(cluster.workers)} workers"
        else:
            client = Client(dask, timeout=f"{CONNECT_TIMEOUT_S}s", security=security)
            description = f"dask cluster at {dask}"
    except (OSError, TimeoutError, ValueError, RuntimeError) as exc:
        # RuntimeError: distributed's own refusal of an unencrypted address when a security
        # loader's credentials require encryption
        if cluster is not None:
            cluster.close()
        raise PoisonGuardError(f"cannot use the Dask scheduler {dask!r}: {exc}") from exc
    logger.info("running tasks on %s", description)
    try:
        yield DaskTasks(client, description)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
