"""Shard assembly: the per-row runs that replace a full-shard mask, and both buffer orders."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from geotessera.build.assemble import assemble, row_runs
from geotessera.build.plan import plan_zones, shard_tasks
from geotessera.store.location import Location

from conftest import TEST_LAYOUT, scan


@given(arrays(np.bool_, st.tuples(st.integers(0, 12), st.integers(0, 12))))
def test_row_runs_cover_exactly_the_mask_with_maximal_runs(mask):
    rebuilt = np.zeros_like(mask)
    rows, starts, stops = row_runs(mask)
    for r, a, b in zip(rows, starts, stops, strict=True):
        assert a < b and mask[r, a:b].all() and not rebuilt[r, a:b].any()
        assert (a == 0 or not mask[r, a - 1]) and (b == mask.shape[1] or not mask[r, b])
        rebuilt[r, a:b] = True
    np.testing.assert_array_equal(rebuilt, mask)
    assert list(zip(rows, starts)) == sorted(zip(rows, starts))


def test_both_buffer_orders_hold_the_same_shard(archive):
    """The pixel-major buffer the build writes from equals the band-major one pixel for
    pixel, and the no-data rule holds in both (embeddings 0 where scales are NaN)."""
    plan = plan_zones(scan(archive).records, TEST_LAYOUT)[0]
    tasks = shard_tasks(plan, archive, Location.parse("unused.zarr"), TEST_LAYOUT)
    for task in tasks:
        pm, bm = assemble(task.spec, pixel_major=True), assemble(task.spec, pixel_major=False)
        assert pm.embeddings.base is not None and bm.embeddings.flags.c_contiguous
        np.testing.assert_array_equal(pm.embeddings, bm.embeddings)
        np.testing.assert_array_equal(pm.scales, bm.scales)
        assert not pm.embeddings[:, np.isnan(pm.scales)].any()
        assert pm.stats == bm.stats
    assert any(np.isfinite(assemble(t.spec, True).scales).any() for t in tasks)


def test_copying_in_row_blocks_gives_the_same_shard(archive, monkeypatch):
    """Tiles are mapped MAP_ROWS rows at a time; blocks smaller than a tile change nothing."""
    import geotessera.build.assemble as asm

    plan = plan_zones(scan(archive).records, TEST_LAYOUT)[0]
    tasks = shard_tasks(plan, archive, Location.parse("unused.zarr"), TEST_LAYOUT)
    whole = [assemble(t.spec, pixel_major=True) for t in tasks]
    assert max(p.core[0].height for t in tasks for p in t.spec.pieces if p.core) > 5
    monkeypatch.setattr(asm, "MAP_ROWS", 5)
    for t, w in zip(tasks, whole, strict=True):
        got = assemble(t.spec, pixel_major=True)
        np.testing.assert_array_equal(got.embeddings, w.embeddings)
        np.testing.assert_array_equal(got.scales, w.scales)


def test_released_rows_read_zero_and_the_others_are_kept(archive):
    """A pixel-major shard gives back the pages wholly inside released rows and no other."""
    import mmap

    plan = plan_zones(scan(archive).records, TEST_LAYOUT)[0]
    task = max(shard_tasks(plan, archive, Location.parse("unused.zarr"), TEST_LAYOUT),
               key=lambda t: np.isfinite(assemble(t.spec, True).scales).sum())
    data, keep = assemble(task.spec, pixel_major=True), assemble(task.spec, pixel_major=False)
    assert data.pages is not None and keep.pages is None
    row = data.embeddings[:, 0].nbytes  # 512 bytes here: 8 rows to a 4 KiB page
    page = mmap.PAGESIZE
    r0, r1 = 3, 3 + 3 * page // row  # starts and ends inside a page
    if r1 > data.scales.shape[0]:
        pytest.skip("pages larger than this small shard's rows")
    data.release_rows(r0, r1)
    gone = slice(-(-r0 * row // page) * page // row, r1 * row // page * page // row)
    assert r0 < gone.start < gone.stop < r1 and not data.embeddings[:, gone].any()
    assert keep.embeddings[:, gone].any()
    kept = np.ones(data.scales.shape[0], bool)
    kept[gone] = False
    np.testing.assert_array_equal(data.embeddings[:, kept], keep.embeddings[:, kept])
