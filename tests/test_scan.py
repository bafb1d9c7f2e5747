"""Scanning an archive into registry rows: clean tiles, incremental rescans, every problem."""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import archive_fixtures
from rasterio.crs import CRS

from geotessera.archive.demo import DemoSpec
from geotessera.errors import ArchiveError
from geotessera.archive.scan import scan_archive, update_registry
from geotessera.tiles import EMBEDDINGS_DIR, LANDMASKS_DIR, parse_tile_name, tile_grid, tile_paths

#: Four tiles (zones 30 and 31, both hemispheres), 4 bands, about 28 x 28 pixels each.
SPEC = DemoSpec(pixel_size=400.0, bands=4, lon_min=-0.1, lon_max=0.1, lat_min=-0.1,
                lat_max=0.1, years=(2024,))
NAMES = ["grid_-0.05_-0.05", "grid_-0.05_0.05", "grid_0.05_-0.05", "grid_0.05_0.05"]
TILE = "grid_0.05_0.05"  # the tile the problem tests damage


pristine, base = archive_fixtures(SPEC, "scan_archive", "base")


def scan(base: Path, **kw):
    with ThreadPoolExecutor(4) as pool:
        return scan_archive(base, pool, expected_bands=SPEC.bands, **kw)


def paths(base: Path, name: str = TILE, year: int = 2024):
    return tile_paths(base, year, name)


def rel(base: Path, path: Path) -> str:
    return str(path.relative_to(base))


def test_clean_archive_gives_one_consistent_row_per_tile_year(pristine):
    result = scan(pristine)
    assert sorted(r.name for r in result.records) == NAMES
    assert result.problems == [] and result.ignored == ()
    assert (result.reread, result.reused) == (4, 0)
    for r in result.records:
        key = parse_tile_name(r.name)
        grid = tile_grid(key, SPEC.pixel_size)
        assert (r.year, r.lon_i, r.lat_i, r.epsg, r.zone) == (
            2024, key.lon_i, key.lat_i, grid.epsg, grid.zone)
        assert (r.height, r.width, r.bands, r.scales_ndim) == (grid.height, grid.width, 4, 2)
        assert r.transform == grid.transform and r.pixel_size == SPEC.pixel_size
        assert r.grid == grid and r.usable
        p = paths(pristine, r.name)
        assert np.load(p.embeddings, mmap_mode="r").shape == (r.height, r.width, r.bands)
        assert r.embeddings_size == p.embeddings.stat().st_size
        assert r.scales_mtime == p.scales.stat().st_mtime_ns
        assert r.landmask_path == rel(pristine, p.landmask)
    assert {r.epsg for r in result.records} == {32630, 32730, 32631, 32731}


def test_rescan_reuses_unchanged_rows_and_rereads_a_touched_one(base):
    first = scan(base)
    second = scan(base, previous=first.records)
    assert (second.reread, second.reused) == (0, 4)
    assert set(second.records) == set(first.records)

    scales = paths(base).scales
    data = np.load(scales)
    np.save(scales, data)  # same bytes, new file
    mtime = first_mtime = next(r.scales_mtime for r in first.records if r.name == TILE)
    os.utime(scales, ns=(mtime + 5_000_000_000, mtime + 5_000_000_000))
    third = scan(base, previous=second.records)
    assert (third.reread, third.reused) == (1, 3)
    row = next(r for r in third.records if r.name == TILE)
    assert row.scales_mtime == first_mtime + 5_000_000_000 and row.usable


def test_update_registry_round_trips_through_the_file(base, tmp_path):
    """Second run reuses every row from registry.parquet (so ns mtimes survive the file)."""
    reg = tmp_path / "registry.parquet"
    with ThreadPoolExecutor(2) as pool:
        first = update_registry(base, reg, pool, expected_bands=SPEC.bands)
        second = update_registry(base, reg, pool, expected_bands=SPEC.bands)
    assert (first.reread, second.reread, second.reused) == (4, 0, 4)


def test_rows_with_problems_are_reread(base):
    emb = paths(base).embeddings
    emb.write_bytes(emb.read_bytes()[:-10])
    first = scan(base)
    assert len(first.problems) == 1
    second = scan(base, previous=first.records)
    assert (second.reread, second.reused) == (1, 3)
    assert second.problems == first.problems


# --- one damaged file at a time -----------------------------------------------------------


def _truncate_embeddings(base):
    p = paths(base).embeddings
    p.write_bytes(p.read_bytes()[:-100])
    return p, "truncated"


def _float_embeddings(base):
    p = paths(base).embeddings
    np.save(p, np.load(p).astype(np.float32))
    return p, "dtype float32, expected int8"


def _wrong_band_count(base):
    p = paths(base).embeddings
    np.save(p, np.load(p)[:, :, :3])
    return p, "3 bands, expected 4"


