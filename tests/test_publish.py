"""Atomic publish, resume after kill -9, locks and disk-full failures, on real processes."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import zarr
from zarr.storage import LocalStore, WrapperStore

import geotessera.store.zone as store_mod
from geotessera.build.run import build_stores
from geotessera.archive.demo import DemoSpec, write_demo_archive
from geotessera.errors import ShardWriteError, StoreError
from geotessera.store.publish import StorePaths

from conftest import scan

CLI = str(Path(sys.executable).parent / "geotessera-registry")
SPEC = DemoSpec(lon_min=0.0, lon_max=0.3, lat_min=50.0, lat_max=50.2, pixel_size=100.0,
                bands=8, years=(2024,))
LAYOUT_ARGS = ["--shard-px", "32", "--chunk-px", "16", "--scales-chunk-px", "32",
               "--bands", "8", "-j", "1"]


@pytest.fixture(scope="module")
def small_archive(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("pub")
    write_demo_archive(base, SPEC)
    return base


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, **kw)


def _arrays(store: Path):
    l0 = zarr.open_group(str(store), mode="r")["L0"]
    return l0["embeddings"][:], l0["scales"][:]


def _assert_same(a, b):
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def _journal_lines(paths: StorePaths) -> list[str]:
    try:
        return paths.journal.read_text().splitlines()
    except FileNotFoundError:
        return []


def _start_and_kill(base: Path, out: Path, paths: StorePaths, min_done: int) -> list[str]:
    """Run zarr-build in its own process group and SIGKILL the whole group once the
    journal lists ``min_done`` finished shards."""
    proc = subprocess.Popen([CLI, "zarr-build", str(base), "-o", str(out), "-q", *LAYOUT_ARGS],
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(_journal_lines(paths)) < 1 + min_done:
        assert proc.poll() is None, f"build ended before it could be killed: {proc.stderr.read()}"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return _journal_lines(paths)


def test_kill_9_keeps_old_store_and_resume_matches_a_clean_build(small_archive, tmp_path):
    out = tmp_path / "out"
    first = _cli("zarr-build", str(small_archive), "-o", str(out), "-q", "--json", *LAYOUT_ARGS)
    assert first.returncode == 0, first.stderr
    (doc,) = json.loads(first.stdout)["stores"]
    total = doc["shards_nonempty"]
    assert total >= 20  # enough shards to be killed in the middle
    paths = StorePaths(out / doc["store"])
    before = _arrays(paths.final)

    lines = _start_and_kill(small_archive, out, paths, min_done=3)
    done = len(lines) - 1
    assert 3 <= done < total
    _assert_same(_arrays(paths.final), before)  # the previous store is intact and readable
    assert zarr.open_group(str(paths.final), mode="r").attrs["geotessera:build_complete"]
    assert paths.partial.exists() and paths.lock.exists()  # debris of a dead process ...
    assert not any(p.name.endswith(".zarr") and p.name.startswith(".") for p in out.iterdir())

    journaled = [(json.loads(ln)["row"], json.loads(ln)["col"]) for ln in lines[1:]]
    shard_files = {rc: paths.partial / "L0/embeddings/c/0" / str(rc[0]) / str(rc[1])
                   for rc in journaled}
    mtimes = {rc: f.stat().st_mtime_ns for rc, f in shard_files.items() if f.exists()}
    assert mtimes, "journaled shards have objects in the staging store"

    resumed = _cli("zarr-build", str(small_archive), "-o", str(out), "--resume", "--json", "-q",
                   *LAYOUT_ARGS)  # ... and the stale lock is taken over
    assert resumed.returncode == 0, resumed.stderr
    (rdoc,) = json.loads(resumed.stdout)["stores"]
    assert rdoc["resumed_shards"] == done
    assert rdoc["shards_written"] == total
    assert (rdoc["valid_pixels"], rdoc["bytes_in"]) == (doc["valid_pixels"], doc["bytes_in"])
    for rc, mtime in mtimes.items():  # no journaled shard was rewritten
        assert (paths.final / "L0/embeddings/c/0" / str(rc[0]) / str(rc[1])).stat().st_mtime_ns == mtime
    _assert_same(_arrays(paths.final), before)
    assert not paths.partial.exists() and not paths.journal.exists() and not paths.lock.exists()


def test_without_resume_a_new_build_starts_clean(small_archive, tmp_path):
    out = tmp_path / "out"
    paths = StorePaths(out / "utm31_2024.zarr")
    _start_and_kill(small_archive, out, paths, min_done=2)
    fresh = _cli("zarr-build", str(small_archive), "-o", str(out), "--json", "-q", *LAYOUT_ARGS)
    assert fresh.returncode == 0, fresh.stderr
    assert json.loads(fresh.stdout)["stores"][0]["resumed_shards"] == 0


def test_a_live_lock_refuses_at_once_and_names_the_holder(small_archive, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    paths = StorePaths(out / "utm31_2024.zarr")
    paths.lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                      "since": "2026-01-01T00:00:00+00:00"}))
    t0 = time.monotonic()
    res = _cli("zarr-build", str(small_archive), "-o", str(out), *LAYOUT_ARGS)
    assert res.returncode == 1
    assert f"PID {os.getpid()}" in res.stderr and socket.gethostname() in res.stderr
    assert not paths.final.exists() and not paths.partial.exists()
    assert time.monotonic() - t0 < 30


def test_a_lock_of_a_dead_process_is_taken_over(small_archive, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "out"
    out.mkdir()
    paths = StorePaths(out / "utm31_2024.zarr")
    paths.lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    res = _cli("zarr-build", str(small_archive), "-o", str(out), "-q", *LAYOUT_ARGS)
    assert res.returncode == 0, res.stderr
    assert paths.final.exists() and not paths.lock.exists()


class DiskFull(WrapperStore):
    """A store that fails with ENOSPC once its shared write budget is spent."""

    def __init__(self, store, budget: list[int]) -> None:
        super().__init__(store)
        self.budget = budget

    async def set(self, key, value) -> None:
        if self.budget[0] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), key)
        self.budget[0] -= 1
        await self._store.set(key, value)


def _build(base, out, resume=False):
    from geotessera.types import StoreLayout

    with ThreadPoolExecutor(2) as pool:
        return build_stores(base, out, scan(base, bands=8).records, pool, resume=resume,
                            layout=StoreLayout(shard_px=32, chunk_px=16, scales_chunk_px=32))


def test_disk_full_fails_keeps_the_old_store_and_resumes(small_archive, tmp_path, monkeypatch):
    out = tmp_path / "out"
    _build(small_archive, out)
    paths = StorePaths(out / "utm31_2024.zarr")
    before = _arrays(paths.final)
    budget = [25]
    monkeypatch.setattr(store_mod, "open_level", lambda store, path="L0", write=True:
                        zarr.open_group(store=DiskFull(LocalStore(str(store)), budget),
                                        path=path, mode="r+", zarr_format=3,
                                        use_consolidated=False))
    with pytest.raises(ShardWriteError) as info:
        _build(small_archive, out)
    assert "No space left on device" in str(info.value) and str(paths.final) in str(info.value)
    _assert_same(_arrays(paths.final), before)
    assert not paths.lock.exists()  # released on failure
    monkeypatch.undo()
    report = _build(small_archive, out, resume=True)
    assert report.results[0].resumed_shards > 0
    _assert_same(_arrays(paths.final), before)


def test_unwritable_output_is_refused_before_any_work(small_archive, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="not writable"):
        _build(small_archive, blocker / "stores")
