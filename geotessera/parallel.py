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
#: ``on_retry(task, attempt, error)``: attempt number ``attempt`` of ``task`` raised ``error``
#: and the task is about to be submitted again.
RetryFn = Callable[[object, int, BaseException], None]
#: Attempts after the first that a failing task gets by default (the CLI's ``--retries``).
DEFAULT_RETRIES = 2


def imap_unordered(
    fn: Callable[[T], R], tasks: Iterable[T], executor: Executor, *, max_in_flight: int = 8,
    retries: int = 0, on_retry: RetryFn | None = None,
) -> Iterator[tuple[T, R]]:
    """Yield ``(task, fn(task))`` as tasks finish, with at most ``max_in_flight`` submitted.

    A task that raises is submitted again, up to ``retries`` more times, whichever executor
    runs it (``on_retry(task, attempt, error)`` is called before each new attempt). When its
    last attempt fails, every task not yet started is cancelled, the running ones are waited
    for, and ``TaskFailed`` is raised (its ``task`` the input, ``attempts`` how many ran,
    chained to the last error). Nothing is skipped silently. (A dask future never says it
    has started, so there a cancelled task already running on a worker ends unwatched.)
    """
    if max_in_flight < 1:
        raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    pending: dict[Future[R], tuple[T, int]] = {}  # future -> (task, attempt number)
    it = iter(tasks)
    try:
        while True:
            while len(pending) < max_in_flight:
                task = next(it, _END)
                if task is _END:
                    break
                pending[_submit(executor, fn, task, 1)] = (task, 1)
            if not pending:
                return
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                task, attempt = pending.pop(fut)
                exc = fut.exception()
                if exc is None:
                    yield task, fut.result()
                elif attempt <= retries:
                    if on_retry:
                        on_retry(task, attempt, exc)
                    pending[_submit(executor, fn, task, attempt + 1)] = (task, attempt + 1)
                else:
                    raise TaskFailed(task, exc, attempt) from exc
    finally:
        # Only the futures that cancel() could not stop (started, so they will finish) are
        # waited for. A cancelled future is done only once its executor notifies it, and
        # dask's ClientExecutor never does for a task cancelled while its result was being
        # gathered: waiting on that future never returned.
        wait([fut for fut in pending if not fut.cancel()])


def _submit(executor: Executor, fn: Callable[[T], R], task: T, attempt: int) -> Future[R]:
    """``executor.submit(fn, task)``; an executor that can take no more work (a process pool
    broken by a dead worker, one shut down) fails that task, not the runner."""
    try:
        return executor.submit(fn, task)
    except Exception as e:  # noqa: BLE001 - re-raised as the task's failure, with its cause
        raise TaskFailed(task, e, attempt) from e


_END = object()


def run_tasks(
    fn: Callable[[T], R], tasks: Iterable[T], executor: Executor, *, label: str,
    total: int | None = None, done: int = 0, max_in_flight: int = 8, retries: int = 0,
    on_retry: RetryFn | None = None, on_progress: ProgressFn | None = None,
) -> Iterator[tuple[T, R]]:
    """``imap_unordered`` that reports ``Progress(label, done, total)`` before the first task
    and after each one; ``done`` counts items finished earlier (a resumed build). A retried
    task counts once, when it succeeds."""
    tasks = list(tasks)
    total = done + len(tasks) if total is None else total
    if on_progress:
        on_progress(Progress(label, done, total))
    for task, res in imap_unordered(fn, tasks, executor, max_in_flight=max_in_flight,
                                    retries=retries, on_retry=on_retry):
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
