"""The read API, checked against the source tiles: each expected vector is read from the
archive's .npy files, the landmask GeoTIFF's georeferencing (rasterio) and pyproj only."""

from __future__ import annotations

import shutil
from functools import cache
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr
import zarr
from pyproj import Transformer

from geotessera import read
from geotessera.read import region as region_mod
from geotessera.catalog import footprint, stac, validate
from geotessera.store import meta, naming
from geotessera.errors import StoreError

PX = 160.0
PX_DEG = PX / 111_320.0


@cache
def _to(epsg: int) -> Transformer:
    return Transformer.from_crs(4326, epsg, always_xy=True)


class Tiles:
    """The archive's tiles of one year: tile pixels and their values, independently."""

    def __init__(self, base: Path, year: int) -> None:
        self.base, self.year = base, year

    @cache  # noqa: B019 - one instance per test module
    def tile(self, cx: int, cy: int):
        """(crs epsg, affine, landmask, emb, scales) of the tile in cell (⌊10 lon⌋, ⌊10 lat⌋)."""
        name = f"grid_{(cx + 0.5) / 10:.2f}_{(cy + 0.5) / 10:.2f}"
        d = self.base / "global_0.1_degree_representation" / str(self.year) / name
        if not d.exists():
            return None
        with rasterio.open(self.base / "global_0.1_degree_tiff_all" / f"{name}.tiff") as src:
            mask, t, epsg = src.read(1), src.transform, src.crs.to_epsg()
        return epsg, t, mask, np.load(d / f"{name}.npy"), np.load(d / f"{name}_scales.npy")

    def pixel(self, cell, lon, lat):
        """(row, col) of the tile pixel containing each point (may fall outside the raster)."""
        epsg, t, *_ = self.tile(*cell)
        x, y = _to(epsg).transform(lon, lat)
        return (np.floor((np.asarray(y) - t.f) / t.e).astype(int),
                np.floor((np.asarray(x) - t.c) / t.a).astype(int))

    def values(self, cell, rows, cols):
        """(k, bands) tile pixel × scale as float32; NaN for water, non-finite scale or off
        the raster."""
        _, _, mask, emb, scales = self.tile(*cell)
        h, w = mask.shape
        ok = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
        r, c = np.clip(rows, 0, h - 1), np.clip(cols, 0, w - 1)
        s = scales[r, c].astype(np.float32)
        s[~ok | (mask[r, c] == 0) | ~np.isfinite(s)] = np.nan
        return emb[r, c].astype(np.float32) * s[:, None]

    def at(self, lon, lat):
        """Expected vector at each point: the owner tile's pixel containing it."""
        lon, lat = np.asarray(lon, float), np.asarray(lat, float)
        out = None
        cells = np.stack([np.floor(lon * 10), np.floor(lat * 10)], 1).astype(int)
        for cell in {tuple(c) for c in cells}:
            sel = (cells == cell).all(1)
            if self.tile(*cell) is None:
                continue
            vals = self.values(cell, *self.pixel(cell, lon[sel], lat[sel]))
            out = np.full((len(lon), vals.shape[1]), np.nan, np.float32) if out is None else out
            out[sel] = vals
        return out

    def land_around(self, lon, lat):
        """True where the owner tile is present and each of its pixels in the 3 × 3 around
        the point that lies on its raster is land with a finite scale. Tiles sit on the zone
        lattice to half a pixel, so the store pixel holding a point carries one of these (at
        a zone-edge crack, the owner's edge pixel): there the output must have data."""
        lon, lat = np.asarray(lon, float), np.asarray(lat, float)
        out = np.zeros(len(lon), bool)
        cells = np.stack([np.floor(lon * 10), np.floor(lat * 10)], 1).astype(int)
        for cell in {tuple(c) for c in cells}:
            sel = (cells == cell).all(1)
            if self.tile(*cell) is None:
                continue
            _, _, mask, _, scales = self.tile(*cell)
            h, w = mask.shape
            r, c = self.pixel(cell, lon[sel], lat[sel])
            ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    rr, cc = r + dr, c + dc
                    on = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
                    rr, cc = np.clip(rr, 0, h - 1), np.clip(cc, 0, w - 1)
                    ok &= ~on | ((mask[rr, cc] != 0) & np.isfinite(scales[rr, cc]))
            out[sel] = ok
        return out

    def reached(self, lon, lat):
        """True where a present tile among the 3 × 3 cells around the point has its raster,
        widened by one pixel, over the point: no value can come from farther (placement
        moves a tile by half a pixel, a nearest look-up by another half)."""
        lon, lat = np.asarray(lon, float), np.asarray(lat, float)
        out = np.zeros(len(lon), bool)
        cells = np.stack([np.floor(lon * 10), np.floor(lat * 10)], 1).astype(int)
        for cx, cy in {tuple(c) for c in cells}:
            sel = (cells == (cx, cy)).all(1)
            for cell in ((cx + dx, cy + dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)):
                if self.tile(*cell) is not None:
                    h, w = self.tile(*cell)[2].shape
                    r, c = self.pixel(cell, lon[sel], lat[sel])
                    out[sel] |= (r >= -1) & (r <= h) & (c >= -1) & (c <= w)
        return out

    def near(self, lon, lat):
        """(k, 81, bands): the 3 × 3 tile pixels around each point in its owner tile (the
        first 9) and in the 8 neighbouring tiles (NaN where a tile is absent): the
        candidates of a nearest-neighbour mosaic."""
        lon, lat = np.asarray(lon, float), np.asarray(lat, float)
        cells = np.stack([np.floor(lon * 10), np.floor(lat * 10)], 1).astype(int)
        out = np.full((len(lon), 81, 8), np.nan, np.float32)
        for cx, cy in {tuple(c) for c in cells}:
            sel = (cells == (cx, cy)).all(1)
            around = [(cx, cy)] + [(cx + dx, cy + dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)
                                   if dx or dy]
            for k, cell in enumerate(around):
                if self.tile(*cell) is None:
                    continue
                r, c = self.pixel(cell, lon[sel], lat[sel])
                for j, (dr, dc) in enumerate((dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)):
                    out[sel, 9 * k + j] = self.values(cell, r + dr, c + dc)
        return out


