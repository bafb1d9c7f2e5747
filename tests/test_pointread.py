"""The direct point reader returns exactly what zarr returns, and refuses what it cannot read."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from zarr.codecs import TransposeCodec, ZstdCodec

from conftest import zarr_compressor

from geotessera.errors import StoreError
from geotessera.store.pointread import PointReader
from geotessera.store.location import Location


#: The embeddings codecs the direct reader decodes itself.
CODECS = ["zstd:3", "blosc-zstd:2:bitshuffle", "none"]


def _array(tmp_path, transpose, codec="zstd:3"):
    arr = zarr.create_array(str(tmp_path / "e"), shape=(8, 128, 96), dtype="int8",
                            chunks=(8, 16, 16), shards=(8, 64, 32), fill_value=0,
                            compressors=zarr_compressor(codec, (8, 16, 16)),
                            filters=[TransposeCodec(order=(1, 2, 0))] if transpose else None)
    rng = np.random.default_rng(3)
    for sr in range(2):
        for sc in range(3):
            block = rng.integers(-100, 100, (8, 64, 32), dtype=np.int8)
            block[:, :16] = 0  # some inner chunks stay empty
            if (sr, sc) != (1, 2):  # and one whole shard is never written
                arr[:, sr * 64:(sr + 1) * 64, sc * 32:(sc + 1) * 32] = block
    return arr


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("transpose", [False, True])
def test_vectors_equal_zarr_vindex(tmp_path, transpose, codec):
    arr = _array(tmp_path, transpose, codec)
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



def test_scales_reader_equals_zarr_and_its_cache_is_bounded(tmp_path, monkeypatch):
    import geotessera.store.pointread as pr

    arr = zarr.create_array(str(tmp_path / "s"), shape=(100, 70), dtype="float32",
                            chunks=(32, 32), compressors=ZstdCodec(level=3), fill_value=np.nan)
    rng = np.random.default_rng(1)
    values = rng.random((100, 70), dtype=np.float32)
    values[:32, 32:64] = np.nan  # one chunk all fill: not stored
    arr[:] = values
    budget = 3 * (32 * 32 * 4 + pr.ENTRY_BYTES)  # three decoded chunks
    monkeypatch.setattr(pr, "CACHE_BYTES", budget)
    reads = []
    real_read = Location.read
    monkeypatch.setattr(Location, "read", lambda self, key: reads.append(key) or
                        real_read(self, key))
    reader = pr.ScalesReader.open(Location.parse(tmp_path), "s")
    reads.clear()
    rows, cols = rng.integers(0, 100, 400), rng.integers(0, 70, 400)
    np.testing.assert_array_equal(reader.values(rows, cols), arr.vindex[rows, cols])
    assert len(reader._chunks) == 3 and reader._chunks.nbytes <= budget  # 12 read, 3 kept
    assert sorted(reads) == [f"s/c/{r}/{c}" for r in range(4) for c in range(3)]
    reads.clear()
    near_r, near_c = rng.integers(64, 96, 50), rng.integers(0, 32, 50)
    reader.values(near_r, near_c)
    reader.values(near_r, near_c)
    assert reads == ["s/c/2/0"]  # one area: read once, then served from the cache
    reads.clear()
    empty = (rng.integers(0, 32, 20), rng.integers(32, 64, 20))
    assert np.isnan(reader.values(*empty)).all() and np.isnan(reader.values(*empty)).all()
    assert reads == ["s/c/0/1"]  # not stored: asked for once, then known to be missing


def test_scales_reader_does_not_claim_other_layouts(tmp_path):
    zarr.create_array(str(tmp_path / "g"), shape=(64, 64), dtype="float32", chunks=(32, 32),
                      shards=(64, 64))
    zarr.create_array(str(tmp_path / "i"), shape=(64, 64), dtype="int16", chunks=(32, 32))
    loc = Location.parse(tmp_path)
    from geotessera.store.pointread import ScalesReader
    assert ScalesReader.open(loc, "g") is None and ScalesReader.open(loc, "i") is None


def _tiled(a: np.ndarray, e: int) -> np.ndarray:
    """(band, y, x) as (band, tile row, tile col, e, e)."""
    b, h, w = a.shape
    return a.reshape(b, h // e, e, w // e, e).transpose(0, 1, 3, 2, 4)


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("gap", [0, 2**20])  # every chunk its own read, or merged runs
def test_chunks_equal_zarr_slices(tmp_path, transpose, gap, monkeypatch, codec):
    import geotessera.store.pointread as pr

    arr = _array(tmp_path, transpose, codec)
    monkeypatch.setattr(pr, "MERGE_GAP", gap)
    monkeypatch.setattr(pr, "MERGE_MAX", 3000)  # a few chunks per read at most
    reader = PointReader.open(Location.parse(tmp_path), "e")
    for crows, ccols in [(range(0, 8), range(0, 6)), (range(3, 6), range(1, 5)),
                         (range(5, 6), range(4, 5))]:
        out = np.full((8, len(crows), len(ccols), 16, 16), 99, np.int8)
        reader.chunks(crows, ccols, out)
        want = arr[:, crows[0] * 16:(crows[-1] + 1) * 16, ccols[0] * 16:(ccols[-1] + 1) * 16]
        np.testing.assert_array_equal(out, _tiled(want, 16))


def test_zone_store_tiles_by_zarr_equal_the_direct_reader(tmp_path):
    """``ZoneStore.tiles``: the direct reader where the tile is the inner chunk; otherwise
    zarr's slice read, at any tile edge, zeros beyond the array."""
    from geotessera.read.reader import ZoneStore
    from geotessera.types import Level, PixelGrid

    arr = _array(tmp_path, False)
    zs = ZoneStore(meta=None, location=Location.parse(tmp_path))
    level = Level("e", PixelGrid("EPSG:32631", (10.0, 0.0, 0.0, 0.0, -10.0, 0.0), (128, 96)))
    zs._readers[("arrays", "e")] = (arr, None)  # what arrays() would open from the root
    zs._readers["e"] = None  # as for a layout PointReader does not read: zarr's path
    by_zarr = np.full((8, 2, 1, 48, 48), 99, np.int8)
    zs.tiles(level, range(1, 3), range(1, 2), 48, by_zarr)  # rows 48..144: past the end
    want = np.zeros((8, 96, 48), np.int8)
    want[:, :80] = arr[:, 48:128, 48:96]
    np.testing.assert_array_equal(by_zarr, _tiled(want, 48))
    zs._readers["e"] = PointReader.open(Location.parse(tmp_path), "e")
    direct = np.full((8, 3, 2, 16, 16), 99, np.int8)
    zs.tiles(level, range(4, 7), range(3, 5), 16, direct)
    np.testing.assert_array_equal(direct, _tiled(arr[:, 64:112, 48:80], 16))


