"""The shard encoder writes exactly the bytes zarr writes for the same array metadata."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from hypothesis import given
from hypothesis import strategies as st
from zarr.codecs import TransposeCodec, ZstdCodec

from geotessera.store.location import Location
from geotessera.store.shardio import (
    MISSING,
    ShardLayout,
    encode_shard,
    morton_order,
    read_layout,
    write_shard,
)


def _array(where, transpose=False, shape=(8, 128, 128), shards=(8, 64, 64), compress=True):
    return zarr.create_array(str(where), shape=shape, dtype="int8",
                             chunks=(shape[0], 16, 16), shards=shards, fill_value=0,
                             compressors=ZstdCodec(level=3) if compress else None,
                             filters=[TransposeCodec(order=(1, 2, 0))] if transpose else None)


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("empty", ["none", "some", "all"])
def test_written_shard_is_byte_identical_to_zarr(tmp_path, transpose, empty, compress):
    rng = np.random.default_rng(7)
    block = rng.integers(-127, 128, (8, 64, 64), dtype=np.int8)
    block[:, :16, :] //= 9  # smoother part, compresses differently
    if empty == "some":
        block[:, 32:48, 16:32] = 0
        block[:, 48:, 48:] = 0
    elif empty == "all":
        block[:] = 0
    theirs, ours = (_array(tmp_path / n, transpose, compress=compress) for n in ("zarr", "ours"))
    theirs[:, 64:, :64] = block
    layout = read_layout(Location.parse(tmp_path), "ours")
    assert (layout.zstd_level is None) == (not compress)
    write_shard(Location.parse(tmp_path), "ours", (0, 1, 0), block, layout)
    a, b = (tmp_path / n / "c/0/1/0" for n in ("zarr", "ours"))
    assert a.exists() == b.exists() == (empty != "all")
    if empty != "all":
        assert a.read_bytes() == b.read_bytes()
    np.testing.assert_array_equal(ours[:, 64:, :64], block)
    assert not list((tmp_path / "ours").rglob("*.tmp"))


def test_an_all_fill_shard_removes_an_old_object(tmp_path):
    arr = _array(tmp_path / "a", shape=(4, 32, 32), shards=(4, 32, 32))
    loc = Location.parse(tmp_path)
    layout = read_layout(loc, "a")
    write_shard(loc, "a", (0, 0, 0), np.ones((4, 32, 32), np.int8), layout)
    assert (tmp_path / "a/c/0/0/0").exists()
    write_shard(loc, "a", (0, 0, 0), np.zeros((4, 32, 32), np.int8), layout)
    assert not (tmp_path / "a/c/0/0/0").exists()
    assert not arr[:].any()


def test_other_layouts_are_not_claimed(tmp_path):
    zarr.create_array(str(tmp_path / "p"), shape=(8, 32, 32), dtype="int8", chunks=(8, 16, 16))
    zarr.create_array(str(tmp_path / "f"), shape=(8, 32, 32), dtype="float32",
                      chunks=(8, 16, 16), shards=(8, 32, 32))
    loc = Location.parse(tmp_path)
    assert read_layout(loc, "p") is None and read_layout(loc, "f") is None


@given(st.lists(st.integers(1, 9), min_size=1, max_size=3))
def test_morton_order_visits_every_chunk_once(grid):
    """(That it is zarr's order is shown by the byte-identity test above.)"""
    grid = tuple(grid)
    order = morton_order(grid)
    assert sorted(order) == sorted(np.ndindex(*grid))
    # compressed Morton: along any single axis the order is increasing
    for axis in range(len(grid)):
        line = [c for c in order if all(v == 0 for i, v in enumerate(c) if i != axis)]
        assert [c[axis] for c in line] == sorted(c[axis] for c in line)


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("threads", [1, 2, 5])
def test_threads_and_skip_do_not_change_the_bytes(transpose, threads):
    """Chunks encoded on threads come out in the spec's order; naming all-fill chunks as
    skippable changes nothing (they are omitted either way)."""
    rng = np.random.default_rng(3)
    block = rng.integers(-9, 10, (8, 64, 64), dtype=np.int8)
    block[:, 16:48, :32] = 0  # chunks (1, 0), (2, 0), (1, 1), (2, 1) at 16 px are fill
    layout = ShardLayout((8, 64, 64), (8, 64, 64), (8, 16, 16), "int8", 3,
                         (1, 2, 0) if transpose else None)
    serial = b"".join(encode_shard(block, layout, threads=1))
    skip = np.zeros((1, 4, 4), bool)
    skip[0, 1:3, 0:2] = True
    assert b"".join(encode_shard(block, layout, threads=threads)) == serial
    assert b"".join(encode_shard(block, layout, threads=threads, skip=skip)) == serial
    index = np.frombuffer(serial[-layout.index_nbytes:-4], "<u8").reshape(1, 4, 4, 2)
    assert (index[0, 1:3, 0:2] == MISSING).all() and (index[0, 0, :] != MISSING).all()
