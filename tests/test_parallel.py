"""imap_unordered: every task once, bounded in-flight, first failure cancels the rest."""

from __future__ import annotations

import math
import os
import operator
import threading
import time
from concurrent.futures import Executor, Future, ThreadPoolExecutor

import pytest

from geotessera.parallel import TaskFailed, imap_unordered, process_pool, run_tasks


class RecordingExecutor(Executor):
    """Delegates to a real executor and keeps every future it hands out, by task.

    ``hold[task]`` is a predicate: when that task's future completes, the worker thread that
    completed it (which runs the done-callbacks, after waking waiters) is held until the
    predicate is true. That keeps the worker from racing to start the next queued task.
    """

    def __init__(self, inner: Executor, hold: dict | None = None) -> None:
        self.inner = inner
        self.hold = hold or {}
        self.futures: dict[object, Future] = {}

    def submit(self, fn, /, *args, **kwargs):
        fut = self.inner.submit(fn, *args, **kwargs)
        if args[0] in self.hold:
            fut.add_done_callback(lambda _, pred=self.hold[args[0]]: _wait_for(pred))
        self.futures[args[0]] = fut
        return fut


def _wait_for(pred, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred() and time.monotonic() < deadline:
        time.sleep(0.002)


def test_every_task_yielded_once_with_its_result():
    with ThreadPoolExecutor(4) as pool:
        out = list(imap_unordered(lambda x: x * x, range(100), pool, max_in_flight=7))
    assert sorted(t for t, _ in out) == list(range(100))
    assert all(r == t * t for t, r in out)


def test_empty_input_yields_nothing():
    with ThreadPoolExecutor(1) as pool:
        assert list(imap_unordered(lambda x: x, [], pool)) == []


@pytest.mark.parametrize("max_in_flight", [1, 3])
def test_in_flight_is_bounded(max_in_flight):
    """Never more than max_in_flight tasks running, nor pulled from the input but not yet
    yielded, even with more workers than that; and the bound is actually reached."""
    lock = threading.Lock()
    running = peak = 0
    pulled = 0

    def work(x):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.01)
        with lock:
            running -= 1
        return x

    def tasks():
        nonlocal pulled
        for i in range(30):
            pulled += 1
            yield i

    yielded = 0
    with ThreadPoolExecutor(8) as pool:
        for _ in imap_unordered(work, tasks(), pool, max_in_flight=max_in_flight):
            yielded += 1
            assert pulled - (yielded - 1) <= max_in_flight
    assert yielded == 30
    assert peak == max_in_flight


def test_first_failure_raises_task_failed_chained_to_the_error():
    def work(x):
        if x == 13:
            raise KeyError("thirteen")
        return x

    with ThreadPoolExecutor(2) as pool:
        seen = []
        with pytest.raises(TaskFailed) as e:
            for task, _ in imap_unordered(work, range(40), pool, max_in_flight=4):
                seen.append(task)
    assert e.value.task == 13
    assert isinstance(e.value.__cause__, KeyError) and e.value.__cause__.args == ("thirteen",)
    assert 13 not in seen


def test_failure_cancels_tasks_not_started_and_waits_for_running_ones():
    """Two workers, five in flight. Task 0 fails while task 1 runs; both workers are held
    until tasks 2-4 are cancelled, so those provably never run, and TaskFailed is raised only
    after task 1 has finished. Tasks 5+ are never even submitted."""
    events = []
    rec = None

    def queued_cancelled():
        return all(i in rec.futures and rec.futures[i].cancelled() for i in (2, 3, 4))

    rec = RecordingExecutor(ThreadPoolExecutor(2), hold={0: queued_cancelled})

    def work(x):
        events.append(f"start {x}")
        if x == 0:
            _wait_for(lambda: len(rec.futures) == 5 and rec.futures[1].running())
            raise RuntimeError("task 0 failed")
        if x == 1:
            _wait_for(queued_cancelled)
            time.sleep(0.05)
            events.append("end 1")
        return x

    with rec.inner:
        with pytest.raises(TaskFailed) as e:
            list(imap_unordered(work, range(10), rec, max_in_flight=5))
        events.append("raised")
    assert e.value.task == 0 and isinstance(e.value.__cause__, RuntimeError)
    assert sorted(events[:2]) == ["start 0", "start 1"]
    assert events[2:] == ["end 1", "raised"]
    assert rec.futures[1].result() == 1
    assert sorted(rec.futures) == [0, 1, 2, 3, 4]
    assert all(rec.futures[i].cancelled() for i in (2, 3, 4))


def test_closing_the_generator_early_cancels_pending_tasks():
    ran = []
    rec = None
    rec = RecordingExecutor(ThreadPoolExecutor(1), hold={
        0: lambda: all(rec.futures[i].cancelled() for i in (1, 2, 3))})

    def work(x):
        ran.append(x)
        if x == 0:
            _wait_for(lambda: len(rec.futures) == 4)
        return x

    with rec.inner:
        gen = imap_unordered(work, range(10), rec, max_in_flight=4)
        assert next(gen) == (0, 0)
        gen.close()
    assert ran == [0]
    assert sorted(rec.futures) == [0, 1, 2, 3]
    assert all(rec.futures[i].cancelled() for i in (1, 2, 3))


class SilentOnCancel(Executor):
    """Like dask's ClientExecutor when a task is cancelled while its result is gathered: task
    0 fails at once, the others are never started and, cancelled, never notified
    (``set_running_or_notify_cancel`` is never called, so ``wait`` on them never returns)."""

    def __init__(self) -> None:
        self.futures: list[Future] = []

    def submit(self, fn, /, *args, **kwargs):
        fut = Future()
        if args[0] == 0:
            fut.set_exception(RuntimeError("task 0 failed"))
        self.futures.append(fut)
        return fut


