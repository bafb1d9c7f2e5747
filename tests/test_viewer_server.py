"""The server's HTTP surface with real clients: zarr-python (obstore), GDAL (/vsicurl/) and
zarrita (node) read the stores through /data/ by range requests; traversal is refused;
/point is ``sample --json``; the STAC catalog is browsable over HTTP; the CLI binds to
loopback by default."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import psutil
import pystac
import pytest
import rasterio
import zarr
from click.testing import CliRunner
from obstore.store import HTTPStore
from zarr.storage import ObjectStore

from geotessera.cli import cli
from geotessera.cli.serve import is_loopback
from geotessera.viewer.server import Handler
from conftest import TEST_LAYOUT, build
from viewer_support import REPO, WEB, npm_ci, request, running, served_stores

YEAR = 2024
STORE = f"utm30_{YEAR}.zarr"


class RecordingHandler(Handler):
    """Records every (path, Range header) the server is asked for."""

    seen: list[tuple[str, str | None]] = []  # GET requests only

    def _route(self, head: bool) -> None:
        if not head:
            self.seen.append((self.path, self.headers.get("Range")))
        super()._route(head)


@pytest.fixture(scope="module")
def stores(built, tmp_path_factory):
    return served_stores(built, tmp_path_factory)


@pytest.fixture(scope="module")
def server(stores):
    with running(stores, handler=RecordingHandler) as srv:
        yield srv


@pytest.fixture()
def seen():
    RecordingHandler.seen.clear()
    return RecordingHandler.seen


def store_url(server, name=STORE) -> str:
    return f"{server.url}data/{name}"


def local(stores, name=STORE):
    return zarr.open_group(str(stores / name), mode="r")


def shard_file(stores) -> str:
    """A stored embeddings shard of L0, relative to the stores directory."""
    paths = sorted((stores / STORE / "L0" / "embeddings" / "c").rglob("*"))
    return str(next(p for p in paths if p.is_file()).relative_to(stores))


# --- byte ranges ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spec,start,stop", [
    ("bytes=0-99", 0, 100), ("bytes=100-", 100, None), ("bytes=-100", -100, None),
    ("bytes=5-5", 5, 6), ("bytes=-99999999", 0, None), ("bytes=10-99999999", 10, None),
])
def test_ranges_answer_206_with_the_right_bytes(server, stores, spec, start, stop):
    rel = shard_file(stores)
    data = (stores / rel).read_bytes()
    status, headers, body = request(server, f"/data/{rel}", headers={"Range": spec})
    want = data[start:stop]
    assert status == 206 and body == want
    first = start % len(data) if start < 0 and -start < len(data) else max(start, 0)
    assert headers["content-range"] == f"bytes {first}-{first + len(want) - 1}/{len(data)}"
    assert headers["content-length"] == str(len(want))
    assert "Content-Range" in headers["access-control-expose-headers"]


def test_whole_file_head_and_unsatisfiable_ranges(server, stores):
    rel = shard_file(stores)
    data = (stores / rel).read_bytes()
    status, headers, body = request(server, f"/data/{rel}")
    assert status == 200 and body == data and headers["accept-ranges"] == "bytes"
    status, headers, body = request(server, f"/data/{rel}", "HEAD")
    assert status == 200 and body == b"" and headers["content-length"] == str(len(data))
    status, headers, body = request(server, f"/data/{rel}", "HEAD", {"Range": "bytes=-10"})
    assert status == 206 and body == b"" and headers["content-length"] == "10"
    for spec in (f"bytes={len(data)}-", "bytes=-0"):
        status, headers, _ = request(server, f"/data/{rel}", headers={"Range": spec})
        assert status == 416 and headers["content-range"] == f"bytes */{len(data)}"
    status, _, body = request(server, f"/data/{rel}", headers={"Range": "bytes=0-1,5-6"})
    assert status == 200 and body == data  # several ranges: ignored, whole file


def test_cors_preflight_allows_range_from_any_origin(server, stores):
    status, headers, body = request(server, f"/data/{shard_file(stores)}", "OPTIONS", {
        "Origin": "http://example.test", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "range"})
    assert status == 204 and body == b""
    assert headers["access-control-allow-origin"] == "*"
    assert {"GET", "HEAD", "OPTIONS"} <= {m.strip() for m in
                                          headers["access-control-allow-methods"].split(",")}
    assert "Range" in headers["access-control-allow-headers"]


# --- what is served, and what is not ------------------------------------------------------------


@pytest.fixture()
def escapes(stores, tmp_path):
    """Symlinks out of the served tree, a hidden staging store and a stray file."""
    secret = tmp_path / "secret.txt"
    secret.write_text("outside the served root")
    made = [stores / STORE / "escape.txt", stores / "stac" / "escape-dir",
            stores / f".{STORE}.partial", stores / "stray.txt"]
    made[0].symlink_to(secret)
    made[1].symlink_to(tmp_path, target_is_directory=True)
    made[2].mkdir()
    (made[2] / "zarr.json").write_text("{}")
    made[3].write_text("not a store")
    yield
    for p in made:
        if p.is_symlink() or p.is_file():
            p.unlink()
        else:
            (p / "zarr.json").unlink()
            p.rmdir()


@pytest.mark.parametrize("path", [
    f"/data/{STORE}/../../../../../../etc/passwd",
    f"/data/{STORE}/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/data/%2E%2E/%2E%2E/%2E%2E/%2E%2E/etc/passwd",
    "/data/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/data/%252e%252e/%252e%252e/etc/passwd",
    f"/data/{STORE}/L0/..%5c..%5c..%5cetc%5cpasswd",
    "/data//etc/passwd",
    f"/data/{STORE}/escape.txt",
    "/data/stac/escape-dir/secret.txt",
    f"/data/.{STORE}.partial/zarr.json",
    "/data/stray.txt",
    f"/data/{STORE}/", f"/data/{STORE}", f"/data/{STORE}/L0", "/data/", "/data/stac",
    "/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/nothing-here",
])
def test_paths_outside_the_served_trees_are_404(server, escapes, path):
    for method in ("GET", "HEAD"):
        status, _, body = request(server, path, method)
        assert status == 404
        assert b"root:" not in body and b"outside the served root" not in body


def test_index_bundle_and_documents(server, stores):
    status, headers, body = request(server, "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    lock = json.loads((WEB / "package-lock.json").read_text())
    version = lock["packages"]["node_modules/maplibre-gl"]["version"]
    assert f"maplibre-gl {version}".encode() in body
    for name in ("app.js", "app.css", "maplibre-gl-worker.mjs"):
        status, _, data = request(server, f"/{name}")
        assert status == 200 and data == (REPO / "geotessera/viewer/static" / name).read_bytes()
    status, _, body = request(server, "/stores.json")
    doc = json.loads(body)
    assert doc["years"] == [2024, 2025] and doc["tiles"] == "/tiles/{year}/{z}/{x}/{y}.png"
    assert sorted((s["year"], s["zone"]) for s in doc["stores"]) == [
        (y, z) for y in (2024, 2025) for z in (30, 31)]
    for s in doc["stores"]:
        assert request(server, f"{s['href']}/zarr.json")[0] == 200
        lon = [p[0] for p in s["outline"]]
        assert s["bbox"][0] <= min(lon) + 1e-6 and max(lon) <= s["bbox"][2] + 1e-6


# --- real clients -------------------------------------------------------------------------------


def test_zarr_python_reads_a_store_by_range_requests(server, stores, seen):
    http = HTTPStore.from_url(store_url(server), client_options={"allow_http": True})
    remote = zarr.open_group(store=ObjectStore(http, read_only=True), mode="r")
    want = local(stores)
    for level in ("L0", "L1"):
        np.testing.assert_array_equal(remote[f"{level}/embeddings"][:, 10:70, 20:90],
                                      want[f"{level}/embeddings"][:, 10:70, 20:90])
        np.testing.assert_array_equal(remote[f"{level}/scales"][:], want[f"{level}/scales"][:])
        np.testing.assert_array_equal(remote[f"{level}/rgba"][:], want[f"{level}/rgba"][:])
    shard_reads = [r for p, r in seen if "/embeddings/c/" in p]
    assert shard_reads and all(r is not None for r in shard_reads)  # never a whole shard
    assert any(r.startswith("bytes=-") for r in shard_reads)  # the index, as a suffix range


def test_gdal_reads_a_store_through_vsicurl(server, stores, seen):
    url = store_url(server)
    want = local(stores)
    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR", CPL_VSIL_CURL_CHUNK_SIZE=16384):
        with rasterio.open(f'ZARR:"/vsicurl/{url}":/L0/scales') as src:
            assert src.crs.to_epsg() == 32630
            assert list(src.transform)[:6] == want["L0"].attrs["spatial:transform"]
            np.testing.assert_array_equal(src.read(1), want["L0/scales"][:])
        with rasterio.open(f'ZARR:"/vsicurl/{url}":/L1/rgba') as src:
            np.testing.assert_array_equal(src.read(), want["L1/rgba"][:])
    assert any(r is not None and r.startswith("bytes=") for p, r in seen if "/scales/" in p)


def test_zarrita_reads_a_store_by_range_requests(server, stores, seen):
    npm_ci()
    out = subprocess.run(["node", "test/zarrita_read.mjs", store_url(server), "40", "104",
                          "30", "90"], cwd=WEB, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    want = local(stores)["L0"]
    # the default codec: zarrita decodes numcodecs.js's blosc
    assert want["embeddings"].compressors[0].to_dict()["name"] == "blosc"
    emb = np.array(doc["emb"], np.int8).reshape(doc["shape"])
    np.testing.assert_array_equal(emb, want["embeddings"][:, 40:104, 30:90])
    sc = np.array([np.nan if v is None else v for v in doc["scales"]], np.float32)
    np.testing.assert_array_equal(sc.reshape(64, 60), want["scales"][40:104, 30:90])
    shard_reads = [r for p, r in seen if "/embeddings/c/" in p]
    assert shard_reads and all(r is not None for r in shard_reads)


def test_zarrita_decodes_zstd_embeddings(archive, tmp_path):
    """A ``--codec zstd:3`` store (the default before blosc): zarrita (numcodecs.js's zstd)
    decodes the embeddings' zstd inner chunks to zarr-python's values; the default (blosc)
    store is read in test_zarrita_reads_a_store_by_range_requests."""
    npm_ci()
    out = tmp_path / "stores"
    build(archive, out, layout=TEST_LAYOUT.with_codec("zstd:3"))
    with running(out) as srv:
        res = subprocess.run(["node", "test/zarrita_read.mjs", store_url(srv), "40", "104",
                              "30", "90"], cwd=WEB, capture_output=True, text=True,
                             timeout=120)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    want = local(out)["L0"]
    assert want["embeddings"].compressors[0].to_dict()["name"] == "zstd"
    emb = np.array(doc["emb"], np.int8).reshape(doc["shape"])
    assert emb.any()
    np.testing.assert_array_equal(emb, want["embeddings"][:, 40:104, 30:90])


def test_point_is_the_json_of_sample(server, stores):
    for lon, lat in ((0.12, -0.17), (-0.15, 0.05), (10.0, 10.0)):
        status, _, body = request(server, f"/point?lon={lon}&lat={lat}&year={YEAR}")
        cli_out = CliRunner().invoke(cli, ["sample", "--json", "--year", str(YEAR), "--lon",
                                           str(lon), "--lat", str(lat), str(stores)])
        assert status == 200 and cli_out.exit_code == 0
        assert json.loads(body) == json.loads(cli_out.stdout)
    assert json.loads(body)["points"][0]["vector"] is None  # (10, 10): no store there
    for query in ("lon=1&lat=2", "lon=x&lat=0&year=2024", "lon=0&lat=0&year=1999",
                  "lon=nan&lat=0&year=2024"):
        status, _, body = request(server, f"/point?{query}")
        assert status == 400 and json.loads(body)["status"] == "error"


def test_the_stac_catalog_is_browsable_over_http(server, stores):
    status, headers, _ = request(server, "/stac")
    assert status == 302 and headers["location"] == "/data/stac/catalog.json"
    cat = pystac.Catalog.from_file(f"{server.url}data/stac/catalog.json")
    items = sorted(cat.get_items(recursive=True), key=lambda i: i.id)
    assert [i.id for i in items] == [f"geotessera-{y}-utm{z}" for y in (2024, 2025)
                                     for z in (30, 31)]
    href = items[1].assets["embeddings"].get_absolute_href()
    assert href == store_url(server, "utm31_2024.zarr")
    http = HTTPStore.from_url(href, client_options={"allow_http": True})
    remote = zarr.open_group(store=ObjectStore(http, read_only=True), mode="r")
    np.testing.assert_array_equal(remote["L0/scales"][:], local(stores, "utm31_2024.zarr")
                                  ["L0/scales"][:])


def test_concurrent_tiles_and_files(server, stores):
    """A bounded burst of tile requests (distinct and repeated) while files are read: every
    answer is right, and equal tiles come back byte-identical."""
    paths = [f"/tiles/{YEAR}/13/{x}/{y}.png" for x in range(4094, 4098) for y in range(4093, 4099)]
    rel = shard_file(stores)
    data = (stores / rel).read_bytes()
    with ThreadPoolExecutor(12) as pool:
        tiles = list(pool.map(lambda p: request(server, p), paths * 2))
        files = list(pool.map(lambda _: request(server, f"/data/{rel}",
                                                headers={"Range": "bytes=-64"}), range(12)))
    assert all(t[0] == 200 for t in tiles)
    n = len(paths)
    assert all(tiles[i][2] == tiles[i + n][2] for i in range(n))
    assert all(f[0] == 206 and f[2] == data[-64:] for f in files)
    stats = server.viewer.tiles.stats()
    assert stats.hits >= 1 and stats.bytes <= server.viewer.tiles.cache.max_bytes


# --- the CLI ------------------------------------------------------------------------------------


def _serve(args, stores):
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    return subprocess.Popen([sys.executable, "-c", "from geotessera.cli import main; main()",
                             "serve", str(stores), "--port", "0", "--no-browser", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _listening(proc, timeout: float = 20.0) -> list:
    """The child's listening sockets, once it has one."""
    deadline = time.monotonic() + timeout
    while True:
        conns = [c for c in psutil.Process(proc.pid).net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN]
        if conns or time.monotonic() > deadline:
            return conns
        time.sleep(0.05)


def _stop(proc, sig=signal.SIGINT) -> tuple[int, str]:
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.returncode, err


def test_serve_binds_to_loopback_and_prints_the_url(stores):
    proc = _serve([], stores)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        port = int(url.rsplit(":", 1)[1].rstrip("/"))
        assert port > 0
        conns = _listening(proc)
        assert [(c.laddr.ip, c.laddr.port) for c in conns] == [("127.0.0.1", port)]
        import urllib.request

        with urllib.request.urlopen(url + "stores.json", timeout=30) as res:
            assert json.load(res)["years"] == [2024, 2025]
    finally:
        code, err = _stop(proc)
    assert code == 0 and "anyone who can reach" not in err


def test_serve_warns_on_a_non_loopback_host(stores):
    proc = _serve(["--host", "0.0.0.0", "--json"], stores)
    try:
        lines = [proc.stdout.readline()]
        while lines[-1] and lines[-1].rstrip() != "}":
            lines.append(proc.stdout.readline())
        doc = json.loads("".join(lines))
        assert doc["host"] == "0.0.0.0" and doc["port"] > 0
        assert _listening(proc)
    finally:
        code, err = _stop(proc, signal.SIGTERM)
    assert code == 0 and "anyone who can reach this address" in err


@pytest.mark.parametrize("args,code,text", [
    (["{tmp}/nope"], 1, "nope"),
    (["s3://bucket/stores"], 1, "s3://bucket/stores"),
    (["{tmp}", "--port", "70000"], 2, "--port"),
    (["{tmp}", "-j", "0"], 2, "--workers"),
])
def test_serve_exit_status(tmp_path, args, code, text):
    args = [a.format(tmp=tmp_path) for a in args]
    out = CliRunner().invoke(cli, ["serve", *args, "--no-browser"])
    assert out.exit_code == code and text in out.stderr


def test_serve_cannot_bind_a_busy_port(stores):
    with running(stores) as srv:
        out = CliRunner().invoke(cli, ["serve", str(stores), "--port",
                                       str(srv.server_address[1]), "--no-browser"])
    assert out.exit_code == 1 and "cannot listen" in out.stderr


@pytest.mark.parametrize("host,loop", [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True),
                                       ("localhost", True), ("0.0.0.0", False),
                                       ("192.0.2.7", False), ("::", False)])