@pytest.fixture(scope="module")
def tiles24(archive) -> Tiles:
    return Tiles(archive, 2024)


def _interior_points(tiles: Tiles, n_per_tile: int, seed: int = 0):
    """Centres of random tile pixels ≥ 2 pixels from their 0.1° cell's edges."""
    rng = np.random.default_rng(seed)
    lons, lats = [], []
    for d in sorted((tiles.base / "global_0.1_degree_representation" / str(tiles.year)).iterdir()):
        lon0, lat0 = (float(v) for v in d.name.split("_")[1:])
        cell = (int(np.floor(lon0 * 10)), int(np.floor(lat0 * 10)))
        epsg, t, mask, *_ = tiles.tile(*cell)
        r = rng.integers(0, mask.shape[0], 4 * n_per_tile)
        c = rng.integers(0, mask.shape[1], 4 * n_per_tile)
        lon, lat = Transformer.from_crs(epsg, 4326, always_xy=True).transform(
            t.c + (c + 0.5) * t.a, t.f + (r + 0.5) * t.e)
        m = 2 * PX_DEG
        ok = ((np.floor(lon * 10) == cell[0]) & (np.floor(lat * 10) == cell[1])
              & (np.abs(lon * 10 - np.round(lon * 10)) > 10 * m)
              & (np.abs(lat * 10 - np.round(lat * 10)) > 10 * m))
        lons += list(lon[ok][:n_per_tile])
        lats += list(lat[ok][:n_per_tile])
    return np.array(lons), np.array(lats)


# --- sample ------------------------------------------------------------------------------------


def test_sampled_vectors_equal_the_source_tile_pixels(built, tiles24):
    lon, lat = _interior_points(tiles24, 12)
    assert (lon < 0).any() and (lon > 0).any() and (lat < 0).any() and (lat > 0).any()
    order = np.random.default_rng(1).permutation(len(lon))  # zones and hemispheres mixed
    got = read.sample(np.column_stack([lon, lat])[order], 2024, built)
    want = tiles24.at(lon[order], lat[order])
    assert got.dtype == np.float32 and got.shape == (len(lon), 8)
    np.testing.assert_array_equal(got, want)  # NaN exactly where the tile has no data
    assert np.isfinite(got[:, 0]).mean() > 0.5