def test_a_failure_does_not_wait_for_futures_it_cancelled():
    ex, raised = SilentOnCancel(), []

    def run():
        with pytest.raises(TaskFailed) as e:
            list(imap_unordered(abs, range(4), ex, max_in_flight=4))
        raised.append(e.value.task)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(10)
    assert not runner.is_alive(), "the runner hung waiting on the futures it cancelled"
    assert raised == [0]
    assert [f.cancelled() for f in ex.futures] == [False, True, True, True]


@pytest.fixture(scope="module")
def spawn_pool():
    with process_pool(2) as pool:
        assert pool._mp_context.get_start_method() == "spawn"
        yield pool


def test_spawn_process_pool_runs_module_level_functions(spawn_pool):
    out = dict(imap_unordered(operator.neg, range(25), spawn_pool, max_in_flight=3))
    assert out == {i: -i for i in range(25)}


def test_spawn_process_pool_propagates_worker_errors(spawn_pool):
    with pytest.raises(TaskFailed) as e:
        list(imap_unordered(math.sqrt, [4.0, 9.0, -1.0, 16.0], spawn_pool, max_in_flight=1))
    assert e.value.task == -1.0
    assert isinstance(e.value.__cause__, ValueError)
    assert "math domain error" in str(e.value)


def test_max_in_flight_below_one_is_refused():
    with ThreadPoolExecutor(1) as pool, pytest.raises(ValueError, match="max_in_flight"):
        list(imap_unordered(abs, [1, -2], pool, max_in_flight=0))


# --- retries -----------------------------------------------------------------------------------


class FailTimes:
    """A picklable task function: each task raises on its first ``n`` attempts, counted in a
    marker directory (so attempts are counted across spawn worker processes too)."""

    def __init__(self, marker_dir, n: int) -> None:
        self.marker_dir, self.n = str(marker_dir), n

    def __call__(self, x: int) -> int:
        import os

        attempt = len([f for f in os.listdir(self.marker_dir) if f.startswith(f"{x}.")]) + 1
        open(os.path.join(self.marker_dir, f"{x}.{attempt}"), "w").close()
        if attempt <= self.n:
            raise OSError(f"task {x}: attempt {attempt} failed")
        return -x


@pytest.mark.parametrize("kind", ["threads", "spawn processes"])
def test_a_task_failing_fewer_times_than_retries_succeeds_and_each_retry_is_reported(
        kind, tmp_path, spawn_pool):
    retried = []
    pool = ThreadPoolExecutor(2) if kind == "threads" else spawn_pool
    out = dict(imap_unordered(FailTimes(tmp_path, 2), range(6), pool, max_in_flight=3,
                              retries=2, on_retry=lambda t, a, e: retried.append((t, a, str(e)))))
    assert out == {i: -i for i in range(6)}
    assert sorted(retried) == [(i, a, f"task {i}: attempt {a} failed")
                               for i in range(6) for a in (1, 2)]
    assert len(list(tmp_path.iterdir())) == 18  # every task ran exactly three times


@pytest.mark.parametrize("kind", ["threads", "spawn processes"])
def test_a_task_failing_on_every_attempt_raises_task_failed_with_the_count(
        kind, tmp_path, spawn_pool):
    pool = ThreadPoolExecutor(2) if kind == "threads" else spawn_pool
    with pytest.raises(TaskFailed) as e:
        list(imap_unordered(FailTimes(tmp_path, 3), [7], pool, retries=2))
    assert (e.value.task, e.value.attempts) == (7, 3)
    assert isinstance(e.value.__cause__, OSError) and "attempt 3 failed" in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["7.1", "7.2", "7.3"]


def test_retries_zero_fails_on_the_first_error(tmp_path):
    with ThreadPoolExecutor(1) as pool, pytest.raises(TaskFailed) as e:
        list(imap_unordered(FailTimes(tmp_path, 1), [1], pool))
    assert e.value.attempts == 1


def test_negative_retries_are_refused():
    with ThreadPoolExecutor(1) as pool, pytest.raises(ValueError, match="retries"):
        list(imap_unordered(abs, [1], pool, retries=-1))


def test_an_executor_that_refuses_work_fails_the_task_with_its_cause():
    """A process pool broken by a dead worker refuses every later submit: the task that
    could not be resubmitted is the one named, chained to the executor's error."""
    pool = ThreadPoolExecutor(1)
    pool.shutdown()
    with pytest.raises(TaskFailed) as e:
        list(imap_unordered(abs, [-3], pool, retries=2))
    assert e.value.task == -3 and isinstance(e.value.__cause__, RuntimeError)
    assert "shutdown" in str(e.value)


def test_a_dead_local_worker_fails_its_task_by_name_after_the_retry_is_refused():
    """The local pool cannot rerun work elsewhere (dask can): a worker process that dies
    breaks the pool, and the runner reports that task rather than hanging or skipping it."""
    from concurrent.futures.process import BrokenProcessPool

    with process_pool(1) as pool, pytest.raises(TaskFailed) as e:
        list(imap_unordered(os._exit, [3], pool, retries=2))
    assert e.value.task == 3 and e.value.attempts == 2
    assert isinstance(e.value.__cause__, BrokenProcessPool)


def test_run_tasks_counts_a_retried_task_once(tmp_path):
    events = []
    with ThreadPoolExecutor(2) as pool:
        out = list(run_tasks(FailTimes(tmp_path, 1), range(4), pool, label="x", retries=1,
                             on_progress=events.append))
    assert len(out) == 4
    assert [(e.done, e.total) for e in events] == [(i, 4) for i in range(5)]