def test_is_loopback(host, loop):
    assert is_loopback(host) is loop


def test_points_and_tiles_from_several_threads(server):
    """Point look-ups interleaved with tiles from several threads all answer."""
    errors = []

    def work(i):
        try:
            assert request(server, f"/point?lon={-0.2 + i * 0.01}&lat=0.05&year={YEAR}")[0] == 200
            assert request(server, f"/tiles/{YEAR}/12/{2047 + i % 2}/2047.png")[0] == 200
        except AssertionError as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors


def test_a_catalog_or_one_store_is_a_source_too(stores):
    with running(stores / "stac" / "catalog.json") as srv:
        doc = json.loads(request(srv, "/stores.json")[2])
        assert doc["years"] == [2024, 2025] and doc["catalog"] == "/data/stac/catalog.json"
        assert {s["href"] for s in doc["stores"]} == {
            f"/data/utm{z}_{y}.zarr" for z in (30, 31) for y in (2024, 2025)}
        assert request(srv, "/data/stac/catalog.json")[0] == 200
        assert request(srv, f"/data/{STORE}/zarr.json")[0] == 200
        assert request(srv, f"/tiles/{YEAR}/12/2047/2047.png")[0] == 200
    with running(stores / STORE) as srv:
        doc = json.loads(request(srv, "/stores.json")[2])
        assert doc["years"] == [YEAR] and [s["zone"] for s in doc["stores"]] == [30]
        assert request(srv, f"/data/{STORE}/zarr.json")[0] == 200
        assert request(srv, "/data/utm31_2024.zarr/zarr.json")[0] == 404  # not the source
        assert request(srv, "/data/stac/catalog.json")[0] == 404
