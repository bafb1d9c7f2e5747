"""Atomic publish, resume after kill -9, locks and disk-full failures, on real processes."""

from __future__ import annotations

import errno
import json
import os
import signal
import shutil
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
from geotessera.store.location import Location
from geotessera.store.versions import StoreHome

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


def _home(out: Path) -> StoreHome:
    return StoreHome.of(Location.parse(out), "utm31_2024.zarr")


def _journal_lines(out: Path) -> list[str]:
    """The shard records of the build in progress under ``out`` (none when there is none)."""
    home = _home(out).home
    try:
        building = json.loads(home.read("building.json"))
    except FileNotFoundError:
        return []
    journal = home.path / (building["store"].removesuffix(".zarr") + ".journal")
    return sorted(p.read_text() for p in journal.glob("*_*.json"))


def _start_and_kill(base: Path, out: Path, min_done: int) -> list[str]:
    """Run zarr-build in its own process group and SIGKILL the whole group once the
    journal lists ``min_done`` finished shards."""
    proc = subprocess.Popen([CLI, "zarr-build", str(base), "-o", str(out), "-q", *LAYOUT_ARGS],
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(_journal_lines(out)) < min_done:
        assert proc.poll() is None, f"build ended before it could be killed: {proc.stderr.read()}"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return _journal_lines(out)


def test_kill_9_keeps_old_store_and_resume_matches_a_clean_build(small_archive, tmp_path):
    out = tmp_path / "out"
    first = _cli("zarr-build", str(small_archive), "-o", str(out), "-q", "--json", *LAYOUT_ARGS)
    assert first.returncode == 0, first.stderr
    (doc,) = json.loads(first.stdout)["stores"]
    total = doc["shards_nonempty"]
    assert total >= 20  # enough shards to be killed in the middle
    link = out / doc["store"]
    assert link.is_symlink() and os.readlink(link) == f"utm31_2024/{doc['version']}"
    before = _arrays(link)
    old = _home(out).pointer()

    lines = _start_and_kill(small_archive, out, min_done=3)
    done = len(lines)
    assert 3 <= done < total
    _assert_same(_arrays(link), before)  # the published version is intact and readable
    assert _home(out).pointer() == old and os.readlink(link) == f"utm31_2024/{old.store}"
    assert zarr.open_group(str(link), mode="r").attrs["geotessera:build_complete"]
    building = json.loads((out / "utm31_2024/building.json").read_text())
    staging = out / "utm31_2024" / building["store"]
    assert staging.is_dir() and (out / "utm31_2024/lock.json").exists()  # debris ...

    journaled = [(json.loads(ln)["row"], json.loads(ln)["col"]) for ln in lines]
    shard_files = {rc: staging / "L0/embeddings/c/0" / str(rc[0]) / str(rc[1])
                   for rc in journaled}
    mtimes = {rc: f.stat().st_mtime_ns for rc, f in shard_files.items() if f.exists()}
    assert mtimes, "journaled shards have objects in the staging store"

    resumed = _cli("zarr-build", str(small_archive), "-o", str(out), "--resume", "--json", "-q",
                   *LAYOUT_ARGS)  # ... and the dead process's lock is taken over
    assert resumed.returncode == 0, resumed.stderr
    (rdoc,) = json.loads(resumed.stdout)["stores"]
    assert rdoc["resumed_shards"] >= done and rdoc["rewritten_shards"] == {}
    assert rdoc["shards_written"] == total and rdoc["version"] == building["store"]
    assert (rdoc["valid_pixels"], rdoc["bytes_in"]) == (doc["valid_pixels"], doc["bytes_in"])
    for rc, mtime in mtimes.items():  # no journaled shard was rewritten
        assert shard_files[rc].stat().st_mtime_ns == mtime
    assert os.readlink(link) == f"utm31_2024/{building['store']}"
    _assert_same(_arrays(link), before)
    left = sorted(p.name for p in (out / "utm31_2024").iterdir() if p.is_dir())
    assert left == sorted([old.store, building["store"]])  # previous version kept
    assert not (out / "utm31_2024/lock.json").exists()
    assert not (out / "utm31_2024/building.json").exists()


def test_without_resume_a_new_build_starts_clean(small_archive, tmp_path):
    out = tmp_path / "out"
    _start_and_kill(small_archive, out, min_done=2)
    abandoned = json.loads((out / "utm31_2024/building.json").read_text())["store"]
    fresh = _cli("zarr-build", str(small_archive), "-o", str(out), "--json", "-q", *LAYOUT_ARGS)
    assert fresh.returncode == 0, fresh.stderr
    (doc,) = json.loads(fresh.stdout)["stores"]
    assert doc["resumed_shards"] == 0 and doc["version"] != abandoned
    assert not (out / "utm31_2024" / abandoned).exists()


def _lock_doc(pid: int, host: str, expires: float) -> str:
    return json.dumps({"pid": pid, "host": host, "uuid": "u1", "since": "2026-01-01T00:00:00",
                       "expires": expires})


def test_a_live_lock_refuses_at_once_and_names_the_holder(small_archive, tmp_path):
    out = tmp_path / "out"
    (out / "utm31_2024").mkdir(parents=True)
    lock = out / "utm31_2024/lock.json"
    lock.write_text(_lock_doc(os.getpid(), socket.gethostname(), time.time() + 600))
    t0 = time.monotonic()
    res = _cli("zarr-build", str(small_archive), "-o", str(out), *LAYOUT_ARGS)
    assert res.returncode == 1
    assert str(lock) in res.stderr.replace("\n", "")
    assert f"PID {os.getpid()}" in res.stderr and socket.gethostname() in res.stderr
    assert not (out / "utm31_2024.zarr").exists()
    assert not (out / "utm31_2024/building.json").exists()
    assert time.monotonic() - t0 < 30


def test_a_lock_of_a_dead_process_is_taken_over(small_archive, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "out"
    (out / "utm31_2024").mkdir(parents=True)
    lock = out / "utm31_2024/lock.json"
    lock.write_text(_lock_doc(dead.pid, socket.gethostname(), time.time() + 600))
    res = _cli("zarr-build", str(small_archive), "-o", str(out), "-q", *LAYOUT_ARGS)
    assert res.returncode == 0, res.stderr
    assert (out / "utm31_2024.zarr/zarr.json").exists() and not lock.exists()


def test_a_garbage_lock_names_itself_and_is_taken_over_once_old(small_archive, tmp_path):
    out = tmp_path / "out"
    (out / "utm31_2024").mkdir(parents=True)
    lock = out / "utm31_2024/lock.json"
    lock.write_bytes(b"{not json")
    res = _cli("zarr-build", str(small_archive), "-o", str(out), *LAYOUT_ARGS)
    assert res.returncode == 1 and "holds no valid lock" in res.stderr, res.stderr
    assert "PID None" not in res.stderr
    old = time.time() - 3600
    os.utime(lock, (old, old))
    res = _cli("zarr-build", str(small_archive), "-o", str(out), "-q", *LAYOUT_ARGS)
    assert res.returncode == 0, res.stderr


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


def _fill_disk(monkeypatch, budget: int) -> None:
    """Shard writes fail with ENOSPC after ``budget`` zarr writes."""
    left = [budget]
    monkeypatch.setattr(store_mod, "_writable_store",
                        lambda loc: DiskFull(LocalStore(str(loc.path)), left))


def test_disk_full_fails_keeps_the_old_store_and_resumes(small_archive, tmp_path, monkeypatch):
    out = tmp_path / "out"
    _build(small_archive, out)
    link = out / "utm31_2024.zarr"
    before = _arrays(link)
    _fill_disk(monkeypatch, 25)
    with pytest.raises(ShardWriteError) as info:
        _build(small_archive, out)
    assert "No space left on device" in str(info.value) and "utm31_2024" in str(info.value)
    _assert_same(_arrays(link), before)
    assert not (out / "utm31_2024/lock.json").exists()  # released on failure
    monkeypatch.undo()
    report = _build(small_archive, out, resume=True)
    assert report.results[0].resumed_shards > 0
    _assert_same(_arrays(link), before)


def test_unwritable_output_is_refused_before_any_work(small_archive, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="not writable"):
        _build(small_archive, blocker / "stores")


def test_an_old_layout_store_is_read_then_kept_as_the_first_old_version(small_archive,
                                                                        tmp_path):
    from geotessera.store.naming import find_stores

    first = tmp_path / "first"
    _build(small_archive, first)
    out = tmp_path / "out"
    out.mkdir()
    shutil.copytree((first / "utm31_2024.zarr").resolve(), out / "utm31_2024.zarr")
    (ref,) = find_stores(out)  # a real directory of the old layout is found and read
    assert ref.home is None and Path(ref.location.path) == out / "utm31_2024.zarr"
    before = _arrays(out / "utm31_2024.zarr")
    report = _build(small_archive, out)
    link = out / "utm31_2024.zarr"
    assert link.is_symlink() and os.readlink(link) == f"utm31_2024/{report.results[0].version}"
    versions = sorted(p.name for p in (out / "utm31_2024").iterdir() if p.is_dir())
    assert len(versions) == 2  # the adopted old store and the new version
    legacy = next(v for v in versions if v != report.results[0].version)
    _assert_same(_arrays(out / "utm31_2024" / legacy), before)
    (ref,) = find_stores(out)
    assert ref.home is not None and ref.location.name == report.results[0].version


def test_a_store_name_that_is_a_foreign_symlink_is_repointed_and_builds_keep_working(
        small_archive, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    _build(small_archive, elsewhere)
    target = (elsewhere / "utm31_2024.zarr").resolve()
    out = tmp_path / "out"
    out.mkdir()
    (out / "utm31_2024.zarr").symlink_to(target)
    for _ in range(3):
        report = _build(small_archive, out)
        assert os.readlink(out / "utm31_2024.zarr") == (
            f"utm31_2024/{report.results[0].version}")
    assert target.is_dir() and (target / "zarr.json").exists()  # the foreign store untouched
    assert sorted(p.name for p in out.iterdir()) == ["utm31_2024", "utm31_2024.zarr"]
    assert len([p for p in (out / "utm31_2024").iterdir() if p.is_dir()]) == 2