def test_points_without_data_are_nan_rows(built):
    pts = [(10.0, 10.0), (-0.29, 5.0), (float("nan"), 0.0), (200.0, 0.0), (-0.15, 0.05)]
    got = read.sample(pts, 2024, built)
    assert np.isnan(got[:4]).all() and np.isfinite(got[4]).all()
    single = read.sample((-0.15, 0.05), 2024, built)
    np.testing.assert_array_equal(single[0], got[4])


def test_points_at_the_zone_boundary_are_not_lost(built, tiles24):
    lat = np.linspace(0.005, 0.195, 120)
    for off in (-0.4, -0.1, 0.1, 0.4):  # pixels either side of 0°
        lon = np.full_like(lat, off * PX_DEG)
        got = read.sample(np.column_stack([lon, lat]), 2024, built)
        near = tiles24.near(lon, lat)
        land = tiles24.land_around(lon, lat)
        assert land.sum() > 50
        assert np.isfinite(got[land]).all(), f"gap at lon offset {off} px"
        # a tile pixel next to the point (tiles sit on the zone lattice to half a pixel)
        match = (near == got[:, None, :]).all(axis=2).any(axis=1)
        assert match[land].all()


@pytest.mark.parametrize("kind", ["dir", "store", "catalog", "catalog-object", "url"])
def test_every_kind_of_source_gives_the_same_vectors(built, tmp_path, kind):
    pts = np.array([(-0.15, 0.05), (0.15, -0.05), (0.05, 0.15), (-0.05, -0.15)])
    want = read.sample(pts, 2024, built)
    if kind == "store":
        for one in (built / "utm30_2024.zarr", (built / "utm30_2024.zarr").as_uri()):
            got = read.sample(pts, 2024, one)  # points of other zones: NaN
            np.testing.assert_array_equal(got[[0, 3]], want[[0, 3]])
            assert np.isnan(got[[1, 2]]).all()
        return
    cat = stac.write_catalog(built, tmp_path / "stac").catalog
    source = {"dir": built, "catalog": cat, "url": built.as_uri(),
              "catalog-object": pystac.Catalog.from_file(str(cat))}[kind]
    np.testing.assert_array_equal(read.sample(pts, 2024, source), want)


def test_as_dataarray_carries_point_coordinates(built):
    da = read.sample([(-0.15, 0.05), (0.15, 0.05)], 2025, built, as_dataarray=True)
    assert da.dims == ("point", "band") and da.lon.values.tolist() == [-0.15, 0.15]


def test_missing_year_names_the_directory_and_year(built):
    with pytest.raises(StoreError, match=rf"{built}.*year 2023"):
        read.sample([(0.1, 0.1)], 2023, built)
    with pytest.raises(StoreError, match="2023"):
        read.sample([(0.1, 0.1)], 2023, built.as_uri())


def test_an_incomplete_store_is_refused_unless_allowed(built, tmp_path):
    store = tmp_path / "utm30_2024.zarr"
    shutil.copytree(built / store.name, store)
    zarr.open_group(str(store), mode="r+").attrs["geotessera:build_complete"] = False
    zarr.consolidate_metadata(str(store))
    with pytest.raises(StoreError, match=rf"{store.name}.*build not complete"):
        read.sample([(-0.15, 0.05)], 2024, tmp_path)
    with pytest.raises(StoreError, match="build not complete"):
        read.open_store(store)
    with pytest.raises(StoreError, match="build not complete"):  # not mistaken for "absent"
        read.sample([(-0.15, 0.05)], 2024, tmp_path.as_uri())
    ok = read.sample([(-0.15, 0.05)], 2024, tmp_path, allow_incomplete=True)
    np.testing.assert_array_equal(ok, read.sample([(-0.15, 0.05)], 2024, built))


# --- open_store / STAC -------------------------------------------------------------------------


