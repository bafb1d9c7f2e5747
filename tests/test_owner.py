"""The overlap rule against a brute-force evaluation that projects every pixel with pyproj."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Transformer

from geotessera.build import owner
from geotessera.build.owner import NO_SOURCE, cell_codes, choose_sources, pixel_lonlat
from geotessera.tiles import tile_grid
from geotessera.zonegrid import shard_index, zone_grid

from test_zonegrid import tile_sets


def _exact_lonlat(grid, win):
    rows = np.arange(win.row0, win.row1)
    cols = np.arange(win.col0, win.col1)
    xx, yy = np.meshgrid(grid.left + (cols + 0.5) * grid.pixel_size,
                         grid.top - (rows + 0.5) * grid.pixel_size)
    lon, lat = Transformer.from_crs(grid.epsg, 4326, always_xy=True).transform(xx, yy)
    return np.asarray(lon), np.asarray(lat), xx, yy


@settings(max_examples=25, deadline=None)
@given(tile_sets(), st.sampled_from([10.0, 160.0]))
def test_interpolated_pixel_centres_are_within_a_centimetre(tiles, pixel_size):
    zone, keys = tiles
    grid = zone_grid(zone, [tile_grid(k, pixel_size) for k in keys], 256)
    win = grid.shard_window(0, 0)
    lon, lat = pixel_lonlat(grid, win)
    elon, elat, _, _ = _exact_lonlat(grid, win)
    metres = 111_320.0
    dlon = (lon - elon + 180.0) % 360.0 - 180.0  # the same meridian, whatever the wrap
    assert np.abs(lat - elat).max() * metres < 0.01
    assert (np.abs(dlon) * np.cos(np.radians(elat))).max() * metres < 0.01


def _drawn_shards(tiles, pixel_size, data, n):
    """(grid, shard window, pieces) of the first ``n`` shards of a zone of a drawn subset of
    ``tiles`` (absent owners exercised too)."""
    zone, keys = tiles
    present = data.draw(st.lists(st.sampled_from(keys), min_size=1, unique=True))
    grids = {k: tile_grid(k, pixel_size) for k in present}
    grid = zone_grid(zone, grids.values(), 64)
    for entry in shard_index(grid, grids)[:n]:
        pieces = [(p.key, p.shard_window, p.core and p.core[1]) for p in entry.pieces]
        yield grid, grid.shard_window(entry.row, entry.col), pieces


@settings(max_examples=15, deadline=None)
@given(tile_sets(), st.sampled_from([60.0, 160.0]), st.integers(1, 40), st.data())
def test_strips_give_the_whole_shards_result(tiles, pixel_size, rows, data):
    for grid, shard, pieces in _drawn_shards(tiles, pixel_size, data, 4):
        whole = choose_sources(grid, shard, pieces)
        old, owner.CODE_ROWS = owner.CODE_ROWS, rows
        try:
            cells, strips = owner.window_cells(grid, shard), choose_sources(grid, shard, pieces)
        finally:
            owner.CODE_ROWS = old
        np.testing.assert_array_equal(cells, cell_codes(*pixel_lonlat(grid, shard)))
        np.testing.assert_array_equal(strips, whole)


def _brute_force(grid, shard, pieces):
    """Owner by the 0.1° cell of the exact pixel centre where its raster covers the pixel,
    else the nearest covering centre, else the owner through its one-pixel halo.

    The hypothesis subsets leave tiles out, so absent owners are exercised too."""
    lon, lat, xx, yy = _exact_lonlat(grid, shard)
    to_zone = Transformer.from_crs(4326, grid.epsg, always_xy=True)
    out = np.full(xx.shape, NO_SOURCE)
    best = np.full(xx.shape, np.inf)
    covers, cells = [], []
    for i, (key, wide, core) in enumerate(pieces):
        cov = np.zeros(xx.shape, bool)
        if core is not None:
            cov[core.slices] = True
        covers.append(cov)
        cell = (np.floor(lon * 10) == key.cell[0]) & (np.floor(lat * 10) == key.cell[1])
        cells.append(cell)
        out[cov & cell] = i
    fallback = np.full(xx.shape, NO_SOURCE)
    for i in sorted(range(len(pieces)), key=lambda i: pieces[i][0]):
        cx, cy = to_zone.transform(pieces[i][0].lon, pieces[i][0].lat)
        d2 = (xx - cx) ** 2 + (yy - cy) ** 2
        take = covers[i] & (out == NO_SOURCE) & (d2 < best)
        best[take], fallback[take] = d2[take], i
    out = np.where(out == NO_SOURCE, fallback, out)
    for i, (key, wide, core) in enumerate(pieces):
        halo = np.zeros(xx.shape, bool)
        halo[wide.slices] = True
        out[(out == NO_SOURCE) & halo & cells[i]] = i
    near_edge = (np.abs(lat * 10 - np.round(lat * 10)) < 1e-4) | \
                (np.abs(lon * 10 - np.round(lon * 10)) * np.cos(np.radians(lat)) < 1e-4)
    return out, near_edge  # 1e-4 tenths of a degree ≈ 1.1 m


@settings(max_examples=25, deadline=None)
@given(tile_sets(), st.sampled_from([60.0, 160.0]), st.data())
def test_sources_match_brute_force_and_ignore_piece_order(tiles, pixel_size, data):
    for grid, shard, pieces in _drawn_shards(tiles, pixel_size, data, 6):
        got = choose_sources(grid, shard, pieces)
        want, ambiguous = _brute_force(grid, shard, pieces)
        ok = ~ambiguous
        np.testing.assert_array_equal(got[ok], want[ok])
        perm = data.draw(st.permutations(range(len(pieces))))
        shuffled = choose_sources(grid, shard, [pieces[i] for i in perm])
        # the same tile for every pixel, whatever the order of the pieces (-1 → "none")
        names = np.array([k.name for k, _, _ in pieces] + ["none"])
        np.testing.assert_array_equal(names[got], names[np.array(perm + [-1])[shuffled]])


def test_antimeridian_shards_get_longitudes_in_range():
    """Zone 1 grids reach west of 180°W: interpolated longitudes must come back wrapped into
    [-180, 180) like pyproj's, or no tile key matches and the cell rule is bypassed."""
    from geotessera.types import TileKey

    keys = [TileKey(lat_i=lat, lon_i=lon) for lat in (6005, 6015) for lon in (-17995, -17985)]
    grids = {k: tile_grid(k, 10.0) for k in keys}
    grid = zone_grid(1, grids.values(), 512)
    for entry in shard_index(grid, grids):
        shard = grid.shard_window(entry.row, entry.col)
        lon, _ = pixel_lonlat(grid, shard)
        elon, elat, _, _ = _exact_lonlat(grid, shard)
        assert (np.abs(lon - elon) * np.cos(np.radians(elat))).max() * 111_320 < 0.01
    assert (elon > 0).any() or any(  # some shard does reach past the antimeridian
        (_exact_lonlat(grid, grid.shard_window(e.row, e.col))[0] > 0).any()
        for e in shard_index(grid, grids))
