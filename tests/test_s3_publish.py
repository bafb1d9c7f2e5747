"""Stores on S3 (moto's server on loopback): the same bytes as a local build, read back by
plain xarray, one PUT per shard object, versioned publish, lock and resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import zarr

from geotessera.archive.demo import DemoSpec, write_demo_archive
from geotessera.build.run import build_stores
from geotessera.errors import LockedError
from geotessera.store.location import Location
from geotessera.store.lock import StoreLock
from geotessera.store.naming import find_stores
from geotessera.store.versions import StoreHome
from geotessera.types import StoreLayout

from conftest import TEST_LAYOUT, scan
from s3 import bucket, s3_server  # noqa: F401  (fixtures)

CLI = str(Path(sys.executable).parent / "geotessera-registry")
SPEC = DemoSpec(lon_min=0.0, lon_max=0.3, lat_min=50.0, lat_max=50.2, pixel_size=100.0,
                bands=8, years=(2024,))
SMALL = StoreLayout(shard_px=32, chunk_px=16, scales_chunk_px=32)
LAYOUT_ARGS = ["--shard-px", "32", "--chunk-px", "16", "--scales-chunk-px", "32",
               "--bands", "8", "-j", "1"]


@pytest.fixture(scope="module")
def small_archive(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("s3pub")
    write_demo_archive(base, SPEC)
    return base


def _arrays(store: Location):
    l0 = zarr.open_group(store=store.zarr_store(), mode="r")["L0"]
    return l0["embeddings"][:], l0["scales"][:]


def _same(a, b) -> None:
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True)


def test_s3_build_equals_the_local_build_with_one_put_per_shard(archive, built, s3_server,
                                                                bucket):
    out = Location.parse(f"s3://{bucket}/stores")
    s3_server.requests.clear()
    with ThreadPoolExecutor(2) as pool:
        report = build_stores(archive, out, scan(archive).records, pool, layout=TEST_LAYOUT)
    seen = list(s3_server.requests.seen)
    remote, local = find_stores(out), find_stores(built)
    assert [r.name for r in remote] == [r.name for r in local] and len(remote) >= 3
    for r, loc in zip(remote, local, strict=True):
        assert r.location.url.startswith(f"s3://{bucket}/stores/{r.name[:-5]}/v")
        _same(_arrays(r.location), _arrays(loc.location))
    shards = 0
    for res in report.results:
        prefix = f"/{bucket}/stores/{res.name[:-5]}/{res.version}/L0/embeddings/c/"
        keys = {p for m, p, _ in seen if p.startswith(prefix)}
        assert keys, res.name
        for key in keys:  # whole-shard writes: one PUT, never a read
            methods = [m for m, p, _ in seen if p == key]
            assert methods == ["PUT"], (key, methods)
        shards += len(keys)
    assert shards == sum(r.shards_with_data for r in report.results)


def test_plain_xarray_reads_the_published_version_through_zarrs_object_store(
        archive, built, s3_server, bucket):
    import xarray as xr
    from obstore.store import S3Store
    from zarr.storage import ObjectStore

    out = f"s3://{bucket}/stores"
    with ThreadPoolExecutor(2) as pool:
        build_stores(archive, out, scan(archive).records, pool, years=[2024], zones={31},
                     layout=TEST_LAYOUT)
    ptr = json.loads(Location.parse(out).read("utm31_2024/current.json"))
    store = ObjectStore(S3Store(bucket, prefix=f"stores/utm31_2024/{ptr['store']}",
                                endpoint=s3_server.endpoint, region="us-east-1",
                                access_key_id="testing", secret_access_key="testing",
                                client_options={"allow_http": True}), read_only=True)
    ds = xr.open_zarr(store, group="L0", consolidated=False)
    ref = xr.open_zarr(built / "utm31_2024.zarr", group="L0", consolidated=False)
    np.testing.assert_array_equal(ds["embeddings"].values, ref["embeddings"].values)
    np.testing.assert_array_equal(ds["scales"].values, ref["scales"].values)
    np.testing.assert_array_equal(ds["x"].values, ref["x"].values)


def _journal(out: Location, name: str = "utm31_2024") -> list[str]:
    home = out.child(name)
    try:
        building = json.loads(home.read("building.json"))
    except FileNotFoundError:
        return []
    journal = building["store"].removesuffix(".zarr") + ".journal"
    return [k for k in home.keys(journal) if k.endswith(".json") and "created" not in k]


@pytest.mark.slow
def test_sigkill_on_s3_keeps_the_published_version_and_resume_completes_it(
        small_archive, s3_server, bucket):
    out = Location.parse(f"s3://{bucket}/stores")
    first = _cli("zarr-build", str(small_archive), "-o", out.url, "-q", "--json", "--no-rgb",
                 "--no-stac", *LAYOUT_ARGS)
    assert first.returncode == 0, first.stderr
    (doc,) = json.loads(first.stdout)["stores"]
    total = doc["shards_nonempty"]
    assert total >= 20
    home = StoreHome.of(out, "utm31_2024.zarr")
    before_ptr = home.pointer()
    before = _arrays(home.current())

    proc = subprocess.Popen([CLI, "zarr-build", str(small_archive), "-o", out.url, "-q",
                             "--no-rgb", "--no-stac", *LAYOUT_ARGS],
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(_journal(out)) < 3:
        assert proc.poll() is None, f"build ended before it was killed: {proc.stderr.read()}"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(_journal(out))
    assert 3 <= done < total
    assert home.pointer() == before_ptr  # readers still see the old version, whole
    _same(_arrays(home.current()), before)
    assert out.child("utm31_2024").exists("lock.json")  # left by the dead builder

    resumed = _cli("zarr-build", str(small_archive), "-o", out.url, "--resume", "--json", "-q",
                   "--no-rgb", "--no-stac", *LAYOUT_ARGS)  # the dead owner's lock is taken
    assert resumed.returncode == 0, resumed.stderr
    (rdoc,) = json.loads(resumed.stdout)["stores"]
    assert rdoc["resumed_shards"] >= done and rdoc["shards_written"] == total
    assert (rdoc["valid_pixels"], rdoc["bytes_in"]) == (doc["valid_pixels"], doc["bytes_in"])
    after = home.pointer()
    assert after.store != before_ptr.store and after.store == rdoc["version"]
    _same(_arrays(home.current()), before)
    names = out.child("utm31_2024").dirs()  # the previous version is kept, nothing else
    assert names == sorted([before_ptr.store, after.store]), names
    assert not out.child("utm31_2024").exists("lock.json")
    assert not out.child("utm31_2024").exists("building.json")


def test_a_concurrent_build_is_refused_naming_the_lock_and_its_owner(small_archive, bucket):
    out = Location.parse(f"s3://{bucket}/stores")
    lock = StoreLock(out.child("utm31_2024"))
    lock.acquire()
    try:
        res = _cli("zarr-build", str(small_archive), "-o", out.url, "--no-rgb", "--no-stac",
                   *LAYOUT_ARGS)
    finally:
        lock.release()
    assert res.returncode == 1, res.stderr
    assert f"s3://{bucket}/stores/utm31_2024/lock.json" in res.stderr
    assert f"PID {os.getpid()}" in res.stderr and lock.me.uuid in res.stderr
    assert not out.child("utm31_2024").exists("current.json")


def test_an_expired_lock_is_taken_over_and_only_one_taker_wins(small_archive, bucket):
    out = Location.parse(f"s3://{bucket}/stores")
    home = out.child("utm31_2024")
    stale = {"host": "elsewhere", "pid": 1, "uuid": "dead", "since": "2026-01-01T00:00:00+00:00",
             "expires": time.time() - 5}
    home.write("lock.json", json.dumps(stale).encode())
    etag = home.read_meta("lock.json")[1]["e_tag"]
    assert home.put_if("lock.json", b"{}", etag=etag) is not None  # a first taker wins ...
    assert home.put_if("lock.json", b"{}", etag=etag) is None  # ... the second loses
    home.write("lock.json", json.dumps(stale).encode())
    with ThreadPoolExecutor(2) as pool:
        report = build_stores(small_archive, out, scan(small_archive, bands=8).records, pool,
                              layout=SMALL)
    assert report.results[0].version and not home.exists("lock.json")


def test_a_garbage_lock_is_reported_then_taken_over_once_old(small_archive, bucket):
    out = Location.parse(f"s3://{bucket}/stores")
    home = out.child("utm31_2024")
    home.write("lock.json", b"\x00garbage")
    with pytest.raises(LockedError, match="holds no valid lock") as info:
        StoreLock(home).acquire()
    assert f"s3://{bucket}/stores/utm31_2024/lock.json" in str(info.value)
    time.sleep(1.1)
    lock = StoreLock(home, ttl=1.0)
    lock.acquire()
    lock.release()
    assert not home.exists("lock.json")


def test_a_renewed_lock_stays_and_a_stolen_one_stops_the_build(bucket):
    home = Location.parse(f"s3://{bucket}/h")
    lock = StoreLock(home, ttl=0.6)
    lock.acquire()
    first = json.loads(home.read("lock.json"))["expires"]
    time.sleep(0.5)
    assert json.loads(home.read("lock.json"))["expires"] > first  # renewed in the background
    with pytest.raises(LockedError, match="locked by"):
        StoreLock(home, ttl=0.6).acquire()
    home.write("lock.json", b"{}")  # someone overwrote it
    with pytest.raises(LockedError, match="taken over"):
        lock.renew()
    lock.release()
    assert home.exists("lock.json")  # not ours any more: left alone


@pytest.mark.slow
def test_the_whole_job_and_every_reader_work_on_s3(small_archive, tmp_path, bucket):
    """zarr-build (with preview and STAC on S3), then stac with s3:// hrefs that validate,
    info, sample and verify, all by URL; sample agrees with a local build."""
    url = f"s3://{bucket}/stores"
    args = ["--shard-px", "32", "--chunk-px", "16", "--scales-chunk-px", "32", "--bands", "8",
            "-j", "1"]
    res = _cli("zarr-build", str(small_archive), "-o", url, "-q", "--json", *args)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["preview"]["stores"] and doc["stac"]["items"] == ["geotessera-2024-utm31"]
    out = Location.parse(url)
    assert out.exists("stac/catalog.json")
    version = StoreHome.of(out, "utm31_2024").current()
    assert zarr.open_group(store=version.zarr_store(), mode="r").attrs[
        "geotessera:rgb_complete"] is True

    cat = tmp_path / "stac"
    res = _cli("stac", url, "-o", str(cat), "--validate", "--json", "-q")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["validated"] >= 3
    (item,) = cat.glob("*/*/*.json")
    hrefs = {a["href"] for a in json.loads(item.read_text())["assets"].values()
             if a["href"].endswith(".zarr")}
    assert hrefs == {version.url}  # the version itself, absolute
    res = _cli("stac", url, "-o", str(tmp_path / "stac2"), "--href-base",
               "https://data.example/stores", "--json", "-q")
    assert res.returncode == 0, res.stderr
    item_key = "stac/geotessera-2024/geotessera-2024-utm31/geotessera-2024-utm31.json"
    thumb = json.loads(out.read(item_key))["assets"]["thumbnail"]
    assert thumb["href"] == "./thumbnail.png" and thumb["type"] == "image/png"
    assert out.read(item_key.rsplit("/", 1)[0] + "/thumbnail.png")[:8] == b"\x89PNG\r\n\x1a\n"
    res = _cli("stac", url, "--href-base", "https://data.example/stores", "-q")
    assert res.returncode == 0, res.stderr  # the catalog in the bucket, published with it
    assert json.loads(out.read(item_key))["assets"]["thumbnail"]["href"] == (
        "https://data.example/stores/stac/geotessera-2024/geotessera-2024-utm31/thumbnail.png")

    info = _cli("info", f"{url}/utm31_2024", "--json", "-q")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["store"] == version.url

    local = tmp_path / "local"
    assert _cli("zarr-build", str(small_archive), "-o", str(local), "-q", "--no-stac",
                *args).returncode == 0
    pts = ["--lon", "0.15", "--lat", "50.05", "--lon", "0.05", "--lat", "50.15"]
    remote_s = _cli("sample", url, "--year", "2024", "--json", "-q", *pts)
    local_s = _cli("sample", str(local), "--year", "2024", "--json", "-q", *pts)
    assert remote_s.returncode == 0, remote_s.stderr
    got = [p["vector"] for p in json.loads(remote_s.stdout)["points"]]
    assert got == [p["vector"] for p in json.loads(local_s.stdout)["points"]]
    assert all(v is not None for v in got)

    ver = _cli("verify", f"{url}/utm31_2024", "--base-dir", str(small_archive), "--full",
               "-j", "1", "--json", "-q")
    assert ver.returncode == 0, ver.stdout + ver.stderr
