"""Whole embedding vectors at scattered pixels, one inner chunk read per chunk touched.

Why by hand: zarr-python's coordinate selection on a sharded array costs about 0.4 ms per
inner chunk, more than reading and decoding it (measured: 0.40 s against 0.15 s for 1,000
random pixels of a 10 m store). Here each shard's index is read once (one suffix range, kept),
each needed inner chunk as one range of a ``Location.read_ranges`` call per shard, and every
pixel in that chunk is taken from it. Works on any location (local disk, S3, HTTP).

A batch of points is read in rounds of at most ``ROUND_BYTES`` of decoded chunks: a round's
missing shard indexes are fetched concurrently, then each shard's needed chunks in one
``read_ranges`` call (obstore fetches an object store's ranges concurrently, merging those
at most ``POINT_GAP`` bytes apart; a local file is opened once), the shards and the
``scales`` chunk objects ``FETCH_THREADS`` at a time, and decoded in those threads. Values
are the same as one chunk read after another (tested).

Decoded chunks are kept in LRU caches bounded by bytes (``CACHE_BYTES`` of decoded chunks
per reader: 128 MiB, ~1,000 inner chunks of 32² × 128 bands or 512 scales chunks of 256²;
chunks that are not stored are kept too, as ``ENTRY_BYTES`` each, so they are not asked for
again), shard indexes in one of ``INDEX_BYTES``. Repeated look-ups in one area read nothing
again, and a reader's memory stays bounded. The unsharded ``scales`` array is read the same
way (``ScalesReader``): one object per chunk, decoded once.

Windows (``PointReader.chunks``, for ``read_region``) are decoded inner chunk by inner chunk
into a caller's buffer, fetched as a batch of points is: the shards' indexes at once, then
runs of a shard's nearby chunks (``runs``: one request each on an object store), the same
``_read`` of a shard's chunks, ``FETCH_THREADS`` runs at a time, decoded in those threads.
zarr's own slice read of the same windows cost 3.1–3.9 CPU-s against 0.9–1.1 here (one run
after another; two 10 m windows of 1.6 and 1.3 M pixels, 2,058 stored chunks; interleaved),
most of it its asynchronous pipeline and copies.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
from numcodecs import Zstd
from zarr.buffer.cpu import NDBuffer

from geotessera.errors import StoreError
from geotessera.lru import LRUBytes
from geotessera.store.fanout import fan_out
from geotessera.store.location import Location
from geotessera.store.shardio import (
    MISSING,
    ShardLayout,
    decode_chunk,
    read_index,
    read_layout,
)


#: ``PointReader.chunks`` fetches a shard's needed chunks in runs of chunks at most
#: ``MERGE_GAP`` bytes apart spanning at most ``MERGE_MAX`` bytes (unless one chunk is larger),
#: ``FETCH_THREADS`` runs at once: on an object store each run is one request (one costs more
#: than a MiB's transfer), on disk one open and a read per chunk; the cap bounds the compressed
#: bytes held at once (32 MiB).
MERGE_GAP, MERGE_MAX = 2**20, 2**22
#: Point reads merge a shard's chunk ranges at most this many bytes apart into one request
#: (object stores only; a local file reads each range alone): ~5 compressed 10 m chunks.
#: Measured on loopback S3, 1,000 random points in 16 tiles: 64 KiB, 256 KiB and 1 MiB gaps
#: made 533, 418 and 179 chunk requests and moved 65, 84 and 218 KB per point; 256 KiB keeps
#: under the 100 KB per point of issue 12 (docs/performance.md).
POINT_GAP = 2**18
#: Decoded chunks kept per reader, in bytes, and the charge for an entry without data (a
#: chunk not stored); shard indexes kept per reader (16 KiB each for 32² chunks per shard).
CACHE_BYTES = 128 * 2**20
ENTRY_BYTES = 512
INDEX_BYTES = 4 * 2**20
#: Decoded bytes fetched per round of a batch, and objects (shards, scales chunks) fetched
#: at once.
ROUND_BYTES = 32 * 2**20
FETCH_THREADS = 8

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)
_ABSENT = object()


def _cost(value: Any) -> int:
    return getattr(value, "nbytes", 0) + ENTRY_BYTES


def cache(max_bytes: int) -> LRUBytes:
    """A decoded-chunk cache of ``max_bytes`` (None values, chunks not stored, kept too)."""
    return LRUBytes(max_bytes, _cost)


def fetch_all(fn: Callable[[Any], T], items: Sequence[Any]) -> list[T]:
    """``fan_out`` on ``FETCH_THREADS`` threads (on a local disk too: they decode as well)."""
    return fan_out(fn, items, FETCH_THREADS)


def groups(rows: np.ndarray, cols: np.ndarray, chunk: tuple[int, int],
           shard: tuple[int, int] = (1, 1)) -> list[tuple[tuple[int, int], np.ndarray]]:
    """((chunk row, chunk col), indices of the pixels in it) for every chunk the pixels
    touch (any rows and columns, outside the array too), shard by shard (``shard``: chunks
    per shard on each axis), row-major within a shard."""
    crow, ccol = rows // chunk[0], cols // chunk[1]
    if len(rows) == 1:  # one look-up: nothing to sort (a warm one costs well under 1 ms)
        return [((int(crow[0]), int(ccol[0])), np.zeros(1, np.intp))]
    order = np.lexsort((ccol, crow, ccol // shard[1], crow // shard[0]))
    r, c = crow[order], ccol[order]
    bounds = np.flatnonzero(np.r_[True, (np.diff(r) != 0) | (np.diff(c) != 0), True])
    return [((int(r[a]), int(c[a])), order[a:b])
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def rounds(items: list[T], size: int) -> Iterator[list[T]]:
    """``items`` in consecutive lists of at most ``size`` (at least 1)."""
    size = max(1, size)
    for i in range(0, len(items), size):
        yield items[i:i + size]


def runs(stored: list[tuple[int, int, Any]], gap: int,
         most: int) -> list[list[tuple[int, int, Any]]]:
    """``stored`` ((offset, length, key), by offset) in consecutive runs: a chunk joins the
    run before it when at most ``gap`` bytes after its end and the run then spans at most
    ``most`` bytes (from its first chunk's start to its last one's end)."""
    out: list[list[tuple[int, int, Any]]] = []
    for s in stored:
        if out and s[0] - sum(out[-1][-1][:2]) <= gap and sum(s[:2]) - out[-1][0][0] <= most:
            out[-1].append(s)
        else:
            out.append([s])
    return out


def cached_or_fetched(lru: LRUBytes, keys: list[K], fetch: Callable[[list[K]], dict]) -> dict:
    """{key: value} for ``keys``: from ``lru`` where kept, else from one ``fetch`` of all
    the others (whose values are then kept)."""
    found, todo = {}, []
    for k in keys:
        v = lru.get(k, _ABSENT)
        if v is _ABSENT:
            todo.append(k)
        else:
            found[k] = v
    if todo:
        fetched = fetch(todo)
        for k in todo:
            lru.put(k, fetched[k])
        found |= fetched
    return found


def read_window(arr: Any, rows: slice, cols: slice, out: np.ndarray) -> None:
    """zarr's own read of ``arr[:, rows, cols]`` (a (band, y, x) array), decoded into ``out``
    (any writable view of that shape and dtype) instead of a new array."""
    arr.get_basic_selection((slice(None), rows, cols), out=NDBuffer.from_numpy_array(out))


class PointReader:
    """Vectors of a (band, y, x) sharded int8 array whose shards hold every band."""

    def __init__(self, store: Location, array_path: str, layout: ShardLayout) -> None:
        if not self.supports(layout):
            raise ValueError(f"{store}/{array_path}: layout {layout} is not one shard per "
                             "pixel column of all bands")
        self.store, self.path, self.layout = store, array_path, layout
        self.bands, self.chunk = layout.shape[0], layout.chunk[1]
        self._index = LRUBytes(INDEX_BYTES, _cost)
        self._chunks = cache(CACHE_BYTES)

    @classmethod
    def open(cls, store: Location, array_path: str,
             doc: dict | None = None) -> PointReader | None:
        """A reader for the array, or None when its layout is not one this class reads;
        ``doc`` is its ``zarr.json`` when already read (else it is read here)."""
        layout = (ShardLayout.from_metadata(doc) if doc is not None
                  else read_layout(store, array_path))
        return cls(store, array_path, layout) if layout and cls.supports(layout) else None

    @staticmethod
    def supports(layout: ShardLayout) -> bool:
        s, c = layout.shard, layout.chunk
        return (len(layout.shape) == 3 and s[0] == c[0] == layout.shape[0]
                and c[1] == c[2] and layout.dtype == "int8")

    def vectors(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """(n, bands) int8; zeros (the fill value) where no chunk is stored."""
        out = np.zeros((len(rows), self.bands), np.int8)
        c = self.chunk
        nr, nc = self.layout.grid[1:]
        todo = groups(rows, cols, (c, c), (nr, nc))
        for part in rounds(todo, ROUND_BYTES // (self.bands * c * c)):
            chunks = cached_or_fetched(self._chunks, [k for k, _ in part], self._fetch)
            for key, sel in part:
                if (chunk := chunks[key]) is not None:
                    out[sel] = chunk[:, rows[sel] % c, cols[sel] % c].T
        return out

    def lacks_indexes(self, rows: np.ndarray, cols: np.ndarray) -> bool:
        """Whether the index of a shard holding one of these pixels is not kept."""
        return any(s not in self._index for s in self._shards(rows, cols))

    def load_indexes(self, rows: np.ndarray, cols: np.ndarray) -> None:
        """Fetch (concurrently) and keep the indexes of the shards holding these pixels."""
        cached_or_fetched(self._index, self._shards(rows, cols), self._fetch_indexes)

    def _shards(self, rows: np.ndarray, cols: np.ndarray) -> list[tuple[int, int]]:
        sr, sc = rows // self.layout.shard[1], cols // self.layout.shard[2]
        return sorted(set(zip(sr.tolist(), sc.tolist())))

    def _fetch(self, keys: list[tuple[int, int]]) -> dict:
        """{(chunk row, chunk col): decoded chunk or None} for chunks not kept: the shards'
        indexes, then each shard's chunks by one ``read_ranges``, shards concurrently."""
        nr, nc = self.layout.grid[1:]
        by_shard: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for k in keys:
            by_shard.setdefault((k[0] // nr, k[1] // nc), []).append(k)
        indexes = cached_or_fetched(self._index, list(by_shard), self._fetch_indexes)
        found: dict = {}
        for part in fetch_all(lambda kv: self._shard_points(kv[0], indexes[kv[0]], kv[1]),
                              list(by_shard.items())):
            found |= part
        return found

    def _fetch_indexes(self, shards: list[tuple[int, int]]) -> dict:
        got = fetch_all(lambda s: read_index(self.store, self._key(s), self.layout), shards)
        return dict(zip(shards, got, strict=True))

    def _shard_points(self, shard: tuple[int, int], index: np.ndarray | None,
                      keys: list[tuple[int, int]]) -> dict:
        """{key: decoded chunk or None} for chunks of one shard (``index`` None: not stored)."""
        missing, stored = self._locate(index, keys)
        return dict.fromkeys(missing) | dict(self._read(self._key(shard), stored, POINT_GAP))

    def _read(self, key: str, stored: list[tuple[int, int, Any]],
              gap: int) -> Iterator[tuple[Any, np.ndarray]]:
        """(key, decoded chunk) of each stored chunk (offset, length, key) of shard ``key``,
        fetched by one ``read_ranges`` (ranges at most ``gap`` apart one request)."""
        raws = self.store.read_ranges(key, [s[0] for s in stored],
                                      [s[0] + s[1] for s in stored], coalesce=gap)
        for (offset, length, k), raw in zip(stored, raws, strict=True):
            yield k, self._decode(key, offset, length, raw)

    def _locate(self, index: np.ndarray | None, keys: list[tuple[int, int]]):
        """(keys of chunks not stored, [(offset, length, key)] of the others by offset) of
        one shard's chunks; ``index`` None: the shard is not stored."""
        nr, nc = self.layout.grid[1:]
        missing, stored = [], []
        for k in keys:
            offset, length = ((int(v) for v in index[0, k[0] % nr, k[1] % nc])
                              if index is not None else (MISSING, 0))
            if offset == MISSING:
                missing.append(k)
            else:
                stored.append((offset, length, k))
        return missing, sorted(stored)

    def _decode(self, key: str, offset: int, length: int, raw: bytes) -> np.ndarray:
        """One inner chunk; StoreError naming the shard and the chunk's offset when its
        bytes are short (the index points past the object) or do not decode."""
        if len(raw) != length:
            raise StoreError(self.store.child(key), f"inner chunk at byte {offset}: the "
                             f"index says {length} bytes, the object has {len(raw)} there")
        try:
            return decode_chunk(raw, self.layout)
        except (ValueError, RuntimeError) as e:  # numcodecs raises RuntimeError on bad zstd
            raise StoreError(self.store.child(key),
                             f"inner chunk at byte {offset} does not decode ({e})") from e

    def chunks(self, crows: range, ccols: range, out: np.ndarray) -> None:
        """Decode the inner chunks ``crows`` × ``ccols`` (chunk rows and columns) into
        ``out[:, i, j]``, a writable (band, len(crows), len(ccols), c, c) int8 view; zeros
        (the fill value) where a chunk is not stored. Each is read and decoded once, not
        cached (a window is read once): the shards' indexes at once, then the stored chunks
        in ``runs`` (``MERGE_GAP``, ``MERGE_MAX``), ``FETCH_THREADS`` at a time, each by one
        ``read_ranges`` (one request on an object store) and decoded in its thread; at most
        ``FETCH_THREADS × MERGE_MAX`` compressed bytes are fetched and not yet decoded."""
        nr, nc = self.layout.grid[1:]
        by_shard: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for r in crows:
            for q in ccols:
                by_shard.setdefault((r // nr, q // nc), []).append((r, q))
        indexes = cached_or_fetched(self._index, list(by_shard), self._fetch_indexes)
        r0, c0 = crows[0], ccols[0]
        todo = []
        for shard, keys in by_shard.items():
            missing, stored = self._locate(indexes[shard], keys)
            for r, q in missing:
                out[:, r - r0, q - c0] = 0
            todo += [(self._key(shard), run) for run in runs(stored, MERGE_GAP, MERGE_MAX)]

        def decode(run: tuple[str, list]) -> None:
            for (r, q), chunk in self._read(*run, MERGE_GAP):
                out[:, r - r0, q - c0] = chunk

        fetch_all(decode, todo)

    def _key(self, shard: tuple[int, int]) -> str:
        return f"{self.path}/{self.layout.key((0, *shard))}"


class ScalesReader:
    """Values at scattered pixels of an unsharded 2-D float32 array stored as ``bytes``
    (little endian) + ``zstd`` chunks with the default key encoding (the ``scales`` arrays),
    each chunk read whole and decoded once into a bounded cache (``CACHE_BYTES``), chunks
    that are not stored (404) kept as missing."""

    def __init__(self, store: Location, array_path: str, shape: tuple[int, int],
                 chunk: tuple[int, int], fill: float, separator: str = "/",
                 compressed: bool = True) -> None:
        self.store, self.path, self.shape, self.chunk = store, array_path, shape, chunk
        self.fill, self.separator, self.compressed = np.float32(fill), separator, compressed
        self._chunks = cache(CACHE_BYTES)

    @classmethod
    def open(cls, store: Location, array_path: str,
             doc: dict | None = None) -> ScalesReader | None:
        """A reader for the array, or None when its layout is not this one; ``doc`` is its
        ``zarr.json`` when already read (else it is read here)."""
        try:
            doc = doc if doc is not None else json.loads(store.read(f"{array_path}/zarr.json"))
            names = [c["name"] for c in doc["codecs"]]
            endian = doc["codecs"][0].get("configuration", {}).get("endian", "little")
            enc = doc.get("chunk_key_encoding", {"name": "default"})
            if (names not in (["bytes", "zstd"], ["bytes"]) or endian != "little"
                    or doc["data_type"] != "float32" or len(doc["shape"]) != 2
                    or enc["name"] != "default" or doc["chunk_grid"]["name"] != "regular"):
                return None
            chunk = tuple(doc["chunk_grid"]["configuration"]["chunk_shape"])
            fill = doc["fill_value"]
            sep = enc.get("configuration", {}).get("separator", "/")
        except (KeyError, TypeError, ValueError, IndexError):
            return None
        fill = float("nan") if fill in ("NaN", None) else float(fill)
        return cls(store, array_path, tuple(doc["shape"]), chunk, fill, sep,
                   compressed=names[-1] == "zstd")

    def values(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """float32 values at (rows, cols) (inside the array); the fill where not stored."""
        ch, cw = self.chunk
        out = np.full(len(rows), self.fill, np.float32)
        for part in rounds(groups(rows, cols, self.chunk), ROUND_BYTES // (4 * ch * cw)):
            chunks = cached_or_fetched(self._chunks, [k for k, _ in part], self._fetch)
            for key, sel in part:
                if (chunk := chunks[key]) is not None:
                    out[sel] = chunk[rows[sel] % ch, cols[sel] % cw]
        return out

    def _fetch(self, keys: list[tuple[int, int]]) -> dict:
        return dict(zip(keys, fetch_all(self._read, keys), strict=True))

    def _read(self, key: tuple[int, int]) -> np.ndarray | None:
        name = f"{self.path}/{self.separator.join(['c', *map(str, key)])}"
        try:
            raw = self.store.read(name)
        except FileNotFoundError:
            return None
        try:
            data = np.frombuffer(Zstd().decode(raw) if self.compressed else raw, "<f4")
            return data.reshape(self.chunk)
        except (RuntimeError, ValueError) as e:
            raise StoreError(self.store.child(name), f"cannot decode scales chunk: {e}") from e
