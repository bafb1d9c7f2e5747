"""Footprints that follow the data, on synthetic zone stores made with the store layer: a
zone-31 store with data from 56°S to 84°N (whose bounding rectangle spans 53° of longitude)
gets a narrow geometry, and data across 180° is split into two polygons."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shapely
import shapely.geometry
import zarr
from pyproj import Geod, Transformer

from geotessera.catalog.footprint import data_footprint, footprint_geojson, footprint_geometry
from geotessera.store.location import Location
from geotessera.store.meta import open_root, read_meta
from geotessera.store.zone import create_zone_store
from geotessera.types import PixelGrid, StoreLayout

PX = 5000.0  # coarse pixels keep a pole-to-pole store small (3120 x 140)
#: Footprint area over valid area at most (measured: 1.05 for zone 31, 1.07 for zone 60).
AREA_FACTOR = 1.15
#: How far the geometry may reach beyond the valid pixel centres, in pixels of the level read:
#: half a pixel to the pixel edge, one for the growth, one for the simplification.
SLACK_PX = 2.5


def _store(tmp_path: Path, zone: int, left: float, cols: int, valid_lon) -> tuple[Path, tuple]:
    """A zone store whose scales are valid where ``valid_lon(lon) and -56 <= lat <= 84``
    (lon unwrapped around the zone's central meridian); returns it and the valid centres."""
    grid = PixelGrid.of(32600 + zone, PX, left, 9_350_000.0, (3120, cols))
    path = tmp_path / f"utm{zone:02d}_2024.zarr"
    create_zone_store(path, grid, 4, StoreLayout(shard_px=1024, chunk_px=32,
                                                 scales_chunk_px=256),
                      {"zone": zone, "year": 2024, "build_complete": True})
    rows, cols_ = np.mgrid[0:grid.height, 0:grid.width]
    x, y = grid.xy(rows, cols_)
    lon, lat = Transformer.from_crs(32600 + zone, 4326, always_xy=True).transform(x, y)
    cm = 6.0 * zone - 183.0
    lon = cm + (lon - cm + 180.0) % 360.0 - 180.0
    valid = valid_lon(lon) & (lat >= -56.0) & (lat <= 84.0)
    zarr.open_group(str(path), mode="r+")["L0/scales"][...] = np.where(valid, 1.0, np.nan)
    return path, (lon[valid], lat[valid])


def _footprint(path: Path, zone: int):
    loc = Location.parse(path)
    root = open_root(loc)
    fp = data_footprint(loc, root, read_meta(root, str(path)))
    return fp, footprint_geometry(zone, fp)


def _area_ratio(geom, n_valid: int) -> float:
    return abs(Geod(ellps="WGS84").geometry_area_perimeter(geom)[0]) / (n_valid * PX**2)


def test_pole_to_pole_zone_31_gets_a_narrow_footprint(tmp_path):
    path, (lon, lat) = _store(tmp_path, 31, 150_000.0, 140, lambda v: (v >= 0) & (v < 6))
    fp, (geometry, bbox) = _footprint(path, 31)
    rect_bbox = footprint_geojson(31, fp.utm_bbox)[1]
    assert rect_bbox[2] - rect_bbox[0] > 50  # the rectangle: ~53° of longitude
    w, s, e, n = bbox
    # the geometry: the zone's 6°, plus at most 2.5 pixels where a pixel is widest in
    # longitude, at 84°N (half a pixel to the centres, grown by one, simplified by one)
    slack = SLACK_PX * PX / (111_320.0 * np.cos(np.radians(84.0)))
    assert -slack < w <= lon.min() and lon.max() <= e < 6 + slack
    assert s <= lat.min() and n >= lat.max() and s > -56.2 and n < 84.2
    geom = shapely.geometry.shape(geometry)
    assert geom.is_valid and shapely.contains_xy(geom, lon, lat).all()
    ratio = _area_ratio(geom, lon.size)
    print(f"zone 31 pole to pole: area ratio {ratio:.3f}, "
          f"{len(shapely.get_coordinates(geom))} vertices")
    assert 1.0 <= ratio <= AREA_FACTOR


def test_data_across_the_antimeridian_is_split(tmp_path):
    path, (lon, lat) = _store(tmp_path, 60, 300_000.0, 140, lambda v: (v >= 178.5) & (v < 181))
    _, (geometry, bbox) = _footprint(path, 60)
    assert geometry["type"] == "MultiPolygon" and len(geometry["coordinates"]) == 2
    slack = SLACK_PX * PX / (111_320.0 * np.cos(np.radians(84.0)))
    wrapped = (lon + 180.0) % 360.0 - 180.0
    assert bbox[0] > bbox[2]  # west > east (RFC 7946 §5.2)
    assert 178.5 - slack < bbox[0] <= lon.min()
    assert wrapped[wrapped < 0].max() <= bbox[2] < -179 + slack
    geom = shapely.geometry.shape(geometry)
    assert geom.is_valid and shapely.contains_xy(geom, wrapped, lat).all()
    coords = shapely.get_coordinates(geom)
    assert coords[:, 0].min() >= -180 and coords[:, 0].max() <= 180
    ratio = _area_ratio(geom, lon.size)
    print(f"zone 60 across 180°: area ratio {ratio:.3f}")
    assert 1.0 <= ratio <= AREA_FACTOR
