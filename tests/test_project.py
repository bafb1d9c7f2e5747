"""read.project: nearest_index equals the exact per-pixel transform (its definition) on grids
across zones, at high latitude, into Web Mercator and WGS84; dequantise's NaN rule."""

from __future__ import annotations

import numpy as np
import pytest
from pyproj import CRS, Transformer

from geotessera.read.project import dequantise, nearest_index
from geotessera.types import PixelGrid


def _exact(src: PixelGrid, dst: PixelGrid) -> np.ndarray:
    """The definition, pixel by pixel: transform each dst centre, take the src pixel that
    holds it."""
    rows, cols = np.meshgrid(np.arange(dst.height), np.arange(dst.width), indexing="ij")
    a, _, c, _, e, f = dst.transform
    x, y = c + (cols + 0.5) * a, f + (rows + 0.5) * e
    sx, sy = Transformer.from_crs(CRS.from_user_input(dst.crs), CRS.from_user_input(src.crs),
                                  always_xy=True).transform(x.ravel(), y.ravel())
    sa, _, sc, _, se, sf = src.transform
    col, row = np.floor((np.asarray(sx) - sc) / sa), np.floor((np.asarray(sy) - sf) / se)
    ok = (row >= 0) & (row < src.height) & (col >= 0) & (col < src.width)
    out = np.where(ok, row * src.width + col, -1)
    return out.reshape(dst.shape).astype(np.int64)


def _grid_over(crs: str, lon0: float, lat0: float, lon1: float, lat1: float, res: float
               ) -> PixelGrid:
    """A grid in ``crs`` covering a lon/lat box (its projected bounds, snapped to ``res``)."""
    x0, y0, x1, y1 = Transformer.from_crs(4326, CRS.from_user_input(crs),
                                          always_xy=True).transform_bounds(lon0, lat0, lon1, lat1)
    left, top = np.floor(x0 / res) * res, np.ceil(y1 / res) * res
    shape = (int(np.ceil((top - y0) / res)), int(np.ceil((x1 - left) / res)))
    return PixelGrid(crs, (res, 0.0, left, 0.0, -res, top), shape)


CASES = {
    # zone 30's window near 0°E read onto zone 31's lattice (read_region across the seam)
    "zone 30 -> 31": (_grid_over("EPSG:32630", -0.3, -0.2, 0.02, 0.2, 40.0),
                      _grid_over("EPSG:32631", -0.1, -0.15, 0.1, 0.15, 40.0)),
    # 60°N: the zone edge runs askew; Web Mercator stretches y by 2
    "60N -> 3857": (_grid_over("EPSG:32630", -0.3, 60.0, 0.02, 60.3, 60.0),
                    _grid_over("EPSG:3857", -0.2, 60.02, 0.2, 60.28, 55.0)),
    # a geographic output, finer than the source (many dst pixels per src pixel)
    "31 -> 4326": (_grid_over("EPSG:32631", 0.0, -0.2, 0.3, 0.2, 160.0),
                   _grid_over("EPSG:4326", 0.15, -0.1, 0.35, 0.1, 0.0007)),
    # one row and one column: the control lattice degenerates
    "one row": (_grid_over("EPSG:32630", -0.3, -0.2, 0.02, 0.2, 40.0),
                PixelGrid("EPSG:32631", (37.0, 0.0, 160_000.0, 0.0, -37.0, 5_000.0), (1, 700))),
    "one column": (_grid_over("EPSG:32630", -0.3, -0.2, 0.02, 0.2, 40.0),
                   PixelGrid("EPSG:32631", (37.0, 0.0, 165_000.0, 0.0, -37.0, 9_000.0),
                             (700, 1))),
}


@pytest.mark.parametrize("name", list(CASES))
def test_nearest_index_is_the_exact_transform(name):
    src, dst = CASES[name]
    got = nearest_index(src, dst)
    want = _exact(src, dst)
    assert got.shape == dst.shape and got.dtype == np.int64
    assert (want >= 0).sum() > 0.1 * want.size  # the grids do overlap
    assert (want < 0).any() or name.startswith("one")  # and some pixels fall outside
    np.testing.assert_array_equal(got, want)


def test_nearest_index_on_the_same_lattice_is_the_window():
    src = PixelGrid("EPSG:32631", (10.0, 0.0, 100_000.0, 0.0, -10.0, 50_000.0), (300, 400))
    dst = PixelGrid("EPSG:32631", (10.0, 0.0, 101_000.0, 0.0, -10.0, 49_500.0), (50, 60))
    rows, cols = np.meshgrid(np.arange(50) + 50, np.arange(60) + 100, indexing="ij")
    np.testing.assert_array_equal(nearest_index(src, dst), rows * 400 + cols)


def test_nearest_index_of_an_empty_grid():
    src = PixelGrid("EPSG:32631", (10.0, 0.0, 0.0, 0.0, -10.0, 0.0), (5, 5))
    assert nearest_index(src, PixelGrid("EPSG:32631", src.transform, (0, 7))).shape == (0, 7)


def test_dequantise_is_int8_times_scale_with_nan_for_no_data():
    q = np.array([[1, -2], [3, 4]], np.int8)
    out = dequantise(q, np.array([[0.5], [np.nan]], np.float32))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[0.5, -1.0], [np.nan, np.nan]])
