"""The build contract, checked independently of the builder's own grid and owner helpers.

Expected values are computed here from the archive files, rasterio headers and pyproj only:
for every zone pixel, project its centre to WGS84, find the owner tile by the 0.1° rule, find
the tile pixel whose centre is nearest, and apply the no-data rule.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
import zarr
from pyproj import Transformer

from conftest import TEST_LAYOUT, build, scan
from geotessera.errors import CodecError
from geotessera.types import BloscZstd, StoreLayout

EDGE_TOLERANCE_M = 1.0


def _archive_tiles(base: Path, year: int, zone: int):
    """{(cx, cy): tile dict} of the tiles of one zone and year, read straight from disk."""
    tiles = {}
    for d in sorted((base / "global_0.1_degree_representation" / str(year)).iterdir()):
        lon, lat = map(float, re.match(r"grid_(-?[\d.]+)_(-?[\d.]+)$", d.name).groups())
        if int((lon + 180) // 6) + 1 != zone:
            continue
        with rasterio.open(base / "global_0.1_degree_tiff_all" / f"{d.name}.tiff") as src:
            mask, t, epsg = src.read(1), src.transform, src.crs.to_epsg()
        cell = (int(np.floor(lon * 10)), int(np.floor(lat * 10)))
        tiles[cell] = dict(
            lon=lon, lat=lat, epsg=epsg, t=t, mask=mask,
            emb=np.load(d / f"{d.name}.npy"), scales=np.load(d / f"{d.name}_scales.npy"),
        )
    return tiles


def _expected(store: Path, base: Path):
    """(embeddings (band, y, x), scales (y, x), ambiguous mask) computed independently."""
    root = zarr.open_group(str(store), mode="r")
    zone, year = root.attrs["geotessera:zone"], root.attrs["geotessera:year"]
    l0 = root["L0"]
    x, y = l0["x"][:], l0["y"][:]
    xx, yy = np.meshgrid(x, y)
    lon, lat = Transformer.from_crs(32600 + zone, 4326, always_xy=True).transform(xx, yy)
    tiles = _archive_tiles(base, year, zone)
    h, w = xx.shape
    best = np.full((h, w), np.inf)
    src_id = np.full((h, w), -1)
    rc = {}
    keys = sorted(tiles, key=lambda c: (c[1], c[0]))
    for i, cell in enumerate(keys):
        t = tiles[cell]
        north = yy + (10_000_000.0 if t["epsg"] // 100 == 327 else 0.0)
        c = np.round((xx - t["t"].c) / t["t"].a - 0.5).astype(int)
        r = np.round((t["t"].f - north) / -t["t"].e - 0.5).astype(int)
        th, tw = t["mask"].shape
        covers = (r >= 0) & (r < th) & (c >= 0) & (c < tw)
        near = (r >= -1) & (r <= th) & (c >= -1) & (c <= tw)  # within a pixel of the raster
        mine = (np.floor(lon * 10) == cell[0]) & (np.floor(lat * 10) == cell[1])
        rc[i] = (np.clip(r, 0, th - 1), np.clip(c, 0, tw - 1), covers, near & mine)
        src_id[mine & covers] = i
    choice = np.full((h, w), -1)
    to_zone = Transformer.from_crs(4326, 32600 + zone, always_xy=True)
    for i, cell in enumerate(keys):  # absent owners: the covering tile with the nearest centre
        cx, cy = to_zone.transform(tiles[cell]["lon"], tiles[cell]["lat"])
        d2 = (xx - cx) ** 2 + (yy - cy) ** 2
        nearer = (src_id < 0) & rc[i][2] & (d2 < best)
        best[nearer] = d2[nearer]
        choice[nearer] = i
    src_id = np.where(src_id >= 0, src_id, choice)
    for i in range(len(keys)):  # cracks no raster covers: the owner's nearest edge pixel
        src_id[(src_id < 0) & rc[i][3]] = i
    bands = next(iter(tiles.values()))["emb"].shape[2]
    emb = np.zeros((bands, h, w), np.int8)
    scales = np.full((h, w), np.nan, np.float32)
    for i, cell in enumerate(keys):
        t = tiles[cell]
        sel = src_id == i
        r, c = rc[i][0][sel], rc[i][1][sel]
        s = t["scales"][r, c].astype(np.float32)
        s[(t["mask"][r, c] == 0) | ~np.isfinite(s)] = np.nan
        scales[sel] = s
        emb[:, sel] = np.where(np.isfinite(s), t["emb"][r, c].T, 0)
    edge = EDGE_TOLERANCE_M / 111_000.0
    near_lon = np.abs(lon * 10 - np.round(lon * 10)) < edge * 10 / np.cos(np.radians(lat))
    near_lat = np.abs(lat * 10 - np.round(lat * 10)) < edge * 10
    return emb, scales, near_lon | near_lat


def _store_arrays(store: Path):
    l0 = zarr.open_group(str(store), mode="r")["L0"]
    return l0["embeddings"][:], l0["scales"][:]


@pytest.mark.parametrize("which", ["equator", "north"])
def test_every_pixel_matches_its_owner_tile(which, request):
    built = request.getfixturevalue("built" if which == "equator" else "north_built")
    archive = request.getfixturevalue("archive" if which == "equator" else "north_archive")
    stores = sorted(built.glob("utm*.zarr"))
    assert {s.name for s in stores} == {
        "utm30_2024.zarr", "utm31_2024.zarr", "utm30_2025.zarr", "utm31_2025.zarr"}
    for store in stores:
        emb, scales = _store_arrays(store)
        exp_emb, exp_scales, ambiguous = _expected(store, archive)
        ok = ~ambiguous
        assert ambiguous.mean() < 0.01
        np.testing.assert_array_equal(np.isnan(scales)[ok], np.isnan(exp_scales)[ok])
        np.testing.assert_array_equal(scales[ok], exp_scales[ok])
        np.testing.assert_array_equal(emb[:, ok], exp_emb[:, ok])
        assert np.isfinite(scales).mean() > 0.3, store  # the test is not vacuous


def test_water_is_nan_and_embeddings_zero_there(built):
    for store in built.glob("utm*.zarr"):
        emb, scales = _store_arrays(store)
        nan = np.isnan(scales)
        assert nan.any() and (~nan).any()
        assert not np.any(emb[:, nan])
        assert not np.isinf(scales).any()


def _arrays_of(out: Path):
    return {s.name: _store_arrays(s) for s in sorted(out.glob("utm*.zarr"))}


def test_same_result_for_workers_and_tile_order(north_archive, north_built, tmp_path):
    records = list(scan(north_archive).records)
    build(north_archive, tmp_path / "w1", workers=1, records=records[::-1])
    a, b = _arrays_of(north_built), _arrays_of(tmp_path / "w1")
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name][0], b[name][0])
        np.testing.assert_array_equal(a[name][1], b[name][1])


def test_southern_and_zone_edge_tiles_land_where_pyproj_says(built, archive):
    """A southern tile and a tile on the zone's west edge sit where pyproj puts them: the
    store pixel at the tile's pyproj position (rounded) holds the tile's own centre pixel."""
    store = built / "utm31_2024.zarr"
    root = zarr.open_group(str(store), mode="r")
    a, _, left, _, e, top = root["L0"].attrs["spatial:transform"]
    scales = root["L0"]["scales"][:]
    checked = 0
    for name in ("grid_0.05_-0.15", "grid_0.05_0.15"):
        d = archive / "global_0.1_degree_representation/2024" / name
        with rasterio.open(archive / "global_0.1_degree_tiff_all" / f"{name}.tiff") as src:
            epsg, t, land = src.crs.to_epsg(), src.transform, src.read(1)
        assert epsg == (32731 if "-" in name.split("_")[2] else 32631)
        lat = float(name.split("_")[2])
        x0, y0 = Transformer.from_crs(4326, epsg, always_xy=True).transform(0.0, lat + 0.05)
        canon = y0 - (10_000_000 if epsg // 100 == 327 else 0)
        # where tile pixel (0, 0) lies in zone pixels: the cell corner's zone position minus
        # its tile position
        dcol = (x0 - left) / a - (x0 - t.c) / t.a
        drow = (top - canon) / -e - (t.f - y0) / -t.e
        tile_scales = np.load(d / f"{name}_scales.npy")
        h, w = tile_scales.shape
        r, c = h // 2, w // 2
        want = tile_scales[r, c] if land[r, c] and np.isfinite(tile_scales[r, c]) else np.nan
        np.testing.assert_array_equal(scales[round(drow) + r, round(dcol) + c], want)
        checked += bool(np.isfinite(want))
    assert checked >= 1  # at least one of the two centres is land with data
    assert root.attrs["proj:code"] == "EPSG:32631"


def test_dry_run_writes_nothing(archive, tmp_path):
    report = build(archive, tmp_path / "dry", dry_run=True)
    assert not (tmp_path / "dry").exists()
    assert {p.store_name for p in report.plans} >= {"utm30_2024.zarr", "utm31_2024.zarr"}
    for plan in report.plans:
        s = plan.summary()
        assert s["shards_nonempty"] <= s["shards_total"]
        assert s["bytes_to_write"] == s["shards_nonempty"] * TEST_LAYOUT.shard_px**2 * (8 + 4)


@pytest.mark.parametrize("zones", [frozenset({31})])
def test_zone_selection_builds_only_those_zones(archive, tmp_path, zones):
    build(archive, tmp_path / "z", zones=zones, years=[2024])
    assert sorted(p.name for p in (tmp_path / "z").iterdir()) == ["utm31_2024",
                                                                   "utm31_2024.zarr"]


def test_no_cracks_between_neighbouring_tiles(tmp_path):
    """With every input pixel valid, every zone pixel whose centre lies in a present tile's
    cell has data: rounding must not leave a one-pixel crack between neighbours."""
    from geotessera.archive.demo import DemoSpec, write_demo_archive

    spec = DemoSpec(lon_min=0.0, lon_max=0.3, lat_min=-0.2, lat_max=0.1, pixel_size=100.0,
                    bands=4, years=(2024,))
    base = tmp_path / "a"
    write_demo_archive(base, spec)
    for f in base.rglob("*_scales.npy"):
        np.save(f, np.ones_like(np.load(f)))
    for f in base.rglob("*.tiff"):
        with rasterio.open(f, "r+") as dst:
            dst.write(np.ones((1, dst.height, dst.width), np.uint8))
    build(base, tmp_path / "s", records=scan(base, bands=4).records)
    root = zarr.open_group(str(tmp_path / "s/utm31_2024.zarr"), mode="r")
    xx, yy = np.meshgrid(root["L0/x"][:], root["L0/y"][:])
    lon, lat = Transformer.from_crs(32631, 4326, always_xy=True).transform(xx, yy)
    inside = (lon > 1e-6) & (lon < 0.3 - 1e-6) & (lat > -0.2 + 1e-6) & (lat < 0.1 - 1e-6)
    scales = root["L0/scales"][:]
    assert inside.sum() > 10_000
    assert np.isfinite(scales[inside]).all(), np.argwhere(inside & np.isnan(scales))[:5]


def test_codec_none_stores_the_same_arrays_uncompressed(archive, built, tmp_path):
    """``--codec none`` (zstd_level and blosc None): no compressor in the metadata of any
    data array, the same values as the default (blosc) build, and the point and scales
    readers read it."""
    from geotessera import read
    from geotessera.store.zone import layout_of

    build(archive, tmp_path, layout=TEST_LAYOUT.with_codec("none"))
    for name in ("utm31_2024.zarr", "utm30_2025.zarr"):
        plain, packed = (zarr.open_group(str(d / name), mode="r") for d in (tmp_path, built))
        for arr in ("embeddings", "scales"):
            assert plain["L0"][arr].compressors == ()
            np.testing.assert_array_equal(plain["L0"][arr][:], packed["L0"][arr][:])
        assert [c.to_dict()["name"] for c in packed["L0"]["embeddings"].compressors] == ["blosc"]
        assert layout_of(tmp_path / name).zstd_level is None
        assert layout_of(tmp_path / name).blosc is None
    pts = [(0.15, 0.05), (0.05, -0.15), (-0.15, 0.05)]
    np.testing.assert_array_equal(read.sample(pts, 2024, tmp_path), read.sample(pts, 2024, built))


@pytest.mark.parametrize(("text", "level"), [
    ("none", None), ("zstd:0", 0), ("ZSTD:19", 19),
    ("blosc-zstd:3", BloscZstd(3, "bitshuffle")), ("blosc-zstd:1:shuffle", BloscZstd(1, "shuffle")),
    (" Blosc-Zstd:9:NoShuffle", BloscZstd(9, "noshuffle")),
])
def test_parse_codec(text, level):
    from geotessera.types import parse_codec

    assert parse_codec(text) == level


@pytest.mark.parametrize("text", [
    "zstd", "zstd:23", "blosc", "none:1", "zstd:-1", "zstd:3:", "zstd:3:bitshuffle", "zstd:³",
    "blosc-zstd", "blosc-zstd:0", "blosc-zstd:10", "blosc-zstd:3:", "blosc-zstd:3:bit",
    "blosc-zstd:3:bitshuffle:1", "blosc:3", "blosc-lz4:3",
])
def test_parse_codec_refuses_what_it_cannot_write(text):
    from geotessera.types import parse_codec

    with pytest.raises(CodecError, match=r"expected none, zstd:N \(N in 0..22\) or "
                                          r"blosc-zstd:N\[:SHUFFLE\]") as e:
        parse_codec(text)
    assert repr(text) in str(e.value) and isinstance(e.value, ValueError)


def test_with_codec_sets_the_embeddings_or_every_array():
    """The default compresses the embeddings with blosc-zstd:2:bitshuffle and scales and
    rgba with zstd at zstd_level; blosc compresses the embeddings only; none and zstd set
    every data array and drop blosc."""
    assert StoreLayout().blosc == BloscZstd(2, "bitshuffle") and StoreLayout().zstd_level == 3
    assert StoreLayout().codec == "blosc-zstd:2:bitshuffle"
    assert BloscZstd() == BloscZstd(2, "bitshuffle")
    base = StoreLayout(zstd_level=5)
    assert base.codec == "blosc-zstd:2:bitshuffle"  # zstd_level alone leaves the embeddings
    assert base.with_codec("blosc-zstd:4:noshuffle") == replace(base,
                                                               blosc=BloscZstd(4, "noshuffle"))
    assert base.with_codec("blosc-zstd:3").codec == "blosc-zstd:3:bitshuffle"
    assert base.with_codec("none") == replace(base, zstd_level=None, blosc=None)
    assert base.with_codec("none").codec == "none"
    assert base.with_codec("zstd:7") == replace(base, zstd_level=7, blosc=None)
    assert base.with_codec("zstd:7").codec == "zstd:7"
    assert base.with_codec("zstd:7").with_codec("blosc-zstd:2") == replace(base, zstd_level=7)
    with pytest.raises(ValueError, match="clevel=0"):
        BloscZstd(0)


def test_the_plan_fingerprint_names_the_blosc_codec(archive):
    """A journal of one codec is never resumed by a build with another: the fingerprint
    names blosc (level and shuffle), the default's included; zstd layouts keep the
    fingerprints they always had (blosc is left out of them when not set)."""
    from geotessera.build.plan import plan_id, plan_zones

    plan = plan_zones(scan(archive).records, TEST_LAYOUT)[0]
    ids = {plan_id(plan, TEST_LAYOUT.with_codec(c)) for c in (
        "zstd:3", "blosc-zstd:3:bitshuffle", "blosc-zstd:2:bitshuffle", "blosc-zstd:3:noshuffle",
        "blosc-zstd:4")}
    assert len(ids) == 5
    assert plan_id(plan, TEST_LAYOUT) == plan_id(plan, TEST_LAYOUT.with_codec(
        "blosc-zstd:2:bitshuffle"))
    assert plan_id(plan, TEST_LAYOUT) != plan_id(plan, TEST_LAYOUT.with_codec("zstd:3"))
