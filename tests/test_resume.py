"""``--resume`` publishes only what a fresh build would (issue 13 item 3), on a local disk and
on S3 (moto on loopback): damaged journaled shards are rewritten, a malformed journal is an
error naming it, a build killed before its groups resumes, and what a content change that
keeps size and mtime does (docs/operations.md "Publishing and resuming")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import zarr

import geotessera.build.run as run_mod
from geotessera.archive.demo import DemoSpec, write_demo_archive
from geotessera.build.run import build_stores
from geotessera.build.verify import verify_store
from geotessera.errors import ShardWriteError, StoreError
from geotessera.store.location import Location
from geotessera.store.versions import StoreHome
from geotessera.types import StoreLayout

from conftest import scan
from s3 import bucket, s3_server  # noqa: F401  (fixtures)

CLI = str(Path(sys.executable).parent / "geotessera-registry")
SPEC = DemoSpec(lon_min=0.0, lon_max=0.2, lat_min=50.0, lat_max=50.1, pixel_size=100.0,
                bands=8, years=(2024,))
LAYOUT = StoreLayout(shard_px=32, chunk_px=16, scales_chunk_px=32)
LAYOUT_ARGS = ["--shard-px", "32", "--chunk-px", "16", "--scales-chunk-px", "32",
               "--bands", "8", "-j", "1", "--no-rgb", "--no-stac"]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("resume")
    write_demo_archive(base, SPEC)
    return base


@pytest.fixture(scope="module")
def reference(pristine, tmp_path_factory) -> tuple[np.ndarray, np.ndarray]:
    out = tmp_path_factory.mktemp("ref")
    _build(pristine, out)
    return _arrays(StoreHome.of(Location.parse(out), "utm31_2024").current())


@pytest.fixture(params=["local", "s3"])
def out(request, tmp_path) -> Location:
    if request.param == "local":
        return Location.parse(tmp_path / "out")
    name = request.getfixturevalue("bucket")
    return Location.parse(f"s3://{name}/stores")


def _build(base, out, resume=False, layout=LAYOUT):
    with ThreadPoolExecutor(1) as pool:
        return build_stores(base, out, scan(base, bands=8).records, pool, resume=resume,
                            layout=layout)


def _arrays(store: Location):
    l0 = zarr.open_group(store=store.zarr_store(), mode="r")["L0"]
    return l0["embeddings"][:], l0["scales"][:]


def _interrupt(base, out, monkeypatch, after: int,
               layout=LAYOUT) -> tuple[StoreHome, dict]:
    """A build that fails after ``after`` shards (the state a kill leaves, minus the lock)."""
    real, calls = run_mod.write_shard, [0]

    def failing(task):
        calls[0] += 1
        if calls[0] > after:
            raise OSError(5, "injected failure")
        return real(task)

    monkeypatch.setattr(run_mod, "write_shard", failing)
    with pytest.raises(ShardWriteError):
        _build(base, out, layout=layout)
    monkeypatch.undo()
    home = StoreHome.of(out, "utm31_2024")
    return home, json.loads(home.home.read("building.json"))


def _journal(home: StoreHome, building: dict) -> Location:
    return home.journal(building["store"])


def test_a_journaled_shard_that_is_missing_or_torn_is_rewritten(pristine, reference, out,
                                                                 monkeypatch):
    home, building = _interrupt(pristine, out, monkeypatch, after=4)
    journal, version = _journal(home, building), home.version(building["store"])
    recs = sorted(k for k in journal.keys() if k != "created.json")
    assert len(recs) >= 2  # the first failure cancels shards still in flight
    gone = json.loads(journal.read(recs[0]))
    torn = json.loads(journal.read(recs[1]))
    version.delete(gone["objects"][0][0])
    key = torn["objects"][0][0]
    version.write(key, version.read(key)[:-7])  # a shard cut short
    report = _build(pristine, out, resume=True).results[0]
    assert report.resumed_shards == len(recs) - 2
    assert set(report.rewritten) == {f"{gone['row']}_{gone['col']}",
                                     f"{torn['row']}_{torn['col']}"}
    assert "is missing" in report.rewritten[f"{gone['row']}_{gone['col']}"]
    np.testing.assert_array_equal(_arrays(home.current())[0], reference[0])
    np.testing.assert_array_equal(_arrays(home.current())[1], reference[1])


def test_a_changed_shard_object_of_the_same_size_is_rewritten(pristine, reference, out,
                                                                monkeypatch):
    home, building = _interrupt(pristine, out, monkeypatch, after=2)
    journal, version = _journal(home, building), home.version(building["store"])
    rec = json.loads(journal.read(sorted(k for k in journal.keys() if k != "created.json")[0]))
    key, size, _ = rec["objects"][0]
    data = bytearray(version.read(key))
    data[size // 2] ^= 0xFF  # a flipped byte: same size, other CRC32C
    version.write(key, bytes(data))
    report = _build(pristine, out, resume=True).results[0]
    assert "CRC32C" in report.rewritten[f"{rec['row']}_{rec['col']}"]
    np.testing.assert_array_equal(_arrays(home.current())[0], reference[0])


def test_a_malformed_journal_record_is_an_error_naming_it(pristine, out, monkeypatch):
    home, building = _interrupt(pristine, out, monkeypatch, after=2)
    journal = _journal(home, building)
    name = sorted(k for k in journal.keys() if k != "created.json")[0]
    journal.write(name, b'{"row": 0, "col"')
    with pytest.raises(StoreError) as info:
        _build(pristine, out, resume=True)
    assert str(journal.child(name)) in str(info.value) and "malformed" in str(info.value)
    res = subprocess.run([CLI, "zarr-build", str(pristine), "-o", str(out), "--resume",
                          *LAYOUT_ARGS], capture_output=True, text=True)
    assert res.returncode == 1, res.stderr
    assert str(journal.child(name)) in res.stderr.replace("\n", "")
    assert "internal error" not in res.stderr


def test_a_zstd_journal_is_not_resumed_by_a_default_build(pristine, tmp_path, monkeypatch):
    """A build interrupted with ``--codec zstd:3`` (the default before blosc) is not resumed
    by a default (blosc) build: the plan fingerprints differ, and the error says so."""
    out = Location.parse(tmp_path / "out")
    home, building = _interrupt(pristine, out, monkeypatch, after=2,
                                layout=LAYOUT.with_codec("zstd:3"))
    with pytest.raises(StoreError, match="cannot resume: the plan changed") as info:
        _build(pristine, out, resume=True)
    assert "building.json" in str(info.value)
    assert json.loads(home.home.read("building.json")) == building  # nothing discarded
    assert _build(pristine, out, resume=True, layout=LAYOUT.with_codec("zstd:3")).results[0] \
        .resumed_shards > 0


def test_a_build_killed_before_its_groups_existed_resumes(pristine, reference, out,
                                                          monkeypatch):
    def dies_half_way(store, *args, **kwargs):
        zarr.open_group(store=Location.parse(store).zarr_store(read_only=False), mode="w")
        raise KeyboardInterrupt  # the process dies: no L0 group, no created.json

    monkeypatch.setattr(run_mod, "create_zone_store", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        _build(pristine, out)
    monkeypatch.undo()
    home = StoreHome.of(out, "utm31_2024")
    building = json.loads(home.home.read("building.json"))
    assert not home.version(building["store"]).exists("L0/zarr.json")
    report = _build(pristine, out, resume=True).results[0]
    assert report.version == building["store"] and report.resumed_shards == 0
    np.testing.assert_array_equal(_arrays(home.current())[0], reference[0])


def test_a_tile_changed_with_the_same_size_and_mtime_is_not_seen_by_resume(
        pristine, reference, tmp_path, monkeypatch):
    """What docs/operations.md says: the plan fingerprint holds each tile's size and mtime,
    so ``--resume`` keeps journaled shards made from the old content; ``verify`` finds the
    difference and a build without ``--resume`` gives the new content."""
    import shutil

    base = tmp_path / "archive"
    shutil.copytree(pristine, base)
    out = Location.parse(tmp_path / "out")
    monkeypatch.setattr(run_mod, "publish", lambda *a: (_ for _ in ()).throw(OSError("kill")))
    with pytest.raises(OSError):
        _build(base, out)  # every shard journaled, nothing published
    monkeypatch.undo()
    home = StoreHome.of(out, "utm31_2024")
    scales = sorted(base.rglob("*_scales.npy"))[0]
    st = scales.stat()
    arr = np.load(scales)
    np.save(scales, (arr * 2).astype(arr.dtype))
    os.utime(scales, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert scales.stat().st_size == st.st_size
    _build(base, out, resume=True)
    resumed = _arrays(home.current())
    np.testing.assert_array_equal(resumed[1], reference[1])  # the old content, kept
    with ThreadPoolExecutor(1) as pool:
        found = verify_store(home.current().path, base, pool, full=True)
    assert found.pixels_mismatched > 0
    _build(base, out)  # a fresh build reads the tiles again
    assert not np.array_equal(_arrays(home.current())[1], reference[1], equal_nan=True)
