"""Property tests of the zone grid and shard index arithmetic."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from geotessera.tiles import tile_grid, utm_zone
from geotessera.types import TileKey
from geotessera.zonegrid import placement, shard_index, zone_grid

PIXEL_SIZES = st.sampled_from([10.0, 60.0, 100.0, 160.0])


@st.composite
def tile_sets(draw):
    """1-12 distinct tiles of one UTM zone, anywhere from 70°S to 70°N."""
    zone = draw(st.integers(1, 60))
    west = (zone - 1) * 60 - 1800  # the zone's west edge in tenths of a degree
    cells_x = draw(st.lists(st.integers(0, 59), min_size=1, max_size=12))
    lat_cell0 = draw(st.integers(-700, 690))
    cells_y = draw(st.lists(st.integers(0, 8), min_size=len(cells_x), max_size=len(cells_x)))
    keys = {TileKey(lat_i=(lat_cell0 + dy) * 10 + 5, lon_i=(west + dx) * 10 + 5)
            for dx, dy in zip(cells_x, cells_y, strict=True)}
    return zone, sorted(keys)


@settings(max_examples=60, deadline=None)
@given(tile_sets(), PIXEL_SIZES, st.sampled_from([64, 128, 256]))
def test_every_tile_pixel_lands_in_exactly_one_shard_slot(tiles, pixel_size, shard_px):
    zone, keys = tiles
    grids = {k: tile_grid(k, pixel_size) for k in keys}
    assert all(utm_zone(k.lon) == zone for k in keys)
    grid = zone_grid(zone, grids.values(), shard_px)
    coverage = {k: np.zeros((g.height, g.width), np.int32) for k, g in grids.items()}
    slots: set[tuple[int, int]] = set()
    for entry in shard_index(grid, grids):
        shard = grid.shard_window(entry.row, entry.col)
        for piece in entry.pieces:
            if piece.core is not None:
                coverage[piece.key][piece.core[0].slices] += 1
            # both windows name the same zone pixels; the halo reaches one pixel further
            win = placement(grid, grids[piece.key])
            assert -1 <= piece.tile_window.row0 and piece.tile_window.row1 <= win.height + 1
            assert -1 <= piece.tile_window.col0 and piece.tile_window.col1 <= win.width + 1
            assert piece.tile_window.shift(win.row0, win.col0) == \
                piece.shard_window.shift(shard.row0, shard.col0)
            assert 0 <= piece.shard_window.row0 < piece.shard_window.row1 <= shard_px
            assert 0 <= piece.shard_window.col0 < piece.shard_window.col1 <= shard_px
        assert (entry.row, entry.col) not in slots  # each shard listed once
        slots.add((entry.row, entry.col))
        assert [p.key for p in entry.pieces] == sorted(p.key for p in entry.pieces)
    for k, cov in coverage.items():
        assert (cov == 1).all(), f"{k.name}: pixels covered {np.unique(cov)} times"


@settings(max_examples=60, deadline=None)
@given(tile_sets(), PIXEL_SIZES, st.sampled_from([64, 1024]))
def test_grid_is_snapped_padded_and_holds_every_tile(tiles, pixel_size, shard_px):
    zone, keys = tiles
    grids = [tile_grid(k, pixel_size) for k in keys]
    grid = zone_grid(zone, grids, shard_px)
    assert grid.height % shard_px == 0 and grid.width % shard_px == 0
    assert math.isclose(grid.left / pixel_size, round(grid.left / pixel_size), abs_tol=1e-9)
    assert math.isclose(grid.top / pixel_size, round(grid.top / pixel_size), abs_tol=1e-9)
    assert grid.epsg == 32600 + zone
    for g in grids:
        win = placement(grid, g)
        assert 0 <= win.row0 and win.row1 <= grid.height
        assert 0 <= win.col0 and win.col1 <= grid.width
        # nearest-pixel placement: at most half a pixel from the tile's true position
        assert abs(grid.left + win.col0 * pixel_size - g.left) <= pixel_size / 2 + 1e-6
        assert abs(grid.top - win.row0 * pixel_size - g.canonical_top) <= pixel_size / 2 + 1e-6


@settings(max_examples=40, deadline=None)
@given(tile_sets(), PIXEL_SIZES)
def test_shard_windows_never_overlap_and_tile_the_grid(tiles, pixel_size):
    zone, keys = tiles
    grid = zone_grid(zone, [tile_grid(k, pixel_size) for k in keys], 64)
    seen = np.zeros((grid.height, grid.width), np.int8)
    rows, cols = grid.shards_shape
    for sr in range(rows):
        for sc in range(cols):
            seen[grid.shard_window(sr, sc).slices] += 1
    assert (seen == 1).all()


def test_southern_tiles_share_one_continuous_northing_axis():
    north, south = TileKey(lat_i=5, lon_i=5), TileKey(lat_i=-5, lon_i=5)
    gn, gs = tile_grid(north, 100.0), tile_grid(south, 100.0)
    assert (gn.epsg, gs.epsg) == (32631, 32731)
    grid = zone_grid(31, [gn, gs], 64)
    wn, ws = placement(grid, gn), placement(grid, gs)
    # the southern tile sits directly below the northern one, touching or overlapping it
    assert ws.row0 - wn.row1 in (-1, 0, 1)
    assert grid.top > 0 > grid.top - grid.height * grid.pixel_size


def test_mixed_zones_and_pixel_sizes_are_refused():
    a, b = TileKey(lat_i=5, lon_i=5), TileKey(lat_i=5, lon_i=-5)
    for bad in ([tile_grid(a, 100.0), tile_grid(b, 100.0)],
                [tile_grid(a, 100.0), tile_grid(TileKey(lat_i=15, lon_i=5), 50.0)]):
        try:
            zone_grid(31, bad, 64)
        except ValueError as e:
            assert "zone 31" in str(e)
        else:
            raise AssertionError("accepted an inconsistent tile set")
