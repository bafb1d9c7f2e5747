"""The preview made in the build's own shard tasks (``build/tasks.py``, ``build/stretch.py``):
byte for byte what the separate preview pass makes with the same stretch, for both L1 paths
(encoded quarters and the raw fallback) and both colour modes; a year's stretch from its
tiles, the same for any zone subset and executor; other stores of the year recoloured when
they record another stretch; resumed like the data."""

from __future__ import annotations

import hashlib
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import zarr

import geotessera.build.run as run_mod
from geotessera.archive import registry
from geotessera.build.run import build_stores
from geotessera.build.stretch import sampled_tiles, tile_stretch
from geotessera.errors import ShardWriteError
from geotessera.parallel import process_pool
from geotessera.pipeline import PreviewOptions, zarr_build
from geotessera.preview.run import run_preview_pass
from geotessera.store.location import Location
from geotessera.types import StoreLayout

from conftest import TEST_LAYOUT, scan

#: Half a shard (24 px) is not whole 16-px chunks: L1 is kept raw, not as encoded quarters.
RAW_L1 = StoreLayout(shard_px=48, chunk_px=16, scales_chunk_px=16, pixel_major=False)


def chunk_digests(out: Path) -> dict[str, str]:
    """SHA-256 of every chunk and shard object of every store in ``out``, by key."""
    found = {}
    for link in sorted(out.glob("utm*.zarr")):
        store = link.resolve()
        for p in sorted(store.rglob("*")):
            if p.is_file() and "/c/" in f"/{p.relative_to(store)}":
                found[f"{link.name}/{p.relative_to(store)}"] = hashlib.sha256(
                    p.read_bytes()).hexdigest()
    return found


