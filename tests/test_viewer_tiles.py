"""Served Web Mercator tiles against the stores, computed independently in the test: tile
pixel centres by the spherical Mercator formula, store pixels with pyproj and the level's own
``spatial:transform``, the level from the zoom's ground resolution, the zone rule by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import zarr

from viewer_support import (
    R,
    decode_png,
    request,
    running,
    served_stores,
    tile_pixel_lonlat,
    to_utm,
)

YEAR = 2024


@pytest.fixture(scope="module")
def stores(built, tmp_path_factory):
    return served_stores(built, tmp_path_factory)


@pytest.fixture(scope="module")
def server(stores):
    with running(stores) as srv:
        yield srv


@pytest.fixture(scope="module")
def roots(stores):
    return {z: zarr.open_group(str(stores / f"utm{z}_{YEAR}.zarr"), mode="r") for z in (30, 31)}


def expected_level(root, z: int, lat: float) -> str:
    """The level whose pixel size is nearest (in log2) to the tile's ground resolution."""
    res = 2 * math.pi * R / (256 * 2**z) * math.cos(math.radians(lat))
    layout = root.attrs["multiscales"]["layout"]
    sizes = [e["spatial:transform"][0] for e in layout]
    best = min(range(len(sizes)), key=lambda i: (abs(math.log2(sizes[i] / res)), sizes[i]))
    return layout[best]["asset"]


def expected_tile(roots, z: int, x: int, y: int) -> dict:
    """The tile by the zone rule: the store of the pixel's own zone where it has data, else
    the other zone's store where it has. Also: ``seam`` (pixels within 3 level pixels of a
    zone edge, where the crack rule may take the owner tile's edge pixel instead), ``exact``
    (pixel centres not on a store pixel boundary), the own store's colour and validity."""
    ii, jj = np.mgrid[0:256, 0:256]
    lon, lat = tile_pixel_lonlat(z, x, y, ii, jj)
    north = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * y / 2**z))))
    south = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * (y + 1) / 2**z))))
    own = np.floor((lon + 180) / 6).astype(int) + 1
    colours, levels = {}, {}
    seam, exact = np.zeros(lon.shape, bool), np.ones(lon.shape, bool)
    for zone, root in roots.items():
        level = expected_level(root, z, (north + south) / 2)
        levels[zone] = level
        a, _, c, _, e, f = root[level].attrs["spatial:transform"]
        ex, ey = to_utm(32600 + zone).transform(lon, lat)
        fr, fc = (ey - f) / e, (ex - c) / a
        rgba = root[f"{level}/rgba"][:]
        h, w = rgba.shape[1:]
        inside = (fr >= 0) & (fr < h) & (fc >= 0) & (fc < w)
        r = np.clip(np.floor(fr).astype(int), 0, h - 1)
        q = np.clip(np.floor(fc).astype(int), 0, w - 1)
        colours[zone] = np.where(inside, rgba[:, r, q], 0).astype(np.uint8)
        west = -180 + 6 * (zone - 1)
        seam |= np.abs(lon - west) * 111_320 * np.cos(np.radians(lat)) < 3 * a
        exact &= (np.abs(fr - np.round(fr)) > 1e-6) & (np.abs(fc - np.round(fc)) > 1e-6)
    out = np.zeros((4, 256, 256), np.uint8)
    for zone in roots:  # first any store with data, then the pixel's own zone on top
        out = np.where((out[3] == 0) & (colours[zone][3] > 0), colours[zone], out)
    own_colour = np.zeros_like(out)
    for zone in roots:
        mine = own == zone
        out = np.where(mine & (colours[zone][3] > 0), colours[zone], out)
        own_colour = np.where(mine, colours[zone], own_colour)
    return {"rgba": out, "seam": seam, "exact": exact, "levels": levels, "lon": lon,
            "lat": lat, "own": own_colour, "others": colours}


def tiles_around_origin(z: int):
    m = 2 ** (z - 1)
    return [(z, x, y) for x in (m - 1, m) for y in (m - 1, m)]


@pytest.mark.parametrize("z", [8, 9, 10, 11, 12])
def test_tile_pixels_equal_store_rgba_at_the_same_ground_point(server, roots, z):
    quadrants = 0
    for tz, tx, ty in tiles_around_origin(z):
        status, headers, body = request(server, f"/tiles/{YEAR}/{tz}/{tx}/{ty}.png")
        assert status == 200 and headers["content-type"] == "image/png"
        got = decode_png(body)
        want = expected_tile(roots, tz, tx, ty)
        zones = dict(p.split(":") for p in headers["x-geotessera-zones"].split(","))
        assert {int(k): v for k, v in zones.items()} == {
            int(k): want["levels"][int(k)] for k in zones}
        keep = ~want["seam"] & want["exact"]
        assert np.array_equal(got[:, keep], want["rgba"][:, keep])
        # at the seam: wherever the pixel's own zone has data, its own store wins
        mine = want["seam"] & want["exact"] & (want["own"][3] > 0)
        assert np.array_equal(got[:, mine], want["own"][:, mine])
        lon, lat, has = want["lon"], want["lat"], want["rgba"][3] > 0
        for zone in (30, 31):  # the tile really shows each zone and hemisphere
            for hemi in (lat > 0, lat < 0):
                sel = keep & has & hemi & (np.floor((lon + 180) / 6) + 1 == zone)
                quadrants += int(sel.sum() > 50)
    assert quadrants >= 4