#: (fetch threads, round bytes, merge gap): one chunk at a time and serially; a round per
#: chunk, concurrently; everything in one round, concurrently, ranges merged.
FETCHES = [(1, 1, 0), (8, 1, 2**16), (8, 2**30, 2**20)]


@pytest.mark.parametrize("threads,round_bytes,gap", FETCHES)
def test_concurrent_fetches_equal_serial_ones_and_zarr(tmp_path, monkeypatch, threads,
                                                       round_bytes, gap):
    import geotessera.store.pointread as pr

    arr = _array(tmp_path, True, "blosc-zstd:2:bitshuffle")
    rng = np.random.default_rng(9)
    rows, cols = rng.integers(-40, 170, 600), rng.integers(-30, 130, 600)
    inside = (rows >= 0) & (rows < 128) & (cols >= 0) & (cols < 96)
    monkeypatch.setattr(pr, "FETCH_THREADS", 1)
    monkeypatch.setattr(pr, "ROUND_BYTES", 1)
    serial = PointReader.open(Location.parse(tmp_path), "e").vectors(rows, cols)
    for name, value in (("FETCH_THREADS", threads), ("ROUND_BYTES", round_bytes),
                        ("POINT_GAP", gap)):
        monkeypatch.setattr(pr, name, value)
    got = PointReader.open(Location.parse(tmp_path), "e").vectors(rows, cols)
    np.testing.assert_array_equal(got, serial)
    bands = np.arange(8)
    r, c = rows[inside], cols[inside]
    np.testing.assert_array_equal(got[inside], arr.vindex[bands[:, None], r[None, :],
                                                          c[None, :]].T)
    assert not got[~inside].any() and inside.sum() > 200 and (~inside).sum() > 200


@pytest.mark.parametrize("stored,want", [
    ([], []),
    ([(0, 10, "a"), (15, 10, "b"), (40, 10, "c")], [["a", "b"], ["c"]]),  # a gap over 5
    ([(0, 10, "a"), (10, 10, "b"), (20, 10, "c")], [["a", "b"], ["c"]]),  # 30 spans over 25
    ([(0, 40, "a"), (40, 10, "b")], [["a"], ["b"]]),  # a chunk over 25 alone
])
def test_runs_split_at_gaps_and_at_the_span_cap(stored, want):
    from geotessera.store.pointread import runs

    assert [[s[2] for s in run] for run in runs(stored, gap=5, most=25)] == want


def _in_flight(monkeypatch) -> dict:
    """The most chunk reads (``read_range`` or ``read_ranges`` calls) running at once, and
    the most bytes they spanned together, from now on; each call is held 20 ms so that
    reads issued together overlap."""
    import threading
    import time

    seen = {"calls": 0, "bytes": 0}
    now, lock = {"calls": 0, "bytes": 0}, threading.Lock()

    def held(real, span):
        def call(self, key, *args, **kw):
            with lock:
                now["calls"] += 1
                now["bytes"] += span(*args)
                seen.update({k: max(seen[k], now[k]) for k in seen})
            try:
                time.sleep(0.02)
                return real(self, key, *args, **kw)
            finally:
                with lock:
                    now["calls"] -= 1
                    now["bytes"] -= span(*args)
        return call

    monkeypatch.setattr(Location, "read_range",
                        held(Location.read_range, lambda start, end: end - start))
    monkeypatch.setattr(Location, "read_ranges",
                        held(Location.read_ranges, lambda starts, ends: ends[-1] - starts[0]))
    return seen


