"""The direct point reader returns exactly what zarr returns, and refuses what it cannot read."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from zarr.codecs import TransposeCodec, ZstdCodec

from geotessera.errors import StoreError
from geotessera.store.pointread import PointReader
from geotessera.store.location import Location


def _array(tmp_path, transpose):
    arr = zarr.create_array(str(tmp_path / "e"), shape=(8, 128, 96), dtype="int8",
                            chunks=(8, 16, 16), shards=(8, 64, 32), fill_value=0,
                            compressors=ZstdCodec(level=3),
                            filters=[TransposeCodec(order=(1, 2, 0))] if transpose else None)
    rng = np.random.default_rng(3)
    for sr in range(2):
        for sc in range(3):
            block = rng.integers(-100, 100, (8, 64, 32), dtype=np.int8)
            block[:, :16] = 0  # some inner chunks stay empty
            if (sr, sc) != (1, 2):  # and one whole shard is never written
                arr[:, sr * 64:(sr + 1) * 64, sc * 32:(sc + 1) * 32] = block
    return arr


@pytest.mark.parametrize("transpose", [False, True])
def test_vectors_equal_zarr_vindex(tmp_path, transpose):
    arr = _array(tmp_path, transpose)
    rng = np.random.default_rng(5)
    rows, cols = rng.integers(0, 128, 500), rng.integers(0, 96, 500)
    got = PointReader.open(Location.parse(tmp_path), "e").vectors(rows, cols)
    bands = np.arange(8)
    want = arr.vindex[bands[:, None], rows[None, :], cols[None, :]].T
    np.testing.assert_array_equal(got, want)
    assert not got[rows >= 64][cols[rows >= 64] >= 64].any()  # the unwritten shard reads 0


def test_a_corrupt_index_is_an_error_naming_the_shard(tmp_path):
    arr = _array(tmp_path, False)
    shard = tmp_path / "e/c/0/0/0"
    data = bytearray(shard.read_bytes())
    data[-10] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="c/0/0/0: shard index checksum"):
        PointReader.open(Location.parse(tmp_path), "e").vectors(np.array([20]), np.array([5]))


def test_other_layouts_are_not_claimed(tmp_path):
    plain = zarr.create_array(str(tmp_path / "p"), shape=(8, 32, 32), dtype="int8",
                              chunks=(8, 16, 16))
    assert PointReader.open(Location.parse(tmp_path), "p") is None
    split = zarr.create_array(str(tmp_path / "s"), shape=(8, 32, 32), dtype="int8",
                              chunks=(4, 16, 16), shards=(8, 32, 32))
    assert split is not None and PointReader.open(Location.parse(tmp_path), "s") is None
