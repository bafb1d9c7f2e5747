"""Whole embedding vectors at scattered pixels, one inner chunk read per chunk touched.

Why by hand: zarr-python's coordinate selection on a sharded array costs about 0.4 ms per
inner chunk, more than reading and decoding it (measured: 0.40 s against 0.15 s for 1,000
random pixels of a 10 m store). Here each shard's index is read once (one suffix range, kept),
each needed inner chunk with one range read, and every pixel in that chunk is taken from it.
Works on any location (local disk, S3, HTTP) through ``Location`` range reads.
"""

from __future__ import annotations

import numpy as np

from geotessera.store.location import Location
from geotessera.store.shardio import MISSING, ShardLayout, decode_chunk, read_index, read_layout


class PointReader:
    """Vectors of a (band, y, x) sharded int8 array whose shards hold every band."""

    def __init__(self, store: Location, array_path: str, layout: ShardLayout) -> None:
        if not self.supports(layout):
            raise ValueError(f"{store}/{array_path}: layout {layout} is not one shard per "
                             "pixel column of all bands")
        self.store, self.path, self.layout = store, array_path, layout
        self.bands, self.chunk = layout.shape[0], layout.chunk[1]
        self._index: dict[tuple[int, int], np.ndarray | None] = {}

    @classmethod
    def open(cls, store: Location, array_path: str) -> PointReader | None:
        """A reader for the array, or None when its layout is not one this class reads."""
        layout = read_layout(store, array_path)
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
        keys = (rows // c) * (self.layout.shape[2] // c + 1) + cols // c
        order = np.argsort(keys, kind="stable")
        bounds = np.flatnonzero(np.r_[True, np.diff(keys[order]) != 0, True])
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            sel = order[a:b]
            chunk = self._chunk(int(rows[sel[0]]) // c, int(cols[sel[0]]) // c)
            if chunk is not None:
                out[sel] = chunk[:, rows[sel] % c, cols[sel] % c].T
        return out

    def _chunk(self, crow: int, ccol: int) -> np.ndarray | None:
        nr, nc = self.layout.grid[1:]
        shard = (crow // nr, ccol // nc)
        index = self._shard_index(shard)
        if index is None:
            return None
        offset, length = (int(v) for v in index[0, crow % nr, ccol % nc])
        if offset == MISSING:
            return None
        raw = self.store.read_range(self._key(shard), offset, offset + length)
        return decode_chunk(raw, self.layout)

    def _key(self, shard: tuple[int, int]) -> str:
        return f"{self.path}/{self.layout.key((0, *shard))}"

    def _shard_index(self, shard: tuple[int, int]) -> np.ndarray | None:
        if shard not in self._index:
            self._index[shard] = read_index(self.store, self._key(shard), self.layout)
        return self._index[shard]