def test_a_window_s_chunks_are_fetched_concurrently_in_bounded_runs(tmp_path, monkeypatch):
    """``chunks`` has several reads in flight at once, at most ``FETCH_THREADS``, and they
    span at most ``FETCH_THREADS × MERGE_MAX`` bytes together (no chunk is larger)."""
    import geotessera.store.pointread as pr

    arr = _array(tmp_path, False, "none")  # 2,048-byte chunks
    monkeypatch.setattr(pr, "MERGE_MAX", 5000)  # two chunks a run
    monkeypatch.setattr(pr, "FETCH_THREADS", 3)
    reader = PointReader.open(Location.parse(tmp_path), "e")
    reader.load_indexes(np.array([0, 127]), np.array([0, 95]))  # the shard indexes: kept
    seen = _in_flight(monkeypatch)
    out = np.full((8, 8, 6, 16, 16), 99, np.int8)
    reader.chunks(range(8), range(6), out)
    np.testing.assert_array_equal(out, _tiled(arr[:], 16))
    assert 2 <= seen["calls"] <= 3
    assert seen["bytes"] <= 3 * 5000


def _counting(monkeypatch) -> list[tuple[str, int]]:
    """(key, ranges) of every ``Location.read_ranges`` call from now on."""
    calls = []
    real = Location.read_ranges

    def counted(self, key, starts, ends, **kw):
        calls.append((key, len(starts)))
        return real(self, key, starts, ends, **kw)

    monkeypatch.setattr(Location, "read_ranges", counted)
    return calls


def test_the_chunk_cache_is_bounded_by_bytes_and_evicts(tmp_path, monkeypatch):
    import geotessera.store.pointread as pr

    _array(tmp_path, False)
    budget = 3 * (8 * 16 * 16 + pr.ENTRY_BYTES)  # three decoded inner chunks
    monkeypatch.setattr(pr, "CACHE_BYTES", budget)
    calls = _counting(monkeypatch)
    reader = PointReader.open(Location.parse(tmp_path), "e")
    rows = np.repeat(np.arange(16, 64, 16) + 3, 2)  # 3 chunk rows × 2 chunk columns
    cols = np.tile([5, 21], 3)
    first = reader.vectors(rows, cols)
    assert len(reader._chunks) == 3 and reader._chunks.nbytes <= budget
    assert sum(n for _, n in calls) == 6  # six stored chunks, in one shard: one call
    assert len(calls) == 1
    calls.clear()
    np.testing.assert_array_equal(reader.vectors(rows[-3:], cols[-3:]), first[-3:])
    assert calls == []  # the last three are kept
    np.testing.assert_array_equal(reader.vectors(rows[:1], cols[:1]), first[:1])
    assert calls == [("e/c/0/0/0", 1)]  # the first was evicted: read again


def _rewrite_index(shard, change) -> None:
    """Apply ``change`` to a shard object's (offset, length) index, with a new CRC32C."""
    import google_crc32c

    data = bytearray(shard.read_bytes())
    n = 2 * 4 * 16 + 4  # (64 / 16) × (32 / 16) chunks of 16 bytes, and the CRC
    index = np.frombuffer(bytes(data[-n:-4]), "<u8").reshape(-1, 2).copy()
    change(index)
    raw = index.tobytes()
    data[-n:] = raw + np.uint32(google_crc32c.value(raw)).tobytes()
    shard.write_bytes(bytes(data))


@pytest.mark.parametrize("path", ["points", "window"])
@pytest.mark.parametrize("damage,message", [
    ("garbage", r"c/0/0/0: inner chunk at byte \d+ does not decode"),
    ("past the end", r"c/0/0/0: inner chunk at byte \d+: the index says \d+ bytes, the "
                     r"object has \d+ there"),
])
def test_a_damaged_chunk_is_an_error_naming_the_shard(tmp_path, damage, message, path):
    _array(tmp_path, False)
    shard = tmp_path / "e/c/0/0/0"
    offsets = {}

    def change(index):
        stored = np.flatnonzero(index[:, 0] != 2**64 - 1)
        last = stored[np.argmax(index[stored, 0])]
        offsets["at"] = int(index[last, 0])
        if damage == "past the end":
            index[last, 1] += 10**6
    _rewrite_index(shard, change)
    if damage == "garbage":
        data = bytearray(shard.read_bytes())
        data[offsets["at"]:offsets["at"] + 16] = b"\xff" * 16
        shard.write_bytes(bytes(data))
    reader = PointReader.open(Location.parse(tmp_path), "e")
    with pytest.raises(StoreError, match=message):
        if path == "points":
            rows, cols = np.indices((64, 32)).reshape(2, -1)  # every pixel of the shard
            reader.vectors(rows, cols)
        else:  # the shard's chunks and the next shard's
            reader.chunks(range(4), range(4), np.empty((8, 4, 4, 16, 16), np.int8))
