"""The registry is data, not instructions (issue 13, items 1, 2 and 5).

Registry rows that point outside the archive (``..``, absolute, a GDAL ``/vsicurl/`` URL), a
symlinked tile file leading out, and tile files that lie after the scan: each is exit 1 from
``zarr-build`` naming the file, nothing foreign is opened or published, and worker-side errors
reach the CLI through the spawn process pool with their message.
"""

from __future__ import annotations

import dataclasses
import http.server
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from geotessera.archive import registry
from geotessera.archive.demo import DemoSpec, write_demo_archive
from geotessera.cli import cli
from geotessera.errors import ArchiveError

SPEC = DemoSpec(lon_min=0.0, lon_max=0.2, lat_min=0.0, lat_max=0.1, pixel_size=400.0,
                bands=4, years=(2024,))
BUILD = ["--bands", "4", "-j", "1", "--shard-px", "32", "--chunk-px", "16",
         "--scales-chunk-px", "32", "--no-rgb", "--no-stac"]
TILE = "grid_0.05_0.05"
EMB = f"global_0.1_degree_representation/2024/{TILE}/{TILE}.npy"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("trust") / "archive"
    write_demo_archive(base, SPEC)
    return base


@pytest.fixture
def base(pristine, tmp_path) -> Path:
    dst = tmp_path / "archive"
    shutil.copytree(pristine, dst, symlinks=True)
    res = CliRunner().invoke(cli, ["scan", str(dst), "--bands", "4", "-q"])
    assert res.exit_code == 0, res.stderr
    return dst


def tamper(base: Path, **paths: str) -> None:
    """Rewrite the registry row of TILE with other stored paths (sizes and mtimes kept, so a
    rescan reuses the row as it is)."""
    path = base / registry.REGISTRY_FILENAME
    rows = [dataclasses.replace(r, **paths) if r.name == TILE else r
            for r in registry.load(path)]
    registry.save(rows, path)


def zarr_build(base: Path, out: Path):
    return CliRunner().invoke(cli, ["zarr-build", str(base), "-o", str(out), *BUILD])


def library_build(base: Path, out: Path):
    """Build from the registry as it is (no rescan), as a cluster driver or notebook would:
    the tampered row reaches the planner. Returns the error raised, if any."""
    from concurrent.futures import ThreadPoolExecutor

    from geotessera.build.run import build_stores
    from geotessera.types import StoreLayout

    records = registry.load(base / registry.REGISTRY_FILENAME)
    layout = StoreLayout(shard_px=32, chunk_px=16, scales_chunk_px=32)
    with ThreadPoolExecutor(1) as pool, pytest.raises(ArchiveError) as info:
        build_stores(base, out, records, pool, layout=layout)
    assert not list(out.glob("utm*.zarr*")), "nothing may be written or published"
    return str(info.value)


def assert_rescan_repairs(base: Path, out: Path, field: str) -> None:
    """Through the CLI, the scan re-derives a row whose stored paths are not its tile's own
    files, so the build reads only the archive's files: it succeeds and the row is
    repaired."""
    res = zarr_build(base, out)
    assert res.exit_code == 0, res.stderr
    row = next(r for r in registry.load(base / registry.REGISTRY_FILENAME) if r.name == TILE)
    assert ".." not in getattr(row, field) and not getattr(row, field).startswith(("/", "/vsi"))


def assert_refused(res, out: Path, *texts: str) -> None:
    assert res.exit_code == 1, (res.stdout, res.stderr)
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, res.stderr
    for text in texts:
        assert text in errors[0], errors[0]
    assert not list(out.glob("utm*.zarr*")), "nothing may be written or published"


def test_a_clean_archive_builds(base, tmp_path):
    res = zarr_build(base, tmp_path / "out")
    assert res.exit_code == 0, res.stderr
    assert (tmp_path / "out" / "utm31_2024.zarr" / "zarr.json").exists()