def test_open_store_is_lazy_with_crs_and_dequantises_like_sample(built):
    ds = read.open_store(built / "utm31_2024.zarr", chunks="shards")
    assert ds.embeddings.dims == ("band", "y", "x") and ds.embeddings.chunks[1][0] == 64
    assert ds.rio.crs.to_epsg() == 32631 and ds.embeddings.rio.crs.to_epsg() == 32631
    deq = read.dequantise_dataset(ds)
    sub = deq.isel(y=slice(100, 110), x=slice(20, 30))
    assert sub.dtype == np.float32
    yy, xx = np.meshgrid(sub.y.values, sub.x.values, indexing="ij")
    lon, lat = Transformer.from_crs(32631, 4326, always_xy=True).transform(xx, yy)
    got = read.sample(np.column_stack([lon.ravel(), lat.ravel()]), 2024, built)
    np.testing.assert_array_equal(got, sub.values.reshape(8, -1).T)
    with pytest.raises(ValueError, match="level 3"):
        read.open_store(built / "utm31_2024.zarr", level=3)


def test_catalog_item_asset_dataset_as_a_pystac_user_would(built, tmp_path):
    cat = pystac.Catalog.from_file(str(stac.write_catalog(built, tmp_path / "stac").catalog))
    item = next(i for i in cat.get_items(recursive=True) if i.id == "geotessera-2025-utm30")
    plain = xr.open_zarr(item.assets["embeddings"].get_absolute_href(), group="L0")
    ours = read.open_item(item)
    xr.testing.assert_identical(plain.scales.load(), ours.scales.load())
    assert [i.id for i in read.catalog_items(cat, 2025)] == ["geotessera-2025-utm30",
                                                     "geotessera-2025-utm31"]


# --- read_region -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def region(built):
    """A 0.2° square across the 30|31 boundary on the default grid (EPSG:32631, 160 m)."""
    return read.read_region((-0.1, 0.02, 0.1, 0.18), 2024, built)


def _centres(da):
    yy, xx = np.meshgrid(da.y.values, da.x.values, indexing="ij")
    lon, lat = Transformer.from_crs(da.rio.crs.to_epsg(), 4326, always_xy=True).transform(xx, yy)
    return np.asarray(lon), np.asarray(lat)


def test_region_is_on_the_store_lattice_with_its_crs(region, built):
    assert region.dims == ("band", "y", "x") and region.dtype == np.float32
    assert region.rio.crs.to_epsg() == 32631
    a, _, c, _, e, f = zarr.open_group(str(built / "utm31_2024.zarr"))["L0"].attrs[
        "spatial:transform"]
    assert ((region.x.values - c) / a % 1 == 0.5).all()
    assert ((region.y.values - f) / e % 1 == 0.5).all()
    lon, lat = _centres(region)
    assert lon.min() < -0.099 and lon.max() > 0.099 and lat.min() < 0.021 and lat.max() > 0.179


def test_region_equals_the_tiles_in_its_own_zone_and_is_nearest_across(region, tiles24):
    lon, lat = _centres(region)
    vals = region.values.reshape(8, -1).T
    lon, lat = lon.ravel(), lat.ravel()
    far = ((np.abs(lon * 10 - np.round(lon * 10)) > 20 * PX_DEG)
           & (np.abs(lat * 10 - np.round(lat * 10)) > 20 * PX_DEG))
    own = far & (lon > 0)
    np.testing.assert_array_equal(vals[own], tiles24.at(lon[own], lat[own]))
    other = np.flatnonzero(far & (lon < 0))
    near = tiles24.near(lon[other], lat[other])[:, :9]  # reprojected from zone 30:
    hit = (near == vals[other][:, None, :]).all(axis=2).any(axis=1)  # a nearest tile pixel
    land, water = np.isfinite(near[..., 0]).all(1), np.isnan(near[..., 0]).all(1)
    assert hit[land].all() and land.sum() > 1000  # never blended, never lost
    assert np.isnan(vals[other][water]).all()


