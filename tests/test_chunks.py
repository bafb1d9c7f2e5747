"""Dask chunks of ``open_store``: aligned to shards (or to inner chunks inside one shard) and
nearest dask's 128 MiB once dequantised; what plain xarray does with the same store."""

from __future__ import annotations

import math

import pytest
import xarray as xr
from hypothesis import given
from hypothesis import strategies as st

from geotessera.read import open_store
from geotessera.read.api import TARGET_CHUNK_BYTES, chunk_edge


def test_real_layout_gives_a_quarter_shard_of_128_mib():
    edge = chunk_edge(128, 1024, 32)
    assert edge == 512 and 128 * edge * edge * 4 == TARGET_CHUNK_BYTES


@given(bands=st.integers(1, 512), shard_exp=st.integers(4, 12), inner_exp=st.integers(2, 12))
def test_chunk_edge_is_aligned_and_nearest_the_target(bands, shard_exp, inner_exp):
    shard, inner = 1 << shard_exp, 1 << min(inner_exp, shard_exp)
    edge = chunk_edge(bands, shard, inner)
    assert edge % shard == 0 or (shard % edge == 0 and edge % inner == 0)  # aligned

    def off(e: int) -> float:
        return abs(math.log(bands * e * e * 4 / TARGET_CHUNK_BYTES))

    for e in (edge * 2, edge // 2):  # no aligned neighbour is nearer the target
        if e and (e % shard == 0 or (shard % e == 0 and e % inner == 0)):
            assert off(edge) <= off(e)


def test_open_store_default_chunks(built):
    store = built / "utm31_2024.zarr"
    ds = open_store(store)
    edge = chunk_edge(8, 64, 16)  # the test layout: 8 bands, 64-pixel shards, 16 inner
    assert ds.embeddings.chunks[1][0] == min(edge, ds.sizes["y"])
    assert ds.embeddings.chunks[2][0] == min(edge, ds.sizes["x"])
    assert open_store(store, chunks="shards").embeddings.chunks[1][0] == 64


def test_plain_xarray_follows_the_inner_chunks(built):
    """What the format lets plain xarray see: xarray (2025+) takes a sharded array's inner
    chunks as its preferred chunks, so ``xr.open_zarr`` gets one dask chunk per 16 × 16 inner
    chunk here (32 × 32 on real stores); the STAC asset's ``xarray:open_kwargs`` and
    ``open_store`` pass whole-shard or 128 MiB chunks instead."""
    ds = xr.open_zarr(built / "utm31_2024.zarr", group="L0")
    assert ds.embeddings.encoding["preferred_chunks"] == {"band": 8, "y": 16, "x": 16}
    assert ds.embeddings.encoding["shards"] == (8, 64, 64)
    assert ds.embeddings.chunks[1][0] == 16
