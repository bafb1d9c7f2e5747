"""The H3 summary's arithmetic: true pixel areas against geodesic polygon areas, the zone and
level rules, and per-cell sums that merge exactly in any order."""

from __future__ import annotations

import math
from fractions import Fraction

import h3
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod, Transformer

from geotessera.dggs.cells import (
    CellSums,
    accumulate,
    cell_areas_m2,
    default_level,
    lattice_areas,
    merge_sums,
    true_areas,
    zone_of_lon,
)
from geotessera.tiles import utm_zone

GEOD = Geod(ellps="WGS84")


def geodesic_pixel_area(zone: int, x: float, y: float, size: float, n: int = 16) -> float:
    """Area on WGS84 of the UTM square of side ``size`` centred at (x, y) (EPSG:326ZZ, y < 0
    south of the equator as in the stores), its edges densified to ``n`` points each."""
    t = np.linspace(-0.5, 0.5, n, endpoint=False)
    h = size / 2
    xs = np.r_[x - h + (t + 0.5) * size, np.full(n, x + h), x + h - (t + 0.5) * size,
               np.full(n, x - h)]
    ys = np.r_[np.full(n, y - h), y - h + (t + 0.5) * size, np.full(n, y + h),
               y + h - (t + 0.5) * size]
    lon, lat = Transformer.from_crs(f"EPSG:{32600 + zone}", "EPSG:4326",
                                    always_xy=True).transform(xs, ys)
    return abs(GEOD.polygon_area_perimeter(lon, lat)[0])


def centre_of(zone: int, lat: float, dx: float) -> tuple[float, float, float, float]:
    """(x, y, lon, lat) of the point ``dx`` metres east of the central meridian at ``lat``."""
    fwd = Transformer.from_crs("EPSG:4326", f"EPSG:{32600 + zone}", always_xy=True)
    inv = Transformer.from_crs(f"EPSG:{32600 + zone}", "EPSG:4326", always_xy=True)
    _, y = fwd.transform(-177.0 + 6 * (zone - 1), lat)
    x = 500_000.0 + dx
    lon, lat_c = inv.transform(x, y)
    return x, y, lon, lat_c


@pytest.mark.parametrize("lat", [-75.0, -40.0, -0.5, 0.5, 25.0, 52.0, 71.0, 83.5])
@pytest.mark.parametrize("dx", [0.0, 120_000.0, -260_000.0, 330_000.0])
@pytest.mark.parametrize("size", [10.0, 160.0, 1280.0])
def test_true_area_equals_the_geodesic_area_of_the_pixel_polygon(lat, dx, size):
    zone = 31
    x, y, lon, lat_c = centre_of(zone, lat, dx)
    got = true_areas(32600 + zone, np.array([lon]), np.array([lat_c]), size * size)[0]
    want = geodesic_pixel_area(zone, x, y, size)
    assert abs(got / want - 1) < 1e-6, (got, want)
    if dx:  # the correction is real: away from the central meridian area != size²·(1/k0²)
        assert abs(got / (size * size / 0.9996**2) - 1) > 1e-5


@settings(max_examples=60, deadline=None)
@given(lat=st.floats(-80, 84), dx=st.floats(-600_000, 600_000), size=st.floats(5, 2_000),
       zone=st.integers(1, 60))
def test_true_area_property(lat, dx, size, zone):
    x, y, lon, lat_c = centre_of(zone, lat, dx)
    got = true_areas(32600 + zone, np.array([lon]), np.array([lat_c]), size * size)[0]
    assert abs(got / geodesic_pixel_area(zone, x, y, size) - 1) < 1e-6


@given(st.floats(-180, 180))
def test_zone_of_lon_is_the_builders_rule(lon):
    assert int(zone_of_lon(np.array([lon]))[0]) == utm_zone(lon)


@pytest.mark.parametrize("res", range(16))
def test_default_level_is_the_coarsest_within_a_tenth_of_the_mean_edge(res):
    sizes = [10.0 * 2**k for k in range(8)]
    edge = h3.average_hexagon_edge_length(res, unit="m")
    i = default_level(sizes, res)
    if sizes[0] > edge / 10:
        assert i == 0  # none fits: the finest
    else:
        assert sizes[i] <= edge / 10 and (i == len(sizes) - 1 or sizes[i + 1] > edge / 10)


def test_cell_area_is_close_to_h3s_spherical_area():
    cells = [h3.api.basic_int.latlng_to_cell(lat, lon, r)
             for lat, lon in [(0, 0), (51, -1), (-33, 151), (70, 179.9)] for r in (3, 6, 9)]
    ours = cell_areas_m2(np.array(cells, np.uint64))
    theirs = np.array([h3.api.basic_int.cell_area(c, unit="m^2") for c in cells])
    assert np.all(np.abs(ours / theirs - 1) < 0.01)  # sphere vs ellipsoid, same cells


