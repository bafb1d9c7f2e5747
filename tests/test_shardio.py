"""The shard encoder writes exactly the bytes zarr writes for the same array metadata, with
zstd, blosc (zstd inside) or no compressor, and the decoder reads back what zarr reads."""

from __future__ import annotations

import numcodecs.blosc
import numpy as np
import pytest
import zarr
from hypothesis import given
from hypothesis import strategies as st
from zarr.codecs import BloscCodec, TransposeCodec

from conftest import zarr_compressor

from geotessera.store.location import Location
from geotessera.store.shardio import (
    MISSING,
    ShardLayout,
    decode_chunk,
    encode_chunks,
    encode_shard,
    morton_order,
    read_layout,
    write_shard,
)
from geotessera.types import BloscZstd, parse_codec

CODECS = ["zstd:3", "none", "blosc-zstd:2:bitshuffle", "blosc-zstd:5:noshuffle",
          "blosc-zstd:1:shuffle"]


def _array(where, transpose=False, shape=(8, 128, 128), shards=(8, 64, 64), codec="zstd:3",
           chunk=16):
    chunks = (shape[0], chunk, chunk)
    return zarr.create_array(str(where), shape=shape, dtype="int8",
                             chunks=chunks, shards=shards, fill_value=0,
                             compressors=zarr_compressor(codec, chunks),
                             filters=[TransposeCodec(order=(1, 2, 0))] if transpose else None)


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("empty", ["none", "some", "all"])
def test_written_shard_is_byte_identical_to_zarr(tmp_path, transpose, empty, codec):
    rng = np.random.default_rng(7)
    block = rng.integers(-127, 128, (8, 64, 64), dtype=np.int8)
    block[:, :16, :] //= 9  # smoother part, compresses differently
    if empty == "some":
        block[:, 32:48, 16:32] = 0
        block[:, 48:, 48:] = 0
    elif empty == "all":
        block[:] = 0
    theirs, ours = (_array(tmp_path / n, transpose, codec=codec) for n in ("zarr", "ours"))
    theirs[:, 64:, :64] = block
    layout = read_layout(Location.parse(tmp_path), "ours")
    choice = parse_codec(codec)
    assert layout.blosc == (choice if isinstance(choice, BloscZstd) else None)
    assert layout.zstd_level == (None if layout.blosc else choice)
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


@pytest.mark.parametrize("config", [
    {"blocksize": 0},  # blosc's automatic blocks: bytes that depend on its threads
    {"cname": "lz4"},
    {"typesize": 2},
])
def test_blosc_layouts_this_module_does_not_write_are_not_claimed(tmp_path, config):
    """(zarr reads them; the tool's readers then go through zarr.)"""
    blosc = {"typesize": 1, "cname": "zstd", "clevel": 3, "shuffle": "bitshuffle",
             "blocksize": 8 * 16 * 16, **config}
    zarr.create_array(str(tmp_path / "b"), shape=(8, 32, 32), dtype="int8", chunks=(8, 16, 16),
                      shards=(8, 32, 32), compressors=BloscCodec(**blosc))
    loc = Location.parse(tmp_path)
    assert read_layout(loc, "b") is None


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


@pytest.mark.parametrize("codec", ["zstd:3", "blosc-zstd:2:bitshuffle"])
@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("threads", [1, 2, 5])
def test_threads_and_skip_do_not_change_the_bytes(transpose, threads, codec):
    """Chunks encoded on threads come out in the spec's order; naming all-fill chunks as
    skippable changes nothing (they are omitted either way)."""
    rng = np.random.default_rng(3)
    block = rng.integers(-9, 10, (8, 64, 64), dtype=np.int8)
    block[:, 16:48, :32] = 0  # chunks (1, 0), (2, 0), (1, 1), (2, 1) at 16 px are fill
    choice = parse_codec(codec)
    blosc = choice if isinstance(choice, BloscZstd) else None
    layout = ShardLayout((8, 64, 64), (8, 64, 64), (8, 16, 16), "int8",
                         None if blosc else choice, (1, 2, 0) if transpose else None,
                         blosc=blosc)
    serial = b"".join(encode_shard(block, layout, threads=1))
    skip = np.zeros((1, 4, 4), bool)
    skip[0, 1:3, 0:2] = True
    assert b"".join(encode_shard(block, layout, threads=threads)) == serial
    assert b"".join(encode_shard(block, layout, threads=threads, skip=skip)) == serial
    index = np.frombuffer(serial[-layout.index_nbytes:-4], "<u8").reshape(1, 4, 4, 2)
    assert (index[0, 1:3, 0:2] == MISSING).all() and (index[0, 0, :] != MISSING).all()


