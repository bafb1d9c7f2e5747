"""Remote tile input: the test archive scanned and built from ``s3://`` (moto's S3 server on
loopback) and from ``http://`` (the same server's plain HTTP endpoint), compared with the local
build; bytes fetched per shard; errors naming the URL after retries."""

from __future__ import annotations

import http.server
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import zarr

from geotessera.archive.remote import RemoteNpy, gdal_name, gdal_options, read_npy_header
from geotessera.archive.scan import scan_archive
from geotessera.build.assemble import assemble
from geotessera.build.plan import plan_zones, select, shard_tasks
from geotessera.errors import ArchiveError, ShardWriteError
from geotessera.store.location import Location
from geotessera.tiles import tile_keys

from conftest import TEST_LAYOUT, TEST_SPEC, build, scan

moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")

BUCKET = "tiles"
PREFIX = "archive"
#: Bytes fetched over bytes needed, per shard, may not exceed this. Whole tile rows are read
#: (one range per row run), so the waste is the columns outside the shard's window; with
#: 64 px shards and ~70 px tiles at 160 m a piece often covers a thin column strip.
MAX_FETCH_FACTOR = 12.0


@pytest.fixture(scope="module")
def s3(archive):
    """moto's S3 server on loopback with the test archive uploaded; the AWS environment
    (for obstore and GDAL) points at it for the whole module."""
    srv = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    host, port = srv.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": "true"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket=BUCKET)
        for path in sorted(p for p in archive.rglob("*") if p.is_file()):
            rel = path.relative_to(archive).as_posix()
            if rel.endswith((".npy", ".tiff")):
                client.upload_file(str(path), BUCKET, f"{PREFIX}/{rel}",
                                   ExtraArgs={"ACL": "public-read"})  # for plain http
        yield endpoint, client
    srv.stop()


def _strip(rec):
    """A row without what differs between copies of the same files (mtimes)."""
    return replace(rec, embeddings_mtime=None, scales_mtime=None, landmask_mtime=None)


def _chunks(store: Path) -> dict[str, bytes]:
    """Every data object of a store (chunk and shard files of the data arrays) by key."""
    return {p.relative_to(store).as_posix(): p.read_bytes() for p in store.rglob("*")
            if p.is_file() and "/c/" in p.relative_to(store).as_posix()
            and "/L0/" in f"/{p.relative_to(store).as_posix()}"}


def _assert_same_stores(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.glob("utm*.zarr"))
    assert names and names == sorted(p.name for p in b.glob("utm*.zarr"))
    for name in names:
        for arr in ("L0/embeddings", "L0/scales"):
            x = zarr.open_array(a / name / arr, mode="r")
            y = zarr.open_array(b / name / arr, mode="r")
            np.testing.assert_array_equal(x[...], y[...])
        ca, cb = _chunks(a / name), _chunks(b / name)
        assert ca and ca.keys() == cb.keys()
        assert all(ca[k] == cb[k] for k in ca), name


def test_gdal_options_come_from_the_aws_environment(s3):
    endpoint, _ = s3
    opts = gdal_options(Location.parse(f"s3://{BUCKET}/{PREFIX}"))
    assert opts["AWS_S3_ENDPOINT"] == endpoint.removeprefix("http://")
    assert opts["AWS_HTTPS"] == "NO" and opts["AWS_VIRTUAL_HOSTING"] == "FALSE"
    assert int(opts["GDAL_HTTP_MAX_RETRY"]) > 0
    over = Location.parse(f"s3://{BUCKET}/x", {"endpoint": "https://example.org:9000"})
    assert gdal_options(over)["AWS_S3_ENDPOINT"] == "example.org:9000"
    assert gdal_name(Location.parse(f"s3://{BUCKET}/a/b.tiff")) == f"/vsis3/{BUCKET}/a/b.tiff"
    assert gdal_options(Location.parse("/tmp")) == {}


def test_s3_scan_equals_local_scan(s3, archive):
    local = scan(archive)
    with ThreadPoolExecutor(8) as pool:
        remote = scan_archive(f"s3://{BUCKET}/{PREFIX}", pool, expected_bands=TEST_SPEC.bands)
    assert remote.reread == len(local.records) and remote.reused == 0
    assert [_strip(r) for r in remote.records] == [_strip(r) for r in local.records]
    assert all(r.embeddings_mtime is not None for r in remote.records)
    with ThreadPoolExecutor(8) as pool:  # a rescan reuses every row from the listing alone
        again = scan_archive(f"s3://{BUCKET}/{PREFIX}", pool, previous=remote.records,
                             expected_bands=TEST_SPEC.bands)
    assert (again.reread, again.reused) == (0, len(local.records))


