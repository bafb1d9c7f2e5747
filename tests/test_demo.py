"""The synthetic archive: layout, georeferencing, data realism, determinism, validation."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Transformer

from geotessera.archive.demo import (
    DemoSpec,
    DemoSummary,
    demo_tiles,
    write_demo_archive,
    write_tile,
    year_tiles,
)
from geotessera.tiles import EMBEDDINGS_DIR, LANDMASKS_DIR, tile_grid, tile_paths
from geotessera.types import TileKey

PX = 160.0
SMALL = DemoSpec(
    lon_min=0.0, lon_max=0.2, lat_min=-0.1, lat_max=0.1, pixel_size=PX, bands=16,
    years=(2024, 2025), missing_fraction=0.1,
)  # fmt: skip
DEFAULT_COARSE = DemoSpec(pixel_size=PX, bands=8, years=(2024,))


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DemoSummary, list]:
    base = tmp_path_factory.mktemp("small")
    calls: list[tuple[int, int]] = []
    summary = write_demo_archive(base, SMALL, on_progress=lambda p: calls.append((p.done, p.total)))
    return base, summary, calls


@pytest.fixture(scope="module")
def default_coarse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("default")
    write_demo_archive(base, DEFAULT_COARSE)
    return base


def _landmask(base: Path, key: TileKey) -> np.ndarray:
    with rasterio.open(tile_paths(base, 2024, key.name).landmask) as src:
        return src.read(1)


def _dequantised(base: Path, key: TileKey, year: int) -> np.ndarray:
    paths = tile_paths(base, year, key.name)
    q, s = np.load(paths.embeddings), np.load(paths.scales)
    return q * np.where(np.isfinite(s), s, np.nan)[..., None]


# --- tile set ----------------------------------------------------------------------------------


def test_default_tiles_cover_two_zones_and_both_hemispheres() -> None:
    tiles = demo_tiles(DemoSpec())
    assert len(tiles) == 24 and tiles == sorted(tiles)
    assert all(t.is_centred for t in tiles)
    assert {t.lon_i for t in tiles} == {-25, -15, -5, 5, 15, 25}
    assert {t.lat_i for t in tiles} == {-15, -5, 5, 15}
    grids = [tile_grid(t, 80.0) for t in tiles]
    assert {g.zone for g in grids} == {30, 31}
    assert {g.epsg // 100 for g in grids} == {326, 327}


def test_only_whole_cells_with_float_unfriendly_bounds() -> None:
    spec = DemoSpec(lon_min=0.1, lon_max=0.3, lat_min=0.7, lat_max=0.9)
    cells = [(t.lon_i, t.lat_i) for t in demo_tiles(spec)]
    assert cells == [(15, 75), (25, 75), (15, 85), (25, 85)]
    partial = DemoSpec(lon_min=-0.05, lon_max=0.25, lat_min=0.0, lat_max=0.19)
    assert [(t.lon_i, t.lat_i) for t in demo_tiles(partial)] == [(5, 5), (15, 5)]


def test_missing_tiles_in_later_years() -> None:
    spec = DemoSpec()
    assert year_tiles(spec, 2024) == demo_tiles(spec)
    later = year_tiles(spec, 2025)
    assert len(later) == 22 and set(later) < set(demo_tiles(spec))
    assert year_tiles(spec, 2025) == later  # seeded
    four = DemoSpec(lon_min=0, lon_max=0.2, lat_min=0, lat_max=0.2, missing_fraction=0.01)
    assert len(year_tiles(four, 2025)) == 3
    assert year_tiles(DemoSpec(missing_fraction=0.0), 2025) == demo_tiles(spec)
    assert len(year_tiles(DemoSpec(missing_fraction=0.99), 2025)) == 1


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"lon_min": 0.3, "lon_max": 0.3}, "0.3"),
        ({"lat_min": 0.2, "lat_max": -0.2}, "-0.2"),
        ({"lon_min": -181.0}, "-181"),
        ({"pixel_size": 0.0}, "0.0"),
        ({"bands": 0}, "0"),
        ({"bands": 129}, "129"),
        ({"missing_fraction": 1.0}, "1.0"),
        ({"missing_fraction": -0.1}, "-0.1"),
        ({"years": ()}, "()"),
        ({"years": (24,)}, "24"),
        ({"years": (2024, 2024)}, "2024"),
        ({"lon_min": 0.01, "lon_max": 0.09}, "0.09"),
    ],
)
def test_invalid_spec(kwargs: dict, bad: str) -> None:
    with pytest.raises(ValueError, match=bad.replace("(", r"\(").replace(")", r"\)")):
        DemoSpec(**kwargs)


# --- layout and georeferencing -----------------------------------------------------------------


def test_layout_names_and_summary(small) -> None:
    base, summary, calls = small
    tiles = demo_tiles(SMALL)
    later = year_tiles(SMALL, 2025)
    assert len(tiles) == 4 and len(later) == 3
    expected = {f"{LANDMASKS_DIR}/{t.name}.tiff" for t in tiles}
    for year, keys in ((2024, tiles), (2025, later)):
        for t in keys:
            d = f"{EMBEDDINGS_DIR}/{year}/{t.name}"
            expected |= {f"{d}/{t.name}.npy", f"{d}/{t.name}_scales.npy"}
    found = {p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file()}
    assert found == expected
    assert "grid_0.15_-0.05" in {t.name for t in tiles}
    assert summary.tiles == 4 and summary.files == 7
    assert summary.years == (2024, 2025) and summary.zones == (31,)
    assert summary.base == str(base)
    assert summary.bytes == sum((base / f).stat().st_size for f in found)
    assert calls == [(i, 7) for i in range(1, 8)]


def test_arrays_match_grid(small) -> None:
    base, _, _ = small
    for t in demo_tiles(SMALL):
        g = tile_grid(t, PX)
        paths = tile_paths(base, 2024, t.name)
        q, s = np.load(paths.embeddings), np.load(paths.scales)
        assert q.dtype == np.int8 and q.shape == (g.height, g.width, 16) and q.flags.c_contiguous
        assert s.dtype == np.float32 and s.shape == (g.height, g.width)


def test_landmask_georeferencing(small) -> None:
    base, _, _ = small
    for t in demo_tiles(SMALL):
        g = tile_grid(t, PX)
        with rasterio.open(tile_paths(base, 2024, t.name).landmask) as src:
            assert src.crs.to_epsg() == g.epsg
            assert src.transform.almost_equals(rasterio.Affine(*g.transform), precision=1e-6)
            assert (src.width, src.height, src.count) == (g.width, g.height, 1)
            assert src.dtypes == ("uint8",)
            assert src.compression == rasterio.enums.Compression.deflate
            assert set(np.unique(src.read(1)).tolist()) <= {0, 1}


def test_southern_landmask_uses_327(tmp_path: Path) -> None:
    key = TileKey(lat_i=-5, lon_i=-5)
    spec = DemoSpec(lon_min=-0.1, lon_max=0.0, lat_min=-0.1, lat_max=0.0, pixel_size=PX, bands=2)
    first = write_tile(tmp_path, key, 2024, spec)
    with rasterio.open(tile_paths(tmp_path, 2024, key.name).landmask) as src:
        assert src.crs.to_epsg() == 32730 and src.transform.f > 9_000_000
    # the landmask is written once; a second year only adds the two .npy files
    second = write_tile(tmp_path, key, 2025, spec)
    p = tile_paths(tmp_path, 2025, key.name)
    assert second == p.embeddings.stat().st_size + p.scales.stat().st_size < first


# --- data realism ------------------------------------------------------------------------------


def test_quantisation_and_nonfinite_scales(default_coarse: Path) -> None:
    scales, qmax = [], []
    for t in demo_tiles(DEFAULT_COARSE):
        p = tile_paths(default_coarse, 2024, t.name)
        s, q = np.load(p.scales), np.load(p.embeddings)
        scales.append(s.ravel())
        qmax.append(np.abs(q.astype(np.int16)).max(axis=-1)[np.isfinite(s)])
    s, qmax = np.concatenate(scales), np.concatenate(qmax)
    assert 0 < np.isnan(s).sum() < 0.005 * s.size
    assert 0 < np.isposinf(s).sum() < 0.005 * s.size
    assert np.isfinite(s).mean() > 0.99 and (s[np.isfinite(s)] > 0).all()
    assert (qmax >= 126).all() and (qmax <= 127).all()  # max |value| maps to ±127 (±1 noise)


def test_water_fraction_and_seas(default_coarse: Path) -> None:
    masks = [_landmask(default_coarse, t) for t in demo_tiles(DEFAULT_COARSE)]
    water = np.array([(m == 0).mean() for m in masks])
    total = sum((m == 0).sum() for m in masks) / sum(m.size for m in masks)
    assert 0.15 <= total <= 0.30
    assert (water > 0.5).any() and (water < 0.5).sum() > len(masks) / 2
    wettest = masks[int(np.argmax(water))] == 0
    inner = wettest[1:-1, 1:-1]
    neighbours = (wettest[:-2, 1:-1], wettest[2:, 1:-1], wettest[1:-1, :-2], wettest[1:-1, 2:])
    surrounded = inner & np.logical_and.reduce(neighbours)
    assert surrounded.sum() > 0.8 * inner.sum()  # contiguous seas, not salt and pepper


@pytest.mark.parametrize(("west", "east"), [(5, 15), (-5, 5)])  # same zone; across 30|31
def test_seamless_between_neighbours(default_coarse: Path, west: int, east: int) -> None:
    a_key, b_key = TileKey(lat_i=15, lon_i=west), TileKey(lat_i=15, lon_i=east)
    ga, gb = tile_grid(a_key, PX), tile_grid(b_key, PX)
    a, b = _dequantised(default_coarse, a_key, 2024), _dequantised(default_coarse, b_key, 2024)
    rows = np.arange(ga.height)
    xa = ga.left + (ga.width - 0.5) * PX  # centres of A's east column, in B's CRS
    ya = ga.top - (rows + 0.5) * PX
    to_b = Transformer.from_crs(ga.epsg, gb.epsg, always_xy=True)
    xb, yb = to_b.transform(np.full_like(ya, xa), ya)
    cb = np.clip(np.round((xb - gb.left) / PX - 0.5).astype(int), 0, gb.width - 1)
    rb = np.clip(np.round((gb.top - yb) / PX - 0.5).astype(int), 0, gb.height - 1)
    dist = np.hypot(gb.left + (cb + 0.5) * PX - xb, gb.top - (rb + 0.5) * PX - yb)
    ok = dist < PX  # B's nearest pixel centre is within one pixel of A's
    assert ok.sum() > 0.8 * ga.height
    va, vb = a[rows[ok], -1], b[rb[ok], cb[ok]]
    finite = np.isfinite(va).all(axis=1) & np.isfinite(vb).all(axis=1)
    matched = np.linalg.norm(va[finite] - vb[finite], axis=1)
    flat = a.reshape(-1, a.shape[-1])
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, len(flat), (2, 2000))
    random = np.linalg.norm(flat[i] - flat[j], axis=1)
    assert np.median(matched) < 0.2 * np.nanmedian(random)


def test_years_differ_a_little(small) -> None:
    base, _, _ = small
    key = year_tiles(SMALL, 2025)[0]
    a, b = _dequantised(base, key, 2024), _dequantised(base, key, 2025)
    ok = np.isfinite(a).all(axis=-1) & np.isfinite(b).all(axis=-1)
    a, b = a[ok], b[ok]
    assert not np.allclose(a, b)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.5


# --- determinism -------------------------------------------------------------------------------


def test_same_spec_gives_identical_bytes(small, tmp_path: Path) -> None:
    base, _, _ = small
    write_demo_archive(tmp_path, SMALL)
    files = sorted(p.relative_to(base) for p in base.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    for f in files:
        assert (base / f).read_bytes() == (tmp_path / f).read_bytes(), f


def test_seed_changes_values(tmp_path: Path) -> None:
    key = demo_tiles(SMALL)[0]
    write_tile(tmp_path / "a", key, 2024, SMALL)
    write_tile(tmp_path / "b", key, 2024, replace(SMALL, seed=1))
    a, b = (np.load(tile_paths(tmp_path / d, 2024, key.name).embeddings) for d in "ab")
    assert a.shape == b.shape and not np.array_equal(a, b)
