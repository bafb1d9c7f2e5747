"""Inner chunks encoded as soon as they are filled, from pieces that arrive in any order.

The build reduces each L0 shard into rows of its L2 quarter a strip at a time. Holding
that quarter raw until its part is written would cost 32 MiB a block (a quarter of a raw
shard); each finished chunk is instead encoded into the bytes the L2 shard will store,
and only the chunks still being filled (a strip's worth) are held raw.
"""

from __future__ import annotations

import numpy as np

from geotessera.store.shardio import ShardLayout, encode_chunks


class ChunkFiller:
    """Pixel-major pieces in, encoded inner chunks out. ``finish()`` gives, byte for byte,
    what ``encode_chunks`` gives for one array holding every piece, zeros elsewhere (every
    chunk depends on its own pixels alone): a chunk no piece touched is fill and absent."""

    def __init__(self, layout: ShardLayout, bands: int) -> None:
        self.layout, self.bands, self.c = layout, bands, layout.chunk[1]
        #: chunk (cy, cx) in the shard -> its raw pixels (c, c, bands) and how many are set
        self.pending: dict[tuple[int, int], tuple[np.ndarray, list[int]]] = {}
        self.chunks: dict[tuple[int, ...], bytes] = {}

    def paste(self, piece: np.ndarray, row0: int, col0: int) -> None:
        """Set pixels (row0…, col0…) of the shard from ``piece`` (h, w, bands); every pixel
        is set at most once. Chunks it completes are encoded now."""
        c = self.c
        h, w = piece.shape[:2]
        for cy in range(row0 // c, (row0 + h - 1) // c + 1):
            y0, y1 = max(row0, cy * c), min(row0 + h, (cy + 1) * c)
            for cx in range(col0 // c, (col0 + w - 1) // c + 1):
                x0, x1 = max(col0, cx * c), min(col0 + w, (cx + 1) * c)
                raw, n = self.pending.setdefault(
                    (cy, cx), (np.zeros((c, c, self.bands), np.int8), [0]))
                raw[y0 - cy * c:y1 - cy * c, x0 - cx * c:x1 - cx * c] = \
                    piece[y0 - row0:y1 - row0, x0 - col0:x1 - col0]
                n[0] += (y1 - y0) * (x1 - x0)
                if n[0] == c * c:
                    self._encode(cy, cx)

    def finish(self) -> dict[tuple[int, ...], bytes]:
        """Every stored chunk, (0, cy, cx) -> bytes; the partly set ones completed with
        zeros (a level's edge)."""
        for cy, cx in sorted(self.pending):
            self._encode(cy, cx)
        return self.chunks

    def _encode(self, cy: int, cx: int) -> None:
        raw, _ = self.pending.pop((cy, cx))
        self.chunks.update(encode_chunks(raw.transpose(2, 0, 1), self.layout, (0, cy, cx),
                                         threads=1))