def test_build_from_s3_equals_local_build(s3, archive, built, tmp_path):
    with ThreadPoolExecutor(8) as pool:
        records = scan_archive(f"s3://{BUCKET}/{PREFIX}", pool,
                               expected_bands=TEST_SPEC.bands).records
    out = tmp_path / "stores"
    report = build(Location.parse(f"s3://{BUCKET}/{PREFIX}"), out, workers=2, records=records)
    assert report.results
    _assert_same_stores(built, out)


def test_build_from_http_equals_local_build(s3, archive, built, tmp_path):
    """An http(s) archive cannot be listed: the tiles come from a registry made elsewhere
    (here the local scan), each file checked by HEAD and read with range requests."""
    endpoint, _ = s3
    base = f"{endpoint}/{BUCKET}/{PREFIX}"
    local = scan(archive).records
    with ThreadPoolExecutor(8) as pool:
        remote = scan_archive(base, pool, previous=local, expected_bands=TEST_SPEC.bands)
    assert remote.reread == len(local)  # other mtimes than the local copy: headers re-read
    assert [_strip(r) for r in remote.records] == [_strip(r) for r in local]
    with ThreadPoolExecutor(8) as pool, pytest.raises(ArchiveError, match="cannot be listed"):
        scan_archive(base, pool, expected_bands=TEST_SPEC.bands)
    out = tmp_path / "stores"
    build(base, out, workers=1, records=remote.records)
    _assert_same_stores(built, out)


def _tasks(records, base):
    good, _ = select(records, None, None)
    tasks = []
    for plan in plan_zones(good, TEST_LAYOUT):
        tasks += shard_tasks(plan, base, Location.parse("/nonexistent"), TEST_LAYOUT)
    return tasks


def test_shard_tasks_fetch_a_bounded_multiple_of_what_they_need(s3, archive):
    records = scan(archive).records
    base = Location.parse(f"s3://{BUCKET}/{PREFIX}")
    fetched = needed = 0
    for task in _tasks(records, base):
        data = assemble(task.spec, task.pixel_major)
        local = assemble(replace(task.spec, pieces=tuple(
            replace(p, root=Location.parse(archive)) for p in task.spec.pieces)), True)
        np.testing.assert_array_equal(data.embeddings, local.embeddings)
        np.testing.assert_array_equal(data.scales, local.scales)
        assert local.fetched == 0 and local.needed == data.needed
        assert data.needed > 0 and data.fetched >= data.needed
        assert data.fetched <= MAX_FETCH_FACTOR * data.needed, (task.spec.row, task.spec.col)
        fetched, needed = fetched + data.fetched, needed + data.needed
    assert fetched / needed < 4.0  # over the whole archive


def test_missing_object_is_an_archive_error_naming_the_url(s3, archive, tmp_path):
    _, client = s3
    records = scan(archive).records
    victim = records[0]
    key = f"{PREFIX}/{tile_keys(victim.year, victim.name)[0]}"
    data = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    client.delete_object(Bucket=BUCKET, Key=key)
    try:
        with pytest.raises(ArchiveError, match=f"s3://{BUCKET}/{key}"):
            read_npy_header(Location.parse(f"s3://{BUCKET}/{PREFIX}"),
                            tile_keys(victim.year, victim.name)[0])
        good = [r for r in records if r.zone == victim.zone and r.year == victim.year]
        with pytest.raises(ShardWriteError, match=f"s3://{BUCKET}/{key}"):
            build(Location.parse(f"s3://{BUCKET}/{PREFIX}"), tmp_path / "out", workers=1,
                  records=good)
    finally:
        client.put_object(Bucket=BUCKET, Key=key, Body=data)


class _Failing(http.server.BaseHTTPRequestHandler):
    """Answers every request with 503, counting them."""

    hits = 0

    def do_GET(self):  # noqa: N802
        type(self).hits += 1
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


def test_server_errors_are_retried_then_name_the_url():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        root = Location.parse(f"http://127.0.0.1:{srv.server_address[1]}/archive")
        key = "global_0.1_degree_representation/2024/grid_0.15_0.15/grid_0.15_0.15.npy"
        with pytest.raises(ArchiveError, match=f"{root.url}/{key}") as info:
            RemoteNpy.open(root, key)
        assert "503" in str(info.value) or "Service Unavailable" in str(info.value)
        assert _Failing.hits > 1  # retried before giving up
    finally:
        srv.shutdown()


def test_cli_remote_base_dir_needs_a_registry_path():
    from click.testing import CliRunner

    from geotessera.cli import cli

    res = CliRunner().invoke(cli, ["scan", "s3://tiles/archive", "--json"])
    assert res.exit_code == 2 and "needs --registry" in res.output
    res = CliRunner().invoke(cli, ["scan", "ftp://host/x"])
    assert res.exit_code == 2 and "unsupported scheme" in res.output
