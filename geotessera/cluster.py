"""Where tasks run: the local spawn process pool, or a dask.distributed cluster.

``open_executor(scheduler, workers)`` is the one place that picks and opens an executor for
``geotessera.parallel.run_tasks``; every pass (build, preview, verify) runs the same task
functions on whichever it returns. A cluster is reached through dask's own
``concurrent.futures`` executor (``Client.get_executor``), so nothing here schedules work.
``distributed`` is imported only when a scheduler is named (``pip install
'.[distributed]'`` in the geotessera checkout).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass

from geotessera import __version__
from geotessera.errors import ClusterError
from geotessera.parallel import default_workers, process_pool

log = logging.getLogger(__name__)

#: Seconds to wait at connect time for the first worker to join the scheduler.
WORKER_WAIT_S = 60.0
#: Tasks kept submitted per cluster thread, so a worker never idles while the driver journals.
IN_FLIGHT_PER_THREAD = 2


@dataclass(frozen=True, slots=True)
class Workers:
    """An open executor: ``slots`` tasks run at once (pool processes or cluster threads) and
    ``max_in_flight`` are kept submitted; ``scheduler`` is the cluster's address or None."""

    executor: Executor
    slots: int
    max_in_flight: int
    scheduler: str | None = None


@contextmanager
def open_executor(scheduler: str | None = None, workers: int | None = None,
                  ) -> Iterator[Workers]:
    """The local spawn process pool of ``workers`` processes (default: usable CPUs) or, with a
    ``scheduler`` address, an executor on that dask.distributed cluster, where ``workers``
    (default: 2 per cluster thread) bounds the tasks in flight. Closed on exit.

    Raises ClusterError naming the address if the cluster cannot run geotessera tasks.
    """
    if not scheduler:
        n = workers or default_workers()
        with process_pool(n) as pool:
            yield Workers(pool, n, n + 1)
        return
    with _dask(scheduler, workers) as opened:
        yield opened


@contextmanager
def _dask(address: str, in_flight: int | None) -> Iterator[Workers]:
    try:
        from distributed import Client
    except ImportError as e:
        raise ClusterError(address, "a scheduler needs the distributed extra: "
                                    "pip install '.[distributed]' (in the geotessera checkout)"
                           ) from e
    try:
        client = Client(address, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        raise ClusterError(address, f"cannot connect to the dask scheduler: {e}") from e
    try:
        threads = _check_workers(client, address)
        log.info("%s: %d worker thread(s) on %d worker(s)", address, threads,
                 len(client.nthreads()))
        # Retries are the runner's (the same policy for every executor), so dask's own
        # ``retries`` stay off; dask still reruns a task whose worker died. Tasks write, so
        # they are never "pure" (never deduplicated or cached by key).
        yield Workers(client.get_executor(pure=False), threads,
                      in_flight or IN_FLIGHT_PER_THREAD * threads, address)
    finally:
        client.close()


def _check_workers(client, address: str) -> int:
    """Total worker threads, once at least one worker is there and every worker imports this
    version of geotessera (a worker without it would die unpickling its first task)."""
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_S)
    except TimeoutError as e:
        raise ClusterError(address, f"no dask worker joined within {WORKER_WAIT_S:g} s") from e
    versions = client.run(worker_version, on_error="return")
    for worker, version in sorted(versions.items()):
        if isinstance(version, BaseException):
            raise ClusterError(address, f"worker {worker} cannot import geotessera: "
                                        f"{type(version).__name__}: {version}")
        if version != __version__:
            raise ClusterError(address, f"worker {worker} runs geotessera {version}, this "
                                        f"is {__version__}: install one version everywhere")
    return sum(client.nthreads().values())


def worker_version() -> str:
    """The geotessera version where this runs (called on every worker at connect time)."""
    return __version__
