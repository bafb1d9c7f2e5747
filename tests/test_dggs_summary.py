"""The H3 summary of built stores against a brute-force computation written independently
here: every valid pixel → its cell with ``h3.latlng_to_cell``, weight from pyproj's areal
scale factor, plain numpy sums."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import h3
import numpy as np
import pytest
import zarr
from pyproj import Proj, Transformer

from geotessera import run_preview_pass
from geotessera.dggs import summarise, write_summary
from geotessera.dggs.summary import plan_stores
from geotessera.errors import StoreError
from geotessera.parallel import process_pool

YEAR = 2024


@dataclass
class Pixels:
    """Every valid pixel of one store's level: zone, centre, weight, vector, cell."""

    zone: int
    lon: np.ndarray
    lat: np.ndarray
    weight: np.ndarray
    values: np.ndarray  # (n, bands) float32
    cells: np.ndarray  # (n,) uint64

    @property
    def own(self) -> np.ndarray:
        """Centre's longitude in the store's own zone (6° zones from -180°)."""
        return (np.floor((self.lon + 180) / 6).astype(int) + 1) == self.zone


def store_pixels(path: Path, res: int, level: int = 0) -> Pixels:
    root = zarr.open_group(str(path), mode="r")
    zone = int(root.attrs["geotessera:zone"])
    epsg = int(str(root.attrs["proj:code"]).split(":")[1])
    layout = sorted(root.attrs["multiscales"]["layout"],
                    key=lambda e: e["spatial:transform"][0])[level]
    a, _, c, _, e, f = layout["spatial:transform"][:6]
    sc = root[f"{layout['asset']}/scales"][...]
    emb = root[f"{layout['asset']}/embeddings"][...]
    r, q = np.nonzero(np.isfinite(sc))
    lon, lat = Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True).transform(
        c + (q + 0.5) * a, f + (r + 0.5) * e)
    lon, lat = np.asarray(lon), np.asarray(lat)
    weight = a * a / np.asarray(Proj(f"EPSG:{epsg}").get_factors(lon, lat).areal_scale)
    values = emb[:, r, q].T.astype(np.float32) * sc[r, q][:, None]
    cells = np.array([h3.str_to_int(h3.latlng_to_cell(la, lo, res)) for la, lo in zip(lat, lon)],
                     np.uint64)
    return Pixels(zone, lon, lat, weight, values, cells)


def brute_force(stores: list[Pixels]):
    """(cells, count, area, mean) from the counted pixels of all stores, by plain sums."""
    cells = np.concatenate([p.cells[p.own] for p in stores])
    w = np.concatenate([p.weight[p.own] for p in stores])
    x = np.concatenate([p.values[p.own] for p in stores]).astype(np.float64)
    ids = np.unique(cells)
    count = np.array([np.sum(cells == i) for i in ids])
    area = np.array([np.sum(w[cells == i]) for i in ids])
    mean = np.array([np.sum(w[cells == i, None] * x[cells == i], axis=0) for i in ids])
    return ids, count, area, mean / area[:, None], x


def store_paths(d: Path) -> list[Path]:
    return sorted(d.glob(f"utm*_{YEAR}.zarr"))


def assert_matches(summary, stores: list[Pixels]) -> None:
    ids, count, area, mean, _ = brute_force(stores)
    assert np.array_equal(summary.cells, ids)
    assert np.array_equal(summary.pixel_count, count)
    np.testing.assert_allclose(summary.valid_area, area, rtol=1e-6, atol=0)
    # within float32 rounding of the float64 mean (one rounding: 2**-24 relative)
    assert np.all(np.abs(summary.mean - mean) <= 2**-24 * np.abs(mean) * 1.001 + 1e-12)


@pytest.fixture(scope="module")
def summary6(built):
    with ThreadPoolExecutor(2) as pool:
        return summarise(built, YEAR, 6, pool)


@pytest.fixture(scope="module")
def pixels6(built):
    return [store_pixels(p, 6) for p in store_paths(built)]


def test_summary_matches_brute_force(summary6, pixels6):
    assert_matches(summary6, pixels6)
    assert summary6.cells.size > 50 and summary6.provenance["level"] == "L0"
    assert summary6.mean.dtype == np.float32 and summary6.cells.dtype == np.uint64