@pytest.fixture
def blosc_threads():
    """Let numcodecs run blosc on blosc's own threads (zarr turns that off on import), and
    restore the setting afterwards."""
    saved = numcodecs.blosc.use_threads, numcodecs.blosc.get_nthreads()
    numcodecs.blosc.use_threads = True
    yield numcodecs.blosc.set_nthreads
    numcodecs.blosc.use_threads = saved[0]
    numcodecs.blosc.set_nthreads(saved[1])


def test_blosc_bytes_do_not_depend_on_blosc_threads(tmp_path, blosc_threads):
    """512 KiB chunks, four of blosc's automatic blocks at clevel 3: on blosc's threads the
    blocks of an automatic size are stored in the order they finish. One block per chunk
    (``blosc_blocksize``) makes the bytes the same at every setting, and zarr's."""
    rng = np.random.default_rng(11)
    block = rng.integers(-3, 4, (128, 128, 128), dtype=np.int8)
    layout = ShardLayout((128, 128, 128), (128, 128, 128), (128, 64, 64), "int8", None,
                         blosc=BloscZstd(3, "bitshuffle"))
    shards = set()
    for n in (1, 2, 4, 8):
        blosc_threads(n)
        shards |= {b"".join(encode_shard(block, layout, threads=t)) for t in (1, 1, 2, 3)}
    assert len(shards) == 1
    numcodecs.blosc.use_threads = False
    arr = _array(tmp_path / "z", shape=(128, 128, 128), shards=(128, 128, 128),
                 codec="blosc-zstd:3:bitshuffle", chunk=64)
    arr[:] = block
    assert (tmp_path / "z/c/0/0/0").read_bytes() in shards


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("transpose", [False, True])
def test_decode_chunk_equals_zarr(tmp_path, codec, transpose):
    """Every stored inner chunk of a shard zarr wrote decodes to zarr's own read of it."""
    arr = _array(tmp_path / "z", transpose, codec=codec)
    rng = np.random.default_rng(5)
    arr[:] = rng.integers(-50, 50, arr.shape, dtype=np.int8)
    layout = read_layout(Location.parse(tmp_path), "z")
    raw = (tmp_path / "z/c/0/1/1").read_bytes()
    index = np.frombuffer(raw[-layout.index_nbytes:-4], "<u8").reshape(*layout.grid, 2)
    for _, cy, cx in np.ndindex(*layout.grid):
        offset, length = (int(v) for v in index[0, cy, cx])
        got = decode_chunk(raw[offset:offset + length], layout)
        want = arr[:, 64 + cy * 16:64 + (cy + 1) * 16, 64 + cx * 16:64 + (cx + 1) * 16]
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("damage", ["truncate", "header", "short"])
def test_a_damaged_blosc_chunk_is_a_value_error(damage):
    """The decoder checks a blosc frame's header against the chunk size and the frame's
    length before decoding, so a damaged chunk is an error to report (verify does); numcodecs
    alone decodes a frame whose header claims more bytes than it has."""
    layout = ShardLayout((8, 16, 16), (8, 16, 16), (8, 16, 16), "int8", None,
                         blosc=BloscZstd(2, "bitshuffle"))
    block = np.random.default_rng(2).integers(-9, 9, (8, 16, 16), dtype=np.int8)
    good = b"".join(encode_shard(block, layout))[:-layout.index_nbytes]
    np.testing.assert_array_equal(decode_chunk(good, layout), block)
    bad = {"truncate": good[:-7], "short": good[:9],
           "header": good[:12] + (len(good) + 500).to_bytes(4, "little") + good[16:]}[damage]
    with pytest.raises(ValueError, match="blosc"):
        decode_chunk(bad, layout)


@pytest.mark.parametrize("transpose", [False, True])
@given(st.integers(1, 64), st.integers(1, 64))
def test_an_edge_block_encodes_as_the_block_padded_with_fill(transpose, h, w):
    """At a level's edge a shard's block is shorter than the shard: each chunk it ends in is
    completed with fill, the bytes those of the whole padded block."""
    rng = np.random.default_rng(h * 100 + w)
    block = rng.integers(-9, 10, (8, h, w), dtype=np.int8)
    padded = np.zeros((8, 64, 64), np.int8)
    padded[:, :h, :w] = block
    layout = ShardLayout((8, 64, 64), (8, 64, 64), (8, 16, 16), "int8", 3,
                         (1, 2, 0) if transpose else None)
    assert b"".join(encode_shard(block, layout)) == b"".join(encode_shard(padded, layout))
    assert encode_chunks(block, layout, (0, 0, 0)) == encode_chunks(padded, layout, (0, 0, 0))
