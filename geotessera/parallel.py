"""The one helper that runs tasks on an executor. Knows nothing of tiles, zarr or terminals.

Tasks are small picklable values; ``fn`` is a module-level function, so the same code runs on
a thread pool, a spawn process pool or a dask.distributed executor.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


class TaskFailed(Exception):
    """A task raised; ``task`` is the input that failed and ``__cause__`` the error."""

    def __init__(self, task: object, cause: BaseException) -> None:
        self.task = task
        super().__init__(f"{cause}")


def imap_unordered(
    fn: Callable[[T], R], tasks: Iterable[T], executor: Executor, *, max_in_flight: int = 8
) -> Iterator[tuple[T, R]]:
    """Yield ``(task, fn(task))`` as tasks finish, with at most ``max_in_flight`` submitted.

    The first failure cancels every task not yet started, waits for the running ones and
    raises ``TaskFailed`` chained to the original error. Nothing is skipped silently.
    """
    if max_in_flight < 1:
        raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
    pending: dict[Future[R], T] = {}
    it = iter(tasks)
    try:
        while True:
            while len(pending) < max_in_flight:
                task = next(it, _END)
                if task is _END:
                    break
                pending[executor.submit(fn, task)] = task
            if not pending:
                return
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                task = pending.pop(fut)
                exc = fut.exception()
                if exc is not None:
                    raise TaskFailed(task, exc) from exc
                yield task, fut.result()
    finally:
        for fut in pending:
            fut.cancel()
        wait(list(pending))


_END = object()


def default_workers() -> int:
    """Worker count when the user gives none: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool with the spawn start method (fork-unsafe libraries stay safe)."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