def test_zone_pair_counts_every_pixel_once_in_both_hemispheres(summary6, pixels6):
    assert sorted(p.zone for p in pixels6) == [30, 31]
    own = sum(int(p.own.sum()) for p in pixels6)
    beyond = [int((~p.own).sum()) for p in pixels6]
    # neighbouring stores overlap beyond their zone edge (here zone 30's rasters reach past
    # 0°E): counting every valid pixel would count that ground twice
    assert max(beyond) > 100
    assert int(summary6.pixel_count.sum()) == own < own + sum(beyond)
    # the overlap really is duplicated ground: each pixel beyond a zone edge lies within a
    # pixel of a counted pixel of the other store (same place, counted there instead)
    for p, other in (pixels6, pixels6[::-1]):
        lon_other = other.lon[other.own]
        lat_other = other.lat[other.own]
        for lo, la in zip(p.lon[~p.own][::10], p.lat[~p.own][::10]):
            d = np.hypot((lon_other - lo) * np.cos(np.radians(la)), lat_other - la) * 111_320
            assert d.min() < 160 * 1.5
    # cells across the zone edge get pixels from both stores, each counted once
    per_zone = [set(p.cells[p.own].tolist()) for p in pixels6]
    shared = per_zone[0] & per_zone[1]
    assert shared
    for cell in shared:
        k = np.searchsorted(summary6.cells, np.uint64(cell))
        assert summary6.pixel_count[k] == sum(int(np.sum(p.cells[p.own] == cell))
                                              for p in pixels6)
    lat = np.array([h3.cell_to_latlng(h3.int_to_str(int(c)))[0] for c in summary6.cells])
    south, north = summary6.pixel_count[lat < 0].sum(), summary6.pixel_count[lat > 0].sum()
    assert south > 1000 and north > 1000


def test_valid_fraction_is_valid_area_over_cell_area(summary6):
    frac = summary6.valid_fraction
    want = np.array([h3.cell_area(h3.int_to_str(int(c)), unit="m^2") for c in summary6.cells])
    np.testing.assert_allclose(summary6.cell_area, want, rtol=0.01)  # ellipsoid vs sphere
    assert np.allclose(frac, summary6.valid_area / summary6.cell_area)
    assert frac.min() > 0 and frac.max() < 1.05 and (frac > 0.95).sum() >= 5


def test_process_pool_and_thread_pool_write_identical_stores(built, summary6, tmp_path):
    with process_pool(2) as pool:
        other = summarise(built, YEAR, 6, pool, max_in_flight=3)
    a, b = write_summary(summary6, tmp_path / "a.zarr"), write_summary(other, tmp_path / "b.zarr")
    files = sorted(p.relative_to(a) for p in Path(a).rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in Path(b).rglob("*") if p.is_file())
    assert len(files) > 5
    for rel in files:
        assert (Path(a) / rel).read_bytes() == (Path(b) / rel).read_bytes(), rel


@pytest.fixture(scope="module")
def with_overviews(built, tmp_path_factory) -> Path:
    """The 2024 stores with the preview pass run (levels L1 … L3 at 320 … 1280 m)."""
    out = tmp_path_factory.mktemp("h3_overviews")
    for p in store_paths(built):
        shutil.copytree(p, out / p.name)
    with ThreadPoolExecutor(2) as pool:
        run_preview_pass(out, pool, years=[YEAR])
    return out


def test_default_level_is_the_coarsest_within_a_tenth_of_the_edge(with_overviews):
    # res 5: mean edge 9.85 km, so pixels of at most 985 m: L2 (640 m), not L3 (1280 m)
    with ThreadPoolExecutor(2) as pool:
        s = summarise(with_overviews, YEAR, 5, pool)
    assert s.provenance["level"] == "L2"
    assert [st["pixel_size"] for st in s.provenance["stores"]] == [640.0, 640.0]
    assert_matches(s, [store_pixels(p, 5, level=2) for p in store_paths(with_overviews)])


def test_level_option_and_its_errors(with_overviews, built):
    with ThreadPoolExecutor(2) as pool:
        s = summarise(with_overviews, YEAR, 5, pool, level=1)
    assert s.provenance["level"] == "L1"
    assert_matches(s, [store_pixels(p, 5, level=1) for p in store_paths(with_overviews)])
    with pytest.raises(StoreError, match=r"utm30_2024\S*: has no level 1"):
        plan_stores(built, YEAR, 5, level=1)
    with pytest.raises(ValueError, match="0..15"):
        plan_stores(built, YEAR, 16)
    with pytest.raises(StoreError, match="no zone stores for year 1999"):
        plan_stores(built, 1999, 5)


def test_one_store_and_a_stac_free_directory_source(built, pixels6):
    one = built / "utm31_2024.zarr"
    with ThreadPoolExecutor(2) as pool:
        s = summarise(one, YEAR, 6, pool)
    assert_matches(s, [p for p in pixels6 if p.zone == 31])
    assert [st["zone"] for st in s.provenance["stores"]] == [31]


def test_a_stac_catalog_source_gives_the_same_summary(built, summary6, tmp_path):
    from geotessera import write_catalog

    stores = tmp_path / "stores"
    for p in store_paths(built):
        shutil.copytree(p, stores / p.name)
    report = write_catalog(stores)
    assert str(report.catalog).endswith("catalog.json")
    with ThreadPoolExecutor(2) as pool:
        s = summarise(str(report.catalog), YEAR, 6, pool)
    assert np.array_equal(s.cells, summary6.cells) and np.array_equal(s.mean, summary6.mean)
    assert np.array_equal(s.valid_area, summary6.valid_area)