# --- sums ----------------------------------------------------------------------------------------


@st.composite
def pixel_sets(draw):
    n = draw(st.integers(1, 300))
    bands = draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    cells = rng.choice(np.array([11, 5, 2**63 + 7, 900, 3], np.uint64), n)
    w = rng.uniform(1, 1e5, n)
    x = rng.normal(0, 10, (bands, n)).astype(np.float32)
    parts = draw(st.integers(1, 8))
    split = np.sort(rng.integers(0, n + 1, parts - 1))
    return cells, w, x, np.split(np.arange(n), split), rng


@settings(max_examples=80, deadline=None)
@given(pixel_sets())
def test_merged_sums_equal_exact_sums_and_do_not_depend_on_part_order(data):
    cells, w, x, groups, rng = data
    bands = x.shape[0]
    parts = [accumulate(cells[g], w[g], bands, lambda b, g=g: x[b, g]) for g in groups]
    merged = merge_sums(parts, bands)
    for _ in range(3):  # any order of the parts and of their rows: bit-identical
        order = rng.permutation(len(parts))
        shuffled = []
        for i in order:
            p = parts[i]
            perm = rng.permutation(p.cells.size)
            shuffled.append(CellSums(p.cells[perm], p.count[perm], p.area[perm], p.vsum[perm]))
        again = merge_sums(shuffled, bands)
        for a, b in zip((merged.cells, merged.count, merged.area, merged.vsum),
                        (again.cells, again.count, again.area, again.vsum)):
            assert a.tobytes() == b.tobytes()
    assert np.all(np.diff(merged.cells.astype(object)) > 0)  # sorted, unique
    for k, cell in enumerate(merged.cells):
        sel = cells == cell
        assert merged.count[k] == sel.sum()
        exact_w = sum(Fraction(v) for v in w[sel])
        assert math.isclose(merged.area[k], float(exact_w), rel_tol=1e-12)
        for b in range(bands):
            exact = sum(Fraction(a) * Fraction(float(v)) for a, v in zip(w[sel], x[b, sel]))
            scale = sum(abs(a * float(v)) for a, v in zip(w[sel], x[b, sel]))
            assert abs(merged.vsum[k, b] - float(exact)) <= 1e-12 * scale + 1e-300


def test_merge_of_nothing_and_band_mismatch():
    assert merge_sums([], 4).cells.size == 0
    a = accumulate(np.array([1], np.uint64), np.ones(1), 2, lambda b: np.ones(1))
    b = accumulate(np.array([1], np.uint64), np.ones(1), 3, lambda b: np.ones(1))
    with pytest.raises(ValueError, match="band count"):
        merge_sums([a, b], 2)


@settings(max_examples=40, deadline=None)
@given(lat=st.floats(-80, 83), dx=st.floats(-400_000, 400_000), zone=st.integers(1, 60),
       size=st.sampled_from([10.0, 40.0, 160.0, 640.0]), h=st.integers(1, 300),
       w=st.integers(1, 300))
def test_lattice_areas_equal_per_pixel_pyproj_areas(lat, dx, zone, size, h, w):
    x, y, _, _ = centre_of(zone, lat, dx)
    transform = (size, 0.0, x - w * size / 2, 0.0, -size, y + h * size / 2)
    r0, c0 = 1000, 2000  # a window inside a larger grid
    t = (size, 0.0, transform[2] - c0 * size, 0.0, -size, transform[5] + r0 * size)
    rows, cols = np.meshgrid(np.arange(r0, r0 + h), np.arange(c0, c0 + w), indexing="ij")
    rows, cols = rows.ravel(), cols.ravel()
    cx, cy = t[2] + (cols + 0.5) * size, t[5] - (rows + 0.5) * size
    lon, lat_c = Transformer.from_crs(f"EPSG:{32600 + zone}", "EPSG:4326",
                                      always_xy=True).transform(cx, cy)
    exact = true_areas(32600 + zone, np.asarray(lon), np.asarray(lat_c), size * size)
    got = lattice_areas(32600 + zone, t, (r0, r0 + h, c0, c0 + w), rows, cols)
    assert np.max(np.abs(got / exact - 1)) < 1e-9


def test_the_sub_packages_public_names_resolve():
    import geotessera.dggs as dggs

    assert set(dggs.__all__) == set(dggs._LAZY)
    assert all(callable(getattr(dggs, name)) for name in dggs.__all__)