def _scales_shape_mismatch(base):
    p = paths(base).scales
    np.save(p, np.load(p)[:-1])
    return p, "does not match embeddings"


def _trailing_bytes(base):
    p = paths(base).embeddings
    p.write_bytes(p.read_bytes() + b"xx")
    return p, "2 unexpected trailing bytes"


def _embeddings_not_tile_sized(base):
    """Embeddings and scales agree with each other but not with the tile's grid."""
    e, s = paths(base).embeddings, paths(base).scales
    np.save(e, np.load(e)[:-1])
    np.save(s, np.load(s)[:-1])
    return e, "but the tile grid is"


def _missing_scales(base):
    p = paths(base).scales
    p.unlink()
    return p, "file missing"


def _missing_landmask(base):
    p = paths(base).landmask
    p.unlink()
    return p, "file missing"


def _rewrite_landmask(base, **changes):
    p = paths(base).landmask
    with rasterio.open(p) as src:
        profile, data = src.profile, src.read(1)
    profile.update(changes)
    p.unlink()
    with rasterio.open(p, "w", **profile) as dst:
        dst.write(data, 1)
    return p


def _landmask_not_a_tiff(base):
    p = paths(base).landmask
    p.write_bytes(b"garbage" * 100)
    return p, "unreadable landmask"


def _landmask_wrong_crs(base):
    return _rewrite_landmask(base, crs=CRS.from_epsg(32630)), "landmask CRS EPSG:32630"


def _landmask_shifted(base):
    with rasterio.open(paths(base).landmask) as src:
        t = src.transform
    shifted = rasterio.Affine(t.a, t.b, t.c + 2 * t.a, t.d, t.e, t.f)
    return _rewrite_landmask(base, transform=shifted), "does not match expected"


@pytest.mark.parametrize("damage", [
    _truncate_embeddings, _float_embeddings, _wrong_band_count, _scales_shape_mismatch,
    _trailing_bytes, _embeddings_not_tile_sized, _missing_scales, _missing_landmask,
    _landmask_not_a_tiff, _landmask_wrong_crs, _landmask_shifted,
])  # fmt: skip
def test_problem_names_the_damaged_file(base, damage):
    path, message = damage(base)
    result = scan(base)
    assert len(result.records) == 4
    assert result.problems == [(rel(base, path), result.problems[0][1])]
    assert message in result.problems[0][1]
    bad = next(r for r in result.records if r.name == TILE)
    assert not bad.usable and bad.problem_path == rel(base, path)
    assert bad.transform is None and bad.bands is None  # no half-filled grid on a bad row
    assert all(r.usable for r in result.records if r.name != TILE)


def test_tile_not_centred_at_x5(base):
    old = base / EMBEDDINGS_DIR / "2024" / TILE
    new_name = "grid_0.10_0.05"
    new = old.with_name(new_name)
    old.rename(new)
    for f in new.iterdir():
        f.rename(new / f.name.replace(TILE, new_name))
    result = scan(base)
    assert [(p, "not at .x5" in m) for p, m in result.problems] == [
        (rel(base, paths(base, new_name).embeddings), True)]


def test_same_tile_under_two_spellings_flags_both(base):
    alias = "grid_0.050_0.050"
    src = base / EMBEDDINGS_DIR / "2024" / TILE
    dst = src.with_name(alias)
    shutil.copytree(src, dst)
    for f in dst.iterdir():
        f.rename(dst / f.name.replace(TILE, alias))
    shutil.copy(base / LANDMASKS_DIR / f"{TILE}.tiff", base / LANDMASKS_DIR / f"{alias}.tiff")
    result = scan(base)
    assert len(result.records) == 5
    dups = {r.name: r.duplicate_of for r in result.records if r.duplicate_of}
    assert dups == {TILE: alias, alias: TILE}
    assert all(r.problem is None for r in result.records)  # both spellings read fine
    assert sorted(p for p, _ in result.problems) == sorted(
        rel(base, paths(base, n).embeddings) for n in (TILE, alias))
    assert all("same tile and year" in m for _, m in result.problems)
    shutil.rmtree(dst)  # once the alias is gone, the reused row is clean again
    again = scan(base, previous=result.records)
    assert (again.reread, again.problems) == (0, [])


def test_unparsable_names_are_ignored_not_rows(base):
    (base / EMBEDDINGS_DIR / "2024" / "notatile").mkdir()
    (base / EMBEDDINGS_DIR / "2024" / "README.txt").write_text("hi")
    (base / EMBEDDINGS_DIR / "misc").mkdir()
    result = scan(base)
    assert sorted(result.ignored) == sorted([
        f"{EMBEDDINGS_DIR}/2024/notatile", f"{EMBEDDINGS_DIR}/2024/README.txt",
        f"{EMBEDDINGS_DIR}/misc"])
    assert sorted(r.name for r in result.records) == NAMES
    assert result.problems == []