def test_own_zone_wins_where_both_stores_have_data(server, roots):
    """Zone 30's rasters reach a little past 0°E; there the pixel takes zone 31's store."""
    contested = 0
    for y in range(2**11 - 3, 2**11 + 3):  # z = 12, the tiles just east of 0°E
        _, _, body = request(server, f"/tiles/{YEAR}/12/{2**11}/{y}.png")
        got, want = decode_png(body), expected_tile(roots, 12, 2**11, y)
        both = want["exact"] & (want["others"][30][3] > 0) & (want["others"][31][3] > 0)
        assert np.array_equal(got[:, both], want["others"][31][:, both])
        contested += int((both & np.any(want["others"][30] != want["others"][31], 0)).sum())
    assert contested > 20


def test_zooming_changes_the_level_header(server, roots):
    seen = []
    for z in range(6, 12):
        n = 2**z
        x, y = int((0.1 + 180) / 360 * n), int((1 - math.asinh(math.tan(math.radians(0.1)))
                                                  / math.pi) / 2 * n)
        status, headers, _ = request(server, f"/tiles/{YEAR}/{z}/{x}/{y}.png")
        assert status == 200
        north = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * y / n))))
        south = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * (y + 1) / n))))
        assert headers["x-geotessera-level"] == expected_level(roots[31], z, (north + south) / 2)
        seen.append(headers["x-geotessera-level"])
    assert seen == sorted(seen, key=lambda s: -int(s[1:]))  # finer levels as zoom grows
    assert len(set(seen)) >= 4


def test_a_tile_without_data_is_fully_transparent(server, roots):
    status, headers, body = request(server, f"/tiles/{YEAR}/10/654/347.png")  # 50°E 50°N
    assert status == 200 and headers["x-geotessera-level"] == "none"
    assert not decode_png(body)[3].any()
    # inside a store's grid but over no data (the grid's padding, or water)
    z = 13
    for x in range(2**12 - 8, 2**12 + 8):
        for y in range(2**12 + 4, 2**12 + 12):
            if expected_tile(roots, z, x, y)["rgba"][3].any():
                continue
            status, headers, body = request(server, f"/tiles/{YEAR}/{z}/{x}/{y}.png")
            if headers["x-geotessera-zones"] != "none":  # a store was read: its pixels empty
                assert not decode_png(body)[3].any()
                return
    pytest.fail("found no all-empty tile inside a store grid")


def test_false_colour_uses_the_years_recorded_stretch(server, roots):
    stretch = roots[31].attrs["geotessera:stretch"]
    bands = stretch["bands"]
    z, x, y = 11, 2**10, 2**10 - 1  # zone 31, north, at L0
    status, headers, body = request(server, f"/tiles/{YEAR}/{z}/{x}/{y}.png?bands="
                                    + ",".join(map(str, bands)))
    assert status == 200 and headers["x-geotessera-level"] == "L0"
    got = decode_png(body)
    want = expected_tile(roots, z, x, y)
    edge, lon, lat = want["seam"] | ~want["exact"], want["lon"], want["lat"]
    l0 = roots[31]["L0"]
    # the default codec: false colour decodes blosc embeddings (through zarr)
    assert l0["embeddings"].compressors[0].to_dict()["name"] == "blosc"
    a, _, c, _, e, f = l0.attrs["spatial:transform"]
    ex, ey = to_utm(32631).transform(lon, lat)
    r, q = np.floor((ey - f) / e).astype(int), np.floor((ex - c) / a).astype(int)
    ok = (r >= 0) & (r < l0["scales"].shape[0]) & (q >= 0) & (q < l0["scales"].shape[1]) & ~edge
    ok &= np.floor((lon + 180) / 6) + 1 == 31
    sc = l0["scales"][:][r[ok], q[ok]]
    emb = l0["embeddings"][bands][:, r[ok], q[ok]].astype(np.float32) * sc.astype(np.float32)
    lo, hi = np.array(stretch["min"])[:, None], np.array(stretch["max"])[:, None]
    want = np.where(np.isfinite(sc), np.rint(np.clip((emb - lo) / (hi - lo), 0, 1) * 255), 0)
    assert np.isfinite(sc).sum() > 1000
    assert np.array_equal(got[:3, ok], want.astype(np.uint8))
    assert np.array_equal(got[3, ok], np.where(np.isfinite(sc), 255, 0))


def test_false_colour_of_other_bands_keeps_the_validity(server):
    path = f"/tiles/{YEAR}/10/511/511.png"
    _, _, preview = request(server, path)
    status, _, other = request(server, path + "?bands=3,4,5")
    assert status == 200
    a, b = decode_png(preview), decode_png(other)
    assert np.array_equal(a[3], b[3]) and a[3].any()
    assert not np.array_equal(a[:3], b[:3])


@pytest.mark.parametrize("path,status", [
    (f"/tiles/{YEAR}/3/9/0.png", 400),          # x beyond 2^z
    (f"/tiles/{YEAR}/10/511/511.png?bands=0,1", 400),
    (f"/tiles/{YEAR}/10/511/511.png?bands=0,1,99", 400),
    ("/tiles/1999/10/511/511.png", 404),
    (f"/tiles/{YEAR}/10/511.png", 404),
])
def test_bad_tile_requests(server, path, status):
    got, headers, body = request(server, path)
    assert got == status and headers["content-type"] == "application/json"
