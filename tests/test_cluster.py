"""Builds on a real dask.distributed cluster (LocalCluster, two worker processes on loopback).

The CLI runs in a subprocess with ``--scheduler``, as a user would run it. Faults are real:
a worker process killed by PID mid-build, a tile file corrupted after the scan, a task that
raises once (injected on the workers by a dask WorkerPlugin that wraps the shard task).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import Executor
from pathlib import Path

import pytest

import golden

distributed = pytest.importorskip("distributed")  # the [distributed] extra, part of [test]
from distributed import Client, LocalCluster  # noqa: E402
from distributed.diagnostics.plugin import WorkerPlugin  # noqa: E402

import geotessera.cluster as cluster_mod  # noqa: E402
from geotessera.archive.demo import DemoSpec, write_demo_archive  # noqa: E402
from geotessera.cluster import open_executor  # noqa: E402
from geotessera.errors import ClusterError, ShardWriteError, TaskFailed  # noqa: E402
from geotessera.parallel import run_tasks  # noqa: E402
from geotessera.tiles import tile_paths  # noqa: E402

CLI = str(Path(sys.executable).parent / "geotessera-registry")
#: 8 tiles in two zones and both hemispheres, about 25 shards of 32 px per zone store.
SPEC = DemoSpec(lon_min=-0.2, lon_max=0.2, lat_min=-0.1, lat_max=0.1, pixel_size=160.0,
                bands=8, years=(2024,))
LAYOUT = ["--bands", "8", "--shard-px", "32", "--chunk-px", "16", "--scales-chunk-px", "32"]
BAD_TILE = "grid_0.05_0.05"  # zone 31
#: Keys that name the time or tool version of a build (zarr and STAC metadata).
VOLATILE = (*golden.VOLATILE, "created", "updated")


#: A version's name (``v<UTC time>-<random>.zarr``) differs between two builds of the same
#: archive; it is written as VERSION, and the pointer (which names it and the publish time)
#: is left out: what is compared is every object of the published versions and the catalog.
_VERSION = re.compile(r"v\d{8}T\d{6}Z-[0-9a-f]{6}\.zarr")


def manifest(out: Path) -> dict[str, str]:
    """{relative path: sha256} of every object under ``out``; JSON documents compared without
    their volatile keys, with ``out`` itself written as OUT (STAC hrefs name it) and version
    names as VERSION."""
    found = {}
    for p in sorted(out.rglob("*")):
        if not p.is_file() or p.name.startswith(".") or p.name == "current.json":
            continue
        data = p.read_bytes()
        if p.suffix == ".json":
            text = json.dumps(golden.strip(json.loads(data), VOLATILE), sort_keys=True)
            text = text.replace(str(out.resolve()), "OUT").replace(str(out), "OUT")
            data = _VERSION.sub("VERSION", text).encode()
        found[_VERSION.sub("VERSION", str(p.relative_to(out)))] = hashlib.sha256(data).hexdigest()
    return found


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DASK_SCHEDULER_ADDRESS", None)
    return env


def cli(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, env=_env(),
                          timeout=kw.pop("timeout", 420), **kw)


def _new_cluster() -> LocalCluster:
    return LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                        dashboard_address=None, worker_dashboard_address=None)


@pytest.fixture(scope="module")
def cluster():
    with _new_cluster() as c:
        yield c


@pytest.fixture(scope="module")
def client(cluster):
    with Client(cluster.scheduler_address, set_as_default=False) as c:
        yield c


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("cluster_archive")
    write_demo_archive(base, SPEC)
    return base


@pytest.fixture(scope="module")
def local_build(archive, tmp_path_factory) -> dict[str, str]:
    """The reference: the archive built (with previews and STAC) on the local spawn pool."""
    out = tmp_path_factory.mktemp("local") / "out"
    proc = cli("zarr-build", archive, "-o", out, "-j", "2", "-q", *LAYOUT)
    assert proc.returncode == 0, proc.stderr
    return manifest(out)


def _store_objects(m: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in m.items() if "/VERSION/" in k}


# --- the executor ------------------------------------------------------------------------------


def test_open_executor_without_a_scheduler_is_the_local_spawn_pool():
    with open_executor(None, 2) as w:
        assert (w.slots, w.max_in_flight, w.scheduler) == (2, 3, None)
        assert w.executor._mp_context.get_start_method() == "spawn"
        assert dict(run_tasks(abs, [-1, -2], w.executor, label="t")) == {-1: 1, -2: 2}


def test_open_executor_on_a_cluster_runs_tasks_on_its_worker_processes(cluster, client):
    worker_pids = set(client.run(os.getpid).values())
    with open_executor(cluster.scheduler_address) as w:
        assert isinstance(w.executor, Executor)
        assert (w.slots, w.max_in_flight, w.scheduler) == (2, 4, cluster.scheduler_address)
        pids = {pid for _, pid in run_tasks(_pid, range(12), w.executor, label="t",
                                            max_in_flight=w.max_in_flight)}
    assert pids <= worker_pids and os.getpid() not in pids


def _pid(_: int) -> int:
    time.sleep(0.05)
    return os.getpid()


def test_unreachable_scheduler_is_a_cluster_error_naming_the_address(monkeypatch):
    import dask

    address = f"tcp://127.0.0.1:{_closed_port()}"
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}), \
            pytest.raises(ClusterError, match="cannot connect") as e:
        with open_executor(address):
            pass
    assert e.value.path == address


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_workers_of_another_version_are_refused(cluster, monkeypatch):
    monkeypatch.setattr(cluster_mod, "__version__", "0.0.0-other")
    with pytest.raises(ClusterError, match="runs geotessera .* this is 0.0.0-other"):
        with open_executor(cluster.scheduler_address):
            pass


@pytest.mark.parametrize("error", [
    ClusterError("tcp://h:8786", "no dask worker joined within 60 s"),
    TaskFailed(("store", 3), ValueError("bad"), 3),
    ShardWriteError("out/utm31_2024.zarr", (1, 2), ValueError("x.npy: bad"), 3),
])
def test_errors_survive_a_pickle_round_trip(error):
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error) and str(back) == str(error)
    assert getattr(back, "attempts", None) == getattr(error, "attempts", None)


# --- builds through the CLI --------------------------------------------------------------------


def test_cli_build_on_the_cluster_is_byte_identical_to_the_local_pool(
        archive, local_build, cluster, tmp_path):
    out = tmp_path / "out"
    proc = cli("zarr-build", archive, "-o", out, "--scheduler", cluster.scheduler_address,
               "--json", *LAYOUT)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert (doc["scheduler"], doc["workers"]) == (cluster.scheduler_address, 2)
    assert [s["retries"] for s in doc["stores"]] == [0, 0]
    assert "preview" in doc and "stac" in doc
    got = manifest(out)
    assert len(_store_objects(got)) > 100
    assert got == local_build


def test_the_scheduler_address_comes_from_the_environment(archive, cluster, tmp_path):
    env = {**_env(), "DASK_SCHEDULER_ADDRESS": cluster.scheduler_address}
    proc = subprocess.run([CLI, "zarr-build", archive, "-o", tmp_path / "out", "--json",
                           "--dry-run", *LAYOUT], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["scheduler"] == cluster.scheduler_address


class SlowShards(WorkerPlugin):
    """On every worker (also one started after a kill): the shard task sleeps before and
    after its writes, so a kill lands in the middle of a task."""

    name = "slow-shards"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def setup(self, worker) -> None:
        import geotessera.build.tasks as tasks

        original, pause = tasks.write_shard, self.seconds

        def slow_write_shard(task):
            time.sleep(pause)
            result = original(task)
            time.sleep(pause)
            return result

        tasks.write_shard = slow_write_shard


def _processing_shard(client: Client) -> tuple[str, str] | None:
    """(worker address, task key) of a shard task some worker is running, if any."""
    for worker, keys in client.processing().items():
        for key in keys:
            if "write_shard" in str(key):
                return worker, key
    return None


def test_a_worker_killed_mid_build_still_gives_an_identical_store(
        archive, local_build, tmp_path):
    with _new_cluster() as cl, Client(cl.scheduler_address, set_as_default=False) as client:
        client.register_plugin(SlowShards(0.3))
        pids = client.run(os.getpid)
        out = tmp_path / "out"
        proc = subprocess.Popen(
            [CLI, "zarr-build", archive, "-o", out, "--scheduler", cl.scheduler_address,
             "--json", "-q", *LAYOUT], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=_env())
        deadline = time.monotonic() + 300
        while (hit := _processing_shard(client)) is None:
            assert proc.poll() is None, f"build ended before a kill: {proc.stderr.read()}"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        worker, key = hit
        time.sleep(0.1)  # inside the task's first pause: it has started, not finished
        os.kill(pids[worker], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=420)
        assert proc.returncode == 0, stderr
        story = client.run_on_scheduler(
            lambda dask_scheduler, k=key: [t[1:3] for t in dask_scheduler.story(k)])
        new_pids = set(client.run(os.getpid).values())
    # the killed worker's task went back to the queue and ran again to the end
    assert ("processing", "released") in story or ("processing", "waiting") in story
    assert [s for s in story if s[1] == "processing"][1:], story
    assert story[-1][1] in ("memory", "released", "forgotten")
    assert pids[worker] not in new_pids and len(new_pids) == 2  # the nanny restarted it
    doc = json.loads(stdout)
    assert sum(s["shards_written"] for s in doc["stores"]) == sum(
        s["shards_nonempty"] for s in doc["stores"])
    assert manifest(out) == local_build


class FailOnce(WorkerPlugin):
    """The first shard task to run anywhere raises once (a marker file makes it once per
    cluster, across worker processes); every later attempt runs the real task."""

    name = "fail-once"

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def setup(self, worker) -> None:
        import geotessera.build.tasks as tasks

        original, marker = tasks.write_shard, self.marker

        def flaky_write_shard(task):
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return original(task)
            raise OSError(f"injected transient failure of shard {task.spec.row, task.spec.col}")

        tasks.write_shard = flaky_write_shard


def test_a_task_that_fails_once_is_retried_counted_and_the_build_succeeds(
        archive, local_build, tmp_path):
    marker = tmp_path / "failed-once"
    with _new_cluster() as cl, Client(cl.scheduler_address, set_as_default=False) as client:
        client.register_plugin(FailOnce(str(marker)))
        out = tmp_path / "out"
        proc = cli("zarr-build", archive, "-o", out, "--scheduler", cl.scheduler_address,
                   "--json", *LAYOUT)
    assert proc.returncode == 0, proc.stderr
    assert marker.exists()
    doc = json.loads(proc.stdout)
    assert sum(s["retries"] for s in doc["stores"]) == 1
    assert "injected transient failure" in proc.stderr and "attempt 1 of 3" in proc.stderr
    assert manifest(out) == local_build


def test_retries_zero_turns_the_same_fault_into_a_failure(archive, tmp_path):
    marker = tmp_path / "failed-once"
    with _new_cluster() as cl, Client(cl.scheduler_address, set_as_default=False) as client:
        client.register_plugin(FailOnce(str(marker)))
        proc = cli("zarr-build", archive, "-o", tmp_path / "out", "--scheduler",
                   cl.scheduler_address, "--retries", "0", "--no-rgb", "--no-stac", *LAYOUT)
    assert proc.returncode == 1
    assert "injected transient failure" in proc.stderr and ": shard (" in proc.stderr


def _corrupt_after_scan(base: Path) -> str:
    """Scan, then overwrite one embeddings file with garbage of the same size and mtime: the
    rescan reuses its row and the shard task is the first to read the damage."""
    proc = cli("scan", base, "--bands", "8")
    assert proc.returncode == 0, proc.stderr
    emb = tile_paths(base, 2024, BAD_TILE).embeddings
    st = emb.stat()
    emb.write_bytes(b"\x00garbage" * (st.st_size // 8) + b"\x00" * (st.st_size % 8))
    os.utime(emb, ns=(st.st_atime_ns, st.st_mtime_ns))
    return str(emb)


@pytest.mark.parametrize("where", ["local pool", "dask"])
def test_a_task_that_always_fails_exits_1_naming_store_shard_and_tile(
        where, archive, cluster, tmp_path):
    base = tmp_path / "archive"
    subprocess.run(["cp", "-r", archive, base], check=True)
    bad = _corrupt_after_scan(base)
    run_on = ["--scheduler", cluster.scheduler_address] if where == "dask" else ["-j", "2"]
    proc = cli("zarr-build", base, "-o", tmp_path / "out", "--json", "--retries", "1",
               "--no-rgb", "--no-stac", *run_on, *LAYOUT)
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["status"] == "error" and doc["exit_code"] == 1
    assert "utm31_2024: shard (" in doc["error"]
    assert "failed after 2 attempts" in doc["error"]
    assert bad in doc["error"] and "cannot map .npy" in doc["error"]
    assert "attempt 1 of 2" in proc.stderr  # the retry was logged before giving up
    assert not (tmp_path / "out" / "utm31_2024.zarr").exists()  # nothing torn was published


def test_rgb_and_verify_run_on_the_cluster(archive, cluster, tmp_path):
    out = tmp_path / "out"
    built = cli("zarr-build", archive, "-o", out, "--no-rgb", "--no-stac", "-j", "2", *LAYOUT)
    assert built.returncode == 0, built.stderr
    rgb = cli("rgb", out, "--scheduler", cluster.scheduler_address, "--json")
    assert rgb.returncode == 0, rgb.stderr
    assert len(json.loads(rgb.stdout)["stores"]) == 2
    ver = cli("verify", out / "utm31_2024.zarr", "--base-dir", archive, "--full",
              "--scheduler", cluster.scheduler_address, "--json")
    assert ver.returncode == 0, ver.stderr
    doc = json.loads(ver.stdout)
    assert doc["problems"] == [] and doc["shards_compared"] > 10


def test_cli_unreachable_scheduler_exits_1_naming_it(archive, tmp_path):
    address = f"tcp://127.0.0.1:{_closed_port()}"
    env = {**_env(), "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"}
    proc = subprocess.run([CLI, "zarr-build", archive, "-o", tmp_path / "out", "--scheduler",
                           address, *LAYOUT], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 1
    assert address in proc.stderr and "cannot connect to the dask scheduler" in proc.stderr


def test_progress_events_of_a_cluster_build_count_every_shard(archive, cluster, tmp_path):
    """The bars are fed by the runner in the driver, so they work the same on dask."""
    from geotessera.pipeline import zarr_build
    from geotessera.types import StoreLayout

    events = []
    with open_executor(cluster.scheduler_address) as w:
        report = zarr_build(archive, tmp_path / "out", w.executor, layout=StoreLayout(32, 16, 32),
                            expected_bands=8, preview=None, catalog=False,
                            max_in_flight=w.max_in_flight, on_progress=events.append)
    for result in report.build.results:
        label = Path(result.store).name
        mine = [(e.done, e.total) for e in events if e.label == label]
        assert mine == [(i, result.shards) for i in range(result.shards + 1)]