def test_row_pointing_up_and_out_is_refused(base, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(base / EMB, outside / "x.npy")  # a valid foreign file of the same shape
    tamper(base, embeddings_path="../outside/x.npy")
    err = library_build(base, tmp_path / "out")
    assert "'../outside/x.npy'" in err and f"{TILE}.npy" in err and "registry row" in err
    assert_rescan_repairs(base, tmp_path / "out2", "embeddings_path")


def test_absolute_row_path_is_refused(base, tmp_path):
    tamper(base, scales_path="/etc/passwd")
    err = library_build(base, tmp_path / "out")
    assert "'/etc/passwd'" in err and TILE in err
    assert_rescan_repairs(base, tmp_path / "out2", "scales_path")


class _Recorder(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        self.requests.append(self.path)
        self.send_error(404)

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    _Recorder.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_vsicurl_landmask_row_sends_no_request(base, tmp_path, http_server):
    url = f"/vsicurl/http://127.0.0.1:{http_server.server_address[1]}/lm.tiff"
    tamper(base, landmask_path=url)
    err = library_build(base, tmp_path / "out")
    assert "GDAL virtual filesystem" in err and url in err
    assert_rescan_repairs(base, tmp_path / "out2", "landmask_path")
    assert _Recorder.requests == []


def test_a_vsi_prefix_is_refused_at_the_gdal_call_too(tmp_path, http_server):
    from geotessera.build.assemble import PieceSource, TileArrays
    from geotessera.store.location import Location
    from geotessera.types import TileKey, Window

    url = f"/vsicurl/http://127.0.0.1:{http_server.server_address[1]}/lm.tiff"
    w = Window(0, 2, 0, 2)
    piece = PieceSource(TileKey(5, 5), w, w, Location.parse(tmp_path), "e.npy", "s.npy", url,
                        (2, 2, 4))
    with pytest.raises(ArchiveError, match="virtual filesystem"):
        TileArrays(piece).landmask(w)
    assert _Recorder.requests == []


def test_symlink_leading_out_of_the_archive_is_refused(base, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    target = outside / f"{TILE}.npy"
    shutil.move(base / EMB, target)  # keeps size and mtime
    os.symlink(target, base / EMB)
    res = zarr_build(base, tmp_path / "out")
    assert_refused(res, tmp_path / "out", f"{TILE}.npy", "outside the archive root")


def test_symlink_inside_the_archive_is_allowed(base, tmp_path):
    inside = base / "moved"
    inside.mkdir()
    shutil.move(base / EMB, inside / "x.npy")
    os.symlink(inside / "x.npy", base / EMB)
    res = zarr_build(base, tmp_path / "out")
    assert res.exit_code == 0, res.stderr


def test_store_listing_a_traversing_tile_name_is_a_verify_problem(base, tmp_path):
    import json

    out = tmp_path / "out"
    assert zarr_build(base, out).exit_code == 0
    store = out / "utm31_2024.zarr"
    doc = json.loads((store / "zarr.json").read_text())
    doc["attributes"]["geotessera:tiles"] = ["../../../etc"]
    doc["consolidated_metadata"] = None
    (store / "zarr.json").write_text(json.dumps(doc))
    res = CliRunner().invoke(cli, ["verify", str(store), "--base-dir", str(base), "-j", "1"])
    assert res.exit_code == 1
    assert "'../../../etc', which is not a tile name" in res.stdout  # the full list


def _lie_about_shape(path: Path, shape: tuple[int, ...]) -> None:
    """Rewrite the .npy header's shape, keeping the byte count and the mtime."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    with open(path, "rb") as f:
        np.lib.format.read_magic(f)
        old_shape, _, _ = np.lib.format.read_array_header_1_0(f)
        end = f.tell()
    header = data[:end].decode("latin1")
    new = header.replace(str(old_shape), str(shape))
    pad = len(new) - len(header)
    new = new.replace(" " * (pad + 1) + "\n", " \n") if pad > 0 else new.replace(
        "\n", " " * -pad + "\n")
    assert len(new) == len(header) and np.prod(shape) == np.prod(old_shape)
    data[:end] = new.encode("latin1")
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_header_lie_after_the_scan_names_the_file_through_the_process_pool(base, tmp_path):
    h, w, b = np.load(base / EMB, mmap_mode="r").shape
    _lie_about_shape(base / EMB, (h * w, 1, b))
    res = zarr_build(base, tmp_path / "out")
    assert res.exit_code == 1, res.stderr
    line = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")][0]
    assert f"{TILE}.npy" in line and "changed since the scan" in line, line
    assert "terminated abruptly" not in res.stderr
    assert not (tmp_path / "out" / "utm31_2024.zarr").exists()


def test_header_lie_at_scan_time_blames_the_embeddings_file(pristine, tmp_path):
    base = tmp_path / "archive"
    shutil.copytree(pristine, base)
    h, w, b = np.load(base / EMB, mmap_mode="r").shape
    _lie_about_shape(base / EMB, (h * w, 1, b))
    res = CliRunner().invoke(cli, ["scan", str(base), "--bands", "4", "--json"])
    import json

    problems = json.loads(res.stdout)["problems"]
    assert [p["path"] for p in problems] == [EMB], problems


def test_the_plan_bounds_a_workers_shard_memory_with_the_real_band_count(base):
    from geotessera.archive.scan import scan_archive
    from geotessera.build.plan import plan_zones
    from geotessera.errors import GridError
    from geotessera.types import StoreLayout, max_shard_px
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        records = [r for r in scan_archive(base, pool, expected_bands=4).records if r.usable]
    ok = max_shard_px(4) // 16 * 16
    assert plan_zones(records, StoreLayout(shard_px=ok, chunk_px=16, scales_chunk_px=16))
    with pytest.raises(GridError, match=r"shard_px=32768 at 4 bands needs 8,589,934,592"):
        plan_zones(records, StoreLayout(shard_px=32768, chunk_px=16, scales_chunk_px=16))