def _check_seam(region, tiles: Tiles, px_deg: float) -> None:
    """No gap where the owner tile has land all around; every value is a tile pixel near the
    point; NaN where no tile has data near it or no raster reaches it (nothing made up)."""
    lon, lat = _centres(region)
    band = np.abs(lon) < 3 * px_deg / np.cos(np.radians(lat))  # the columns either side of 0°
    assert band.sum(axis=1).min() >= 4
    near = tiles.near(lon[band], lat[band])
    got = region.values[:, band].T
    land = tiles.land_around(lon[band], lat[band])
    assert land.sum() > 200
    gaps = land & ~np.isfinite(got).all(1)
    assert not gaps.any(), f"{gaps.sum()} gap pixel(s) at lon {lon[band][gaps][:5]}"
    hit = (near == got[:, None, :]).all(axis=2).any(axis=1)  # from a neighbouring tile pixel
    assert hit[land].all() and hit[np.isfinite(got[:, 0])].all()
    nothing = np.isnan(near[..., 0]).all(axis=1) | ~tiles.reached(lon[band], lat[band])
    assert nothing.sum() > 20 and np.isnan(got[nothing]).all()


@pytest.mark.parametrize("year", [2024, 2025])  # 2025 lacks zone 30's tile at (-0.05, -0.15)
@pytest.mark.parametrize("crs", [None, "EPSG:32630"])  # zone 31's lattice, then zone 30's
def test_region_across_the_zone_boundary_has_no_gap(built, archive, crs, year):
    region = read.read_region((-0.1, -0.18, 0.1, 0.18), year, built, crs=crs)
    _check_seam(region, Tiles(archive, year), PX_DEG)


@pytest.mark.parametrize("crs", [None, "EPSG:32630", "EPSG:3857"])
def test_region_across_a_slanted_zone_boundary_has_no_gap(north_built, north_archive, crs):
    """At 60°N the zone edge meridian runs askew to both zones' lattices."""
    region = read.read_region((-0.2, 60.02, 0.2, 60.28), 2025, north_built, crs=crs,
                              resolution=60.0)
    _check_seam(region, Tiles(north_archive, 2025), 60.0 / 111_320.0)


def test_region_copies_no_neighbouring_pixel(built):
    """On a store's own lattice each pixel of its zone is that store's pixel, NaN included,
    right up to the zone edge."""
    store = built / "utm31_2025.zarr"
    region = read.read_region((0.0, -0.18, 0.1, 0.18), 2025, store)
    stored = read.dequantise_dataset(read.open_store(store)).sel(x=region.x, y=region.y)
    own = _centres(region)[0] >= 0
    assert (~own).any()
    np.testing.assert_array_equal(region.values[:, own], stored.values[:, own])
    assert np.isnan(region.values[0][own & (_centres(region)[0] < 2 * PX_DEG)]).sum() > 10


def test_region_resolution_picks_nearest_store_pixels(built, region):
    coarse = read.read_region((-0.1, 0.02, 0.1, 0.18), 2024, built, resolution=480)
    assert coarse.shape[1] == pytest.approx(region.shape[1] / 3, abs=1)
    assert coarse.attrs["geotessera:levels"] == {"utm30": "L0", "utm31": "L0"}
    lon, lat = _centres(coarse)
    own = (lon > 3 * PX_DEG).ravel()
    got = read.sample(np.column_stack([lon.ravel(), lat.ravel()])[own], 2024, built)
    np.testing.assert_array_equal(coarse.values.reshape(8, -1).T[own], got)


def test_region_in_wgs84(built):
    da = read.read_region((-0.05, 0.05, 0.05, 0.1), 2025, built, crs="EPSG:4326",
                          resolution=0.002)
    assert da.rio.crs.to_epsg() == 4326 and da.shape == (8, 25, 50)
    assert np.isfinite(da.values[0]).mean() > 0.5
    with pytest.raises(ValueError, match="resolution"):
        read.read_region((-0.05, 0.05, 0.05, 0.1), 2025, built, crs="EPSG:4326")
    with pytest.raises(ValueError, match="bbox"):
        read.read_region((0.1, 0.0, -0.1, 0.1), 2025, built)


def test_region_refuses_an_oversized_read_with_a_hint(built, monkeypatch):
    monkeypatch.setattr(region_mod, "MAX_READ_BYTES", 10_000)
    with pytest.raises(ValueError, match=r"utm30_2025/v[^ ]*\.zarr.*GiB from level L0.*overview"):
        read.read_region((-0.05, 0.05, 0.05, 0.1), 2025, built)


