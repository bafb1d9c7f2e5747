"""The ``geotessera-registry`` CLI: JSON on stdout, one error line on stderr, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import archive_fixtures

from geotessera.cli import cli
from geotessera.archive.demo import DemoSpec
from geotessera.archive.registry import REGISTRY_FILENAME, schema_document, schema_markdown
from geotessera.tiles import tile_paths

CLI = str(Path(sys.executable).parent / "geotessera-registry")
SPEC = DemoSpec(pixel_size=400.0, bands=4, lon_min=-0.1, lon_max=0.1, lat_min=-0.1,
                lat_max=0.1, years=(2024,))
#: Small shards, so each zone store has several; one worker process.
BUILD = ["--bands", "4", "-j", "1", "--shard-px", "32", "--chunk-px", "16",
         "--scales-chunk-px", "32"]
BAD_TILE = "grid_0.05_0.05"  # zone 31


pristine, archive = archive_fixtures(SPEC, "cli_archive", "archive")


@pytest.fixture
def truncated(archive) -> tuple[Path, str]:
    """The archive with one embeddings file cut short; returns (base, relative path)."""
    emb = tile_paths(archive, 2024, BAD_TILE).embeddings
    emb.write_bytes(emb.read_bytes()[:-50])
    return archive, str(emb.relative_to(archive))


def run(*args) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_subprocess_demo_data_then_scan_print_pure_json(tmp_path):
    base = tmp_path / "demo"
    demo = subprocess.run(
        [CLI, "demo-data", base, "--pixel-size", "400", "--bands", "4", "--lon-min", "-0.1",
         "--lon-max", "0.1", "--lat-min", "-0.1", "--lat-max", "0.1", "--year", "2024",
         "--json"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert demo.returncode == 0, demo.stderr
    doc = json.loads(demo.stdout)  # the whole of stdout is one JSON document
    assert (doc["status"], doc["tiles"], doc["files"], doc["zones"]) == ("ok", 4, 4, [30, 31])

    scan = subprocess.run([CLI, "scan", base, "--bands", "4", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert scan.returncode == 0, scan.stderr
    doc = json.loads(scan.stdout)
    assert (doc["rows"], doc["reread"], doc["problems"]) == (4, 4, [])
    assert Path(doc["registry"]) == base / REGISTRY_FILENAME
    assert (base / REGISTRY_FILENAME).is_dir()  # a dataset partitioned by year and zone


def test_subprocess_build_failure_exits_1_with_json_error(truncated, tmp_path):
    base, rel = truncated
    proc = subprocess.run([CLI, "zarr-build", base, "-o", tmp_path / "stores", "--json", *BUILD],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["status"] == "error" and doc["exit_code"] == 1
    assert rel in doc["error"] and "truncated" in doc["error"]


def test_scan_twice_reuses_rows(archive):
    run("scan", archive, "--bands", "4")
    res = run("scan", archive, "--bands", "4", "--json")
    assert res.exit_code == 0
    doc = json.loads(res.stdout)
    assert (doc["rows"], doc["reread"], doc["reused"]) == (4, 0, 4)


def test_dry_run_reports_plan_and_writes_no_store(archive, tmp_path):
    out = tmp_path / "stores"
    res = run("zarr-build", archive, "-o", out, "--dry-run", "--json", *BUILD)
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert not out.exists()
    assert doc["dry_run"] is True
    stores = {s["store"]: s for s in doc["stores"]}
    assert sorted(stores) == ["utm30_2024.zarr", "utm31_2024.zarr"]
    for s in stores.values():
        assert s["epsg"] == 32600 + s["zone"] and s["tiles"] == 2
        assert s["height_px"] % 32 == 0 and s["width_px"] % 32 == 0
        assert s["height_km"] == pytest.approx(s["height_px"] * 0.4)
        assert s["width_km"] == pytest.approx(s["width_px"] * 0.4)
        assert 1 <= s["shards_nonempty"] <= s["shards_total"]
        assert s["bytes_to_write"] == s["shards_nonempty"] * 32 * 32 * (4 + 4)
        assert "shards_written" not in s


def test_problem_tile_stops_the_build_with_one_line(truncated, tmp_path):
    base, rel = truncated
    out = tmp_path / "stores"
    res = run("zarr-build", base, "-o", out, "-q", *BUILD)
    assert res.exit_code == 1
    assert not out.exists()
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert rel in lines[0] and "truncated" in lines[0]
    assert res.stdout == ""


def test_skip_bad_builds_the_rest_and_lists_the_skipped_tile(truncated, tmp_path):
    base, rel = truncated
    out = tmp_path / "stores"
    res = run("zarr-build", base, "-o", out, "--skip-bad", "--json", *BUILD)
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert [s["path"] for s in doc["skipped_tiles"]] == [rel]
    assert "truncated" in doc["skipped_tiles"][0]["problem"]
    tiles = {s["store"]: s["tiles"] for s in doc["stores"]}
    assert tiles == {"utm30_2024.zarr": 2, "utm31_2024.zarr": 1}
    homes = [t.removesuffix(".zarr") for t in tiles]  # homes, links to versions, the catalog
    assert sorted(p.name for p in out.iterdir()) == sorted([*tiles, *homes, "stac"])
    attrs = json.loads((out / "utm31_2024.zarr" / "zarr.json").read_text())["attributes"]
    assert [s["name"] for s in attrs["geotessera:tiles_skipped"]] == [BAD_TILE]


@pytest.mark.parametrize("zones", ["0-99", "31-30", "thirty"])
def test_bad_zone_selection_is_a_usage_error(archive, tmp_path, zones):
    res = run("zarr-build", archive, "-o", tmp_path / "stores", "--zones", zones, *BUILD)
    assert res.exit_code == 2
    assert "--zones" in res.stderr
    assert not (tmp_path / "stores").exists()


def test_unwritable_output_dir_exits_1_naming_the_path(archive, tmp_path):
    """A regular file in the way of the output path (chmod does not stop root)."""
    blocker = tmp_path / "some_file"
    blocker.write_text("not a directory")
    out = blocker / "stores"
    res = run("zarr-build", archive, "-o", out, "-q", *BUILD)
    assert res.exit_code == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and str(out) in lines[0], res.stderr
    assert blocker.read_text() == "not a directory"


def test_successful_build_writes_every_nonempty_shard(archive, tmp_path):
    out = tmp_path / "stores"
    res = run("zarr-build", archive, "-o", out, "--json", *BUILD)
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["status"] == "ok" and doc["dry_run"] is False and doc["skipped_tiles"] == []
    assert len(doc["stores"]) == 2
    assert sum(s["shards_nonempty"] for s in doc["stores"]) > 2  # several shards per store
    for s in doc["stores"]:
        assert s["shards_written"] == s["shards_nonempty"]
        assert s["valid_pixels"] > 0
        assert Path(s["path"]) == out / s["store"] and (out / s["store"] / "zarr.json").is_file()
        attrs = json.loads((out / s["store"] / "zarr.json").read_text())["attributes"]
        assert attrs["geotessera:build_complete"] is True
        assert attrs["geotessera:shards_written"] == s["shards_nonempty"]


def test_quiet_draws_no_progress_bars(archive, tmp_path):
    loud = run("zarr-build", archive, "-o", tmp_path / "a", *BUILD)
    assert loud.exit_code == 0
    assert "scan" in loud.stderr and "4/4" in loud.stderr  # bars do appear without -q
    quiet = run("zarr-build", archive, "-o", tmp_path / "b", "-q", *BUILD)
    assert quiet.exit_code == 0
    assert quiet.stderr == ""
    assert "utm31_2024.zarr" in quiet.stdout  # the result table still goes to stdout


def test_registry_schema_command_prints_the_docs():
    res = run("registry-schema")
    assert res.exit_code == 0 and res.stdout == schema_markdown()
    res = run("registry-schema", "--json")
    assert json.loads(res.stdout) == schema_document()


def test_build_runs_preview_and_catalog_unless_told_not_to(archive, tmp_path):
    out = tmp_path / "stores"
    bare = run("zarr-build", archive, "-o", out, "--no-rgb", "--no-stac", "--json", *BUILD)
    assert bare.exit_code == 0, bare.stderr
    doc = json.loads(bare.stdout)
    assert "preview" not in doc and "stac" not in doc and not (out / "stac").exists()
    root = json.loads((out / "utm31_2024.zarr" / "zarr.json").read_text())["attributes"]
    assert root["geotessera:rgb_complete"] is False

    rgb = run("zarr-build", archive, "-o", out, "--rgb-only", "--no-stac", "--json", "-j", "1")
    assert rgb.exit_code == 0, rgb.stderr
    doc = json.loads(rgb.stdout)
    assert "stores" not in doc and {s["zone"] for s in doc["preview"]["stores"]} == {30, 31}
    root = json.loads((out / "utm31_2024.zarr" / "zarr.json").read_text())["attributes"]
    assert root["geotessera:rgb_complete"] is True

    full = run("zarr-build", archive, "-o", out / "all", "--json", *BUILD)
    assert full.exit_code == 0, full.stderr
    doc = json.loads(full.stdout)
    assert doc["preview"]["stores"] and doc["stac"]["items"]
    assert (out / "all" / "stac" / "catalog.json").exists()
    assert run("zarr-build", archive, "-o", out, "--rgb-only", "--no-rgb").exit_code == 2


def test_blosc_codec_round_trip(archive, tmp_path):
    """The default codec, blosc-zstd:2:bitshuffle: blosc (zstd, typesize 1, one block per
    chunk) on the embeddings of every level, zstd kept on scales and rgba; the values, zarr's
    and xarray's reads, ``sample``, ``read_region`` and ``verify`` all equal those of the
    ``--codec zstd:3`` build (zstd on every array, the previous default)."""
    import numpy as np
    import xarray as xr
    import zarr

    from geotessera import read
    from geotessera.store.location import Location
    from geotessera.store.pointread import PointReader, ScalesReader
    from geotessera.store.zone import layout_of
    from geotessera.types import BloscZstd

    for name, extra in (("zstd", ["--codec", "zstd:3"]), ("blosc", [])):
        res = run("zarr-build", archive, "-o", tmp_path / name, "-q", "--no-stac", *BUILD,
                  *extra)
        assert res.exit_code == 0, res.stderr
    stores = sorted(p.name for p in (tmp_path / "blosc").glob("utm*.zarr"))
    assert stores == ["utm30_2024.zarr", "utm31_2024.zarr"]
    for store in stores:
        packed, plain = (zarr.open_group(str(tmp_path / n / store), mode="r")
                         for n in ("blosc", "zstd"))
        levels = sorted(k for k in packed.group_keys())
        assert levels[:2] == ["L0", "L1"] and levels == sorted(plain.group_keys())
        for level in levels:
            doc = json.loads((tmp_path / "blosc" / store / level / "embeddings/zarr.json")
                             .read_text())
            inner = doc["codecs"][0]["configuration"]["codecs"]
            assert inner[-1] == {"name": "blosc", "configuration": {
                "typesize": 1, "cname": "zstd", "clevel": 2, "shuffle": "bitshuffle",
                "blocksize": 4 * 16 * 16}}
            for arr in ("embeddings", "scales", "rgba"):
                np.testing.assert_array_equal(packed[level][arr][:], plain[level][arr][:])
            for arr in ("scales", "rgba"):
                assert [c.to_dict()["name"] for c in packed[level][arr].compressors] == ["zstd"]
            for arr in ("embeddings", "scales", "rgba"):
                assert [c.to_dict() for c in plain[level][arr].compressors] == [
                    {"name": "zstd", "configuration": {"level": 3, "checksum": False}}]
        assert layout_of(tmp_path / "blosc" / store).blosc == BloscZstd(2, "bitshuffle")
        assert layout_of(tmp_path / "blosc" / store).zstd_level == 3
        assert layout_of(tmp_path / "zstd" / store).codec == "zstd:3"
        ds = xr.open_zarr(tmp_path / "blosc" / store, group="L0")
        np.testing.assert_array_equal(ds.embeddings.values, plain["L0"]["embeddings"][:])
        loc = Location.parse(tmp_path / "blosc" / store)  # sample reads through these
        assert PointReader.open(loc, "L0/embeddings") and ScalesReader.open(loc, "L0/scales")
    pts = [(0.05, 0.05), (-0.05, -0.05), (0.01, -0.08), (-0.09, 0.02)]
    got = read.sample(pts, 2024, tmp_path / "blosc")
    assert np.isfinite(got).any()
    np.testing.assert_array_equal(got, read.sample(pts, 2024, tmp_path / "zstd"))
    box = (-0.08, -0.08, 0.08, 0.08)
    a, b = (read.read_region(box, 2024, tmp_path / n, crs=32631) for n in ("blosc", "zstd"))
    np.testing.assert_array_equal(a.values, b.values)
    ok = run("verify", tmp_path / "blosc" / stores[1], "--base-dir", archive, "-j", "1",
             "--json")
    assert ok.exit_code == 0, ok.stderr + ok.stdout
    assert json.loads(ok.stdout)["chunks_decoded"] > 0


@pytest.mark.parametrize(("args", "codec", "zstd_level"), [
    ([], "blosc-zstd:2:bitshuffle", 3),
    (["--zstd-level", "7"], "blosc-zstd:2:bitshuffle", 7),  # scales and rgba only
    (["--codec", "zstd:3"], "zstd:3", 3),
    (["--codec", "zstd:5", "--zstd-level", "7"], "zstd:5", 5),  # zstd:N sets every array
    (["--codec", "blosc-zstd:5:noshuffle", "--zstd-level", "7"], "blosc-zstd:5:noshuffle", 7),
    (["--codec", "none", "--zstd-level", "7"], "none", None),
])
def test_codec_and_zstd_level_options(monkeypatch, tmp_path, args, codec, zstd_level):
    """What ``--codec`` and ``--zstd-level`` select (docs/cli.md): the embeddings' codec
    defaults to blosc-zstd:2:bitshuffle; ``--zstd-level`` alone sets scales and rgba."""
    import geotessera.cli.build as build_cli

    seen = []

    def stop(*a, layout, **kw):
        seen.append(layout)
        raise SystemExit(0)

    monkeypatch.setattr(build_cli, "zarr_build", stop)
    run("zarr-build", tmp_path, "-o", tmp_path / "out", "-j", "1", *args)
    assert [(lay.codec, lay.zstd_level) for lay in seen] == [(codec, zstd_level)]
