"""The runner's failure path on a real dask.distributed cluster (LocalCluster on loopback).

When a task's last attempt fails, the runner cancels the futures still in flight. A dask
future cancelled while the client was gathering its finished result is never marked done
(dask's ClientExecutor drops it), so a runner that waited on its cancelled futures hung:
``zarr-build --scheduler`` once never exited after a shard failed. Here many tasks finish at
the same instant as the failing one, which hits that window in roughly one round in ten.
"""

from __future__ import annotations

import threading
import time

import pytest
from distributed import Client, LocalCluster

from geotessera.errors import TaskFailed
from geotessera.parallel import imap_unordered

TASKS = 16
ROUNDS = 25
#: Seconds a round may take; one stuck waiting on a cancelled future never ends.
ROUND_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def executor():
    with LocalCluster(n_workers=2, threads_per_worker=TASKS // 2, processes=True,
                      host="127.0.0.1", dashboard_address=":0",
                      worker_dashboard_address=None) as cluster, \
            Client(cluster.scheduler_address, set_as_default=False) as client:
        yield client.get_executor(pure=False)


def _finish_at(task: tuple[int, float]) -> int:
    """Sleep until the round's common deadline; task 0 then fails, the others succeed."""
    i, deadline = task
    time.sleep(max(0.0, deadline - time.time()))
    if i == 0:
        raise ValueError("task 0 failed")
    return i


def _failed_task(executor) -> object:
    """Run one round in a thread; the task named by its TaskFailed (None if it hung)."""
    deadline = time.time() + 0.2
    failed = []

    def run():
        try:
            list(imap_unordered(_finish_at, [(i, deadline) for i in range(TASKS)], executor,
                                max_in_flight=TASKS))
        except TaskFailed as e:
            failed.append(e.task[0])

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(ROUND_TIMEOUT_S)
    return None if runner.is_alive() else (failed or ["no TaskFailed"])[0]


def test_a_failure_while_other_results_arrive_raises_every_time_without_hanging(executor):
    for n in range(1, ROUNDS + 1):
        failed = _failed_task(executor)
        assert failed is not None, f"round {n}: the runner hung on futures it had cancelled"
        assert failed == 0, f"round {n}: {failed}"
