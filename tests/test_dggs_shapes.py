"""Cell polygons on the maps: Equal Earth is equal-area, so the pieces of every cell, cut at
the antimeridian or closed through a pole, must add up to the cell's own area; the globe's
pieces are pyproj's orthographic projection of the cell."""

from __future__ import annotations

import h3
import numpy as np
import pytest
from pyproj import Proj
from shapely.geometry import Polygon

from geotessera.dggs.shapes import (
    R_H3,
    cell_ring,
    equal_area_pieces,
    globe_definition,
    globe_pieces,
    split_ring,
)

CASES = [  # (lat, lon, res): ordinary, across the antimeridian, around and on a pole
    (10, 20, 5), (-33.9, 151.2, 7), (51.5, -0.1, 4), (0.0, 180.0, 2), (-11.2, 179.9, 1),
    (65.0, -179.99, 3), (90, 0, 1), (-90, 0, 1), (90, 0, 2), (90, 0, 0), (-90, 0, 0),
    (0.0, 180.0, 0), (40, 100, 0),
]


def sphere_area(cell: int) -> float:
    return h3.api.basic_int.cell_area(cell, unit="m^2")  # on H3's sphere, R = R_H3


@pytest.mark.parametrize(("lat", "lon", "res"), CASES)
@pytest.mark.parametrize("lon_0", [0.0, 180.0, -37.5])
def test_equal_area_pieces_add_up_to_the_cell_area(lat, lon, res, lon_0):
    cell = h3.api.basic_int.latlng_to_cell(lat, lon, res)
    lons, lats = cell_ring(cell, res)
    pieces = equal_area_pieces(lons, lats, lon_0)
    area = sum(Polygon(p).area for p in pieces)
    assert abs(area / sphere_area(cell) - 1) < 2e-3, (len(pieces), area, sphere_area(cell))


def test_the_split_puts_every_piece_within_the_map():
    cell = h3.api.basic_int.latlng_to_cell(-11.2, 179.9, 1)
    pieces = split_ring(*cell_ring(cell, 1), 0.0)
    assert len(pieces) == 2
    assert all(-180 < p[:, 0].min() and p[:, 0].max() < 180 for p in pieces)
    assert {bool(p[:, 0].mean() > 0) for p in pieces} == {True, False}
    polar = split_ring(*cell_ring(h3.api.basic_int.latlng_to_cell(90, 0, 1), 1), 0.0)
    lon_span = max(p[:, 0].max() for p in polar) - min(p[:, 0].min() for p in polar)
    assert lon_span > 359.99 and max(p[:, 1].max() for p in polar) == 90.0


@pytest.mark.parametrize(("lat", "lon", "res"), [(10, 20, 5), (-11.2, 179.9, 1), (60, -120, 3)])
def test_visible_globe_pieces_are_the_orthographic_projection(lat, lon, res):
    cell = h3.api.basic_int.latlng_to_cell(lat, lon, res)
    lons, lats = cell_ring(cell, res)
    centre = (lon + 5, lat - 3)
    (piece,) = globe_pieces(lons, lats, *centre)
    x, y = Proj(globe_definition(*centre))(lons, lats)
    assert np.abs(piece[:-1] - np.column_stack([x, y])).max() < 1e-3  # metres


def test_globe_drops_hidden_cells_and_clips_the_limb():
    hidden = h3.api.basic_int.latlng_to_cell(0, 180, 3)
    assert globe_pieces(*cell_ring(hidden, 3), 0.0, 0.0) == []
    limb = h3.api.basic_int.latlng_to_cell(0, 90, 1)
    lons, lats = cell_ring(limb, 1)
    assert lons.min() < 90 < lons.max()
    (piece,) = globe_pieces(lons, lats, 0.0, 0.0)
    r = np.hypot(piece[:, 0], piece[:, 1])
    assert r.max() <= R_H3 * (1 + 1e-9) and (r > R_H3 * 0.9999).sum() >= 3  # along the limb