def test_three_dimensional_scales_are_accepted(base):
    p = paths(base).scales
    s = np.load(p)
    np.save(p, np.repeat(s[:, :, None], SPEC.bands, axis=2))
    result = scan(base)
    assert result.problems == []
    assert {r.name: r.scales_ndim for r in result.records}[TILE] == 3


def test_rows_of_years_not_scanned_are_carried_over(base):
    """With ``years=``, rows of other years come from ``previous`` untouched, unread."""
    shutil.copytree(base / EMBEDDINGS_DIR / "2024", base / EMBEDDINGS_DIR / "2025")
    first = scan(base)
    assert len(first.records) == 8 and first.problems == []
    emb = paths(base, year=2025).embeddings
    emb.write_bytes(emb.read_bytes()[:-10])  # would be a problem if 2025 were read again
    second = scan(base, years=[2024], previous=first.records)
    assert set(second.records) == set(first.records)
    assert (second.reread, second.reused) == (0, 4)
    assert scan(base, years=[2025], previous=first.records).problems == [
        (rel(base, emb), next(m for _, m in scan(base).problems))]


def test_year_filter_without_previous_gives_only_that_year(base):
    shutil.copytree(base / EMBEDDINGS_DIR / "2024", base / EMBEDDINGS_DIR / "2025")
    assert {r.year for r in scan(base, years=[2025]).records} == {2025}


def test_base_without_embeddings_dir_is_archive_error(tmp_path):
    with pytest.raises(ArchiveError) as e:
        scan(tmp_path)
    assert e.value.path == str(tmp_path / EMBEDDINGS_DIR)


def test_update_registry_with_zones_reads_and_rewrites_only_those_partitions(base, tmp_path,
                                                                               monkeypatch):
    from geotessera.archive import registry

    reg = tmp_path / "registry.parquet"
    with ThreadPoolExecutor(4) as pool:
        first = update_registry(base, reg, pool, expected_bands=SPEC.bands)
    assert registry.partitions(reg) == [(2024, 30), (2024, 31)]
    zone30 = reg / "year=2024" / "zone=30" / "part-0.parquet"
    zone30.write_bytes(b"not parquet")  # never opened by a zone-31 scan
    loaded = []
    real = registry.from_table
    monkeypatch.setattr(registry, "from_table", lambda t: loaded.append(t.num_rows) or real(t))
    with ThreadPoolExecutor(4) as pool:
        again = update_registry(base, reg, pool, zones=[31], expected_bands=SPEC.bands)
    assert loaded == [2]  # the two zone-31 rows, nothing else
    assert (again.reread, again.reused) == (0, 2)
    assert {r.zone for r in again.records} == {31}
    assert zone30.read_bytes() == b"not parquet"  # outside the scope: left alone
    assert len(first.records) == 4


def test_update_registry_migrates_a_single_file_registry(base, tmp_path):
    import pyarrow.parquet as pq

    from geotessera.archive import registry

    reg = tmp_path / "registry.parquet"
    rows = list(scan(base).records)
    pq.write_table(registry.to_table(rows), reg)  # the version 1 layout: one file
    with ThreadPoolExecutor(4) as pool:
        result = update_registry(base, reg, pool, expected_bands=SPEC.bands)
    assert (result.reread, result.reused) == (0, 4)  # the old rows were reused
    assert reg.is_dir() and (tmp_path / "registry.parquet.v1").is_file()
    assert registry.load(reg) == rows


def test_zarr_build_with_zones_reads_only_that_zone(base, tmp_path, monkeypatch):
    """``zarr-build --zones 31``: the scan and the planner open only zone 31's partition
    (zone 30's is garbage here), and one store is built."""
    from geotessera.archive import registry
    from geotessera.pipeline import zarr_build
    from geotessera.types import StoreLayout

    reg = tmp_path / "registry.parquet"
    with ThreadPoolExecutor(4) as pool:
        update_registry(base, reg, pool, expected_bands=SPEC.bands)
    (reg / "year=2024" / "zone=30" / "part-0.parquet").write_bytes(b"garbage")
    loaded = []
    real = registry.from_table
    monkeypatch.setattr(registry, "from_table", lambda t: loaded.append(t.num_rows) or real(t))
    with ThreadPoolExecutor(2) as pool:
        report = zarr_build(base, tmp_path / "out", pool, zones=frozenset({31}), registry=reg,
                            expected_bands=SPEC.bands, layout=StoreLayout(shard_px=32,
                            chunk_px=16, scales_chunk_px=16), preview=None, catalog=False)
    assert [s["store"] for s in report.build.summaries] == ["utm31_2024.zarr"]
    assert set(loaded) == {2}  # every read was zone 31's two rows
    assert sorted(p.name for p in (tmp_path / "out").glob("utm*.zarr")) == ["utm31_2024.zarr"]