@pytest.fixture(scope="module")
def registry_path(archive, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fused_registry") / "registry.parquet"
    registry.save(scan(archive).records, path)
    return path


def _stretches(archive, registry_path, mode="bands", workers=2):
    with ThreadPoolExecutor(workers) as pool:
        return {y: tile_stretch(Location.parse(archive), registry_path, y, pool, mode=mode)
                for y in (2024, 2025)}


@pytest.mark.parametrize("layout,mode,years", [
    (TEST_LAYOUT, "bands", None),  # the default, both years and zones: blosc parts
    (RAW_L1, "pca", [2024]),
    (TEST_LAYOUT.with_codec("zstd:3"), "bands", [2024]),  # parts hold zstd chunks
])
def test_fused_preview_equals_the_separate_pass(archive, registry_path, tmp_path, layout,
                                                mode, years):
    stretches = _stretches(archive, registry_path, mode)
    records = registry.load(registry_path, years)
    with process_pool(2) as pool:
        build_stores(archive, tmp_path / "fused", records, pool, layout=layout,
                     stretches=stretches, max_in_flight=3)
    with ThreadPoolExecutor(2) as pool:
        build_stores(archive, tmp_path / "apart", records, pool, layout=layout)
        run_preview_pass(tmp_path / "apart", pool, stretches=stretches)
    fused, apart = chunk_digests(tmp_path / "fused"), chunk_digests(tmp_path / "apart")
    levels = {k.split("/")[1] for k in fused}
    assert {"L0", "L1", "L2"} <= levels  # overviews below L1 really exist here
    assert any("/rgba/" in k for k in fused) and any(k.startswith(("utm30", "utm31"))
                                                     for k in fused)
    assert fused == apart
    for link in (tmp_path / "fused").glob("utm*.zarr"):
        for consolidated in (False, True):
            attrs = zarr.open_group(str(link), mode="r", use_consolidated=consolidated).attrs
            assert attrs["geotessera:rgb_complete"] is True
            year = int(attrs["geotessera:year"])
            assert attrs["geotessera:stretch"] == stretches[year].to_attrs()


def test_tile_stretch_depends_on_the_year_and_seed_only(archive, registry_path):
    one, two = _stretches(archive, registry_path, workers=1), _stretches(archive, registry_path)
    assert one == two
    assert one[2024] != one[2025] and one[2024].source == "tiles"
    assert one[2024].sample_pixels > 1000
    tiles = sampled_tiles(registry_path, 2024, 3, seed=0)
    assert len(tiles) == 3 and len({t.zone for t in sampled_tiles(registry_path, 2024, 99,
                                                                   seed=0)}) == 2
    assert tiles == sampled_tiles(registry_path, 2024, 3, seed=0)
    assert tiles != sampled_tiles(registry_path, 2024, 3, seed=1)


def test_zone_rebuild_keeps_one_stretch_per_year(archive, tmp_path):
    base = tmp_path / "archive"
    shutil.copytree(archive, base)
    out = tmp_path / "out"
    opts = dict(layout=TEST_LAYOUT, expected_bands=8, catalog=False)
    with ThreadPoolExecutor(2) as pool:
        first = zarr_build(base, out, pool, **opts)
        tile = first.preview.stretches
        assert sorted((s.zone, s.year) for s in first.preview.stores) == [
            (30, 2024), (30, 2025), (31, 2024), (31, 2025)]
        # zone 31 of 2024 recoloured by the separate pass with another stretch …
        run_preview_pass(out, pool, years=[2024], zones=[31], mode="pca")
        assert _stretch(out, 31, 2024) != tile[2024].to_attrs()
        again = zarr_build(base, out, pool, zones=frozenset({30}), **opts)
    # … is coloured again with the year's tile stretch when zone 30 is rebuilt; 2025 agrees
    assert again.preview.stretches == tile
    recoloured = {(s.zone, s.year): s.up_to_date for s in again.preview.stores}
    assert recoloured == {(30, 2024): False, (30, 2025): False, (31, 2024): False,
                          (31, 2025): True}
    for zone in (30, 31):
        for year in (2024, 2025):
            assert _stretch(out, zone, year) == tile[year].to_attrs()


def _stretch(out: Path, zone: int, year: int) -> dict:
    return dict(zarr.open_group(str(out / f"utm{zone}_{year}.zarr"), mode="r").attrs)[
        "geotessera:stretch"]


def test_an_interrupted_fused_build_resumes_to_the_same_bytes(archive, registry_path,
                                                             tmp_path, monkeypatch):
    stretches = _stretches(archive, registry_path)
    records = [r for r in registry.load(registry_path, [2024], [31])]

    def run(out, resume=False):
        with ThreadPoolExecutor(1) as pool:
            return build_stores(archive, out, records, pool, layout=TEST_LAYOUT,
                                stretches=stretches, resume=resume)

    run(tmp_path / "clean")
    real, calls = run_mod.write_shard, [0]

    def failing(task):
        calls[0] += 1
        if calls[0] > 2:
            raise OSError(5, "injected failure")
        return real(task)

    monkeypatch.setattr(run_mod, "write_shard", failing)
    with pytest.raises(ShardWriteError):
        run(tmp_path / "resumed")
    monkeypatch.undo()
    journal = next((tmp_path / "resumed" / "utm31_2024").glob("*.journal"), None)
    recs = [json.loads(p.read_text()) for p in journal.glob("*_*.json")] if journal else []
    assert len(recs) == 2 and all(r["l1_valid"] >= 0 and r["shards"] for r in recs)
    result = run(tmp_path / "resumed", resume=True).results[0]
    assert result.resumed_shards == sum(len(r["shards"]) for r in recs) > 0
    assert chunk_digests(tmp_path / "resumed") == chunk_digests(tmp_path / "clean")


def test_every_overview_level_is_joined_from_parts_and_no_chunk_is_read_back(
        archive, registry_path, tmp_path, monkeypatch):
    import geotessera.preview.overviews as ov
    from zarr.storage import LocalStore

    stretches = _stretches(archive, registry_path)
    records = registry.load(registry_path, [2024], [30])
    levels_made, chunk_reads = [], []
    real, get, partial = ov.overview_shard, LocalStore.get, LocalStore.get_partial_values

    def counted(task):
        levels_made.append(task.level)
        return real(task)

    async def counted_get(store, key, *args, **kwargs):
        chunk_reads.append(key) if "/c/" in key else None
        return await get(store, key, *args, **kwargs)

    async def counted_partial(store, prototype, key_ranges):
        key_ranges = list(key_ranges)
        chunk_reads.extend(k for k, _ in key_ranges if "/c/" in k)
        return await partial(store, prototype, key_ranges)

    monkeypatch.setattr(ov, "overview_shard", counted)
    monkeypatch.setattr(LocalStore, "get", counted_get)
    monkeypatch.setattr(LocalStore, "get_partial_values", counted_partial)
    with ThreadPoolExecutor(2) as pool:
        result = build_stores(archive, tmp_path / "out", records, pool, layout=TEST_LAYOUT,
                              stretches=stretches).results[0]
    assert [lv.level for lv in result.preview_levels] == [0, 1, 2, 3]
    assert all(lv.shards > 0 for lv in result.preview_levels[2:])
    assert levels_made == [] and chunk_reads == []
    # the parts went with the journal when the store was published
    assert not list((tmp_path / "out" / "utm30_2024").glob("*.journal"))


def test_a_journal_record_naming_another_blocks_part_is_refused(tmp_path):
    from geotessera.errors import StoreError
    from geotessera.store.publish import read_journal

    journal = Location.parse(tmp_path / "v.journal")
    rec = {"row": 0, "col": 1, "valid": 1, "bytes_in": 1, "stats": [], "objects": [],
           "parts": [["parts/L2/../../../evil.part", 1, 1]]}
    journal.write("0_1.json", json.dumps(rec).encode())
    with pytest.raises(StoreError, match="0_1.json.*a part not of block"):
        read_journal(journal)
    rec["parts"] = [["parts/L2/0_1.part", 1, 1]]
    journal.write("0_1.json", json.dumps(rec).encode())
    journal.write("parts/L2/0_1.part", b"x")
    assert read_journal(journal)[(0, 1)]["parts"] == [("parts/L2/0_1.part", 1, 1)]