def _add_overview(store: Path) -> None:
    """A hand-made L1 (2× decimation) so a store has two levels."""
    root = zarr.open_group(str(store), mode="r+", use_consolidated=False)
    l0 = root["L0"]
    a, b, c, d, e, f = l0.attrs["spatial:transform"]
    emb, sc = l0["embeddings"][:, ::2, ::2], l0["scales"][::2, ::2]
    l1 = root.create_group("L1", attributes={**l0.attrs.asdict(),
                                             "spatial:transform": [2 * a, b, c, d, 2 * e, f],
                                             "spatial:shape": list(sc.shape)})
    l1.create_array("embeddings", data=emb, chunks=(emb.shape[0], 16, 16),
                    dimension_names=("band", "y", "x"))
    l1.create_array("scales", data=sc, chunks=(32, 32), dimension_names=("y", "x"))
    ms = root.attrs["multiscales"]
    ms["layout"].append({"asset": "L1", "derived_from": "L0",
                         "spatial:transform": [2 * a, b, c, d, 2 * e, f],
                         "spatial:shape": list(sc.shape)})
    root.attrs["multiscales"] = ms
    zarr.consolidate_metadata(str(store))


def test_region_reads_the_overview_level_matching_the_resolution(built, tmp_path):
    for name in ("utm30_2024.zarr", "utm31_2024.zarr"):
        shutil.copytree(built / name, tmp_path / name)
        _add_overview(tmp_path / name)
    bbox = (-0.1, 0.02, 0.1, 0.18)
    assert read.read_region(bbox, 2024, tmp_path, resolution=320).attrs[
        "geotessera:levels"] == {"utm30": "L1", "utm31": "L1"}
    assert read.read_region(bbox, 2024, tmp_path, resolution=300).attrs[
        "geotessera:levels"] == {"utm30": "L0", "utm31": "L0"}
    levels = meta.read_meta(zarr.open_group(str(tmp_path / "utm30_2024.zarr")), "x").levels
    assert [region_mod.choose_level(levels, r).path for r in (10, 160, 319, 320, 5000)] == [
        "L0", "L0", "L0", "L1", "L1"]
    assert read.open_store(tmp_path / "utm30_2024.zarr", level=1).sizes["x"] == 128


@pytest.mark.parametrize("bbox", [(0.05, -0.15, 0.25, 0.15), (0.1, 0.05, 0.2, 0.1),
                                  (0.02, -0.18, 0.28, 0.18)])
def test_a_window_inside_one_zone_is_a_plain_slice_equal_to_the_general_path(built, bbox,
                                                                          monkeypatch):
    calls = []
    real = region_mod._plain_slice
    monkeypatch.setattr(region_mod, "_plain_slice",
                        lambda *a: calls.append(r := real(*a)) or r)
    fast = read.read_region(bbox, 2024, built)
    monkeypatch.setattr(region_mod, "_plain_slice", lambda *a: None)
    slow = read.read_region(bbox, 2024, built)
    assert calls and calls[0] is not None  # the fast path was taken
    assert np.isfinite(fast.values).any() and np.isnan(fast.values).any()
    np.testing.assert_array_equal(fast.values, slow.values)  # NaN where NaN, else equal
    assert fast.attrs == slow.attrs
    np.testing.assert_array_equal(fast.x.values, slow.x.values)


def test_a_window_at_the_zone_edge_or_off_the_lattice_takes_the_general_path(built):
    for bbox, crs, res in [((0.0005, 0.0, 0.1, 0.1), None, None),
                           ((0.05, 0.0, 0.1, 0.1), None, 100.0),
                           ((0.05, 0.0, 0.1, 0.1), "EPSG:3857", None)]:
        zs = read.Reader(built, 2024).zone(31)
        dst, r, r_m = region_mod._target(bbox, crs, res, 160.0)
        grid = region_mod.target_grid(bbox, dst, r)
        assert region_mod._plain_slice(zs, grid, r_m) is None, (bbox, crs, res)
