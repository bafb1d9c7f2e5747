"""The streamed shard writer produces exactly the bytes zarr writes for the same array."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from zarr.codecs import TransposeCodec, ZstdCodec

from geotessera.store import write_embeddings_shard


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("empty", ["none", "some", "all"])
def test_streamed_shard_is_byte_identical_to_zarr(tmp_path, transpose, empty):
    rng = np.random.default_rng(7)
    block = rng.integers(-127, 128, (8, 64, 64), dtype=np.int8)
    block[:, :16, :] //= 9  # smoother part, compresses differently
    if empty == "some":
        block[:, 32:48, 16:32] = 0
        block[:, 48:, 48:] = 0
    elif empty == "all":
        block[:] = 0
    arrays = []
    for name in ("zarr", "ours"):
        arr = zarr.create_array(str(tmp_path / name), shape=(8, 128, 128), dtype="int8",
                                chunks=(8, 16, 16), shards=(8, 64, 64), fill_value=0,
                                compressors=ZstdCodec(level=3),
                                filters=[TransposeCodec(order=(1, 2, 0))] if transpose else None)
        arrays.append(arr)
    arrays[0][:, 64:, :64] = block
    write_embeddings_shard(arrays[1], 1, 0, block)
    a, b = (tmp_path / n / "c/0/1/0" for n in ("zarr", "ours"))
    assert a.exists() == b.exists() == (empty != "all")
    if empty != "all":
        assert a.read_bytes() == b.read_bytes()
    np.testing.assert_array_equal(arrays[1][:, 64:, :64], block)
    assert not list((tmp_path / "ours").rglob("*.tmp"))


def test_an_all_fill_shard_removes_an_old_object(tmp_path):
    arr = zarr.create_array(str(tmp_path / "a"), shape=(4, 32, 32), dtype="int8",
                            chunks=(4, 16, 16), shards=(4, 32, 32), fill_value=0,
                            compressors=ZstdCodec(level=3))
    write_embeddings_shard(arr, 0, 0, np.ones((4, 32, 32), np.int8))
    assert (tmp_path / "a/c/0/0/0").exists()
    write_embeddings_shard(arr, 0, 0, np.zeros((4, 32, 32), np.int8))
    assert not (tmp_path / "a/c/0/0/0").exists()
    assert not arr[:].any()
