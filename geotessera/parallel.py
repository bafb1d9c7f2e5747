"""The one helper that runs tasks on an executor. Knows nothing of tiles, zarr or terminals.

Tasks are small picklable values; ``fn`` is a module-level function, so the same code runs on
a thread pool, a spawn process pool or a dask.distributed executor (its ``concurrent.futures``
interface). Progress is one event type, ``Progress``, reported through one optional callback.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import TypeVar

from geotessera.errors import TaskFailed

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Progress:
    """``done`` of ``total`` items of ``label`` (a scan, a store, a level)."""

    label: str
    done: int
    total: int


ProgressFn = Callable[[Progress], None]


def imap_unordered(
    fn: Callable[[T], R], tasks: Iterable[T], executor: Executor, *, max_in_flight: int = 8
) -> Iterator[tuple[T, R]]:
    """Yield ``(task, fn(task))`` as tasks finish, with at most ``max_in_flight`` submitted.

    The first failure cancels every task not yet started, waits for the running ones and
    raises ``TaskFailed`` (its ``task`` the input, chained to the original error). Nothing is
    skipped silently.
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


def run_tasks(
    fn: Callable[[T], R], tasks: Iterable[T], executor: Executor, *, label: str,
    total: int | None = None, done: int = 0, max_in_flight: int = 8,
    on_progress: ProgressFn | None = None,
) -> Iterator[tuple[T, R]]:
    """``imap_unordered`` that reports ``Progress(label, done, total)`` before the first task
    and after each one; ``done`` counts items finished earlier (a resumed build)."""
    tasks = list(tasks)
    total = done + len(tasks) if total is None else total
    if on_progress:
        on_progress(Progress(label, done, total))
    for task, res in imap_unordered(fn, tasks, executor, max_in_flight=max_in_flight):
        done += 1
        yield task, res
        if on_progress:
            on_progress(Progress(label, done, total))


def default_workers() -> int:
    """Worker count when the user gives none: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool with the spawn start method (fork-unsafe libraries stay safe)."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
