"""Pure parts of the viewer, with properties: tile arithmetic, byte ranges, the LRU cache,
path cleaning and the PNG encoder (decoded by GDAL)."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geotessera.tiles import utm_zone
from geotessera.viewer import grid
from geotessera.viewer.cache import LRUBytes, TileService
from geotessera.viewer.files import clean_parts
from geotessera.viewer.png import encode_rgba
from geotessera.viewer.ranges import RangeNotSatisfiable, parse_range
from viewer_support import decode_png, tile_pixel_lonlat

tiles = st.integers(0, 18).flatmap(
    lambda z: st.tuples(st.just(z), st.integers(0, 2**z - 1), st.integers(0, 2**z - 1)))


@given(tiles)
@settings(max_examples=60, deadline=None)
def test_pixel_centres_are_the_mercator_formula_inside_the_tile(t):
    z, x, y = t
    lon, lat = grid.pixel_centres(z, x, y)
    w, s, e, n = grid.lonlat_bounds(z, x, y)
    assert np.all(np.diff(lon) > 0) and np.all(np.diff(lat) < 0)
    assert w < lon[0] and lon[-1] < e and s < lat[-1] and lat[0] < n
    want_lon, want_lat = tile_pixel_lonlat(z, x, y, np.arange(256), np.arange(256))
    np.testing.assert_allclose(lon, want_lon, atol=1e-9)
    np.testing.assert_allclose(lat, want_lat, atol=1e-9)


@given(st.integers(0, 23), st.floats(-85, 85))
def test_ground_resolution_halves_per_zoom(z, lat):
    assert math.isclose(grid.ground_resolution(z, lat), 2 * grid.ground_resolution(z + 1, lat))
    assert grid.ground_resolution(0, 0) == pytest.approx(156_543.03, rel=1e-6)


@given(st.lists(st.floats(1, 1e5), min_size=1, max_size=12, unique=True), st.floats(0.5, 2e5))
def test_nearest_level_minimises_the_log_ratio(sizes, res):
    i = grid.nearest_level(sizes, res)
    err = [abs(math.log2(p / res)) for p in sizes]
    assert err[i] <= min(err) + 1e-12


def test_nearest_level_breaks_ties_to_the_finer_level():
    assert grid.nearest_level([10.0, 40.0], 20.0) == 0
    assert grid.nearest_level([160.0, 320.0, 640.0], 300.0) == 1


@given(st.floats(-180, 180))
def test_utm_zones_is_tiles_utm_zone(lon):
    assert grid.utm_zones(np.array([lon]))[0] == utm_zone(lon)


@given(st.floats(1, 1e5), st.floats(-80, 80))
def test_zoom_for_resolution_is_the_nearest_in_log(metres, lat):
    z = grid.zoom_for_resolution(metres, lat)
    best = min(range(25), key=lambda k: abs(math.log2(grid.ground_resolution(k, lat) / metres)))
    assert abs(math.log2(grid.ground_resolution(z, lat) / metres)) <= abs(
        math.log2(grid.ground_resolution(best, lat) / metres)) + 1e-9


@pytest.mark.parametrize("z,x,y", [(-1, 0, 0), (3, 8, 0), (3, 0, -1), (25, 0, 0)])
def test_tiles_outside_the_matrix_set_are_refused(z, x, y):
    with pytest.raises(ValueError, match="no tile"):
        grid.check_tile(z, x, y)


# --- byte ranges ---------------------------------------------------------------------------------


def _reference(header_kind: str, a: int, b: int, size: int):
    """What RFC 9110 says, written out case by case: (start, stop) or 'whole' or 416."""
    if header_kind == "closed":
        if b < a:
            return "whole"
        return 416 if a >= size else (a, min(b + 1, size))
    if header_kind == "open":
        return 416 if a >= size else (a, size)
    if b == 0 or size == 0:
        return 416
    return (max(size - b, 0), size)


@given(st.sampled_from(["closed", "open", "suffix"]), st.integers(0, 300), st.integers(0, 300),
       st.integers(0, 256))
def test_parse_range_follows_the_rfc(kind, a, b, size):
    header = {"closed": f"bytes={a}-{b}", "open": f"bytes={a}-", "suffix": f"bytes=-{b}"}[kind]
    want = _reference(kind, a, b, size)
    if want == 416:
        with pytest.raises(RangeNotSatisfiable):
            parse_range(header, size)
        return
    got = parse_range(header, size)
    if want == "whole":
        assert got is None
        return
    assert (got.start, got.stop) == want and 0 <= got.start < got.stop <= size
    data = bytes(range(256))[:size]
    assert data[got.start:got.stop] == (data[-b:] if kind == "suffix" and b < size else
                                        data[want[0]:want[1]])
    assert got.content_range == f"bytes {got.start}-{got.stop - 1}/{size}"


@pytest.mark.parametrize("header", [None, "", "bytes=", "bytes=-", "items=0-1", "bytes=a-b",
                                    "bytes=0-1,4-5", "bytes=5-2"])
def test_malformed_or_multiple_ranges_mean_the_whole_file(header):
    assert parse_range(header, 100) is None


# --- cache ---------------------------------------------------------------------------------------


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 50)), max_size=80),
       st.integers(0, 200))
def test_lru_never_exceeds_its_budget_and_keeps_the_newest(ops, budget):
    lru = LRUBytes(budget, len)
    for key, size in ops:
        lru.put(key, b"x" * size)
        assert lru.nbytes <= budget
        assert lru.nbytes == sum(len(lru.get(k) or b"") for k in range(21))
        if size <= budget:
            assert lru.get(key) == b"x" * size


def test_lru_drops_the_least_recently_used():
    lru = LRUBytes(3, len)
    for k in "abc":
        lru.put(k, b"1")
    lru.get("a")
    lru.put("d", b"1")
    assert lru.get("b") is None and lru.get("a") == b"1" and lru.get("d") == b"1"


def test_tile_service_renders_each_key_once_under_concurrency():
    calls, gate = [], threading.Event()

    def render(key):
        calls.append(key)
        gate.wait(5)
        return f"tile {key}".encode()

    service = TileService(render, len, workers=2, max_bytes=1000)
    try:
        out = []
        threads = [threading.Thread(target=lambda: out.append(service.get("k"))) for _ in range(8)]
        for t in threads:
            t.start()
        gate.set()
        for t in threads:
            t.join(10)
        assert out == [b"tile k"] * 8 and calls == ["k"]
        assert service.get("k") == b"tile k" and calls == ["k"]
        assert service.stats().hits >= 1
    finally:
        service.close()


def test_tile_service_reraises_the_render_error():
    def render(key):
        raise ValueError(f"bad {key}")

    service = TileService(render, len)
    try:
        with pytest.raises(ValueError, match="bad k"):
            service.get("k")
        with pytest.raises(ValueError):  # not cached: tried again
            service.get("k")
    finally:
        service.close()


# --- paths and PNG -------------------------------------------------------------------------------


@pytest.mark.parametrize("rel,ok", [
    ("utm30_2024.zarr/zarr.json", True), ("a/b/c", True), ("", False), ("a//b", False),
    ("../x", False), ("a/../b", False), ("./a", False), (".hidden/x", False), ("a/.b", False),
    ("a\\..\\b", False), ("a\x00b", False), ("/etc/passwd", False)])
def test_clean_parts(rel, ok):
    assert (clean_parts(rel) is not None) is ok


@given(st.integers(1, 40), st.integers(1, 40), st.integers(0, 2**32 - 1))
@settings(max_examples=30, deadline=None)
def test_png_round_trips_through_gdal(h, w, seed):
    rgba = np.random.default_rng(seed).integers(0, 256, (4, h, w), dtype=np.uint8)
    assert np.array_equal(decode_png(encode_rgba(rgba)), rgba)


def test_png_refuses_other_arrays():
    with pytest.raises(ValueError, match="uint8"):
        encode_rgba(np.zeros((3, 4, 4), np.uint8))
